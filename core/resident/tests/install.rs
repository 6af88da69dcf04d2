//! Relocation at install time, on the host: the core's store services stage a blob that will run in
//! place relocated for its flash address, and the core's loader verifies it there before anything
//! runs. Real overlays come from `make overlays fixtures` (`$ROTA_BUILD`, default `build/`).
use rota_abi::{status, Name};
use rota_blob::{emit_blob, relocate_word, Blob, Error, HeaderRepr, Isa};
use rota_core::heap::AccountingHeap;
use rota_core::services::{self, CoreState};
use rota_core::{record, Board};
use rota_loader::{LoadError, Loaded};
use rota_memflash::{Cut, MemFlash, TornErase, TornWrite};
use rota_store::{CommitParams, Store};
use std::path::PathBuf;

/// Storage region: 256 KB (two provisions of up to 100 KB, the LX106's with Ed25519, and their headers fit side by side).
const REGION: usize = 256 * 1024;
/// A small arena: the synthetic blobs and the real `app` do not fit it.
const ARENA_WORDS: usize = 256;
const MAPPED: u32 = 0x4028_0000;

static HEAP: AccountingHeap = AccountingHeap::empty();

/// A board whose storage region is mapped for execution at `xip` (if any); `RELOCATE` is its
/// `Board::RELOCATE_IN_PLACE` (the LX106's default, on).
struct Xip<const RELOCATE: bool = true> {
    flash: MemFlash<Vec<u8>>,
    xip: Option<u32>,
}

impl<const RELOCATE: bool> Board for Xip<RELOCATE> {
    type Flash = MemFlash<Vec<u8>>;
    type Nic = rota_net::NoNic;
    const ISA: Isa = Isa::Lx106;
    const RELOCATE_IN_PLACE: bool = RELOCATE;
    fn console_write(&mut self, _: &[u8]) {}
    fn console_read(&mut self) -> Option<u8> {
        None
    }
    fn flash(&mut self) -> &mut Self::Flash {
        &mut self.flash
    }
    fn nic(&mut self) -> Option<&mut rota_net::NoNic> {
        None
    }
    fn mac(&self) -> [u8; 6] {
        [2, 0, 0, 0, 0, 1]
    }
    fn now_ms(&mut self) -> u32 {
        0
    }
    fn reset(&mut self) -> ! {
        panic!("reset")
    }
    fn sync_icache(&mut self) {}
    fn xip_base(&self) -> Option<u32> {
        self.xip
    }
}

/// A board with a formatted store and the given files committed (through the store itself, as
/// received).
fn board(xip: Option<u32>, files: &[(&str, &[u8])]) -> Xip {
    let mut payload = [0u8; record::PAYLOAD_MAX];
    let n = record::join(b"config", &[], &mut payload).unwrap();
    let mut store = Store::new(MemFlash::new(vec![0xFF; REGION]));
    store.format(&payload[..n]).unwrap();
    for (name, data) in files {
        let digest = rota_blob::sha256(data);
        store
            .stage_begin(name.as_bytes(), data.len() as u32, &digest, 1)
            .unwrap();
        store.stage_write(name.as_bytes(), 0, data).unwrap();
        store.stage_finish(name.as_bytes()).unwrap();
    }
    store.commit(None, &CommitParams::IMMEDIATE).unwrap();
    Xip {
        flash: MemFlash::new(store.into_inner().contents().to_vec()),
        xip,
    }
}

fn name(n: &str) -> Name {
    Name::new(n.as_bytes()).unwrap()
}

/// Stages `data` as `file` through the core's services (as `provision` does), from the offset
/// `stage_begin` returns, in pieces of the sizes `pieces` gives in turn (cycling), then finishes it.
/// Returns the first failing status, or the resume offset.
fn stage<const R: bool>(
    b: &mut Xip<R>,
    file: &str,
    data: &[u8],
    version: u32,
    pieces: &[usize],
) -> Result<u32, i32> {
    let mut state = CoreState::new(b, &HEAP, ARENA_WORDS * 4);
    let svc = services::table(&mut state);
    let n = name(file);
    let digest = rota_blob::sha256(data);
    let at = svc.stage_begin(&n, data.len() as u32, &digest, version);
    if at < 0 {
        return Err(at);
    }
    let mut off = at as usize;
    for &p in pieces.iter().cycle() {
        if off >= data.len() {
            break;
        }
        let k = p.min(data.len() - off);
        match svc.stage_write(&n, off as u32, &data[off..off + k]) {
            status::OK => off += k,
            e => return Err(e),
        }
    }
    match svc.stage_finish(&n) {
        status::OK => Ok(at as u32),
        e => Err(e),
    }
}

fn commit<const R: bool>(b: &mut Xip<R>) -> Result<u32, i32> {
    let mut state = CoreState::new(b, &HEAP, ARENA_WORDS * 4);
    match services::table(&mut state).commit(&[], &CommitParams::IMMEDIATE) {
        g if g > 0 => Ok(g as u32),
        e => Err(e),
    }
}

/// Stages and commits.
fn install<const R: bool>(
    b: &mut Xip<R>,
    file: &str,
    data: &[u8],
    pieces: &[usize],
) -> Result<(), i32> {
    stage(b, file, data, 1, pieces)?;
    commit(b).map(drop)
}

/// Prepares `file` as the core does before running it (nothing runs on the host).
fn load<const R: bool>(b: &mut Xip<R>, file: &str) -> Result<Loaded, LoadError> {
    let mut arena = vec![0u32; ARENA_WORDS];
    rota_core::load(b, &mut arena, file)
}

fn live<const R: bool>(b: &mut Xip<R>, file: &str) -> rota_store::File {
    Store::new(&mut b.flash)
        .find(file.as_bytes())
        .unwrap()
        .unwrap()
}

fn stored<const R: bool>(b: &mut Xip<R>, file: &str) -> Vec<u8> {
    let f = live(b, file);
    b.flash.contents()[f.data_offset as usize..][..f.size as usize].to_vec()
}

fn header(blob: &[u8]) -> HeaderRepr {
    Blob::parse(blob).unwrap().header
}

/// What the store must hold for `blob` at data offset `at`: relocated for its image's address in the
/// mapping, word by word with `relocate_word` (not with the code under test).
fn expected(blob: &[u8], at: u32, mapped: u32) -> Vec<u8> {
    let b = Blob::parse(blob).unwrap();
    let base = mapped + at + b.header.image_offset();
    let image = b.header.image_offset() as usize;
    let mut out = blob.to_vec();
    for rel in b.relocs() {
        let o = image + rel as usize;
        let w = u32::from_le_bytes(out[o..o + 4].try_into().unwrap());
        out[o..o + 4].copy_from_slice(&relocate_word(w, base).to_le_bytes());
    }
    out
}

/// A blob of `words` image words with relocations in clusters (a literal pool at the start, a table
/// at the end) and scattered, the last one on the image's last word.
fn relocatable(words: u32, seed: u32) -> Vec<u8> {
    let image: Vec<u8> = (0..words)
        .flat_map(|i| (i.wrapping_mul(0x9E37_79B9) ^ seed).to_le_bytes())
        .collect();
    let mut relocs: Vec<u32> = (0..24).map(|i| 4 * i).collect();
    relocs.extend((30..words - 40).step_by(37).map(|i| 4 * i));
    relocs.extend((words - 16..words).map(|i| 4 * i));
    emit_blob(
        Isa::Lx106,
        rota_abi::ABI_VERSION,
        "provision",
        &image,
        8,
        &relocs,
    )
    .unwrap()
}

#[test]
fn a_blob_too_large_for_the_arena_is_stored_relocated_for_its_flash_address() {
    let blob = relocatable(1500, 7);
    let h = header(&blob);
    assert!(h.image_size as usize > ARENA_WORDS * 4 && h.reloc_count > 50);
    // Whole, word-sized, odd-sized pieces (relocated words split across writes at every byte), and
    // pieces that straddle the header, the table's end and the image's end.
    let patterns: [&[usize]; 8] = [
        &[1024],
        &[65536],
        &[1],
        &[3],
        &[7, 1, 2],
        &[5, 1019],
        &[47, 2, 61, 130],
        &[4, 64, 4096],
    ];
    for pieces in patterns {
        let mut b = board(Some(MAPPED), &[]);
        install(&mut b, "provision", &blob, pieces).unwrap();
        let f = live(&mut b, "provision");
        assert_eq!(
            stored(&mut b, "provision"),
            expected(&blob, f.data_offset, MAPPED),
            "pieces {pieces:?}"
        );
        // The file's digest is the blob's as built: what the server announced and the Hello reports.
        assert_eq!(f.digest, rota_blob::sha256(&blob));
        let mut state = CoreState::new(&mut b, &HEAP, ARENA_WORDS * 4);
        let info = services::table(&mut state)
            .file_info(false, 0)
            .unwrap()
            .unwrap();
        assert_eq!(info.digest, rota_blob::sha256(&blob));
        // The core runs it in place, at the address it was relocated for.
        let l = load(&mut b, "provision").unwrap();
        let base = MAPPED + f.data_offset + h.image_offset();
        assert_eq!((l.base, l.entry), (base, base + 8), "pieces {pieces:?}");
    }
}

#[test]
fn blobs_that_do_not_run_in_place_relocated_are_stored_as_received() {
    let big = relocatable(1500, 3);
    let small = relocatable(200, 3);
    let no_relocs = emit_blob(
        Isa::Lx106,
        rota_abi::ABI_VERSION,
        "provision",
        &[0x11; 6000],
        0,
        &[],
    )
    .unwrap();
    let mut trailing = big.clone();
    trailing.extend_from_slice(b"trailing bytes");
    let cases: [(&str, &[u8], Option<u32>, &str); 5] = [
        ("provision", &small, Some(MAPPED), "fits the arena"),
        ("provision", &no_relocs, Some(MAPPED), "no relocations"),
        ("backup", &big, Some(MAPPED), "not a name the core loads"),
        ("provision", &big, None, "no flash mapping"),
        ("provision", &trailing, Some(MAPPED), "not exactly a blob"),
    ];
    for (file, data, xip, why) in cases {
        let mut b = board(xip, &[]);
        install(&mut b, file, data, &[1000]).unwrap();
        assert_eq!(stored(&mut b, file), data, "{why}");
    }
    // And each still loads the way it did: into the arena, in place as linked, or not at all.
    let mut b = board(Some(MAPPED), &[]);
    install(&mut b, "provision", &small, &[1000]).unwrap();
    let mut arena = vec![0u32; ARENA_WORDS];
    let l = rota_core::load(&mut b, &mut arena, "provision").unwrap();
    assert_eq!(l.base, arena.as_ptr() as usize as u32);
    let mut b = board(Some(MAPPED), &[]);
    install(&mut b, "provision", &no_relocs, &[1000]).unwrap();
    let f = live(&mut b, "provision");
    assert_eq!(
        load(&mut b, "provision").unwrap().base,
        MAPPED + f.data_offset + 48
    );
    let mut b = board(None, &[]);
    install(&mut b, "provision", &big, &[1000]).unwrap();
    assert!(matches!(
        load(&mut b, "provision"),
        Err(LoadError::Blob(Error::ImageTooLarge { .. }))
    ));
    // A board that does not relocate in place (mps2-an385's default) stores it as received and
    // does not run it: the code for it is not even in that firmware.
    let b = board(Some(MAPPED), &[]);
    let mut b: Xip<false> = Xip {
        flash: b.flash,
        xip: b.xip,
    };
    install(&mut b, "provision", &big, &[1000]).unwrap();
    assert_eq!(stored(&mut b, "provision"), big);
    assert!(matches!(
        load(&mut b, "provision"),
        Err(LoadError::TooLarge)
    ));
}

#[test]
fn a_corrupted_relocated_word_is_refused_at_boot() {
    let blob = relocatable(1500, 11);
    let h = header(&blob);
    let mut b = board(Some(MAPPED), &[]);
    install(&mut b, "provision", &blob, &[1024]).unwrap();
    let f = live(&mut b, "provision");
    let table = f.data_offset as usize + 48;
    let image = f.data_offset as usize + h.image_offset() as usize;
    let rels: Vec<usize> = Blob::parse(&blob)
        .unwrap()
        .relocs()
        .map(|r| r as usize)
        .collect();
    let good = b.flash.contents().to_vec();
    let corrupt = |at: usize, value: u32| {
        let mut flash = good.clone();
        flash[at..at + 4].copy_from_slice(&value.to_le_bytes());
        let mut b: Xip = Xip {
            flash: MemFlash::new(flash),
            xip: Some(MAPPED),
        };
        load(&mut b, "provision")
    };
    let word = |at: usize| u32::from_le_bytes(good[at..at + 4].try_into().unwrap());
    for &r in [rels[0], rels[30], *rels.last().unwrap()].iter() {
        let at = image + r;
        // Its lowest set bit cleared (what flash can do to a word), or relocated for a base one word
        // off.
        for value in [
            word(at) & (word(at) - 1),
            word(at).wrapping_add(4),
            word(at) - 4,
        ] {
            assert_eq!(
                corrupt(at, value),
                Err(LoadError::Blob(Error::DigestMismatch)),
                "relocated word at image offset {r}"
            );
        }
    }
    // The relocation table altered: an entry moved to the next word, or out of order.
    let i = 30;
    let moved = (rels[i] + 4) as u32;
    assert_ne!(moved as usize, rels[i + 1]);
    assert_eq!(
        corrupt(table + 4 * i, moved),
        Err(LoadError::Blob(Error::DigestMismatch))
    );
    assert_eq!(
        corrupt(table + 4 * i, rels[i - 1] as u32),
        Err(LoadError::Blob(Error::BadRelocation {
            index: i as u32,
            offset: rels[i - 1] as u32
        }))
    );
    // Untouched, it loads.
    assert!(corrupt(table, word(table)).is_ok());
}

#[test]
fn a_blob_relocated_for_another_address_is_refused() {
    let blob = relocatable(1500, 5);
    let mut b = board(Some(MAPPED), &[]);
    install(&mut b, "provision", &blob, &[1024]).unwrap();
    // The mapping is not where the image was relocated for (a core with another window).
    b.xip = Some(MAPPED + 0x1000);
    assert_eq!(
        load(&mut b, "provision"),
        Err(LoadError::Blob(Error::DigestMismatch))
    );
    b.xip = Some(MAPPED);
    assert!(load(&mut b, "provision").is_ok());
    // The same bytes at another place in the store: the store never moves a live file, but if it did
    // the image would sit at another address than the one it was relocated for.
    let f = live(&mut b, "provision");
    let bytes = stored(&mut b, "provision");
    let mut s = Store::new(MemFlash::new(vec![0xFF; REGION]));
    let mut payload = [0u8; record::PAYLOAD_MAX];
    let n = record::join(b"config", &[], &mut payload).unwrap();
    s.format(&payload[..n]).unwrap();
    s.stage_begin(b"filler", 100, &rota_blob::sha256(&[7; 100]), 1)
        .unwrap();
    s.stage_write(b"filler", 0, &[7; 100]).unwrap();
    s.stage_finish(b"filler").unwrap();
    // Stored as the store would copy it (the store's own digest of these bytes).
    s.stage_begin(b"provision", bytes.len() as u32, &f.digest, 1)
        .unwrap();
    s.stage_write(b"provision", 0, &bytes).unwrap();
    s.stage_finish_hashed(b"provision", &f.digest).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    let mut moved: Xip = Xip {
        flash: MemFlash::new(s.into_inner().contents().to_vec()),
        xip: Some(MAPPED),
    };
    assert_ne!(live(&mut moved, "provision").data_offset, f.data_offset);
    assert_eq!(
        load(&mut moved, "provision"),
        Err(LoadError::Blob(Error::DigestMismatch))
    );
}

#[test]
fn a_resumed_transfer_of_a_relocated_blob_ends_with_its_digest_or_restarts() {
    let blob = relocatable(1500, 13);
    // Interrupted after 3000 bytes: two whole chunks are kept.
    let partial = |b: &mut Xip| {
        let mut state = CoreState::new(b, &HEAP, ARENA_WORDS * 4);
        let svc = services::table(&mut state);
        let n = name("provision");
        let d = rota_blob::sha256(&blob);
        assert_eq!(svc.stage_begin(&n, blob.len() as u32, &d, 1), 0);
        assert_eq!(svc.stage_write(&n, 0, &blob[..3000]), status::OK);
    };
    // Resumed by a new session (a new core state, as after a reboot): ends with the announced digest,
    // hashed from flash with the relocated words un-relocated.
    let mut b = board(Some(MAPPED), &[]);
    partial(&mut b);
    assert_eq!(stage(&mut b, "provision", &blob, 1, &[1000]), Ok(2048));
    commit(&mut b).unwrap();
    let f = live(&mut b, "provision");
    assert_eq!(
        stored(&mut b, "provision"),
        expected(&blob, f.data_offset, MAPPED)
    );
    assert!(load(&mut b, "provision").is_ok());

    // A relocated word kept from before the cut no longer what was written: the resumed file cannot be
    // what was sent, so it is dropped and the next transfer starts from 0, and ends well.
    let mut b = board(Some(MAPPED), &[]);
    partial(&mut b);
    let mut st = Store::new(&mut b.flash);
    let mut c = rota_store::Cursor::default();
    let data = st.next_staged(&mut c).unwrap().unwrap().data_offset as usize;
    let at = data + header(&blob).image_offset() as usize;
    b.flash.contents_mut()[at] &= 0xFE;
    assert_eq!(
        stage(&mut b, "provision", &blob, 1, &[1000]),
        Err(status::EDIGEST)
    );
    let mut st = Store::new(&mut b.flash);
    assert_eq!(st.next_staged(&mut rota_store::Cursor::default()), Ok(None));
    assert_eq!(stage(&mut b, "provision", &blob, 1, &[1000]), Ok(0));
    commit(&mut b).unwrap();
    assert!(load(&mut b, "provision").is_ok());
}

#[test]
fn a_relocation_table_that_could_never_run_is_not_staged() {
    let blob = relocatable(1500, 17);
    // Entries 3 and 4 swapped, the blob's digest made to match (a packer bug, not a transfer error).
    let mut bad = blob.clone();
    let (a, c) = (48 + 4 * 3, 48 + 4 * 4);
    let (x, y) = (bad[a..a + 4].to_vec(), bad[c..c + 4].to_vec());
    bad[a..a + 4].copy_from_slice(&y);
    bad[c..c + 4].copy_from_slice(&x);
    let n = bad.len() - 32;
    let d = rota_blob::sha256(&bad[..n]);
    bad[n..].copy_from_slice(&d);
    let mut b = board(Some(MAPPED), &[("provision", &blob)]);
    assert_eq!(
        stage(&mut b, "provision", &bad, 2, &[1024]),
        Err(status::EINVAL)
    );
    let mut st = Store::new(&mut b.flash);
    assert_eq!(
        st.next_staged(&mut rota_store::Cursor::default()),
        Ok(None),
        "nothing left to commit"
    );
    // The old version is still the one that runs.
    assert_eq!(live(&mut b, "provision").digest, rota_blob::sha256(&blob));
}

#[test]
fn provision_replaces_itself_while_it_runs_in_place() {
    let v1 = relocatable(1500, 1);
    let v2 = relocatable(1600, 2);
    let mut b = board(Some(MAPPED), &[]);
    install(&mut b, "provision", &v1, &[1024]).unwrap();
    // v1 "runs" from its extent: from here on its bytes must not change until the phase is over.
    let running = load(&mut b, "provision").unwrap();
    let old = live(&mut b, "provision");
    // The whole extent: header, state words and data.
    let head = rota_store::header_area(old.size) as usize;
    let extent =
        |b: &Xip| b.flash.contents()[old.data_offset as usize - head..][..head + v1.len()].to_vec();
    let before = extent(&b);
    // It stages its successor through the services and commits it, as `provision` does.
    {
        let mut state = CoreState::new(&mut b, &HEAP, ARENA_WORDS * 4);
        let svc = services::table(&mut state);
        let n = name("provision");
        let d = rota_blob::sha256(&v2);
        assert_eq!(svc.stage_begin(&n, v2.len() as u32, &d, 2), 0);
        for (i, piece) in v2.chunks(1000).enumerate() {
            assert_eq!(svc.stage_write(&n, 1000 * i as u32, piece), status::OK);
        }
        assert_eq!(svc.stage_finish(&n), status::OK);
        assert!(svc.commit(&[], &CommitParams::IMMEDIATE) > 0);
    }
    assert_eq!(extent(&b), before, "the running code is untouched");
    let mut flash = b.flash.contents().to_vec();
    assert!(
        rota_loader::verify_relocated_in_place(
            &mut MemFlash::new(&mut flash[..]),
            old.data_offset,
            rota_loader::Target {
                isa: Isa::Lx106,
                abi_version: rota_abi::ABI_VERSION
            },
            MAPPED,
            &old.digest
        ) == Ok(running),
        "and still verifies where it runs"
    );
    // The next boot runs v2, relocated for its own extent.
    let new = live(&mut b, "provision");
    assert_ne!(new.data_offset, old.data_offset);
    assert_eq!(
        stored(&mut b, "provision"),
        expected(&v2, new.data_offset, MAPPED)
    );
    let l = load(&mut b, "provision").unwrap();
    assert_eq!(
        l.base,
        MAPPED + new.data_offset + header(&v2).image_offset()
    );
    // Collected after the phase (before the reboot): v1's extent goes, v2 is unaffected.
    Store::new(&mut b.flash).gc().unwrap();
    assert_ne!(extent(&b), before);
    assert_eq!(load(&mut b, "provision"), Ok(l));
}

/// Where the build products are (`make overlays fixtures`).
fn artifact(rel: &str) -> PathBuf {
    let dir = std::env::var_os("ROTA_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../build"));
    let p = dir.join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `make overlays fixtures` first",
        p.display()
    );
    p
}

/// The image an ELF linked at `base` holds: its allocated sections with contents, from `base` on.
fn linked_image(elf: &[u8], base: u32, len: usize) -> Vec<u8> {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    assert_eq!(&elf[..6], b"\x7fELF\x01\x01", "a 32-bit little-endian ELF");
    let (shoff, shentsize, shnum) = (u32_at(0x20) as usize, u16_at(0x2e), u16_at(0x30));
    let mut image = vec![0u8; len];
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        let (kind, flags, addr) = (u32_at(sh + 4), u32_at(sh + 8), u32_at(sh + 12));
        let (offset, size) = (u32_at(sh + 16) as usize, u32_at(sh + 20) as usize);
        const ALLOC: u32 = 2;
        const NOBITS: u32 = 8;
        if flags & ALLOC == 0 || kind == NOBITS || size == 0 {
            continue;
        }
        let at = (addr - base) as usize;
        assert!(at + size <= len, "section at {addr:#x} outside the image");
        image[at..at + size].copy_from_slice(&elf[offset..offset + size]);
    }
    image
}

#[test]
fn the_real_lx106_app_relocated_at_install_equals_the_linkers_output() {
    let blob = std::fs::read(artifact("lx106/app.blob")).unwrap();
    let h = header(&blob);
    assert!(
        h.reloc_count > 0 && h.image_size as usize > ARENA_WORDS * 4,
        "{h:?}"
    );
    let image = |b: &[u8]| b[h.image_offset() as usize..h.digest_offset() as usize].to_vec();
    let elf = std::fs::read(artifact("fixtures/lx106-app-at-0.elf")).unwrap();
    assert_eq!(
        linked_image(&elf, 0, h.image_size as usize),
        image(&blob),
        "app.blob and the fixtures come from different builds: run `make overlays fixtures`"
    );
    // Where the store puts the file, found with a first install.
    let mut b = board(Some(0), &[]);
    install(&mut b, "app", &blob, &[1024]).unwrap();
    let data = live(&mut b, "app").data_offset;
    for base in [0x0000_3000u32, 0x4010_7000] {
        let elf =
            std::fs::read(artifact(&format!("fixtures/lx106-app-at-{base:#010x}.elf"))).unwrap();
        // The mapping that puts the image at `base`.
        let xip = base - data - h.image_offset();
        let mut b = board(Some(xip), &[]);
        install(&mut b, "app", &blob, &[1000]).unwrap();
        assert_eq!(live(&mut b, "app").data_offset, data);
        let ours = image(&stored(&mut b, "app"));
        assert_eq!(
            ours,
            linked_image(&elf, base, h.image_size as usize),
            "relocated at install for {base:#x}: not the linker's output"
        );
        assert_ne!(ours, image(&blob), "nothing was relocated at {base:#x}");
        assert_eq!(load(&mut b, "app").unwrap().base, base);
    }
}

#[test]
fn the_real_lx106_provision_is_installed_relocated_and_runs_in_place() {
    let blob = std::fs::read(artifact("lx106/provision.blob")).unwrap();
    let h = header(&blob);
    assert!(h.reloc_count > 100 && h.image_size > 8192, "{h:?}");
    let mut b = board(Some(MAPPED), &[]);
    // The ESP8266's arena is 8 KB: provision does not fit it.
    let mut state = CoreState::new(&mut b, &HEAP, 8192);
    let svc = services::table(&mut state);
    let n = name("provision");
    assert_eq!(
        svc.stage_begin(&n, blob.len() as u32, &rota_blob::sha256(&blob), 1),
        0
    );
    for (i, piece) in blob.chunks(1000).enumerate() {
        assert_eq!(svc.stage_write(&n, 1000 * i as u32, piece), status::OK);
    }
    assert_eq!(svc.stage_finish(&n), status::OK);
    assert!(svc.commit(&[], &CommitParams::IMMEDIATE) > 0);
    let f = live(&mut b, "provision");
    assert_eq!(
        stored(&mut b, "provision"),
        expected(&blob, f.data_offset, MAPPED)
    );
    let mut arena = vec![0u32; 8192 / 4];
    let l = rota_core::load(&mut b, &mut arena, "provision").unwrap();
    assert_eq!(l.base, MAPPED + f.data_offset + h.image_offset());
}

/// How an interrupted operation is left (as the store's own power-cut tests try them).
const CUTS: [Cut; 4] = [
    Cut::HALF,
    Cut {
        write: TornWrite::Bits {
            word: 0,
            bits: 0x0F0F_0F0F,
        },
        erase: TornErase::Upward { left: 3000 },
    },
    Cut {
        write: TornWrite::Bits {
            word: usize::MAX,
            bits: 0xFFFF_FFFE,
        },
        erase: TornErase::Downward { left: 200 },
    },
    Cut {
        write: TornWrite::Bits {
            word: 1,
            bits: 0x8000_0000,
        },
        erase: TornErase::Random { seed: 0x5eed },
    },
];

/// Cuts power at every flash operation of installing `v2` over a committed `v1` (each mode of
/// `cuts`), and checks that the store then boots exactly v1 or, once the commit is done, v2; that the
/// loader accepts it in place; and that the next session completes the install.
fn power_cut_at_every_operation(v1: &[u8], v2: &[u8], arena: usize, cuts: &[Cut]) -> u32 {
    let mut b = board(Some(MAPPED), &[]);
    install(&mut b, "provision", v1, &[1000]).unwrap();
    let old = live(&mut b, "provision");
    let start = b.flash.contents().to_vec();
    let extent = old.data_offset as usize..old.data_offset as usize + v1.len();
    let run = |b: &mut Xip| -> Result<(), i32> {
        let mut state = CoreState::new(b, &HEAP, arena);
        let svc = services::table(&mut state);
        let n = name("provision");
        let at = svc.stage_begin(&n, v2.len() as u32, &rota_blob::sha256(v2), 2);
        if at < 0 {
            return Err(at);
        }
        let mut off = at as usize;
        while off < v2.len() {
            let k = 1000.min(v2.len() - off);
            match svc.stage_write(&n, off as u32, &v2[off..off + k]) {
                status::OK => off += k,
                e => return Err(e),
            }
        }
        match svc.stage_finish(&n) {
            status::OK => {}
            e => return Err(e),
        }
        match svc.commit(&[], &CommitParams::IMMEDIATE) {
            g if g > 0 => Ok(()),
            e => Err(e),
        }
    };
    let mut clean = Xip {
        flash: MemFlash::new(start.clone()),
        xip: Some(MAPPED),
    };
    let before = clean.flash.ops();
    run(&mut clean).unwrap();
    let ops = clean.flash.ops() - before;
    let new_at = live(&mut clean, "provision").data_offset;
    let mut arena_mem = vec![0u32; arena / 4];
    for op in 0..ops {
        for (m, &cut) in cuts.iter().enumerate() {
            let mut b: Xip = Xip {
                flash: MemFlash::new(start.clone()),
                xip: Some(MAPPED),
            };
            b.flash.cut_power_with(b.flash.ops() + op, cut);
            assert!(
                run(&mut b).is_err(),
                "op {op}: the cut must stop the install"
            );
            b.flash.power_on();
            // The next boot: the old version, or the new one if the commit's record got through.
            let f = live(&mut b, "provision");
            let l = rota_core::load(&mut b, &mut arena_mem, "provision")
                .unwrap_or_else(|e| panic!("op {op} mode {m}: {e:?}"));
            if f.digest == rota_blob::sha256(v1) {
                assert_eq!(f.data_offset, old.data_offset, "op {op} mode {m}");
            } else {
                assert_eq!(f.digest, rota_blob::sha256(v2), "op {op} mode {m}");
                assert_eq!(f.data_offset, new_at, "op {op} mode {m}");
            }
            assert_eq!(
                l.base,
                MAPPED
                    + f.data_offset
                    + header(if f.data_offset == old.data_offset {
                        v1
                    } else {
                        v2
                    })
                    .image_offset()
            );
            // The old version's bytes were never touched (nothing collects while it may run).
            assert_eq!(
                b.flash.contents()[extent.clone()],
                start[extent.clone()],
                "op {op} mode {m}"
            );
            // The next session resumes (or restarts) and completes it.
            if f.digest == rota_blob::sha256(v1) {
                run(&mut b).unwrap_or_else(|e| panic!("op {op} mode {m}: resumed: {e}"));
            }
            let f = live(&mut b, "provision");
            assert_eq!(f.digest, rota_blob::sha256(v2), "op {op} mode {m}");
            assert_eq!(
                stored(&mut b, "provision"),
                expected(v2, f.data_offset, MAPPED),
                "op {op} mode {m}"
            );
            assert!(rota_core::load(&mut b, &mut arena_mem, "provision").is_ok());
        }
    }
    ops
}

#[test]
fn a_power_cut_during_a_relocating_install_leaves_the_old_or_the_new_version() {
    let ops = power_cut_at_every_operation(
        &relocatable(1500, 21),
        &relocatable(1700, 22),
        ARENA_WORDS * 4,
        &CUTS,
    );
    assert!(ops > 20, "{ops} operations");
}

#[test]
fn a_power_cut_during_the_install_of_the_real_lx106_provision_leaves_the_old_or_the_new() {
    let v2 = std::fs::read(artifact("lx106/provision.blob")).unwrap();
    // The previous version: the same blob with another image word changed (a real table).
    let mut v1 = v2.clone();
    let h = header(&v2);
    let at = h.digest_offset() as usize - 4;
    v1[at] ^= 0x55;
    let n = v1.len() - 32;
    let d = rota_blob::sha256(&v1[..n]);
    v1[n..].copy_from_slice(&d);
    let ops = power_cut_at_every_operation(&v1, &v2, 8192, &CUTS[..1]);
    assert!(ops > 64, "{ops} operations");
}

#[test]
fn a_relocated_blob_is_not_renamed_since_a_copy_could_not_run() {
    let blob = relocatable(1500, 9);
    let mut b = board(Some(MAPPED), &[]);
    install(&mut b, "provision", &blob, &[1024]).unwrap();
    let mut state = CoreState::new(&mut b, &HEAP, ARENA_WORDS * 4);
    let svc = services::table(&mut state);
    assert_eq!(
        svc.stage_rename(&name("provision"), &name("app")),
        status::ECORRUPT
    );
    assert!(matches!(svc.file_info(true, 0), Ok(None)), "nothing staged");
    assert!(load(&mut b, "provision").is_ok());
}

#[test]
fn writes_past_the_end_are_refused_by_the_store_as_before() {
    let blob = relocatable(1500, 4);
    let mut b = board(Some(MAPPED), &[]);
    let mut state = CoreState::new(&mut b, &HEAP, ARENA_WORDS * 4);
    let svc = services::table(&mut state);
    let n = name("provision");
    let d = rota_blob::sha256(&blob);
    assert_eq!(svc.stage_begin(&n, blob.len() as u32, &d, 1), 0);
    assert_eq!(svc.stage_write(&n, 0, &blob[..2000]), status::OK);
    for offset in [u32::MAX - 10, blob.len() as u32 - 4] {
        let r = svc.stage_write(&n, offset, &[0; 64]);
        assert!(r == status::EORDER || r == status::EFBIG, "{offset}: {r}");
    }
    // One byte too many, at the right offset: refused whole, before anything is written.
    let mut long = blob[2000..].to_vec();
    long.push(0);
    assert_eq!(svc.stage_write(&n, 2000, &long), status::EFBIG);
    assert_eq!(svc.stage_write(&n, 2000, &blob[2000..]), status::OK);
    assert_eq!(svc.stage_finish(&n), status::OK);
}
