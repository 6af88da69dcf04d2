//! `rota-storm`: fleet-scale load on a real `rota-server` process, beside a baseline measured in the
//! same run (a server that answers every connection with a constant `OK!` and does nothing else).
//!
//! - **boot storm**: `--devices` devices (v1 and v2 alternating) each check in once, open loop, their
//!   connects spread evenly over `--window-ms` (10,000 in one second: 10,000 check-ins/s);
//! - **slow links**: `--slow` luaOTA devices connect (ramped over two seconds) and each trickles its
//!   HI line in four pieces over `--slow-secs`, so that many sessions are open at once, while `--fast` devices (v1
//!   and v2) check in normally.
//!
//! Latency is from just before `connect()` to the server's answer (v1: its first record; v2: the
//! whole no-update session). Every device is provisioned first, so each check-in is a no-update.
//! The simulated devices run in worker processes (`rota-storm worker`, this same binary), a few
//! thousand sockets each: a process may hold at most 20,000 open files here. See docs/server.md.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bench;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Fleet-scale load for rota-server (see `docs/server.md`, "Scale").
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the boot storm and the slow-link case against rota-server and the OK! baseline.
    Bench(bench::BenchArgs),
    /// (internal) one process of simulated devices, driven by `bench` over stdin/stdout.
    Worker(worker::WorkerArgs),
    /// (internal) the baseline: answers every connection with a constant record.
    OkServer {
        /// Address to listen on; the bound port is printed on stdout.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Bench(args) => bench::run(args).await,
            Command::Worker(args) => worker::run(args).await,
            Command::OkServer { listen } => worker::ok_server(listen).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("rota-storm: {why}");
            ExitCode::FAILURE
        }
    }
}

/// The path of this program, for the worker processes.
fn this_program() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))
}
