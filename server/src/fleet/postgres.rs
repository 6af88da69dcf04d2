//! The PostgreSQL backend, for several rota-server instances behind one address sharing one
//! database (`--database postgres://...`).
//!
//! The replay check is atomic across servers: a check-in reads the device's row with
//! `SELECT ... FOR UPDATE` (the row stays locked until its transaction ends), and the write is a
//! conditional upsert that changes nothing unless the new nonce is above the stored floor, so two
//! servers given the same Hello at once accept it at most once, even for a device neither has seen
//! (the second insert waits for the first, then finds its floor). Batches lock rows in device
//! order, so two servers' batches do not deadlock; should PostgreSQL still abort one, each of its
//! writes runs again alone ([`super::store`]). Commits are durable as the server is configured
//! (`synchronous_commit`, on by default).

use std::collections::HashMap;

use ::postgres::types::ToSql;
use ::postgres::{Client, NoTls, Statement};

use super::store::{Conn, Dialect, Kind, Param, Row, Val};
use super::{migrations, Database, DbError, FleetError};

/// PostgreSQL's dialect.
static DIALECT: Dialect = Dialect {
    begin: "BEGIN",
    select_floor: "SELECT nonce_floor, held, installed, EXISTS (SELECT 1 FROM rollbacks WHERE rollbacks.device = devices.device) FROM devices WHERE device = $1 FOR UPDATE",
    lock_migrations: "SELECT pg_advisory_xact_lock(7270616)",
    migrations: migrations::POSTGRES,
    // Each statement is a round trip: batches on several connections overlap their waits.
    writers: 4,
};

/// A connection to the PostgreSQL server, with its prepared statements. A connection the server
/// closed (a restart, an administrator) is made again before the next transaction or read, never
/// inside a transaction: the writes it was running fail, and are not half done.
pub(crate) struct Postgres {
    url: String,
    client: Client,
    statements: HashMap<&'static str, Statement>,
    in_transaction: bool,
}

impl Postgres {
    /// Connects to `url` (no TLS: the server is expected on the host or a private network).
    pub(crate) fn connect(url: &str, database: &Database) -> Result<Postgres, FleetError> {
        let client = Client::connect(url, NoTls).map_err(|e| FleetError::Open {
            database: database.to_string(),
            source: e.into(),
        })?;
        Ok(Postgres {
            url: url.to_owned(),
            client,
            statements: HashMap::new(),
            in_transaction: false,
        })
    }

    /// Connects again if the server closed the connection and no transaction is open on it.
    fn revive(&mut self) -> Result<(), DbError> {
        if self.client.is_closed() && !self.in_transaction {
            self.client = Client::connect(&self.url, NoTls)?;
            self.statements.clear();
        }
        Ok(())
    }

    /// `sql`, prepared once per connection.
    fn statement(&mut self, sql: &'static str) -> Result<Statement, DbError> {
        self.revive()?;
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// `params` as the client takes them.
fn values(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| -> &(dyn ToSql + Sync) {
            match p {
                Param::Int(v) => v,
                Param::Text(v) => v,
                Param::Bool(v) => v,
            }
        })
        .collect()
}

impl Conn for Postgres {
    fn dialect(&self) -> &'static Dialect {
        &DIALECT
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.revive()?;
        Ok(self.client.batch_execute(sql)?)
    }

    fn begin(&mut self) -> Result<(), DbError> {
        self.revive()?;
        self.client.batch_execute(DIALECT.begin)?;
        self.in_transaction = true;
        Ok(())
    }

    fn end(&mut self, commit: bool) -> Result<(), DbError> {
        self.in_transaction = false;
        Ok(self
            .client
            .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })?)
    }

    fn execute(&mut self, sql: &'static str, params: &[Param]) -> Result<u64, DbError> {
        let statement = self.statement(sql)?;
        Ok(self.client.execute(&statement, &values(params))?)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[Param],
        kinds: &[Kind],
    ) -> Result<Vec<Row>, DbError> {
        let statement = self.statement(sql)?;
        let rows = self.client.query(&statement, &values(params))?;
        Ok(rows
            .iter()
            .map(|row| {
                kinds
                    .iter()
                    .enumerate()
                    .map(|(i, kind)| {
                        let bad = |e: ::postgres::Error| Val::Bad(e.to_string());
                        match kind {
                            Kind::Int => row.try_get(i).map_or_else(bad, Val::Int),
                            Kind::Text => row.try_get(i).map_or_else(bad, Val::Text),
                            Kind::Bool => row.try_get(i).map_or_else(bad, Val::Bool),
                        }
                    })
                    .collect()
            })
            .collect())
    }
}
