//! `rota-pack overlay.elf -o overlay.blob [--name NAME] [--limit BYTES] [--report]`
#![forbid(unsafe_code)]
#![deny(missing_docs)]
use clap::Parser;
use std::{path::PathBuf, process::ExitCode};

/// Turn a rota overlay ELF (linked at 0) into a blob the resident core loads.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Overlay ELF file.
    elf: PathBuf,
    /// Output blob.
    #[arg(short, long)]
    output: PathBuf,
    /// Overlay name stored in the blob (default: the ELF file's stem).
    #[arg(long)]
    name: Option<String>,
    /// Largest image accepted, in bytes (the arena size).
    #[arg(long, default_value_t = 8192)]
    limit: u64,
    /// Print sizes per section.
    #[arg(long)]
    report: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let name = args.name.clone().unwrap_or_else(|| {
        args.elf
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let run = || -> Result<String, String> {
        let data = std::fs::read(&args.elf).map_err(|e| format!("cannot read: {e}"))?;
        let packed = rota_pack::pack(&data, args.limit).map_err(|e| e.to_string())?;
        let blob = packed.blob(&name).map_err(|e| e.to_string())?;
        std::fs::write(&args.output, &blob)
            .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
        Ok(rota_pack::report(&packed, &name, blob.len()))
    };
    match run() {
        Ok(report) => {
            if args.report {
                print!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rota-pack: {}: {e}", args.elf.display());
            ExitCode::FAILURE
        }
    }
}
