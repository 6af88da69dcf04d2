//! `rota-image -o storage.bin --device-id N --secret S --server A.B.C.D [--port P] [--ip A.B.C.D/N]
//! [--gateway A.B.C.D] NAME=PATH...`: a storage region holding a formatted file store with the device
//! config and the given files committed (layout in docs/flash-layout.md).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
use clap::Parser;
use rota_image::{build, FileSpec, REGION_SIZE};
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
    /// Static address with prefix length (`10.0.2.15/24`); DHCP when absent.
    #[arg(long)]
    ip: Option<String>,
    /// Gateway for the static address.
    #[arg(long, default_value = "0.0.0.0")]
    gateway: Ipv4Addr,
    /// Files as NAME=PATH, committed in this order with version 1.
    files: Vec<String>,
}

fn config(args: &Args) -> Result<DeviceConfig, String> {
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
    let image = config(&args).and_then(|c| build(args.size, &c, &files(&args)?));
    match image.and_then(|img| std::fs::write(&args.output, img).map_err(|e| e.to_string())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rota-image: {e}");
            ExitCode::FAILURE
        }
    }
}
