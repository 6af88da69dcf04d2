//! rota-luaota's device side (the v1 record layer, the JSON parser, the session) with the server's
//! bytes chosen by the fuzzer, over an in-memory `V1Store` holding two files.
//!
//! Input: records `mode:u8 len:u16le bytes[len]`. `mode & 1 == 0`: `bytes` up to its first line
//! feed is a command's JSON, the rest its payload; it is signed (`json tag "\n" payload`) with the
//! session's secret. `mode & 1 == 1`: `bytes` go as they are. The whole stream is then fed in pieces
//! of `1 + (first byte of the input) % 64` bytes, and the device transmits into a buffer of
//! `1 + (second byte) * 8` bytes.
//!
//! Checks: no panic, no endless loop; `feed` never takes more than it is given and the session
//! always makes progress; the store only gets files whose digest is right; the device's first
//! line is a record signed with the secret; errors abort (polls say Aborted, no outcome).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use rota_luaota::{Config, Poll, Record, Session, Signer, V1Store, FILE_LEN, LINE_LEN};
use sha2::{Digest, Sha256};

const SECRET: &[u8] = b"supersekrit";

#[derive(Default)]
struct Store {
    files: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl V1Store for Store {
    type Error = ();

    fn put(&mut self, name: &[u8], data: &[u8], digest: &[u8; 32]) -> Result<(), ()> {
        assert_eq!(
            digest[..],
            Sha256::digest(data)[..],
            "put with a wrong digest"
        );
        assert!(data.len() <= FILE_LEN);
        if name.starts_with(b"fail") {
            return Err(());
        }
        self.files.insert(name.to_vec(), data.to_vec());
        Ok(())
    }

    fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), ()> {
        let data = self.files.remove(from).ok_or(())?;
        self.files.insert(to.to_vec(), data);
        Ok(())
    }

    fn delete(&mut self, name: &[u8]) -> Result<(), ()> {
        self.files.remove(name).map(|_| ()).ok_or(())
    }

    fn size(&mut self, name: &[u8]) -> Option<u32> {
        self.files.get(name).map(|d| d.len() as u32)
    }

    fn list(&mut self, index: usize) -> Option<(&[u8], u32)> {
        self.files
            .iter()
            .nth(index)
            .map(|(n, d)| (n.as_slice(), d.len() as u32))
    }

    fn read(&mut self, name: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, ()> {
        let data = self.files.get(name).ok_or(())?;
        let rest = data.get(offset as usize..).unwrap_or(&[]);
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let piece = 1 + usize::from(data[0]) % 64;
    let out_len = 1 + usize::from(data[1]) * 8;
    let signer = Signer::new(SECRET);
    let mut input = Vec::new();
    let mut rest = &data[2..];
    while rest.len() >= 3 {
        let mode = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        if mode & 1 == 1 {
            input.extend_from_slice(bytes);
        } else {
            let lf = bytes
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(bytes.len());
            let json = &bytes[..lf];
            input.extend_from_slice(json);
            input.extend_from_slice(&signer.tag(json));
            input.push(b'\n');
            input.extend_from_slice(bytes.get(lf + 1..).unwrap_or_default());
        }
    }
    // Also the record layer on its own.
    if let Ok(r) = Record::parse_segment(&input) {
        let _ = r.verify(&signer);
        let _ = r.payload_of(r.payload().len() as u64);
        assert!(r.json().len() + r.tag().len() < input.len());
    }
    let _ = Record::parse_line(&input);

    let mut store = Store::default();
    store
        .files
        .insert(b"init.lua".to_vec(), b"print(1)\n".repeat(50));
    store
        .files
        .insert(b"app".to_vec(), (0..2000u32).map(|i| i as u8).collect());
    let config = Config::new(b"127.0.0.1", 8266).unwrap();
    let mut line = vec![0u8; LINE_LEN];
    let mut file = vec![0u8; FILE_LEN];
    let mut s = Session::new(SECRET, 11223344, &config, store, &mut line, &mut file).unwrap();
    let mut out = vec![0u8; out_len];
    let mut sent = Vec::new();
    let mut pos = 0;
    for _ in 0..1_000_000 {
        match s.poll() {
            Poll::Transmit => match s.transmit(&mut out) {
                Ok(n) => {
                    assert!(n <= out.len());
                    sent.extend_from_slice(&out[..n]);
                }
                Err(_) => {
                    assert_eq!(s.poll(), Poll::Aborted);
                    break;
                }
            },
            Poll::Receive => {
                if pos == input.len() {
                    break;
                }
                let give = &input[pos..(pos + piece).min(input.len())];
                match s.feed(give) {
                    Ok(used) => {
                        assert!(used <= give.len());
                        assert!(
                            used > 0 || s.poll() != Poll::Receive,
                            "feed makes no progress"
                        );
                        pos += used;
                    }
                    Err(_) => {
                        assert_eq!(s.poll(), Poll::Aborted);
                        assert!(s.outcome().is_none());
                        break;
                    }
                }
            }
            Poll::Done => {
                assert!(s.outcome().is_some());
                break;
            }
            Poll::Aborted => panic!("aborted without an error"),
        }
    }
    // The HI: the first line the device sent, signed.
    let lf = sent
        .iter()
        .position(|&b| b == b'\n')
        .expect("the HI is sent whole");
    let hi = Record::parse_line(&sent[..=lf]).expect("the HI is a record");
    hi.verify(&signer).expect("the HI is signed");
});
