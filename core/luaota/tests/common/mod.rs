//! Test doubles: an in-memory store, a record builder and a sans-IO driver.
#![allow(dead_code)]

use std::collections::BTreeMap;

use rota_luaota::{Config, Error, NoUpdate, Poll, Refusal, Session, Signer, V1Store};
use sha2::{Digest, Sha256};

pub const SECRET: &[u8] = b"supersekrit";
pub const ID: u32 = 11223344;

/// The store refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreError;

/// Files in RAM; `put` checks the digest it is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStore {
    pub files: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Names put, in order.
    pub puts: Vec<Vec<u8>>,
    /// Refuse every `put`.
    pub fail_put: bool,
}

impl MemStore {
    pub fn with(files: &[(&str, &[u8])]) -> Self {
        MemStore {
            files: files
                .iter()
                .map(|(n, d)| (n.as_bytes().to_vec(), d.to_vec()))
                .collect(),
            ..Default::default()
        }
    }
}

impl V1Store for MemStore {
    type Error = StoreError;

    fn put(&mut self, name: &[u8], data: &[u8], digest: &[u8; 32]) -> Result<(), StoreError> {
        assert_eq!(digest[..], Sha256::digest(data)[..], "digest of the data");
        if self.fail_put {
            return Err(StoreError);
        }
        self.puts.push(name.to_vec());
        self.files.insert(name.to_vec(), data.to_vec());
        Ok(())
    }

    fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
        let data = self.files.remove(from).ok_or(StoreError)?;
        self.files.insert(to.to_vec(), data);
        Ok(())
    }

    fn delete(&mut self, name: &[u8]) -> Result<(), StoreError> {
        self.files.remove(name).map(|_| ()).ok_or(StoreError)
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

    fn read(&mut self, name: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, StoreError> {
        let data = self.files.get(name).ok_or(StoreError)?;
        let rest = data.get(offset as usize..).unwrap_or(&[]);
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// `json tag "\n" payload`, signed with [`SECRET`].
pub fn record(json: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = json.as_bytes().to_vec();
    out.extend_from_slice(&Signer::new(SECRET).tag(json.as_bytes()));
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// A device line `json tag "\n"`.
pub fn line(json: &str) -> Vec<u8> {
    record(json, b"")
}

/// A fresh config for 127.0.0.1:8266.
pub fn config() -> Config {
    Config::new(b"127.0.0.1", 8266).unwrap()
}

/// An owned [`rota_luaota::Outcome`].
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    NoUpdate(NoUpdate),
    Restart(Config),
}

impl From<rota_luaota::Outcome<'_>> for Outcome {
    fn from(o: rota_luaota::Outcome<'_>) -> Self {
        match o {
            rota_luaota::Outcome::NoUpdate(why) => Outcome::NoUpdate(why),
            rota_luaota::Outcome::Restart(c) => Outcome::Restart(c.clone()),
        }
    }
}

/// What a session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Everything the device sent (HI first).
    pub sent: Vec<u8>,
    /// The outcome, `Ok(None)` when the input ran out first.
    pub result: Result<Option<Outcome>, Error<StoreError>>,
    pub refusal: Option<Refusal>,
    pub store: MemStore,
    /// Input bytes consumed.
    pub used: usize,
}

/// Buffer sizes of a run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub line: usize,
    pub file: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            line: rota_luaota::LINE_LEN,
            file: rota_luaota::FILE_LEN,
        }
    }
}

/// Runs a session over `input` (all the server's bytes), feeding pieces of `split(i)` bytes and taking
/// output `out` bytes at a time.
pub fn run_with(
    config: &Config,
    store: MemStore,
    sizes: Sizes,
    input: &[u8],
    mut split: impl FnMut(usize) -> usize,
    out: usize,
) -> Run {
    let mut line = vec![0u8; sizes.line];
    let mut file = vec![0u8; sizes.file];
    let mut s = Session::new(SECRET, ID, config, store, &mut line, &mut file).unwrap();
    let mut sent = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    let mut obuf = vec![0u8; out];
    let result = loop {
        match s.poll() {
            Poll::Transmit => match s.transmit(&mut obuf) {
                Ok(n) => sent.extend_from_slice(&obuf[..n]),
                Err(e) => break Err(e),
            },
            Poll::Receive => {
                if pos == input.len() {
                    break Ok(None);
                }
                let n = split(i).clamp(1, input.len() - pos);
                i += 1;
                match s.feed(&input[pos..pos + n]) {
                    Ok(used) => pos += used,
                    Err(e) => break Err(e),
                }
            }
            Poll::Done => break Ok(s.outcome().map(Outcome::from)),
            Poll::Aborted => unreachable!("errors are returned first"),
        }
    };
    Run {
        sent,
        result,
        refusal: s.refusal(),
        used: pos,
        store: s.into_store(),
    }
}

/// Runs with the default sizes, the input in one piece, output 1460 bytes at a time.
pub fn run(input: &[u8]) -> Run {
    run_with(
        &config(),
        MemStore::default(),
        Sizes::default(),
        input,
        |_| usize::MAX,
        1460,
    )
}

/// The HI line a fresh device sends.
pub fn hi_line(config: &Config) -> Vec<u8> {
    let mut buf = [0u8; 1024];
    let n = rota_luaota::render_hi(&mut buf, ID, config, None).unwrap();
    line(std::str::from_utf8(&buf[..n]).unwrap())
}

/// A deterministic xorshift generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
