//! rota-store mounted over arbitrary flash (rota-memflash), then used.
//!
//! Input: `flags:u8 ops_len:u8 ops[ops_len] rest`. Flags bit 0 clear: `rest` is the region itself
//! (6 sectors; short input is padded with 0xFF, erased flash). Bit 0 set: the region is a store the
//! harness built (files `app` and `init` committed, `tick` half staged) and `rest` is a list of
//! patches `offset:u16le value:u8` written over it. Then each op byte (and the bytes after it as its
//! arguments) is one call: find, stage a whole file (begin, write in pieces, finish), commit, gc,
//! stage_delete, stage_rename, stage_drop, remount, bump_boot, list everything, a stray stage_write,
//! stage_abort, format.
//!
//! Checks: no panic, no call loops; a file this run staged, finished and committed (and did not
//! delete, rename or drop before the commit) is found with its size and reads back byte for byte
//! after every later call, remounts included, until this run touches its name again.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rota_memflash::MemFlash;
use rota_store::{CommitParams, Cursor, Error, Store};
use sha2::{Digest, Sha256};

const SECTOR: usize = 4096;
const REGION: usize = 6 * SECTOR;
const NAMES: [&[u8]; 5] = [b"app", b"init", b"tick", b"log", b"x"];

type Mem = MemFlash<Vec<u8>>;

fn sha(d: &[u8]) -> [u8; 32] {
    Sha256::digest(d).into()
}

fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

fn stage(
    s: &mut Store<Mem>,
    name: &[u8],
    data: &[u8],
    version: u32,
    piece: usize,
) -> Result<(), Error> {
    let resume = s.stage_begin(name, data.len() as u32, &sha(data), version)?;
    let mut off = resume as usize;
    while off < data.len() {
        let n = piece.min(data.len() - off);
        s.stage_write(name, off as u32, &data[off..off + n])?;
        off += n;
    }
    s.stage_finish(name)
}

fn built() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let mut s = Store::new(MemFlash::new(vec![0u8; REGION]));
        s.format(b"config").unwrap();
        stage(&mut s, b"app", &content(1, 3000), 1, 512).unwrap();
        stage(&mut s, b"init", &content(2, 100), 1, 64).unwrap();
        s.commit(None, &CommitParams::IMMEDIATE).unwrap();
        let tick = content(3, 2500);
        s.stage_begin(b"tick", 2500, &sha(&tick), 2).unwrap();
        s.stage_write(b"tick", 0, &tick[..1100]).unwrap();
        s.into_inner().contents().to_vec()
    })
}

struct Args<'a>(&'a [u8]);

impl Args<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn name(&mut self) -> &'static [u8] {
        NAMES[usize::from(self.byte()) % NAMES.len()]
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let flags = data[0];
    let ops_len = usize::from(data[1]).min(data.len() - 2);
    let ops = &data[2..2 + ops_len];
    let rest = &data[2 + ops_len..];
    let region = if flags & 1 == 0 {
        let mut r = vec![0xFF; REGION];
        let n = rest.len().min(REGION);
        r[..n].copy_from_slice(&rest[..n]);
        r
    } else {
        let mut r = built().to_vec();
        for p in rest.chunks_exact(3) {
            let at = usize::from(u16::from_le_bytes([p[0], p[1]])) % REGION;
            r[at] = p[2];
        }
        r
    };
    let mut s = Store::new(MemFlash::new(region));
    // Files this run committed: name -> content. Pending: staged and finished, not yet committed.
    let mut live: BTreeMap<&[u8], Vec<u8>> = BTreeMap::new();
    let mut pending: BTreeMap<&[u8], Vec<u8>> = BTreeMap::new();
    let mut touched: Vec<&[u8]> = Vec::new();
    let mut a = Args(ops);
    while !a.0.is_empty() {
        match a.byte() % 13 {
            0 => {
                let _ = s.find(a.name());
            }
            1 => {
                let name = a.name();
                let len = usize::from(a.byte()) * 24;
                let seed = a.byte();
                let piece = usize::from(a.byte()) + 1;
                let data = content(seed, len);
                pending.remove(name);
                // Staging a name drops its staged entries; a failure part way leaves it uncertain.
                touched.push(name);
                if stage(&mut s, name, &data, u32::from(seed), piece).is_ok() {
                    touched.retain(|n| *n != name);
                    pending.insert(name, data);
                }
            }
            2 => {
                let payload = content(a.byte(), usize::from(a.byte() % 64));
                let p = if payload.len() % 2 == 0 {
                    Some(&payload[..])
                } else {
                    None
                };
                match s.commit(p, &CommitParams::IMMEDIATE) {
                    Ok(_) => {
                        for n in touched.drain(..) {
                            live.remove(n);
                        }
                        live.append(&mut pending);
                    }
                    Err(_) => {
                        // Unknown whether the record reached flash: forget this run's pending.
                        for n in pending.keys().chain(touched.iter()) {
                            live.remove(n);
                        }
                        pending.clear();
                        touched.clear();
                    }
                }
            }
            3 => {
                let _ = s.gc();
            }
            4 => {
                let n = a.name();
                pending.remove(n);
                touched.push(n);
                let _ = s.stage_delete(n);
            }
            5 => {
                let (from, to) = (a.name(), a.name());
                for n in [from, to] {
                    pending.remove(n);
                    touched.push(n);
                }
                let _ = s.stage_rename(from, to);
            }
            6 => {
                let n = a.name();
                pending.remove(n);
                touched.push(n);
                let _ = s.stage_drop(n);
            }
            7 => s = Store::new(s.into_inner()),
            8 => {
                let _ = s.bump_boot();
            }
            9 => {
                let mut c = Cursor::default();
                for _ in 0..REGION / SECTOR + 1 {
                    match s.next_file(&mut c) {
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
                let mut c = Cursor::default();
                for _ in 0..REGION / SECTOR + 1 {
                    match s.next_staged(&mut c) {
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
                let mut buf = [0u8; 64];
                let _ = s.config(&mut buf);
            }
            10 => {
                let n = a.name();
                let off = u32::from(a.byte()) * 100;
                let junk = content(a.byte(), usize::from(a.byte()));
                if s.stage_write(n, off, &junk).is_err() {
                    // A refused write may have dropped the staged file.
                    pending.remove(n);
                    touched.push(n);
                }
            }
            11 => {
                for n in pending.keys() {
                    touched.push(n);
                }
                pending.clear();
                let _ = s.stage_abort();
            }
            _ => {
                if s.format(b"fresh").is_ok() {
                    live.clear();
                    pending.clear();
                    touched.clear();
                }
            }
        }
        for (name, want) in &live {
            let f = s
                .find(name)
                .unwrap_or_else(|e| panic!("committed {:?}: find fails: {e:?}", name))
                .unwrap_or_else(|| panic!("committed {:?} is gone", name));
            assert_eq!(f.size as usize, want.len(), "committed file's size");
            let mut got = vec![0u8; want.len()];
            let mut off = 0;
            while off < got.len() {
                let n = s.read(&f, off as u32, &mut got[off..]).expect("read");
                assert!(n > 0, "short read");
                off += n;
            }
            assert_eq!(&got, want, "committed file reads back");
        }
    }
});
