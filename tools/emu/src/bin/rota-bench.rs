//! `make bench`: update throughput and check-in size under QEMU, each against a baseline measured in
//! the same run, on both networked machines: mps2-an385 (Cortex-M3, LAN9118) and the ESP8266's LX106
//! on QEMU's xtfpga board (OpenCores MAC).
//!
//! - Throughput: a 64 KB file installed by protocol v2 (streamed, windowed acknowledgements, staged in
//!   flash, digest checked, committed) against `tcp_copy`, a plain TCP copy of the same bytes through
//!   the same path (QEMU user network, guestfwd, rota-bridge, 127.0.0.1), on the same machine. Times
//!   are the guest's own: the copy from its first received byte to its last; the install from the
//!   device's `Ready` to its `Staged` (every byte written to flash, read back, and the whole file's
//!   digest checked from flash). The copy is timed in microseconds (it takes a few milliseconds), the
//!   install in provision's milliseconds. Medians of 7 runs, interleaved: each round runs both
//!   machines' copy and install, so all four see the same machine load.
//! - Over the serial link: the same 64 KB install with the device's link on its console UART (QEMU
//!   chardev socket, `rota-bridge serial`) against `serial_copy`, a raw copy of the same bytes
//!   through the same chardev socket (no framing, no bridge), same run; medians of 3, interleaved.
//! - No-update check-in: bytes each way and round trips, v2 against v1, counted by a proxy, per machine.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
use rota_emu::net::{copy, CopyLine, Mps2Run};
use rota_emu::serial::{raw_copy, SerialCopy};
use rota_emu::system::{
    device_config, release, storage_image, storage_image_with, Boot, Device, Server, SECRET,
};
use rota_emu::xtfpga::XtfpgaRun;
use rota_emu::{artifact, Machine, Run};
use rota_image::FileSpec;
use rota_wire::Link;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// The machines, with the name each section prints.
const MACHINES: [(Machine, &str); 2] = [
    (Machine::Mps2An385, "mps2-an385 (Cortex-M3)"),
    (
        Machine::Esp8266Xtfpga,
        "LX106 (ESP8266 CPU on QEMU's xtfpga board)",
    ),
];
/// The install must reach at least this fraction of the plain copy's throughput (issue 9).
const FLOOR: f64 = 0.5;
const SIZE: usize = 64 * 1024;
const RUNS: usize = 7;
/// Runs over the serial link (an install takes seconds over the emulated line).
const SERIAL_RUNS: usize = 3;

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

/// One plain TCP copy of `data` on `machine` (its `tcp_copy` example, `make tcp-copy`).
fn copy_on(machine: Machine, data: &[u8]) -> (Run, Option<CopyLine>) {
    let (run, line, _) = match machine {
        Machine::Mps2An385 => copy(Mps2Run::new(artifact("mps2-an385/tcp_copy.elf")), data),
        Machine::Esp8266Xtfpga => copy(
            XtfpgaRun::new(artifact("esp8266/tcp_copy-xtfpga.elf")),
            data,
        ),
        Machine::Esp8266Sim => unreachable!("the sim machine has no network"),
    };
    (run, line)
}

/// One raw copy of `data` over `machine`'s console UART through its chardev socket (its
/// `serial_copy` example, `make tcp-copy`).
fn serial_copy_on(machine: Machine, data: &[u8]) -> (Run, Option<SerialCopy>) {
    let limit = std::time::Duration::from_secs(90);
    match machine {
        Machine::Mps2An385 => raw_copy(
            |line| {
                let mut r = Mps2Run::new(artifact("mps2-an385/serial_copy.elf"));
                r.line = Some(line.to_path_buf());
                r.command()
            },
            data,
            limit,
        ),
        Machine::Esp8266Xtfpga => raw_copy(
            |line| {
                let mut r = XtfpgaRun::new(artifact("esp8266/serial_copy-xtfpga.elf"));
                r.line = Some(line.to_path_buf());
                r.no_nic = true;
                r.command()
            },
            data,
            limit,
        ),
        Machine::Esp8266Sim => unreachable!("the sim machine has no UART"),
    }
}

/// Milliseconds of one v2 install of `data` as a new file (Ready to Staged) on `machine`, over
/// `link`.
fn update_ms(machine: Machine, data: &[u8], link: Link) -> u64 {
    let m = machine;
    let device = match link {
        Link::Tcp => Device::on(m, &storage_image(m, &release(m, 1), SECRET)),
        Link::Serial => {
            let mut config = device_config(SECRET);
            config.link = Link::Serial;
            Device::on_serial(m, &storage_image_with(m, &config, &release(m, 1)))
        }
    };
    let mut files = release(m, 1);
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

/// Bytes device->server and server->device of a no-update check-in in `protocol` on `machine`, and
/// the number of files the device reports.
fn no_update_bytes(machine: Machine, protocol: u8) -> (u64, u64, usize) {
    let m = machine;
    let mut config = device_config(SECRET);
    config.protocol = protocol;
    let device = Device::on(m, &storage_image_with(m, &config, &release(m, 1)));
    // v1 buffers a file in RAM (at most rota_luaota::FILE_LEN): its inventory leaves out what is
    // larger (`provision`).
    let files: Vec<FileSpec> = release(m, 1)
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
    // Interleaved, so that every measurement sees the same machine load.
    let mut copies = vec![Vec::new(); MACHINES.len()];
    let mut updates = vec![Vec::new(); MACHINES.len()];
    for _ in 0..RUNS {
        for (i, &(machine, _)) in MACHINES.iter().enumerate() {
            let (run, line) = copy_on(machine, &data);
            let line = line.unwrap_or_else(|| panic!("no tcp_copy line:\n{}", run.console));
            assert_eq!(
                line.fnv,
                rota_emu::net::fnv1a(&data),
                "the copy arrived damaged"
            );
            copies[i].push(line.us.max(1));
            updates[i].push(update_ms(machine, &data, Link::Tcp).max(1));
        }
    }
    for (i, &(_, name)) in MACHINES.iter().enumerate() {
        println!(
            "== update throughput, {SIZE} bytes, medians of {RUNS} runs (guest time): {name} =="
        );
        let (copy_us, update_ms) = (median(copies[i].clone()), median(updates[i].clone()));
        let copy_ms = copy_us as f64 / 1000.0;
        println!(
            "plain TCP copy: {copy_ms:.2} ms  (runs in us {:?})",
            copies[i]
        );
        println!(
            "v2 install:     {update_ms} ms  (runs in ms {:?})",
            updates[i]
        );
        let ratio = copy_ms / update_ms as f64;
        println!(
            "update throughput = {ratio:.2} x the plain copy ({:.0} KB/s vs {:.0} KB/s){}",
            SIZE as f64 / update_ms as f64,
            SIZE as f64 / copy_ms,
            if ratio >= FLOOR {
                String::new()
            } else {
                format!("  BELOW the {FLOOR} floor")
            }
        );
        println!();
    }

    let mut raw = vec![Vec::new(); MACHINES.len()];
    let mut serial = vec![Vec::new(); MACHINES.len()];
    for _ in 0..SERIAL_RUNS {
        for (i, &(machine, _)) in MACHINES.iter().enumerate() {
            let (run, line) = serial_copy_on(machine, &data);
            let line = line.unwrap_or_else(|| panic!("no serial_copy line:\n{}", run.console));
            assert_eq!(
                (line.bytes, line.fnv),
                (SIZE as u64, rota_emu::net::fnv1a(&data)),
                "the raw copy arrived damaged"
            );
            raw[i].push(line.ms.max(1));
            serial[i].push(update_ms(machine, &data, Link::Serial).max(1));
        }
    }
    for (i, &(_, name)) in MACHINES.iter().enumerate() {
        println!(
            "== serial link throughput, {SIZE} bytes, medians of {SERIAL_RUNS} runs (guest ms): {name} =="
        );
        let (copy_ms, update_ms) = (median(raw[i].clone()), median(serial[i].clone()));
        println!(
            "raw copy over the UART's chardev: {copy_ms} ms  (runs {:?})",
            raw[i]
        );
        println!(
            "v2 install over the serial link:  {update_ms} ms  (runs {:?})",
            serial[i]
        );
        println!(
            "install throughput = {:.2} x the raw copy ({:.1} KB/s vs {:.1} KB/s)",
            copy_ms as f64 / update_ms as f64,
            SIZE as f64 / update_ms as f64,
            SIZE as f64 / copy_ms as f64,
        );
        println!();
    }

    for &(machine, name) in &MACHINES {
        println!("== no-update check-in on the wire (one round trip each): {name} ==");
        for protocol in [2, 1] {
            let (up, down, files) = no_update_bytes(machine, protocol);
            println!(
                "v{protocol} ({files} files): device->server {up} B, server->device {down} B, total {} B",
                up + down
            );
        }
        println!();
    }
}
