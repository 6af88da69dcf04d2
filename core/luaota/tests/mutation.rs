//! Never a panic: every truncation and every single-byte change of real records (raw, and re-signed so
//! that the parser sees them) gives an error or a valid result.

mod common;

use common::*;
use rota_luaota::{FILES_MAX, LINE_LEN, NAME_MAX};

/// Real server records of a full session, as (json, payload).
fn records() -> Vec<(String, Vec<u8>)> {
    let chk = "0123456789abcdef0123456789abcdef";
    vec![
        (r#"{"a":"pu","data":8}"#.into(), b"abcdefgh".to_vec()),
        (
            r#"{"a":"dl","data":3,"name":"d\"\\\/\u00e9\ud83d\ude00.txt"}"#.into(),
            b"xyz".to_vec(),
        ),
        (
            r#"{"a":"cm","data":2,"name":"init.lua"}"#.into(),
            b"--".to_vec(),
        ),
        (r#"{"a":"ls"}"#.into(), vec![]),
        (r#"{"a":"mv","from":"d","to":"e"}"#.into(), vec![]),
        (r#"{"a":"ul","len":4,"name":"e","offset":1}"#.into(), vec![]),
        (
            format!(
                r#"{{"leave":true,"port":8266,"server":"127.0.0.1","nm":null,"a":"restart","chk":"{chk}","files":{{"a.lc":1,"b.txt":4294967295}}}}"#
            ),
            vec![],
        ),
        (r#"{"r":"OK!"}"#.into(), vec![]),
    ]
}

fn stream(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    records.iter().flat_map(|(j, p)| record(j, p)).collect()
}

/// Runs and checks what any result must satisfy.
fn check(input: &[u8], split: usize) {
    let store = MemStore::with(&[("e", b"0123456789")]);
    let r = run_with(
        &config(),
        store,
        Sizes {
            line: LINE_LEN,
            file: 64,
        },
        input,
        |_| split,
        17,
    );
    assert!(r.used <= input.len());
    if let Ok(Some(Outcome::Restart(cfg))) = &r.result {
        assert!(cfg.files.len() <= FILES_MAX);
        assert!(cfg.files.iter().all(|f| f.name.len() <= NAME_MAX));
    }
}

const REPLACEMENTS: [u8; 12] = [
    0, b'"', b'\\', b'{', b'}', b':', b',', b'\n', b'9', b'-', b'u', 0xff,
];

#[test]
fn every_truncation_and_byte_change_of_the_stream() {
    let input = stream(&records());
    for len in 0..=input.len() {
        check(&input[..len], usize::MAX);
        check(&input[..len], 3);
    }
    for i in 0..input.len() {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut m = input.clone();
            m[i] ^= flip;
            check(&m, usize::MAX);
        }
        for b in REPLACEMENTS {
            let mut m = input.clone();
            m[i] = b;
            check(&m, 5);
        }
    }
}

#[test]
fn every_truncation_and_byte_change_of_each_record_re_signed() {
    let recs = records();
    let mut runs = 0;
    for (k, (json, payload)) in recs.iter().enumerate() {
        let json = json.as_bytes();
        let mut variants: Vec<Vec<u8>> = (0..json.len()).map(|len| json[..len].to_vec()).collect();
        for i in 0..json.len() {
            for b in REPLACEMENTS
                .iter()
                .copied()
                .chain([json[i] ^ 0x01, json[i] ^ 0x20])
            {
                let mut m = json.to_vec();
                m[i] = b;
                variants.push(m);
            }
        }
        for v in variants {
            // Signed, so it reaches the parser, as the first record and after a good one.
            let mut signed = v.clone();
            signed.extend_from_slice(&rota_luaota::Signer::new(SECRET).tag(&v));
            signed.push(b'\n');
            signed.extend_from_slice(payload);
            let mut after = record(r#"{"a":"pu","data":1}"#, b"p");
            after.extend_from_slice(&signed);
            after.extend(stream(&recs[k + 1..]));
            check(&signed, usize::MAX);
            check(&after, 2);
            runs += 2;
        }
    }
    assert!(runs > 5000, "{runs} runs");
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let alphabet = b"{}\":,\\/ubnrt0123456789-.eE[]truefalsnl pdmcsOK!\n\xff\x00";
    for _ in 0..3000 {
        let len = rng.below(300);
        let json: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let mut input = record(r#"{"a":"pu","data":1}"#, b"p");
        let mut signed = json.clone();
        signed.extend_from_slice(&rota_luaota::Signer::new(SECRET).tag(&json));
        signed.push(b'\n');
        input.extend(signed);
        check(&input, 1 + rng.below(50));
    }
}

#[test]
fn a_stalled_session_can_be_dropped_at_any_step() {
    // The caller's deadline may end a session anywhere: every step is a valid place to stop.
    let input = stream(&records()[..6]);
    for len in 0..input.len() {
        let r = run_with(
            &config(),
            MemStore::default(),
            Sizes::default(),
            &input[..len],
            |_| 1,
            1,
        );
        assert!(
            !matches!(r.result, Ok(Some(_))),
            "no outcome without restart or OK!"
        );
    }
}
