//! The bridge over a socket pair (the line), against servers on 127.0.0.1: the device's end is
//! `rota_serial_link::SerialLink` or a scripted device made of the same frame codec.

use super::*;
use rota_serial_link::{Ended, Port, SerialLink, State, TX_PAYLOAD};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the bridge printed as the device's console.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Console {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A bridge running on one end of a socket pair; returns the device's end.
fn bridge(
    server_port: u16,
    keys: Option<Box<dyn Read + Send>>,
) -> (UnixStream, Console, JoinHandle<io::Result<()>>) {
    let (device, line) = UnixStream::pair().unwrap();
    let console = Console::default();
    let out = console.clone();
    let input = line.try_clone().unwrap();
    let handle = thread::spawn(move || run(input, line, keys, out, server_port));
    device
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (device, console, handle)
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server on 127.0.0.1 that runs `serve` on each of its first `n` connections, in turn; the
/// handle returns what each returned.
fn server<T: Send + 'static>(
    n: usize,
    serve: impl Fn(TcpStream) -> T + Send + 'static,
) -> (u16, JoinHandle<Vec<T>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        (0..n)
            .map(|_| {
                let (s, peer) = l.accept().unwrap();
                assert!(peer.ip().is_loopback());
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                serve(s)
            })
            .collect()
    });
    (port, h)
}

/// Everything the peer sends until it closes its side.
fn read_all(mut s: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("the bridge closes, never stalls");
    got
}

/// The device's UART over its end of the socket pair: a thread queues what arrives.
struct Uart {
    tx: UnixStream,
    rx: Receiver<u8>,
}

impl Uart {
    fn new(s: UnixStream) -> Uart {
        let (q, rx) = mpsc::channel();
        let mut r = s.try_clone().unwrap();
        r.set_read_timeout(None).unwrap();
        thread::spawn(move || {
            let mut b = [0u8; 512];
            while let Ok(n @ 1..) = r.read(&mut b) {
                for &c in &b[..n] {
                    let _ = q.send(c);
                }
            }
        });
        Uart { tx: s, rx }
    }
}

impl Drop for Uart {
    fn drop(&mut self) {
        // The reader thread holds a clone: end the socket itself, so the bridge sees the line end.
        let _ = self.tx.shutdown(Shutdown::Both);
    }
}

impl Port for Uart {
    fn write(&mut self, bytes: &[u8]) {
        self.tx.write_all(bytes).unwrap();
    }
    fn read(&mut self) -> Option<u8> {
        self.rx.try_recv().ok()
    }
}

/// Polls `link` until `done` holds; panics after 5 s.
fn until(
    link: &mut SerialLink,
    uart: &mut Uart,
    mut done: impl FnMut(&mut SerialLink, &mut Uart) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(link, uart) {
        assert!(Instant::now() < deadline, "timed out in {:?}", link.state());
        link.poll(uart);
        thread::sleep(Duration::from_millis(1));
    }
}

/// Receives until `n` bytes came or the connection is over.
fn recv_n(link: &mut SerialLink, uart: &mut Uart, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 300];
    until(link, uart, |link, uart| {
        match link.recv(uart, &mut buf) {
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(_) => return true,
        }
        got.len() >= n
    });
    got
}

/// A device that writes frames with the shared codec and reads the bridge's frames one by one.
struct Scripted {
    line: UnixStream,
    decoder: Decoder,
    seq: u8,
}

/// One frame from the bridge.
#[derive(Debug, PartialEq, Eq)]
struct Got {
    kind: Kind,
    seq: u8,
    payload: Vec<u8>,
}

impl Scripted {
    fn new(line: UnixStream) -> Scripted {
        Scripted {
            line,
            decoder: Decoder::new(),
            seq: 0,
        }
    }

    fn encoded(&mut self, kind: Kind, payload: &[u8]) -> Vec<u8> {
        let mut out = [0u8; MAX_LINE];
        let n = frame::encode(kind, self.seq, payload, &mut out).unwrap();
        self.seq = self.seq.wrapping_add(1);
        out[..n].to_vec()
    }

    fn send(&mut self, kind: Kind, payload: &[u8]) {
        let f = self.encoded(kind, payload);
        self.line.write_all(&f).unwrap();
    }

    fn connect(&mut self) {
        self.seq = 0;
        self.send(Kind::Connect, &[10, 0, 2, 100, 0x4a, 0x20]);
    }

    fn credit(&mut self, n: u16) {
        self.send(Kind::Credit, &n.to_le_bytes());
    }

    /// The next frame within `wait`, if one comes.
    fn next_within(&mut self, wait: Duration) -> Option<Got> {
        self.line.set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 1];
        loop {
            match self.line.read(&mut b) {
                Ok(1) => {}
                Ok(_) => return None,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => panic!("{e}"),
            }
            if self
                .decoder
                .push(b[0])
                .expect("the bridge's frames are well formed")
                == Token::Frame
            {
                let f = self.decoder.frame();
                return Some(Got {
                    kind: f.kind,
                    seq: f.seq,
                    payload: f.payload.to_vec(),
                });
            }
        }
    }

    fn next(&mut self) -> Got {
        self.next_within(Duration::from_secs(5))
            .expect("a frame from the bridge")
    }

    /// Nothing comes for a while.
    fn quiet(&mut self) {
        assert_eq!(self.next_within(Duration::from_millis(150)), None);
    }
}

#[test]
fn a_serial_link_device_connects_and_data_flows_both_ways_with_the_console_in_between() {
    let (port, srv) = server(1, |mut s| {
        // Echo, then note what came.
        let mut got = Vec::new();
        let mut b = [0u8; 2048];
        while let Ok(n @ 1..) = s.read(&mut b) {
            s.write_all(&b[..n]).unwrap();
            got.extend_from_slice(&b[..n]);
        }
        got
    });
    let (line, console, bridge) = bridge(port, None);
    let mut uart = Uart::new(line);
    let mut link = SerialLink::new();
    uart.write(b"boot 1\n");
    link.connect(&mut uart, [10, 0, 2, 100], 8266).unwrap();
    until(&mut link, &mut uart, |l, _| l.state() != State::Connecting);
    assert_eq!(link.state(), State::Established);
    uart.write(b"provision: connected\n");
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    for piece in data.chunks(TX_PAYLOAD) {
        assert_eq!(link.send(&mut uart, piece), Ok(piece.len()));
    }
    let back = recv_n(&mut link, &mut uart, data.len());
    assert_eq!(back, data);
    assert_eq!(link.state(), State::Established);
    link.close(&mut uart);
    uart.write(b"app: version 2\n");
    assert_eq!(
        srv.join().unwrap(),
        vec![data],
        "the server saw the device's close"
    );
    drop(uart);
    bridge.join().unwrap().unwrap();
    assert_eq!(
        console.text(),
        "boot 1\nprovision: connected\napp: version 2\n",
        "console text passes unchanged, frames do not show"
    );
}

#[test]
fn each_credit_gets_at_most_one_frame_within_it_then_close_once_the_server_is_done() {
    let data: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let (port, srv) = server(1, move |mut s| {
        // Nothing at first: the device's credit waits for data.
        thread::sleep(Duration::from_millis(300));
        s.write_all(&sent).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        read_all(s)
    });
    let (line, _console, bridge) = bridge(port, None);
    let mut dev = Scripted::new(line);
    dev.connect();
    assert_eq!(
        dev.next(),
        Got {
            kind: Kind::Accept,
            seq: 0,
            payload: vec![]
        }
    );
    dev.send(Kind::Data, b"hello");
    let start = Instant::now();
    dev.credit(100);
    let first = dev.next();
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "it waited for data"
    );
    assert_eq!((first.kind, first.seq), (Kind::Data, 1));
    assert_eq!(first.payload, &data[..100]);
    let mut got = first.payload;
    // A credit that asks for nothing gets nothing; the next one replaces it.
    dev.credit(0);
    dev.quiet();
    // Small, odd, full and oversized credits; each answered by one frame, never more.
    let credits = [1u16, 7, 1024, 5000, 333].into_iter().cycle();
    for (seq, credit) in (2..).zip(credits) {
        dev.quiet();
        dev.credit(credit);
        let f = dev.next();
        assert_eq!(f.seq, seq);
        if got.len() == data.len() {
            assert_eq!(
                (f.kind, f.payload),
                (Kind::Close, vec![Close::Normal as u8])
            );
            break;
        }
        assert_eq!(f.kind, Kind::Data);
        assert!(f.payload.len() <= usize::from(credit).min(MAX_PAYLOAD));
        got.extend_from_slice(&f.payload);
    }
    assert_eq!(got, data);
    // The connection is over: nothing more comes.
    dev.credit(10);
    dev.quiet();
    assert_eq!(srv.join().unwrap(), vec![b"hello".to_vec()]);
    drop(dev);
    bridge.join().unwrap().unwrap();
}

#[test]
fn a_refused_connect_is_answered_with_close_refused_and_the_next_one_works() {
    let port = closed_port();
    let (line, _console, bridge) = bridge(port, None);
    let mut uart = Uart::new(line);
    let mut link = SerialLink::new();
    link.connect(&mut uart, [10, 0, 2, 100], 8266).unwrap();
    until(&mut link, &mut uart, |l, _| l.state() != State::Connecting);
    assert_eq!(link.state(), State::Closed(Ended::Peer(Close::Refused)));
    // The server comes up on that port: the device's next check-in gets through.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    link.connect(&mut uart, [10, 0, 2, 100], 8266).unwrap();
    until(&mut link, &mut uart, |l, _| l.state() != State::Connecting);
    assert_eq!(link.state(), State::Established);
    assert!(listener.accept().is_ok());
    drop(uart);
    bridge.join().unwrap().unwrap();
}

#[test]
fn a_corrupted_or_missing_device_frame_cuts_the_server_connection_and_is_answered_with_line_error()
{
    // Each case: what to do to the second Data frame of a connection.
    #[derive(Clone, Copy, Debug)]
    enum Fault {
        Flip(usize),
        Drop(usize),
        Lost,
    }
    // Byte 0 and 1 are the frame's two opening delimiters: losing one of them loses nothing (the
    // serial-link crate's tests check that); a flip of the second puts noise into the body.
    let mut faults: Vec<Fault> = (1..12).map(Fault::Flip).collect();
    faults.extend((2..13).map(Fault::Drop));
    faults.push(Fault::Lost);
    let (port, srv) = server(faults.len(), read_all);
    let (line, _console, bridge) = bridge(port, None);
    let mut dev = Scripted::new(line);
    for &fault in &faults {
        dev.connect();
        assert_eq!(dev.next().kind, Kind::Accept, "{fault:?}");
        dev.send(Kind::Data, b"good");
        let mut bad = dev.encoded(Kind::Data, b"bad bytes");
        match fault {
            Fault::Flip(i) => bad[i] ^= 0x20,
            Fault::Drop(i) => {
                bad.remove(i);
            }
            // The frame is lost whole: the next one's sequence number shows it.
            Fault::Lost => bad = dev.encoded(Kind::Data, b"after the lost one"),
        }
        dev.line.write_all(&bad).unwrap();
        if let Fault::Drop(_) = fault {
            // A dropped byte may leave the frame open: the next frame's delimiter ends it.
            dev.credit(10);
        }
        let f = dev.next();
        assert_eq!(
            (f.kind, f.payload),
            (Kind::Close, vec![Close::LineError as u8]),
            "{fault:?}"
        );
    }
    let seen = srv.join().unwrap();
    assert_eq!(seen.len(), faults.len());
    for (got, fault) in seen.iter().zip(&faults) {
        assert_eq!(
            got, b"good",
            "{fault:?}: the server got only the good frame, then the cut"
        );
    }
    drop(dev);
    bridge.join().unwrap().unwrap();
}

#[test]
fn a_new_connect_replaces_the_old_connection_and_a_device_close_ends_it() {
    let (port, srv) = server(2, read_all);
    let (line, _console, bridge) = bridge(port, None);
    let mut dev = Scripted::new(line);
    dev.connect();
    assert_eq!(dev.next().kind, Kind::Accept);
    dev.send(Kind::Data, b"first boot");
    // The device restarted: a Connect with its sequence numbers from 0 again.
    dev.connect();
    assert_eq!(
        dev.next(),
        Got {
            kind: Kind::Accept,
            seq: 0,
            payload: vec![]
        }
    );
    dev.send(Kind::Data, b"second boot");
    dev.send(Kind::Close, &[Close::Normal as u8]);
    assert_eq!(
        srv.join().unwrap(),
        vec![b"first boot".to_vec(), b"second boot".to_vec()]
    );
    // Frames after the close belong to no connection: ignored, nothing answers.
    dev.credit(10);
    dev.quiet();
    drop(dev);
    bridge.join().unwrap().unwrap();
}

#[test]
fn typed_keys_reach_the_line_raw_without_nul() {
    let keys: Box<dyn Read + Send> = Box::new(io::Cursor::new(b"ab\0c\r\n".to_vec()));
    let (mut line, _console, bridge) = bridge(closed_port(), Some(keys));
    let mut got = [0u8; 5];
    line.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"abc\r\n");
    drop(line);
    bridge.join().unwrap().unwrap();
}

#[test]
fn the_line_ending_cuts_the_server_connection_and_ends_the_bridge() {
    let (port, srv) = server(1, read_all);
    let (line, _console, bridge) = bridge(port, None);
    let mut dev = Scripted::new(line);
    dev.connect();
    assert_eq!(dev.next().kind, Kind::Accept);
    dev.send(Kind::Data, b"partial");
    drop(dev);
    bridge.join().unwrap().unwrap();
    assert_eq!(srv.join().unwrap(), vec![b"partial".to_vec()]);
}
