//! The loader over an in-memory NOR flash, with synthetic blobs (real overlays: tools/emu/tests).
use rota_blob::{emit_blob, Blob, Error, Isa};
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

/// A blob with relocations in a cluster and scattered, its image larger than a small arena.
fn relocatable() -> Vec<u8> {
    let image: Vec<u8> = (0..320u32)
        .flat_map(|i| (i.wrapping_mul(0x0104_0810) ^ 0x8000_0001).to_le_bytes())
        .collect();
    let relocs = [0, 4, 8, 12, 40, 44, 600, 1272, 1276];
    emit_blob(Isa::Lx106, 1, "provision", &image, 16, &relocs).unwrap()
}

const MAPPED: u32 = 0x4028_0000;

/// `blob` stored at `at` in a region mapped at `mapped`, relocated for its image's address there.
fn stored_relocated(blob: &[u8], at: u32, mapped: u32) -> (MemFlash<Vec<u8>>, u32) {
    let header = Blob::parse(blob).unwrap().header;
    let base = rota_loader::in_place_base(mapped, at, &header).unwrap();
    let mut stored = blob.to_vec();
    rota_blob::relocate_stored(&mut stored, base).unwrap();
    (flash_with(&[(at, stored)]), base)
}

fn in_place(
    f: &mut MemFlash<Vec<u8>>,
    at: u32,
    mapped: u32,
    digest: &[u8; 32],
) -> Result<rota_loader::Loaded, LoadError> {
    rota_loader::verify_relocated_in_place(f, at, T, mapped, digest)
}

/// The bytes `read_as_built` gives back.
fn as_built(f: &mut MemFlash<Vec<u8>>, at: u32, base: u32) -> Result<Vec<u8>, LoadError> {
    let mut out = Vec::new();
    rota_loader::read_as_built(f, at, base, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })?;
    Ok(out)
}

#[test]
fn read_as_built_un_relocates_exactly_the_relocated_words_and_checks_the_table() {
    let blob = relocatable();
    let (mut f, base) = stored_relocated(&blob, 4096, MAPPED);
    assert_ne!(&f.contents()[4096..4096 + blob.len()], &blob[..]);
    assert_eq!(as_built(&mut f, 4096, base), Ok(blob.clone()));
    // With another base, exactly the relocated words come out wrong.
    let other = as_built(&mut f, 4096, base + 4).unwrap();
    let image = 48 + 4 * 9;
    let differ: Vec<usize> = (0..blob.len())
        .step_by(4)
        .filter(|&o| other[o..o + 4] != blob[o..o + 4])
        .map(|o| o - image)
        .collect();
    assert_eq!(differ, [0, 4, 8, 12, 40, 44, 600, 1272, 1276]);
    // A relocation outside the image, or out of order, stops the reading.
    let entry = 4096 + 48 + 4 * 8;
    for bad in [1280u32, 1278, 1272] {
        f.contents_mut()[entry..entry + 4].copy_from_slice(&bad.to_le_bytes());
        assert_eq!(
            as_built(&mut f, 4096, base),
            Err(LoadError::Blob(Error::BadRelocation {
                index: 8,
                offset: bad
            }))
        );
    }
    // A sink's error stops it too.
    let (mut f, _) = stored_relocated(&blob, 4096, MAPPED);
    let r = rota_loader::read_as_built(&mut f, 4096, base, &mut |_| Err(Error::Sequence));
    assert_eq!(r, Err(LoadError::Blob(Error::Sequence)));
}

#[test]
fn a_blob_stored_relocated_runs_in_place_at_exactly_its_address() {
    let blob = relocatable();
    let digest = rota_blob::sha256(&blob);
    let (mut f, base) = stored_relocated(&blob, 4160, MAPPED);
    let l = in_place(&mut f, 4160, MAPPED, &digest).unwrap();
    assert_eq!(base, MAPPED + 4160 + 48 + 4 * 9);
    assert_eq!((l.base, l.entry), (base, base + 16));
    assert_eq!(
        as_built(&mut f, 4160, base),
        Ok(blob.clone()),
        "read back as built"
    );
    // The same bytes somewhere else (as if the store had moved them), under another mapping, or the
    // blob stored as received: each was relocated for another address than the one it would run at.
    let moved = f.contents()[4160..4160 + blob.len()].to_vec();
    let mut g = flash_with(&[(8192, moved)]);
    assert_eq!(
        in_place(&mut g, 8192, MAPPED, &digest),
        Err(LoadError::Blob(Error::DigestMismatch))
    );
    assert_eq!(
        in_place(&mut f, 4160, MAPPED + 0x1000, &digest),
        Err(LoadError::Blob(Error::DigestMismatch))
    );
    let mut g = flash_with(&[(4160, blob.clone())]);
    assert_eq!(
        in_place(&mut g, 4160, MAPPED, &digest),
        Err(LoadError::Blob(Error::DigestMismatch))
    );
    // A mapping that puts the image off word alignment cannot run it.
    assert_eq!(
        in_place(&mut f, 4160, MAPPED + 2, &digest),
        Err(LoadError::TooLarge)
    );
}

#[test]
fn every_corrupted_byte_of_a_relocated_blob_is_refused() {
    let blob = relocatable();
    let digest = rota_blob::sha256(&blob);
    let (good, _) = stored_relocated(&blob, 4096, MAPPED);
    for i in 0..blob.len() {
        for flip in [0x01u8, 0x80] {
            let mut f = MemFlash::new(good.contents().to_vec());
            f.contents_mut()[4096 + i] ^= flip;
            let r = in_place(&mut f, 4096, MAPPED, &digest);
            assert!(r.is_err(), "flip {flip:#x} at byte {i} was accepted");
        }
    }
}

#[test]
fn a_relocated_word_that_changed_is_refused_and_so_is_any_other() {
    let blob = relocatable();
    let digest = rota_blob::sha256(&blob);
    let (good, _) = stored_relocated(&blob, 4096, MAPPED);
    let image = 4096 + 48 + 4 * 9;
    // A relocated word one lower, as if relocated for a base 1 lower; and a plain word.
    for at in [image + 600, image + 604] {
        let mut f = MemFlash::new(good.contents().to_vec());
        let w = u32::from_le_bytes(f.contents()[at..at + 4].try_into().unwrap());
        f.contents_mut()[at..at + 4].copy_from_slice(&(w - 1).to_le_bytes());
        assert_eq!(
            in_place(&mut f, 4096, MAPPED, &digest),
            Err(LoadError::Blob(Error::DigestMismatch)),
            "word at {at}"
        );
    }
}

#[test]
fn an_altered_relocation_table_is_refused_even_with_the_blobs_digest_made_to_match() {
    let blob = relocatable();
    let digest = rota_blob::sha256(&blob);
    // Relocation 6 (image offset 600) moved to 604: still increasing, still inside the image.
    let entry = 48 + 4 * 6;
    let mut altered = blob.clone();
    altered[entry..entry + 4].copy_from_slice(&604u32.to_le_bytes());
    let (mut f, _) = stored_relocated(&blob, 4096, MAPPED);
    f.contents_mut()[4096 + entry..4096 + entry + 4].copy_from_slice(&604u32.to_le_bytes());
    assert_eq!(
        in_place(&mut f, 4096, MAPPED, &digest),
        Err(LoadError::Blob(Error::DigestMismatch)),
        "the blob's own digest"
    );
    // The altered blob with its own digest recomputed, stored relocated by its own table: a blob
    // consistent in itself, but not the file the store verified.
    let n = altered.len() - 32;
    let d = rota_blob::sha256(&altered[..n]);
    altered[n..].copy_from_slice(&d);
    let (mut f, base) = stored_relocated(&altered, 4096, MAPPED);
    assert_eq!(as_built(&mut f, 4096, base), Ok(altered.clone()));
    assert!(Blob::parse(&altered).is_ok());
    assert_eq!(
        in_place(&mut f, 4096, MAPPED, &digest),
        Err(LoadError::Blob(Error::DigestMismatch)),
        "the store's digest"
    );
    // A table out of order is refused as such.
    let (mut f, _) = stored_relocated(&blob, 4096, MAPPED);
    f.contents_mut()[4096 + entry..4096 + entry + 4].copy_from_slice(&40u32.to_le_bytes());
    assert_eq!(
        in_place(&mut f, 4096, MAPPED, &digest),
        Err(LoadError::Blob(Error::BadRelocation {
            index: 6,
            offset: 40
        }))
    );
}

#[test]
fn a_relocated_blob_for_another_core_is_refused_before_it_is_read_further() {
    let blob = relocatable();
    let digest = rota_blob::sha256(&blob);
    let (mut f, _) = stored_relocated(&blob, 4096, MAPPED);
    for target in [
        Target {
            isa: Isa::Thumbv7m,
            abi_version: 1,
        },
        Target {
            isa: Isa::Lx106,
            abi_version: 2,
        },
    ] {
        let r = rota_loader::verify_relocated_in_place(&mut f, 4096, target, MAPPED, &digest);
        assert!(
            matches!(
                r,
                Err(LoadError::Blob(
                    Error::WrongIsa { .. } | Error::AbiMismatch { .. }
                ))
            ),
            "{r:?}"
        );
    }
}
