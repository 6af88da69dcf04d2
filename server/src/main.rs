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
        /// Serve the dashboard and its JSON API (GET /api/devices, /api/openapi.json) on this
        /// address: a port alone means 127.0.0.1:PORT; `--http` alone, 127.0.0.1:8267.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DASHBOARD,
              value_parser = http_addr)]
        http: Option<SocketAddr>,
    },
    /// Serve exactly one session over stdin/stdout (for emulated devices: one process per connection).
    ServeStdio {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Staged rollouts: give a release (a git revision) to a cohort first, widen it in steps, halt
    /// it; `rollout list` shows each one's progress.
    Rollout {
        /// Repository directory.
        #[arg(long, value_name = "DIR")]
        repo: PathBuf,
        #[command(flatten)]
        database: DatabaseArg,
        #[command(subcommand)]
        action: RolloutAction,
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

/// The dashboard's address when `--http` names none.
const DASHBOARD: &str = "127.0.0.1:8267";

/// `--http`'s value: an address, or a port on 127.0.0.1.
fn http_addr(text: &str) -> Result<SocketAddr, String> {
    match text.parse::<u16>() {
        Ok(port) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        Err(_) => text
            .parse()
            .map_err(|_| format!("`{text}` is neither an address (127.0.0.1:8267) nor a port")),
    }
}

#[derive(Subcommand)]
enum RolloutAction {
    /// Start a rollout of REVISION (branch, tag or commit; the commit it names now is what the
    /// cohort gets) to a cohort: --steps percentages of the fleet, of --devices or of --group.
    Start {
        /// The release: a branch, tag or commit of the repository.
        #[arg(value_name = "REVISION")]
        release: String,
        /// The rollout's id (default: the release's name).
        #[arg(long)]
        id: Option<String>,
        /// Only these devices (comma-separated ids).
        #[arg(long, value_delimiter = ',', conflicts_with = "group")]
        devices: Vec<u64>,
        /// Only the devices of this group of groups.json.
        #[arg(long)]
        group: Option<String>,
        /// The cohort sizes in percent, in order (e.g. 5,25,100).
        #[arg(long, value_delimiter = ',', default_value = "5,25,100")]
        steps: Vec<u8>,
        /// Widen to the next step by itself once every device of the cohort confirmed.
        #[arg(long)]
        auto: bool,
        /// Halt when this many cohort devices rolled the release back.
        #[arg(long, default_value_t = 1)]
        max_rollbacks: u32,
        /// Halt when this many cohort devices failed a session on it.
        #[arg(long, default_value_t = 3)]
        max_failures: u32,
    },
    /// Widen a rollout to its next step (after the last: done).
    Widen {
        /// The rollout's id.
        id: String,
    },
    /// Halt a rollout: nobody new gets its release; who has it keeps it.
    Halt {
        /// The rollout's id.
        id: String,
    },
    /// Every rollout with its step, status and progress.
    List,
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
    #[error(transparent)]
    Rollout(#[from] rota_server::rollout::RolloutError),
    #[error(transparent)]
    Book(#[from] rota_server::rollout::BookError),
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
            http,
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
            server.refresh_rollouts()?;
            tokio::spawn(server.clone().keep_rollouts());
            if let Some(addr) = http {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| CliError::Listen { addr, source })?;
                let local = listener.local_addr().unwrap_or(addr);
                tracing::info!(addr = %local, "dashboard");
                let source = Arc::new(rota_server::dashboard::FleetSource::new(
                    server.fleet().clone(),
                    server.repo().clone(),
                ));
                tokio::spawn(async move {
                    if let Err(error) =
                        rota_dashboard::serve(listener, source, std::future::pending()).await
                    {
                        tracing::error!(%error, "the dashboard stopped");
                    }
                });
            }
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
            server.refresh_rollouts()?;
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
        Command::Rollout {
            repo,
            database,
            action,
        } => {
            rollout(&Repo::open_dir(&repo)?, &database.open(&repo)?, action)?;
            Ok(true)
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

/// `rota-server rollout ...`.
fn rollout(repo: &Repo, fleet: &Fleet, action: RolloutAction) -> Result<(), CliError> {
    use rota_server::rollout::{book, Population, Rollout, Status};
    match action {
        RolloutAction::Start {
            release,
            id,
            devices,
            group,
            steps,
            auto,
            max_rollbacks,
            max_failures,
        } => {
            let resolved = repo.resolve_release(&release)?;
            let population = match (group, devices.is_empty()) {
                (Some(g), _) => Population::Group(g),
                (None, false) => Population::Devices(devices),
                (None, true) => Population::All,
            };
            let id = id.unwrap_or_else(|| resolved.name.clone());
            let r = Rollout::new(
                &id,
                &release,
                &resolved,
                population,
                steps,
                auto,
                max_rollbacks,
                max_failures,
                fleet::now(),
            )?;
            book::save(fleet, &r, None)?;
            println!(
                "rollout {id}: {} ({}) to {}",
                r.name,
                r.commit,
                r.describe()
            );
        }
        RolloutAction::Widen { id } => {
            let r = book::update(fleet, &id, Rollout::widen)?;
            println!("rollout {id}: {} {}", r.describe(), r.status);
        }
        RolloutAction::Halt { id } => {
            let r = book::update(fleet, &id, |r| {
                let was = r.status.clone();
                r.status = Status::Halted("halted by the operator".into());
                was == Status::Active
            })?;
            println!("rollout {id}: {}", r.status);
        }
        RolloutAction::List => {
            println!(
                "{:<16} {:<12} {:<34} {:<8} {:>6} {:>8} {:>10} {:>11} {:>7}  STATUS",
                "ROLLOUT",
                "RELEASE",
                "COHORT",
                "AUTO",
                "DEVICES",
                "UPDATED",
                "CONFIRMED",
                "ROLLED BACK",
                "FAILED"
            );
            for (r, p) in book::status(fleet, repo)? {
                println!(
                    "{:<16} {:<12} {:<34} {:<8} {:>6} {:>8} {:>10} {:>11} {:>7}  {}",
                    r.id,
                    r.name,
                    r.describe(),
                    if r.auto { "auto" } else { "manual" },
                    p.cohort,
                    p.updated,
                    p.confirmed,
                    p.rolled_back,
                    p.failed,
                    r.status
                );
            }
        }
    }
    Ok(())
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
