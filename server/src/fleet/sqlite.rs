//! The SQLite backend, the default: one file (`<repo>/.rota/state.db`), nothing to install (the
//! `rusqlite` crate builds SQLite in).
//!
//! Each connection runs in WAL mode with `synchronous=FULL`, so a committed transaction is on disk
//! (the WAL fsynced) before the commit returns, and survives a power cut; readers never block the
//! writer. Write transactions start with `BEGIN IMMEDIATE`, taking the file's write lock before
//! they read, so a check-then-write (the replay check) is atomic across processes too (several
//! `serve-stdio` processes on one repository); a writer waits up to [`BUSY_TIMEOUT`] for another.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, OpenFlags, ToSql};

use super::store::{Conn, Dialect, Kind, Param, Row, Val};
use super::{migrations, Database, DbError, FleetError};

/// How long a write waits for another process's transaction on the same file.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite's dialect.
static DIALECT: Dialect = Dialect {
    begin: "BEGIN IMMEDIATE",
    select_floor: "SELECT nonce_floor, held, installed, EXISTS (SELECT 1 FROM rollbacks WHERE rollbacks.device = devices.device) FROM devices WHERE device = $1",
    lock_migrations: "",
    migrations: migrations::SQLITE,
    // SQLite has one writer at a time: a second connection would only wait for the lock.
    writers: 1,
};

/// A connection to the SQLite file.
pub(crate) struct Sqlite(Connection);

impl Sqlite {
    /// Opens (creating when missing, with its directory) the file at `path`.
    pub(crate) fn open(path: &Path, database: &Database) -> Result<Sqlite, FleetError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| FleetError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let open = || -> Result<Connection, rusqlite::Error> {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.set_prepared_statement_cache_capacity(64);
            Ok(conn)
        };
        open().map(Sqlite).map_err(|e| FleetError::Open {
            database: database.to_string(),
            source: e.into(),
        })
    }
}

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Param::Int(v) => v.to_sql(),
            Param::Text(v) => v.to_sql(),
            Param::Bool(v) => v.to_sql(),
        }
    }
}

/// The statement as SQLite numbers its parameters: `$1` is `?1`.
fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}

/// The value `v` of a column read as `kind`; another stored type is [`Val::Bad`].
fn value(v: ValueRef<'_>, kind: Kind) -> Val {
    match (kind, v) {
        (Kind::Int, ValueRef::Null) => Val::Int(None),
        (Kind::Int, ValueRef::Integer(i)) => Val::Int(Some(i)),
        (Kind::Text, ValueRef::Null) => Val::Text(None),
        (Kind::Text, ValueRef::Text(t)) => match std::str::from_utf8(t) {
            Ok(t) => Val::Text(Some(t.to_owned())),
            Err(e) => Val::Bad(format!("not UTF-8: {e}")),
        },
        (Kind::Bool, ValueRef::Null) => Val::Bool(None),
        (Kind::Bool, ValueRef::Integer(i @ (0 | 1))) => Val::Bool(Some(i == 1)),
        (kind, v) => Val::Bad(format!("{:?} where {kind:?} belongs", v.data_type())),
    }
}

impl Conn for Sqlite {
    fn dialect(&self) -> &'static Dialect {
        &DIALECT
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        Ok(self.0.execute_batch(sql)?)
    }

    fn execute(&mut self, sql: &'static str, params: &[Param]) -> Result<u64, DbError> {
        let mut statement = self.0.prepare_cached(&numbered(sql))?;
        Ok(statement.execute(params_from_iter(params))? as u64)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[Param],
        kinds: &[Kind],
    ) -> Result<Vec<Row>, DbError> {
        let mut statement = self.0.prepare_cached(&numbered(sql))?;
        let mut rows = statement.query(params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(kinds.len());
            for (i, kind) in kinds.iter().enumerate() {
                values.push(value(row.get_ref(i)?, *kind));
            }
            out.push(values);
        }
        Ok(out)
    }
}
