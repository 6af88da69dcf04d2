//! Load benchmark: no-update check-ins of 1,000 concurrent simulated devices, against a baseline
//! measured in the same run (the same devices and storm against a server that only answers a constant
//! `OK!`), and the time and wire overhead of provisioning a 64 KB file set. Everything runs
//! in-process over 127.0.0.1.
//!
//! Run with `cargo bench -p rota-server`; figures are recorded in docs/server.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rota_devices::nodemcu::{Device, Outcome};
use rota_server::listen;
use rota_server::repo::Repo;
use rota_server::session::{Limits, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const DEVICES: u64 = 1000;
const ROUNDS: usize = 10;
const FIRST_ID: u64 = 10_000_000;

fn write(dir: &std::path::Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).expect("write the bench repository");
}

fn inventory(files: &[&str], secret: &str) -> Vec<u8> {
    serde_json::json!({ "files": files, "secret": secret })
        .to_string()
        .into_bytes()
}

/// Starts a server on an ephemeral loopback port; dropping the sender stops it.
fn start(dir: &std::path::Path) -> (std::net::SocketAddr, oneshot::Sender<()>) {
    // Every simulated device connects from 127.0.0.1: no per-address cap below the table.
    let limits = Limits {
        sessions_per_peer: Some(8192),
        ..Limits::default()
    };
    let server =
        Server::new(Repo::open_dir(dir).expect("repository"), limits).expect("fleet database");
    let listener = listen::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(listen::run(listener, Arc::new(server), 8192, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Storm rate and p99 latency.
type Figures = (f64, Duration);

async fn no_update_checkins() -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = b"--SAFETRIM\nlocal n = 0 -- counter\nfor i = 1, 10 do n = n + i end\nreturn n\n";
    write(dir.path(), "init.lua", src);
    write(dir.path(), "data.txt", &[b'd'; 2500]);
    for i in 0..DEVICES {
        let id = FIRST_ID + i;
        let json = inventory(&["init.lua", "data.txt"], &format!("secret-{id}"));
        write(dir.path(), &format!("ESP-{id}.json"), &json);
    }
    // Files changed in the last 2 s are re-read at every check-in (see `repo::RACY_WINDOW`); a deployed
    // repository is older than that.
    std::thread::sleep(rota_server::repo::RACY_WINDOW);
    let (addr, _stop) = start(dir.path());

    // Provision everybody once (concurrently), so that every later check-in is a no-update.
    let mut devices = Vec::new();
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..DEVICES)
        .map(|i| {
            tokio::spawn(async move {
                let id = FIRST_ID + i;
                let mut d = Device::new(id, &format!("secret-{id}"), "127.0.0.1", addr.port());
                let check = d.check_in_tcp(addr).await;
                (d, check.map(|c| c.outcome))
            })
        })
        .collect();
    for t in tasks {
        let (d, outcome) = t.await.expect("task");
        assert_eq!(outcome.expect("provisioning"), Outcome::Restarted);
        devices.push(d);
    }
    println!(
        "provisioned {DEVICES} devices concurrently in {:.2} s",
        t0.elapsed().as_secs_f64()
    );

    // Storm: all devices check in at the same instant (as after a power cut), round after round.
    let (devices, latencies, failures, busy) = storm(devices, addr).await;
    let storm = report(
        &format!("storm: {DEVICES} devices checking in at the same instant, {ROUNDS} rounds"),
        latencies,
        failures,
        busy,
    );

    // Sustained: every device checks in again as soon as it is done (closed loop, 1,000 in flight).
    let t0 = Instant::now();
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|mut d| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(ROUNDS);
                let mut failures = 0usize;
                for _ in 0..ROUNDS {
                    match d.check_in_tcp(addr).await {
                        Ok(c) if c.outcome == Outcome::NoUpdate => {
                            latencies.push(c.first_record_after.expect("first record"))
                        }
                        _ => failures += 1,
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for t in tasks {
        let (l, f) = t.await.expect("task");
        latencies.extend(l);
        failures += f;
    }
    report(
        &format!("sustained: {DEVICES} devices each checking in {ROUNDS} times back to back"),
        latencies,
        failures,
        t0.elapsed(),
    );
    storm
}

/// The baseline: the same simulated devices, in the same storm, against a server that reads one line,
/// answers the constant `OK!` record and waits for the device to close, with no JSON, HMAC or
/// repository work. The ratio to it is the cost of the real server's per-session work.
async fn constant_reply_storm() -> Figures {
    let listener = listen::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
    let addr = listener.local_addr().expect("local address");
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let mut got = 0;
                while !buf[..got].contains(&b'\n') && got < buf.len() {
                    match s.read(&mut buf[got..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                }
                let _ = s.write_all(b"{\"r\":\"OK!\"}4ef057\n").await;
                // As in v1, the device closes first.
                let _ = s.read(&mut buf).await;
            });
        }
    });
    let devices: Vec<Device> = (0..DEVICES)
        .map(|i| {
            Device::new(
                FIRST_ID + i,
                &format!("secret-{i}"),
                "127.0.0.1",
                addr.port(),
            )
        })
        .collect();
    let (_, latencies, failures, busy) = storm(devices, addr).await;
    server.abort();
    report(
        &format!("baseline: the same storm against a constant-reply server, {ROUNDS} rounds"),
        latencies,
        failures,
        busy,
    )
}

/// [`ROUNDS`] rounds in which every device checks in at the same instant; returns the devices, the
/// latencies of no-update check-ins, the failures and the time spent.
async fn storm(
    mut devices: Vec<Device>,
    addr: std::net::SocketAddr,
) -> (Vec<Device>, Vec<Duration>, usize, Duration) {
    let (mut latencies, mut failures, mut busy) = (Vec::new(), 0usize, Duration::ZERO);
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        let tasks: Vec<_> = devices
            .into_iter()
            .map(|mut d| {
                tokio::spawn(async move {
                    let check = d.check_in_tcp(addr).await;
                    (d, check)
                })
            })
            .collect();
        devices = Vec::with_capacity(tasks.len());
        for t in tasks {
            let (d, check) = t.await.expect("task");
            match check {
                Ok(c) if c.outcome == Outcome::NoUpdate => {
                    latencies.push(c.first_record_after.expect("first record"))
                }
                _ => failures += 1,
            }
            devices.push(d);
        }
        busy += t0.elapsed();
    }
    (devices, latencies, failures, busy)
}

fn report(
    title: &str,
    mut latencies: Vec<Duration>,
    failures: usize,
    elapsed: Duration,
) -> Figures {
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{title}: {} check-ins in {:.2} s",
        latencies.len() + failures,
        elapsed.as_secs_f64()
    );
    println!(
        "  {:.0} check-ins/s; latency connect->OK! p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; failures {failures}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    (
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.99),
    )
}

async fn provision_64k() {
    const RUNS: usize = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let names = ["a.bin", "b.bin", "c.bin", "d.bin"];
    for (k, name) in names.iter().enumerate() {
        let data: Vec<u8> = (0..16 * 1024u32)
            .map(|i| (i * 31 + k as u32) as u8)
            .collect();
        write(dir.path(), name, &data);
    }
    write(
        dir.path(),
        "default.json",
        &inventory(&names, "supersekrit"),
    );
    let (addr, _stop) = start(dir.path());
    let mut times = Vec::new();
    let mut wire = 0;
    for i in 0..RUNS {
        let mut d = Device::new(i as u64, "supersekrit", "127.0.0.1", addr.port());
        let t0 = Instant::now();
        let check = d.check_in_tcp(addr).await.expect("provisioning");
        times.push(t0.elapsed());
        assert_eq!(check.outcome, Outcome::Restarted);
        wire = check.bytes_sent + check.bytes_received;
    }
    times.sort();
    let payload = 64 * 1024;
    println!(
        "64 KB file set (4 x 16 KB, 64 records + restart) to one device: median {:.2} ms, min {:.2} ms over {RUNS} runs",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
    println!(
        "  bytes on the wire (both directions, TCP payload) {wire} / payload {payload} = {:.3}",
        wire as f64 / payload as f64
    );
}

fn main() {
    // 1,000 concurrent connections need ~2,000 descriptors in one process (both ends).
    match rlimit::increase_nofile_limit(16_384) {
        Ok(n) => println!("file descriptor limit {n}"),
        Err(e) => println!("cannot raise the file descriptor limit: {e}"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{} worker threads (= cores); server and devices share them",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let baseline = runtime.block_on(constant_reply_storm());
    let storm = runtime.block_on(no_update_checkins());
    println!(
        "storm vs constant-reply baseline (same run): throughput {:.2}x, p99 latency {:.2}x",
        storm.0 / baseline.0,
        storm.1.as_secs_f64() / baseline.1.as_secs_f64()
    );
    runtime.block_on(provision_64k());
}
