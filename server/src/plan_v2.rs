//! The protocol v2 planner: what to send a rota device, decided from content digests.
//!
//! The frames, keys and the session state machine are `rota-wire`'s; this module turns a verified
//! Hello and the device's inventory into the [`Step`]s of a session, and the inventory's `config`
//! object into a [`DeviceConfig`] record.
//!
//! The rule (`docs/protocol.md`):
//! - an inventory file is sent when the device has no file of that name with the same SHA-256;
//! - a staged file with the same name, size and digest as one to send is resumed (the device's store
//!   answers `Begin` with the offset it has); any other staged file is dropped;
//! - a device file the inventory does not name is deleted, except the core overlays
//!   ([`PROTECTED`]), which can be replaced but never removed (a device without them cannot check in);
//! - the inventory's `config`, when present, is sent in `Commit` if its version differs from the one
//!   the device reports;
//! - nothing to do: `NoUpdate`.
//!
//! Which inventory files to send is the rule both protocols share ([`Plan::to_send`]); what is v2's
//! own is the test (same name and SHA-256) and the version each file is given in `Begin`
//! ([`file_version`], from the SHA-256): luaOTA's MD5-derived file numbers are v1's alone.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rota_wire::config::{config_version, DeviceConfig, Link, MAX_CONFIG, MAX_SECRET};
use rota_wire::msg::{state_digest, FileInfo, Hello, Name, STATE_LEN};
use rota_wire::server::{Outgoing, Step};
use rota_wire::MAX_NAME;
use serde_json::{Map, Value};

use crate::fleet::{self, CheckIn, FileRecord, HeapRecord, StagedRecord};
use crate::repo::{Inventory, Plan, PlannedFile};

/// Device files never deleted for being absent from the inventory: the updater itself.
pub use rota_limits::OVERLAYS as PROTECTED;

/// Why an inventory cannot serve a v2 device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A file name over the device's 31-byte limit.
    #[error("`{0}` is longer than {MAX_NAME} bytes, the limit of a rota device's file names")]
    NameTooLong(String),
    /// The `config` object is unusable.
    #[error("config: {0}")]
    Config(String),
}

/// What a v2 session will do, owning what the [`Step`]s borrow.
#[derive(Debug, Default)]
pub struct V2Plan {
    /// Staged leftovers to discard.
    pub drops: Vec<Vec<u8>>,
    /// Device files to delete.
    pub deletes: Vec<Vec<u8>>,
    /// Files to send, in inventory order.
    pub sends: Vec<Arc<PlannedFile>>,
    /// A new config record, if it changes.
    pub config: Option<Vec<u8>>,
}

impl V2Plan {
    /// Nothing to do: the answer is `NoUpdate`.
    pub fn is_empty(&self) -> bool {
        self.drops.is_empty()
            && self.deletes.is_empty()
            && self.sends.is_empty()
            && self.config.is_none()
    }

    /// The session's steps: drops, deletes, files, then `Commit`.
    pub fn steps(&self) -> Vec<Step<'_>> {
        let mut steps: Vec<Step<'_>> = Vec::new();
        steps.extend(self.drops.iter().map(|n| Step::Drop(n)));
        steps.extend(self.deletes.iter().map(|n| Step::Delete(n)));
        steps.extend(self.sends.iter().map(|f| {
            Step::Send(Outgoing {
                name: f.name.as_bytes(),
                version: file_version(&f.digest),
                digest: f.digest,
                data: &f.data,
            })
        }));
        steps.push(Step::Commit(self.config.as_deref()));
        steps
    }
}

/// The version a file is sent with (`Begin`), which the device keeps and reports back in its Hello:
/// rota-release's rule (the first 4 bytes of the file's SHA-256 as served, little endian, never 0),
/// the one a signed release's manifest gives each file too. Equal contents get equal versions, so a
/// copy or a checkout changes none; it is not v1's file number, which is MD5-derived.
pub use rota_release::file_version;

/// Decides what `hello`'s device needs to match `plan` (its inventory's files) and `inventory`'s
/// config.
pub fn decide(
    plan: &Plan,
    inventory: &Inventory,
    device_id: u32,
    hello: &Hello<'_>,
    files: &[FileInfo<'_>],
) -> Result<V2Plan, PlanError> {
    let mut out = V2Plan::default();
    if let Some(f) = plan.name_over(MAX_NAME) {
        return Err(PlanError::NameTooLong(f.name.clone()));
    }
    let wanted = |name: &[u8]| plan.files.iter().find(|f| f.name.as_bytes() == name);
    for s in &hello.staged {
        let keep = wanted(s.name.as_bytes())
            .is_some_and(|f| f.digest == s.digest && f.data.len() as u64 == u64::from(s.size));
        if !keep {
            out.drops.push(s.name.as_bytes().to_vec());
        }
    }
    for f in files {
        let name = f.name.as_bytes();
        let protected = PROTECTED.iter().any(|p| p.as_bytes() == name);
        if wanted(name).is_none() && !protected {
            out.deletes.push(name.to_vec());
        }
    }
    // The one rule of both protocols; a v2 device holds a file when it reports its name and SHA-256.
    out.sends = plan
        .to_send(|f| {
            files
                .iter()
                .any(|d| d.name.as_bytes() == f.name.as_bytes() && d.digest == f.digest)
        })
        .cloned()
        .collect();
    if let Some(config) = &inventory.config {
        let record = config_record(config, device_id, &inventory.secret)?;
        if config_version(&record) != hello.config.0 {
            out.config = Some(record);
        }
    }
    Ok(out)
}

/// A signed release as the server sends it (`Step::Release`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRelease {
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// Its Ed25519 signature.
    pub signature: [u8; 64],
}

/// The application's file name for `inventory`'s devices: its config's `app`, else `app`.
pub fn app_name(inventory: &Inventory) -> String {
    inventory
        .config
        .as_ref()
        .and_then(|c| c.get("app"))
        .and_then(Value::as_str)
        .unwrap_or(rota_limits::APP)
        .to_owned()
}

/// Checks, before anything is sent, that `plan` can run on the device of `hello` and that the device
/// will accept it; returns the signed release to send first, if the device wants one.
///
/// - Every blob (the overlays and the application) must pass the device's own loader checks
///   (`rota_release::check_release`: header, relocations, digest) for the ISA and ABI the device
///   reports. A device reporting ISA 0 runs no overlay blobs (a simulated device) and is not checked.
/// - A device that holds release keys needs the signed release beside the inventory
///   (`rota-sign release`), and it must name exactly `plan`'s files (name, size, SHA-256, version),
///   be for the device's ISA and ABI and not below its security version. Whether the signature is
///   by a key the device trusts is the device's to check: the server holds no keys.
///
/// The error says which file or field, and why.
pub fn check_release(
    plan: &Plan,
    inventory: &Inventory,
    release: Option<&[u8]>,
    hello: &Hello<'_>,
) -> Result<Option<SignedRelease>, String> {
    let app = app_name(inventory);
    let isa = match hello.isa {
        0 => None,
        n => Some(rota_blob::Isa::from_u8(n).ok_or_else(|| {
            format!("the device reports instruction set {n}, which no blob is built for")
        })?),
    };
    if let Some(isa) = isa {
        let names = rota_release::blob_names(app.as_bytes());
        rota_release::check_release(
            plan.files
                .iter()
                .map(|f| (f.name.as_bytes(), f.data.as_slice())),
            &names,
            isa,
            u32::from(hello.abi),
        )
        .map_err(|r| format!("{r} (the device runs {} ABI {})", isa.name(), hello.abi))?;
    }
    if hello.flags & rota_wire::msg::flags::SIGNED == 0 {
        return Ok(None);
    }
    let Some(bytes) = release else {
        return Err(format!(
            "the device holds release keys and `{}` has no signed release beside it (rota-sign release)",
            inventory.file
        ));
    };
    let (manifest, signature) =
        rota_release::split_release(bytes).map_err(|e| format!("the release's manifest: {e}"))?;
    if manifest.len() != plan.files.len() {
        return Err(format!(
            "the release names {} files and the inventory {}: sign the inventory again",
            manifest.len(),
            plan.files.len()
        ));
    }
    for f in &plan.files {
        let entry = manifest.find(f.name.as_bytes()).ok_or_else(|| {
            format!(
                "`{}` is not in the signed release: sign the inventory again",
                f.name
            )
        })?;
        if entry.size as usize != f.data.len()
            || entry.digest != &f.digest
            || entry.version != file_version(&f.digest)
        {
            return Err(format!(
                "`{}` is not the file the release signed: sign the inventory again",
                f.name
            ));
        }
    }
    if isa.is_some_and(|isa| manifest.isa() != isa) {
        return Err(format!(
            "the release is for {}, the device runs another instruction set",
            manifest.isa().name()
        ));
    }
    if hello.isa != 0 && manifest.abi() != u16::from(hello.abi) {
        return Err(format!(
            "the release is for ABI {}, the device's core serves ABI {}",
            manifest.abi(),
            hello.abi
        ));
    }
    if manifest.security_version() < hello.security_version {
        return Err(format!(
            "the release's security version {} is below the device's {} (anti-rollback)",
            manifest.security_version(),
            hello.security_version
        ));
    }
    Ok(Some(SignedRelease {
        manifest: manifest.as_bytes().to_vec(),
        signature: *signature,
    }))
}

/// `steps` with the signed release, if any, first.
pub fn with_release<'a>(release: Option<&'a SignedRelease>, steps: Vec<Step<'a>>) -> Vec<Step<'a>> {
    match release {
        None => steps,
        Some(r) => std::iter::once(Step::Release(&r.manifest, &r.signature))
            .chain(steps)
            .collect(),
    }
}

/// The [`Hello::state`] of a device that holds exactly `plan`'s files as v2 sends them.
pub fn expected_state(plan: &Plan) -> [u8; STATE_LEN] {
    let mut files: Vec<FileInfo<'_>> = plan
        .files
        .iter()
        .filter_map(|f| {
            Some(FileInfo {
                name: Name::new(f.name.as_bytes())?,
                size: u32::try_from(f.data.len()).ok()?,
                version: file_version(&f.digest),
                digest: f.digest,
            })
        })
        .collect();
    state_digest(&mut files)
}

/// Whether the device that sent `hello` holds what the inventory wants (its files, whose state is
/// `expected` ([`expected_state`]), and, when the inventory has a `config`, that config) and has
/// nothing staged: then the answer is `NoUpdate` without asking for its files.
pub fn up_to_date(
    expected: &[u8; STATE_LEN],
    inventory: &Inventory,
    device_id: u32,
    hello: &Hello<'_>,
) -> Result<bool, PlanError> {
    if !hello.staged.is_empty() || hello.state != *expected {
        return Ok(false);
    }
    Ok(match &inventory.config {
        Some(config) => {
            config_version(&config_record(config, device_id, &inventory.secret)?) == hello.config.0
        }
        None => true,
    })
}

fn ipv4(config: &Map<String, Value>, key: &str) -> Result<Option<[u8; 4]>, PlanError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse::<Ipv4Addr>()
            .map(|a| Some(a.octets()))
            .map_err(|_| PlanError::Config(format!("`{key}` must be an IPv4 address, not {s:?}"))),
        Some(other) => Err(PlanError::Config(format!(
            "`{key}` must be an IPv4 address string, not {other}"
        ))),
    }
}

/// The device config record (postcard) an inventory's `config` object describes, for `device_id`
/// with `secret` (neither of which the object may set).
///
/// Keys: `server` (IPv4, required), `port` (default 8266), `leave` (default false), `app` (default
/// `app`), `entry` (default `main`), `ip` (static address; absent or null for DHCP), `gateway`,
/// `netmask`, `dns` (default 0.0.0.0), `protocol` (default 2), `link` (`"tcp"`, the default, or
/// `"serial"`; a device refuses a config that changes its link). Any other key is refused, so a typo
/// is not silently ignored.
pub fn config_record(
    config: &Map<String, Value>,
    device_id: u32,
    secret: &[u8],
) -> Result<Vec<u8>, PlanError> {
    const KEYS: [&str; 13] = [
        "server", "port", "leave", "app", "entry", "ip", "gateway", "netmask", "dns", "protocol",
        "link", "trials", "keys",
    ];
    let bad = |m: String| PlanError::Config(m);
    if let Some(key) = config.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown key `{key}` (`device_id` and `secret` come from the inventory)"
        )));
    }
    let server = ipv4(config, "server")?.ok_or_else(|| bad("`server` is required".into()))?;
    let int = |key: &str, default: u64, max: u64| match config.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|&n| n <= max)
            .ok_or_else(|| bad(format!("`{key}` must be an integer up to {max}"))),
    };
    let text = |key: &str, default: &str| -> Result<heapless::String<MAX_NAME>, PlanError> {
        let s = match config.get(key) {
            None => default,
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(bad(format!("`{key}` must be a string"))),
        };
        s.try_into()
            .map_err(|_| bad(format!("`{key}` is longer than {MAX_NAME} bytes")))
    };
    let leave = match config.get("leave") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) if v.as_u64() == Some(0) => false,
        Some(v) if v.as_u64() == Some(1) => true,
        Some(_) => return Err(bad("`leave` must be a boolean".into())),
    };
    let protocol = int("protocol", 2, 2)? as u8;
    if protocol == 0 {
        return Err(bad("`protocol` must be 1 or 2".into()));
    }
    let link = match config.get("link") {
        None => Link::Tcp,
        Some(Value::String(s)) if s == "tcp" => Link::Tcp,
        Some(Value::String(s)) if s == "serial" => Link::Serial,
        Some(_) => return Err(bad("`link` must be \"tcp\" or \"serial\"".into())),
    };
    let keys = match config.get("keys") {
        None => heapless::Vec::new(),
        Some(Value::Array(keys)) => {
            let mut out = heapless::Vec::new();
            for key in keys {
                let key = key
                    .as_str()
                    .and_then(rota_release::from_hex::<32>)
                    .ok_or_else(|| {
                        bad("`keys` must hold Ed25519 public keys, 64 hex digits each".into())
                    })?;
                out.push(key).map_err(|_| {
                    bad(format!(
                        "`keys` holds at most {} keys",
                        rota_wire::config::MAX_KEYS
                    ))
                })?;
            }
            out
        }
        Some(_) => return Err(bad("`keys` must be an array of hex strings".into())),
    };
    let record = DeviceConfig {
        device_id,
        secret: heapless::Vec::from_slice(secret).map_err(|_| {
            bad(format!(
                "the secret is {} bytes; a device config holds at most {MAX_SECRET}",
                secret.len()
            ))
        })?,
        server,
        port: int("port", 8266, u64::from(u16::MAX))? as u16,
        leave,
        app: text("app", "app")?,
        entry: text("entry", "main")?,
        ip: ipv4(config, "ip")?,
        gateway: ipv4(config, "gateway")?.unwrap_or_default(),
        netmask: ipv4(config, "netmask")?.unwrap_or_default(),
        dns: ipv4(config, "dns")?.unwrap_or_default(),
        protocol,
        link,
        trials: int(
            "trials",
            u64::from(rota_wire::config::DEFAULT_TRIALS),
            u64::from(u8::MAX),
        )? as u8,
        keys,
        chk: heapless::String::new(),
        files: heapless::Vec::new(),
    };
    let mut buf = [0u8; MAX_CONFIG + 64];
    let n = record
        .encode(&mut buf)
        .map_err(|e| bad(format!("record does not fit: {e}")))?;
    Ok(buf[..n].to_vec())
}

/// The fleet record of a verified Hello; `files` are the device's files when the server knows them
/// (its state digest matched the plan's, or it listed them).
pub fn check_in_record(
    hello: &Hello<'_>,
    files: Option<&[FileRecord]>,
    peer: &str,
    outcome: &str,
) -> CheckIn {
    let name = |n: &[u8]| String::from_utf8_lossy(n).into_owned();
    let files = files.map(<[FileRecord]>::to_vec).unwrap_or_default();
    CheckIn {
        device: u64::from(hello.device_id),
        time: fleet::now(),
        peer: peer.to_owned(),
        protocol: 2,
        nonce: Some(hello.nonce),
        app_version: files
            .iter()
            .find(|f| f.name == rota_limits::APP)
            .map(|f| f.version),
        files,
        staged: hello
            .staged
            .iter()
            .map(|s| StagedRecord {
                name: name(s.name.as_bytes()),
                size: s.size,
                done: s.done,
                digest: fleet::hex(&s.digest),
            })
            .collect(),
        heap: hello
            .heap
            .phases
            .iter()
            .enumerate()
            .map(|(phase, h)| HeapRecord {
                phase: phase as u8,
                used: 0,
                peak: h.heap,
                stack_peak: h.stack,
            })
            .chain(std::iter::once(HeapRecord {
                phase: residue_phase(),
                used: hello.heap.residue,
                peak: 0,
                stack_peak: 0,
            }))
            .collect(),
        signed: Some(hello.flags & rota_wire::msg::flags::SIGNED != 0),
        security_version: Some(hello.security_version),
        state: Some(fleet::hex(&hello.state)),
        rollbacks: hello
            .rollback
            .iter()
            .map(|r| fleet::RollbackRecord {
                from: r.from,
                to: r.to,
                reason: r.reason,
                phase: r.phase,
                time: fleet::now(),
                state: None,
            })
            .collect(),
        held: None,
        installed: None,
        outcome: outcome.to_owned(),
        release: None,
        trial: Some(hello.flags & rota_wire::msg::flags::TRIAL != 0),
    }
}

/// The heap report's residue phase number in a fleet record (after the boot and every overlay).
pub fn residue_phase() -> u8 {
    (rota_limits::OVERLAYS.len() + 1) as u8
}

/// The fleet form of the files a device listed, by name.
pub fn file_records(files: &[FileInfo<'_>], plan: &Plan, release: &str) -> Vec<FileRecord> {
    let mut records: Vec<FileRecord> = files
        .iter()
        .map(|f| {
            let name = String::from_utf8_lossy(f.name.as_bytes()).into_owned();
            let served = plan
                .files
                .iter()
                .any(|p| p.name == name && p.digest == f.digest);
            FileRecord {
                name,
                size: f.size,
                version: f.version,
                digest: fleet::hex(&f.digest),
                release: served.then(|| release.to_owned()),
            }
        })
        .collect();
    records.sort_by(|a, b| a.name.cmp(&b.name));
    records
}

/// The fleet form of `plan`'s files as v2 sends them, by name, each from `release`.
pub fn plan_records(plan: &Plan, release: &str) -> Vec<FileRecord> {
    let mut records: Vec<FileRecord> = plan
        .files
        .iter()
        .map(|f| FileRecord {
            name: f.name.clone(),
            size: f.data.len() as u32,
            version: file_version(&f.digest),
            digest: fleet::hex(&f.digest),
            release: Some(release.to_owned()),
        })
        .collect();
    records.sort_by(|a, b| a.name.cmp(&b.name));
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Action;
    use rota_wire::msg::{FileInfo, Name, StagedInfo};

    fn planned(name: &str, data: &[u8]) -> Arc<PlannedFile> {
        Arc::new(PlannedFile {
            name: name.into(),
            // v1's number: v2 never reads it.
            number: 0,
            data: data.to_vec(),
            action: Action::Download,
            trimmed: false,
            digest: rota_wire::sha256(data),
        })
    }

    fn inventory(config: Option<Value>) -> Inventory {
        Inventory {
            file: "ESP-1.json".into(),
            files: vec![],
            secret: b"s".to_vec(),
            config: config.and_then(|c| c.as_object().cloned()),
            release: None,
        }
    }

    /// A device's check-in: its Hello and the files it lists when asked.
    struct Device<'a>(Hello<'a>, Vec<FileInfo<'a>>);

    fn hello<'a>(files: &[(&'a str, &[u8])], staged: &[(&'a str, &[u8], u32)]) -> Device<'a> {
        let mut h = Hello {
            device_id: 1,
            nonce: 1,
            isa: 0,
            abi: 0,
            flags: 0,
            config: rota_wire::msg::ConfigVersion(0),
            state: [0; 16],
            security_version: 0,
            staged: Default::default(),
            rollback: None,
            heap: Default::default(),
        };
        let list = files
            .iter()
            .map(|(n, d)| FileInfo {
                name: Name::new(n.as_bytes()).unwrap(),
                size: d.len() as u32,
                version: 0,
                digest: rota_wire::sha256(d),
            })
            .collect();
        for (n, d, done) in staged {
            let info = StagedInfo {
                name: Name::new(n.as_bytes()).unwrap(),
                size: d.len() as u32,
                digest: rota_wire::sha256(d),
                done: *done,
            };
            h.staged.push(info).unwrap();
        }
        Device(h, list)
    }

    fn dec(plan: &Plan, inv: &Inventory, d: &Device<'_>) -> Result<V2Plan, PlanError> {
        decide(plan, inv, 1, &d.0, &d.1)
    }

    #[test]
    fn decides_from_digests() {
        let plan = Plan {
            files: vec![planned("app", b"new app"), planned("data", b"same")],
            chk: String::new(),
        };
        let inv = inventory(None);
        // Up to date, plus a protected overlay the inventory does not name.
        let h = hello(
            &[("app", b"new app"), ("data", b"same"), ("init", b"x")],
            &[],
        );
        assert!(dec(&plan, &inv, &h).unwrap().is_empty());
        // Changed, extra, and two staged files: one to resume, one stale.
        let h = hello(
            &[("app", b"old app"), ("data", b"same"), ("junk", b"j")],
            &[("app", b"new app", 3), ("data", b"other", 1)],
        );
        let p = dec(&plan, &inv, &h).unwrap();
        assert_eq!(p.drops, [b"data".to_vec()]);
        assert_eq!(p.deletes, [b"junk".to_vec()]);
        assert_eq!(p.sends.len(), 1);
        assert_eq!(p.sends[0].name, "app");
        let steps = p.steps();
        assert!(matches!(steps.last(), Some(Step::Commit(None))));
        assert_eq!(steps.len(), 4);
        // Names over 31 bytes are refused for v2.
        let long = Plan {
            files: vec![planned(&"n".repeat(32), b"x")],
            chk: String::new(),
        };
        assert!(matches!(
            dec(&long, &inv, &hello(&[], &[])),
            Err(PlanError::NameTooLong(_))
        ));
    }

    #[test]
    fn versions_come_from_the_sha256_not_from_v1_numbers() {
        let plan = Plan {
            files: vec![planned("app", b"new app"), planned("data", b"")],
            chk: String::new(),
        };
        let p = dec(&plan, &inventory(None), &hello(&[], &[])).unwrap();
        let versions: Vec<u32> = p
            .steps()
            .iter()
            .filter_map(|s| match s {
                Step::Send(o) => Some(o.version),
                _ => None,
            })
            .collect();
        let sha = |d: &[u8]| rota_wire::sha256(d);
        let le = |d: [u8; 32]| u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
        assert_eq!(versions, [le(sha(b"new app")), le(sha(b""))]);
        // SHA-256("") = e3b0c442...: 0x42c4b0e3.
        assert_eq!(file_version(&sha(b"")), 0x42c4_b0e3);
        assert_eq!(file_version(&[0; 32]), 1, "never 0");
    }

    #[test]
    fn config_is_sent_only_when_it_changes() {
        let plan = Plan {
            files: vec![],
            chk: String::new(),
        };
        let inv = inventory(Some(
            serde_json::json!({"server": "10.0.2.2", "ip": "10.0.2.15", "leave": true}),
        ));
        let p = dec(&plan, &inv, &hello(&[], &[])).unwrap();
        let record = p.config.clone().unwrap();
        let config = DeviceConfig::decode(&record).unwrap();
        assert_eq!(config.server, [10, 0, 2, 2]);
        assert_eq!(config.ip, Some([10, 0, 2, 15]));
        assert_eq!(
            (config.port, config.leave, config.protocol),
            (8266, true, 2)
        );
        assert_eq!(config.secret.as_slice(), b"s");
        assert_eq!(config.app.as_str(), "app");
        assert_eq!(
            config.link,
            Link::Tcp,
            "TCP unless the inventory says otherwise"
        );
        let serial = inventory(Some(
            serde_json::json!({"server": "10.0.2.2", "link": "serial"}),
        ));
        let serial_record = dec(&plan, &serial, &hello(&[], &[]))
            .unwrap()
            .config
            .unwrap();
        assert_eq!(
            DeviceConfig::decode(&serial_record).unwrap().link,
            Link::Serial
        );
        let mut h = hello(&[], &[]);
        h.0.config = rota_wire::msg::ConfigVersion(config_version(&record));
        assert!(dec(&plan, &inv, &h).unwrap().is_empty());

        for bad in [
            serde_json::json!({"port": 1}),
            serde_json::json!({"server": "example.com"}),
            serde_json::json!({"server": "1.2.3.4", "secret": "x"}),
            serde_json::json!({"server": "1.2.3.4", "port": 70000}),
            serde_json::json!({"server": "1.2.3.4", "app": "a".repeat(32)}),
            serde_json::json!({"server": "1.2.3.4", "protocol": 3}),
            serde_json::json!({"server": "1.2.3.4", "link": "wifi"}),
            serde_json::json!({"server": "1.2.3.4", "link": 1}),
        ] {
            let inv = inventory(Some(bad.clone()));
            assert!(
                matches!(
                    dec(&plan, &inv, &hello(&[], &[])),
                    Err(PlanError::Config(_))
                ),
                "{bad}"
            );
        }
        let mut inv = inventory(Some(serde_json::json!({"server": "1.2.3.4"})));
        inv.secret = vec![b'k'; 65];
        assert!(matches!(
            dec(&plan, &inv, &hello(&[], &[])),
            Err(PlanError::Config(_))
        ));
    }
}
