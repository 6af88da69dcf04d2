//! Floods of connections that send nothing: they must never lock a device out. A connection holds
//! its slot only until its first record's deadline, one peer address cannot take every slot, and a
//! full server makes room (or closes at once) instead of leaving a device waiting past its own 3 s.
//! Every connection goes to 127.0.0.1; the flooding ones come from other loopback addresses
//! (127.0.0.2 and up) so that the per-address cap can be told apart from the table's size.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rota_devices::nodemcu::{Device, Outcome, FIRST_RECORD_WINDOW};
use rota_devices::rota::{RotaDevice, V2Outcome};
use rota_server::listen;
use rota_server::repo::Repo;
use rota_server::session::{Limits, Phase, Server, SessionError, SessionReport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::common::Fixture;

/// A TCP connection to `server` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    socket.connect(server).await.unwrap()
}

/// `per_address` idle connections from each of `addresses` loopback addresses starting at 127.0.0.2.
async fn idle(server: SocketAddr, addresses: u8, per_address: usize) -> Vec<TcpStream> {
    let mut all = Vec::new();
    for a in 0..addresses {
        for _ in 0..per_address {
            all.push(connect_from(Ipv4Addr::new(127, 0, 0, 2 + a), server).await);
        }
    }
    all
}

/// Whether the server closed `stream` (EOF or reset) by `deadline`. A close already received counts
/// even after the deadline (the read is tried first).
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout_at(deadline, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// A server on `fx` with `slots` session slots, in this runtime, and its reports.
async fn serve(fx: &Fixture, slots: usize) -> (SocketAddr, mpsc::UnboundedReceiver<SessionReport>) {
    let mut server = Server::new(Repo::open_dir(fx.path()).unwrap(), Limits::default()).unwrap();
    let reports = server.report_channel();
    let listener = listen::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(listen::run(
        listener,
        Arc::new(server),
        slots,
        std::future::pending(),
    ));
    (addr, reports)
}

/// A v1 device (3 s window from connect to its first record) and a v2 device are both provisioned,
/// each within 3 s.
async fn devices_are_served(addr: SocketAddr, id: u32) {
    let mut v1 = Device::new(u64::from(id), "supersekrit", "127.0.0.1", addr.port());
    let check = v1.check_in_tcp(addr).await.unwrap();
    assert_eq!(check.outcome, Outcome::Restarted, "v1 device {id}");
    assert!(check.first_record_after.unwrap() < FIRST_RECORD_WINDOW);
    let mut v2 = RotaDevice::new(42, b"rota");
    v2.store.boots = id * 10;
    let started = Instant::now();
    let check = v2.check_in_tcp(addr).await.unwrap();
    assert!(
        matches!(check.outcome, V2Outcome::Committed(_) | V2Outcome::NoUpdate),
        "{check:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "v2 device {id}");
}

fn fixture() -> Fixture {
    let fx = Fixture::standard();
    fx.inventory("ESP-42.json", &["data.txt"], "rota");
    fx
}

#[tokio::test]
async fn a_silent_or_trickling_connection_holds_its_slot_two_seconds_at_most() {
    let fx = fixture();
    let (addr, mut reports) = serve(&fx, 4096).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // One byte of a HI line every 400 ms: each read is well within the 15 s idle timeout.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    let dribble = async {
        for _ in 0..10 {
            if trickle.write_all(b"{").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    };
    let (closed, ()) = tokio::join!(
        closed_by(&mut silent, started + Duration::from_secs(3)),
        dribble
    );
    assert!(closed, "the silent connection is closed before 3 s");
    for _ in 0..2 {
        let report = tokio::time::timeout(Duration::from_secs(20), reports.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(report.outcome, Err(SessionError::Timeout(Phase::Hi))),
            "{report:?}"
        );
        assert!(
            report.duration >= Duration::from_millis(1900)
                && report.duration < Duration::from_millis(2600),
            "{:?}",
            report.duration
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn more_idle_connections_than_slots_lock_no_device_out() {
    let fx = fixture();
    let (addr, mut reports) = serve(&fx, 64).await;
    let started = Instant::now();
    // 100 idle connections, 10 from each of 10 addresses: more than the 64 slots.
    let held = idle(addr, 10, 10).await;
    devices_are_served(addr, 1).await;
    // Still more while they are open.
    let more = idle(addr, 10, 2).await;
    devices_are_served(addr, 2).await;
    assert!(
        started.elapsed() < Limits::FIRST_RECORD,
        "served before any idle connection's deadline: room was made"
    );
    // The room came from idle connections, the oldest first; every device session succeeded.
    let mut evicted = 0;
    let mut served = 0;
    while served < 4 {
        let report = tokio::time::timeout(Duration::from_secs(5), reports.recv())
            .await
            .expect("every device session reported")
            .unwrap();
        match report.outcome {
            Err(SessionError::Evicted) => {
                assert!(report.device.is_none() && report.bytes == 0, "{report:?}");
                evicted += 1;
            }
            Ok(_) => served += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(served, 4);
    assert!(evicted >= 100 + 20 - 64, "{evicted} evicted");
    drop((held, more));
}

#[tokio::test]
async fn one_address_cannot_take_every_slot() {
    let fx = fixture();
    let (addr, _reports) = serve(&fx, 64).await;
    let mut flood = idle(addr, 1, 100).await;
    let deadline = Instant::now() + Duration::from_millis(300);
    let mut closed = 0;
    for stream in &mut flood {
        closed += usize::from(closed_by(stream, deadline).await);
    }
    // The per-address cap (a quarter of the slots) holds 16; the rest are closed at once.
    assert_eq!(closed, 100 - 16);
    // Every other address still finds room, even once the table is full.
    let others = idle(addr, 4, 12).await;
    devices_are_served(addr, 3).await;
    drop((flood, others));
}

/// `ulimit -n 256`: the descriptors run out long before the default 4,096 sessions. Devices that
/// connect while the flood holds every descriptor are still served within their 3 s.
#[tokio::test]
async fn out_of_file_descriptors_no_device_waits() {
    let fx = fixture();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_rota-server"))
        .args(["serve", "--repo"])
        .arg(fx.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "rota-server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 300 idle connections from 10 addresses: more than the descriptors the server has.
    let held = idle(addr, 10, 30).await;
    devices_are_served(addr, 4).await;
    let more = idle(addr, 10, 5).await;
    devices_are_served(addr, 5).await;
    drop((held, more));
    assert!(child.try_wait().unwrap().is_none(), "the server still runs");
}
