//! `rota-bridge serial`: joins a device's serial line to a rota-server on 127.0.0.1.
//!
//! The line carries the device's console text and `rota-serial-link` frames
//! (docs/protocol.md, "Serial link"); [`frame::Decoder`] splits them and [`frame::encode`] makes the
//! bridge's frames, so the bridge and the device share one codec. Console bytes go to the console
//! output as they arrive; typed keys go to the line raw, between frames. A device `Connect` opens a
//! TCP connection to `127.0.0.1:<server port>` (whatever address the device named); its `Data` goes
//! to the server; each `Credit` is answered with at most one `Data` frame of at most the credited bytes
//! of what the server sent, and a `Close` once the server has closed and every byte of it was
//! delivered. A device `Close`, a frame that fails its checks, or one out of sequence drops the TCP
//! connection, so the server sees the session cut (a v2 session then commits nothing); the last two
//! are answered with `Close(LineError)`. A new `Connect` replaces the connection there was (the device
//! restarted). The bridge ends when the line does.

use rota_serial_link::frame::{
    self, Close, Decoder, FrameError, Kind, Token, MAX_LINE, MAX_PAYLOAD,
};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::thread;

/// Bytes read from the server at a time.
const CHUNK: usize = 4096;
/// Chunks read from the server that may wait for the device's credits; the server's reader then
/// waits, and TCP's window holds the server back.
const CHUNKS: usize = 8;

/// What the bridge's loop reacts to.
enum Event {
    /// Bytes from the line.
    Line(Vec<u8>),
    /// The line ended (QEMU exited, the adapter went away).
    LineEnd(io::Result<()>),
    /// Keys typed on the console input (no 0x00 among them).
    Keys(Vec<u8>),
    /// Connection number `n` has server bytes waiting, or the server closed it.
    Server(u64),
}

/// One connection to the server, for the device's current `Connect`.
struct Conn {
    /// Its number (events of connections dropped since are ignored).
    id: u64,
    tcp: TcpStream,
    /// What the server sent, chunk by chunk; disconnected once the server closed and it is read.
    from_server: Receiver<Vec<u8>>,
    /// The chunk being delivered, and how much of it went.
    chunk: Vec<u8>,
    taken: usize,
    /// The device's outstanding credit: payload bytes of the one `Data` frame it will take now.
    credit: Option<u16>,
    /// Sequence numbers: of the next frame expected from the device, and of the next one sent to it.
    seq_in: u8,
    seq_out: u8,
    /// Bytes to the server and to the device.
    up: u64,
    down: u64,
    /// Writing to the server failed (it went away): the device's further data is dropped.
    server_gone: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Both ways: the server sees the connection end, and its reader thread wakes and ends.
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}

/// The bridge's side of the link: everything but the decoder, so a decoded frame can be acted on
/// while the decoder still holds it.
struct Link<W: Write> {
    line: W,
    out: Box<[u8; MAX_LINE]>,
    server_port: u16,
    conn: Option<Conn>,
    next_id: u64,
    events: Sender<Event>,
}

/// Writes one frame to the line.
fn send<W: Write>(
    line: &mut W,
    out: &mut [u8; MAX_LINE],
    kind: Kind,
    seq: u8,
    payload: &[u8],
) -> io::Result<()> {
    let n = frame::encode(kind, seq, payload, out).expect("a payload within MAX_PAYLOAD");
    line.write_all(&out[..n])?;
    line.flush()
}

fn log(msg: std::fmt::Arguments<'_>) {
    eprintln!("rota-bridge: {msg}");
}

impl<W: Write> Link<W> {
    /// Sends a frame of the current connection (its next sequence number).
    fn send_conn(&mut self, kind: Kind, payload: &[u8]) -> io::Result<()> {
        let Link {
            line, out, conn, ..
        } = self;
        let Some(c) = conn else { return Ok(()) };
        let seq = c.seq_out;
        c.seq_out = c.seq_out.wrapping_add(1);
        send(line, out, kind, seq, payload)
    }

    /// Ends the connection: `reason` to the device if given, then the TCP connection is dropped.
    fn end(&mut self, why: &str, reason: Option<Close>) -> io::Result<()> {
        if let Some(r) = reason {
            self.send_conn(Kind::Close, &[r as u8])?;
        }
        if let Some(c) = self.conn.take() {
            log(format_args!(
                "connection closed ({why}): {} bytes to the server, {} to the device",
                c.up, c.down
            ));
        }
        Ok(())
    }

    fn on_frame(&mut self, f: frame::Frame<'_>) -> io::Result<()> {
        if f.kind == Kind::Connect {
            return self.connect(f.seq, f.payload);
        }
        let Some(c) = &mut self.conn else {
            log(format_args!(
                "{:?} frame with no connection open: ignored",
                f.kind
            ));
            return Ok(());
        };
        if f.seq != c.seq_in {
            let e = FrameError::Seq(c.seq_in, f.seq);
            return self.line_error(e);
        }
        c.seq_in = c.seq_in.wrapping_add(1);
        match f.kind {
            Kind::Data => {
                c.up += f.payload.len() as u64;
                if !c.server_gone {
                    if let Err(e) = c.tcp.write_all(f.payload) {
                        log(format_args!("writing to the server: {e}"));
                        c.server_gone = true;
                    }
                }
                Ok(())
            }
            Kind::Credit => {
                c.credit = Some(u16::from_le_bytes([f.payload[0], f.payload[1]]));
                self.serve()
            }
            Kind::Close => {
                let why = match Close::from_payload(f.payload) {
                    Close::Normal => "the device closed it",
                    Close::Refused => "the device refused it",
                    Close::LineError => "the device saw a line error",
                };
                self.end(why, None)
            }
            // Only the host sends Accept (and Connect was handled above).
            Kind::Accept | Kind::Connect => {
                log(format_args!("the device sent {:?}: not its frame", f.kind));
                self.end("protocol error", Some(Close::LineError))
            }
        }
    }

    /// A frame from the device failed its checks: the connection ends, and the device is told.
    fn line_error(&mut self, e: FrameError) -> io::Result<()> {
        log(format_args!("line error from the device: {}", e.describe()));
        if self.conn.is_some() {
            self.end("line error", Some(Close::LineError))?;
        }
        Ok(())
    }

    /// The device's `Connect`: a new connection to the server, replacing any there was.
    fn connect(&mut self, seq: u8, payload: &[u8]) -> io::Result<()> {
        if self.conn.is_some() {
            self.end("the device connected again (it restarted)", None)?;
        }
        let asked = format!(
            "{}.{}.{}.{}:{}",
            payload[0],
            payload[1],
            payload[2],
            payload[3],
            u16::from_le_bytes([payload[4], payload[5]])
        );
        let tcp = match TcpStream::connect((Ipv4Addr::LOCALHOST, self.server_port)) {
            Ok(s) => s,
            Err(e) => {
                log(format_args!(
                    "device asks for {asked}: 127.0.0.1:{}: {e}",
                    self.server_port
                ));
                return send(
                    &mut self.line,
                    &mut self.out,
                    Kind::Close,
                    0,
                    &[Close::Refused as u8],
                );
            }
        };
        log(format_args!(
            "device asks for {asked}: connected to 127.0.0.1:{}",
            self.server_port
        ));
        let _ = tcp.set_nodelay(true);
        let id = self.next_id;
        self.next_id += 1;
        let (to_bridge, from_server) = mpsc::sync_channel(CHUNKS);
        let reader = tcp.try_clone()?;
        let wake = self.events.clone();
        thread::spawn(move || read_server(reader, to_bridge, wake, id));
        self.conn = Some(Conn {
            id,
            tcp,
            from_server,
            chunk: Vec::new(),
            taken: 0,
            credit: None,
            seq_in: seq.wrapping_add(1),
            seq_out: 0,
            up: 0,
            down: 0,
            server_gone: false,
        });
        self.send_conn(Kind::Accept, &[])
    }

    /// Answers the device's credit, if it has one out and there is something to send: one `Data`
    /// frame of at most the credit, or `Close` once the server has closed and all it sent went.
    fn serve(&mut self) -> io::Result<()> {
        let Link {
            line, out, conn, ..
        } = self;
        let Some(c) = conn else { return Ok(()) };
        let Some(credit) = c.credit else {
            return Ok(());
        };
        loop {
            let rest = &c.chunk[c.taken..];
            if !rest.is_empty() {
                let n = rest.len().min(usize::from(credit)).min(MAX_PAYLOAD);
                if n == 0 {
                    // A credit of 0 asks for nothing.
                    return Ok(());
                }
                let seq = c.seq_out;
                c.seq_out = c.seq_out.wrapping_add(1);
                send(line, out, Kind::Data, seq, &rest[..n])?;
                c.taken += n;
                c.down += n as u64;
                c.credit = None;
                return Ok(());
            }
            match c.from_server.try_recv() {
                Ok(chunk) => {
                    c.chunk = chunk;
                    c.taken = 0;
                }
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => {
                    return self.end("the server closed it", Some(Close::Normal));
                }
            }
        }
    }
}

/// Reads the server's bytes for connection `id` until it closes (or the connection is dropped).
fn read_server(mut tcp: TcpStream, to_bridge: SyncSender<Vec<u8>>, wake: Sender<Event>, id: u64) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log(format_args!("reading from the server: {e}"));
                break;
            }
        };
        if to_bridge.send(buf[..n].to_vec()).is_err() || wake.send(Event::Server(id)).is_err() {
            // The connection was dropped.
            return;
        }
    }
    drop(to_bridge);
    let _ = wake.send(Event::Server(id));
}

/// Reads `from` in a thread, sending what it reads as events made by `event` and its end as `end`.
fn reader(
    mut from: impl Read + Send + 'static,
    events: Sender<Event>,
    event: fn(Vec<u8>) -> Event,
    end: fn(io::Result<()>) -> Option<Event>,
) {
    thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        let result = loop {
            match from.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    if events.send(event(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if let Some(ev) = end(result) {
            let _ = events.send(ev);
        }
    });
}

/// Runs the bridge until the line ends: the device's line is `line_in`/`line_out`, its console goes
/// to `console`, `keys` (if any) are typed on it, and its connections go to `127.0.0.1:server_port`
/// only. Returns the line's read error, if that is how it ended, or a failed write to it.
pub fn run(
    line_in: impl Read + Send + 'static,
    line_out: impl Write,
    keys: Option<Box<dyn Read + Send>>,
    mut console: impl Write,
    server_port: u16,
) -> io::Result<()> {
    let (events, inbox) = mpsc::channel();
    reader(line_in, events.clone(), Event::Line, |r| {
        Some(Event::LineEnd(r))
    });
    if let Some(k) = keys {
        // The line's framing needs 0x00 for itself: a typed NUL is not sent.
        reader(
            k,
            events.clone(),
            |mut b| {
                b.retain(|&c| c != 0);
                Event::Keys(b)
            },
            |_| None,
        );
    }
    let mut decoder = Decoder::new();
    let mut link = Link {
        line: line_out,
        out: Box::new([0; MAX_LINE]),
        server_port,
        conn: None,
        next_id: 0,
        events,
    };
    let mut text = Vec::new();
    loop {
        let event = inbox
            .recv()
            .expect("the loop holds a sender itself: the inbox never runs dry");
        match event {
            Event::Line(bytes) => {
                for b in bytes {
                    match decoder.push(b) {
                        Ok(Token::Console(c)) => text.push(c),
                        Ok(Token::Pending) => {}
                        Ok(Token::Frame) => link.on_frame(decoder.frame())?,
                        Err(e) => link.line_error(e)?,
                    }
                }
                if !text.is_empty() {
                    // The console is for a person: a failed write there does not stop the link.
                    let _ = console.write_all(&text).and_then(|()| console.flush());
                    text.clear();
                }
            }
            Event::LineEnd(result) => {
                link.end("the line ended", None)?;
                log(format_args!("line closed"));
                return result;
            }
            Event::Keys(k) => {
                link.line.write_all(&k)?;
                link.line.flush()?;
            }
            Event::Server(id) => {
                if link.conn.as_ref().is_some_and(|c| c.id == id) {
                    link.serve()?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
