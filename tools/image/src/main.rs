//! `rota-image -o storage.bin [--boot-count N] [--config TEXT] BLOB...`: an erased storage region with a
//! config record and the given blobs in consecutive slots (layout in docs/flash-layout.md).
use clap::Parser;
use rota_core::layout;
use std::{path::PathBuf, process::ExitCode};

/// Build a rota storage-region image.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
    /// Boot counter stored in the config record.
    #[arg(long, default_value_t = 1)]
    boot_count: u32,
    /// Config record payload.
    #[arg(long, default_value = "server=10.0.2.100 port=8266")]
    config: String,
    /// Blobs, placed in slots in this order.
    blobs: Vec<PathBuf>,
}

fn build(args: &Args) -> Result<Vec<u8>, String> {
    let mut image = vec![0xFFu8; layout::REGION_SIZE as usize];
    let at = layout::CONFIG_OFFSET as usize;
    layout::encode_config(
        args.boot_count,
        args.config.as_bytes(),
        &mut image[at..at + 4096],
    )
    .ok_or_else(|| format!("config payload over {} bytes", rota_core::CONFIG_MAX))?;
    if args.blobs.len() > layout::SLOT_COUNT as usize {
        return Err(format!(
            "{} blobs but only {} slots",
            args.blobs.len(),
            layout::SLOT_COUNT
        ));
    }
    for (path, slot) in args.blobs.iter().zip(layout::slots()) {
        let blob = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        rota_blob::Blob::parse(&blob)
            .map_err(|e| format!("{}: not a valid blob: {e}", path.display()))?;
        if blob.len() > layout::SLOT_SIZE as usize {
            return Err(format!(
                "{}: {} bytes exceed the slot size {}",
                path.display(),
                blob.len(),
                layout::SLOT_SIZE
            ));
        }
        image[slot as usize..slot as usize + blob.len()].copy_from_slice(&blob);
    }
    Ok(image)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match build(&args).and_then(|img| std::fs::write(&args.output, img).map_err(|e| e.to_string()))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rota-image: {e}");
            ExitCode::FAILURE
        }
    }
}
