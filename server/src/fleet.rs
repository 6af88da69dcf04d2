//! The fleet: each device's last check-in, kept in the repository's state directory so an operator can
//! see every device (`rota-server fleet DIR`).
//!
//! ```text
//! <repo>/.rota/devices/<id>.json    the last check-in of device <id> (JSON, written atomically)
//! <repo>/.rota/devices/<id>.lock    serialises check-ins of one device (across processes too)
//! ```
//! A record is written only for a device whose Hello verified with its own secret, so a stranger
//! cannot fill the directory. The protocol v2 device nonce of the last accepted Hello is kept here:
//! a Hello whose nonce is not above it is a replay and is refused ([`FleetError::Replay`]). The check
//! and the update happen under an exclusive lock of the device's lock file, so two sessions (or two
//! `serve-stdio` processes) can never both accept the same nonce. Records are written to a temporary
//! file and renamed over the old one: a reader never sees half a record.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One file of a check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Its name.
    pub name: String,
    /// Its size.
    pub size: u32,
    /// Its version (v2: the server's content number; v1: the number the device echoed).
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

/// A device's last check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

    /// Locks `device`'s lock file (blocking) for the returned guard's lifetime.
    fn lock(&self, device: u64) -> Result<File, FleetError> {
        fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let path = self.dir.join(format!("{device}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Self::io(&path))?;
        file.lock().map_err(Self::io(&path))?;
        Ok(file)
    }

    /// The last check-in of `device`, if any (an unreadable record counts as none).
    pub fn load(&self, device: u64) -> Option<CheckIn> {
        let bytes = fs::read(self.record_path(device)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write(&self, record: &CheckIn) -> Result<(), FleetError> {
        let path = self.record_path(record.device);
        let tmp = self.dir.join(format!(".{}.json.tmp", record.device));
        let mut json = serde_json::to_vec_pretty(record).unwrap_or_default();
        json.push(b'\n');
        let mut file = File::create(&tmp).map_err(Self::io(&tmp))?;
        file.write_all(&json).map_err(Self::io(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(Self::io(&path))
    }

    /// Records a check-in. A v2 check-in (with a nonce) is refused as a replay unless its nonce is
    /// above the last one recorded; the check and the write are atomic per device.
    pub fn check_in(&self, record: &CheckIn) -> Result<(), FleetError> {
        let _lock = self.lock(record.device)?;
        if let Some(got) = record.nonce {
            if let Some(last) = self.load(record.device).and_then(|r| r.nonce) {
                if got <= last {
                    return Err(FleetError::Replay { last, got });
                }
            }
        }
        self.write(record)
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

    /// Every device's last check-in, by device id.
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
        "DEVICE       LAST CHECK-IN (UTC)  PROTO  APP        HEAP PEAK  STACK PEAK  OUTCOME     FILES\n",
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
        out.push_str(&format!(
            "{:<12} {:<20} {:<6} {:<10} {:<10} {:<11} {:<11} {}\n",
            r.device,
            utc(r.time),
            format!("v{}", r.protocol),
            app,
            opt(heap),
            opt(stack),
            r.outcome,
            files.join(" ")
        ));
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

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59");
    }
}
