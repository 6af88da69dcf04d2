//! The loader over an in-memory NOR flash, with synthetic blobs (real overlays: tools/emu/tests).
use rota_blob::{emit_blob, Error, Isa};
use rota_loader::{load, LoadError, Target};
use rota_memflash::MemFlash;

const T: Target = Target {
    isa: Isa::Lx106,
    abi_version: 1,
};

fn image() -> Vec<u8> {
    (0..64u32)
        .flat_map(|i| (i * 0x0101_0101).to_le_bytes())
        .collect()
}

fn flash_with(blobs: &[(u32, Vec<u8>)]) -> MemFlash<Vec<u8>> {
    let mut mem = vec![0xFF; 3 * 4096];
    for (at, b) in blobs {
        mem[*at as usize..*at as usize + b.len()].copy_from_slice(b);
    }
    MemFlash::new(mem)
}

fn load_into(
    flash: &mut MemFlash<Vec<u8>>,
    at: u32,
    words: usize,
    base: u32,
) -> (Result<rota_loader::Loaded, LoadError>, Vec<u32>) {
    let mut arena = vec![0u32; words];
    // SAFETY: the arena is a live buffer of `words` words.
    let r = unsafe { load(flash, at, T, arena.as_mut_ptr(), words, base) };
    (r, arena)
}

#[test]
fn loads_patches_and_reports_entry() {
    let b = emit_blob(Isa::Lx106, 1, "init", &image(), 8, &[4, 12]).unwrap();
    let mut f = flash_with(&[(4096, b)]);
    let (r, arena) = load_into(&mut f, 4096, 64, 0x4010_0000);
    let l = r.unwrap();
    assert_eq!(
        (l.base, l.entry, l.header.image_size),
        (0x4010_0000, 0x4010_0008, 256)
    );
    assert_eq!(arena[0], 0);
    assert_eq!(arena[1], 0x0101_0101 + 0x4010_0000);
    assert_eq!(arena[2], 0x0202_0202);
    assert_eq!(arena[3], 0x0303_0303 + 0x4010_0000);
}

#[test]
fn thumb_entry_has_the_thumb_bit() {
    let b = emit_blob(Isa::Thumbv7m, 1, "tick", &image(), 6, &[]).unwrap();
    let mut f = flash_with(&[(0, b)]);
    let mut arena = vec![0u32; 64];
    let t = Target {
        isa: Isa::Thumbv7m,
        abi_version: 1,
    };
    // SAFETY: as above.
    let l = unsafe { load(&mut f, 0, t, arena.as_mut_ptr(), 64, 0x2000_0000) }.unwrap();
    assert_eq!(l.entry, 0x2000_0007);
}

#[test]
fn an_image_larger_than_the_arena_is_refused_before_any_write() {
    let b = emit_blob(Isa::Lx106, 1, "init", &image(), 0, &[]).unwrap();
    let mut f = flash_with(&[(0, b)]);
    let (r, arena) = load_into(&mut f, 0, 63, 0x1000);
    assert_eq!(
        r.unwrap_err(),
        LoadError::Blob(Error::ImageTooLarge {
            size: 256,
            limit: 252
        })
    );
    assert!(arena.iter().all(|&w| w == 0));
}

#[test]
fn a_digest_mismatch_leaves_nothing_patched() {
    let mut b = emit_blob(Isa::Lx106, 1, "init", &image(), 0, &[4]).unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    let mut f = flash_with(&[(0, b)]);
    let (r, arena) = load_into(&mut f, 0, 64, 0x1000);
    assert_eq!(r.unwrap_err(), LoadError::Blob(Error::DigestMismatch));
    assert_eq!(
        arena[1], 0x0101_0101,
        "the relocation must not have been applied"
    );
}

#[test]
fn flash_read_errors_are_typed() {
    let b = emit_blob(Isa::Lx106, 1, "init", &image(), 0, &[]).unwrap();
    let n = b.len();
    let mut f = MemFlash::new(b[..n - 8].to_vec());
    let (r, _) = load_into(&mut f, 0, 64, 0x1000);
    assert!(matches!(r.unwrap_err(), LoadError::Flash(_)));
}

#[test]
fn a_relocation_free_blob_is_verified_for_running_in_place() {
    let b = emit_blob(Isa::Thumbv7m, 1, "provision", &image(), 6, &[]).unwrap();
    let mut f = flash_with(&[(4096, b.clone())]);
    let target = Target {
        isa: Isa::Thumbv7m,
        abi_version: 1,
    };
    let l = rota_loader::verify_in_place(&mut f, 4096, target, 0x30_0000).unwrap();
    let base = 0x30_0000 + 4096 + rota_blob::HEADER_SIZE as u32;
    assert_eq!((l.base, l.entry), (base, (base + 6) | 1));

    let mut corrupt = b;
    let last = corrupt.len() - 40;
    corrupt[last] ^= 1;
    let mut f = flash_with(&[(4096, corrupt)]);
    assert_eq!(
        rota_loader::verify_in_place(&mut f, 4096, target, 0x30_0000),
        Err(LoadError::Blob(Error::DigestMismatch))
    );
}

#[test]
fn a_blob_with_relocations_never_runs_in_place() {
    let b = emit_blob(Isa::Thumbv7m, 1, "app", &image(), 0, &[4]).unwrap();
    let mut f = flash_with(&[(0, b)]);
    let target = Target {
        isa: Isa::Thumbv7m,
        abi_version: 1,
    };
    assert_eq!(
        rota_loader::verify_in_place(&mut f, 0, target, 0x30_0000),
        Err(LoadError::TooLarge)
    );
}
