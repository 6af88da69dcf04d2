//! rota-wire's `DeviceSession` with the server's bytes chosen by the fuzzer, over the in-memory
//! store (`rota_wire::mem::MemStore`) holding two files.
//!
//! Input: records `mode:u8 len:u16le bytes[len]`. `mode & 3`: 0 seals `bytes` (kind, then payload)
//! with the session key of server nonce [7; 16] at the next sequence number; 1 seals it with the
//! Hello's key (a NoUpdate's); 2 sends `bytes` as they are; 3 seals with the session key at a wrong
//! sequence number. `mode >> 4` (when not 0) cuts what is fed into pieces of `7 * (mode >> 4)` bytes.
//! The session starts with a real Hello; a Welcome (kind 0x81, payload sixteen 7s) sealed in mode 0
//! starts the session.
//!
//! Checks: no panic, no endless loop; `feed` never takes more than it is given; every frame the
//! device sends is a whole frame, tagged with the session key in its direction and at consecutive
//! sequence numbers, and decodes as a device message; after `Committed(g)` the store is at `g`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rota_wire::frame::seal;
use rota_wire::mem::MemStore;
use rota_wire::{
    DeviceMsg, DeviceSession, Dir, Frame, Key, Link, Poll, HEADER_LEN, MAX_FRAME, MAX_PAYLOAD,
};

const SECRET: &[u8] = b"supersekrit";
const DEVICE: u32 = 11223344;

fuzz_target!(|data: &[u8]| {
    let mut store = MemStore::default();
    store.files.insert(
        b"app".to_vec(),
        ((0..3000u32).map(|i| i as u8).collect(), 3),
    );
    store
        .files
        .insert(b"log".to_vec(), (b"boot 1\nboot 2\n".to_vec(), 1));
    let nonce = store.reboot();
    let hello_key = Key::hello(SECRET, DEVICE, nonce);
    let key = Key::session(SECRET, DEVICE, nonce, &[7; 16]);
    let mut device = DeviceSession::new(SECRET, Link::Tcp);
    let mut out = vec![0u8; MAX_FRAME];
    {
        let hello = store.check_in(DEVICE, nonce, 7);
        device.hello(&hello, &mut out).unwrap();
    }
    let mut tx_seq = 0u32; // next sequence number the device should use after the Hello (seq 0)
    let mut rx_seq = 0u32;
    let mut over = false;
    let mut frame = vec![0u8; MAX_FRAME];
    let mut rest = data;
    while rest.len() >= 3 && !over {
        let mode = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let wire: &[u8] = match mode & 3 {
            2 => bytes,
            m => {
                let Some((&kind, payload)) = bytes.split_first() else {
                    continue;
                };
                let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
                frame[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
                let (k, seq) = match m {
                    0 => (&key, rx_seq),
                    1 => (&hello_key, rx_seq),
                    _ => (&key, rx_seq.wrapping_add(u32::from(mode >> 2).max(1))),
                };
                rx_seq = rx_seq.wrapping_add(1);
                let n = seal(&mut frame, k, Dir::ToDevice, kind, seq, payload.len()).unwrap();
                &frame[..n]
            }
        };
        let piece = match mode >> 4 {
            0 => usize::MAX,
            p => 7 * usize::from(p),
        };
        let mut left = wire;
        while !left.is_empty() && !over {
            let give = &left[..left.len().min(piece)];
            let took = device.feed(give);
            assert!(took <= give.len());
            left = &left[took..];
            let sent = poll(
                &mut device,
                &mut store,
                &mut out,
                &key,
                &mut tx_seq,
                &mut over,
            );
            if took == 0 && !sent && !over {
                // Nothing taken and nothing to do: the session must be waiting for more of the
                // frame, which `rx_buffer` then has room for.
                assert!(!device.rx_buffer().is_empty(), "feed stalls");
            }
        }
    }
});

/// Polls until the device waits for input or is over; checks what it sends. Returns whether it sent.
fn poll(
    device: &mut DeviceSession<'_>,
    store: &mut MemStore,
    out: &mut [u8],
    key: &Key,
    tx_seq: &mut u32,
    over: &mut bool,
) -> bool {
    let mut sent = false;
    for _ in 0..20_000 {
        match device.poll(store, out) {
            Ok(Poll::Send(n)) => {
                let f = Frame::new_checked(&out[..n]).expect("the device sends whole frames");
                assert_eq!(
                    f.verify(key, Dir::ToServer),
                    Ok(()),
                    "tagged with the session key"
                );
                *tx_seq += 1;
                assert_eq!(f.seq(), *tx_seq, "consecutive sequence numbers");
                DeviceMsg::decode(f.kind(), f.payload()).expect("a device message");
                sent = true;
            }
            Ok(Poll::Receive) => return sent,
            Ok(Poll::Committed(g)) => {
                assert_eq!(store.generation, g);
                *over = true;
                return sent;
            }
            Ok(Poll::NoUpdate) | Err(_) => {
                *over = true;
                return sent;
            }
        }
    }
    panic!("the device sends without end");
}
