//! The fleet: each device's last check-in, kept in the repository's state directory so an operator can
//! see every device (`rota-server fleet DIR`).
//!
//! ```text
//! <repo>/.rota/devices/<id>.json    the last check-in of device <id> (JSON)
//! <repo>/.rota/devices/<id>.nonce   the nonce floor of device <id>: the last nonce accepted (JSON)
//! <repo>/.rota/devices/<id>.lock    serialises check-ins of one device (across processes too)
//! <repo>/.rota/devices/.<id>.json.<pid>.<n>.tmp   a write in progress (or a crash's leftover)
//! ```
//! A record is written only for a device whose Hello verified with its own secret, so a stranger
//! cannot fill the directory. A protocol v2 Hello whose device nonce is not above the last one
//! accepted is a replay and is refused ([`FleetError::Replay`]). The check and the update happen under
//! an exclusive lock of the device's lock file, so two sessions (or two `serve-stdio` processes) can
//! never both accept the same nonce. Both files are only ever written by [`durable::replace`]
//! (temporary file, fsync, rename, fsync of the directory): a crash at any moment leaves each of them
//! old or new, never torn, and a reader never sees half a file. Temporary files are never read as
//! state; those a crash left behind are removed when `serve` starts ([`Fleet::remove_leftovers`]).
//!
//! Replay protection fails closed. The last accepted nonce (the *floor*) is kept in its own small
//! file, apart from the record, written (durably) before the record, so a record that is torn,
//! emptied or garbled anyway (a disk error, a hand edit) can never lower it: such a record is
//! logged and ignored, the floor still refuses old Hellos, and the device's next check-in writes a
//! whole record again. An unreadable floor refuses every check-in of that device
//! ([`FleetError::Floor`]) until an operator repairs it, and so does a missing floor beside an
//! unreadable record ([`FleetError::Unknown`]): the last nonce is then unknown. A record without a
//! floor (state written before the floor existed) gives its nonce as the floor.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::durable;

/// One file of a check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Its name.
    pub name: String,
    /// Its size.
    pub size: u32,
    /// Its version (v2: the version the server sent it with, `plan_v2::file_version` of its SHA-256; v1:
    /// the number the device echoed).
    pub version: u32,
    /// SHA-256, lowercase hex (v2 only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

/// One staged (partly received) file of a check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedRecord {
    /// Its name.
    pub name: String,
    /// Its full size.
    pub size: u32,
    /// Bytes staged.
    pub done: u32,
    /// The digest it must end with, lowercase hex.
    pub digest: String,
}

/// The heap report of one phase of the device's last boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeapRecord {
    /// The device's phase number.
    pub phase: u8,
    /// Heap in use at the phase's end.
    pub used: u32,
    /// Peak heap.
    pub peak: u32,
    /// Peak stack.
    pub stack_peak: u32,
}

/// A rollback a device reported: its core went back from generation `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRecord {
    /// The generation that was on trial.
    pub from: u32,
    /// The generation it went back to.
    pub to: u32,
    /// Why (`rota_abi::rollback`: 1 panic, 2 fault, 3 not confirmed).
    pub reason: u8,
    /// The boot phase the last trial boot ended in.
    pub phase: u8,
    /// When the server first heard of it.
    pub time: u64,
    /// The installed-files digest (hex) of the release rolled back, when this server installed it.
    pub state: Option<String>,
}

impl RollbackRecord {
    /// `generation 7 -> 6 (app panicked)`, in the words of the device's own rollback line.
    pub fn describe(&self) -> String {
        use rota_abi::rollback;
        let why = match self.reason {
            rollback::PANIC | rollback::FAULT => format!(
                "{} {}",
                rollback::phase_name(self.phase),
                rollback::describe(self.reason)
            ),
            _ => rollback::describe(self.reason).to_owned(),
        };
        format!("generation {} -> {} ({why})", self.from, self.to)
    }
}

/// A device's last check-in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckIn {
    /// The device id.
    pub device: u64,
    /// When, in seconds since the Unix epoch.
    pub time: u64,
    /// Who connected.
    pub peer: String,
    /// 1 (luaOTA) or 2 (rota).
    pub protocol: u8,
    /// The v2 device nonce (boot counter) of this check-in.
    #[serde(default)]
    pub nonce: Option<u32>,
    /// The application's version (v2).
    #[serde(default)]
    pub app_version: Option<u32>,
    /// The files the device reported.
    pub files: Vec<FileRecord>,
    /// The staged files it reported (v2).
    #[serde(default)]
    pub staged: Vec<StagedRecord>,
    /// Its last boot's heap report (v2).
    #[serde(default)]
    pub heap: Vec<HeapRecord>,
    /// Whether it holds release keys, so commits only signed releases (v2).
    #[serde(default)]
    pub signed: Option<bool>,
    /// The highest security version it has committed (v2).
    #[serde(default)]
    pub security_version: Option<u32>,
    /// The digest of its installed files it reported (v2, hex).
    #[serde(default)]
    pub state: Option<String>,
    /// Every rollback it reported, oldest first (kept across check-ins).
    #[serde(default)]
    pub rollbacks: Vec<RollbackRecord>,
    /// The installed-files digest (hex) of a release this device rolled back: not offered to it
    /// again (kept across check-ins until the release changes).
    #[serde(default)]
    pub held: Option<String>,
    /// The installed-files digest (hex) of the last release this server installed on it.
    #[serde(default)]
    pub installed: Option<String>,
    /// How the session ended: `no-update`, `updating` (in progress or cut off), `updated`, or
    /// `failed: <reason>`.
    pub outcome: String,
}

/// Why a check-in is refused or cannot be recorded.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The v2 Hello's device nonce is not above the last accepted one: a replayed Hello.
    #[error("replayed Hello: device nonce {got} is not above the last accepted {last}")]
    Replay {
        /// The last accepted nonce.
        last: u32,
        /// The nonce received.
        got: u32,
    },
    /// The device's nonce floor cannot be read: its check-ins are refused (fail closed).
    #[error("nonce floor {path} is unreadable ({reason}); check-ins of this device are refused until it is repaired: write {{\"device\":<id>,\"nonce\":<the last nonce accepted>}} to it (see the device's fleet record or the logs), or delete it to fall back on the fleet record's nonce")]
    Floor {
        /// The floor file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The device has no nonce floor and its fleet record is unreadable: the last accepted nonce is
    /// unknown, so its check-ins are refused (fail closed).
    #[error("fleet record {path} is unreadable ({reason}) and there is no nonce floor beside it: the last nonce accepted is unknown, so check-ins of this device are refused; delete the record only to accept the device afresh (replays of its older Hellos included)")]
    Unknown {
        /// The record.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The state directory cannot be read or written.
    #[error("fleet state {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The fleet state directory.
#[derive(Debug, Clone)]
pub struct Fleet {
    dir: PathBuf,
}

/// The content of a nonce floor file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Floor {
    device: u64,
    nonce: u32,
}

/// A state file that exists but cannot be used: why, for the log and the error.
type Unreadable = String;

/// Reads `path`: `Ok(None)` when it does not exist, `Err` with the reason when it cannot be read or
/// parsed as a `T`.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, Unreadable> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if bytes.is_empty() {
        return Err("empty".into());
    }
    // An object, and only an object: serde would also take a struct from an array of its fields.
    match serde_json::from_slice(&bytes).map_err(|e| e.to_string())? {
        serde_json::Value::Object(obj) => serde_json::from_value(serde_json::Value::Object(obj))
            .map(Some)
            .map_err(|e| e.to_string()),
        other => Err(format!("not a JSON object: {}", json_type(&other))),
    }
}

/// The JSON type of `value`, for messages.
fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Seconds since the Unix epoch now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Fleet {
    /// The state of the repository at `repo_dir`: `<repo_dir>/.rota/devices`.
    pub fn for_repo(repo_dir: &Path) -> Fleet {
        Fleet {
            dir: repo_dir.join(".rota").join("devices"),
        }
    }

    /// The directory the records are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(path: &Path) -> impl FnOnce(io::Error) -> FleetError + '_ {
        move |source| FleetError::Io {
            path: path.to_owned(),
            source,
        }
    }

    fn record_path(&self, device: u64) -> PathBuf {
        self.dir.join(format!("{device}.json"))
    }

    /// The file keeping `device`'s nonce floor.
    pub fn floor_path(&self, device: u64) -> PathBuf {
        self.dir.join(format!("{device}.nonce"))
    }

    /// The record of `device`: `Ok(None)` when there is none, `Err` with the reason when it is
    /// unreadable (truncated, empty, not JSON, not a record, or another device's).
    fn read_record(&self, device: u64) -> Result<Option<CheckIn>, Unreadable> {
        match read_json::<CheckIn>(&self.record_path(device))? {
            Some(r) if r.device != device => Err(format!("holds device {}", r.device)),
            other => Ok(other),
        }
    }

    /// The nonce floor of `device`: `Ok(None)` when it has none yet.
    fn read_floor(&self, device: u64) -> Result<Option<u32>, FleetError> {
        let path = self.floor_path(device);
        match read_json::<Floor>(&path) {
            Ok(None) => Ok(None),
            Ok(Some(f)) if f.device == device => Ok(Some(f.nonce)),
            Ok(Some(f)) => Err(FleetError::Floor {
                path,
                reason: format!("holds device {}", f.device),
            }),
            Err(reason) => Err(FleetError::Floor { path, reason }),
        }
    }

    /// Replaces the state file `name` with `json` and a line feed, atomically and durably: the one
    /// way the floor and the record are written ([`durable::replace`]).
    fn replace(&self, name: &str, mut json: Vec<u8>) -> Result<(), FleetError> {
        json.push(b'\n');
        durable::replace(&self.dir, name, &json).map_err(Self::io(&self.dir.join(name)))
    }

    /// Writes `device`'s floor: after a crash or a power cut it is the old floor or the new one.
    fn write_floor(&self, device: u64, nonce: u32) -> Result<(), FleetError> {
        let json = serde_json::to_vec(&Floor { device, nonce }).unwrap_or_default();
        self.replace(&format!("{device}.nonce"), json)
    }

    /// The last nonce accepted from `device` (`None` for a device never seen), failing closed: an
    /// unreadable floor, or no floor beside an unreadable record, is an error. An unreadable record
    /// beside a good floor is logged and ignored.
    fn last_nonce(&self, device: u64) -> Result<Option<u32>, FleetError> {
        let floor = self.read_floor(device)?;
        let from_record = match self.read_record(device) {
            Ok(record) => record.and_then(|r| r.nonce),
            Err(reason) => {
                let path = self.record_path(device);
                if floor.is_none() {
                    return Err(FleetError::Unknown { path, reason });
                }
                tracing::warn!(
                    %device,
                    path = %path.display(),
                    %reason,
                    "fleet record unreadable; the nonce floor still refuses replays, and the device's next accepted check-in rewrites the record"
                );
                None
            }
        };
        Ok(floor.max(from_record))
    }

    /// `device`'s lock file, opened (created if need be).
    fn lock_file(&self, device: u64) -> Result<File, FleetError> {
        durable::create_dir(&self.dir).map_err(Self::io(&self.dir))?;
        let path = self.dir.join(format!("{device}.lock"));
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Self::io(&path))
    }

    /// Locks `device`'s lock file (blocking) for the returned guard's lifetime. Every write of the
    /// device's state happens under it.
    fn lock(&self, device: u64) -> Result<File, FleetError> {
        let file = self.lock_file(device)?;
        file.lock()
            .map_err(Self::io(&self.dir.join(format!("{device}.lock"))))?;
        Ok(file)
    }

    /// Removes the temporary files crashed writers left behind, and returns how many. A temporary
    /// file is removed only while its device's lock is free: every write happens under that lock, so
    /// a write in progress (another `serve-stdio` process's) is never disturbed. Leftovers are
    /// harmless meanwhile: no reader takes a temporary file for a state file.
    pub fn remove_leftovers(&self) -> Result<usize, FleetError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Self::io(&self.dir)(e)),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(Self::io(&self.dir))?;
            let name = entry.file_name();
            let Some(device) = name
                .to_str()
                .and_then(durable::temporary_target)
                .and_then(|target| target.split('.').next())
                .and_then(|id| id.parse::<u64>().ok())
            else {
                continue;
            };
            let lock = self.lock_file(device)?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => {
                    return Err(Self::io(&self.dir.join(format!("{device}.lock")))(e))
                }
            }
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Self::io(&path)(e)),
            }
        }
        Ok(removed)
    }

    /// The last check-in of `device`, if any. An unreadable record counts as none here (and is
    /// logged); it never lowers the nonce floor ([`Fleet::check_in`]).
    pub fn load(&self, device: u64) -> Option<CheckIn> {
        match self.read_record(device) {
            Ok(record) => record,
            Err(reason) => {
                tracing::warn!(%device, path = %self.record_path(device).display(), %reason, "fleet record unreadable");
                None
            }
        }
    }

    /// Writes `record`: after a crash or a power cut it is the old record or the new one.
    fn write(&self, record: &CheckIn) -> Result<(), FleetError> {
        let json = serde_json::to_vec_pretty(record).unwrap_or_default();
        self.replace(&format!("{}.json", record.device), json)
    }

    /// Records a check-in. A v2 check-in (with a nonce) is refused as a replay unless its nonce is
    /// above the last one accepted, and refused outright when that nonce cannot be known (an
    /// unreadable floor, or no floor beside an unreadable record); the check and the write are atomic
    /// per device. The new floor is on disk before the record is written.
    ///
    /// What the device's history holds is carried over from its previous record: the rollbacks
    /// (a rollback it reports again is not counted twice), the release held back and the release
    /// installed. A rollback not heard of before holds back the release this server last installed.
    /// Returns the record as written.
    pub fn check_in(&self, record: &CheckIn) -> Result<CheckIn, FleetError> {
        let _lock = self.lock(record.device)?;
        if let Some(got) = record.nonce {
            if let Some(last) = self.last_nonce(record.device)? {
                if got <= last {
                    return Err(FleetError::Replay { last, got });
                }
            }
            self.write_floor(record.device, got)?;
        }
        let mut merged = record.clone();
        if let Some(prev) = self.load(record.device) {
            merged.rollbacks = prev.rollbacks;
            merged.held = prev.held;
            merged.installed = prev.installed;
        }
        for r in &record.rollbacks {
            let known = merged
                .rollbacks
                .iter()
                .any(|k| (k.from, k.to, k.reason) == (r.from, r.to, r.reason));
            if !known {
                let mut r = r.clone();
                r.state = merged.installed.clone();
                merged.held = merged.installed.clone().or(merged.held);
                merged.rollbacks.push(r);
            }
        }
        self.write(&merged)?;
        Ok(merged)
    }

    /// Records the files `device` listed in its check-in with `nonce` (v2 devices list them only
    /// when their installed-files digest is not what the server would install).
    pub fn listed(
        &self,
        device: u64,
        nonce: Option<u32>,
        files: Vec<FileRecord>,
    ) -> Result<(), FleetError> {
        let _lock = self.lock(device)?;
        let Some(mut record) = self.load(device) else {
            return Ok(());
        };
        if record.nonce != nonce {
            return Ok(());
        }
        record.app_version = files
            .iter()
            .find(|f| f.name == rota_limits::APP)
            .map(|f| f.version);
        record.files = files;
        self.write(&record)
    }

    /// Records that this server installed the release whose installed-files digest is `state`
    /// (hex) on `device`, in its check-in with `nonce`.
    pub fn installed(
        &self,
        device: u64,
        nonce: Option<u32>,
        state: &str,
    ) -> Result<(), FleetError> {
        let _lock = self.lock(device)?;
        let Some(mut record) = self.load(device) else {
            return Ok(());
        };
        if record.nonce != nonce {
            return Ok(());
        }
        record.installed = Some(state.to_owned());
        self.write(&record)
    }

    /// Sets the outcome of `device`'s check-in with `nonce`, unless a newer check-in replaced it.
    pub fn finish(&self, device: u64, nonce: Option<u32>, outcome: &str) -> Result<(), FleetError> {
        let _lock = self.lock(device)?;
        let Some(mut record) = self.load(device) else {
            return Ok(());
        };
        if record.nonce != nonce {
            return Ok(());
        }
        record.outcome = outcome.to_owned();
        self.write(&record)
    }

    /// Every device's last check-in, by device id. An unreadable record is logged (a warning naming
    /// the file and why) and left out: one bad file does not hide the rest of the fleet. Temporary
    /// files are never taken for records.
    pub fn list(&self) -> Result<Vec<CheckIn>, FleetError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io(&self.dir)(e)),
        };
        let mut all = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Self::io(&self.dir))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if let Some(record) = self.load(id) {
                all.push(record);
            }
        }
        all.sort_by_key(|r| r.device);
        Ok(all)
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The fleet as a table, one line per device.
pub fn table(records: &[CheckIn]) -> String {
    let mut out = String::from(
        "DEVICE       LAST CHECK-IN (UTC)  PROTO  SIGNED    APP        HEAP PEAK  STACK PEAK  OUTCOME     FILES\n",
    );
    for r in records {
        let app = r
            .app_version
            .map_or_else(|| "-".to_owned(), |v| v.to_string());
        let heap = r.heap.iter().map(|h| h.peak).max();
        let stack = r.heap.iter().map(|h| h.stack_peak).max();
        let opt = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        let mut files: Vec<String> = r
            .files
            .iter()
            .map(|f| format!("{}@{}", f.name, f.version))
            .collect();
        files.extend(
            r.staged
                .iter()
                .map(|s| format!("{}(staged {}/{})", s.name, s.done, s.size)),
        );
        let signed = match r.signed {
            Some(true) => format!("sv {}", r.security_version.unwrap_or(0)),
            Some(false) => "unsigned".to_owned(),
            None => "-".to_owned(),
        };
        out.push_str(&format!(
            "{:<12} {:<20} {:<6} {:<9} {:<10} {:<10} {:<11} {:<11} {}\n",
            r.device,
            utc(r.time),
            format!("v{}", r.protocol),
            signed,
            app,
            opt(heap),
            opt(stack),
            r.outcome,
            files.join(" ")
        ));
        for rollback in &r.rollbacks {
            out.push_str(&format!(
                "{:<12} rollback {} at {}\n",
                "",
                rollback.describe(),
                utc(rollback.time)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(device: u64, nonce: Option<u32>) -> CheckIn {
        CheckIn {
            device,
            time: 1_700_000_000,
            peer: "test".into(),
            protocol: 2,
            nonce,
            app_version: Some(3),
            files: vec![FileRecord {
                name: "app".into(),
                size: 10,
                version: 4,
                digest: hex(&[0xab; 32]),
            }],
            staged: Vec::new(),
            heap: vec![HeapRecord {
                phase: 0,
                used: 0,
                peak: 900,
                stack_peak: 300,
            }],
            outcome: "updating".into(),
            ..CheckIn::default()
        }
    }

    #[test]
    fn nonces_only_grow_and_outcomes_follow_their_check_in() {
        let tmp = tempfile::tempdir().unwrap();
        let fleet = Fleet::for_repo(tmp.path());
        assert!(fleet.list().unwrap().is_empty());
        fleet.check_in(&record(7, Some(5))).unwrap();
        for replay in [5, 4, 0] {
            assert!(matches!(
                fleet.check_in(&record(7, Some(replay))),
                Err(FleetError::Replay { last: 5, got }) if got == replay
            ));
        }
        fleet.finish(7, Some(5), "updated").unwrap();
        assert_eq!(fleet.load(7).unwrap().outcome, "updated");
        fleet.check_in(&record(7, Some(6))).unwrap();
        // A late finish of the older session does not touch the newer record.
        fleet.finish(7, Some(5), "failed: late").unwrap();
        assert_eq!(fleet.load(7).unwrap().outcome, "updating");
        fleet.check_in(&record(2, Some(1))).unwrap();
        let all = fleet.list().unwrap();
        assert_eq!(all.iter().map(|r| r.device).collect::<Vec<_>>(), [2, 7]);
        let table = table(&all);
        assert!(table.contains("2023-11-14 22:13:20"), "{table}");
        assert!(table.contains("app@4"), "{table}");
    }

    /// The four ways a state file can be unreadable, made from a valid one: cut in the middle, empty,
    /// not JSON, and JSON of the wrong type (an array; the nonce as a string).
    fn corruptions(valid: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        let text = String::from_utf8(valid.to_vec()).unwrap();
        let wrong_field = text
            .replace("\"nonce\": 5", "\"nonce\": \"5\"")
            .replace("\"nonce\":5", "\"nonce\":\"5\"");
        assert_ne!(wrong_field, text, "{text}");
        vec![
            ("truncated", valid[..valid.len() / 2].to_vec()),
            ("empty", Vec::new()),
            ("garbage", b"\x00\xff\x9cnot json at all".to_vec()),
            ("wrong JSON type (array)", b"[7, 5]".to_vec()),
            (
                "wrong JSON type (nonce as a string)",
                wrong_field.into_bytes(),
            ),
        ]
    }

    fn files(tmp: &Path, device: u64) -> (PathBuf, PathBuf) {
        let dir = tmp.join(".rota").join("devices");
        (
            dir.join(format!("{device}.json")),
            dir.join(format!("{device}.nonce")),
        )
    }

    #[test]
    fn a_corrupt_record_never_lowers_the_nonce_floor() {
        let tmp = tempfile::tempdir().unwrap();
        let probe = Fleet::for_repo(tmp.path());
        probe.check_in(&record(7, Some(5))).unwrap();
        let valid = fs::read(files(tmp.path(), 7).0).unwrap();
        for (kind, bytes) in corruptions(&valid) {
            let tmp = tempfile::tempdir().unwrap();
            let fleet = Fleet::for_repo(tmp.path());
            let (record_path, _) = files(tmp.path(), 7);
            fleet.check_in(&record(7, Some(5))).unwrap();
            fs::write(&record_path, &bytes).unwrap();
            assert!(fleet.load(7).is_none(), "{kind}: unreadable");
            for old in [3, 5] {
                let got = fleet.check_in(&record(7, Some(old)));
                assert!(
                    matches!(got, Err(FleetError::Replay { last: 5, got }) if got == old),
                    "{kind}: nonce {old} accepted: {got:?}"
                );
            }
            assert_eq!(fs::read(&record_path).unwrap(), bytes, "{kind}: untouched");
            // The device itself still checks in, and its record is whole again.
            fleet.check_in(&record(7, Some(6))).unwrap();
            assert_eq!(fleet.load(7).unwrap().nonce, Some(6), "{kind}");
            assert!(fleet.check_in(&record(7, Some(6))).is_err(), "{kind}");
        }
    }

    #[test]
    fn an_unreadable_nonce_floor_refuses_the_check_in() {
        let tmp = tempfile::tempdir().unwrap();
        let probe = Fleet::for_repo(tmp.path());
        probe.check_in(&record(7, Some(5))).unwrap();
        // The floor as the server writes it; before it kept one, what it would hold.
        let valid =
            fs::read(files(tmp.path(), 7).1).unwrap_or(br#"{"device":7,"nonce":5}"#.to_vec());
        for (kind, bytes) in corruptions(&valid) {
            for record_too in [false, true] {
                let tmp = tempfile::tempdir().unwrap();
                let fleet = Fleet::for_repo(tmp.path());
                let (record_path, floor_path) = files(tmp.path(), 7);
                fleet.check_in(&record(7, Some(5))).unwrap();
                fs::write(&floor_path, &bytes).unwrap();
                if record_too {
                    fs::write(&record_path, b"").unwrap();
                }
                let record_before = fs::read(&record_path).unwrap();
                for nonce in [3, 5, 6, 1000] {
                    let got = fleet.check_in(&record(7, Some(nonce)));
                    assert!(
                        matches!(&got, Err(FleetError::Floor { path, .. }) if *path == floor_path),
                        "{kind} (record corrupt too: {record_too}): nonce {nonce}: {got:?}"
                    );
                    let text = got.unwrap_err().to_string();
                    assert!(text.contains("7.nonce"), "{text}");
                }
                assert_eq!(fs::read(&floor_path).unwrap(), bytes, "{kind}: untouched");
                assert_eq!(fs::read(&record_path).unwrap(), record_before, "{kind}");
            }
        }
    }

    #[test]
    fn a_record_without_a_floor_sets_it_and_an_unreadable_one_refuses() {
        // State written before the floor existed: the record's nonce is the floor.
        let tmp = tempfile::tempdir().unwrap();
        let fleet = Fleet::for_repo(tmp.path());
        let (record_path, floor_path) = files(tmp.path(), 7);
        fleet.check_in(&record(7, Some(5))).unwrap();
        let _ = fs::remove_file(&floor_path);
        assert!(matches!(
            fleet.check_in(&record(7, Some(4))),
            Err(FleetError::Replay { last: 5, got: 4 })
        ));
        fleet.check_in(&record(7, Some(6))).unwrap();
        assert!(floor_path.exists(), "the floor is kept from now on");
        // No floor and an unreadable record: the last nonce is unknown, so nothing is accepted.
        fs::write(&record_path, b"{\"device\":7,\"nonc").unwrap();
        fs::remove_file(&floor_path).unwrap();
        for nonce in [1, 6, 7, 1000] {
            let got = fleet.check_in(&record(7, Some(nonce)));
            assert!(
                matches!(&got, Err(FleetError::Unknown { path, .. }) if *path == record_path),
                "nonce {nonce}: {got:?}"
            );
            assert!(got.unwrap_err().to_string().contains("7.json"));
        }
        assert!(!floor_path.exists());
        // A device never seen has neither: it is accepted.
        fleet.check_in(&record(8, Some(1))).unwrap();
    }

    /// Temporary files a crash left are never read as state, and are removed only while their
    /// device's lock is free (no write of it in progress).
    #[test]
    fn leftover_temporary_files_are_ignored_then_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let fleet = Fleet::for_repo(tmp.path());
        fleet.check_in(&record(7, Some(5))).unwrap();
        fleet.check_in(&record(8, Some(1))).unwrap();
        let dir = fleet.dir().to_owned();
        let leftovers = [
            ".7.json.4242.0.tmp",
            ".7.nonce.4242.1.tmp",
            ".9.json.4242.2.tmp",
            ".8.json.tmp",
        ];
        for name in leftovers {
            fs::write(dir.join(name), b"{\"device\":7,\"nonc").unwrap();
        }
        fs::write(dir.join("notes.txt"), b"an operator's").unwrap();
        let listed: Vec<u64> = fleet.list().unwrap().iter().map(|r| r.device).collect();
        assert_eq!(listed, [7, 8]);
        assert!(matches!(
            fleet.check_in(&record(7, Some(5))),
            Err(FleetError::Replay { last: 5, got: 5 })
        ));
        fleet.check_in(&record(7, Some(6))).unwrap();
        // Device 8 is being written (its lock is held): its leftover stays for now.
        let held = fleet.lock(8).unwrap();
        assert_eq!(fleet.remove_leftovers().unwrap(), 3);
        drop(held);
        assert_eq!(fleet.remove_leftovers().unwrap(), 1);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "7.json",
                "7.lock",
                "7.nonce",
                "8.json",
                "8.lock",
                "8.nonce",
                "9.lock",
                "notes.txt"
            ]
        );
        assert_eq!(fleet.load(7).unwrap().nonce, Some(6));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59");
    }
}
