//! `rota-sign`: make an Ed25519 key pair, sign a device's release in a repository, show a release.
//! See `docs/signing.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rota_sign::{keygen, parse_isa, release, show, ReleaseRequest};

/// Signed rota releases.
#[derive(Parser)]
#[command(name = "rota-sign", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a key pair: <OUT>.key (the secret seed, hex, mode 0600) and <OUT>.pub (the public key,
    /// hex). Never overwrites either.
    Keygen {
        /// Path of the pair, without .key/.pub.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a device's release: every file of its inventory, the blobs checked as the device would,
    /// written to <inventory>.release (ESP-<id>.release or default.release) in the repository.
    Release {
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// The device id (its inventory ESP-<id>.json, else default.json), or `default`.
        #[arg(long)]
        device: String,
        /// The secret key file (<name>.key).
        #[arg(long)]
        key: PathBuf,
        /// The release's security version (devices refuse a lower one than they have committed).
        #[arg(long)]
        security_version: u32,
        /// The devices' ISA: thumbv7m or lx106.
        #[arg(long, value_parser = isa)]
        isa: rota_blob::Isa,
    },
    /// Show a release file's manifest and, given public keys, whether it verifies.
    Show {
        /// The release file.
        file: PathBuf,
        /// A public key file (<name>.pub); may be given more than once.
        #[arg(long = "pub")]
        keys: Vec<PathBuf>,
    },
}

fn isa(s: &str) -> Result<rota_blob::Isa, String> {
    parse_isa(s).ok_or_else(|| format!("`{s}`: thumbv7m or lx106"))
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Keygen { out } => keygen(&out).map(|(key, public, pk)| {
            println!(
                "wrote {} (secret, mode 0600) and {} (public key {})",
                key.display(),
                public.display(),
                rota_sign::hex(&pk)
            );
            true
        }),
        Command::Release {
            repo,
            device,
            key,
            security_version,
            isa,
        } => release(&ReleaseRequest {
            repo,
            device,
            key,
            security_version,
            isa,
            abi: rota_abi::ABI_VERSION,
        })
        .map(|summary| {
            println!("{summary}");
            true
        }),
        Command::Show { file, keys } => show(&file, &keys).map(|shown| {
            print!("{}", shown.text);
            shown.verified.is_none_or(|r| r.is_ok())
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("rota-sign: {e}");
            ExitCode::FAILURE
        }
    }
}
