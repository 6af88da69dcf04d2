//! Inventories: `ESP-<id>.json` or `default.json`, parsed and checked (file names, secret, config).

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::RepoError;
use crate::v1;

/// Why an inventory is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// Not JSON, or not an object.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// No `files` array.
    #[error("`files` must be an array of file names")]
    Files,
    /// A `files` entry that is not a safe relative path.
    #[error("`{0}` is not a relative path inside the repository")]
    BadName(String),
    /// A file named twice.
    #[error("`{0}` is named twice")]
    Duplicate(String),
    /// No `secret` string.
    #[error("`secret` must be a string")]
    Secret,
    /// A `config` that is not an object.
    #[error("`config` must be an object")]
    Config,
    /// A `release` that is not a revision name.
    #[error("`release` must be a branch, tag or commit name")]
    Release,
}

/// One device's inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The inventory file it came from (`ESP-<id>.json` or `default.json`).
    pub file: String,
    /// The files, in order.
    pub files: Vec<String>,
    /// The device's HMAC key.
    pub secret: Vec<u8>,
    /// The optional `config` object: a new device config for protocol v2 devices.
    pub config: Option<Map<String, Value>>,
    /// The optional `release`: the git revision (branch, tag, commit) the device is pinned to
    /// (read from the control tree's inventory only).
    pub release: Option<String>,
}

/// Whether `name` is a safe relative path: non-empty `/`-separated components, none `.`, `..` or empty,
/// no backslash and no control character.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && !name.chars().any(char::is_control)
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Inventory {
    /// Parses an inventory file's bytes; `file` names it in errors.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Self, RepoError> {
        let error = |error| RepoError::Inventory {
            file: file.to_owned(),
            error,
        };
        let obj =
            v1::parse_object(bytes).map_err(|e| error(InventoryError::Json(e.to_string())))?;
        let names = obj
            .get("files")
            .and_then(Value::as_array)
            .ok_or(error(InventoryError::Files))?;
        let mut files = Vec::with_capacity(names.len());
        let mut seen = HashSet::new();
        for name in names {
            let name = name.as_str().ok_or(error(InventoryError::Files))?;
            if !valid_name(name) {
                return Err(error(InventoryError::BadName(name.to_owned())));
            }
            if !seen.insert(name) {
                return Err(error(InventoryError::Duplicate(name.to_owned())));
            }
            files.push(name.to_owned());
        }
        let secret = obj
            .get("secret")
            .and_then(Value::as_str)
            .ok_or(error(InventoryError::Secret))?;
        let config = match obj.get("config") {
            None | Some(Value::Null) => None,
            Some(Value::Object(config)) => Some(config.clone()),
            Some(_) => return Err(error(InventoryError::Config)),
        };
        let release = match obj.get("release") {
            None | Some(Value::Null) => None,
            Some(Value::String(rev)) if !rev.is_empty() => Some(rev.clone()),
            Some(_) => return Err(error(InventoryError::Release)),
        };
        Ok(Inventory {
            file: file.to_owned(),
            files,
            secret: secret.as_bytes().to_vec(),
            config,
            release,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_errors_are_typed() {
        let err = |json: &str| match Inventory::parse("x.json", json.as_bytes()) {
            Err(RepoError::Inventory { error, .. }) => error,
            other => panic!("{other:?}"),
        };
        assert!(matches!(err("[1]"), InventoryError::Json(_)));
        assert_eq!(err(r#"{"secret":"s"}"#), InventoryError::Files);
        assert_eq!(err(r#"{"files":[1],"secret":"s"}"#), InventoryError::Files);
        assert_eq!(err(r#"{"files":["a"]}"#), InventoryError::Secret);
        for bad in ["../etc/passwd", "/abs", "a//b", "a/./b", "", "a\\b", "a\nb"] {
            let json = Value::from(vec![bad]);
            assert_eq!(
                err(&format!(r#"{{"files":{json},"secret":"s"}}"#)),
                InventoryError::BadName(bad.into()),
                "{bad:?}"
            );
        }
        assert_eq!(
            err(r#"{"files":[],"secret":"s","release":7}"#),
            InventoryError::Release
        );
        assert_eq!(
            err(r#"{"files":[],"secret":"s","release":""}"#),
            InventoryError::Release
        );
        assert_eq!(
            err(r#"{"files":["a","b","a"],"secret":"s"}"#),
            InventoryError::Duplicate("a".into())
        );
        let ok =
            Inventory::parse("x.json", br#"{"files":["lib/a.lua","b"],"secret":"s"}"#).unwrap();
        assert_eq!(ok.files, ["lib/a.lua", "b"]);
    }
}
