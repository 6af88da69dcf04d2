//! rota-loader's verification and loading over a NOR flash double (rota-memflash).
//!
//! Input: as the `blob` target's (one control byte: bit 0 fixes the digest; the rest places the blob
//! and sizes the arena), then the blob (and whatever follows it in flash), written into a 3-sector
//! flash of 0xFF.
//!
//! Checks: no panic; `load` accepts exactly what `Blob::parse` accepts (for the blob's own ISA and
//! ABI) when the image fits the arena, and leaves the image relocated exactly as `relocate_into`
//! does; `verify_in_place` accepts a verified blob without relocations; a blob stored relocated
//! (`relocate_stored`) for its in-place address passes `verify_relocated_in_place` with its file
//! digest, and `read_as_built` gives back the blob as built.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rota_blob::{relocate_stored, sha256, Blob, Header, HeaderRepr, Isa, DIGEST_SIZE, HEADER_SIZE};
use rota_loader::{
    in_place_base, load, read_as_built, verify_in_place, verify_relocated_in_place, Target,
};
use rota_memflash::MemFlash;

const FLASH: usize = 3 * 4096;
const MAPPED: u32 = 0x4020_0000;

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    if rest.len() > FLASH {
        return;
    }
    let mut bytes = rest.to_vec();
    // What follows a blob in flash is not the blob's: the blob is as long as its header says.
    let len = Header::new_checked(&bytes[..])
        .and_then(|h| HeaderRepr::parse(&h))
        .map_or(bytes.len(), |h| (h.total_size() as usize).min(bytes.len()));
    if control & 1 == 1 && len >= HEADER_SIZE + DIGEST_SIZE {
        let end = len - DIGEST_SIZE;
        let d = sha256(&bytes[..end]);
        bytes[end..len].copy_from_slice(&d);
    }
    // Offset: 0 or a 4-aligned place that still holds the whole input.
    let room = FLASH - bytes.len();
    let offset = (usize::from(control >> 1 & 7) * 1024).min(room) & !3;
    let mut mem = vec![0xFF; FLASH];
    mem[offset..offset + bytes.len()].copy_from_slice(&bytes);
    let parsed = Blob::parse(&bytes[..len]);
    let target = match &parsed {
        Ok(b) => Target {
            isa: b.header.isa,
            abi_version: b.header.abi_version,
        },
        Err(_) => Target {
            isa: if control & 0x10 == 0 {
                Isa::Lx106
            } else {
                Isa::Thumbv7m
            },
            abi_version: 1,
        },
    };
    let offset = offset as u32;
    let words = usize::from(control >> 5) * 128 + 16;
    let base = 0x2000_1000;

    let mut flash = MemFlash::new(mem.clone());
    let mut arena = vec![0u32; words];
    // SAFETY: the arena is a live buffer of `words` words that nothing else uses.
    let loaded = unsafe { load(&mut flash, offset, target, arena.as_mut_ptr(), words, base) };
    match &parsed {
        Ok(b) if b.header.image_size as usize <= words * 4 => {
            let l = loaded.expect("load refuses a blob Blob::parse accepts");
            assert_eq!((l.header, l.base), (b.header, base));
            let mut want = vec![0u8; b.header.image_size as usize];
            b.relocate_into(&mut want, base).unwrap();
            let got: Vec<u8> = arena.iter().flat_map(|w| w.to_le_bytes()).collect();
            assert_eq!(
                &got[..want.len()],
                &want[..],
                "load and relocate_into disagree"
            );
        }
        Ok(_) => assert!(loaded.is_err(), "an image over the arena was loaded"),
        Err(_) => assert!(loaded.is_err(), "load accepts what Blob::parse refuses"),
    }

    let in_place = verify_in_place(&mut flash, offset, target, MAPPED);
    if let Ok(b) = &parsed {
        if b.header.reloc_count == 0 && in_place_base(MAPPED, offset, &b.header).is_some() {
            assert_eq!(in_place.map(|l| l.header), Ok(b.header));
        }
    } else {
        assert!(
            in_place.is_err(),
            "verify_in_place accepts what Blob::parse refuses"
        );
    }

    // Stored relocated for its place in the mapping, as the store services write it.
    let Ok(b) = &parsed else {
        let mut sink = |_: &[u8]| Ok(());
        let _ = read_as_built(&mut flash, offset, MAPPED, &mut sink);
        let _ = verify_relocated_in_place(&mut flash, offset, target, MAPPED, &[0; 32]);
        return;
    };
    let Some(at) = in_place_base(MAPPED, offset, &b.header) else {
        return;
    };
    let bytes = &bytes[..len];
    let mut stored = bytes.to_vec();
    relocate_stored(&mut stored, at).unwrap();
    let mut mem2 = mem;
    mem2[offset as usize..offset as usize + stored.len()].copy_from_slice(&stored);
    let mut flash = MemFlash::new(mem2);
    let file = sha256(bytes);
    let l = verify_relocated_in_place(&mut flash, offset, target, MAPPED, &file)
        .expect("a blob stored relocated for its place verifies");
    assert_eq!((l.header, l.base), (b.header, at));
    let mut wrong = file;
    wrong[0] ^= 1;
    assert!(verify_relocated_in_place(&mut flash, offset, target, MAPPED, &wrong).is_err());
    let mut back = Vec::new();
    let mut sink = |c: &[u8]| {
        back.extend_from_slice(c);
        Ok(())
    };
    read_as_built(&mut flash, offset, at, &mut sink).unwrap();
    assert_eq!(back, bytes, "read_as_built gives the blob as built");
});
