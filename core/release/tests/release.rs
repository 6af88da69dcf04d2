//! rota-release: the manifest's format and refusals, the set digest, signatures (RFC 8032 vectors,
//! key rotation, every mutation of a signed manifest), and the release blob check on synthesized
//! blobs.
use proptest::prelude::*;
use rota_release::*;

fn hex<const N: usize>(s: &str) -> [u8; N] {
    let v: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn sha(data: &[u8]) -> [u8; 32] {
    rota_blob::sha256(data)
}

const ABI: u32 = 4;

/// A manifest of files `name -> contents`.
fn manifest(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = ManifestBuilder::new(7, Isa::Lx106, ABI);
    for (name, data) in files {
        b.file(name.as_bytes(), data);
    }
    b.build().unwrap()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("file{i:02}")).collect()
}

#[test]
fn a_manifest_reads_back_what_was_built_in_name_order() {
    let bytes = manifest(&[("tick", b"t"), ("app", b"a"), ("init", b"")]);
    let m = Manifest::parse(&bytes).unwrap();
    assert_eq!(m.security_version(), 7);
    assert_eq!(m.isa(), Isa::Lx106);
    assert_eq!(m.abi(), 4);
    assert_eq!(m.len(), 3);
    let e: Vec<_> = m.entries().collect();
    assert_eq!(
        e.iter().map(|e| e.name).collect::<Vec<_>>(),
        [&b"app"[..], b"init", b"tick"]
    );
    assert_eq!(e[0].size, 1);
    assert_eq!(e[0].digest, &sha(b"a"));
    assert_eq!(e[0].version, file_version(&sha(b"a")));
    assert_eq!(m.find(b"init").unwrap().size, 0);
    assert_eq!(m.find(b"nope"), None);
    // The layout itself: header, then the first entry.
    assert_eq!(&bytes[0..4], b"RRM1");
    assert_eq!(&bytes[4..12], &[7, 0, 0, 0, 2, 3, 4, 0]);
    assert_eq!(&bytes[12..16], &[3, b'a', b'p', b'p']);
    assert_eq!(&bytes[16..20], &1u32.to_le_bytes());
    assert_eq!(&bytes[20..24], &file_version(&sha(b"a")).to_le_bytes());
    assert_eq!(&bytes[24..56], &sha(b"a"));
    assert_eq!(bytes.len(), 12 + 3 * ENTRY_FIXED + 3 + 4 + 4);
}

#[test]
fn zero_and_ten_entries_are_taken_eleven_refused() {
    let empty = manifest(&[]);
    assert_eq!(empty.len(), HEADER_SIZE);
    assert!(Manifest::parse(&empty).unwrap().is_empty());

    let ten = names(10);
    let files: Vec<(&str, &[u8])> = ten.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let bytes = manifest(&files);
    assert_eq!(Manifest::parse(&bytes).unwrap().len(), MAX_ENTRIES);

    let eleven = names(11);
    let mut b = ManifestBuilder::new(1, Isa::Thumbv7m, ABI);
    for n in &eleven {
        b.file(n.as_bytes(), b"x");
    }
    assert_eq!(b.build(), Err(ManifestError::TooManyEntries(11)));
    // A count byte of 11 is refused before any entry is read.
    let mut forged = bytes.clone();
    forged[9] = 11;
    assert_eq!(
        Manifest::parse(&forged),
        Err(ManifestError::TooManyEntries(11))
    );
}

#[test]
fn the_longest_manifest_is_manifest_max() {
    let long: Vec<String> = (0..10).map(|i| format!("{i}{}", "n".repeat(30))).collect();
    let files: Vec<(&str, &[u8])> = long.iter().map(|n| (n.as_str(), &b""[..])).collect();
    let bytes = manifest(&files);
    assert_eq!(bytes.len(), MANIFEST_MAX);
    assert_eq!(MANIFEST_MAX, 732);
    assert_eq!(RELEASE_MAX, 796);
    assert!(Manifest::parse(&bytes)
        .unwrap()
        .entries()
        .all(|e| e.name.len() == 31));
}

#[test]
fn names_of_1_to_31_bytes_only() {
    let n31 = "a".repeat(31);
    assert!(Manifest::parse(&manifest(&[(&n31, b"")])).is_ok());
    let n32 = "a".repeat(32);
    let mut b = ManifestBuilder::new(1, Isa::Thumbv7m, ABI);
    b.file(n32.as_bytes(), b"");
    assert_eq!(
        b.build(),
        Err(ManifestError::NameLength { index: 0, len: 32 })
    );
    let mut b = ManifestBuilder::new(1, Isa::Thumbv7m, ABI);
    b.file(b"a", b"").file(b"", b"");
    assert_eq!(
        b.build(),
        Err(ManifestError::NameLength { index: 0, len: 0 })
    );
    // On the wire: a length byte of 0 or 32 in the second entry.
    let mut bytes = manifest(&[("a", b""), ("b", b"")]);
    let second = HEADER_SIZE + ENTRY_FIXED + 1;
    for len in [0u8, 32, 255] {
        bytes[second] = len;
        assert_eq!(
            Manifest::parse(&bytes),
            Err(ManifestError::NameLength {
                index: 1,
                len: len.into()
            })
        );
    }
}

#[test]
fn names_must_increase_so_no_duplicates() {
    static D: [u8; 32] = [0; 32];
    let entry = |name: &'static [u8], d: &'static [u8; 32]| Entry {
        name,
        size: 1,
        version: 1,
        digest: d,
    };
    let d = &D;
    let mut out = [0u8; MANIFEST_MAX];
    let enc = |entries: &[Entry<'_>], out: &mut [u8]| encode(1, Isa::Thumbv7m, ABI, entries, out);
    assert!(enc(&[entry(b"a", d), entry(b"b", d)], &mut out).is_ok());
    assert_eq!(
        enc(&[entry(b"b", d), entry(b"a", d)], &mut out),
        Err(ManifestError::NotSorted { index: 1 })
    );
    assert_eq!(
        enc(&[entry(b"a", d), entry(b"a", d)], &mut out),
        Err(ManifestError::NotSorted { index: 1 })
    );
    // A prefix sorts first ("ab" < "abc"), by bytes ("B" < "a").
    assert!(enc(
        &[entry(b"B", d), entry(b"ab", d), entry(b"abc", d)],
        &mut out
    )
    .is_ok());
    let mut b = ManifestBuilder::new(1, Isa::Thumbv7m, ABI);
    b.file(b"app", b"1").file(b"app", b"2");
    assert_eq!(b.build(), Err(ManifestError::NotSorted { index: 1 }));

    // The same refusal from parse: swap two entries' names of equal length.
    let mut bytes = manifest(&[("aa", b""), ("bb", b"")]);
    let second = HEADER_SIZE + ENTRY_FIXED + 2;
    bytes[HEADER_SIZE + 1..HEADER_SIZE + 3].copy_from_slice(b"bb");
    assert_eq!(
        Manifest::parse(&bytes),
        Err(ManifestError::NotSorted { index: 1 })
    );
    bytes[second + 1..second + 3].copy_from_slice(b"ba");
    assert_eq!(
        Manifest::parse(&bytes),
        Err(ManifestError::NotSorted { index: 1 })
    );
}

#[test]
fn header_refusals_name_the_field() {
    let good = manifest(&[("app", b"a")]);
    assert_eq!(
        Manifest::parse(&good[..11]),
        Err(ManifestError::TooShort { len: 11 })
    );
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(Manifest::parse(&bad), Err(ManifestError::BadMagic));
    let mut bad = good.clone();
    bad[8] = 3;
    assert_eq!(Manifest::parse(&bad), Err(ManifestError::UnknownIsa(3)));
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        Manifest::parse(&long),
        Err(ManifestError::TrailingBytes { extra: 1 })
    );
    for cut in HEADER_SIZE..good.len() {
        assert_eq!(
            Manifest::parse(&good[..cut]),
            Err(ManifestError::Truncated { index: 0 }),
            "{cut}"
        );
    }
    let mut out = [0u8; 64];
    assert_eq!(
        encode(1, Isa::Lx106, 0x1_0000, &[], &mut out),
        Err(ManifestError::AbiTooLarge(0x1_0000))
    );
    assert_eq!(
        encode(1, Isa::Lx106, 1, &[], &mut out[..11]),
        Err(ManifestError::BufferTooSmall { need: 12 })
    );
}

#[test]
fn set_digest_is_over_the_canonical_entries_and_order_sensitive() {
    // No entries: the domain alone.
    assert_eq!(
        set_digest([]),
        hex::<32>("cf783244385ca0a92e001730ff8c8a44f7794c67983523c4d763d205bf3d6636")
    );
    let bytes = manifest(&[("app", b"a"), ("init", b"i"), ("tick", b"t")]);
    let m = Manifest::parse(&bytes).unwrap();
    let entries: Vec<Entry<'_>> = m.entries().collect();
    // The manifest's entries are its canonical encodings, back to back.
    let mut canonical = SET_DOMAIN.to_vec();
    for e in &entries {
        let mut buf = [0u8; ENTRY_MAX];
        let n = e.encode(&mut buf).unwrap();
        assert_eq!(n, e.encoded_len());
        canonical.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&canonical[SET_DOMAIN.len()..], &bytes[HEADER_SIZE..]);
    assert_eq!(set_digest(entries.iter().copied()), sha(&canonical));
    assert_eq!(m.set_digest(), sha(&canonical));
    // Another order, or any field changed, is another digest.
    let mut swapped = entries.clone();
    swapped.swap(0, 1);
    assert_ne!(set_digest(swapped), m.set_digest());
    let mut other = entries.clone();
    other[2].version ^= 1;
    assert_ne!(set_digest(other), m.set_digest());
    let mut other = entries.clone();
    other[2].size += 1;
    assert_ne!(set_digest(other), m.set_digest());
    assert_ne!(set_digest(entries[..2].iter().copied()), m.set_digest());
    // The header (security version, ISA, ABI) is not part of it: the file set only.
    let again = {
        let mut b = ManifestBuilder::new(99, Isa::Thumbv7m, 3);
        b.file(b"tick", b"t").file(b"app", b"a").file(b"init", b"i");
        b.build().unwrap()
    };
    assert_eq!(
        Manifest::parse(&again).unwrap().set_digest(),
        m.set_digest()
    );
}

#[test]
fn file_versions_are_the_digests_first_word_never_zero() {
    // SHA-256("") = e3b0c442...
    assert_eq!(file_version(&sha(b"")), 0x42c4_b0e3);
    assert_eq!(file_version(&[0; 32]), 1);
}

// RFC 8032, section 7.1, tests 1 and 2.
const RFC1_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC1_PUB: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const RFC1_SIG: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
const RFC2_SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
const RFC2_PUB: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
const RFC2_SIG: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

#[test]
fn rfc8032_vectors_sign_and_verify() {
    for (seed, public, sig, msg) in [
        (RFC1_SEED, RFC1_PUB, RFC1_SIG, &b""[..]),
        (RFC2_SEED, RFC2_PUB, RFC2_SIG, &[0x72][..]),
    ] {
        let (seed, public, sig) = (hex::<32>(seed), hex::<32>(public), hex::<64>(sig));
        assert_eq!(public_key(&seed), Some(public));
        assert_eq!(sign(msg, &seed), Some(sig));
        assert_eq!(verify(msg, &sig, &[public]), Ok(0));
    }
    assert_eq!(public_key(&[0; 32]), None, "the all-zero seed is refused");
}

/// The identity point: a valid encoding of a point of small order.
const SMALL_ORDER: [u8; 32] = {
    let mut k = [0u8; 32];
    k[0] = 1;
    k
};

#[test]
fn keys_are_tried_in_turn_and_refusals_are_typed() {
    let (seed1, seed2) = (hex::<32>(RFC1_SEED), hex::<32>(RFC2_SEED));
    let (k1, k2) = (public_key(&seed1).unwrap(), public_key(&seed2).unwrap());
    let m = manifest(&[("app", b"a")]);
    let sig2 = sign(&m, &seed2).unwrap();
    // Rotation: the second key signs.
    assert_eq!(verify(&m, &sig2, &[k1, k2]), Ok(1));
    assert_eq!(verify(&m, &sig2, &[k2, k1]), Ok(0));
    // A wrong key.
    assert_eq!(verify(&m, &sig2, &[k1]), Err(SignatureError::BadSignature));
    assert_eq!(verify(&m, &sig2, &[]), Err(SignatureError::NoKeys));
    // An unusable key does not stop the good one.
    assert_eq!(verify(&m, &sig2, &[SMALL_ORDER, k2]), Ok(1));
    assert_eq!(
        verify(&m, &sig2, &[SMALL_ORDER]),
        Err(SignatureError::BadKey { index: 0 })
    );
    assert_eq!(
        verify(&m, &sig2, &[k1, SMALL_ORDER]),
        Err(SignatureError::BadSignature)
    );
    // Not a point at all (y = 2 has no x on the curve).
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    assert_eq!(
        verify(&m, &sig2, &[not_a_point]),
        Err(SignatureError::BadKey { index: 0 })
    );
    // S + L (the group order) is the same scalar, non-canonical: refused.
    let l = hex::<32>("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
    let mut malleated = sig2;
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(malleated[32 + i]) + u16::from(l[i]) + carry;
        malleated[32 + i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(
        verify(&m, &malleated, &[k2]),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn release_files_split_into_manifest_and_signature() {
    let seed = hex::<32>(RFC1_SEED);
    let m = manifest(&[("app", b"a"), ("tick", b"t")]);
    let sig = sign(&m, &seed).unwrap();
    let mut release = m.clone();
    release.extend_from_slice(&sig);
    let (manifest, signature) = split_release(&release).unwrap();
    assert_eq!(manifest.as_bytes(), &m[..]);
    assert_eq!(signature, &sig);
    assert!(split_release(&release[..63]).is_err());
    assert!(split_release(&release[1..]).is_err());
}

#[test]
fn every_mutation_of_a_signed_manifest_is_refused_or_fails_verification() {
    let seed = hex::<32>(RFC2_SEED);
    let key = public_key(&seed).unwrap();
    let m = manifest(&[
        ("app", b"a"),
        ("init", b"i"),
        ("provision", b"p"),
        ("tick", b"t"),
    ]);
    let sig = sign(&m, &seed).unwrap();
    assert_eq!(verify(&m, &sig, &[key]), Ok(0));
    let accepted = |bytes: &[u8], sig: &[u8; 64]| {
        Manifest::parse(bytes).is_ok() && verify(bytes, sig, &[key]).is_ok()
    };
    for i in 0..m.len() {
        for v in [
            0x00,
            0x01,
            0x80,
            0xff,
            m[i] ^ 0x01,
            m[i] ^ 0x20,
            m[i].wrapping_add(1),
        ] {
            if v == m[i] {
                continue;
            }
            let mut bad = m.clone();
            bad[i] = v;
            assert!(!accepted(&bad, &sig), "byte {i} = {v:#x}");
        }
    }
    for cut in 0..m.len() {
        assert!(!accepted(&m[..cut], &sig), "cut at {cut}");
    }
    let mut longer = m.clone();
    longer.push(0);
    assert!(!accepted(&longer, &sig));
    // And every bit of the signature.
    for i in 0..64 * 8 {
        let mut bad = sig;
        bad[i / 8] ^= 1 << (i % 8);
        assert!(!accepted(&m, &bad), "signature bit {i}");
    }
}

/// A valid blob: `image` with relocations `relocs`, for `isa` and `abi`.
fn blob(isa: Isa, abi: u32, relocs: &[u32]) -> Vec<u8> {
    let image: Vec<u8> = (0..256u32).map(|i| (i * 13) as u8).collect();
    rota_blob::emit_blob(isa, abi, "app", &image, 8, relocs).unwrap()
}

#[test]
fn blobs_are_checked_as_the_device_loader_checks_them() {
    let good = blob(Isa::Lx106, ABI, &[0, 16, 200]);
    assert!(check_blob(&good, Isa::Lx106, ABI).is_ok());
    assert_eq!(
        check_blob(&good, Isa::Thumbv7m, ABI),
        Err(rota_blob::Error::WrongIsa {
            expected: Isa::Thumbv7m,
            found: Isa::Lx106
        })
    );
    assert_eq!(
        check_blob(&good, Isa::Lx106, ABI + 1),
        Err(rota_blob::Error::AbiMismatch {
            expected: ABI + 1,
            found: ABI
        })
    );
    // A blob far larger than any arena is fine: it runs in place.
    let big = rota_blob::emit_blob(Isa::Thumbv7m, ABI, "provision", &[0; 60_000], 0, &[]).unwrap();
    assert!(check_blob(&big, Isa::Thumbv7m, ABI).is_ok());
    // Every single-byte change and every truncation is refused.
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x40;
        assert!(check_blob(&bad, Isa::Lx106, ABI).is_err(), "byte {i}");
    }
    for cut in 0..good.len() {
        assert!(
            check_blob(&good[..cut], Isa::Lx106, ABI).is_err(),
            "cut {cut}"
        );
    }
    let mut corrupt = good.clone();
    corrupt[100] ^= 1;
    assert_eq!(
        check_blob(&corrupt, Isa::Lx106, ABI),
        Err(rota_blob::Error::DigestMismatch)
    );
}

#[test]
fn a_release_is_refused_naming_the_first_bad_blob_and_data_is_not_looked_at() {
    let app = blob(Isa::Thumbv7m, ABI, &[4]);
    let other_isa = blob(Isa::Lx106, ABI, &[]);
    let names = blob_names(b"main");
    assert_eq!(names, [&b"init"[..], b"tick", b"provision", b"main"]);
    let release = |files: &[(&'static str, &[u8])]| -> Vec<(Vec<u8>, Vec<u8>)> {
        files
            .iter()
            .map(|(n, d)| (n.as_bytes().to_vec(), d.to_vec()))
            .collect()
    };
    let check = |files: &[(Vec<u8>, Vec<u8>)]| -> Result<(), (String, rota_blob::Error)> {
        check_release(
            files.iter().map(|(n, d)| (&n[..], &d[..])),
            &names,
            Isa::Thumbv7m,
            ABI,
        )
        .map_err(|r| (String::from_utf8(r.file.to_vec()).unwrap(), r.reason))
    };
    // `app` is data here (the config's application is `main`), as is `notes.txt`.
    let ok = release(&[
        ("main", &app),
        ("tick", &app),
        ("app", b"junk"),
        ("notes.txt", b"x"),
    ]);
    assert_eq!(check(&ok), Ok(()));
    let bad = release(&[("main", &app), ("tick", &other_isa), ("init", b"junk")]);
    let (file, reason) = check(&bad).unwrap_err();
    assert_eq!(file, "tick");
    assert!(matches!(reason, rota_blob::Error::WrongIsa { .. }));
    let refusal =
        check_release([(&b"init"[..], &b"junk"[..])], &names, Isa::Thumbv7m, ABI).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "`init`: truncated: need 48 bytes, have 4"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..900)) {
        if let Ok(m) = Manifest::parse(&bytes) {
            // Whatever parses reads back whole.
            prop_assert_eq!(m.entries().count(), m.len());
            prop_assert!(m.len() <= MAX_ENTRIES);
        }
        let _ = split_release(&bytes);
    }

    #[test]
    fn mutated_manifests_never_panic(
        n in 0usize..=10,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let names = names(n);
        let files: Vec<(&str, &[u8])> = names.iter().map(|s| (s.as_str(), s.as_bytes())).collect();
        let mut bytes = manifest(&files);
        for (at, v) in edits {
            let i = at % bytes.len();
            bytes[i] = v;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        if let Ok(m) = Manifest::parse(&bytes) {
            let entries: Vec<_> = m.entries().collect();
            prop_assert_eq!(entries.len(), m.len());
            prop_assert!(entries.windows(2).all(|w| w[0].name < w[1].name));
            prop_assert!(entries.iter().all(|e| (1..=31).contains(&e.name.len())));
        }
    }
}

#[test]
fn keys_are_read_from_hex_of_exactly_their_length() {
    let key = [0xabu8; 32];
    let text: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(rota_release::from_hex::<32>(&text), Some(key));
    assert_eq!(
        rota_release::from_hex::<32>(&text.to_uppercase()),
        Some(key)
    );
    assert_eq!(
        rota_release::from_hex::<32>(&format!(" {text}\n")),
        Some(key)
    );
    assert_eq!(rota_release::from_hex::<32>(&text[2..]), None, "too short");
    assert_eq!(
        rota_release::from_hex::<32>(&format!("{text}00")),
        None,
        "too long"
    );
    assert_eq!(rota_release::from_hex::<2>("12g4"), None, "not hex");
    assert_eq!(
        rota_release::from_hex::<2>("+1+2"),
        None,
        "a sign is not a digit"
    );
    assert_eq!(rota_release::from_hex::<2>("ééé"), None, "not ASCII");
}
