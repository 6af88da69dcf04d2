//! Durable fleet state: the real `rota-server serve` killed with SIGKILL in the middle of storms of
//! v2 check-ins, restarted over the same database: it passes SQLite's integrity check, every record
//! reads, each floor is its record's nonce, every check-in a device saw answered is in the history,
//! and every device checks in again. And `rota-server fleet` with a garbled record: the rest is
//! listed, the bad one reported.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rota_devices::rota::{RotaDevice, V2Outcome};
use rota_server::fleet::{CheckIn, Fleet};
use tokio::net::TcpStream;
use tokio::process::Child;

use crate::common::{free_port, Fixture};

const DEVICES: u32 = 48;
const KILLS: usize = 5;
const FIRST_ID: u32 = 7_000;

fn secret(id: u32) -> Vec<u8> {
    format!("durable-{id}").into_bytes()
}

/// Round `round`'s application: every round changes it, so the storms are updates (files streamed,
/// records rewritten at the start and the end of each session) as well as no-update check-ins.
fn app(round: usize) -> Vec<u8> {
    (0..6_000u32)
        .map(|i| (i.wrapping_mul(31) as usize ^ round) as u8)
        .collect()
}

/// Starts `rota-server serve` on `addr`, its log appended to `log`, and waits until it accepts.
async fn serve(repo: &Path, addr: SocketAddr, log: &Path) -> Child {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rota-server"))
        .args(["serve", "--repo"])
        .arg(repo)
        .args(["--listen", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        assert!(child.try_wait().unwrap().is_none(), "rota-server exited");
        assert!(Instant::now() < deadline, "rota-server did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child
}

/// What the database holds, every row checked: the records `list` reads (all of them: none
/// unreadable), each device's floor (equal to its record's nonce: both are one row, written in one
/// transaction), and the history rows. Panics on a database that fails SQLite's integrity check.
struct State {
    records: BTreeMap<u64, CheckIn>,
    floors: BTreeMap<u64, u64>,
    history: usize,
}

fn state(repo: &Path) -> State {
    let db = rusqlite::Connection::open(repo.join(".rota/state.db")).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let journal: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let mut floors = BTreeMap::new();
    let mut rows = db
        .prepare("SELECT device, nonce, nonce_floor FROM devices")
        .unwrap();
    let mut rows = rows.query([]).unwrap();
    let mut count = 0;
    while let Some(row) = rows.next().unwrap() {
        let (device, nonce, floor): (i64, i64, i64) = (
            row.get(0).unwrap(),
            row.get(1).unwrap(),
            row.get(2).unwrap(),
        );
        assert_eq!(nonce, floor, "device {device}");
        floors.insert(device as u64, floor as u64);
        count += 1;
    }
    let history: i64 = db
        .query_row("SELECT COUNT(*) FROM checkins", [], |r| r.get(0))
        .unwrap();
    let history = history as usize;
    let records: BTreeMap<u64, CheckIn> = Fleet::for_repo(repo)
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .map(|r| (r.device, r))
        .collect();
    assert_eq!(records.len(), count, "every record reads");
    State {
        records,
        floors,
        history,
    }
}

/// Checks every device in, over and over, until `stop`; returns the devices.
async fn storm(
    devices: Vec<RotaDevice>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> Vec<RotaDevice> {
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|mut device| {
            let (stop, done) = (stop.clone(), done.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match device.check_in_tcp(addr).await {
                        Ok(check)
                            if matches!(
                                check.outcome,
                                V2Outcome::NoUpdate | V2Outcome::Committed(_)
                            ) =>
                        {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => tokio::time::sleep(Duration::from_millis(2)).await,
                    }
                }
                device
            })
        })
        .collect();
    let mut devices = Vec::new();
    for task in tasks {
        devices.push(task.await.unwrap());
    }
    devices
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_storm_of_check_ins_leaves_every_record_whole() {
    let start = Instant::now();
    let fx = Fixture::empty();
    fx.write("init", b"init overlay");
    fx.write("app", &app(0));
    for id in FIRST_ID..FIRST_ID + DEVICES {
        let json = serde_json::json!({
            "files": ["init", "app"],
            "secret": String::from_utf8(secret(id)).unwrap(),
        });
        fx.write(&format!("ESP-{id}.json"), json.to_string().as_bytes());
    }
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("server.log");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut devices: Vec<RotaDevice> = (FIRST_ID..FIRST_ID + DEVICES)
        .map(|id| RotaDevice::new(id, &secret(id)))
        .collect();
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    let (mut checked, mut check_ins) = (0, 0);
    let mut delays = Vec::new();

    for round in 0..KILLS {
        let mut server = serve(fx.path(), addr, &log).await;
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let storming = tokio::spawn(storm(devices, addr, stop.clone(), done.clone()));
        // Mid-storm: after some check-ins have completed, at a random moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        while done.load(Ordering::Relaxed) < DEVICES as usize / 2 {
            assert!(Instant::now() < deadline, "round {round}: no check-ins");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        random.write_usize(round);
        let delay = Duration::from_micros(random.finish() % 400_000);
        delays.push(delay);
        tokio::time::sleep(delay).await;
        server.start_kill().unwrap(); // SIGKILL
        let status = server.wait().await.unwrap();
        assert!(!status.success(), "killed: {status:?}");
        stop.store(true, Ordering::Relaxed);
        devices = storming.await.unwrap();
        check_ins += done.load(Ordering::Relaxed);

        let st = state(fx.path());
        checked += st.records.len();
        assert!(!st.records.is_empty(), "round {round}");
        // Every check-in a device saw answered was committed first.
        assert!(
            st.history >= check_ins,
            "round {round}: {} history rows, {check_ins} check-ins answered",
            st.history
        );
        fx.write("app", &app(round + 1));
    }

    // After the last restart every device checks in, and is then up to date.
    let server = serve(fx.path(), addr, &log).await;
    for expected_no_update in [false, true] {
        let tasks: Vec<_> = devices
            .into_iter()
            .map(|mut device| {
                tokio::spawn(async move {
                    let check = device.check_in_tcp(addr).await.unwrap();
                    (device, check)
                })
            })
            .collect();
        devices = Vec::new();
        for task in tasks {
            let (device, check) = task.await.unwrap();
            match check.outcome {
                V2Outcome::NoUpdate => {}
                V2Outcome::Committed(_) if !expected_no_update => {}
                other => panic!("device {}: {other:?}", device.id),
            }
            assert_eq!(device.file("app"), Some(&app(KILLS)[..]), "{}", device.id);
            devices.push(device);
        }
    }
    drop(server);
    let st = state(fx.path());
    assert_eq!(st.records.len(), DEVICES as usize);
    for device in &devices {
        let record = &st.records[&u64::from(device.id)];
        assert_eq!(record.nonce, Some(device.store.boots), "{}", device.id);
        assert_eq!(record.outcome, "no-update", "{}", device.id);
        assert_eq!(
            st.floors[&u64::from(device.id)],
            u64::from(device.store.boots)
        );
    }
    checked += st.records.len();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("unreadable"), "{log}");
    println!(
        "{KILLS} SIGKILLs (each {delays:?} after the storm's first {} check-ins), {check_ins} check-ins, \
         {checked} records read, {} history rows, in {:?}",
        DEVICES / 2,
        st.history,
        start.elapsed()
    );
}

/// `rota-server fleet` with a garbled record (a hand edit of the database): the other records are
/// listed (table and JSON, status 0), the bad one is reported on stderr with its device and field,
/// and the device's next check-in makes its record whole again.
#[test]
fn the_fleet_command_lists_the_rest_and_reports_a_corrupt_record() {
    let fx = Fixture::empty();
    let fleet = Fleet::for_repo(fx.path()).unwrap();
    let record = |device: u64, nonce: u32| CheckIn {
        device,
        time: 1_700_000_000,
        peer: "test".into(),
        protocol: 2,
        nonce: Some(nonce),
        app_version: Some(1),
        files: Vec::new(),
        staged: Vec::new(),
        heap: Vec::new(),
        outcome: "no-update".into(),
        ..CheckIn::default()
    };
    for device in [1, 2, 3] {
        fleet.check_in(&record(device, 10)).unwrap();
    }
    let db = rusqlite::Connection::open(fx.path().join(".rota/state.db")).unwrap();
    db.execute(
        "UPDATE devices SET staged = '[{\"name\":' WHERE device = 2",
        [],
    )
    .unwrap();

    let fleet_command = |json: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rota-server"));
        command.arg("fleet").arg(fx.path());
        if json {
            command.arg("--json");
        }
        let out = command.output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    };
    let (table, stderr) = fleet_command(false);
    let devices: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(devices, ["1", "3"], "{table}");
    let reports: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("device 2") && l.contains("devices.staged"))
        .collect();
    assert_eq!(reports.len(), 1, "{stderr}");
    assert!(reports[0].contains("unreadable"), "{stderr}");
    let (json, _) = fleet_command(true);
    let records: Vec<CheckIn> = serde_json::from_str(&json).unwrap();
    assert_eq!(records.iter().map(|r| r.device).collect::<Vec<_>>(), [1, 3]);

    // Device 2 checks in (its floor refuses the old nonce), and is listed again.
    assert!(fleet.check_in(&record(2, 10)).is_err());
    fleet.check_in(&record(2, 11)).unwrap();
    let (table, stderr) = fleet_command(false);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(!stderr.contains("unreadable"), "{stderr}");
}
