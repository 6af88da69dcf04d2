//! The bridge binary between a piped stdin/stdout and a TCP server on 127.0.0.1.
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn copies_both_ways_and_exits_when_the_server_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        assert!(peer.ip().is_loopback());
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        s.write_all(&big).unwrap();
        // Dropping `s` closes the connection: the bridge must exit although stdin stays open.
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_rota-bridge"))
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello").unwrap();
    stdin.flush().unwrap();
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    server.join().unwrap();
    let expect: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(out, expect);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "bridge did not exit"
        );
        thread::sleep(Duration::from_millis(10));
    }
    drop(stdin);
}

#[test]
fn refuses_anything_but_a_port() {
    for arg in ["10.0.2.2:80", "localhost", "0", ""] {
        let st = Command::new(env!("CARGO_BIN_EXE_rota-bridge"))
            .arg(arg)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(2), "{arg:?}");
    }
}

#[test]
fn fails_when_nothing_listens() {
    // Bind then drop to get a port that is (almost certainly) closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let st = Command::new(env!("CARGO_BIN_EXE_rota-bridge"))
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(1));
}
