//! Protocol v2 against the real server over TCP on 127.0.0.1: rota devices (`rota_devices::rota`, i.e.
//! rota-wire's DeviceSession with an in-memory store), side by side with v1 devices.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rota_devices::nodemcu::{Device, Outcome};
use rota_devices::rota::{RotaDevice, V2Outcome};
use rota_server::fleet::Fleet;
use rota_server::repo::Repo;
use rota_server::session::{Limits, Outcome as ServerOutcome, Phase, Protocol, SessionError};
use rota_wire::MAX_FRAME;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{data_txt, start, Fixture, Running};

const SECRET: &[u8] = b"rota secret";

/// A repository with a 10 KB `app`, `data.txt` and a small `init`, for device 42 (and `default.json`
/// for v1 devices).
fn fixture() -> Fixture {
    let fx = Fixture::standard();
    fx.write("app", &app());
    fx.write("init", b"init overlay v1");
    fx.inventory("ESP-42.json", &["init", "app", "data.txt"], "rota secret");
    fx
}

fn app() -> Vec<u8> {
    (0..10_000u32).map(|i| (i * 13 % 256) as u8).collect()
}

async fn v2_ok(server: &mut Running, expected: ServerOutcome) {
    let report = server.report().await;
    assert_eq!(report.protocol, Some(Protocol::V2));
    assert_eq!(report.outcome.as_ref().ok(), Some(&expected), "{report:?}");
}

/// A good v2 device with its own inventory is still provisioned.
async fn still_serves(server: &mut Running, id: u32) {
    let mut device = RotaDevice::new(42, SECRET);
    device.store.boots = id * 1000;
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert!(
        matches!(check.outcome, V2Outcome::Committed(_) | V2Outcome::NoUpdate),
        "{check:?}"
    );
    assert!(server.report().await.outcome.is_ok());
}

#[tokio::test]
async fn update_then_no_update_and_the_fleet_record() {
    let fx = fixture();
    let mut server = fx.start().await;
    let mut device = RotaDevice::new(42, SECRET);
    device
        .store
        .files
        .insert(b"stale".to_vec(), (b"old".to_vec(), 1));

    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::Committed(1));
    v2_ok(&mut server, ServerOutcome::Updated).await;
    println!(
        "update of 3 files: {} bytes to the device, {} bytes from it",
        check.bytes_received, check.bytes_sent
    );
    assert_eq!(device.file("app"), Some(app().as_slice()));
    assert_eq!(device.file("data.txt"), Some(data_txt().as_slice()));
    assert_eq!(device.file("init"), Some(&b"init overlay v1"[..]));
    assert_eq!(
        device.file("stale"),
        None,
        "files the inventory lacks are deleted"
    );
    let sent = app().len() + data_txt().len() + 15;
    // Per 1 KB chunk: 5-byte header, 3 bytes of offset and length, 16-byte tag; per file a Begin
    // and a Finish; a List and the device's Files.
    assert!(
        check.bytes_received < sent + sent / 10,
        "{} bytes for {sent} of files",
        check.bytes_received
    );

    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::NoUpdate);
    v2_ok(&mut server, ServerOutcome::NoUpdate).await;
    assert_eq!(check.bytes_received, 21, "NoUpdate: header and tag");
    assert_eq!(check.bytes_sent, check.hello_bytes);
    assert!(
        check.bytes_sent + check.bytes_received <= 96,
        "the no-update check-in fits 96 bytes: {} + {}",
        check.bytes_sent,
        check.bytes_received
    );

    let record = Fleet::for_repo(fx.path())
        .unwrap()
        .load(42)
        .unwrap()
        .unwrap();
    assert_eq!(record.protocol, 2);
    assert_eq!(record.nonce, Some(2));
    assert_eq!(record.outcome, "no-update");
    let names: Vec<&str> = record.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["app", "data.txt", "init"]);
    // Two phases and the residue.
    assert_eq!(record.heap.len(), 3);
    assert_eq!(record.heap[1].peak, 6144);
    assert_eq!(record.signed, Some(false), "no release keys: unsigned");
    // The release served, by name (a directory outside git), in the record and the history.
    assert_eq!(record.release.as_deref(), Some("dir"));
    let history = Fleet::for_repo(fx.path()).unwrap().history(42, 10).unwrap();
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|b| b.release.as_deref() == Some("dir")));

    // One file changes: only it is sent; the record says so.
    fx.write("init", b"init overlay v2");
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::Committed(2));
    let report = server.report().await;
    assert_eq!(report.files, 1);
    assert!(check.bytes_received < 400, "{}", check.bytes_received);
    assert_eq!(
        Fleet::for_repo(fx.path())
            .unwrap()
            .load(42)
            .unwrap()
            .unwrap()
            .outcome,
        "updated"
    );
}

/// Bytes on the wire of a no-update check-in, v2 against v1, for comparable devices (the same three
/// files, each provisioned first).
#[tokio::test]
async fn no_update_bytes_v2_against_v1() {
    let fx = Fixture::standard();
    fx.inventory(
        "ESP-42.json",
        &["init.lua", "data.txt", "lib/util.lc"],
        "supersekrit",
    );
    let mut server = fx.start().await;

    let mut v1 = Device::new(11223344, "supersekrit", "127.0.0.1", 8266);
    assert_eq!(
        v1.check_in_tcp(server.addr).await.unwrap().outcome,
        Outcome::Restarted
    );
    let v1_check = v1.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(v1_check.outcome, Outcome::NoUpdate);

    let mut v2 = RotaDevice::new(42, b"supersekrit");
    assert!(matches!(
        v2.check_in_tcp(server.addr).await.unwrap().outcome,
        V2Outcome::Committed(_)
    ));
    let v2_check = v2.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(v2_check.outcome, V2Outcome::NoUpdate);
    for _ in 0..4 {
        server.report().await;
    }

    assert_eq!(v1_check.bytes_received, 18, "{{\"r\":\"OK!\"}}4ef057\\n");
    assert_eq!(v2_check.bytes_received, 21);
    assert!(v2_check.bytes_sent + v2_check.bytes_received <= 96);
    println!(
        "no-update check-in, 3 files: v1 HI {} + OK! {} = {} bytes; v2 Hello {} + NoUpdate {} = {} bytes",
        v1_check.bytes_sent,
        v1_check.bytes_received,
        v1_check.bytes_sent + v1_check.bytes_received,
        v2_check.bytes_sent,
        v2_check.bytes_received,
        v2_check.bytes_sent as u64 + v2_check.bytes_received as u64,
    );
}

#[tokio::test]
async fn resume_after_a_dropped_connection() {
    let fx = fixture();
    let mut server = fx.start().await;
    let mut device = RotaDevice::new(42, SECRET);
    device.cut_after = Some(6000);
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::Closed);
    assert!(server.report().await.outcome.is_err());
    assert_eq!(device.store.generation, 0, "nothing committed");
    let staged: u32 = device
        .store
        .staged
        .values()
        .map(|s| s.data.len() as u32)
        .sum();
    assert!(staged > 4096, "{staged} bytes staged");

    device.cut_after = None;
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::Committed(1));
    v2_ok(&mut server, ServerOutcome::Updated).await;
    assert_eq!(device.file("app"), Some(app().as_slice()));
    let total = app().len() + data_txt().len() + 15;
    assert!(
        check.bytes_received + staged as usize <= total + total / 10,
        "resumed: {} bytes received after {staged} staged",
        check.bytes_received
    );
}

#[tokio::test]
async fn v1_and_v2_on_the_same_port_at_once() {
    let fx = fixture();
    for id in 100..110 {
        fx.inventory(
            &format!("ESP-{id}.json"),
            &["app", "data.txt"],
            "rota secret",
        );
    }
    let mut server = fx.start().await;
    let addr = server.addr;
    let mut tasks = Vec::new();
    for i in 0..10u32 {
        tasks.push(tokio::spawn(async move {
            let mut d = RotaDevice::new(100 + i, SECRET);
            let first = d.check_in_tcp(addr).await.unwrap().outcome;
            let second = d.check_in_tcp(addr).await.unwrap().outcome;
            assert_eq!(
                (first, second),
                (V2Outcome::Committed(1), V2Outcome::NoUpdate)
            );
            assert_eq!(d.file("app"), Some(app().as_slice()));
        }));
        tasks.push(tokio::spawn(async move {
            let mut d = Device::new(5000 + u64::from(i), "supersekrit", "127.0.0.1", 8266);
            assert_eq!(
                d.check_in_tcp(addr).await.unwrap().outcome,
                Outcome::Restarted
            );
            assert_eq!(
                d.check_in_tcp(addr).await.unwrap().outcome,
                Outcome::NoUpdate
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut protocols = (0, 0);
    for _ in 0..40 {
        let report = server.report().await;
        assert!(report.outcome.is_ok(), "{report:?}");
        match report.protocol {
            Some(Protocol::V1) => protocols.0 += 1,
            Some(Protocol::V2) => protocols.1 += 1,
            None => panic!("{report:?}"),
        }
    }
    assert_eq!(protocols, (20, 20));
    // Every device is in the fleet, luaOTA ones too (recorded once their HI verified).
    let fleet = Fleet::for_repo(fx.path()).unwrap().list().unwrap();
    let by = |p: u8| fleet.iter().filter(|r| r.protocol == p).count();
    assert_eq!((by(1), by(2)), (10, 10));
}

#[tokio::test]
async fn silent_and_stalled_v2_peers_are_dropped() {
    let fx = fixture();
    let limits = Limits {
        v2_idle: Duration::from_millis(400),
        ..Limits::default()
    };
    let mut server = start(Repo::open_dir(fx.path()).unwrap(), limits).await;
    // Says 0xB2 and nothing more.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    silent.write_all(&[0xB2]).await.unwrap();
    // A device that stops reading and answering mid-file.
    let mut stalled = RotaDevice::new(42, SECRET);
    stalled.cut_after = Some(3000);
    stalled.patience = Duration::from_millis(50);
    let start_time = Instant::now();
    let check = stalled.check_in_tcp(server.addr).await.unwrap();
    assert_ne!(check.outcome, V2Outcome::NoUpdate);
    let mut timeouts = Vec::new();
    for _ in 0..2 {
        let report = server.report().await;
        timeouts.push(report.outcome.unwrap_err().to_string());
    }
    assert!(start_time.elapsed() < Duration::from_secs(5));
    assert!(
        timeouts
            .iter()
            .any(|e| e == &SessionError::Timeout(Phase::Hi).to_string()),
        "{timeouts:?}"
    );
    drop(silent);
    still_serves(&mut server, 7).await;
}

/// Sends `bytes` as a raw connection and returns what came back.
async fn raw(server: &Running, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn bad_frames_end_only_their_session() {
    let fx = fixture();
    let limits = Limits {
        v2_idle: Duration::from_millis(500),
        ..Limits::default()
    };
    let mut server = start(Repo::open_dir(fx.path()).unwrap(), limits).await;
    let err = |report: rota_server::session::SessionReport| report.outcome.unwrap_err();

    // An oversized length: refused from the header, before any payload is read.
    let huge = [0xB2, 0x01, 0xff, 0xff, 0, 0, 0, 0];
    assert!(raw(&server, &huge).await.is_empty());
    assert!(matches!(
        err(server.report().await),
        SessionError::V2(rota_wire::Error::TooLong(0xffff))
    ));

    // A Hello signed with another secret.
    let mut forger = RotaDevice::new(42, b"not the secret");
    let check = forger.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::Closed);
    assert!(matches!(
        err(server.report().await),
        SessionError::BadHiTag(_)
    ));

    // A Hello with one byte flipped, and a Hello that is not a Hello.
    let device = RotaDevice::new(42, SECRET);
    let mut out = vec![0u8; MAX_FRAME];
    let mut session = rota_wire::DeviceSession::new(SECRET, rota_wire::Link::Tcp);
    let n = session.hello(&device.hello(1000), &mut out).unwrap();
    let hello = out[..n].to_vec();
    let mut flipped = hello.clone();
    flipped[20] ^= 4;
    assert!(raw(&server, &flipped).await.is_empty());
    assert!(server.report().await.outcome.is_err());
    let mut wrong_kind = hello.clone();
    wrong_kind[1] = 0x03;
    assert!(raw(&server, &wrong_kind).await.is_empty());
    assert!(matches!(
        err(server.report().await),
        SessionError::V2(rota_wire::Error::Unexpected(0x03))
    ));

    // A replayed Hello: accepted once (answered with a Welcome; then the session times out, as
    // nobody answers), refused the second time (its nonce is not new).
    let answer = raw(&server, &hello).await;
    assert_eq!(answer[..2], [0xB2, rota_wire::msg::kind::WELCOME]);
    assert!(matches!(
        err(server.report().await),
        SessionError::Timeout(Phase::Reply)
    ));
    assert!(raw(&server, &hello).await.is_empty());
    assert!(matches!(
        err(server.report().await),
        SessionError::Fleet(rota_server::fleet::FleetError::Replay {
            last: 1000,
            got: 1000
        })
    ));

    // A device without its own inventory, checked against default.json's secret.
    let stranger = RotaDevice::new(9, SECRET);
    let mut session = rota_wire::DeviceSession::new(SECRET, rota_wire::Link::Tcp);
    let n = session.hello(&stranger.hello(1), &mut out).unwrap();
    assert!(raw(&server, &out[..n]).await.is_empty());
    assert!(matches!(
        err(server.report().await),
        SessionError::BadHiTag(file) if file == "default.json"
    ));
    assert!(
        Fleet::for_repo(fx.path())
            .unwrap()
            .load(9)
            .unwrap()
            .is_none(),
        "strangers leave no record"
    );

    still_serves(&mut server, 2).await;
}

/// A garbled fleet record (a hand edit of the database) must not reopen replays: an old Hello is
/// refused and nothing is sent, the device itself still checks in, and the nonce never goes back.
#[tokio::test]
async fn a_corrupt_fleet_record_does_not_reopen_replays() {
    let fx = fixture();
    let mut server = fx.start().await;
    let mut device = RotaDevice::new(42, SECRET);
    device.store.boots = 999;
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::Committed(1));
    v2_ok(&mut server, ServerOutcome::Updated).await;
    let fleet = Fleet::for_repo(fx.path()).unwrap();
    assert_eq!(fleet.load(42).unwrap().unwrap().nonce, Some(1000));

    // An attacker's recording of an older Hello (nonce 500), after the record was garbled.
    let mut out = vec![0u8; MAX_FRAME];
    let mut session = rota_wire::DeviceSession::new(SECRET, rota_wire::Link::Tcp);
    let n = session.hello(&device.hello(500), &mut out).unwrap();
    let old_hello = out[..n].to_vec();
    let db = rusqlite::Connection::open(fx.path().join(".rota/state.db")).unwrap();
    db.execute(
        "UPDATE devices SET files = 'torn', heap = x'00ff' WHERE device = 42",
        [],
    )
    .unwrap();
    assert!(fleet.load(42).is_err(), "the garbled record is not read");
    assert!(raw(&server, &old_hello).await.is_empty(), "nothing sent");
    assert!(matches!(
        server.report().await.outcome.unwrap_err(),
        SessionError::Fleet(rota_server::fleet::FleetError::Replay {
            last: 1000,
            got: 500
        })
    ));

    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::NoUpdate);
    v2_ok(&mut server, ServerOutcome::NoUpdate).await;
    assert_eq!(
        fleet.load(42).unwrap().unwrap().nonce,
        Some(1001),
        "record whole again"
    );
}

/// `serve-stdio` speaks v2 too (emulated devices run one server process per connection), and `fleet`
/// prints the table.
#[tokio::test]
async fn serve_stdio_and_the_fleet_command() {
    let fx = fixture();
    let mut device = RotaDevice::new(42, SECRET);
    for expected in [V2Outcome::Committed(1), V2Outcome::NoUpdate] {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rota-server"))
            .args(["serve-stdio", "--repo"])
            .arg(fx.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let io = tokio::io::join(child.stdout.take().unwrap(), child.stdin.take().unwrap());
        let check = device.check_in(io).await;
        assert_eq!(check.outcome, expected);
        let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
            .await
            .expect("serve-stdio exits after one session")
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rota-server"))
        .arg("fleet")
        .arg(fx.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let line = table.lines().find(|l| l.starts_with("42 ")).expect(&table);
    assert!(
        line.contains(" v2 ") && line.contains("no-update"),
        "{table}"
    );
    // Files are named by the release they are from (this repository is no git work tree: `dir`),
    // never by the protocol's hash-derived version numbers.
    assert!(
        line.contains("app@dir") && line.contains("init@dir"),
        "{table}"
    );
    let numbers = line
        .split(['@', ' '])
        .filter(|w| w.len() > 6 && w.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(numbers.count(), 0, "{table}");
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_rota-server"))
        .args(["fleet", "--json"])
        .arg(fx.path())
        .output()
        .unwrap();
    let records: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(records[0]["device"], 42);
}

/// A config object in the inventory reaches the device once, with its id and secret.
#[tokio::test]
async fn config_from_the_inventory() {
    let fx = fixture();
    let inventory = serde_json::json!({
        "files": ["app"],
        "secret": "rota secret",
        "config": {"server": "10.0.2.2", "port": 9000, "ip": "10.0.2.15", "netmask": "255.255.255.0"}
    });
    fx.write("ESP-42.json", inventory.to_string().as_bytes());
    let mut server = fx.start().await;
    let mut device = RotaDevice::new(42, SECRET);
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::Committed(1));
    server.report().await;
    let config = rota_wire::DeviceConfig::decode(device.store.config.as_deref().unwrap()).unwrap();
    assert_eq!((config.device_id, config.secret.as_slice()), (42, SECRET));
    assert_eq!((config.server, config.port), ([10, 0, 2, 2], 9000));
    assert_eq!(config.ip, Some([10, 0, 2, 15]));
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::NoUpdate);
    server.report().await;
}

/// A rollback the device reports is recorded once, shown by `fleet`, and holds back the release this
/// server installed: it is not offered to that device again until the inventory changes.
#[tokio::test]
async fn a_reported_rollback_is_recorded_once_and_holds_the_release_back() {
    let fx = fixture();
    let mut server = fx.start().await;
    let mut device = RotaDevice::new(42, SECRET);
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::Committed(1));
    v2_ok(&mut server, ServerOutcome::Updated).await;
    let installed = Fleet::for_repo(fx.path())
        .unwrap()
        .load(42)
        .unwrap()
        .unwrap()
        .installed;
    assert!(installed.is_some(), "the server knows what it installed");

    // The device's core went back to what it had before (no files), and says so.
    let updated = std::mem::take(&mut device.store.files);
    device.rollback = Some(rota_wire::msg::Rollback {
        from: 1,
        to: 0,
        reason: rota_abi::rollback::PANIC,
        phase: rota_abi::rollback::PHASE_APP,
    });
    for _ in 0..2 {
        let check = device.check_in_tcp(server.addr).await.unwrap();
        assert_eq!(check.outcome, V2Outcome::NoUpdate, "held back: {check:?}");
        v2_ok(&mut server, ServerOutcome::Held).await;
    }
    assert!(device.store.files.is_empty(), "not sent again");
    let record = Fleet::for_repo(fx.path())
        .unwrap()
        .load(42)
        .unwrap()
        .unwrap();
    assert_eq!(record.rollbacks.len(), 1, "reported twice, recorded once");
    assert_eq!(record.held, installed);
    assert_eq!(
        record.rollbacks[0].describe(),
        "generation 1 -> 0 (app panicked)"
    );
    let table = rota_server::fleet::table(&[record]);
    assert!(
        table.contains("rollback generation 1 -> 0 (app panicked)"),
        "{table}"
    );

    // A new release (the inventory changed) is offered again.
    fx.write("app", b"the fixed app");
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::Committed(2), "{check:?}");
    v2_ok(&mut server, ServerOutcome::Updated).await;
    assert_eq!(device.file("app"), Some(&b"the fixed app"[..]));
    drop(updated);
}
