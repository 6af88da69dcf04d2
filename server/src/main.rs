//! `rota-server`: provisions NodeMCU luaOTA devices (protocol v1) and rota devices (protocol v2) from a
//! repository directory (or one git commit of it).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rota_server::fleet::{self, Database, Fleet};
use rota_server::listen;
use rota_server::repo::{Repo, RepoError};
use rota_server::session::{Limits, Server};
use tracing::level_filters::LevelFilter;

/// Over-the-air provisioning server for NodeMCU luaOTA devices (protocol v1, byte-exact) and rota
/// devices (protocol v2), on the same port.
///
/// Each device connects, says HI with its chip id, and gets exactly the files its inventory names:
/// ESP-<chipid>.json in the repository (or default.json), e.g.
///   {"files": ["init.lua", "lib/util.lua", "data.txt"], "secret": "the device's secret"}
/// Files are sent only when their content changed; .lua files are compiled on the device (and must
/// compile as Lua 5.1 here first); a source containing the comment --SAFETRIM is sent with comments and
/// indentation removed. rota devices get the inventory's files compared by SHA-256, resumable, with
/// the optional "config" object as their new config. Logs go to stderr, one summary line per session;
/// each rota device's check-ins are kept in DIR/.rota/state.db, or the --database (see
/// `rota-server fleet`).
#[derive(Parser)]
#[command(
    version,
    about,
    long_about,
    after_help = "Example: rota-server serve --repo ./ota --listen 0.0.0.0:8266"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "info")]
    log_level: LevelFilter,
}

#[derive(Subcommand)]
enum Command {
    /// Listen for devices on a TCP port (many at once).
    Serve {
        #[command(flatten)]
        repo: RepoArgs,
        /// Address to listen on; use 0.0.0.0:8266 to reach real devices on your network.
        #[arg(long, default_value = "127.0.0.1:8266")]
        listen: SocketAddr,
        /// Most sessions served at once (also capped by the open-file limit). When all are taken, a
        /// new connection replaces the oldest one that has sent nothing yet, or is closed at once.
        #[arg(long, default_value_t = listen::MAX_SESSIONS)]
        max_sessions: usize,
        /// Most sessions from one peer address (an IPv4 address or an IPv6 /64); further
        /// connections from it are closed at once. Default: a quarter of --max-sessions.
        #[arg(long, value_name = "N")]
        max_sessions_per_peer: Option<usize>,
        /// Share the listening address with other rota-server instances started with this flag
        /// (SO_REUSEPORT; the kernel spreads connections over them). Give them one database.
        #[arg(long)]
        reuse_port: bool,
    },
    /// Serve exactly one session over stdin/stdout (for emulated devices: one process per connection).
    ServeStdio {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Print every device's last check-in (DIR/.rota/state.db, or the --database): versions,
    /// release, heap report, outcome.
    Fleet {
        /// Repository directory.
        #[arg(value_name = "DIR")]
        repo: PathBuf,
        #[command(flatten)]
        database: DatabaseArg,
        /// Print the records as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct DatabaseArg {
    /// Where device state is kept: sqlite:PATH, or postgres://USER@HOST:PORT/DB shared by several
    /// servers. Default: sqlite:DIR/.rota/state.db.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

impl DatabaseArg {
    /// Opens the database (the repository's default one without --database).
    fn open(&self, repo_dir: &std::path::Path) -> Result<Fleet, CliError> {
        let database = match &self.database {
            Some(url) => url.parse()?,
            None => Database::for_repo(repo_dir),
        };
        Ok(Fleet::open(&database)?)
    }
}

#[derive(Args)]
struct RepoArgs {
    /// Repository directory: ESP-<chipid>.json and default.json inventories, and the files they name.
    /// An inventory's "release" (or its group's in groups.json) pins the device to a git revision:
    /// it then gets that commit's files, file list and config (see docs/releases.md).
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// Serve the files as committed at this git revision (branch, tag, commit), not the working
    /// tree; resolved once at start. Devices pinned to another revision still get theirs.
    #[arg(long, value_name = "REVISION")]
    rev: Option<String>,
    /// Seconds to wait for any one read or write before dropping a session.
    #[arg(long, value_name = "SECS", default_value_t = 15.0)]
    idle_timeout: f64,
    /// Seconds from a connection's start to its whole first record (HI line or Hello); a connection
    /// that sends nothing holds its slot no longer.
    #[arg(long, value_name = "SECS", default_value_t = Limits::FIRST_RECORD.as_secs_f64())]
    first_record_timeout: f64,
    /// Longest session, in seconds (devices allow 30 s after the first command).
    #[arg(long, value_name = "SECS", default_value_t = 45.0)]
    session_timeout: f64,
    /// Seconds to wait for any one read or write of a protocol v2 session (a silent rota device is
    /// dropped after this).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    v2_idle_timeout: f64,
    #[command(flatten)]
    database: DatabaseArg,
}

/// A command-line argument that cannot be used.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("--{0} must be a positive number of seconds")]
    Seconds(&'static str),
    #[error("--{0} must be at least 1")]
    Count(&'static str),
    #[error("cannot use stdout: {0}")]
    Stdout(std::io::Error),
    #[error(transparent)]
    Fleet(#[from] fleet::FleetError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl RepoArgs {
    fn server(&self, tune: impl FnOnce(&mut Limits)) -> Result<Server, CliError> {
        let secs = |v: f64, name| {
            Duration::try_from_secs_f64(v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or(CliError::Seconds(name))
        };
        let mut limits = Limits {
            idle: secs(self.idle_timeout, "idle-timeout")?,
            session: secs(self.session_timeout, "session-timeout")?,
            v2_idle: secs(self.v2_idle_timeout, "v2-idle-timeout")?,
            first_record: secs(self.first_record_timeout, "first-record-timeout")?,
            ..Limits::default()
        };
        tune(&mut limits);
        let repo = match &self.rev {
            Some(rev) => Repo::open_rev(&self.repo, rev)?,
            None => Repo::open_dir(&self.repo)?,
        };
        let fleet = self.database.open(&self.repo)?;
        tracing::info!(repo = %repo.describe(), database = %fleet.database(), "serving");
        Ok(Server::with_fleet(repo, fleet, limits))
    }
}

async fn run(command: Command) -> Result<bool, CliError> {
    match command {
        Command::Serve {
            repo,
            listen: addr,
            max_sessions,
            max_sessions_per_peer,
            reuse_port,
        } => {
            if max_sessions == 0 {
                return Err(CliError::Count("max-sessions"));
            }
            if max_sessions_per_peer == Some(0) {
                return Err(CliError::Count("max-sessions-per-peer"));
            }
            let server = Arc::new(repo.server(|limits| {
                limits.sessions_per_peer = max_sessions_per_peer;
            })?);
            listen::raise_descriptor_limit(max_sessions);
            let listener = listen::bind_shared(addr, reuse_port)
                .map_err(|source| CliError::Listen { addr, source })?;
            let local = listener.local_addr().unwrap_or(addr);
            tracing::info!(addr = %local, "listening");
            let shutdown = async {
                // Without a signal handler the process just runs until killed.
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
                tracing::info!("interrupted; stopping");
            };
            listen::run(listener, server, max_sessions, shutdown).await;
            Ok(true)
        }
        Command::ServeStdio { repo } => {
            let server = repo.server(|_| {})?;
            // Not tokio::io::stdout(): std's stdout is line-buffered and would split a record whose
            // payload holds a line feed into two writes. A plain file handle writes each record at once.
            let stdout = std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(CliError::Stdout)?;
            let stdout = tokio::fs::File::from_std(std::fs::File::from(stdout));
            let io = tokio::io::join(tokio::io::stdin(), stdout);
            let report = server.serve(io, "stdio").await;
            Ok(report.is_some_and(|r| r.outcome.is_ok()))
        }
        Command::Fleet {
            repo,
            database,
            json,
        } => {
            let records = database.open(&repo)?.list()?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&records).unwrap_or_default()
                );
            } else {
                print!("{}", fleet::table(&records));
            }
            Ok(true)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(cli.log_level)
        .with_ansi(false)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    // Do not wait for a blocked stdin reader (serve-stdio whose peer keeps the pipe open).
    runtime.shutdown_background();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            tracing::error!(%error, "cannot serve");
            ExitCode::FAILURE
        }
    }
}
