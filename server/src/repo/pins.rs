//! Pins: which release a device is served. The caller's override, else the device's own inventory
//! (`"release": "v2"`), else its group in `groups.json` (`{"groups": {"canary": {"devices": [1, 2],
//! "release": "v2"}}}`), else the control tree.

use std::sync::Arc;

use serde_json::Value;

use super::snapshot::Deps;
use super::{Inventory, Repo, RepoError};

/// The groups file, in the control tree.
pub const GROUPS: &str = "groups.json";

/// Why `groups.json` is unusable; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupsError {
    /// Not JSON, or not an object.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// A field of the wrong type.
    #[error("`{field}` must be {want}")]
    Field {
        /// The field (`groups`, `groups.canary.devices`).
        field: String,
        /// What it must be.
        want: &'static str,
    },
}

/// Why a pinned release cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The revision names no commit (now).
    #[error("unknown revision `{rev}`: {why}")]
    UnknownRevision {
        /// The revision given.
        rev: String,
        /// What git said.
        why: String,
    },
    /// The repository directory is in no git repository, so no revision can be served.
    #[error("revision `{rev}` asked for, but {dir} is not in a git repository")]
    NotGit {
        /// The revision given.
        rev: String,
        /// The repository directory.
        dir: String,
    },
    /// The device's inventory file does not exist at the revision.
    #[error("`{file}` does not exist at revision `{rev}`")]
    InventoryMissing {
        /// The inventory file (the control tree's name for the device).
        file: String,
        /// The revision.
        rev: String,
    },
    /// The device is named by two groups.
    #[error("the device is in groups `{0}` and `{1}` of {GROUPS}; a device belongs to one group at most")]
    TwoGroups(String, String),
    /// The release at the revision cannot serve the device (a missing file, a bad inventory, a bad
    /// ELF file there).
    #[error("at revision `{rev}`: {error}")]
    Release {
        /// The revision.
        rev: String,
        /// What is wrong there.
        error: Box<RepoError>,
    },
}

/// One group: its devices and their release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Group {
    name: String,
    devices: Vec<u64>,
    release: String,
}

/// The parsed `groups.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Groups(Vec<Group>);

impl Groups {
    /// Parses `groups.json`'s bytes.
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, GroupsError> {
        let field = |field: String, want| GroupsError::Field { field, want };
        let obj = crate::v1::parse_object(bytes).map_err(|e| GroupsError::Json(e.to_string()))?;
        let groups = obj
            .get("groups")
            .and_then(Value::as_object)
            .ok_or_else(|| field("groups".into(), "an object of groups"))?;
        let mut out = Vec::with_capacity(groups.len());
        for (name, group) in groups {
            let at = |key: &str| format!("groups.{name}.{key}");
            let devices = group
                .get("devices")
                .and_then(Value::as_array)
                .ok_or_else(|| field(at("devices"), "an array of device ids"))?
                .iter()
                .map(|d| {
                    d.as_u64()
                        .ok_or_else(|| field(at("devices"), "an array of device ids"))
                })
                .collect::<Result<Vec<u64>, _>>()?;
            let release = group
                .get("release")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| field(at("release"), "a branch, tag or commit name"))?;
            out.push(Group {
                name: name.clone(),
                devices,
                release: release.to_owned(),
            });
        }
        Ok(Groups(out))
    }

    /// The one group naming `device`, if any.
    fn of(&self, device: u64) -> Result<Option<&Group>, PinError> {
        let mut named = self.0.iter().filter(|g| g.devices.contains(&device));
        match (named.next(), named.next()) {
            (Some(a), Some(b)) => Err(PinError::TwoGroups(a.name.clone(), b.name.clone())),
            (first, _) => Ok(first),
        }
    }
}

/// A pin: the revision, and the field that gave it (for errors).
pub(super) struct Pin {
    pub(super) rev: String,
    pub(super) field: String,
}

impl Repo {
    /// The control tree's groups (none without `groups.json`).
    fn groups(&self, deps: &mut Deps) -> Result<Arc<Groups>, RepoError> {
        let parse = |bytes: Vec<u8>| {
            Groups::parse(&bytes)
                .map(Arc::new)
                .map_err(RepoError::Groups)
        };
        let tree = self.inner.control;
        let groups = self.load(
            &self.inner.groups,
            tree,
            GROUPS,
            super::MAX_INVENTORY,
            deps,
            parse,
        )?;
        Ok(groups.unwrap_or_default())
    }

    /// Each group of the control tree's `groups.json` with its devices (blocking: it may read the
    /// file), for rollouts whose cohort is a group.
    pub fn group_members(&self) -> Result<Vec<(String, Vec<u64>)>, RepoError> {
        let groups = self.groups(&mut Deps::default())?;
        Ok(groups
            .0
            .iter()
            .map(|g| (g.name.clone(), g.devices.clone()))
            .collect())
    }

    /// The pin of device `id` whose control inventory is `inventory`: the caller's override, its
    /// inventory's `release`, its group's, or none (the control tree).
    pub(super) fn pin(
        &self,
        id: u64,
        inventory: &Inventory,
        override_rev: Option<&str>,
        deps: &mut Deps,
    ) -> Result<Option<Pin>, RepoError> {
        if let Some(rev) = override_rev {
            return Ok(Some(Pin {
                rev: rev.to_owned(),
                field: "override".into(),
            }));
        }
        if let Some(rev) = &inventory.release {
            return Ok(Some(Pin {
                rev: rev.clone(),
                field: format!("{}: release", inventory.file),
            }));
        }
        let groups = self.groups(deps)?;
        let group = groups.of(id).map_err(|error| RepoError::Pin {
            device: id,
            field: format!("{GROUPS}: groups"),
            error,
        })?;
        Ok(group.map(|g| Pin {
            rev: g.release.clone(),
            field: format!("{GROUPS}: groups.{}.release", g.name),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_errors_name_the_field() {
        let err = |json: &str| Groups::parse(json.as_bytes()).unwrap_err();
        assert!(matches!(err("[]"), GroupsError::Json(_)));
        assert_eq!(
            err(r#"{"groups": []}"#),
            GroupsError::Field {
                field: "groups".into(),
                want: "an object of groups"
            }
        );
        assert_eq!(
            err(r#"{"groups": {"canary": {"devices": [1, "2"], "release": "v2"}}}"#),
            GroupsError::Field {
                field: "groups.canary.devices".into(),
                want: "an array of device ids"
            }
        );
        assert_eq!(
            err(r#"{"groups": {"canary": {"devices": [1]}}}"#),
            GroupsError::Field {
                field: "groups.canary.release".into(),
                want: "a branch, tag or commit name"
            }
        );
        let groups =
            Groups::parse(br#"{"groups": {"a": {"devices": [1, 2], "release": "v1"}, "b": {"devices": [2], "release": "v2"}}}"#)
                .unwrap();
        assert_eq!(
            groups.of(1).unwrap().map(|g| g.release.as_str()),
            Some("v1")
        );
        assert_eq!(groups.of(3).unwrap(), None);
        assert!(matches!(groups.of(2), Err(PinError::TwoGroups(a, b)) if a == "a" && b == "b"));
    }
}
