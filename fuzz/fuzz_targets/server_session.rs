//! rota-wire's `ServerSession` with the device's bytes chosen by the fuzzer, over a plan with every
//! kind of step: a release, send a 5000-byte file, drop, delete, rename, upload 3000 bytes, commit
//! with a config.
//!
//! Input: records `mode:u8 len:u16le bytes[len]`. `mode & 3`: 0 or 1 seals `bytes` (kind, then
//! payload) with the session key at the next sequence number; 2 passes `bytes` as they are; 3 seals
//! at a wrong sequence number: `k = max(mode >> 2, 1)` ahead, or `256 * k / 4` ahead when `k` is a
//! multiple of 4 (the right low byte, the wrong number). The session starts with Welcome and List
//! written; the device's `Files` is answered with the plan, or with NoUpdate when its record's mode
//! was 1. Before each record, the server sends what it may.
//!
//! Checks: no panic, no endless transmit; every frame the server sends is whole, tagged with the
//! session key towards the device, at consecutive sequence numbers, and decodes as a server message;
//! nothing is sent before the device's files came; events are consistent with the plan (a Ready or
//! Ack within the file, uploads contiguous and within the requested range, steps only move forward,
//! `Files` once and first); `is_done` only after `Committed` or the NoUpdate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rota_wire::frame::seal;
use rota_wire::msg::{ConfigVersion, Hello};
use rota_wire::server::{Event, Outgoing};
use rota_wire::{
    sha256, Dir, Frame, Header, Key, ServerMsg, ServerSession, Step, HEADER_LEN, MAX_FRAME,
    MAX_PAYLOAD,
};

const SECRET: &[u8] = b"supersekrit";
const DEVICE: u32 = 11223344;
const FILE: usize = 5000;

fuzz_target!(|data: &[u8]| {
    let file: Vec<u8> = (0..FILE).map(|i| (i * 31) as u8).collect();
    let signature = [0x5e; 64];
    let steps = [
        Step::Release(b"a manifest", &signature),
        Step::Send(Outgoing {
            name: b"app",
            version: 2,
            digest: sha256(&file),
            data: &file,
        }),
        Step::Drop(b"old"),
        Step::Delete(b"tmp"),
        Step::Rename(b"a", b"b"),
        Step::Upload {
            name: b"log",
            offset: 100,
            len: 3000,
        },
        Step::Commit(Some(b"\x01\x02")),
    ];
    let hello = Hello {
        device_id: DEVICE,
        nonce: 5,
        isa: 0,
        abi: 0,
        flags: 0,
        config: ConfigVersion(0),
        state: [0; 16],
        security_version: 0,
        staged: Default::default(),
        rollback: None,
        heap: Default::default(),
    };
    let key = Key::session(SECRET, DEVICE, 5, &[9; 16]);
    let mut out = vec![0u8; 2 * MAX_FRAME];
    let (mut s, n) = ServerSession::welcome(SECRET, &hello, [9; 16], &mut out).unwrap();
    // Welcome (seq 0) and List (seq 1), one write.
    let w = Header::parse(&out).unwrap().frame_len();
    check_sent(&out[..w], &key, 0, |m| matches!(m, ServerMsg::Welcome(_)));
    check_sent(&out[w..n], &key, 1, |m| matches!(m, ServerMsg::List));
    let mut tx_seq = 1u32;
    let mut rx_seq = 1u32;
    let mut upload_next = 100u32;
    let mut step = 0usize;
    let mut listed = false;
    let mut frame = vec![0u8; MAX_FRAME];
    let mut rest = data;
    while rest.len() >= 3 {
        let sent = transmit(&mut s, &mut out, &key, &mut tx_seq);
        assert!(listed || sent == 0, "nothing is sent before the plan");
        let mode = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let wire: &[u8] = if mode & 3 == 2 {
            bytes
        } else {
            let Some((&kind, payload)) = bytes.split_first() else {
                continue;
            };
            let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
            frame[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
            let seq = if mode & 3 == 3 {
                let k = u32::from(mode >> 2).max(1);
                rx_seq.wrapping_add(if k % 4 == 0 { 256 * k / 4 } else { k })
            } else {
                rx_seq
            };
            rx_seq = rx_seq.wrapping_add(1);
            let n = seal(&mut frame, &key, Dir::ToServer, kind, seq, payload.len()).unwrap();
            &frame[..n]
        };
        let was_done = s.is_done();
        match s.handle(wire) {
            Ok(Event::Files(_)) => {
                assert!(!listed, "Files only once");
                listed = true;
                if mode & 3 == 1 {
                    let n = s.no_update(&mut out).unwrap();
                    tx_seq += 1;
                    check_sent(&out[..n], &key, tx_seq, |m| {
                        matches!(m, ServerMsg::NoUpdate)
                    });
                    assert!(s.is_done());
                } else {
                    s.plan(&steps).unwrap();
                    assert!(!s.is_done());
                }
                assert!(s.plan(&steps).is_err() && s.no_update(&mut out).is_err());
            }
            Ok(Event::Ready { step: i, offset }) => {
                assert!(listed);
                assert_eq!(i, 1);
                assert!(offset as usize <= FILE);
            }
            Ok(Event::Acked { step: i, offset }) => {
                assert_eq!(i, 1);
                assert!(offset as usize <= FILE);
            }
            Ok(Event::Staged { step: i }) => assert_eq!(i, 1),
            Ok(Event::Uploaded {
                step: i,
                offset,
                bytes,
                last,
            }) => {
                assert_eq!(i, 5);
                assert_eq!(offset, upload_next, "uploads are contiguous");
                upload_next += bytes.len() as u32;
                assert!(upload_next <= 3100, "upload past the requested range");
                assert!(last || upload_next < 3100);
            }
            Ok(Event::Committed { .. }) => assert!(s.is_done()),
            Err(_) => {}
        }
        assert!(!was_done || s.is_done());
        assert!(s.step() >= step, "steps only move forward");
        step = s.step();
        assert!(step < steps.len());
        if s.is_done() {
            assert!(s.handle(wire).is_err());
        }
    }
});

/// Checks one frame the server sent: whole, tagged with `key` towards the device as frame `seq`, a
/// server message that `expected` accepts.
fn check_sent(frame: &[u8], key: &Key, seq: u32, expected: impl Fn(&ServerMsg<'_>) -> bool) {
    let f = Frame::new_checked(frame).expect("the server sends whole frames");
    assert_eq!(f.verify(key, Dir::ToDevice, seq), Ok(()));
    assert_eq!(f.seq(), seq as u8, "consecutive sequence numbers");
    let msg = ServerMsg::decode(f.kind(), f.payload()).expect("a server message");
    assert!(expected(&msg), "{msg:?}");
}

/// Sends what the server may; returns how many frames.
fn transmit(s: &mut ServerSession<'_>, out: &mut [u8], key: &Key, tx_seq: &mut u32) -> usize {
    for sent in 0..200 {
        match s.poll_transmit(out) {
            Ok(Some(n)) => {
                *tx_seq += 1;
                check_sent(&out[..n], key, *tx_seq, |_| true);
            }
            Ok(None) | Err(_) => return sent,
        }
    }
    panic!("the server transmits without end");
}
