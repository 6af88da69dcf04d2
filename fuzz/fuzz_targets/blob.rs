//! The blob parser and the streaming verifier (rota-blob).
//!
//! Input: one control byte, then the blob. Control bit 0 set: the last 32 bytes are replaced by the
//! SHA-256 of the rest first, so mutations of the header, relocations and image get past the digest;
//! the other bits seed how the blob is cut into chunks for the streaming verifier.
//!
//! Checks: no panic; `Blob::parse` and a `Verifier` fed the same bytes in chunks agree; `file_digest`
//! is the SHA-256 of the whole blob; an accepted blob's header re-emits to one that parses equal, its
//! relocations and image have the header's counts, and relocating (into RAM, and as stored) then
//! un-relocating gives the image back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rota_blob::{
    relocate_stored, sha256, unrelocate_word, Blob, Header, HeaderRepr, Verifier, DIGEST_SIZE,
    HEADER_SIZE,
};

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if control & 1 == 1 && bytes.len() >= HEADER_SIZE + DIGEST_SIZE {
        let end = bytes.len() - DIGEST_SIZE;
        let d = sha256(&bytes[..end]);
        bytes[end..].copy_from_slice(&d);
    }

    let parsed = Blob::parse(&bytes);

    // The same bytes in chunks.
    let mut seed = u32::from(control >> 1) | 0x100;
    let mut v = Verifier::new();
    let mut fed = Ok(());
    let mut pos = 0;
    while pos < bytes.len() && fed.is_ok() {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = (seed as usize % 97 + 1).min(bytes.len() - pos);
        fed = v.feed(&bytes[pos..pos + n]);
        let _ = v.remaining();
        pos += n;
    }
    let file_digest = v.file_digest();
    let streamed = fed.and_then(|()| v.finish());
    assert_eq!(
        parsed.as_ref().map(|b| b.header).map_err(|e| *e),
        streamed,
        "Blob::parse and the chunked Verifier disagree"
    );

    let Ok(blob) = parsed else {
        return;
    };
    assert_eq!(file_digest, Some(sha256(&bytes)));
    let h = blob.header;
    assert_eq!(h.total_size() as usize, bytes.len());

    let mut head = [0u8; HEADER_SIZE];
    h.emit(&mut head).expect("an accepted header re-emits");
    let again = HeaderRepr::parse(&Header::new_checked(&head[..]).expect("re-emitted header"));
    assert_eq!(again, Ok(h));

    let relocs: Vec<u32> = blob.relocs().collect();
    assert_eq!(relocs.len(), h.reloc_count as usize);
    assert!(
        relocs.windows(2).all(|w| w[0] < w[1]),
        "relocations increase"
    );
    let image = blob.image();
    assert_eq!(image.len(), h.image_size as usize);

    let base = u32::from_le_bytes([control, 0x12, 0x34, 0x20]) & !3;
    let mut ram = vec![0u8; image.len()];
    blob.relocate_into(&mut ram, base)
        .expect("the image fits its own size");
    let mut stored = bytes.clone();
    assert_eq!(relocate_stored(&mut stored, base), Ok(h));
    let img = h.image_offset() as usize;
    assert_eq!(&stored[img..img + image.len()], &ram[..]);
    for &r in &relocs {
        let o = r as usize;
        let w = u32::from_le_bytes(ram[o..o + 4].try_into().unwrap());
        ram[o..o + 4].copy_from_slice(&unrelocate_word(w, base).to_le_bytes());
    }
    assert_eq!(&ram[..], image, "un-relocating gives the image as built");
});
