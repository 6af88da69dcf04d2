//! One test per store operation, with the typed errors each must give.

mod common;

use common::*;
use embedded_storage::nor_flash::NorFlashErrorKind;
use rota_memflash::MemFlash;
use rota_store::{
    Access, CommitParams, Cursor, Error, Failure, Store, CHUNK, CONFIG_MAX, NAME_MAX,
};

#[test]
fn format_config_bump_and_write() {
    let mut s = formatted(8, b"P0");
    let mut buf = [0u8; 16];
    let i = s.config(&mut buf).unwrap();
    assert_eq!((i.seq, i.generation, i.boot_count, i.len), (1, 0, 0, 2));
    assert_eq!(&buf[..2], b"P0");
    assert_eq!(s.bump_boot().unwrap(), 1);
    assert_eq!(s.bump_boot().unwrap(), 2);
    s.write_config(b"payload one").unwrap();
    let i = s.config(&mut buf).unwrap();
    assert_eq!((i.seq, i.generation, i.boot_count, i.len), (4, 0, 2, 11));
    assert_eq!(&buf[..11], b"payload one");
    // A short buffer gets a prefix, the full length is reported.
    let mut small = [0u8; 3];
    assert_eq!(s.config(&mut small).unwrap().len, 11);
    assert_eq!(&small, b"pay");
    let big = [7u8; CONFIG_MAX];
    s.write_config(&big).unwrap();
    let mut buf = [0u8; CONFIG_MAX];
    assert_eq!(s.config(&mut buf).unwrap().len, CONFIG_MAX);
    assert_eq!(buf, big);
    assert_eq!(
        s.write_config(&[0; CONFIG_MAX + 1]),
        Err(Error::PayloadTooLong)
    );
    assert_eq!(s.format(&[0; CONFIG_MAX + 1]), Err(Error::PayloadTooLong));
    // Unaligned payload lengths round-trip through the keep-payload copy too.
    s.write_config(b"abcde").unwrap();
    s.bump_boot().unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(s.config(&mut buf).unwrap().len, 5);
    assert_eq!(&buf[..5], b"abcde");
}

#[test]
fn unformatted_or_tiny_flash_has_no_config() {
    let mut s = Store::new(MemFlash::new(vec![0xFFu8; 8 * SECTOR]));
    assert_eq!(s.config(&mut []), Err(Error::NoConfig));
    assert_eq!(s.find(b"x"), Err(Error::NoConfig));
    assert_eq!(s.bump_boot(), Err(Error::NoConfig));
    assert_eq!(
        s.commit(None, &CommitParams::IMMEDIATE),
        Err(Error::NoConfig)
    );
    let mut tiny = Store::new(MemFlash::new(vec![0xFFu8; 2 * SECTOR]));
    assert_eq!(tiny.format(b""), Err(Error::NoSpace));
    assert_eq!(tiny.config(&mut []), Err(Error::NoConfig));
}

#[test]
fn corrupt_config_copy_falls_back_to_the_other() {
    let mut s = formatted(8, b"old");
    s.write_config(b"new").unwrap(); // seq 2, in sector 1
    let mut buf = [0u8; 8];
    assert_eq!(s.config(&mut buf).unwrap().seq, 2);
    s.flash().contents_mut()[SECTOR + 21] ^= 0x01; // payload byte of the newer copy
    let i = s.config(&mut buf).unwrap();
    assert_eq!((i.seq, &buf[..i.len]), (1, &b"old"[..]));
    // The next write replaces the damaged copy, not the good one.
    s.bump_boot().unwrap();
    let i = s.config(&mut buf).unwrap();
    assert_eq!((i.seq, i.boot_count, &buf[..i.len]), (2, 1, &b"old"[..]));
    // Damage both: no config.
    s.flash().contents_mut()[4] ^= 0x80;
    s.flash().contents_mut()[SECTOR + 4] ^= 0x80;
    assert_eq!(s.config(&mut buf), Err(Error::NoConfig));
}

#[test]
fn names_are_checked() {
    let mut s = formatted(8, b"");
    let long = [b'a'; NAME_MAX + 1];
    let d = sha(b"");
    assert_eq!(s.stage_begin(&long, 0, &d, 1), Err(Error::NameTooLong));
    assert_eq!(s.stage_begin(b"", 0, &d, 1), Err(Error::BadName));
    assert_eq!(s.stage_begin(b"a\0b", 0, &d, 1), Err(Error::BadName));
    assert_eq!(s.find(&long), Err(Error::NameTooLong));
    assert_eq!(s.find(b""), Err(Error::BadName));
    assert_eq!(s.stage_delete(b""), Err(Error::BadName));
    assert_eq!(s.stage_rename(b"a", b"a"), Err(Error::BadName));
    // The longest name works.
    let name = [b'z'; NAME_MAX];
    stage(&mut s, &name, b"hi", 1, 64).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(s.find(&name).unwrap().unwrap().name.as_bytes(), &name);
}

#[test]
fn file_larger_than_region_is_too_large() {
    let mut s = formatted(8, b"");
    let d = [0; 32];
    // 6 extent sectors: 24 KB minus the header area fits, 24 KB does not.
    assert_eq!(s.stage_begin(b"f", 6 * 4096, &d, 1), Err(Error::TooLarge));
    assert_eq!(s.stage_begin(b"f", u32::MAX, &d, 1), Err(Error::TooLarge));
    let max = 6 * 4096 - rota_store::header_area(6 * 4096);
    let data = bytes(1, max as usize);
    stage(&mut s, b"f", &data, 1, 4096).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(view(&mut s), view_of(&[(b"f", 1, &data)], b""));
}

#[test]
fn staged_file_is_invisible_until_commit_then_live() {
    let mut s = formatted(16, b"P0");
    let data = bytes(2, 5000);
    assert_eq!(stage(&mut s, b"app", &data, 7, 1000).unwrap(), 0);
    assert_eq!(s.find(b"app").unwrap(), None);
    assert_eq!(s.next_file(&mut Cursor::default()).unwrap(), None);
    let st = staged_all(&mut s);
    assert_eq!(st.len(), 1);
    assert_eq!(
        (st[0].size, st[0].version, st[0].done, st[0].verified),
        (5000, 7, 5000, true)
    );
    assert_eq!(st[0].digest, sha(&data));
    let staged_at = st[0].data_offset;
    assert_eq!(
        &s.flash().contents()[staged_at as usize..][..5000],
        &data[..],
        "a staged file's data_offset is where its bytes are"
    );
    assert_eq!(s.commit(Some(b"P1"), &CommitParams::IMMEDIATE).unwrap(), 1);
    assert!(staged_all(&mut s).is_empty());
    assert_eq!(view(&mut s), view_of(&[(b"app", 7, &data)], b"P1"));
    let f = s.find(b"app").unwrap().unwrap();
    assert_eq!(f.generation, 1);
    assert_eq!(f.data_offset % rota_store::DATA_ALIGN, 0);
    assert_eq!(f.data_offset, staged_at, "a commit does not move a file");
    // data_offset is where the bytes are.
    let raw = &s.flash().contents()[f.data_offset as usize..][..5000];
    assert_eq!(raw, &data[..]);
    // read clamps.
    let mut buf = [0u8; 100];
    assert_eq!(s.read(&f, 4950, &mut buf).unwrap(), 50);
    assert_eq!(&buf[..50], &data[4950..]);
    assert_eq!(s.read(&f, 6000, &mut buf).unwrap(), 0);
}

#[test]
fn writes_must_be_in_order() {
    let mut s = formatted(16, b"");
    let data = bytes(3, 3000);
    assert_eq!(s.stage_write(b"f", 0, &data), Err(Error::NotFound));
    s.stage_begin(b"f", 3000, &sha(&data), 1).unwrap();
    assert_eq!(s.stage_write(b"f", 1, &data[1..10]), Err(Error::OutOfOrder));
    s.stage_write(b"f", 0, &data[..100]).unwrap();
    assert_eq!(s.stage_write(b"f", 0, &data[..100]), Err(Error::OutOfOrder));
    assert_eq!(
        s.stage_write(b"f", 101, &data[101..200]),
        Err(Error::OutOfOrder)
    );
    s.stage_write(b"f", 100, &data[100..2100]).unwrap();
    assert_eq!(s.stage_finish(b"f"), Err(Error::Incomplete));
    assert_eq!(
        s.stage_write(b"f", 2100, &data[..1000]),
        Err(Error::TooLarge)
    );
    // A new Store value knows only the flash progress (2 chunks): earlier or later chunks are refused.
    let mut s = Store::new(s.into_inner());
    assert_eq!(
        s.stage_write(b"f", 1024, &data[1024..1100]),
        Err(Error::OutOfOrder)
    );
    assert_eq!(s.stage_write(b"f", 3072, &[]), Err(Error::OutOfOrder));
    s.stage_write(b"f", 2100, &data[2100..]).unwrap();
    s.stage_finish(b"f").unwrap();
    assert_eq!(s.stage_write(b"f", 3000, &[1]), Err(Error::OutOfOrder));
    s.stage_write(b"f", 3000, &[]).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(view(&mut s), view_of(&[(b"f", 1, &data)], b""));
}

#[test]
fn small_pieces_through_a_new_store_per_call() {
    // The resident core creates a Store per service call: sub-chunk pieces must still work.
    let mut flash = formatted(16, b"").into_inner();
    let data = bytes(4, 2500);
    let d = sha(&data);
    assert_eq!(
        Store::new(&mut flash)
            .stage_begin(b"f", 2500, &d, 1)
            .unwrap(),
        0
    );
    for (i, piece) in data.chunks(333).enumerate() {
        Store::new(&mut flash)
            .stage_write(b"f", (i * 333) as u32, piece)
            .unwrap();
    }
    Store::new(&mut flash).stage_finish(b"f").unwrap();
    let mut s = Store::new(flash);
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(view(&mut s), view_of(&[(b"f", 1, &data)], b""));
}

/// A flash that counts the reads of the config record's two sectors.
struct ConfigReads(Mem, usize);

impl embedded_storage::nor_flash::ErrorType for ConfigReads {
    type Error = rota_memflash::MemFlashError;
}

impl embedded_storage::nor_flash::ReadNorFlash for ConfigReads {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        if offset < 2 * SECTOR as u32 {
            self.1 += 1;
        }
        self.0.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl embedded_storage::nor_flash::NorFlash for ConfigReads {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.0.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.write(offset, bytes)
    }
}

#[test]
fn the_staged_file_carried_between_store_values_is_written_without_a_lookup() {
    let data = bytes(5, 5000);
    let other = bytes(6, 100);
    let mut s = formatted(16, b"a config");
    stage(&mut s, b"other", &other, 1, 100).unwrap();
    let mut flash = ConfigReads(s.into_inner(), 0);
    let mut s = Store::new(&mut flash);
    s.stage_begin(b"f", 5000, &sha(&data), 1).unwrap();
    let mut staging = s.staging();
    assert!(staging.is_some());
    flash.1 = 0;
    for (i, piece) in data.chunks(333).enumerate() {
        let mut s = Store::with_staging(&mut flash, staging);
        let at = (i * 333) as u32;
        if i == 4 {
            // The exact position is known: neither a repeat nor a skip inside the chunk is taken.
            assert_eq!(s.stage_write(b"f", at - 1, piece), Err(Error::OutOfOrder));
            assert_eq!(s.stage_write(b"f", at + 1, piece), Err(Error::OutOfOrder));
        }
        s.stage_write(b"f", at, piece).unwrap();
        staging = s.staging();
    }
    assert_eq!(flash.1, 0, "the config record was read");
    Store::with_staging(&mut flash, staging)
        .stage_finish(b"f")
        .unwrap();
    let mut s = Store::new(flash.0);
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(
        view(&mut s),
        view_of(&[(b"other", 1, &other), (b"f", 1, &data)], b"a config")
    );
}

#[test]
fn a_staged_file_carried_over_is_checked_against_flash() {
    let mut flash = formatted(16, b"").into_inner();
    let data = bytes(7, 3000);
    let d = sha(&data);
    let mut s = Store::new(&mut flash);
    s.stage_begin(b"f", 3000, &d, 1).unwrap();
    s.stage_write(b"f", 0, &data[..1500]).unwrap();
    let staging = s.staging();
    // Dropped through another Store value: not written.
    Store::new(&mut flash).stage_drop(b"f").unwrap();
    let mut s = Store::with_staging(&mut flash, staging);
    assert_eq!(
        s.stage_write(b"f", 1500, &data[1500..]),
        Err(Error::NotFound)
    );
    assert!(s.staging().is_none());
    // Staged again (the same header in the same sectors, progress 0): the old position is refused.
    let mut s = Store::new(&mut flash);
    assert_eq!(s.stage_begin(b"f", 3000, &d, 1).unwrap(), 0);
    let mut s = Store::with_staging(&mut flash, staging);
    assert_eq!(
        s.stage_write(b"f", 1500, &data[1500..]),
        Err(Error::OutOfOrder)
    );
    // Completed through another Store value: a further byte is refused.
    let mut s = Store::new(&mut flash);
    s.stage_write(b"f", 0, &data).unwrap();
    let staging = s.staging();
    s.stage_finish(b"f").unwrap();
    let mut s = Store::with_staging(&mut flash, staging);
    assert_eq!(s.stage_write(b"f", 3000, &[1]), Err(Error::OutOfOrder));
    let mut s = Store::new(flash);
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(view(&mut s), view_of(&[(b"f", 1, &data)], b""));
}

#[test]
fn digest_mismatch_drops_the_entry() {
    let mut s = formatted(16, b"");
    let data = bytes(5, 2000);
    s.stage_begin(b"f", 2000, &sha(b"something else"), 1)
        .unwrap();
    s.stage_write(b"f", 0, &data).unwrap();
    assert_eq!(s.stage_finish(b"f"), Err(Error::DigestMismatch));
    assert!(staged_all(&mut s).is_empty());
    assert_eq!(s.stage_finish(b"f"), Err(Error::NotFound));
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(s.find(b"f").unwrap(), None);
    // Its sectors are reusable: gc leaves no header behind.
    s.gc().unwrap();
    assert_eq!(headers(s.flash().contents()), 0);
}

#[test]
fn resume_after_restart_continues_from_flash_progress() {
    let mut s = formatted(16, b"");
    let data = bytes(6, 5 * 1024 + 17);
    let d = sha(&data);
    s.stage_begin(b"f", data.len() as u32, &d, 3).unwrap();
    s.stage_write(b"f", 0, &data[..2600]).unwrap();
    let mut s = Store::new(s.into_inner());
    assert_eq!(
        s.stage_begin(b"f", data.len() as u32, &d, 3).unwrap(),
        2 * CHUNK
    );
    let st = staged_all(&mut s);
    assert_eq!((st[0].done, st[0].verified), (2048, false));
    // Another digest (or version) starts over.
    assert_eq!(s.stage_begin(b"f", data.len() as u32, &d, 4).unwrap(), 0);
    assert_eq!(staged_all(&mut s).len(), 1);
    s.stage_write(b"f", 0, &data).unwrap();
    s.stage_finish(b"f").unwrap();
    assert_eq!(
        s.stage_begin(b"f", data.len() as u32, &d, 4).unwrap(),
        data.len() as u32
    );
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(view(&mut s), view_of(&[(b"f", 4, &data)], b""));
}

#[test]
fn replace_delete_rename_and_gc() {
    let mut s = formatted(32, b"P0");
    let a1 = bytes(7, 6000);
    let b = bytes(8, 100);
    let c = bytes(9, 0);
    stage(&mut s, b"a", &a1, 1, 1024).unwrap();
    stage(&mut s, b"b", &b, 1, 1024).unwrap();
    stage(&mut s, b"c", &c, 1, 1024).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(s.stage_delete(b"nope"), Err(Error::NotFound));
    assert_eq!(s.stage_rename(b"nope", b"x"), Err(Error::NotFound));
    let a2 = bytes(10, 9000);
    stage(&mut s, b"a", &a2, 2, 700).unwrap();
    s.stage_delete(b"b").unwrap();
    s.stage_delete(b"b").unwrap(); // idempotent
    s.stage_rename(b"c", b"d").unwrap();
    s.stage_rename(b"c", b"d").unwrap(); // idempotent
    let before = view(&mut s);
    assert_eq!(
        before,
        view_of(&[(b"a", 1, &a1), (b"b", 1, &b), (b"c", 1, &c)], b"P0")
    );
    s.gc().unwrap(); // nothing superseded yet: must not change what is visible or staged
    assert_eq!(view(&mut s), before);
    assert_eq!(staged_all(&mut s).len(), 4);
    s.commit(Some(b"P1"), &CommitParams::IMMEDIATE).unwrap();
    let after = view_of(&[(b"a", 2, &a2), (b"d", 1, &c)], b"P1");
    assert_eq!(view(&mut s), after);
    s.gc().unwrap();
    assert_eq!(view(&mut s), after);
    assert_eq!(
        headers(s.flash().contents()),
        2,
        "old a, b, c and the tombstones are erased"
    );
}

#[test]
fn stage_drop_and_abort() {
    let mut s = formatted(16, b"");
    stage(&mut s, b"x", b"xx", 1, 1).unwrap();
    stage(&mut s, b"y", b"yy", 1, 1).unwrap();
    s.stage_begin(b"z", 10, &sha(b"0123456789"), 1).unwrap();
    assert_eq!(s.stage_drop(b"nope"), Err(Error::NotFound));
    s.stage_drop(b"x").unwrap();
    assert_eq!(staged_all(&mut s).len(), 2);
    s.stage_abort().unwrap();
    assert!(staged_all(&mut s).is_empty());
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(view(&mut s).files.len(), 0);
}

#[test]
fn unverified_staged_file_is_garbage_after_commit() {
    let mut s = formatted(16, b"");
    let old = bytes(11, 1500);
    stage(&mut s, b"f", &old, 1, 4096).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    let new = bytes(12, 3000);
    s.stage_begin(b"f", 3000, &sha(&new), 2).unwrap();
    s.stage_write(b"f", 0, &new[..3000]).unwrap(); // written, never finished
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(view(&mut s), view_of(&[(b"f", 1, &old)], b""));
    assert!(staged_all(&mut s).is_empty());
    s.gc().unwrap();
    assert_eq!(headers(s.flash().contents()), 1);
    assert_eq!(view(&mut s), view_of(&[(b"f", 1, &old)], b""));
}

#[test]
fn corrupt_header_is_skipped_and_hides_nothing_else() {
    let mut s = formatted(16, b"");
    let (a, b, c) = (bytes(13, 5000), bytes(14, 10), bytes(15, 300));
    stage(&mut s, b"a", &a, 1, 4096).unwrap();
    stage(&mut s, b"b", &b, 1, 4096).unwrap();
    stage(&mut s, b"c", &c, 1, 4096).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    let fa = s.find(b"a").unwrap().unwrap();
    let fb = s.find(b"b").unwrap().unwrap();
    // Flip a name byte in a's header (its checksum no longer matches).
    let ha = (fa.data_offset as usize / SECTOR) * SECTOR;
    s.flash().contents_mut()[ha + 12] ^= 0x20;
    assert_eq!(view(&mut s), view_of(&[(b"b", 1, &b), (b"c", 1, &c)], b""));
    // Break b's magic too; c is still found.
    let hb = (fb.data_offset as usize / SECTOR) * SECTOR;
    s.flash().contents_mut()[hb] = 0;
    assert_eq!(view(&mut s), view_of(&[(b"c", 1, &c)], b""));
    // The damaged extents' sectors get reused without harm.
    let d = bytes(16, 9000);
    stage(&mut s, b"d", &d, 1, 4096).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(view(&mut s), view_of(&[(b"c", 1, &c), (b"d", 1, &d)], b""));
}

#[test]
fn no_space_then_gc_inside_stage_begin_reclaims() {
    // 8 sectors: 6 for extents.
    let mut s = formatted(8, b"");
    let f = bytes(17, 9000); // 3 sectors
    stage(&mut s, b"f", &f, 1, 4096).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    let g = bytes(18, 13000); // 4 sectors: does not fit beside f
    assert_eq!(s.stage_begin(b"g", 13000, &sha(&g), 1), Err(Error::NoSpace));
    // Replace f many times without calling gc: stage_begin collects superseded copies itself.
    for v in 2..10u32 {
        let data = bytes(100 + v, 9000);
        stage(&mut s, b"f", &data, v, 2048).unwrap();
        s.commit(None, &CommitParams::IMMEDIATE).unwrap();
        assert_eq!(view(&mut s), view_of(&[(b"f", v, &data)], b""));
    }
}

/// File data of 3 sectors holding, at the extent's second and third sector boundaries, a well-formed
/// header of a "ghost" file (generation 1) copied from a real extent of another store. Such bytes
/// must never become visible, whatever is erased and whenever power fails.
fn evil_data(seed: u32) -> Vec<u8> {
    let mut donor = formatted(8, b"");
    stage(&mut donor, b"ghost", b"boo", 1, 4096).unwrap();
    donor.commit(None, &CommitParams::IMMEDIATE).unwrap();
    let ghost_sector = donor.flash().contents()[2 * SECTOR..3 * SECTOR].to_vec();
    assert_eq!(donor.find(b"ghost").unwrap().unwrap().generation, 1);
    let area = rota_store::header_area(3 * SECTOR as u32) as usize;
    let mut evil = bytes(seed, 3 * SECTOR);
    evil[SECTOR - area..2 * SECTOR - area].copy_from_slice(&ghost_sector);
    evil[2 * SECTOR - area..3 * SECTOR - area].copy_from_slice(&ghost_sector);
    evil
}

/// A store with live files `keep` and `evil` at generation 2 (where the ghost would be live).
fn evil_store() -> (Store<Mem>, Vec<u8>) {
    let mut s = formatted(16, b"");
    let keep = bytes(19, 700);
    stage(&mut s, b"keep", &keep, 1, 4096).unwrap();
    stage(&mut s, b"evil", &evil_data(20), 1, 4096).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(view(&mut s).files.len(), 2);
    (s, keep)
}

#[test]
fn data_that_looks_like_a_header_never_surfaces_during_gc() {
    let (mut s, keep) = evil_store();
    s.stage_delete(b"evil").unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    let image = s.into_inner().contents().to_vec();
    for cut in CUTS {
        let mut n = 0;
        loop {
            let mut s = Store::new(cut_flash(&image, n, cut));
            let r = s.gc();
            let mut s = reboot(s);
            assert_eq!(
                s.find(b"ghost").unwrap(),
                None,
                "ghost visible after {cut:?} at op {n}"
            );
            assert_eq!(view(&mut s), view_of(&[(b"keep", 1, &keep)], b""));
            s.gc().unwrap();
            assert_eq!(view(&mut s), view_of(&[(b"keep", 1, &keep)], b""));
            if r.is_ok() {
                break;
            }
            n += 1;
        }
        assert!(
            n >= 4,
            "gc erased the evil extent and its tombstone ({n} ops)"
        );
    }
}

#[test]
fn data_that_looks_like_a_header_never_surfaces_when_reused() {
    let (mut s, keep) = evil_store();
    // Stage a new evil version in full, then drop it: its extent is junk that allocation reuses.
    let evil2 = evil_data(21);
    stage(&mut s, b"evil", &evil2, 2, 4096).unwrap();
    s.stage_drop(b"evil").unwrap();
    let image = s.into_inner().contents().to_vec();
    for cut in CUTS {
        let mut n = 0;
        loop {
            let mut s = Store::new(cut_flash(&image, n, cut));
            let r = stage(&mut s, b"small", b"tiny", 1, 4096)
                .and_then(|_| s.commit(None, &CommitParams::IMMEDIATE));
            let mut s = reboot(s);
            assert_eq!(
                s.find(b"ghost").unwrap(),
                None,
                "ghost visible after {cut:?} at op {n}"
            );
            let v = view(&mut s);
            assert_eq!(v.files[&b"keep"[..]].1, keep);
            assert_eq!(v.files.len(), 2 + usize::from(r.is_ok()));
            if r.is_ok() {
                assert_eq!(v.files[&b"small"[..]].1, b"tiny");
                break;
            }
            n += 1;
        }
        assert!(n >= 4, "the small file reused the dropped extent ({n} ops)");
    }
}

#[test]
fn digest_is_checked_for_every_padding_case() {
    // Sizes around the SHA-256 block and padding boundaries (55, 56, 63, 64, ...).
    let mut s = formatted(8, b"");
    for len in (0..=130).chain([1023, 1024, 1025]) {
        let data = bytes(len as u32, len);
        stage(&mut s, b"f", &data, 1, 4096).unwrap();
        s.stage_drop(b"f").unwrap();
        s.stage_begin(b"f", len as u32, &sha(&[&data[..], b"x"].concat()), 1)
            .unwrap();
        s.stage_write(b"f", 0, &data).unwrap();
        assert_eq!(
            s.stage_finish(b"f"),
            Err(Error::DigestMismatch),
            "len {len}"
        );
        s.gc().unwrap();
    }
}

/// A flash that only reads whole aligned words, as some drivers do: exercises the bounce-buffer reads.
struct WordReads(Mem);

impl embedded_storage::nor_flash::ErrorType for WordReads {
    type Error = rota_memflash::MemFlashError;
}

impl embedded_storage::nor_flash::ReadNorFlash for WordReads {
    const READ_SIZE: usize = 4;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        assert!(
            offset % 4 == 0 && bytes.len() % 4 == 0,
            "unaligned read {offset}+{}",
            bytes.len()
        );
        self.0.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl embedded_storage::nor_flash::NorFlash for WordReads {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.0.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.write(offset, bytes)
    }
}

#[test]
fn drivers_with_aligned_reads_work() {
    let mut s = Store::new(WordReads(MemFlash::new(vec![0u8; 16 * SECTOR])));
    s.format(b"odd").unwrap();
    let data = bytes(30, 5003);
    s.stage_begin(b"f", 5003, &sha(&data), 1).unwrap();
    for (i, p) in data.chunks(333).enumerate() {
        s.stage_write(b"f", (i * 333) as u32, p).unwrap();
    }
    s.stage_finish(b"f").unwrap();
    s.commit(Some(b"payload!!"), &CommitParams::IMMEDIATE)
        .unwrap();
    s.bump_boot().unwrap();
    assert_eq!(view(&mut s), view_of(&[(b"f", 1, &data)], b"payload!!"));
}

#[test]
fn a_caller_hashed_finish_checks_completeness_and_the_announced_digest() {
    let mut s = formatted(16, b"");
    let data = bytes(6, 2000);
    s.stage_begin(b"f", 2000, &sha(&data), 1).unwrap();
    s.stage_write(b"f", 0, &data[..1000]).unwrap();
    assert_eq!(
        s.stage_finish_hashed(b"f", &sha(&data)),
        Err(Error::Incomplete)
    );
    s.stage_write(b"f", 1000, &data[1000..]).unwrap();
    // A content hash other than the announced digest drops the file.
    assert_eq!(
        s.stage_finish_hashed(b"f", &sha(b"other")),
        Err(Error::DigestMismatch)
    );
    assert!(staged_all(&mut s).is_empty());
    s.stage_begin(b"f", 2000, &sha(&data), 1).unwrap();
    s.stage_write(b"f", 0, &data).unwrap();
    s.stage_finish_hashed(b"f", &sha(&data)).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(view(&mut s), view_of(&[(b"f", 1, &data)], b""));
}

/// A flash whose cell at `stuck` never programs its lowest bit: writes there do not read back.
struct StuckBit(Mem, u32);

impl embedded_storage::nor_flash::ErrorType for StuckBit {
    type Error = rota_memflash::MemFlashError;
}

impl embedded_storage::nor_flash::ReadNorFlash for StuckBit {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.0.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl embedded_storage::nor_flash::NorFlash for StuckBit {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.0.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let mut b = bytes.to_vec();
        if let Some(i) = self
            .1
            .checked_sub(offset)
            .filter(|&i| (i as usize) < b.len())
        {
            b[i as usize] |= 1;
        }
        self.0.write(offset, &b)
    }
}

#[test]
fn a_failure_says_which_access_at_which_offset() {
    // A write the driver fails: the first data write of a file staged in sector 2.
    let mut s = formatted(8, b"");
    let data = bytes(60, 3000);
    s.stage_begin(b"f", 3000, &sha(&data), 1).unwrap();
    assert_eq!(s.failure(), None);
    let next = s.flash().ops();
    s.flash().fail_op(next);
    assert_eq!(s.stage_write(b"f", 0, &data), Err(Error::Flash));
    let data_at = 2 * SECTOR as u32 + rota_store::header_area(3000);
    let f = s.failure().unwrap();
    assert_eq!(
        f,
        Failure {
            error: Error::Flash,
            access: Access::Write,
            offset: data_at,
            driver: Some(NorFlashErrorKind::Other),
        }
    );
    assert_eq!(f.describe(), "flash operation failed");
    assert_eq!(
        f.to_string(),
        format!("flash operation failed: flash write at {data_at:#010x} (Other)")
    );

    // An erase: format erases the region's last sector first.
    let mut s = Store::new(MemFlash::new(vec![0u8; 8 * SECTOR]));
    s.flash().fail_op(0);
    assert_eq!(s.format(b""), Err(Error::Flash));
    let f = s.failure().unwrap();
    assert_eq!((f.access, f.offset), (Access::Erase, 7 * SECTOR as u32));

    // A read: after a power cut every read fails, the first one of `find` at the config record.
    let mut s = formatted(8, b"");
    let next = s.flash().ops();
    s.flash().cut_power_at(next);
    assert!(s.bump_boot().is_err());
    assert_eq!(s.find(b"f"), Err(Error::Flash));
    let f = s.failure().unwrap();
    assert_eq!(
        (f.access, f.offset, f.error),
        (Access::Read, 0, Error::Flash)
    );

    // A read-back mismatch: the first byte that differs, no driver error; the file is dropped.
    let stuck = data_at + 1000;
    let mut s = Store::new(StuckBit(MemFlash::new(vec![0u8; 8 * SECTOR]), stuck));
    s.format(b"").unwrap();
    let data = vec![0u8; 3000];
    s.stage_begin(b"f", 3000, &sha(&data), 1).unwrap();
    assert_eq!(s.stage_write(b"f", 0, &data), Err(Error::Readback));
    let f = s.failure().unwrap();
    assert_eq!(
        f,
        Failure {
            error: Error::Readback,
            access: Access::ReadBack,
            offset: stuck,
            driver: None,
        }
    );
    assert_eq!(
        f.to_string(),
        format!("read-back mismatch: flash read-back at {stuck:#010x}")
    );
    assert!(staged_all(&mut s).is_empty());
}

#[test]
fn a_store_is_the_flash_and_seventy_two_bytes() {
    // docs/flash-layout.md says so; the file being staged (its parsed header, checksum and write
    // position) and the last failure are all it keeps.
    assert_eq!(std::mem::size_of::<Store<()>>(), 72);
}

#[test]
fn every_error_is_its_own_service_status_with_a_text() {
    use Error as E;
    let all = [
        E::Flash,
        E::NoConfig,
        E::NameTooLong,
        E::BadName,
        E::TooLarge,
        E::PayloadTooLong,
        E::NoSpace,
        E::NotFound,
        E::OutOfOrder,
        E::Incomplete,
        E::DigestMismatch,
        E::Readback,
        E::Corrupt,
    ];
    let codes: std::collections::BTreeSet<i32> = all.iter().map(|e| e.status()).collect();
    assert_eq!(codes.len(), all.len(), "two errors share a status code");
    for e in all {
        assert!(e.status() < 0, "{e:?}");
        assert_ne!(
            e.describe(),
            rota_abi::status::describe(i32::MIN),
            "{e:?} has no text"
        );
    }
}
