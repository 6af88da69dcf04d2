//! `make bench`: update throughput and check-in size under QEMU, each against a baseline measured in
//! the same run.
//!
//! - Throughput: a 64 KB file installed by protocol v2 (streamed, windowed acknowledgements, staged in
//!   flash, digest checked, committed) against `tcp_copy`, a plain TCP copy of the same bytes through
//!   the same path (QEMU user network, guestfwd, rota-bridge, 127.0.0.1). Times are the guest's own:
//!   the copy from its first received byte to its last; the install from the device's `Ready` to its
//!   `Staged` (every byte written to flash, read back, and the whole file's digest checked from
//!   flash). Medians of 7 runs, interleaved.
//! - No-update check-in: bytes each way and round trips, v2 against v1, counted by a proxy.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
use rota_emu::net::{copy, Mps2Run};
use rota_emu::system::{device_config, release, storage_image, Boot, Device, Server, SECRET};
use rota_emu::{artifact, Machine};
use rota_image::FileSpec;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

const M: Machine = Machine::Mps2An385;
const SIZE: usize = 64 * 1024;
const RUNS: usize = 7;

fn payload() -> Vec<u8> {
    let mut x = 0x1234_5678u32;
    (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Milliseconds of one v2 install of `data` as a new file (Ready to Staged).
fn update_ms(data: &[u8]) -> u64 {
    let device = Device::new(&storage_image(M, &release(M, 1), SECRET));
    let mut files = release(M, 1);
    files.push(FileSpec {
        name: "blob64".into(),
        data: data.to_vec(),
        version: 1,
    });
    let server = Server::start(&files, SECRET);
    let run = device.boot(&Boot::to(server.port));
    let line = run
        .console
        .lines()
        .find_map(|l| l.strip_prefix("provision: file staged: "))
        .unwrap_or_else(|| panic!("no transfer line:\n{}", run.console));
    let ms = line.split(' ').nth(3).and_then(|v| v.parse().ok());
    assert!(
        run.console.contains("provision: no update"),
        "the update did not complete:\n{}",
        run.console
    );
    ms.expect("milliseconds")
}

/// A proxy to 127.0.0.1:`upstream` counting bytes and reads each way; serves one connection.
fn counting_proxy(upstream: u16) -> (u16, Arc<[AtomicU64; 2]>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let counts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let c = Arc::clone(&counts);
    thread::spawn(move || {
        let Ok((device, _)) = listener.accept() else {
            return;
        };
        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
            return;
        };
        let pump = |mut from: TcpStream, mut to: TcpStream, n: Arc<[AtomicU64; 2]>, i: usize| {
            let mut buf = [0u8; 4096];
            while let Ok(k) = from.read(&mut buf) {
                if k == 0 || to.write_all(&buf[..k]).is_err() {
                    break;
                }
                n[i].fetch_add(k as u64, Ordering::Relaxed);
            }
            let _ = to.shutdown(Shutdown::Write);
        };
        let (d2, s2) = (device.try_clone().unwrap(), server.try_clone().unwrap());
        let c2 = Arc::clone(&c);
        let up = thread::spawn(move || pump(d2, s2, c2, 0));
        pump(server, device, c, 1);
        let _ = up.join();
    });
    (port, counts)
}

/// Bytes device->server and server->device of a no-update check-in in `protocol`, and the number of
/// files the device reports.
fn no_update_bytes(protocol: u8) -> (u64, u64, usize) {
    let mut config = device_config(SECRET);
    config.protocol = protocol;
    let image = rota_image::build(rota_image::REGION_SIZE, &config, &release(M, 1)).unwrap();
    let device = Device::new(&image);
    // v1 buffers a file in RAM (at most rota_luaota::FILE_LEN): its inventory leaves out what is
    // larger (`provision`).
    let files: Vec<FileSpec> = release(M, 1)
        .into_iter()
        .filter(|f| protocol == 2 || f.data.len() <= rota_luaota::FILE_LEN)
        .collect();
    let server = Server::start(&files, SECRET);
    if protocol == 1 {
        // A v1 device first learns the server's chk (an update carrying only `restart`).
        device.boot(&Boot::to(server.port));
    }
    let (port, counts) = counting_proxy(server.port);
    let run = device.boot(&Boot::to(port));
    assert!(
        run.console.contains("no update"),
        "not a no-update check-in:\n{}",
        run.console
    );
    (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        files.len(),
    )
}

fn main() {
    let data = payload();
    println!("== update throughput, {SIZE} bytes, medians of {RUNS} runs (guest ms) ==");
    // Interleaved, so that both see the same machine load.
    let (mut copies, mut updates) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (run, line, _) = copy(Mps2Run::new(artifact("mps2-an385/tcp_copy.elf")), &data);
        let line = line.unwrap_or_else(|| panic!("no tcp_copy line:\n{}", run.console));
        copies.push(line.ms.max(1));
        updates.push(update_ms(&data).max(1));
    }
    let (copy_ms, update_ms) = (median(copies.clone()), median(updates.clone()));
    println!("plain TCP copy: {copy_ms} ms  (runs {copies:?})");
    println!("v2 install:     {update_ms} ms  (runs {updates:?})");
    println!(
        "update throughput = {:.2} x the plain copy ({:.0} KB/s vs {:.0} KB/s)",
        copy_ms as f64 / update_ms as f64,
        SIZE as f64 / update_ms as f64,
        SIZE as f64 / copy_ms as f64
    );

    println!("\n== no-update check-in on the wire (one round trip each) ==");
    for protocol in [2, 1] {
        let (up, down, files) = no_update_bytes(protocol);
        println!(
            "v{protocol} ({files} files): device->server {up} B, server->device {down} B, total {} B",
            up + down
        );
    }
}
