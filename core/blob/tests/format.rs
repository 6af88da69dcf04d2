//! Format tests on synthetic blobs; tests on real packed overlays live in tools/pack/tests.
use proptest::prelude::*;
use rota_blob::{
    emit_blob, relocate_stored, relocate_word, sha256, unrelocate_word, Blob, Error, Header,
    HeaderRepr, Isa, Verifier, HEADER_SIZE,
};

fn sample() -> Vec<u8> {
    let image: Vec<u8> = (0..64u8).collect();
    emit_blob(Isa::Thumbv7m, 1, "init", &image, 8, &[0, 12, 60]).unwrap()
}

#[test]
fn round_trip_and_relocate() {
    let blob = sample();
    let b = Blob::parse(&blob).unwrap();
    assert_eq!(b.header.name.as_str(), "init");
    assert_eq!(b.header.reloc_count, 3);
    assert_eq!(b.relocs().collect::<Vec<_>>(), vec![0, 12, 60]);
    let mut out = vec![0u8; 64];
    b.relocate_into(&mut out, 0x2000_1000).unwrap();
    let w = |o: usize| u32::from_le_bytes(out[o..o + 4].try_into().unwrap());
    assert_eq!(w(0), 0x0302_0100 + 0x2000_1000);
    assert_eq!(w(4), 0x0706_0504, "unrelocated words are untouched");
    assert_eq!(w(60), 0x3f3e_3d3c + 0x2000_1000);
}

#[test]
fn every_truncation_is_refused() {
    let blob = sample();
    for len in 0..blob.len() {
        let e = Blob::parse(&blob[..len]).unwrap_err();
        assert!(matches!(e, Error::Truncated { .. }), "len {len}: {e:?}");
    }
    let mut longer = blob.clone();
    longer.push(0);
    assert_eq!(Blob::parse(&longer).unwrap_err(), Error::Sequence);
}

#[test]
fn every_single_byte_corruption_is_refused() {
    let blob = sample();
    for i in 0..blob.len() {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut bad = blob.clone();
            bad[i] ^= flip;
            assert!(
                Blob::parse(&bad).is_err(),
                "flip {flip:#x} at byte {i} accepted"
            );
        }
    }
}

#[test]
fn typed_errors_for_each_header_field() {
    let blob = sample();
    let cases: [(usize, u8, Error); 6] = [
        (0, b'X', Error::BadMagic),
        (4, 2, Error::UnsupportedFormat(2)),
        (12, 9, Error::UnknownIsa(9)),
        (13, 1, Error::Reserved),
        (20, b'I', Error::BadName),
        (6, 47, Error::BadHeaderSize(47)),
    ];
    for (at, val, want) in cases {
        let mut bad = blob.clone();
        bad[at] = val;
        let h = Header::new_checked(&bad[..]).unwrap();
        assert_eq!(HeaderRepr::parse(&h).unwrap_err(), want);
    }
}

#[test]
fn relocations_outside_or_unordered_are_refused() {
    let image = [0u8; 16];
    assert_eq!(
        emit_blob(Isa::Lx106, 1, "x", &image, 0, &[16]).unwrap_err(),
        Error::BadRelocation {
            index: 0,
            offset: 16
        }
    );
    assert_eq!(
        emit_blob(Isa::Lx106, 1, "x", &image, 0, &[2]).unwrap_err(),
        Error::BadRelocation {
            index: 0,
            offset: 2
        }
    );
    // Hand-made unsorted table (emit_blob sorts, so patch bytes and re-digest).
    let mut blob = emit_blob(Isa::Lx106, 1, "x", &image, 0, &[4, 8]).unwrap();
    blob[HEADER_SIZE..HEADER_SIZE + 4].copy_from_slice(&8u32.to_le_bytes());
    blob[HEADER_SIZE + 4..HEADER_SIZE + 8].copy_from_slice(&4u32.to_le_bytes());
    let n = blob.len() - 32;
    let d = rota_blob::sha256(&blob[..n]);
    blob[n..].copy_from_slice(&d);
    assert_eq!(
        Blob::parse(&blob).unwrap_err(),
        Error::BadRelocation {
            index: 1,
            offset: 4
        }
    );
}

#[test]
fn compatibility_checks() {
    let b = Blob::parse(&sample()).unwrap().header;
    assert_eq!(
        b.check_compatible(Isa::Lx106, 1, 4096).unwrap_err(),
        Error::WrongIsa {
            expected: Isa::Lx106,
            found: Isa::Thumbv7m
        }
    );
    assert_eq!(
        b.check_compatible(Isa::Thumbv7m, 2, 4096).unwrap_err(),
        Error::AbiMismatch {
            expected: 2,
            found: 1
        }
    );
    assert_eq!(
        b.check_compatible(Isa::Thumbv7m, 1, 32).unwrap_err(),
        Error::ImageTooLarge {
            size: 64,
            limit: 32
        }
    );
    b.check_compatible(Isa::Thumbv7m, 1, 64).unwrap();
}

#[test]
fn a_blob_relocated_for_storing_changes_exactly_its_relocation_words() {
    let blob = sample();
    let base = 0x4028_2f00;
    let mut stored = blob.clone();
    let header = relocate_stored(&mut stored, base).unwrap();
    let image = header.image_offset() as usize;
    for o in (0..blob.len()).step_by(4) {
        let w = |b: &[u8]| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let named = o >= image && [0, 12, 60].contains(&(o - image));
        let want = if named {
            relocate_word(w(&blob), base)
        } else {
            w(&blob)
        };
        assert_eq!(w(&stored), want, "word at {o}");
        if named {
            assert_eq!(
                unrelocate_word(w(&stored), base),
                w(&blob),
                "inverse at {o}"
            );
        }
    }
    // A refused blob is left as it was.
    let mut bad = blob.clone();
    bad[HEADER_SIZE] ^= 1;
    let copy = bad.clone();
    assert!(relocate_stored(&mut bad, base).is_err());
    assert_eq!(bad, copy);
}

#[test]
fn the_file_digest_is_the_sha256_of_the_whole_blob() {
    let blob = sample();
    let mut v = Verifier::new();
    v.feed(&blob[..blob.len() - 1]).unwrap();
    assert_eq!(v.file_digest(), None, "not before the blob is whole");
    v.feed(&blob[blob.len() - 1..]).unwrap();
    assert_eq!(v.file_digest(), Some(sha256(&blob)));
    assert_ne!(
        sha256(&blob)[..],
        blob[blob.len() - 32..],
        "not the blob's own digest"
    );
    assert_eq!(v.finish().unwrap(), Blob::parse(&blob).unwrap().header);
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Blob::parse(&bytes);
    }

    #[test]
    fn mutated_valid_blobs_never_panic_and_chunking_does_not_matter(
        edits in proptest::collection::vec((0usize..200, any::<u8>()), 0..4),
        chunk in 1usize..70,
    ) {
        let mut blob = sample();
        for (i, v) in edits { let n = blob.len(); blob[i % n] = v; }
        let whole = Blob::parse(&blob).map(|b| b.header);
        let mut v = Verifier::new();
        let streamed = blob.chunks(chunk).try_for_each(|c| v.feed(c)).and_then(|_| v.finish());
        prop_assert_eq!(whole, streamed);
    }
}
