//! Property tests: no flash contents, however malformed, make any store operation panic or loop.

mod common;

use common::*;
use proptest::prelude::*;
use rota_memflash::MemFlash;
use rota_store::{CommitParams, Cursor, Store};

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// A real store image: committed files, a replaced one, a tombstone, and staged entries.
fn sample() -> Vec<u8> {
    let mut s = formatted(12, b"config");
    stage(&mut s, b"a", &bytes(1, 5000), 1, 1024).unwrap();
    stage(&mut s, b"b", &bytes(2, 100), 1, 1024).unwrap();
    stage(&mut s, b"c", &bytes(3, 0), 1, 1024).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    stage(&mut s, b"a", &bytes(4, 3000), 2, 1024).unwrap();
    s.stage_delete(b"b").unwrap();
    s.commit(Some(b"config 2"), &CommitParams::IMMEDIATE)
        .unwrap();
    stage(&mut s, b"d", &bytes(5, 2000), 1, 1024).unwrap();
    s.stage_begin(b"e", 4000, &sha(b"x"), 1).unwrap();
    s.stage_write(b"e", 0, &bytes(6, 1500)).unwrap();
    s.into_inner().contents().to_vec()
}

/// Recomputes the checksum of every sector that starts with the header magic, so that mutated
/// header fields get past the checksum and reach the field checks.
fn reseal(flash: &mut [u8]) {
    for s in flash.chunks_mut(SECTOR).skip(2) {
        if s.starts_with(b"RFX1") {
            let c = crc32(&s[8..96]);
            s[4..8].copy_from_slice(&c.to_le_bytes());
        }
    }
}

/// Every operation, reading and writing; errors are fine, panics and endless loops are not.
fn exercise(flash: Vec<u8>) {
    let sectors = flash.len() / SECTOR;
    let mut s = Store::new(MemFlash::new(flash));
    for round in 0..2 {
        let mut buf = [0u8; 600];
        let _ = s.config(&mut buf);
        let _ = s.config(&mut buf[..3]);
        for name in [&b"a"[..], b"b", b"c", b"d", b"e", b"ghost"] {
            if let Ok(Some(f)) = s.find(name) {
                let _ = s.read(&f, 0, &mut buf);
                let _ = s.read(&f, f.size.wrapping_sub(1), &mut buf);
                let _ = s.read(&f, u32::MAX, &mut buf);
            }
        }
        let mut c = Cursor::default();
        let mut n = 0;
        while let Ok(Some(f)) = s.next_file(&mut c) {
            let mut off = 0;
            while let Ok(k @ 1..) = s.read(&f, off, &mut buf) {
                off += k as u32;
            }
            n += 1;
            assert!(n <= sectors, "next_file does not terminate");
        }
        let mut c = Cursor::default();
        let mut n = 0;
        while let Ok(Some(_)) = s.next_staged(&mut c) {
            n += 1;
            assert!(n <= sectors, "next_staged does not terminate");
        }
        if round == 1 {
            break;
        }
        // Writing operations over the same garbage.
        let _ = s.bump_boot();
        let _ = stage(&mut s, b"e", &bytes(7, 2500), 3, 700);
        let _ = s.stage_write(b"d", 1024, &[1, 2, 3]);
        let _ = s.stage_finish(b"d");
        let _ = s.stage_delete(b"c");
        let _ = s.stage_rename(b"a", b"z");
        let _ = s.commit(None, &CommitParams::IMMEDIATE);
        let _ = s.gc();
        let _ = s.stage_abort();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_flash_never_panics(seed in any::<u32>(), sectors in 0usize..8, fill in any::<u8>()) {
        let mut f = bytes(seed, sectors * SECTOR);
        // Sometimes mostly erased, so that random bytes are rarer.
        if fill == 0xFF {
            f.iter_mut().step_by(3).for_each(|b| *b = 0xFF);
        }
        exercise(f);
    }

    #[test]
    fn mutated_store_never_panics(
        edits in proptest::collection::vec((any::<u32>(), any::<u8>()), 1..40),
        header_edits in proptest::collection::vec((0usize..12, 0usize..104, any::<u8>()), 0..12),
        seal in any::<bool>(),
    ) {
        let mut f = sample();
        let len = f.len();
        for (at, v) in edits {
            f[at as usize % len] = v;
        }
        for (sector, at, v) in header_edits {
            f[sector * SECTOR + at] = v;
        }
        if seal {
            reseal(&mut f);
        }
        exercise(f);
    }
}

#[test]
fn sealed_header_with_absurd_fields_is_skipped() {
    // A header claiming more sectors than the region, a size that needs other sectors, a name of
    // length 0 or 32: all skipped, and the later extents still found.
    for (at, v) in [
        (88usize, 0xFFu8),
        (44, 0x7F),
        (9, 0),
        (9, 32),
        (8, 3),
        (47, 0xFF),
    ] {
        let mut f = sample();
        let first = 2 * SECTOR;
        f[first + at] = v;
        reseal(&mut f);
        let mut s = Store::new(MemFlash::new(f));
        let v = view(&mut s);
        assert!(!v.files.is_empty());
    }
}
