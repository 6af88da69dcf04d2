//! The schema, as a numbered list of steps per backend ([`SQLITE`], [`POSTGRES`]; step `n` is
//! element `n - 1`), applied in order when a database is opened, inside one transaction, each
//! recorded in `schema_migrations` ([`SCHEMA_MIGRATIONS`]). A database whose recorded version is
//! above the steps this binary knows was migrated by a newer rota-server and is refused
//! ([`FleetError::Newer`]). Steps are only ever appended: a released step never changes.
//!
//! Both lists build the same tables with the same meaning (docs/state.md); PostgreSQL's integers
//! are all `BIGINT` (a device id, a nonce, a time), SQLite's are its 64-bit `INTEGER`.

use super::store::{Conn, Kind, Param, Val};
use super::{now, Database, FleetError};

/// The table recording the steps applied (both backends).
pub const SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)";

/// Records step `$1` as applied at `$2` (seconds since the Unix epoch).
const RECORD: &str = "INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)";
const CURRENT: &str = "SELECT MAX(version) FROM schema_migrations";

/// SQLite's steps.
pub const SQLITE: &[&str] = &[
    // 1: each device's last check-in and its nonce floor, and the rollbacks it reported (what the
    // per-device JSON files held).
    "CREATE TABLE devices (
        device INTEGER PRIMARY KEY, time INTEGER NOT NULL, peer TEXT NOT NULL,
        protocol INTEGER NOT NULL, nonce INTEGER, app_version INTEGER,
        files TEXT NOT NULL, staged TEXT NOT NULL, heap TEXT NOT NULL,
        signed INTEGER, security_version INTEGER, state TEXT, held TEXT, installed TEXT,
        outcome TEXT NOT NULL, nonce_floor INTEGER);
     CREATE TABLE rollbacks (
        device INTEGER NOT NULL, seq INTEGER NOT NULL, from_gen INTEGER NOT NULL,
        to_gen INTEGER NOT NULL, reason INTEGER NOT NULL, phase INTEGER NOT NULL,
        time INTEGER NOT NULL, state TEXT,
        PRIMARY KEY (device, from_gen, to_gen, reason));",
    // 2: the release served, whether the device was on a trial boot, the history of check-ins, the rollouts.
    "ALTER TABLE devices ADD COLUMN release TEXT;
     ALTER TABLE devices ADD COLUMN trial INTEGER;
     CREATE TABLE checkins (
        id INTEGER PRIMARY KEY, device INTEGER NOT NULL, time INTEGER NOT NULL, nonce INTEGER,
        protocol INTEGER NOT NULL, peer TEXT NOT NULL, release TEXT, state TEXT,
        app_version INTEGER, outcome TEXT NOT NULL, heap TEXT NOT NULL);
     CREATE INDEX checkins_device ON checkins (device, id);
     CREATE TABLE rollouts (
        id TEXT PRIMARY KEY, body TEXT NOT NULL, version INTEGER NOT NULL,
        updated INTEGER NOT NULL);",
];

/// PostgreSQL's steps.
pub const POSTGRES: &[&str] = &[
    // 1: as SQLite's 1.
    "CREATE TABLE devices (
        device BIGINT PRIMARY KEY, time BIGINT NOT NULL, peer TEXT NOT NULL,
        protocol BIGINT NOT NULL, nonce BIGINT, app_version BIGINT,
        files TEXT NOT NULL, staged TEXT NOT NULL, heap TEXT NOT NULL,
        signed BOOLEAN, security_version BIGINT, state TEXT, held TEXT, installed TEXT,
        outcome TEXT NOT NULL, nonce_floor BIGINT);
     CREATE TABLE rollbacks (
        device BIGINT NOT NULL, seq BIGINT NOT NULL, from_gen BIGINT NOT NULL,
        to_gen BIGINT NOT NULL, reason BIGINT NOT NULL, phase BIGINT NOT NULL,
        time BIGINT NOT NULL, state TEXT,
        PRIMARY KEY (device, from_gen, to_gen, reason));",
    // 2: as SQLite's 2.
    "ALTER TABLE devices ADD COLUMN release TEXT;
     ALTER TABLE devices ADD COLUMN trial BOOLEAN;
     CREATE TABLE checkins (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, device BIGINT NOT NULL,
        time BIGINT NOT NULL, nonce BIGINT, protocol BIGINT NOT NULL, peer TEXT NOT NULL,
        release TEXT, state TEXT, app_version BIGINT, outcome TEXT NOT NULL, heap TEXT NOT NULL);
     CREATE INDEX checkins_device ON checkins (device, id);
     CREATE TABLE rollouts (
        id TEXT PRIMARY KEY, body TEXT NOT NULL, version BIGINT NOT NULL,
        updated BIGINT NOT NULL);",
];

/// Brings the database behind `conn` to the latest schema, in one transaction (concurrent openers
/// wait for each other); returns the version it was at.
pub(crate) fn migrate(conn: &mut dyn Conn, database: &Database) -> Result<i64, FleetError> {
    conn.begin()?;
    let result = steps(conn, database);
    match &result {
        Ok(_) => conn.end(true)?,
        Err(_) => {
            let _ = conn.end(false);
        }
    }
    result
}

fn steps(conn: &mut dyn Conn, database: &Database) -> Result<i64, FleetError> {
    let dialect = conn.dialect();
    if !dialect.lock_migrations.is_empty() {
        conn.batch(dialect.lock_migrations)?;
    }
    conn.batch(SCHEMA_MIGRATIONS)?;
    let found = match conn
        .query(CURRENT, &[], &[Kind::Int])?
        .first()
        .map(|r| &r[0])
    {
        Some(Val::Int(v)) => v.unwrap_or(0),
        other => {
            return Err(FleetError::Corrupt {
                device: 0,
                field: "schema_migrations.version",
                reason: format!("{other:?}"),
            })
        }
    };
    let known = dialect.migrations.len();
    if found > known as i64 {
        return Err(FleetError::Newer {
            database: database.to_string(),
            found,
            known,
        });
    }
    for (version, step) in dialect.migrations.iter().enumerate().skip(found as usize) {
        conn.batch(step)?;
        conn.execute(
            RECORD,
            &[
                Param::Int(Some(version as i64 + 1)),
                Param::Int(Some(now() as i64)),
            ],
        )?;
    }
    Ok(found)
}
