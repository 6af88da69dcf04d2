//! The `restart` record, built so that it can never brick a device.
//!
//! The record is the HI minus `id` (and minus the device's old `a`, `chk`, `files`), plus `"a":"restart"`,
//! the new `chk` and `files` pruned to the inventory. The device stores it, minus `a` and plus its secret,
//! as `config.json`, which its next boot reads with ONE 1024-byte read. So the record must fit one
//! 1460-byte segment and the stored config must stay under [`MAX_CONFIG`] bytes; otherwise nothing is sent.
//!
//! Every file name the device is sent must also be one NodeMCU can open ([`check_names`]): `file.open`
//! raises `filename invalid` above [`rota_wire::MAX_NAME`] (31) bytes, and the device reboots, at every
//! boot, on the same file.

use serde_json::{Map, Value};

use crate::repo::Plan;
use crate::v1::{self, HiRepr};

/// Largest config the server lets a device store (the client reads back at most 1024 bytes).
pub const MAX_CONFIG: usize = 1000;

/// An update that could brick a NodeMCU device (a `restart` that would not fit, a file it cannot
/// open), refused before anything is sent; the message says what to shorten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartError {
    /// A file name the device's `file.open` refuses (`filename invalid`).
    #[error("`{name}` refused: its name is {len} bytes, over NodeMCU's {limit}-byte file name limit (`file.open` raises `filename invalid` and the device reboots at every boot); nothing sent; shorten the name in the repository and the inventory")]
    NameTooLong {
        /// The file.
        name: String,
        /// Its name's length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The record would not fit in one segment.
    #[error("restart record refused: {size} bytes on the wire, over the {limit}-byte segment; shorten {advice}")]
    Record {
        /// Bytes on the wire.
        size: usize,
        /// The limit.
        limit: usize,
        /// The biggest parts.
        advice: String,
    },
    /// The stored config would be too long to read back.
    #[error("restart record refused: the device's config would be up to {size} bytes, over the {limit}-byte limit; shorten {advice}")]
    Config {
        /// Worst-case config size.
        size: usize,
        /// The limit.
        limit: usize,
        /// The biggest parts.
        advice: String,
    },
}

/// Checks that the device can open every file of `plan`: names of at most [`rota_wire::MAX_NAME`]
/// bytes. The first name over it is the error.
pub fn check_names(plan: &Plan) -> Result<(), RestartError> {
    match plan.name_over(rota_wire::MAX_NAME) {
        Some(f) => Err(RestartError::NameTooLong {
            name: f.name.clone(),
            len: f.name.len(),
            limit: rota_wire::MAX_NAME,
        }),
        None => Ok(()),
    }
}

/// The JSON of the `restart` record for `hi` and `plan`, checked against both limits using `secret`,
/// and every name against the device's file name limit ([`check_names`]).
pub fn build(hi: &HiRepr, plan: &Plan, secret: &[u8]) -> Result<String, RestartError> {
    check_names(plan)?;
    let mut record: Map<String, Value> = hi
        .config
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "id" | "a" | "chk" | "files" | "secret"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    record.insert("a".into(), "restart".into());
    record.insert("chk".into(), plan.chk.clone().into());
    record.insert("files".into(), Value::Object(plan.file_numbers()));
    let json = Value::Object(record.clone()).to_string();

    let wire = v1::record_len(json.len(), 0);
    if wire > v1::MAX_SEGMENT {
        return Err(RestartError::Record {
            size: wire,
            limit: v1::MAX_SEGMENT,
            advice: advice(&record),
        });
    }
    let mut stored = record;
    stored.shift_remove("a");
    stored.insert(
        "secret".into(),
        String::from_utf8_lossy(secret).into_owned().into(),
    );
    let size = worst_case_len(&Value::Object(stored.clone()).to_string());
    if size > MAX_CONFIG {
        return Err(RestartError::Config {
            size,
            limit: MAX_CONFIG,
            advice: advice(&stored),
        });
    }
    Ok(json)
}

/// An upper bound of the length another JSON encoder may give the same value: `/` may be escaped as `\/`,
/// and a non-ASCII character as `\uXXXX` (two of them beyond the basic plane).
fn worst_case_len(json: &str) -> usize {
    json.chars()
        .map(|c| match c {
            '/' => 2,
            c if c.is_ascii() => 1,
            c if c.len_utf16() == 2 => 12,
            _ => 6,
        })
        .sum()
}

/// Names the three biggest fields, with their sizes, and the longest file names.
fn advice(obj: &Map<String, Value>) -> String {
    let mut parts: Vec<(usize, String)> = obj
        .iter()
        .map(|(k, v)| {
            let size = k.len() + 3 + worst_case_len(&v.to_string());
            match v {
                Value::Object(files) if k == "files" => {
                    let longest = files.keys().max_by_key(|n| n.len()).map_or("", String::as_str);
                    (
                        size,
                        format!(
                            "`files` ({size} bytes for {} inventory files; longest name `{longest}`)",
                            files.len()
                        ),
                    )
                }
                _ => (size, format!("`{k}` ({size} bytes)")),
            }
        })
        .collect();
    parts.sort_by_key(|p| std::cmp::Reverse(p.0));
    let names: Vec<String> = parts.into_iter().take(3).map(|(_, s)| s).collect();
    format!(
        "the inventory's file list or names, or the device config; biggest parts: {}",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{Action, PlannedFile};
    use std::sync::Arc;

    fn hi(json: &str) -> HiRepr {
        HiRepr::parse(v1::parse_object(json.as_bytes()).unwrap()).unwrap()
    }

    fn plan(names: &[&str]) -> Plan {
        let files = names
            .iter()
            .map(|n| {
                Arc::new(PlannedFile {
                    name: n.to_string(),
                    number: 7,
                    data: vec![],
                    action: Action::Download,
                    trimmed: false,
                    digest: [0; 32],
                })
            })
            .collect();
        Plan {
            chk: "0123456789abcdef0123456789abcdef".into(),
            files,
        }
    }

    #[test]
    fn restart_is_hi_minus_id_plus_chk_and_pruned_files() {
        let hi = hi(
            r#"{"leave":0,"port":8266,"ssid":"S","spwd":"P","server":"h","chk":"old","files":{"gone.lua":1,"a":2},"id":11223344,"a":"HI"}"#,
        );
        let json = build(&hi, &plan(&["a", "b"]), b"k").unwrap();
        assert_eq!(
            json,
            r#"{"leave":0,"port":8266,"ssid":"S","spwd":"P","server":"h","a":"restart","chk":"0123456789abcdef0123456789abcdef","files":{"a":7,"b":7}}"#
        );
    }

    #[test]
    fn oversized_record_is_refused_with_advice() {
        let names: Vec<String> = (0..60)
            .map(|i| format!("lib/module_number_{i}.lua"))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let err = build(&hi(r#"{"id":1,"a":"HI"}"#), &plan(&names), b"k").unwrap_err();
        let RestartError::Record { size, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(*size > v1::MAX_SEGMENT);
        let msg = err.to_string();
        assert!(
            msg.contains("`files`") && msg.contains("60 inventory files"),
            "{msg}"
        );
    }

    #[test]
    fn config_over_1000_bytes_is_refused() {
        // Record fits a segment, but record + secret exceeds the config limit.
        let hi = hi(&format!(
            r#"{{"ssid":"{}","id":1,"a":"HI"}}"#,
            "s".repeat(850)
        ));
        let json = build(&hi, &plan(&["a"]), b"k").unwrap();
        assert!(json.len() < MAX_CONFIG);
        let err = build(&hi, &plan(&["a"]), &[b'k'; 200]).unwrap_err();
        assert!(matches!(err, RestartError::Config { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("`secret`") && msg.contains("`ssid`"), "{msg}");
    }

    #[test]
    fn names_over_31_bytes_are_refused() {
        let long = "lib/a_module_name_of_32_bytes.lc";
        let err = build(&hi(r#"{"id":1,"a":"HI"}"#), &plan(&["a", long]), b"k").unwrap_err();
        assert_eq!(
            err,
            RestartError::NameTooLong {
                name: long.into(),
                len: 32,
                limit: 31
            }
        );
        assert!(err.to_string().contains(long), "{err}");
        assert!(check_names(&plan(&["a", &long[..31]])).is_ok());
    }

    #[test]
    fn worst_case_counts_escapes() {
        assert_eq!(worst_case_len("a/b"), 4);
        assert_eq!(worst_case_len("é"), 6);
        assert_eq!(worst_case_len("😀"), 12);
    }
}
