//! rota-serial-link's frame decoder (the line shared by console text and frames).
//!
//! Input: the bytes of the line.
//!
//! Checks: no panic; console bytes are never 0x00; every frame the decoder accepts has a valid
//! kind and payload length, re-encodes (`encode`) to a line that a fresh decoder reads back as the
//! same frame and nothing else, and that line is what `encode` writes for it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rota_serial_link::frame::{encode, Decoder, Kind, Token, MAX_LINE, MAX_PAYLOAD};

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new();
    let mut line = [0u8; MAX_LINE];
    for &b in data {
        match d.push(b) {
            Ok(Token::Console(c)) => assert_ne!(c, 0, "a 0x00 console byte"),
            Ok(Token::Pending) => {}
            Ok(Token::Frame) => {
                let f = d.frame();
                let len = f.payload.len();
                let ok = match f.kind {
                    Kind::Connect => len == 6,
                    Kind::Accept => len == 0,
                    Kind::Data => (1..=MAX_PAYLOAD).contains(&len),
                    Kind::Credit => len == 2,
                    Kind::Close => len == 1,
                };
                assert!(ok, "accepted {:?} with {len} payload bytes", f.kind);
                let n = encode(f.kind, f.seq, f.payload, &mut line).expect("re-encodes");
                let mut fresh = Decoder::new();
                let mut frames = 0;
                for (i, &c) in line[..n].iter().enumerate() {
                    match fresh.push(c) {
                        Ok(Token::Frame) => {
                            assert_eq!(i, n - 1, "the frame ends at its last delimiter");
                            assert_eq!(fresh.frame(), f, "re-encoded frame reads back");
                            frames += 1;
                        }
                        Ok(Token::Pending) => {}
                        other => panic!("re-encoded line gave {other:?}"),
                    }
                }
                assert_eq!(frames, 1);
            }
            Err(_) => assert!(!d.in_frame(), "an error leaves the decoder outside a frame"),
        }
    }
});
