//! Whole check-ins against rota-server's real v1 service, in process, over TCP on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rota_luaota::{Config, Error, FileNumber, NoUpdate, Poll, Refusal, Session};
use rota_server::repo::{content_number, fingerprint, Repo};
use rota_server::session::{Limits, Outcome as ServerOutcome, Server, SessionError, SessionReport};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

struct Running {
    rt: Runtime,
    addr: SocketAddr,
    reports: mpsc::UnboundedReceiver<SessionReport>,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    fn report(&mut self) -> SessionReport {
        let reports = &mut self.reports;
        self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), reports.recv())
                .await
                .expect("a session report within 20 s")
                .expect("server running")
        })
    }
}

/// A repository with `files` (in inventory order) for every device, secret [`SECRET`], and a server.
fn serve(files: &[(&str, Vec<u8>)]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    let names: Vec<&str> = files.iter().map(|f| f.0).collect();
    let inventory = serde_json::json!({ "files": names, "secret": "supersekrit" });
    std::fs::write(dir.path().join("default.json"), inventory.to_string()).unwrap();

    let rt = Runtime::new().unwrap();
    let mut server = Server::new(Repo::open_dir(dir.path()).unwrap(), Limits::default()).unwrap();
    let reports = server.report_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let addr = rt.block_on(async {
        let listener = rota_server::listen::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(rota_server::listen::run(
            listener,
            Arc::new(server),
            64,
            async {
                let _ = stopped.await;
            },
        ));
        addr
    });
    Running {
        rt,
        addr,
        reports,
        _stop: stop,
        _dir: dir,
    }
}

/// How a check-in over TCP ended for the device.
#[derive(Debug)]
struct CheckIn {
    result: Result<Option<Outcome>, Error<StoreError>>,
    refusal: Option<Refusal>,
    store: MemStore,
}

/// One check-in: the device's session over a real socket; each received segment is fed in pieces of
/// `piece` bytes. `Ok(None)`: the server closed first.
fn check_in(addr: SocketAddr, config: &Config, store: MemStore, piece: usize) -> CheckIn {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = [0u8; rota_luaota::LINE_LEN];
    let mut file = vec![0u8; rota_luaota::FILE_LEN];
    let mut s = Session::new(SECRET, ID, config, store, &mut line, &mut file).unwrap();
    let mut buf = [0u8; 1500];
    let (mut at, mut end) = (0, 0);
    let mut out = [0u8; 256];
    let result = loop {
        match s.poll() {
            Poll::Transmit => match s.transmit(&mut out) {
                Ok(n) => tcp.write_all(&out[..n]).unwrap(),
                Err(e) => break Err(e),
            },
            Poll::Receive => {
                if at == end {
                    at = 0;
                    end = match tcp.read(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                        Err(e) => panic!("read: {e}"),
                    };
                    if end == 0 {
                        break Ok(None);
                    }
                }
                let n = piece.min(end - at);
                match s.feed(&buf[at..at + n]) {
                    Ok(used) => at += used,
                    Err(e) => break Err(e),
                }
            }
            Poll::Done => break Ok(s.outcome().map(Outcome::from)),
            Poll::Aborted => unreachable!(),
        }
    };
    drop(tcp);
    CheckIn {
        result,
        refusal: s.refusal(),
        store: s.into_store(),
    }
}

fn data_txt() -> Vec<u8> {
    (0..2500u32).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn full_update_then_no_update() {
    let util = b"\x1bLuaQ\x00compiled elsewhere".to_vec();
    let files = [("data.txt", data_txt()), ("lib/util.lc", util.clone())];
    let mut server = serve(&files);
    let cfg = Config::new(b"127.0.0.1", server.addr.port()).unwrap();

    let first = check_in(server.addr, &cfg, MemStore::default(), 1);
    let numbers: Vec<u32> = files.iter().map(|f| content_number(&f.1)).collect();
    let chk = fingerprint(files.iter().zip(&numbers).map(|(f, &n)| (f.0, n)));
    let mut expected = cfg.clone();
    expected.chk = Some(chk.as_bytes().try_into().unwrap());
    for (f, &number) in files.iter().zip(&numbers) {
        let name = heapless::Vec::from_slice(f.0.as_bytes()).unwrap();
        expected.files.push(FileNumber { name, number }).unwrap();
    }
    let Ok(Some(Outcome::Restart(new))) = first.result else {
        panic!("{first:?}")
    };
    assert_eq!(new, expected);
    assert_eq!(
        first.store.files[&b"data.txt"[..]],
        data_txt(),
        "3 records, byte-exact"
    );
    assert_eq!(first.store.files[&b"lib/util.lc"[..]], util);
    assert_eq!(first.refusal, None);
    let report = server.report();
    assert_eq!(report.device, Some(u64::from(ID)));
    assert!(
        matches!(report.outcome, Ok(ServerOutcome::Updated)),
        "{:?}",
        report.outcome
    );
    assert_eq!(report.files, 2);

    // The next boot, with the committed config: the signed OK!.
    let second = check_in(server.addr, &new, first.store.clone(), usize::MAX);
    assert_eq!(second.result, Ok(Some(Outcome::NoUpdate(NoUpdate::Signed))));
    assert_eq!(second.store, first.store, "nothing written");
    assert!(matches!(
        server.report().outcome,
        Ok(ServerOutcome::NoUpdate)
    ));

    // One file changes on the server: only that one is sent again.
    std::fs::write(server._dir.path().join("lib/util.lc"), b"new").unwrap();
    let mut store = first.store.clone();
    store.puts.clear();
    let third = check_in(server.addr, &new, store, 7);
    let Ok(Some(Outcome::Restart(newer))) = third.result else {
        panic!("{third:?}")
    };
    assert_eq!(third.store.puts, [b"lib/util.lc".to_vec()]);
    assert_eq!(third.store.files[&b"lib/util.lc"[..]], b"new");
    assert_eq!(newer.files[1].number, content_number(b"new"));
    assert_ne!(newer.chk, new.chk);
    assert!(matches!(
        server.report().outcome,
        Ok(ServerOutcome::Updated)
    ));
}

#[test]
fn a_lua_source_gets_compile_fail_and_the_server_aborts() {
    let lua = b"local x = 1\nreturn x\n".to_vec();
    let mut server = serve(&[
        ("data.txt", data_txt()),
        ("init.lua", lua),
        ("z.txt", b"z".to_vec()),
    ]);
    let cfg = Config::new(b"127.0.0.1", server.addr.port()).unwrap();
    let r = check_in(server.addr, &cfg, MemStore::default(), 100);
    // rota-server stops at the first status that is not OK: the session ends without a restart, so
    // the device commits nothing (data.txt was only staged).
    assert_eq!(r.result, Ok(None), "server closed before any restart");
    assert_eq!(r.refusal, Some(Refusal::NoLua));
    assert_eq!(
        r.store.puts,
        [b"data.txt".to_vec()],
        "staged, never committed"
    );
    let report = server.report();
    match report.outcome {
        Err(SessionError::Refused { file, status, err }) => {
            assert_eq!(file, "init.lua");
            assert_eq!(status, "compile fail");
            assert_eq!(err.as_deref(), Some("no Lua on this device"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_file_over_the_device_limit_is_refused_at_its_first_chunk_that_does_not_fit() {
    let big: Vec<u8> = (0..rota_luaota::FILE_LEN as u32 + 1500)
        .map(|i| i as u8)
        .collect();
    let mut server = serve(&[("big.bin", big), ("z.txt", b"z".to_vec())]);
    let cfg = Config::new(b"127.0.0.1", server.addr.port()).unwrap();
    let r = check_in(server.addr, &cfg, MemStore::default(), 100);
    assert_eq!(r.result, Ok(None), "server closed before any restart");
    assert_eq!(r.refusal, Some(Refusal::TooBig));
    assert!(
        r.store.puts.is_empty(),
        "nothing stored: {:?}",
        r.store.puts
    );
    let report = server.report();
    match report.outcome {
        Err(SessionError::Refused { file, status, err }) => {
            assert_eq!(file, "big.bin");
            assert_eq!(status, "write failed");
            let limit = format!("file over {} bytes", rota_luaota::FILE_LEN);
            assert_eq!(err.as_deref(), Some(limit.as_str()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_device_with_the_wrong_secret_gets_nothing() {
    let mut server = serve(&[("data.txt", data_txt())]);
    let cfg = Config::new(b"127.0.0.1", server.addr.port()).unwrap();
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    let mut line = [0u8; 640];
    let mut file = [0u8; 16];
    let mut s = Session::new(
        b"wrong",
        ID,
        &cfg,
        MemStore::default(),
        &mut line,
        &mut file,
    )
    .unwrap();
    let mut out = [0u8; 640];
    let n = s.transmit(&mut out).unwrap();
    tcp.write_all(&out[..n]).unwrap();
    let mut rest = Vec::new();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = tcp.read_to_end(&mut rest);
    assert!(rest.is_empty(), "server sent nothing");
    assert!(matches!(
        server.report().outcome,
        Err(SessionError::BadHiTag(_))
    ));
}
