//! Every defect of the original example server (luaota-protocol.md), reproduced against rota-server:
//! each ends only its own session, and the server goes on serving other devices.

use std::time::Duration;

use rota_devices::nodemcu::{AppReason, Device, Outcome};
use rota_server::repo::{Repo, RepoError};
use rota_server::session::{Limits, Phase, SessionError};
use rota_server::v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{start, Fixture, Running};

/// A good device still gets its files (and its session report is consumed).
async fn still_serves(server: &mut Running) {
    let mut device = Device::new(11223344, "supersekrit", "127.0.0.1", server.addr.port());
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, Outcome::Restarted);
    let report = server.report().await;
    assert_eq!(report.device, Some(11223344));
    assert!(report.outcome.is_ok(), "{:?}", report.outcome);
}

/// Sends `bytes` and returns all the server sent back before closing.
async fn raw(server: &Running, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // The server may close before taking everything (that is the point of some tests).
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    out
}

fn signed(secret: &str, json: &str) -> Vec<u8> {
    v1::emit_line(&v1::Signer::new(secret.as_bytes()), json).unwrap()
}

#[tokio::test]
async fn connect_then_close() {
    let fx = Fixture::standard();
    let mut server = fx.start().await;
    drop(TcpStream::connect(server.addr).await.unwrap());
    assert!(matches!(
        server.report().await.outcome,
        Err(SessionError::Empty)
    ));
    still_serves(&mut server).await;
}

#[tokio::test]
async fn non_json_lines() {
    let fx = Fixture::standard();
    let mut server = fx.start().await;
    assert!(raw(&server, b"{this is not json}abcdef\n").await.is_empty());
    let err = server.report().await.outcome.unwrap_err();
    assert!(
        matches!(err, SessionError::Record(v1::Error::Json(_))),
        "{err:?}"
    );
    // Not even v1 (an HTTP probe): refused on its first byte.
    assert!(raw(&server, b"GET / HTTP/1.0\r\n\r\n").await.is_empty());
    let err = server.report().await.outcome.unwrap_err();
    assert!(
        matches!(err, SessionError::UnknownProtocol(b'G')),
        "{err:?}"
    );
    still_serves(&mut server).await;
}

#[tokio::test]
async fn silence_and_stalls_block_nobody() {
    let fx = Fixture::standard();
    let limits = Limits {
        idle: Duration::from_millis(1500),
        ..Limits::default()
    };
    let mut server = start(Repo::open_dir(fx.path()).unwrap(), limits).await;
    // Silent peers, and one that stops answering in the middle of a transfer.
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    let device = Device::new(11223344, "supersekrit", "127.0.0.1", 8266);
    stalled.write_all(&device.hi_line().unwrap()).await.unwrap();
    let mut first = [0u8; 2048];
    assert!(stalled.read(&mut first).await.unwrap() > 0);

    // Meanwhile twenty devices check in at once, each within its 3 s window.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let addr = server.addr;
            tokio::spawn(async move {
                let mut d = Device::new(1000 + i, "supersekrit", "127.0.0.1", 8266);
                d.check_in_tcp(addr).await.unwrap().outcome
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Outcome::Restarted);
    }
    let mut timeouts = (0, 0);
    for _ in 0..26 {
        match server.report().await.outcome {
            Ok(_) => {}
            Err(SessionError::Timeout(Phase::Hi)) => timeouts.0 += 1,
            Err(SessionError::Timeout(Phase::Reply)) => timeouts.1 += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(timeouts, (5, 1));
    drop(silent);
    still_serves(&mut server).await;
}

#[tokio::test]
async fn unknown_chip_without_default_gets_nothing() {
    let fx = Fixture::standard();
    std::fs::rename(
        fx.path().join("default.json"),
        fx.path().join("ESP-11223344.json"),
    )
    .unwrap();
    let mut server = fx.start().await;
    let mut stranger = Device::new(5, "supersekrit", "127.0.0.1", 8266);
    let check = stranger.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, Outcome::AppStarted(AppReason::ClosedEarly));
    let err = server.report().await.outcome.unwrap_err();
    assert!(
        matches!(err, SessionError::Repo(RepoError::UnknownDevice(5))),
        "{err:?}"
    );
    still_serves(&mut server).await;
}

#[tokio::test]
async fn hi_without_id_or_with_a_float_id() {
    let fx = Fixture::standard();
    fx.inventory("ESP-11223344.0.json", &["data.txt"], "supersekrit");
    let mut server = fx.start().await;
    let hi = r#"{"leave":0,"port":8266,"ssid":"YourSID","server":"127.0.0.1","a":"HI"}"#;
    assert!(raw(&server, &signed("supersekrit", hi)).await.is_empty());
    let err = server.report().await.outcome.unwrap_err();
    assert!(
        matches!(err, SessionError::Record(v1::Error::Missing("id"))),
        "{err:?}"
    );

    let hi =
        r#"{"leave":0,"port":8266,"ssid":"YourSID","server":"127.0.0.1","id":11223344.0,"a":"HI"}"#;
    assert!(raw(&server, &signed("supersekrit", hi)).await.is_empty());
    let err = server.report().await.outcome.unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Record(v1::Error::Field { field: "id", .. })
        ),
        "{err:?}"
    );
    still_serves(&mut server).await;
}

#[tokio::test]
async fn secrets_of_any_length() {
    let fx = Fixture::standard();
    let secrets = [
        String::new(),
        "k".repeat(64),
        "k".repeat(65),
        "é-long-secret-".repeat(20),
    ];
    for (i, secret) in secrets.iter().enumerate() {
        fx.inventory(&format!("ESP-{i}.json"), &["data.txt"], secret);
    }
    let mut server = fx.start().await;
    for (i, secret) in secrets.iter().enumerate() {
        let mut device = Device::new(i as u64, secret, "127.0.0.1", 8266);
        let check = device.check_in_tcp(server.addr).await.unwrap();
        assert_eq!(
            check.outcome,
            Outcome::Restarted,
            "secret of {} bytes",
            secret.len()
        );
        assert!(check.received.iter().all(|r| r.tag_ok));
        assert!(server.report().await.outcome.is_ok());
        let check = device.check_in_tcp(server.addr).await.unwrap();
        assert_eq!(check.outcome, Outcome::NoUpdate);
        assert!(check.received[0].tag_ok);
        assert!(server.report().await.outcome.is_ok());
    }
    still_serves(&mut server).await;
}

#[tokio::test]
async fn missing_repository_file() {
    let fx = Fixture::standard();
    fx.inventory("ESP-9.json", &["data.txt", "gone.lua"], "nine");
    let mut server = fx.start().await;
    let mut device = Device::new(9, "nine", "127.0.0.1", 8266);
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert!(
        check.received.is_empty(),
        "nothing is sent, not even data.txt"
    );
    let err = server.report().await.outcome.unwrap_err();
    assert!(matches!(&err, SessionError::Repo(RepoError::MissingFile(f)) if f == "gone.lua"));
    still_serves(&mut server).await;
}

#[tokio::test]
async fn every_hi_is_checked_with_that_devices_own_secret() {
    let fx = Fixture::standard();
    fx.write("b.txt", b"for b only");
    fx.inventory("ESP-2.json", &["b.txt"], "secret-of-b");
    let mut server = fx.start().await;

    // The very first HI after start is verified too.
    let mut impostor = Device::new(11223344, "guess", "127.0.0.1", 8266);
    let check = impostor.check_in_tcp(server.addr).await.unwrap();
    assert!(check.received.is_empty());
    let err = server.report().await.outcome.unwrap_err();
    assert!(
        matches!(&err, SessionError::BadHiTag(f) if f == "default.json"),
        "{err:?}"
    );

    still_serves(&mut server).await;
    // Device 2 signing with the previous device's secret is refused...
    let mut b = Device::new(2, "supersekrit", "127.0.0.1", 8266);
    assert!(b
        .check_in_tcp(server.addr)
        .await
        .unwrap()
        .received
        .is_empty());
    let err = server.report().await.outcome.unwrap_err();
    assert!(
        matches!(&err, SessionError::BadHiTag(f) if f == "ESP-2.json"),
        "{err:?}"
    );
    // ... and served with its own.
    let mut b = Device::new(2, "secret-of-b", "127.0.0.1", 8266);
    assert_eq!(
        b.check_in_tcp(server.addr).await.unwrap().outcome,
        Outcome::Restarted
    );
    assert_eq!(b.fs["b.txt"], b"for b only");
}

#[tokio::test]
async fn absurd_inputs_are_refused_without_buffering() {
    let fx = Fixture::standard();
    let mut server = fx.start().await;
    // A 10 MB line: refused after the first 4 KB.
    let mut huge = b"{\"a\":\"".to_vec();
    huge.resize(10 << 20, b'x');
    assert!(raw(&server, &huge).await.is_empty());
    let err = server.report().await.outcome.unwrap_err();
    assert!(matches!(err, SessionError::LineTooLong), "{err:?}");

    // Deep nesting inside the line limit.
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(1500), "]".repeat(1500));
    assert!(raw(&server, &signed("supersekrit", &deep)).await.is_empty());
    let err = server.report().await.outcome.unwrap_err();
    assert!(
        matches!(err, SessionError::Record(v1::Error::TooDeep)),
        "{err:?}"
    );

    // A reply that is garbage mid-session ends that session only.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let device = Device::new(11223344, "supersekrit", "127.0.0.1", 8266);
    stream.write_all(&device.hi_line().unwrap()).await.unwrap();
    let mut buf = [0u8; 2048];
    assert!(stream.read(&mut buf).await.unwrap() > 0);
    stream
        .write_all(&signed("supersekrit", r#"{"s":"write failed"}"#))
        .await
        .unwrap();
    let err = server.report().await.outcome.unwrap_err();
    assert!(
        matches!(&err, SessionError::Refused { file, status, .. } if file == "init.lua" && status == "write failed"),
        "{err:?}"
    );
    still_serves(&mut server).await;
}

#[tokio::test]
async fn trickling_and_slow_peers_hit_their_deadlines() {
    let fx = Fixture::standard();
    let limits = Limits {
        idle: Duration::from_millis(600),
        session: Duration::from_millis(1500),
        ..Limits::default()
    };
    let mut server = start(Repo::open_dir(fx.path()).unwrap(), limits).await;

    // One byte every 100 ms: a line must arrive whole within the idle timeout.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let trickle = async {
        for _ in 0..40 {
            if stream.write_all(b"{").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (report, ()) = tokio::join!(server.report(), trickle);
    assert!(
        matches!(report.outcome, Err(SessionError::Timeout(Phase::Hi))),
        "{:?}",
        report.outcome
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_millis(1450),
        "{took:?}"
    );

    // Every reply just inside the idle timeout: the whole-session limit ends it.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let device = Device::new(11223344, "supersekrit", "127.0.0.1", 8266);
    stream.write_all(&device.hi_line().unwrap()).await.unwrap();
    let slow = async {
        let mut buf = [0u8; 2048];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
            tokio::time::sleep(Duration::from_millis(400)).await;
            if stream
                .write_all(&signed("supersekrit", r#"{"s":"OK"}"#))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let (report, ()) = tokio::join!(server.report(), slow);
    assert!(
        matches!(report.outcome, Err(SessionError::Timeout(Phase::Reply))),
        "{:?}",
        report.outcome
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    still_serves(&mut server).await;
}

#[tokio::test]
async fn over_max_sessions_new_connections_are_closed_at_once() {
    let fx = Fixture::standard();
    let server =
        rota_server::session::Server::new(Repo::open_dir(fx.path()).unwrap(), Limits::default())
            .unwrap();
    let listener = rota_server::listen::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(rota_server::listen::run(
        listener,
        std::sync::Arc::new(server),
        2,
        std::future::pending(),
    ));
    let holders = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    drop(holders);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut device = Device::new(11223344, "supersekrit", "127.0.0.1", addr.port());
    let check = device.check_in_tcp(addr).await.unwrap();
    assert_eq!(check.outcome, Outcome::Restarted);
}
