//! rota-wire's `ServerSession` with the device's bytes chosen by the fuzzer, over a plan with every
//! kind of step: send a 5000-byte file, drop, delete, rename, upload 3000 bytes, commit with a config.
//!
//! Input: records `mode:u8 len:u16le bytes[len]`. `mode & 3`: 0 or 1 seals `bytes` (kind, then
//! payload) with the session key at the next sequence number; 2 passes `bytes` as they are; 3 seals
//! at a wrong sequence number. Before each record, the server sends what it may.
//!
//! Checks: no panic, no endless transmit; every frame the server sends is whole, tagged with the
//! session key towards the device, at consecutive sequence numbers, and decodes as a server message;
//! events are consistent with the plan (a Ready or Ack within the file, uploads contiguous and within
//! the requested range, steps only move forward); `is_done` only after `Committed`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rota_wire::frame::seal;
use rota_wire::msg::Hello;
use rota_wire::server::{Event, Outgoing};
use rota_wire::{
    sha256, Dir, Frame, Key, ServerMsg, ServerSession, Step, HEADER_LEN, MAX_FRAME, MAX_PAYLOAD,
};

const SECRET: &[u8] = b"supersekrit";
const DEVICE: u32 = 11223344;
const FILE: usize = 5000;

fuzz_target!(|data: &[u8]| {
    let file: Vec<u8> = (0..FILE).map(|i| (i * 31) as u8).collect();
    let steps = [
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
        protocol: 2,
        app_version: 1,
        config: 0,
        files: Default::default(),
        staged: Default::default(),
        heap: Default::default(),
    };
    let key = Key::session(SECRET, DEVICE, 5, &[9; 16]);
    let mut out = vec![0u8; MAX_FRAME];
    let (mut s, _) = ServerSession::welcome(SECRET, &hello, [9; 16], &steps, &mut out).unwrap();
    let mut tx_seq = 0u32;
    let mut rx_seq = 1u32;
    let mut upload_next = 100u32;
    let mut step = 0usize;
    let mut frame = vec![0u8; MAX_FRAME];
    let mut rest = data;
    while rest.len() >= 3 {
        transmit(&mut s, &mut out, &key, &mut tx_seq);
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
                rx_seq.wrapping_add(u32::from(mode >> 2).max(1))
            } else {
                rx_seq
            };
            rx_seq = rx_seq.wrapping_add(1);
            let n = seal(&mut frame, &key, Dir::ToServer, kind, seq, payload.len()).unwrap();
            &frame[..n]
        };
        let was_done = s.is_done();
        match s.handle(wire) {
            Ok(Event::Ready { step: i, offset }) => {
                assert_eq!(i, 0);
                assert!(offset as usize <= FILE);
            }
            Ok(Event::Acked { step: i, offset }) => {
                assert_eq!(i, 0);
                assert!(offset as usize <= FILE);
            }
            Ok(Event::Staged { step: i }) => assert_eq!(i, 0),
            Ok(Event::Uploaded {
                step: i,
                offset,
                bytes,
                last,
            }) => {
                assert_eq!(i, 4);
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

fn transmit(s: &mut ServerSession<'_>, out: &mut [u8], key: &Key, tx_seq: &mut u32) {
    for _ in 0..200 {
        match s.poll_transmit(out) {
            Ok(Some(n)) => {
                let f = Frame::new_checked(&out[..n]).expect("the server sends whole frames");
                assert_eq!(f.verify(key, Dir::ToDevice), Ok(()));
                *tx_seq += 1;
                assert_eq!(f.seq(), *tx_seq, "consecutive sequence numbers");
                ServerMsg::decode(f.kind(), f.payload()).expect("a server message");
            }
            Ok(None) | Err(_) => return,
        }
    }
    panic!("the server transmits without end");
}
