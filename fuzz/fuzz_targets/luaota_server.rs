//! The server's side of luaOTA v1 (rota-server's `server/src/v1.rs`, compiled in as a module): the
//! record checks, the depth-checked JSON, and the typed HI, replies and commands.
//!
//! Input: one control byte, then a device line. Control bit 0 set: the line's JSON (up to its first
//! line feed) is signed and the line rebuilt as `json tag "\n"`, so the typed parsers behind the tag
//! check are reached.
//!
//! Checks: no panic; a line `parse_line` accepts is also a segment with no payload; a verified line's
//! object parses as the server does (HI, reply, command); replies and commands re-emit (`to_json`,
//! `emit_line`/`emit_record`) to JSON that parses back equal and lines that verify.
#![no_main]
#![allow(dead_code)]

#[path = "../../server/src/v1.rs"]
#[allow(unused_imports)]
mod v1;

use libfuzzer_sys::fuzz_target;
use v1::{CommandRepr, HiRepr, Record, ReplyRepr, Signer};

const SECRET: &[u8] = b"supersekrit";

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let signer = Signer::new(SECRET);
    let mut line = rest.to_vec();
    if control & 1 == 1 {
        let lf = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        line.truncate(lf);
        line.extend_from_slice(&signer.tag(&rest[..lf]));
        line.push(b'\n');
    }
    let _ = v1::parse_object(&line);
    if let Ok(seg) = Record::parse_segment(&line) {
        let _ = seg.verify(&signer);
        let _ = seg.object();
        let _ = seg.payload_of(seg.payload().len() as u64);
    }
    let Ok(record) = Record::parse_line(&line) else {
        return;
    };
    assert_eq!(
        Record::parse_segment(&line).map(|s| s.payload().len()),
        Ok(0)
    );
    if !record.verify(&signer) {
        return;
    }
    let Ok(obj) = record.object() else {
        return;
    };
    if let Ok(hi) = HiRepr::parse(obj.clone()) {
        for name in hi.files.keys() {
            assert!(hi.file_number(name).is_some());
        }
    }
    if let Ok(reply) = ReplyRepr::parse(&obj) {
        let json = reply.to_json();
        let back = v1::parse_object(json.as_bytes()).expect("a reply's JSON parses");
        assert_eq!(ReplyRepr::parse(&back).as_ref(), Ok(&reply));
        if let Ok(l) = v1::emit_line(&signer, &json) {
            assert!(Record::parse_line(&l).unwrap().verify(&signer));
        }
    }
    if let Ok(cmd) = CommandRepr::parse(&obj) {
        let json = cmd.to_json();
        let back = v1::parse_object(json.as_bytes()).expect("a command's JSON parses");
        assert_eq!(CommandRepr::parse(&back).as_ref(), Ok(&cmd));
        let payload = vec![0x55; (cmd.data_len() as usize).min(v1::MAX_CHUNK)];
        if let Ok(r) = v1::emit_record(&signer, &json, &payload) {
            assert!(r.len() <= v1::MAX_SEGMENT);
            let seg = Record::parse_segment(&r).unwrap();
            assert!(seg.verify(&signer));
            assert_eq!(seg.payload(), &payload[..]);
        }
    }
});
