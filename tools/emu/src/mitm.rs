//! A man-in-the-middle TCP proxy on 127.0.0.1 for protocol v2 sessions: it splits the server's byte
//! stream into frames (header with the payload length, payload, tag: rota-wire's) and tampers with them
//! on the way to the device. Device-to-server bytes pass unchanged.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// Bytes of a v2 frame header.
const HEADER: usize = rota_wire::HEADER_LEN;
/// Bytes of a v2 frame tag.
const TAG: usize = rota_wire::TAG_LEN;

/// What the proxy does to the server's frames (numbered from 0 in each connection).
#[derive(Clone, Debug)]
pub enum Tamper {
    /// Forward everything, recording the server's frames.
    Record,
    /// Forward frames before `frame`, then close both connections (a dropped connection).
    CutAt {
        /// First frame not forwarded.
        frame: usize,
    },
    /// Flip one payload byte of `frame`.
    FlipPayload {
        /// The frame to corrupt.
        frame: usize,
    },
    /// Send `replacement` (a frame recorded from another session) instead of `frame`.
    Replay {
        /// The frame replaced.
        frame: usize,
        /// The bytes sent instead.
        replacement: Vec<u8>,
    },
    /// Send `frame + 1` before `frame`.
    Swap {
        /// The first of the two frames exchanged.
        frame: usize,
    },
}

/// A running proxy.
pub struct Proxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Proxy {
    /// Starts a proxy to the server on 127.0.0.1:`upstream`; it serves connections until the process ends.
    pub fn start(upstream: u16, tamper: Tamper) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&frames);
        thread::spawn(move || {
            for device in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let tamper = tamper.clone();
                let recorded = Arc::clone(&recorded);
                thread::spawn(move || relay(device, server, tamper, recorded));
            }
        });
        Proxy { port, frames }
    }

    /// The server frames seen so far (all connections, in order).
    pub fn frames(&self) -> Vec<Vec<u8>> {
        self.frames.lock().expect("frames").clone()
    }
}

fn relay(device: TcpStream, server: TcpStream, tamper: Tamper, recorded: Arc<Mutex<Vec<Vec<u8>>>>) {
    let (mut d_in, mut s_out) = (
        device.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    thread::spawn(move || {
        let _ = std::io::copy(&mut d_in, &mut s_out);
        let _ = s_out.shutdown(Shutdown::Write);
    });
    let (mut s_in, mut d_out) = (server, device);
    let mut held: Option<Vec<u8>> = None;
    let mut index = 0;
    while let Some(frame) = read_frame(&mut s_in) {
        recorded.lock().expect("frames").push(frame.clone());
        let out = match &tamper {
            Tamper::Record => vec![frame],
            Tamper::CutAt { frame: at } if index >= *at => break,
            Tamper::FlipPayload { frame: at } if index == *at => {
                let mut f = frame;
                let i = if f.len() > HEADER + TAG { HEADER } else { 1 };
                f[i] ^= 0x01;
                vec![f]
            }
            Tamper::Replay {
                frame: at,
                replacement,
            } if index == *at => vec![replacement.clone()],
            Tamper::Swap { frame: at } if index == *at => {
                held = Some(frame);
                vec![]
            }
            Tamper::Swap { frame: at } if index == at + 1 => {
                let mut v = vec![frame];
                v.extend(held.take());
                v
            }
            _ => vec![frame],
        };
        index += 1;
        for f in out {
            if d_out.write_all(&f).is_err() {
                return;
            }
        }
    }
    let _ = d_out.shutdown(Shutdown::Both);
    let _ = s_in.shutdown(Shutdown::Both);
}

/// Reads one whole frame (header, payload, tag); `None` at the end of the stream.
fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut frame = vec![0u8; HEADER];
    s.read_exact(&mut frame).ok()?;
    let len = u16::from_le_bytes([frame[2], frame[3]]) as usize;
    frame.resize(HEADER + len + TAG, 0);
    s.read_exact(&mut frame[HEADER..]).ok()?;
    Some(frame)
}
