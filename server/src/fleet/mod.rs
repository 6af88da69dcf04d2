//! The fleet: each device's last check-in, its history, the rollbacks it reported and the rollouts,
//! kept in a database so an operator can see every device (`rota-server fleet DIR`).
//!
//! Two backends keep the same tables with the same meaning (docs/state.md): SQLite, the default, in
//! `<repo>/.rota/state.db` ([`sqlite`]), and PostgreSQL, which several servers behind one address
//! share ([`postgres`]). The schema is a numbered list of steps per backend, applied when the
//! database is opened ([`migrations`]).
//!
//! Every write goes through one writer thread per [`Fleet`] that runs everything waiting in one
//! transaction (group commit, [`store`]); a caller is answered only once its transaction committed,
//! so a check-in that was answered survives a crash or a power cut. Reads (`load`, `list`, `history`,
//! `rollouts`) use their own connection, on a reader thread.
//!
//! A record is written only for a device whose Hello verified with its own secret, so a stranger
//! cannot fill the database. A protocol v2 Hello whose device nonce is not above the last one
//! accepted (the device's nonce *floor*) is a replay and is refused ([`FleetError::Replay`]); the
//! check and the update are one transaction, atomic across processes and servers sharing the
//! database. Replay protection fails closed: a floor that cannot be read refuses the check-in
//! ([`FleetError::Floor`]), as does a database that cannot be reached.

pub mod migrations;
pub mod postgres;
pub mod sqlite;
pub mod store;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use store::{Conn, Done, Op};

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
    /// The name of the release it is from (a tag or short commit), when it is the file the server
    /// serves this device now; `None` for content the server does not serve it (any more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

impl FileRecord {
    /// How a person reads it: `tick@v2` (the release it is from), else its content's digest
    /// (`tick@sha256:3f2a9c1`), else `tick@?`: never the protocol's hash-derived version number.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version_label())
    }

    /// The part of [`FileRecord::label`] after the `@`: `v2`, `sha256:3f2a9c1` or `?`.
    pub fn version_label(&self) -> String {
        match (&self.release, self.digest.get(..7)) {
            (Some(release), _) => release.clone(),
            (None, Some(short)) => format!("sha256:{short}"),
            (None, None) => "?".to_owned(),
        }
    }
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
    /// The human name of the release the server is serving this device (set by the session).
    #[serde(default)]
    pub release: Option<String>,
    /// Whether the device was on a trial boot (v2: its Hello's TRIAL flag): its last commit not yet
    /// confirmed.
    #[serde(default)]
    pub trial: Option<bool>,
}

/// One accepted check-in of a device's history ([`Fleet::history`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boot {
    /// When, in seconds since the Unix epoch.
    pub time: u64,
    /// The v2 device nonce (boot counter).
    pub nonce: Option<u32>,
    /// 1 (luaOTA) or 2 (rota).
    pub protocol: u8,
    /// Who connected.
    pub peer: String,
    /// The release the server was serving the device.
    pub release: Option<String>,
    /// The installed-files digest the device reported (hex).
    pub state: Option<String>,
    /// The application's version.
    pub app_version: Option<u32>,
    /// How the session ended (as [`CheckIn::outcome`]).
    pub outcome: String,
    /// The heap report of that boot.
    pub heap: Vec<HeapRecord>,
}

/// A rollout as stored ([`Fleet::rollouts`]); its body is the rollout logic's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRollout {
    /// Its id.
    pub id: String,
    /// Its body (JSON, opaque to the fleet).
    pub body: serde_json::Value,
    /// Bumped by every update: the optimistic-concurrency token of [`Fleet::put_rollout`].
    pub version: i64,
    /// When it was last written, in seconds since the Unix epoch.
    pub updated: u64,
}

/// A database error of either backend.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite's.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL's.
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
}

/// Why a check-in is refused, or the fleet's state cannot be read or written.
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
    #[error("the nonce floor of device {device} is unreadable ({reason}); check-ins of this device are refused until devices.nonce_floor holds the last nonce accepted")]
    Floor {
        /// The device.
        device: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A stored field of a device cannot be read as what it must hold (a hand edit).
    #[error("fleet record of device {device}: field {field} is unreadable ({reason})")]
    Corrupt {
        /// The device (0 for a row of no device).
        device: u64,
        /// The table and column.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A value does not fit the database's column.
    #[error("{field} {value} does not fit the database (at most {max})")]
    Range {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The largest value stored.
        max: i64,
    },
    /// A record field cannot be encoded as JSON.
    #[error("cannot encode {field} as JSON: {source}")]
    Encode {
        /// The field.
        field: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// `--database` is not a database URL this server takes.
    #[error("--database {url}: {reason}")]
    Url {
        /// The URL given (its password masked).
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The database was migrated by a newer rota-server: this one does not know its schema.
    #[error("{database} has schema version {found}, newer than this rota-server's {known}: run the newer rota-server (or a fresh database)")]
    Newer {
        /// The database.
        database: String,
        /// Its schema version.
        found: i64,
        /// The latest this binary knows.
        known: usize,
    },
    /// The database cannot be opened.
    #[error("cannot open {database}: {source}")]
    Open {
        /// The database.
        database: String,
        /// Why.
        source: DbError,
    },
    /// The SQLite file's directory cannot be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A statement failed.
    #[error("fleet database: {0}")]
    Database(#[from] DbError),
    /// A thread of the fleet cannot be started.
    #[error("cannot start the fleet's {name} thread: {source}")]
    Thread {
        /// Which.
        name: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A thread of the fleet is gone (it panicked).
    #[error("the fleet's database thread is gone")]
    Closed,
}

/// Where the fleet's state is: `sqlite:PATH` or `postgres://...` (`--database`).
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file (created when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl Database {
    /// The default: the SQLite file `<repo_dir>/.rota/state.db`.
    pub fn for_repo(repo_dir: &Path) -> Database {
        Database::Sqlite(repo_dir.join(".rota").join("state.db"))
    }
}

/// `url` with the password of its `user:password@` part masked, for messages and logs.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Database::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Database {
    type Err = FleetError;

    fn from_str(url: &str) -> Result<Database, FleetError> {
        let bad = |reason: String| FleetError::Url {
            url: redact(url),
            reason,
        };
        if let Some(path) = url.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(bad("sqlite: needs a file path (sqlite:PATH)".into()));
            }
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            ::postgres::Config::from_str(url).map_err(|e| bad(e.to_string()))?;
            return Ok(Database::Postgres(url.to_owned()));
        }
        Err(bad(
            "not a database URL: expected sqlite:PATH or postgres://USER@HOST:PORT/DB".into(),
        ))
    }
}

/// The writers' connections and the reader's.
type Connections = (Vec<Box<dyn Conn>>, Box<dyn Conn>);

/// The fleet's database: a handle that is cheap to clone and to call from
/// `tokio::task::spawn_blocking` (each call blocks until its transaction committed).
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

struct Inner {
    database: Database,
    /// The writer thread's queue ([`store::writer`]).
    jobs: mpsc::Sender<store::Job>,
    /// The reader thread's queue ([`store::reader`]).
    reads: mpsc::Sender<store::Read>,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("database", &self.inner.database)
            .finish()
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
    /// Opens `database`, bringing its schema to the latest ([`migrations`]), and starts its writer
    /// and reader threads. A database migrated by a newer rota-server is refused
    /// ([`FleetError::Newer`]).
    ///
    /// Every statement runs on the fleet's own threads, never the caller's: the PostgreSQL client
    /// is synchronous and must not run on an async runtime's thread.
    pub fn open(database: &Database) -> Result<Fleet, FleetError> {
        let (writer, reader) = std::thread::scope(|scope| {
            scope
                .spawn(|| Fleet::connect(database))
                .join()
                .map_err(|_| FleetError::Closed)
        })??;
        Ok(Fleet {
            inner: Arc::new(Inner {
                database: database.clone(),
                jobs: store::writer(writer)?,
                reads: store::reader(reader)?,
            }),
        })
    }

    /// The writers' and the reader's connections, the schema migrated.
    fn connect(database: &Database) -> Result<Connections, FleetError> {
        let conn = || -> Result<Box<dyn Conn>, FleetError> {
            Ok(match database {
                Database::Sqlite(path) => Box::new(sqlite::Sqlite::open(path, database)?),
                Database::Postgres(url) => Box::new(postgres::Postgres::connect(url, database)?),
            })
        };
        let mut reader = conn()?;
        let was = migrations::migrate(reader.as_mut(), database)?;
        let dialect = reader.dialect();
        if was < dialect.migrations.len() as i64 {
            tracing::info!(%database, from = was, to = dialect.migrations.len(), "fleet database migrated");
        }
        let writers = (0..dialect.writers)
            .map(|_| conn())
            .collect::<Result<_, _>>()?;
        Ok((writers, reader))
    }

    /// The default state of the repository at `repo_dir` ([`Database::for_repo`]).
    pub fn for_repo(repo_dir: &Path) -> Result<Fleet, FleetError> {
        Fleet::open(&Database::for_repo(repo_dir))
    }

    /// The database this fleet is kept in.
    pub fn database(&self) -> &Database {
        &self.inner.database
    }

    /// Runs `op` in the writer's next transaction and waits until it committed.
    fn write(&self, op: Op) -> Result<Done, FleetError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.inner
            .jobs
            .send(store::Job {
                op,
                reply: store::Reply::Wait(reply),
            })
            .map_err(|_| FleetError::Closed)?;
        answer.recv().map_err(|_| FleetError::Closed)?
    }

    /// [`Fleet::write`] for a task: queues `op` (which never blocks) and awaits its commit, with no
    /// blocking thread in between.
    async fn write_async(&self, op: Op) -> Result<Done, FleetError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner
            .jobs
            .send(store::Job {
                op,
                reply: store::Reply::Async(reply),
            })
            .map_err(|_| FleetError::Closed)?;
        answer.await.map_err(|_| FleetError::Closed)?
    }

    /// [`Fleet::check_in`] from a task (a session), without a blocking thread.
    pub async fn check_in_async(&self, record: &CheckIn) -> Result<CheckIn, FleetError> {
        match self.write_async(Op::CheckIn(record.clone())).await? {
            Done::CheckIn(merged) => Ok(*merged),
            _ => unreachable!("a check-in answers with its record"),
        }
    }

    /// [`Fleet::listed`] from a task.
    pub async fn listed_async(
        &self,
        device: u64,
        nonce: Option<u32>,
        files: Vec<FileRecord>,
    ) -> Result<(), FleetError> {
        let op = Op::Listed {
            device,
            nonce,
            files,
        };
        self.write_async(op).await.map(drop)
    }

    /// [`Fleet::installed`] from a task.
    pub async fn installed_async(
        &self,
        device: u64,
        nonce: Option<u32>,
        state: &str,
    ) -> Result<(), FleetError> {
        let op = Op::Installed {
            device,
            nonce,
            state: state.to_owned(),
        };
        self.write_async(op).await.map(drop)
    }

    /// [`Fleet::finish`] from a task.
    pub async fn finish_async(
        &self,
        device: u64,
        nonce: Option<u32>,
        outcome: &str,
    ) -> Result<(), FleetError> {
        let op = Op::Finish {
            device,
            nonce,
            outcome: outcome.to_owned(),
        };
        self.write_async(op).await.map(drop)
    }

    /// Runs `read` on the reader thread's connection and waits for its answer.
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut dyn Conn) -> Result<T, FleetError> + Send + 'static,
    ) -> Result<T, FleetError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.inner
            .reads
            .send(Box::new(move |conn: &mut dyn Conn| {
                // A caller that went away no longer needs its answer.
                let _ = reply.send(read(conn));
            }))
            .map_err(|_| FleetError::Closed)?;
        answer.recv().map_err(|_| FleetError::Closed)?
    }

    /// Records a check-in, and one row of the device's history. A v2 check-in (with a nonce) is
    /// refused as a replay unless its nonce is above the last one accepted, and refused outright
    /// when that nonce cannot be read; the check and the write are one transaction.
    ///
    /// What the device's history holds is carried over from its previous record: the rollbacks
    /// (a rollback it reports again is not counted twice), the release held back and the release
    /// installed. A rollback not heard of before holds back the release this server last installed.
    /// Returns the record as written.
    pub fn check_in(&self, record: &CheckIn) -> Result<CheckIn, FleetError> {
        match self.write(Op::CheckIn(record.clone()))? {
            Done::CheckIn(merged) => Ok(*merged),
            _ => unreachable!("a check-in answers with its record"),
        }
    }

    /// Records the files `device` listed in its check-in with `nonce` (v2 devices list them only
    /// when their installed-files digest is not what the server would install).
    pub fn listed(
        &self,
        device: u64,
        nonce: Option<u32>,
        files: Vec<FileRecord>,
    ) -> Result<(), FleetError> {
        self.write(Op::Listed {
            device,
            nonce,
            files,
        })
        .map(drop)
    }

    /// Records that this server installed the release whose installed-files digest is `state`
    /// (hex) on `device`, in its check-in with `nonce`.
    pub fn installed(
        &self,
        device: u64,
        nonce: Option<u32>,
        state: &str,
    ) -> Result<(), FleetError> {
        self.write(Op::Installed {
            device,
            nonce,
            state: state.to_owned(),
        })
        .map(drop)
    }

    /// Sets the outcome of `device`'s check-in with `nonce`: in its history always, in its record
    /// unless a newer check-in replaced it.
    pub fn finish(&self, device: u64, nonce: Option<u32>, outcome: &str) -> Result<(), FleetError> {
        self.write(Op::Finish {
            device,
            nonce,
            outcome: outcome.to_owned(),
        })
        .map(drop)
    }

    /// Stores rollout `id`: inserted when `expected_version` is `None` and the id is new; otherwise
    /// updated only if its stored version is `expected_version`, which is then bumped. `false` when
    /// another writer won (the id exists, or its version moved on).
    pub fn put_rollout(
        &self,
        id: &str,
        body: &serde_json::Value,
        expected_version: Option<i64>,
    ) -> Result<bool, FleetError> {
        match self.write(Op::PutRollout {
            id: id.to_owned(),
            body: body.clone(),
            expected: expected_version,
        })? {
            Done::Put(won) => Ok(won),
            _ => unreachable!("a rollout write answers whether it won"),
        }
    }

    /// The last check-in of `device`, if any.
    pub fn load(&self, device: u64) -> Result<Option<CheckIn>, FleetError> {
        self.read(move |conn| store::load(conn, device))
    }

    /// Every device's last check-in, by device id. A record that cannot be read (a hand edit) is
    /// logged (a warning naming the device and the field) and left out: one bad row does not hide
    /// the rest of the fleet.
    pub fn list(&self) -> Result<Vec<CheckIn>, FleetError> {
        self.read(store::list)
    }

    /// The newest `limit` accepted check-ins of `device`, oldest first.
    pub fn history(&self, device: u64, limit: usize) -> Result<Vec<Boot>, FleetError> {
        self.read(move |conn| store::history(conn, device, limit))
    }

    /// Every stored rollout, by id.
    pub fn rollouts(&self) -> Result<Vec<StoredRollout>, FleetError> {
        self.read(store::rollouts)
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
        "DEVICE       LAST CHECK-IN (UTC)  PROTO  SIGNED    APP        RELEASE       HEAP PEAK  STACK PEAK  OUTCOME     FILES\n",
    );
    for r in records {
        // The application by the release it is from, as every file (never its version number).
        let app = r
            .files
            .iter()
            .find(|f| f.name == rota_limits::APP)
            .map_or_else(|| "-".to_owned(), FileRecord::version_label);
        let heap = r.heap.iter().map(|h| h.peak).max();
        let stack = r.heap.iter().map(|h| h.stack_peak).max();
        let opt = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        let mut files: Vec<String> = r.files.iter().map(FileRecord::label).collect();
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
            "{:<12} {:<20} {:<6} {:<9} {:<10} {:<13} {:<10} {:<11} {:<11} {}\n",
            r.device,
            utc(r.time),
            format!("v{}", r.protocol),
            signed,
            app,
            r.release.as_deref().unwrap_or("-"),
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

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59");
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            "sqlite:/tmp/x.db".parse::<Database>().unwrap(),
            Database::Sqlite("/tmp/x.db".into())
        );
        let pg = "postgres://rota:hunter2@127.0.0.1:55432/postgres";
        let db: Database = pg.parse().unwrap();
        assert_eq!(db, Database::Postgres(pg.into()));
        assert_eq!(
            db.to_string(),
            "postgres://rota:***@127.0.0.1:55432/postgres"
        );
        for bad in [
            "sqlite:",
            "mysql://x",
            "state.db",
            "postgres://h:notaport/db",
        ] {
            let err = bad.parse::<Database>().unwrap_err();
            assert!(
                matches!(&err, FleetError::Url { url, .. } if url == bad),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains("--database"), "{err}");
        }
        let err = "postgres://u:secret@h:x/db"
            .parse::<Database>()
            .unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
