//! What both backends share: the statements (written once, `$1`-style parameters, in the SQL both
//! SQLite and PostgreSQL speak), the interface each backend's connection implements ([`Conn`]), the
//! fleet's logic over it, and the writer thread with its group commit ([`writer`]).
//!
//! Group commit: callers send their write ([`Op`]) through a channel; the writer takes everything
//! waiting (up to [`MAX_BATCH`]), runs it in one transaction, commits, then answers each caller. A
//! caller is answered only after its transaction committed. One fsync thus covers a whole batch,
//! which is what lets one SQLite file take more than 10,000 durable check-ins a second
//! (docs/state.md). Should the batch's transaction fail (a database error, a deadlock between two
//! servers), it is rolled back and each write is run again alone, so only the write at fault fails.

use std::sync::{mpsc, Arc, Mutex, PoisonError};

use super::{
    Boot, CheckIn, DbError, FileRecord, FleetError, HeapRecord, RollbackRecord, StoredRollout,
};

/// Most writes run in one transaction: bounds how long one commit keeps its callers waiting.
pub const MAX_BATCH: usize = 1024;

/// A statement parameter.
pub(crate) enum Param {
    /// An integer (BIGINT), or NULL.
    Int(Option<i64>),
    /// A text, or NULL.
    Text(Option<String>),
    /// A boolean, or NULL.
    Bool(Option<bool>),
}

/// The type a result column is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An integer (BIGINT).
    Int,
    /// A text.
    Text,
    /// A boolean.
    Bool,
}

/// One value read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val {
    /// An integer, or NULL.
    Int(Option<i64>),
    /// A text, or NULL.
    Text(Option<String>),
    /// A boolean, or NULL.
    Bool(Option<bool>),
    /// A stored value of another type than its column's (a hand edit): why.
    Bad(String),
}

/// One row read, its values in the order of the query's columns.
pub(crate) type Row = Vec<Val>;

/// What a backend's dialect differs in.
pub(crate) struct Dialect {
    /// Starts a write transaction (SQLite: `BEGIN IMMEDIATE`, so the write lock is taken first and
    /// a check-then-write is atomic across processes).
    pub begin: &'static str,
    /// Reads a device's floor and the history carried across check-ins, locking its row until the
    /// transaction ends where the backend has row locks.
    pub select_floor: &'static str,
    /// Serialises concurrent migrations (taken inside the migration's transaction), if `begin`
    /// does not already.
    pub lock_migrations: &'static str,
    /// The schema steps, in order ([`super::migrations`]).
    pub migrations: &'static [&'static str],
    /// Writer connections per fleet, each committing its own batches.
    pub writers: usize,
}

/// One connection of a backend.
pub(crate) trait Conn: Send {
    /// The backend's dialect.
    fn dialect(&self) -> &'static Dialect;
    /// Runs statements without parameters (schema steps, locks).
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;
    /// Starts a write transaction ([`Dialect::begin`]).
    fn begin(&mut self) -> Result<(), DbError> {
        let sql = self.dialect().begin;
        self.batch(sql)
    }
    /// Ends the transaction: commits it, or rolls it back.
    fn end(&mut self, commit: bool) -> Result<(), DbError> {
        self.batch(if commit { "COMMIT" } else { "ROLLBACK" })
    }
    /// Runs one statement; returns the rows it changed.
    fn execute(&mut self, sql: &'static str, params: &[Param]) -> Result<u64, DbError>;
    /// Runs one query, reading its columns as `kinds`.
    fn query(
        &mut self,
        sql: &'static str,
        params: &[Param],
        kinds: &[Kind],
    ) -> Result<Vec<Row>, DbError>;
}

/// A write, as the writer thread runs it.
pub(crate) enum Op {
    CheckIn(CheckIn),
    Listed {
        device: u64,
        nonce: Option<u32>,
        files: Vec<FileRecord>,
    },
    Installed {
        device: u64,
        nonce: Option<u32>,
        state: String,
    },
    Finish {
        device: u64,
        nonce: Option<u32>,
        outcome: String,
    },
    PutRollout {
        id: String,
        body: serde_json::Value,
        expected: Option<i64>,
    },
}

impl Op {
    /// The device whose row the write locks: batches run their writes in this order, so two
    /// servers' batches lock rows in the same order and do not deadlock.
    fn device(&self) -> u64 {
        match self {
            Op::CheckIn(r) => r.device,
            Op::Listed { device, .. }
            | Op::Installed { device, .. }
            | Op::Finish { device, .. } => *device,
            Op::PutRollout { .. } => u64::MAX,
        }
    }
}

/// What a write answers.
pub(crate) enum Done {
    /// The check-in as recorded.
    CheckIn(Box<CheckIn>),
    /// Whether a rollout write won.
    Put(bool),
    /// Nothing to say.
    Unit,
}

/// Where a write's answer goes: a blocked caller, or an async one (a session awaiting it on a
/// runtime worker, with no blocking thread in between).
pub(crate) enum Reply {
    /// A caller blocked on this channel.
    Wait(mpsc::SyncSender<Result<Done, FleetError>>),
    /// A task awaiting this.
    Async(tokio::sync::oneshot::Sender<Result<Done, FleetError>>),
}

impl Reply {
    /// Answers; a caller that went away no longer needs its answer.
    fn send(self, answer: Result<Done, FleetError>) {
        match self {
            Reply::Wait(tx) => drop(tx.send(answer)),
            Reply::Async(tx) => drop(tx.send(answer)),
        }
    }
}

/// A write and where to answer it.
pub(crate) struct Job {
    pub op: Op,
    pub reply: Reply,
}

/// Starts one writer thread per connection of `conns` (SQLite: one, as SQLite has one writer at
/// a time; PostgreSQL: [`Dialect::writers`]), all taking batches from one queue; returns the queue.
/// They end when every sender is dropped.
pub(crate) fn writer(conns: Vec<Box<dyn Conn>>) -> Result<mpsc::Sender<Job>, FleetError> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    for mut conn in conns {
        let queue = queue.clone();
        std::thread::Builder::new()
            .name("rota-fleet-writer".into())
            .spawn(move || {
                while let Some(mut batch) = next_batch(&queue) {
                    batch.sort_by_key(|job| job.op.device());
                    let ops: Vec<&Op> = batch.iter().map(|job| &job.op).collect();
                    let answers = match transaction(conn.as_mut(), &ops) {
                        Ok(answers) => answers,
                        Err(error) => {
                            tracing::debug!(%error, writes = ops.len(), "batch rolled back; each write runs alone");
                            ops.iter()
                                .map(|op| {
                                    transaction(conn.as_mut(), &[op]).and_then(|mut a| a.remove(0))
                                })
                                .collect()
                        }
                    };
                    for (job, answer) in batch.into_iter().zip(answers) {
                        job.reply.send(answer);
                    }
                }
            })
            .map_err(|source| FleetError::Thread {
                name: "writer",
                source,
            })?;
    }
    Ok(jobs)
}

/// Waits for a write, then takes every write waiting behind it (up to [`MAX_BATCH`]); `None` once
/// every sender is gone. One writer at a time collects: the others are committing meanwhile.
fn next_batch(queue: &Mutex<mpsc::Receiver<Job>>) -> Option<Vec<Job>> {
    let queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
    let mut batch = vec![queue.recv().ok()?];
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// A read, run on the reader thread's connection.
pub(crate) type Read = Box<dyn FnOnce(&mut dyn Conn) + Send>;

/// Starts the reader thread on `conn`; returns its queue. It ends when every sender is dropped.
pub(crate) fn reader(mut conn: Box<dyn Conn>) -> Result<mpsc::Sender<Read>, FleetError> {
    let (reads, queue) = mpsc::channel::<Read>();
    std::thread::Builder::new()
        .name("rota-fleet-reader".into())
        .spawn(move || {
            while let Ok(read) = queue.recv() {
                read(conn.as_mut());
            }
        })
        .map_err(|source| FleetError::Thread {
            name: "reader",
            source,
        })?;
    Ok(reads)
}

/// Runs `ops` in one transaction. `Err` when the transaction failed (rolled back: nothing of it
/// stays); otherwise each write's own answer, a refused write (a replay) having written nothing.
fn transaction(
    conn: &mut dyn Conn,
    ops: &[&Op],
) -> Result<Vec<Result<Done, FleetError>>, FleetError> {
    conn.begin()?;
    let mut answers = Vec::with_capacity(ops.len());
    for op in ops {
        match apply(conn, op) {
            Err(FleetError::Database(e)) => {
                let _ = conn.end(false);
                return Err(FleetError::Database(e));
            }
            answer => answers.push(answer),
        }
    }
    if let Err(e) = conn.end(true) {
        let _ = conn.end(false);
        return Err(e.into());
    }
    Ok(answers)
}

/// A device id as stored.
fn id(device: u64) -> Result<i64, FleetError> {
    i64::try_from(device).map_err(|_| FleetError::Range {
        field: "device",
        value: device,
        max: i64::MAX,
    })
}

fn int(v: Option<u32>) -> Param {
    Param::Int(v.map(i64::from))
}

fn text(v: Option<&str>) -> Param {
    Param::Text(v.map(str::to_owned))
}

fn json<T: serde::Serialize>(field: &'static str, value: &T) -> Result<Param, FleetError> {
    serde_json::to_string(value)
        .map(|s| Param::Text(Some(s)))
        .map_err(|source| FleetError::Encode { field, source })
}

/// Reads one row's values, each error naming its field.
struct Reader<'r> {
    row: &'r Row,
    device: u64,
}

impl Reader<'_> {
    fn bad(&self, field: &'static str, reason: impl Into<String>) -> FleetError {
        FleetError::Corrupt {
            device: self.device,
            field,
            reason: reason.into(),
        }
    }

    fn int(&self, i: usize, field: &'static str) -> Result<Option<i64>, FleetError> {
        match &self.row[i] {
            Val::Int(v) => Ok(*v),
            Val::Bad(why) => Err(self.bad(field, why.clone())),
            other => Err(self.bad(field, format!("{other:?}"))),
        }
    }

    fn num<T: TryFrom<i64>>(&self, i: usize, field: &'static str) -> Result<Option<T>, FleetError> {
        self.int(i, field)?
            .map(|v| T::try_from(v).map_err(|_| self.bad(field, format!("{v} is out of range"))))
            .transpose()
    }

    fn need<T>(&self, v: Option<T>, field: &'static str) -> Result<T, FleetError> {
        v.ok_or_else(|| self.bad(field, "NULL"))
    }

    fn text(&self, i: usize, field: &'static str) -> Result<Option<String>, FleetError> {
        match &self.row[i] {
            Val::Text(v) => Ok(v.clone()),
            Val::Bad(why) => Err(self.bad(field, why.clone())),
            other => Err(self.bad(field, format!("{other:?}"))),
        }
    }

    fn bool(&self, i: usize, field: &'static str) -> Result<Option<bool>, FleetError> {
        match &self.row[i] {
            Val::Bool(v) => Ok(*v),
            Val::Bad(why) => Err(self.bad(field, why.clone())),
            other => Err(self.bad(field, format!("{other:?}"))),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        i: usize,
        field: &'static str,
    ) -> Result<T, FleetError> {
        let text = self.need(self.text(i, field)?, field)?;
        serde_json::from_str(&text).map_err(|e| self.bad(field, e.to_string()))
    }
}

const DEVICE_COLUMNS: &[Kind] = &[
    Kind::Int,  // device
    Kind::Int,  // time
    Kind::Text, // peer
    Kind::Int,  // protocol
    Kind::Int,  // nonce
    Kind::Int,  // app_version
    Kind::Text, // files
    Kind::Text, // staged
    Kind::Text, // heap
    Kind::Bool, // signed
    Kind::Int,  // security_version
    Kind::Text, // state
    Kind::Text, // held
    Kind::Text, // installed
    Kind::Text, // outcome
    Kind::Text, // release
    Kind::Bool, // trial
];

/// The columns of a record, in the order of [`DEVICE_COLUMNS`] (a macro: `concat!` takes literals).
macro_rules! select_device {
    ($rest:literal) => {
        concat!(
            "SELECT device, time, peer, protocol, nonce, app_version, files, staged, heap, signed, security_version, state, held, installed, outcome, release, trial FROM devices ",
            $rest
        )
    };
}
const SELECT_DEVICE: &str = select_device!("WHERE device = $1");
const SELECT_DEVICES: &str = select_device!("ORDER BY device");

/// A `devices` row as a record (without its rollbacks).
fn record(row: &Row) -> Result<CheckIn, FleetError> {
    let device = match &row[0] {
        Val::Int(Some(d)) => u64::try_from(*d).unwrap_or_default(),
        _ => 0,
    };
    let r = Reader { row, device };
    Ok(CheckIn {
        device,
        time: r.need(r.num(1, "devices.time")?, "devices.time")?,
        peer: r.need(r.text(2, "devices.peer")?, "devices.peer")?,
        protocol: r.need(r.num(3, "devices.protocol")?, "devices.protocol")?,
        nonce: r.num(4, "devices.nonce")?,
        app_version: r.num(5, "devices.app_version")?,
        files: r.json(6, "devices.files")?,
        staged: r.json(7, "devices.staged")?,
        heap: r.json(8, "devices.heap")?,
        signed: r.bool(9, "devices.signed")?,
        security_version: r.num(10, "devices.security_version")?,
        state: r.text(11, "devices.state")?,
        rollbacks: Vec::new(),
        held: r.text(12, "devices.held")?,
        installed: r.text(13, "devices.installed")?,
        outcome: r.need(r.text(14, "devices.outcome")?, "devices.outcome")?,
        release: r.text(15, "devices.release")?,
        trial: r.bool(16, "devices.trial")?,
    })
}

const ROLLBACK_COLUMNS: &[Kind] = &[
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Text,
];
/// The columns of a rollback, in the order of [`ROLLBACK_COLUMNS`].
macro_rules! select_rollback {
    ($rest:literal) => {
        concat!(
            "SELECT device, from_gen, to_gen, reason, phase, time, state FROM rollbacks ",
            $rest
        )
    };
}
const SELECT_ROLLBACKS: &str = select_rollback!("WHERE device = $1 ORDER BY seq");
const SELECT_ALL_ROLLBACKS: &str = select_rollback!("ORDER BY device, seq");

/// A `rollbacks` row: its device and the rollback.
fn rollback(row: &Row) -> Result<(i64, RollbackRecord), FleetError> {
    let device = match &row[0] {
        Val::Int(Some(d)) => *d,
        _ => 0,
    };
    let r = Reader {
        row,
        device: u64::try_from(device).unwrap_or_default(),
    };
    Ok((
        device,
        RollbackRecord {
            from: r.need(r.num(1, "rollbacks.from_gen")?, "rollbacks.from_gen")?,
            to: r.need(r.num(2, "rollbacks.to_gen")?, "rollbacks.to_gen")?,
            reason: r.need(r.num(3, "rollbacks.reason")?, "rollbacks.reason")?,
            phase: r.need(r.num(4, "rollbacks.phase")?, "rollbacks.phase")?,
            time: r.need(r.num(5, "rollbacks.time")?, "rollbacks.time")?,
            state: r.text(6, "rollbacks.state")?,
        },
    ))
}

const UPSERT_DEVICE: &str = "INSERT INTO devices (device, time, peer, protocol, nonce, app_version, files, staged, heap, signed, security_version, state, held, installed, outcome, release, trial, nonce_floor) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $5) \
    ON CONFLICT (device) DO UPDATE SET time = excluded.time, peer = excluded.peer, protocol = excluded.protocol, nonce = excluded.nonce, \
    app_version = excluded.app_version, files = excluded.files, staged = excluded.staged, heap = excluded.heap, signed = excluded.signed, \
    security_version = excluded.security_version, state = excluded.state, held = COALESCE(excluded.held, devices.held), \
    installed = COALESCE(excluded.installed, devices.installed), outcome = excluded.outcome, release = excluded.release, trial = excluded.trial, \
    nonce_floor = COALESCE(excluded.nonce_floor, devices.nonce_floor) \
    WHERE excluded.nonce IS NULL OR devices.nonce_floor IS NULL OR devices.nonce_floor < excluded.nonce";
const INSERT_ROLLBACK: &str = "INSERT INTO rollbacks (device, seq, from_gen, to_gen, reason, phase, time, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";
const INSERT_CHECKIN: &str = "INSERT INTO checkins (device, time, nonce, protocol, peer, release, state, app_version, outcome, heap) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const FINISH_DEVICE: &str =
    "UPDATE devices SET outcome = $3 WHERE device = $1 AND nonce IS NOT DISTINCT FROM $2";
const FINISH_CHECKIN: &str = "UPDATE checkins SET outcome = $3 WHERE id = (SELECT MAX(id) FROM checkins WHERE device = $1 AND nonce IS NOT DISTINCT FROM $2)";
const LISTED_DEVICE: &str = "UPDATE devices SET files = $3, app_version = $4 WHERE device = $1 AND nonce IS NOT DISTINCT FROM $2";
const LISTED_CHECKIN: &str = "UPDATE checkins SET app_version = $3 WHERE id = (SELECT MAX(id) FROM checkins WHERE device = $1 AND nonce IS NOT DISTINCT FROM $2)";
const INSTALLED_DEVICE: &str =
    "UPDATE devices SET installed = $3 WHERE device = $1 AND nonce IS NOT DISTINCT FROM $2";
const INSERT_ROLLOUT: &str = "INSERT INTO rollouts (id, body, version, updated) VALUES ($1, $2, 1, $3) ON CONFLICT (id) DO NOTHING";
const UPDATE_ROLLOUT: &str =
    "UPDATE rollouts SET body = $2, version = version + 1, updated = $4 WHERE id = $1 AND version = $3";

/// What a device's record carries across check-ins: its nonce floor, the release held back and
/// the one installed, and whether it has rollbacks to read.
struct Carried {
    floor: Option<u32>,
    held: Option<String>,
    installed: Option<String>,
    rollbacks: bool,
}

/// What `device`'s record carries (`None` for a device never seen), its row locked where the
/// backend has row locks. Fails closed: a floor that cannot be read is [`FleetError::Floor`].
fn carried(conn: &mut dyn Conn, device: u64) -> Result<Option<Carried>, FleetError> {
    let sql = conn.dialect().select_floor;
    let rows = conn.query(
        sql,
        &[Param::Int(Some(id(device)?))],
        &[Kind::Int, Kind::Text, Kind::Text, Kind::Bool],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let r = Reader { row, device };
    let floor = r
        .num::<u32>(0, "devices.nonce_floor")
        .map_err(|e| match e {
            FleetError::Corrupt { reason, .. } => FleetError::Floor { device, reason },
            other => other,
        })?;
    Ok(Some(Carried {
        floor,
        held: r.text(1, "devices.held")?,
        installed: r.text(2, "devices.installed")?,
        rollbacks: r.bool(3, "rollbacks")?.unwrap_or(true),
    }))
}

/// Runs one write inside the open transaction. A refused check-in writes nothing.
fn apply(conn: &mut dyn Conn, op: &Op) -> Result<Done, FleetError> {
    match op {
        Op::CheckIn(record) => check_in(conn, record).map(|r| Done::CheckIn(Box::new(r))),
        Op::Listed {
            device,
            nonce,
            files,
        } => {
            let app = files
                .iter()
                .find(|f| f.name == rota_limits::APP)
                .map(|f| f.version);
            let key = id(*device)?;
            conn.execute(
                LISTED_DEVICE,
                &[
                    Param::Int(Some(key)),
                    int(*nonce),
                    json("files", files)?,
                    int(app),
                ],
            )?;
            conn.execute(
                LISTED_CHECKIN,
                &[Param::Int(Some(key)), int(*nonce), int(app)],
            )?;
            Ok(Done::Unit)
        }
        Op::Installed {
            device,
            nonce,
            state,
        } => {
            conn.execute(
                INSTALLED_DEVICE,
                &[
                    Param::Int(Some(id(*device)?)),
                    int(*nonce),
                    text(Some(state)),
                ],
            )?;
            Ok(Done::Unit)
        }
        Op::Finish {
            device,
            nonce,
            outcome,
        } => {
            for sql in [FINISH_DEVICE, FINISH_CHECKIN] {
                conn.execute(
                    sql,
                    &[
                        Param::Int(Some(id(*device)?)),
                        int(*nonce),
                        text(Some(outcome)),
                    ],
                )?;
            }
            Ok(Done::Unit)
        }
        Op::PutRollout { id, body, expected } => {
            let body = json("rollouts.body", body)?;
            let updated = Param::Int(Some(i64::try_from(super::now()).unwrap_or(i64::MAX)));
            let changed = match expected {
                None => conn.execute(INSERT_ROLLOUT, &[text(Some(id)), body, updated])?,
                Some(version) => conn.execute(
                    UPDATE_ROLLOUT,
                    &[text(Some(id)), body, Param::Int(Some(*version)), updated],
                )?,
            };
            Ok(Done::Put(changed == 1))
        }
    }
}

/// [`super::Fleet::check_in`] inside the open transaction.
fn check_in(conn: &mut dyn Conn, record: &CheckIn) -> Result<CheckIn, FleetError> {
    let device = id(record.device)?;
    let prev = carried(conn, record.device)?;
    if let (Some(got), Some(Some(last))) = (record.nonce, prev.as_ref().map(|p| p.floor)) {
        if got <= last {
            return Err(FleetError::Replay { last, got });
        }
    }
    let mut merged = record.clone();
    merged.rollbacks = Vec::new();
    if let Some(prev) = prev {
        merged.held = prev.held;
        merged.installed = prev.installed;
        if prev.rollbacks {
            for row in conn.query(
                SELECT_ROLLBACKS,
                &[Param::Int(Some(device))],
                ROLLBACK_COLUMNS,
            )? {
                merged.rollbacks.push(rollback(&row)?.1);
            }
        }
    }
    let known = merged.rollbacks.len();
    for r in &record.rollbacks {
        let seen = merged
            .rollbacks
            .iter()
            .any(|k| (k.from, k.to, k.reason) == (r.from, r.to, r.reason));
        if !seen {
            let mut r = r.clone();
            r.state = merged.installed.clone();
            merged.held = merged.installed.clone().or(merged.held);
            merged.rollbacks.push(r);
        }
    }
    let m = &merged;
    let written = conn.execute(
        UPSERT_DEVICE,
        &[
            Param::Int(Some(device)),
            Param::Int(Some(i64::try_from(m.time).unwrap_or(i64::MAX))),
            text(Some(&m.peer)),
            Param::Int(Some(i64::from(m.protocol))),
            int(m.nonce),
            int(m.app_version),
            json("files", &m.files)?,
            json("staged", &m.staged)?,
            json("heap", &m.heap)?,
            Param::Bool(m.signed),
            int(m.security_version),
            text(m.state.as_deref()),
            text(m.held.as_deref()),
            text(m.installed.as_deref()),
            text(Some(&m.outcome)),
            text(m.release.as_deref()),
            Param::Bool(m.trial),
        ],
    )?;
    if written == 0 {
        // Another server accepted a nonce at least as high between the read and the write.
        let last = carried(conn, record.device)?
            .and_then(|c| c.floor)
            .unwrap_or_default();
        return Err(FleetError::Replay {
            last,
            got: record.nonce.unwrap_or_default(),
        });
    }
    for (seq, r) in m.rollbacks.iter().enumerate().skip(known) {
        conn.execute(
            INSERT_ROLLBACK,
            &[
                Param::Int(Some(device)),
                Param::Int(Some(seq as i64)),
                int(Some(r.from)),
                int(Some(r.to)),
                Param::Int(Some(i64::from(r.reason))),
                Param::Int(Some(i64::from(r.phase))),
                Param::Int(Some(i64::try_from(r.time).unwrap_or(i64::MAX))),
                text(r.state.as_deref()),
            ],
        )?;
    }
    conn.execute(
        INSERT_CHECKIN,
        &[
            Param::Int(Some(device)),
            Param::Int(Some(i64::try_from(m.time).unwrap_or(i64::MAX))),
            int(m.nonce),
            Param::Int(Some(i64::from(m.protocol))),
            text(Some(&m.peer)),
            text(m.release.as_deref()),
            text(m.state.as_deref()),
            int(m.app_version),
            text(Some(&m.outcome)),
            json("heap", &m.heap)?,
        ],
    )?;
    Ok(merged)
}

/// [`super::Fleet::load`].
pub(crate) fn load(conn: &mut dyn Conn, device: u64) -> Result<Option<CheckIn>, FleetError> {
    let key = Param::Int(Some(id(device)?));
    let Some(row) = conn.query(SELECT_DEVICE, &[key], DEVICE_COLUMNS)?.pop() else {
        return Ok(None);
    };
    let mut record = record(&row)?;
    for row in conn.query(
        SELECT_ROLLBACKS,
        &[Param::Int(Some(id(device)?))],
        ROLLBACK_COLUMNS,
    )? {
        record.rollbacks.push(rollback(&row)?.1);
    }
    Ok(Some(record))
}

/// [`super::Fleet::list`].
pub(crate) fn list(conn: &mut dyn Conn) -> Result<Vec<CheckIn>, FleetError> {
    let mut rollbacks = std::collections::BTreeMap::<i64, Vec<RollbackRecord>>::new();
    for row in conn.query(SELECT_ALL_ROLLBACKS, &[], ROLLBACK_COLUMNS)? {
        match rollback(&row) {
            Ok((device, r)) => rollbacks.entry(device).or_default().push(r),
            Err(error) => tracing::warn!(%error, "rollback unreadable; left out"),
        }
    }
    let mut all = Vec::new();
    for row in conn.query(SELECT_DEVICES, &[], DEVICE_COLUMNS)? {
        match record(&row) {
            Ok(mut r) => {
                let key = i64::try_from(r.device).unwrap_or_default();
                r.rollbacks = rollbacks.remove(&key).unwrap_or_default();
                all.push(r);
            }
            Err(error) => tracing::warn!(%error, "fleet record unreadable; left out"),
        }
    }
    Ok(all)
}

const HISTORY: &str = "SELECT time, nonce, protocol, peer, release, state, app_version, outcome, heap FROM checkins WHERE device = $1 ORDER BY id DESC LIMIT $2";

/// [`super::Fleet::history`].
pub(crate) fn history(
    conn: &mut dyn Conn,
    device: u64,
    limit: usize,
) -> Result<Vec<Boot>, FleetError> {
    let kinds = [
        Kind::Int,
        Kind::Int,
        Kind::Int,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Int,
        Kind::Text,
        Kind::Text,
    ];
    let limit = Param::Int(Some(i64::try_from(limit).unwrap_or(i64::MAX)));
    let rows = conn.query(HISTORY, &[Param::Int(Some(id(device)?)), limit], &kinds)?;
    let mut boots = rows
        .iter()
        .map(|row| {
            let r = Reader { row, device };
            Ok(Boot {
                time: r.need(r.num(0, "checkins.time")?, "checkins.time")?,
                nonce: r.num(1, "checkins.nonce")?,
                protocol: r.need(r.num(2, "checkins.protocol")?, "checkins.protocol")?,
                peer: r.need(r.text(3, "checkins.peer")?, "checkins.peer")?,
                release: r.text(4, "checkins.release")?,
                state: r.text(5, "checkins.state")?,
                app_version: r.num(6, "checkins.app_version")?,
                outcome: r.need(r.text(7, "checkins.outcome")?, "checkins.outcome")?,
                heap: r.json::<Vec<HeapRecord>>(8, "checkins.heap")?,
            })
        })
        .collect::<Result<Vec<Boot>, FleetError>>()?;
    boots.reverse();
    Ok(boots)
}

const ROLLOUTS: &str = "SELECT id, body, version, updated FROM rollouts ORDER BY id";

/// [`super::Fleet::rollouts`].
pub(crate) fn rollouts(conn: &mut dyn Conn) -> Result<Vec<StoredRollout>, FleetError> {
    let kinds = [Kind::Text, Kind::Text, Kind::Int, Kind::Int];
    conn.query(ROLLOUTS, &[], &kinds)?
        .iter()
        .map(|row| {
            let r = Reader { row, device: 0 };
            Ok(StoredRollout {
                id: r.need(r.text(0, "rollouts.id")?, "rollouts.id")?,
                body: r.json(1, "rollouts.body")?,
                version: r.need(r.int(2, "rollouts.version")?, "rollouts.version")?,
                updated: r.need(r.num(3, "rollouts.updated")?, "rollouts.updated")?,
            })
        })
        .collect()
}
