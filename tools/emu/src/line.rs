//! A proxy on a serial line, between QEMU's chardev socket (the device's console UART) and
//! `rota-bridge serial`: it counts the `rota-serial-link` frame bytes each way, notes where each
//! device `Connect` falls, and can flip or drop one chosen frame byte, as a noisy line would.
//!
//! Positions count frame bytes only (delimiters included; console text between frames is not
//! counted), so a position always falls inside the link's traffic. Which bytes are frame bytes is
//! [`Decoder`]'s call, the same decoder the device and the bridge use.

use rota_serial_link::frame::{Decoder, Kind, Token};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A direction on the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Device to host (console text and the device's frames).
    FromDevice = 0,
    /// Host to device (the bridge's frames, typed keys).
    ToDevice = 1,
}

/// What happens to the chosen byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// One bit of it is flipped.
    Flip,
    /// It is lost.
    Drop,
}

/// One damaged byte: the frame byte number `at` (from 0) going `direction`, or, where that one is a
/// delimiter, the next frame byte that is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Which way.
    pub direction: Direction,
    /// Which frame byte of that direction.
    pub at: u64,
    /// What happens to it.
    pub damage: Damage,
}

/// What the proxy saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Frame bytes passed so far, indexed by [`Direction`].
    pub frame_bytes: [u64; 2],
    /// At each device `Connect` (a session's start): the frame bytes passed each way before it.
    pub connects: Vec<[u64; 2]>,
    /// Whether the fault was applied (its byte came).
    pub applied: bool,
}

/// A proxy's instructions and its record, shared with whoever set it up.
#[derive(Clone, Debug, Default)]
pub struct Tap {
    /// The byte to damage; `None`: pass everything.
    pub fault: Option<Fault>,
    /// What it saw.
    pub seen: Arc<Mutex<Seen>>,
}

impl Tap {
    /// A tap that damages `fault`'s byte.
    pub fn damaging(fault: Fault) -> Tap {
        Tap {
            fault: Some(fault),
            seen: Arc::default(),
        }
    }

    /// What it saw so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().expect("tap record").clone()
    }
}

/// Starts a proxy: it listens on `bridge_side` (a new Unix socket) at once, connects to QEMU's
/// socket `qemu_side` as soon as it exists (QEMU, started with `wait=on`, runs the guest only
/// then), takes the bridge's connection, and passes bytes both ways through `tap` until QEMU closes
/// its socket; then the bridge's side is closed too.
pub fn proxy(qemu_side: PathBuf, bridge_side: &Path, tap: Tap) -> thread::JoinHandle<()> {
    let listener = UnixListener::bind(bridge_side).expect("bind the proxy's socket");
    thread::spawn(move || {
        let Some(qemu) = connect_when_there(&qemu_side, Duration::from_secs(10)) else {
            return;
        };
        let Ok((bridge, _)) = listener.accept() else {
            return;
        };
        let (q2, b2) = (
            qemu.try_clone().expect("clone"),
            bridge.try_clone().expect("clone"),
        );
        let t = tap.clone();
        let up = thread::spawn(move || pump(b2, q2, Direction::ToDevice, &t));
        pump(qemu, bridge, Direction::FromDevice, &tap);
        let _ = up.join();
    })
}

/// Connects to the Unix socket at `path`, waiting up to `wait` for it to appear.
pub(crate) fn connect_when_there(path: &Path, wait: Duration) -> Option<UnixStream> {
    let deadline = Instant::now() + wait;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Some(s),
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Err(_) => return None,
        }
    }
}

/// Copies `from` to `to` going `dir`, damaging the tap's byte; when `from` ends, ends `to`.
fn pump(mut from: UnixStream, mut to: UnixStream, dir: Direction, tap: &Tap) {
    let mut decoder = Decoder::new();
    let mut buf = [0u8; 4096];
    let mut out = Vec::with_capacity(buf.len());
    while let Ok(n @ 1..) = from.read(&mut buf) {
        out.clear();
        {
            let mut seen = tap.seen.lock().expect("tap record");
            for &b in &buf[..n] {
                let framed = b == 0 || decoder.in_frame();
                let token = decoder.push(b);
                if !framed {
                    out.push(b);
                    continue;
                }
                let at = seen.frame_bytes[dir as usize];
                seen.frame_bytes[dir as usize] += 1;
                // A delimiter is passed over: a lost or changed one between two frames can be
                // harmless (the next frame opens with its own), so the fault goes to the next byte.
                match tap.fault {
                    Some(f) if f.direction == dir && at >= f.at && !seen.applied && b != 0 => {
                        seen.applied = true;
                        if f.damage == Damage::Flip {
                            out.push(b ^ 0x10);
                        }
                    }
                    _ => out.push(b),
                }
                if dir == Direction::FromDevice
                    && token == Ok(Token::Frame)
                    && decoder.frame().kind == Kind::Connect
                {
                    let c = seen.frame_bytes;
                    seen.connects.push(c);
                }
            }
        }
        if to.write_all(&out).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rota_serial_link::frame::{encode, MAX_LINE};

    fn frame(kind: Kind, seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = [0u8; MAX_LINE];
        let n = encode(kind, seq, payload, &mut out).unwrap();
        out[..n].to_vec()
    }

    /// Runs a proxy between a fake QEMU and a fake bridge; `from_device` then `to_device` are sent
    /// through it; returns what each end received and what the tap saw.
    fn through(tap: Tap, from_device: &[u8], to_device: &[u8]) -> (Vec<u8>, Vec<u8>, Seen) {
        let dir = tempfile::tempdir().unwrap();
        let (q, b) = (dir.path().join("qemu"), dir.path().join("bridge"));
        let qemu = UnixListener::bind(&q).unwrap();
        let h = proxy(q, &b, tap.clone());
        let mut bridge = connect_when_there(&b, Duration::from_secs(5)).unwrap();
        let (mut device, _) = qemu.accept().unwrap();
        device.write_all(from_device).unwrap();
        let mut got_bridge = vec![0u8; from_device.len()];
        bridge
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // A dropped byte arrives one short.
        let want =
            got_bridge.len()
                - usize::from(tap.fault.is_some_and(|f| {
                    f.direction == Direction::FromDevice && f.damage == Damage::Drop
                }));
        bridge.read_exact(&mut got_bridge[..want]).unwrap();
        got_bridge.truncate(want);
        bridge.write_all(to_device).unwrap();
        bridge.shutdown(Shutdown::Write).unwrap();
        let mut got_device = Vec::new();
        device.read_to_end(&mut got_device).unwrap();
        drop(device);
        h.join().unwrap();
        (got_bridge, got_device, tap.seen())
    }

    #[test]
    fn frame_bytes_are_counted_console_text_is_not_and_connects_are_noted() {
        let connect = frame(Kind::Connect, 0, &[10, 0, 2, 100, 0x4a, 0x20]);
        let data = frame(Kind::Data, 1, b"hello");
        let mut from = b"boot 1\n".to_vec();
        from.extend(&connect);
        from.extend(b"text");
        from.extend(&data);
        let accept = frame(Kind::Accept, 0, &[]);
        let (b, d, seen) = through(Tap::default(), &from, &accept);
        assert_eq!((b, d), (from, accept.clone()));
        let framed = (connect.len() + data.len()) as u64;
        assert_eq!(seen.frame_bytes, [framed, accept.len() as u64]);
        assert_eq!(seen.connects, vec![[connect.len() as u64, 0]]);
        assert!(!seen.applied);
    }

    #[test]
    fn the_chosen_frame_byte_or_the_next_that_is_not_a_delimiter_is_flipped_or_dropped_and_nothing_else(
    ) {
        let connect = frame(Kind::Connect, 0, &[10, 0, 2, 100, 0x4a, 0x20]);
        let mut from = b"console".to_vec();
        from.extend(&connect);
        let to = frame(Kind::Data, 3, b"data for the device");
        for (direction, damage, at) in [
            (Direction::FromDevice, Damage::Flip, 0),
            (Direction::FromDevice, Damage::Drop, 4),
            (Direction::ToDevice, Damage::Flip, 7),
            (Direction::ToDevice, Damage::Drop, 2),
        ] {
            let fault = Fault {
                direction,
                at,
                damage,
            };
            let (b, d, seen) = through(Tap::damaging(fault), &from, &to);
            assert!(seen.applied, "{fault:?}");
            let (sent, got, skip) = match direction {
                Direction::FromDevice => (&from, b, 7),
                Direction::ToDevice => (&to, d, 0),
            };
            // A delimiter (frame byte 0 here) is passed over for the next byte.
            let mut i = skip + at as usize;
            while sent[i] == 0 {
                i += 1;
            }
            assert_eq!(i == skip + at as usize, at != 0, "{fault:?}");
            let mut expect = sent.clone();
            match damage {
                Damage::Flip => expect[i] ^= 0x10,
                Damage::Drop => {
                    expect.remove(i);
                }
            }
            assert_eq!(got, expect, "{fault:?}");
        }
    }
}
