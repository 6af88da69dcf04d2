//! Fleet-state benchmark: durable check-ins per second through the group-committing writer, as
//! the sessions make them (each from `tokio::task::spawn_blocking`, many at once), on SQLite and,
//! when `ROTA_TEST_POSTGRES` holds a server URL, on PostgreSQL; then the database's size for
//! 10,000 devices with `ROTA_BENCH_BOOTS` check-ins each (default 10; the history grows by one row
//! per check-in, so the size of 100 boots each is extrapolated from two measured points unless
//! `ROTA_BENCH_BOOTS=100` is given).
//!
//! Run with `cargo bench -p rota-server --bench state`; figures are recorded in docs/state.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rota_server::fleet::{CheckIn, Database, FileRecord, Fleet, HeapRecord};

const DEVICES: u64 = 10_000;
/// Check-ins in flight at once (sessions waiting for their record).
const CONCURRENCY: usize = 512;

/// A no-update check-in as a v2 session records it: two files, a heap report of five phases.
fn record(device: u64, nonce: u32) -> CheckIn {
    CheckIn {
        device,
        time: 1_700_000_000 + u64::from(nonce),
        peer: format!("10.0.{}.{}:8266", device / 250 % 250, device % 250),
        protocol: 2,
        nonce: Some(nonce),
        app_version: Some(7),
        files: ["app", "init"]
            .iter()
            .map(|name| FileRecord {
                name: (*name).into(),
                size: 6000,
                version: 0x1234_5678,
                digest: "ab".repeat(32),
                release: Some("v2".into()),
            })
            .collect(),
        heap: (0..5)
            .map(|phase| HeapRecord {
                phase,
                used: 100,
                peak: 9000,
                stack_peak: 1200,
            })
            .collect(),
        signed: Some(true),
        security_version: Some(1),
        state: Some("cd".repeat(32)),
        outcome: "no-update".into(),
        release: Some("v1.4.2".into()),
        ..CheckIn::default()
    }
}

/// Checks `DEVICES` devices in `rounds` times each (boot `first_boot..`), `CONCURRENCY` at a
/// time, each check-in followed by its session's `finish` as the server does; returns check-ins/s
/// and the p99 latency of one check-in.
async fn storm(fleet: &Fleet, first_boot: u32, rounds: u32) -> (f64, Duration) {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for round in 0..rounds {
        for device in 1..=DEVICES {
            let permit = semaphore.clone().acquire_owned().await.expect("semaphore");
            let fleet = fleet.clone();
            let nonce = first_boot + round;
            tasks.push(tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                fleet.check_in(&record(device, nonce)).expect("check-in");
                let took = t.elapsed();
                fleet
                    .finish(device, Some(nonce), "no-update")
                    .expect("finish");
                drop(permit);
                took
            }));
        }
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await.expect("task"));
    }
    let rate = latencies.len() as f64 / start.elapsed().as_secs_f64();
    latencies.sort();
    (rate, latencies[(latencies.len() - 1) * 99 / 100])
}

/// The bytes the database takes (read off the runtime: the PostgreSQL client is synchronous).
fn size(database: &Database) -> u64 {
    let database = database.clone();
    std::thread::spawn(move || size_now(&database))
        .join()
        .expect("size")
}

fn size_now(database: &Database) -> u64 {
    match database {
        Database::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path).expect("open");
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .expect("checkpoint");
            drop(conn);
            let wal = path.with_extension("db-wal");
            std::fs::metadata(path).map_or(0, |m| m.len())
                + std::fs::metadata(wal).map_or(0, |m| m.len())
        }
        Database::Postgres(url) => {
            let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
            let row = client
                .query_one("SELECT pg_database_size(current_database())", &[])
                .expect("size");
            row.get::<_, i64>(0) as u64
        }
    }
}

/// Measures one backend: the rate of a storm over a fleet already known (1 boot each first), then
/// the size after `boots` check-ins of every device, and after `2 * boots` for the growth per row.
async fn measure(name: &str, database: &Database, boots: u32) {
    let fleet = Fleet::open(database).expect("open the database");
    let (first_rate, _) = storm(&fleet, 1, 1).await;
    let (rate, p99) = storm(&fleet, 2, boots - 1).await;
    drop(fleet);
    let at_boots = size(database);
    println!(
        "{name}: first check-ins of {DEVICES} devices {first_rate:.0}/s; then {} check-ins (+ finish) \
         {rate:.0}/s, p99 {p99:.1?}, {CONCURRENCY} in flight",
        DEVICES * u64::from(boots - 1)
    );
    println!(
        "{name}: {DEVICES} devices x {boots} boots: {at_boots} bytes ({:.1} MB)",
        at_boots as f64 / 1e6
    );
    if boots < 100 {
        let fleet = Fleet::open(database).expect("open the database");
        storm(&fleet, boots + 1, boots).await;
        drop(fleet);
        let at_double = size(database);
        let per_boot = (at_double - at_boots) as f64 / (f64::from(boots) * DEVICES as f64);
        let at_100 =
            at_double as f64 + per_boot * (100.0 - 2.0 * f64::from(boots)) * DEVICES as f64;
        println!(
            "{name}: {DEVICES} x {} boots: {at_double} bytes; {per_boot:.0} bytes per history row, \
             so {DEVICES} x 100 boots ~ {:.0} MB (extrapolated)",
            2 * boots,
            at_100 / 1e6
        );
    }
}

fn main() {
    let boots: u32 = std::env::var("ROTA_BENCH_BOOTS")
        .ok()
        .and_then(|b| b.parse().ok())
        .filter(|b| *b >= 2)
        .unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(CONCURRENCY)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = Database::Sqlite(dir.path().join("state.db"));
    runtime.block_on(measure("sqlite", &sqlite, boots));
    let Ok(server) = std::env::var("ROTA_TEST_POSTGRES") else {
        println!("postgres: not measured (set ROTA_TEST_POSTGRES)");
        return;
    };
    let name = format!("rota_bench_{}", std::process::id());
    let mut admin =
        postgres::Client::connect(&server, postgres::NoTls).expect("ROTA_TEST_POSTGRES");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create the bench database");
    let (base, _) = server.rsplit_once('/').expect("a URL ending in /DB");
    let postgres = Database::Postgres(format!("{base}/{name}"));
    runtime.block_on(measure("postgres", &postgres, boots));
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .expect("drop the bench database");
}
