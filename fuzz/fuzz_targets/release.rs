//! The release manifest and signature parser (rota-release), as a device and the server meet them.
//!
//! Input: one control byte, then a release file (manifest || 64-byte signature). Control bit 0 set:
//! the signature is replaced by a valid one of a fixed key over the manifest first, so mutations of
//! the manifest get past the signature and reach everything after it.
//!
//! Checks: no panic; an accepted manifest's entries are as many as it says, in strictly increasing
//! name order, each findable by name, and re-encode to exactly its bytes; its set digest is the one
//! `set_digest` computes over its entries; the signature verifies under the fixed key exactly when
//! it is the fixed key's signature over these bytes, and never under another key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rota_release::{
    encode, set_digest, sign, split_release, verify, Entry, Manifest, MANIFEST_MAX,
};

const SEED: [u8; 32] = [0x5a; 32];
const OTHER: [u8; 32] = [0xa5; 32];

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    let key = rota_release::public_key(&SEED).expect("a key");
    let other = rota_release::public_key(&OTHER).expect("a key");
    if control & 1 == 1 && bytes.len() >= 64 {
        let end = bytes.len() - 64;
        let s = sign(&bytes[..end], &SEED).expect("signs");
        bytes[end..].copy_from_slice(&s);
    }
    // Parsing alone, as the device's session does with a Release's manifest.
    let _ = Manifest::parse(&bytes);
    let Ok((manifest, signature)) = split_release(&bytes) else {
        return;
    };
    let m = manifest.as_bytes();
    assert!(m.len() <= MANIFEST_MAX);
    let entries: Vec<Entry<'_>> = manifest.entries().collect();
    assert_eq!(entries.len(), manifest.len());
    for pair in entries.windows(2) {
        assert!(pair[0].name < pair[1].name, "strictly increasing names");
    }
    for e in &entries {
        assert_eq!(manifest.find(e.name), Some(*e));
    }
    let mut out = vec![0u8; MANIFEST_MAX];
    let n = encode(
        manifest.security_version(),
        manifest.isa(),
        u32::from(manifest.abi()),
        &entries,
        &mut out,
    )
    .expect("an accepted manifest re-encodes");
    assert_eq!(&out[..n], m, "re-encoded byte for byte");
    assert_eq!(manifest.set_digest(), set_digest(entries.iter().copied()));

    let ours = sign(m, &SEED).expect("signs");
    let verified = verify(m, signature, &[key]).is_ok();
    assert_eq!(
        verified,
        *signature == ours,
        "verifies exactly when it is the key's signature"
    );
    assert!(verify(m, signature, &[other]).is_err() || *signature == sign(m, &OTHER).unwrap());
});
