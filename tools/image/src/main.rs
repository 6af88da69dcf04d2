//! `rota-image -o storage.bin --device-id N --secret S --server A.B.C.D [--port P] [--ip A.B.C.D/N]
//! [--gateway A.B.C.D] [--link tcp|serial] [--key HEX|FILE.pub]... [--trials N]
//! [--xip-base ADDR --arena BYTES] NAME=PATH...`: a storage region holding a
//! formatted file store with the device config and the given files committed (layout in
//! docs/flash-layout.md). For a board whose core relocates blobs to run them in place (the LX106),
//! `--xip-base` (the board's mapping of the region for execution) and `--arena` (its overlay arena)
//! make a blob the core runs in place relocated stored relocated for its address there, as the core
//! stages one (docs/overlay-format.md).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
use clap::Parser;
use rota_image::{build_for, FileSpec, InPlace, REGION_SIZE};
use rota_wire::DeviceConfig;
use std::net::Ipv4Addr;
use std::{path::PathBuf, process::ExitCode};

/// Build a rota storage-region image.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
    /// Region size in bytes.
    #[arg(long, default_value_t = REGION_SIZE)]
    size: usize,
    /// The device id the server knows it by (`ESP-<id>.json`).
    #[arg(long)]
    device_id: u32,
    /// The secret shared with the server.
    #[arg(long)]
    secret: String,
    /// The server's IPv4 address as the device sees it.
    #[arg(long)]
    server: Ipv4Addr,
    /// The server's port.
    #[arg(long, default_value_t = 8266)]
    port: u16,
    /// How the device reaches the server: `tcp` (its network interface) or `serial` (the console's
    /// line, through `rota-bridge serial`).
    #[arg(long, value_enum, default_value_t = LinkArg::Tcp)]
    link: LinkArg,
    /// A release key: an Ed25519 public key as 64 hex digits, or a `.pub` file of `rota-sign keygen`
    /// (at most two: a key can be rotated). With any, the device commits only releases signed by
    /// one of them.
    #[arg(long = "key")]
    keys: Vec<String>,
    /// Boots a newly committed generation may take unconfirmed before the core rolls it back (0:
    /// none).
    #[arg(long, default_value_t = rota_wire::config::DEFAULT_TRIALS)]
    trials: u8,
    /// Static address with prefix length (`10.0.2.15/24`); DHCP when absent.
    #[arg(long)]
    ip: Option<String>,
    /// Gateway for the static address.
    #[arg(long, default_value = "0.0.0.0")]
    gateway: Ipv4Addr,
    /// Where the board maps the region for execution (its `xip_base`, e.g. 0x40280000): blobs too
    /// large for the arena run in place there. Needs `--arena`.
    #[arg(long, value_parser = number, requires = "arena")]
    xip_base: Option<u32>,
    /// The board's overlay arena in bytes (e.g. 8192). Needs `--xip-base`.
    #[arg(long, value_parser = number, requires = "xip_base")]
    arena: Option<u32>,
    /// Files as NAME=PATH, committed in this order with version 1.
    files: Vec<String>,
}

/// `--link`: rota_wire's [`rota_wire::Link`] as a command-line value.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LinkArg {
    /// TCP over the board's network interface.
    Tcp,
    /// The console's serial line.
    Serial,
}

/// A number in decimal or with `0x` in hexadecimal.
fn number(s: &str) -> Result<u32, String> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s}: {e}"))
}

/// A `--key`: 64 hex digits, or a file holding them.
fn key(arg: &str) -> Result<[u8; 32], String> {
    let text = match std::fs::read_to_string(arg) {
        Ok(text) => text,
        Err(_) => arg.to_owned(),
    };
    rota_release::from_hex(&text).ok_or_else(|| {
        format!("--key {arg}: not an Ed25519 public key (64 hex digits) nor a file of one")
    })
}

fn config(args: &Args) -> Result<DeviceConfig, String> {
    if args.keys.len() > rota_wire::config::MAX_KEYS {
        return Err(format!(
            "--key: at most {} keys",
            rota_wire::config::MAX_KEYS
        ));
    }
    let keys = args
        .keys
        .iter()
        .map(|k| key(k))
        .collect::<Result<heapless::Vec<_, { rota_wire::config::MAX_KEYS }>, _>>()?;
    let (ip, prefix) = match &args.ip {
        None => (None, 0),
        Some(s) => {
            let (addr, prefix) = s.split_once('/').unwrap_or((s, "24"));
            let addr: Ipv4Addr = addr.parse().map_err(|e| format!("--ip {s}: {e}"))?;
            let prefix: u32 = prefix.parse().map_err(|e| format!("--ip {s}: {e}"))?;
            if prefix > 32 {
                return Err(format!("--ip {s}: prefix over 32"));
            }
            (Some(addr.octets()), prefix)
        }
    };
    let netmask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0).to_be_bytes();
    let secret = heapless::Vec::from_slice(args.secret.as_bytes())
        .map_err(|()| "--secret: longer than 64 bytes".to_string())?;
    Ok(DeviceConfig {
        device_id: args.device_id,
        secret,
        server: args.server.octets(),
        port: args.port,
        leave: false,
        app: heapless::String::try_from("app").expect("fits"),
        entry: heapless::String::new(),
        ip,
        gateway: args.gateway.octets(),
        netmask,
        dns: [0; 4],
        protocol: rota_wire::VERSION,
        link: match args.link {
            LinkArg::Tcp => rota_wire::Link::Tcp,
            LinkArg::Serial => rota_wire::Link::Serial,
        },
        trials: args.trials,
        keys,
        chk: heapless::String::new(),
        files: heapless::Vec::new(),
    })
}

fn files(args: &Args) -> Result<Vec<FileSpec>, String> {
    args.files
        .iter()
        .map(|f| {
            let (name, path) = f
                .split_once('=')
                .ok_or_else(|| format!("{f}: expected NAME=PATH"))?;
            let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
            Ok(FileSpec {
                name: name.to_string(),
                data,
                version: 1,
            })
        })
        .collect()
}

fn main() -> ExitCode {
    let args = Args::parse();
    let in_place = args
        .xip_base
        .zip(args.arena)
        .map(|(mapped_base, arena)| InPlace { mapped_base, arena });
    let image = config(&args).and_then(|c| build_for(args.size, &c, &files(&args)?, in_place));
    match image.and_then(|img| std::fs::write(&args.output, img).map_err(|e| e.to_string())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rota-image: {e}");
            ExitCode::FAILURE
        }
    }
}
