//! What a device should hold: each inventory file as the device receives it (`--SAFETRIM` applied,
//! SHA-256, v1 number, `dl` or `cm`), and the one rule both protocols decide what to send by.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::content_number;
use crate::trim;

/// How a file is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `dl`: stored as is.
    Download,
    /// `cm`: a `.lua` source the device compiles to `.lc`.
    Compile,
}

/// One file as the device will receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Its name (relative path).
    pub name: String,
    /// Its v1 file number ([`content_number`] of `data`): what luaOTA's `files` map and `chk` hold.
    /// Protocol v2 does not use it.
    pub number: u32,
    /// The bytes sent (after `--SAFETRIM`, if asked for).
    pub data: Vec<u8>,
    /// `dl` or `cm`.
    pub action: Action,
    /// Whether `--SAFETRIM` was applied.
    pub trimmed: bool,
    /// SHA-256 of `data` (protocol v2 compares and checks files by it).
    pub digest: [u8; 32],
}

/// What a device should hold: every inventory file, numbered, and the (v1) fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The files in inventory order.
    pub files: Vec<Arc<PlannedFile>>,
    /// The v1 fingerprint, `md5_hex("name1:n1:name2:n2:...")`.
    pub chk: String,
}

impl Plan {
    /// The files the device must be sent, in inventory order: each one unless `holds(file)` says the
    /// device already has exactly that file. Both protocols decide by this one rule; each says what
    /// "exactly" means (v1: the device echoes the file's number; v2: it holds a file of that name with
    /// the same SHA-256).
    pub fn to_send<'p>(
        &'p self,
        holds: impl Fn(&PlannedFile) -> bool + 'p,
    ) -> impl Iterator<Item = &'p Arc<PlannedFile>> + 'p {
        self.files.iter().filter(move |f| !holds(f))
    }

    /// The first file whose name is over `limit` bytes, if any (neither protocol's devices can hold it).
    pub fn name_over(&self, limit: usize) -> Option<&PlannedFile> {
        self.files
            .iter()
            .map(Arc::as_ref)
            .find(|f| f.name.len() > limit)
    }

    /// The `files` object of the `restart` record: exactly the inventory (pruned of anything else).
    pub fn file_numbers(&self) -> Map<String, Value> {
        self.files
            .iter()
            .map(|f| (f.name.clone(), Value::from(f.number)))
            .collect()
    }
}

/// A repository file as the device receives it.
pub(super) fn prepare(name: &str, raw: Vec<u8>) -> PlannedFile {
    let is_lua = name.ends_with(".lua");
    let trimmed = is_lua && trim::wants_trim(&raw);
    let data = if trimmed { trim::safetrim(&raw) } else { raw };
    PlannedFile {
        name: name.to_owned(),
        number: content_number(&data),
        digest: rota_wire::sha256(&data),
        data,
        action: if is_lua {
            Action::Compile
        } else {
            Action::Download
        },
        trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_send_keeps_inventory_order_and_skips_what_the_device_holds() {
        let file = |name: &str| Arc::new(prepare(name, name.as_bytes().to_vec()));
        let plan = Plan {
            files: vec![file("a"), file("b.lua"), file("c"), file("lib/d")],
            chk: String::new(),
        };
        let names = |holds: &dyn Fn(&PlannedFile) -> bool| -> Vec<String> {
            plan.to_send(holds).map(|f| f.name.clone()).collect()
        };
        assert_eq!(names(&|_| false), ["a", "b.lua", "c", "lib/d"]);
        assert_eq!(names(&|f| f.name != "c" && f.name != "a"), ["a", "c"]);
        assert!(names(&|_| true).is_empty());
        assert_eq!(plan.name_over(4).map(|f| f.name.as_str()), Some("b.lua"));
        assert_eq!(plan.name_over(5), None);
    }
}
