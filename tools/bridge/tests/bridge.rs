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

/// `rota-bridge serial` as a user runs it, on a socket (QEMU's chardev) or a tty.
mod serial {
    use rota_serial_link::{Port, SerialLink, State};
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::os::unix::net::UnixListener;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc::{self, Receiver};
    use std::thread;
    use std::time::{Duration, Instant};

    /// The device's UART on a byte stream: a thread queues what arrives.
    struct Uart<S: Write> {
        tx: S,
        rx: Receiver<u8>,
    }

    impl<S: Write> Uart<S> {
        fn new(tx: S, mut rx_end: impl Read + Send + 'static) -> Self {
            let (q, rx) = mpsc::channel();
            thread::spawn(move || {
                let mut b = [0u8; 512];
                while let Ok(n @ 1..) = rx_end.read(&mut b) {
                    for &c in &b[..n] {
                        let _ = q.send(c);
                    }
                }
            });
            Uart { tx, rx }
        }
    }

    impl<S: Write> Port for Uart<S> {
        fn write(&mut self, bytes: &[u8]) {
            self.tx.write_all(bytes).unwrap();
        }
        fn read(&mut self) -> Option<u8> {
            self.rx.try_recv().ok()
        }
    }

    /// An echo server on 127.0.0.1 for one connection.
    fn echo() -> (u16, thread::JoinHandle<usize>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 4096];
            let mut total = 0;
            while let Ok(n @ 1..) = s.read(&mut b) {
                s.write_all(&b[..n]).unwrap();
                total += n;
            }
            total
        });
        (port, h)
    }

    fn spawn(line: &Path, port: u16, extra: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_rota-bridge"))
            .arg("serial")
            .arg("--line")
            .arg(line)
            .args(["--server-port", &port.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A device session over `uart`: console text, connect, every byte value to the echo server
    /// and back, close. Returns the data sent.
    fn session(uart: &mut impl Port) -> Vec<u8> {
        let mut link = SerialLink::new();
        uart.write(b"boot 1\r\n");
        link.connect(uart, [10, 0, 2, 100], 8266).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while link.state() == State::Connecting {
            assert!(Instant::now() < deadline, "no answer to Connect");
            link.poll(uart);
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(link.state(), State::Established);
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 256) as u8).collect();
        for piece in data.chunks(200) {
            assert_eq!(link.send(uart, piece), Ok(piece.len()));
        }
        let mut back = Vec::new();
        let mut buf = [0u8; 512];
        while back.len() < data.len() {
            assert!(Instant::now() < deadline, "echo incomplete: {}", back.len());
            let n = link.recv(uart, &mut buf).unwrap();
            back.extend_from_slice(&buf[..n]);
            thread::sleep(Duration::from_micros(200));
        }
        assert_eq!(back, data, "every byte value passes unchanged");
        link.close(uart);
        uart.write(b"app: version 2\r\n");
        data
    }

    fn wait(child: Child) -> (Option<i32>, String, String) {
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn on_a_socket_that_appears_late_the_console_prints_and_the_session_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("line.sock");
        let (port, server) = echo();
        let child = spawn(&path, port, &[]);
        // QEMU creates its socket only as it starts: the bridge waits for it.
        thread::sleep(Duration::from_millis(400));
        let listener = UnixListener::bind(&path).unwrap();
        let (line, _) = listener.accept().unwrap();
        let mut uart = Uart::new(line.try_clone().unwrap(), line.try_clone().unwrap());
        let data = session(&mut uart);
        assert_eq!(server.join().unwrap(), data.len());
        // The line closes (QEMU exits): the bridge ends.
        line.shutdown(std::net::Shutdown::Both).unwrap();
        let (code, stdout, stderr) = wait(child);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(stdout, "boot 1\r\napp: version 2\r\n", "{stderr}");
        for event in [
            "(socket) open",
            "device asks for 10.0.2.100:8266: connected to 127.0.0.1:",
            "connection closed (the device closed it): 3000 bytes to the server, 3000 to the device",
            "line closed",
        ] {
            assert!(stderr.contains(event), "{event:?} not in:\n{stderr}");
        }
        assert!(
            stderr.lines().all(|l| l.starts_with("rota-bridge: ")),
            "{stderr}"
        );
    }

    #[test]
    fn a_line_that_never_appears_or_is_no_line_fails_with_status_1() {
        let dir = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let (code, _, stderr) = wait(spawn(&dir.path().join("none"), 1, &[]));
        assert_eq!(code, Some(1), "{stderr}");
        assert!(start.elapsed() >= Duration::from_secs(5), "it waited");
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let (code, _, stderr) = wait(spawn(&file, 1, &[]));
        assert_eq!(code, Some(1));
        assert!(
            stderr.contains("neither a tty nor a Unix socket"),
            "{stderr}"
        );
        let (code, _, stderr) = wait(spawn(Path::new("/dev/null"), 1, &[]));
        assert_eq!(code, Some(1), "/dev/null is no tty: {stderr}");
        let (code, _, _) = wait(spawn(&file, 1, &["--baud", "fast"]));
        assert_eq!(code, Some(2));
    }

    #[test]
    fn on_a_tty_the_line_is_raw_at_the_baud_rate_asked_for() {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        use rustix::termios::{tcgetattr, LocalModes};
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let slave = ptsname(&master, Vec::new()).unwrap();
        let slave = std::path::PathBuf::from(slave.to_str().unwrap());
        let (port, server) = echo();
        let child = spawn(&slave, port, &["--baud", "57600"]);
        let master = std::fs::File::from(master);
        // The bridge has set the tty up once it says the line is open.
        let deadline = Instant::now() + Duration::from_secs(10);
        let t = loop {
            let t = tcgetattr(&master).unwrap();
            if t.output_speed() == 57600 {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "the bridge did not set the baud rate"
            );
            thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(t.input_speed(), 57600);
        assert!(!t
            .local_modes
            .intersects(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG));
        // Raw both ways: 0x00, CR, LF, XON/XOFF, ^C and 0xff reach the other end unchanged.
        let mut uart = Uart::new(master.try_clone().unwrap(), master.try_clone().unwrap());
        let data = session(&mut uart);
        assert_eq!(server.join().unwrap(), data.len());
        drop(uart);
        // A tty does not close when the device stops talking: stop the bridge as a user would, once
        // it has printed the last console line (it may still be on its way under load).
        let mut child = child;
        let mut stdout_pipe = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 256];
            while !out.ends_with(b"app: version 2\r\n") {
                match stdout_pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&out).into_owned());
        });
        let stdout = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        child.kill().unwrap();
        let (_, _, stderr) = wait(child);
        assert_eq!(stdout, "boot 1\r\napp: version 2\r\n", "{stderr}");
        assert!(stderr.contains("(tty at 57600 baud) open"), "{stderr}");
    }
}
