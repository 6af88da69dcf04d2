//! rota-wire's v2 frame and messages.
//!
//! Input: a frame as received (header, payload, tag); if it parses as a header but the tag does not
//! verify, the payload is also tried as a message of its kind.
//!
//! Checks: no panic; an accepted frame is exactly `frame_len` bytes and re-seals (same key, kind,
//! sequence number (the header's low byte, plus 256 times the frame's first payload byte), payload)
//! to the same header, with a tag that holds for that whole number only; its payload decodes, as a
//! device or a server message, to one
//! that re-encodes (the hand-written encoders against the postcard decoders, and the hand-written
//! server decoder against postcard's encoder) to a payload that decodes equal; `peek_hello` and
//! `open_hello` never panic, and accept only what `Frame::new_checked` accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rota_wire::frame::seal;
use rota_wire::server::{open_hello, peek_hello};
use rota_wire::{
    DeviceMsg, Dir, Frame, Header, Key, ServerMsg, HEADER_LEN, MAX_FRAME, MAX_PAYLOAD,
};

fuzz_target!(|data: &[u8]| {
    let header = Header::parse(data);
    let frame = Frame::new_checked(data);
    if let Ok(f) = &frame {
        let h = header.expect("a frame has a header");
        assert_eq!(f.header(), h);
        assert_eq!(data.len(), h.frame_len());
        assert_eq!(h.to_bytes(), data[..HEADER_LEN]);
        let key = Key::new(&[0x5a; 32]);
        // The whole sequence number is implicit: the header has its low byte.
        let high = f.payload().first().copied().unwrap_or_default();
        let seq = u32::from(f.seq()) | u32::from(high) << 8;
        let _ = f.verify(&key, Dir::ToServer, seq);
        let mut out = vec![0u8; MAX_FRAME];
        let n = f.payload().len();
        out[HEADER_LEN..HEADER_LEN + n].copy_from_slice(f.payload());
        let len = seal(&mut out, &key, Dir::ToDevice, f.kind(), seq, n).unwrap();
        assert_eq!(&out[..HEADER_LEN], &data[..HEADER_LEN]);
        assert_eq!(len, data.len());
        let sealed = Frame::new_checked(&out[..len]).unwrap();
        assert_eq!(sealed.seq(), f.seq());
        assert_eq!(sealed.verify(&key, Dir::ToDevice, seq), Ok(()));
        assert!(sealed.verify(&key, Dir::ToServer, seq).is_err());
        assert!(
            sealed
                .verify(&key, Dir::ToDevice, seq.wrapping_add(256))
                .is_err(),
            "the tag covers the whole sequence number"
        );
        messages(f.kind(), f.payload());
    } else if let Ok(h) = header {
        let end = (HEADER_LEN + usize::from(h.len)).min(data.len());
        messages(h.kind, &data[HEADER_LEN..end]);
    } else if let Some((&kind, payload)) = data.split_first() {
        messages(kind, payload);
    }
    if peek_hello(data).is_ok() || open_hello(data, b"secret").is_ok() {
        assert!(frame.is_ok());
    }
});

fn messages(kind: u8, payload: &[u8]) {
    let mut buf = [0u8; MAX_PAYLOAD];
    if let Ok(m) = DeviceMsg::decode(kind, payload) {
        assert_eq!(m.kind(), kind);
        if let Ok(n) = m.encode(&mut buf) {
            let again = DeviceMsg::decode(kind, &buf[..n]);
            assert_eq!(
                again.as_ref(),
                Ok(&m),
                "device message re-encodes to another"
            );
        }
    }
    if let Ok(m) = ServerMsg::decode(kind, payload) {
        assert_eq!(m.kind(), kind);
        if let Ok(n) = m.encode(&mut buf) {
            let again = ServerMsg::decode(kind, &buf[..n]);
            assert_eq!(
                again.as_ref(),
                Ok(&m),
                "server message re-encodes to another"
            );
        }
    }
}
