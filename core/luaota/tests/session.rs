//! The device session, sans-IO: vectors, HI, commands, refusals, forgeries, framing.

mod common;

use common::*;
use rota_luaota::{
    render_hi, Config, Error, FileNumber, JsonError, NoUpdate, Refusal, Signer, FILES_MAX,
    LINE_LEN, NAME_MAX, SERVER_MAX,
};

const CHK: &str = "0123456789abcdef0123456789abcdef";

fn hexs(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn protocol_doc_tag_vectors() {
    let vectors = [
        (
            r#"{"s":"OK"}"#,
            "dc9d160b6f0f42221afdb8925e7990f6",
            "7990f6",
        ),
        (
            r#"{"r":"OK!"}"#,
            "feb3f0dae8577cb5c109f4cc2a4ef057",
            "4ef057",
        ),
        (
            r#"{"a":"pu","data":1024}"#,
            "60ec65c0c6edcb80e6d7ac74b6073644",
            "073644",
        ),
        (
            r#"{"s":"OK","lcsize":82}"#,
            "509e4a9238bcd428c299cf44b933a009",
            "33a009",
        ),
        (
            r#"{"a":"dl","data":5,"name":"tiny.txt"}"#,
            "3ce0da6750263d09c601f60e86987b5d",
            "987b5d",
        ),
        (
            r#"{"leave":0,"port":8266,"ssid":"YourSID","spwd":"YourSSIDpwd","server":"127.0.0.1","id":11223344,"a":"HI"}"#,
            "8af8c4117bde357adccf7fcf1e9e3162",
            "9e3162",
        ),
    ];
    let signer = Signer::new(SECRET);
    for (json, mac, tag) in vectors {
        assert_eq!(hexs(&signer.hmac(json.as_bytes())), mac, "{json}");
        assert_eq!(&signer.tag(json.as_bytes()), tag.as_bytes(), "{json}");
        assert!(signer.verify(json.as_bytes(), tag.as_bytes()));
        assert!(!signer.verify(json.as_bytes(), b"000000"));
        assert!(!signer.verify(json.as_bytes(), &tag.as_bytes()[..5]));
        assert!(!Signer::new(b"other").verify(json.as_bytes(), tag.as_bytes()));
    }
    // Keys over 64 bytes are hashed first (RFC 2104); they must not be truncated.
    let long = [b'k'; 200];
    assert_ne!(
        Signer::new(&long).hmac(b"msg"),
        Signer::new(&long[..64]).hmac(b"msg")
    );
}

#[test]
fn hi_matches_the_protocol_vector() {
    let mut buf = [0u8; 256];
    let n = render_hi(&mut buf, ID, &config(), Some((b"YourSID", b"YourSSIDpwd"))).unwrap();
    let json = &buf[..n];
    assert_eq!(
        json,
        br#"{"leave":0,"port":8266,"ssid":"YourSID","spwd":"YourSSIDpwd","server":"127.0.0.1","id":11223344,"a":"HI"}"#
    );
    assert_eq!(&Signer::new(SECRET).tag(json), b"9e3162");
    assert_eq!(
        render_hi(
            &mut buf[..n - 1],
            ID,
            &config(),
            Some((b"YourSID", b"YourSSIDpwd"))
        ),
        None
    );
}

#[test]
fn session_sends_the_hi_first_without_secret_or_wifi() {
    let mut cfg = config();
    cfg.leave = 1;
    cfg.chk = Some(*b"0123456789abcdef0123456789abcdef");
    for (name, n) in [("init.lc", 7u32), ("a \"q\"\\.txt", 4_000_000_000)] {
        cfg.files
            .push(FileNumber {
                name: heapless::Vec::from_slice(name.as_bytes()).unwrap(),
                number: n,
            })
            .unwrap();
    }
    let r = run_with(&cfg, MemStore::default(), Sizes::default(), b"", |_| 1, 5);
    assert_eq!(r.result, Ok(None));
    let expected = format!(
        r#"{{"leave":1,"port":8266,"server":"127.0.0.1","chk":"{CHK}","files":{{"init.lc":7,"a \"q\"\\.txt":4000000000}},"id":11223344,"a":"HI"}}"#
    );
    assert_eq!(r.sent, line(&expected));
    let parsed: serde_json::Value = serde_json::from_str(&expected).unwrap();
    assert_eq!(parsed["files"]["a \"q\"\\.txt"], 4_000_000_000u64);
    assert!(!String::from_utf8_lossy(&r.sent).contains("supersekrit"));
    assert!(!String::from_utf8_lossy(&r.sent).contains("ssid"));
    // A chk without files still sends an (empty) map; a fresh device sends neither.
    assert!(!String::from_utf8_lossy(&hi_line(&config())).contains("files"));
}

/// The longest config this device can hold.
fn full_config() -> Config {
    let mut cfg = Config::new(&[b's'; SERVER_MAX], 65535).unwrap();
    cfg.leave = u32::MAX;
    cfg.chk = Some([b'f'; 32]);
    for i in 0..FILES_MAX {
        let mut name = [b'n'; NAME_MAX];
        name[0] = b'0' + i as u8;
        cfg.files
            .push(FileNumber {
                name: heapless::Vec::from_slice(&name).unwrap(),
                number: u32::MAX,
            })
            .unwrap();
    }
    cfg
}

#[test]
fn a_full_config_fits_the_recommended_line() {
    let cfg = full_config();
    let hi = hi_line(&cfg);
    assert!(hi.len() <= LINE_LEN, "HI of {} bytes", hi.len());
    // The restart rota-server would send back for it.
    let files: Vec<String> = cfg
        .files
        .iter()
        .map(|f| format!("\"{}\":{}", std::str::from_utf8(&f.name).unwrap(), f.number))
        .collect();
    let restart = format!(
        r#"{{"leave":{},"port":65535,"server":"{}","a":"restart","chk":"{}","files":{{{}}}}}"#,
        u32::MAX,
        "s".repeat(SERVER_MAX),
        "f".repeat(32),
        files.join(",")
    );
    assert!(
        restart.len() + 6 <= LINE_LEN,
        "restart of {} bytes",
        restart.len() + 6
    );
    let r = run_with(
        &cfg,
        MemStore::default(),
        Sizes::default(),
        &line(&restart),
        |_| 1,
        64,
    );
    assert_eq!(r.result, Ok(Some(Outcome::Restart(cfg))));
}

#[test]
fn signed_ok_means_no_update() {
    let r = run(b"{\"r\":\"OK!\"}4ef057\n");
    assert_eq!(r.result, Ok(Some(Outcome::NoUpdate(NoUpdate::Signed))));
    assert_eq!(r.sent, hi_line(&config()), "nothing sent after the HI");
}

#[test]
fn unsigned_or_badly_tagged_first_record_is_no_update_and_reported() {
    for (input, why) in [
        (&b"{\"r\":\"OK!\"}\n"[..], NoUpdate::Unsigned),
        (b"{\"r\":\"OK!\"}4ef058\n", NoUpdate::Unsigned),
        (b"{\"x\":1,\"r\":\"OK!\"}zzzzzz\n", NoUpdate::Unsigned),
        (b"{\"a\":\"pu\",\"data\":1024}073645\n", NoUpdate::BadTag),
        (b"hello\n", NoUpdate::BadTag),
        (b"\n", NoUpdate::BadTag),
    ] {
        let r = run(input);
        assert_eq!(r.result, Ok(Some(Outcome::NoUpdate(why))), "{input:?}");
        assert!(r.store.files.is_empty());
    }
    // Signed but not OK! and not a command: acknowledged like any unknown command, no trust in `r`.
    let r = run(&line(r#"{"r":"OK?","x":1}"#));
    assert_eq!(r.result, Ok(None));
    assert!(r.sent.ends_with(b"{\"s\":\"OK\"}7990f6\n"));
}

/// A server stream installing `big.bin` (2500 bytes, 3 records) and `tiny.txt`, then restarting.
fn install_stream() -> (Vec<u8>, Vec<u8>) {
    let big: Vec<u8> = (0..2500u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut s = record(r#"{"a":"pu","data":1024}"#, &big[..1024]);
    s.extend(record(r#"{"a":"pu","data":1024}"#, &big[1024..2048]));
    s.extend(record(
        r#"{"a":"dl","data":452,"name":"big.bin"}"#,
        &big[2048..],
    ));
    s.extend(record(r#"{"a":"dl","data":5,"name":"tiny.txt"}"#, b"hello"));
    s.extend(record(r#"{"a":"dl","data":0,"name":"empty"}"#, b""));
    s.extend(line(&format!(
        r#"{{"leave":1,"port":9000,"server":"ota.example","ssid":"x","a":"restart","chk":"{CHK}","files":{{"big.bin":17,"tiny.txt":4294967295,"empty":0}}}}"#
    )));
    (s, big)
}

fn expected_restart() -> Config {
    let mut cfg = Config::new(b"ota.example", 9000).unwrap();
    cfg.leave = 1;
    cfg.chk = Some(*b"0123456789abcdef0123456789abcdef");
    for (name, number) in [("big.bin", 17), ("tiny.txt", u32::MAX), ("empty", 0)] {
        cfg.files
            .push(FileNumber {
                name: heapless::Vec::from_slice(name.as_bytes()).unwrap(),
                number,
            })
            .unwrap();
    }
    cfg
}

#[test]
fn files_are_stored_whole_and_restart_carries_the_new_config() {
    let (input, big) = install_stream();
    let r = run(&input);
    assert_eq!(r.result, Ok(Some(Outcome::Restart(expected_restart()))));
    assert_eq!(r.used, input.len());
    assert_eq!(r.store.files[&b"big.bin"[..]], big);
    assert_eq!(r.store.files[&b"tiny.txt"[..]], b"hello");
    assert_eq!(r.store.files[&b"empty"[..]], b"");
    assert_eq!(r.store.puts.len(), 3, "one put per file, none per chunk");
    let mut expected = hi_line(&config());
    for _ in 0..5 {
        expected.extend_from_slice(b"{\"s\":\"OK\"}7990f6\n");
    }
    assert_eq!(r.sent, expected);
}

#[test]
fn every_segmentation_gives_the_same_session() {
    let (input, _) = install_stream();
    let whole = run(&input);
    let sizes = Sizes::default();
    let go = |split: &mut dyn FnMut(usize) -> usize, out| {
        run_with(&config(), MemStore::default(), sizes, &input, split, out)
    };
    assert_eq!(go(&mut |_| 1, 1), whole, "one byte at a time");
    for cut in 0..=input.len() {
        let mut first = true;
        let r = go(
            &mut |_| {
                if std::mem::take(&mut first) {
                    cut
                } else {
                    usize::MAX
                }
            },
            3,
        );
        assert_eq!(r, whole, "cut at {cut}");
    }
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for _ in 0..300 {
        let max = 1 + rng.below(1500);
        let out = 1 + rng.below(40);
        let mut rng2 = Rng(rng.next() | 1);
        assert_eq!(go(&mut |_| 1 + rng2.below(max), out), whole);
    }
}

#[test]
fn lua_sources_get_compile_fail_and_nothing_is_stored() {
    let mut input = record(r#"{"a":"pu","data":1024}"#, &[b'-'; 1024]);
    input.extend(record(r#"{"a":"cm","data":3,"name":"init.lua"}"#, b"x=1"));
    let r = run(&input);
    assert_eq!(r.result, Ok(None));
    assert_eq!(r.refusal, Some(Refusal::NoLua));
    assert!(r.store.files.is_empty());
    let reply = br#"{"s":"compile fail","err":"no Lua on this device"}"#;
    let tag = Signer::new(SECRET).tag(reply);
    let mut expected = hi_line(&config());
    expected.extend_from_slice(b"{\"s\":\"OK\"}7990f6\n");
    expected.extend_from_slice(reply);
    expected.extend_from_slice(&tag);
    expected.push(b'\n');
    assert_eq!(r.sent, expected);

    // A server that goes on to restart anyway would make the device claim the file: refused.
    input.extend(line(&format!(
        r#"{{"a":"restart","chk":"{CHK}","files":{{"init.lua":1}}}}"#
    )));
    assert_eq!(run(&input).result, Err(Error::Refused(Refusal::NoLua)));
}

#[test]
fn a_forged_record_mid_session_aborts_and_nothing_is_committed() {
    let (input, _) = install_stream();
    // Forge the restart: change a file number, keep the tag.
    let restart_at = input
        .windows(12)
        .position(|w| w == br#"{"leave":1,""#)
        .unwrap();
    let mut forged = input.clone();
    let n = forged[restart_at..]
        .windows(4)
        .position(|w| w == b":17,")
        .unwrap();
    forged[restart_at + n + 1] = b'9';
    let r = run(&forged);
    assert_eq!(r.result, Err(Error::BadTag));
    assert_eq!(r.used, restart_at, "the forged line is not consumed");

    // A forged `dl` stores nothing; the payload is never taken.
    let mut forged = record(r#"{"a":"pu","data":1024}"#, &[1; 1024]);
    let dl = record(r#"{"a":"dl","data":5,"name":"tiny.txt"}"#, b"hello");
    let mut bad = dl.clone();
    bad[20] = b'6';
    forged.extend(&bad);
    let r = run(&forged);
    assert_eq!(r.result, Err(Error::BadTag));
    assert!(r.store.files.is_empty());
    // Unsigned and too short after the first record: typed errors too.
    let mut short = record(r#"{"a":"pu","data":1}"#, b"x");
    short.extend(b"{\"r\":\"OK!\"}\n");
    assert_eq!(run(&short).result, Err(Error::TooShort));
}

#[test]
fn oversize_lines_are_refused_before_buffering() {
    let pad = |n: usize| {
        let json = format!(r#"{{"a":"zz","x":"{}"}}"#, "y".repeat(n - 24));
        line(&json)
    };
    let fits = pad(LINE_LEN + 1); // LINE_LEN bytes of JSON and tag, then the line feed
    assert_eq!(fits.len(), LINE_LEN + 1);
    let r = run(&fits);
    assert_eq!(r.result, Ok(None));
    assert!(r.sent.ends_with(b"{\"s\":\"OK\"}7990f6\n"));
    let long = pad(LINE_LEN + 2);
    for split in [1, 7, usize::MAX] {
        let r = run_with(
            &config(),
            MemStore::default(),
            Sizes::default(),
            &long,
            |_| split,
            64,
        );
        assert_eq!(r.result, Err(Error::LineTooLong), "split {split}");
        assert!(r.used <= LINE_LEN);
    }
    // An endless line without a line feed is refused as soon as it outgrows the buffer.
    let endless = vec![b'{'; 100_000];
    let r = run_with(
        &config(),
        MemStore::default(),
        Sizes::default(),
        &endless,
        |_| 100,
        64,
    );
    assert_eq!(r.result, Err(Error::LineTooLong));
}

#[test]
fn a_file_over_the_buffer_gets_write_failed_and_is_not_stored() {
    let sizes = Sizes {
        line: LINE_LEN,
        file: 2000,
    };
    let mut input = Vec::new();
    for _ in 0..2 {
        input.extend(record(r#"{"a":"pu","data":1024}"#, &[7; 1024]));
    }
    input.extend(record(r#"{"a":"pu","data":1024}"#, &[7; 1024]));
    input.extend(record(r#"{"a":"dl","data":10,"name":"big"}"#, &[7; 10]));
    input.extend(record(r#"{"a":"dl","data":10,"name":"small"}"#, &[8; 10]));
    let r = run_with(&config(), MemStore::default(), sizes, &input, |_| 333, 100);
    assert_eq!(r.result, Ok(None));
    assert_eq!(r.refusal, Some(Refusal::TooBig));
    // Refused at the first chunk that does not fit, with the limit in the reason the server logs.
    let wf = line(r#"{"s":"write failed","err":"file over 2000 bytes"}"#);
    let ok = line(r#"{"s":"OK"}"#);
    let mut expected = hi_line(&config());
    for reply in [&ok, &wf, &wf, &wf, &ok] {
        expected.extend_from_slice(reply);
    }
    assert_eq!(
        r.sent, expected,
        "the tail of a too-big file is never stored as a file"
    );
    assert_eq!(
        r.store.files.keys().collect::<Vec<_>>(),
        [&b"small".to_vec()]
    );

    // The store refusing a file: write failed too, and a later restart is refused.
    let store = MemStore {
        fail_put: true,
        ..Default::default()
    };
    let mut input = record(r#"{"a":"dl","data":1,"name":"f"}"#, b"x");
    input.extend(line(&format!(
        r#"{{"a":"restart","chk":"{CHK}","files":{{}}}}"#
    )));
    let r = run_with(
        &config(),
        store,
        Sizes::default(),
        &input,
        |_| usize::MAX,
        64,
    );
    assert_eq!(r.result, Err(Error::Refused(Refusal::WriteFailed)));
    assert!(r.sent.ends_with(&line(r#"{"s":"write failed"}"#)));
}

#[test]
fn ls_mv_ul_and_unknown_commands() {
    let store = MemStore::with(&[("a.txt", b"0123456789"), ("b\"q", b"xy")]);
    let mut input = line(r#"{"a":"ls"}"#);
    input.extend(line(r#"{"a":"ul","name":"a.txt","offset":2,"len":5}"#));
    input.extend(line(r#"{"a":"ul","name":"a.txt","offset":8,"len":500}"#));
    input.extend(line(r#"{"a":"ul","name":"nope","offset":0,"len":5}"#));
    input.extend(line(r#"{"a":"mv","from":"a.txt","to":"c.txt"}"#));
    input.extend(line(r#"{"a":"mv","from":"nope","to":"d"}"#));
    input.extend(line(r#"{"a":"mv","from":"b\"q","to":"b\"q"}"#));
    input.extend(line(
        r#"{"a":"whatever","x":[]}"#.replace("[]", "0").as_str(),
    ));
    input.extend(line(r#"{"a":"ls"}"#));
    let r = run_with(&config(), store, Sizes::default(), &input, |_| 5, 4);
    assert_eq!(r.result, Ok(None));
    let mut expected = hi_line(&config());
    for part in [
        line(r#"{"s":"OK","a.txt":10,"b\"q":2}"#),
        line(r#"{"s":"OK"}"#),
        b"23456".to_vec(),
        line(r#"{"s":"OK"}"#),
        b"89".to_vec(),
        line(r#"{"s":"read failed"}"#),
        line(r#"{"s":"OK"}"#),
        line(r#"{"s":"Rename failed"}"#),
        line(r#"{"s":"Rename failed"}"#),
        line(r#"{"s":"OK"}"#),
        line(r#"{"s":"OK","c.txt":10}"#),
    ] {
        expected.extend(part);
    }
    assert_eq!(
        String::from_utf8_lossy(&r.sent),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(
        r.store.files.keys().collect::<Vec<_>>(),
        [&b"c.txt".to_vec()],
        "mv x x deletes x"
    );
}

#[test]
fn ls_lists_what_fits_the_line_buffer() {
    let names: Vec<String> = (0..40).map(|i| format!("file-number-{i:02}.bin")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let r = run_with(
        &config(),
        MemStore::with(&files),
        Sizes {
            line: 200,
            file: 16,
        },
        &line(r#"{"a":"ls"}"#),
        |_| usize::MAX,
        64,
    );
    let reply = &r.sent[hi_line(&config()).len()..];
    let json = &reply[..reply.len() - 7];
    let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(json).unwrap();
    assert!(obj.len() > 2 && obj.len() < 41, "{} entries", obj.len());
    assert!(json.len() <= 200);
    assert!(Signer::new(SECRET).verify(json, &reply[reply.len() - 7..reply.len() - 1]));
}

#[test]
fn malformed_signed_records_give_typed_errors() {
    let cases: &[(&str, Error<StoreError>)] = &[
        (r#"{"a":"pu"}           "#, Error::Missing("data")),
        (r#"{"a":"pu","data":-1}"#, Error::Field("data")),
        (r#"{"a":"pu","data":"1"}"#, Error::Field("data")),
        (r#"{"a":"dl","data":1}"#, Error::Missing("name")),
        (r#"{"a":"mv","from":"x"}"#, Error::Missing("to")),
        (r#"{"a":"ul","name":"x","len":1}"#, Error::Missing("offset")),
        (r#"{"a":"restart","files":{}}"#, Error::Missing("chk")),
        (
            r#"{"a":"restart","chk":"x","files":{}}"#,
            Error::Field("chk"),
        ),
        (
            r#"{"a":"restart","chk":"0123456789abcdef0123456789abcdeg","files":{}}"#,
            Error::Field("chk"),
        ),
        (
            r#"{"a":"restart","chk":"0123456789abcdef0123456789abcdef"}"#,
            Error::Missing("files"),
        ),
        (
            r#"{"a":"restart","chk":"0123456789abcdef0123456789abcdef","files":[]}"#,
            Error::Json(rota_luaota::JsonFault {
                kind: JsonError::Unsupported,
                at: 64,
            }),
        ),
        (
            r#"{"a":"restart","chk":"0123456789abcdef0123456789abcdef","files":{"a":"1"}}"#,
            Error::Field("files"),
        ),
        (
            r#"{"a":"restart","chk":"0123456789abcdef0123456789abcdef","files":{"a":1.5}}"#,
            Error::Json(rota_luaota::JsonFault {
                kind: JsonError::NotInteger,
                at: 70,
            }),
        ),
        (
            r#"{"a":"restart","chk":"0123456789abcdef0123456789abcdef","files":{"12345678901234567890123456789012":1}}"#,
            Error::NameTooLong,
        ),
        (
            r#"{"a":"restart","chk":"0123456789abcdef0123456789abcdef","files":{},"port":65536}"#,
            Error::Field("port"),
        ),
        (
            r#"{"a":"restart","chk":"0123456789abcdef0123456789abcdef","files":{},"leave":"1"}"#,
            Error::Field("leave"),
        ),
        (
            r#"{"a":"restart","chk":"0123456789abcdef0123456789abcdef","files":{},"server":1}"#,
            Error::Field("server"),
        ),
    ];
    for (json, err) in cases {
        // After one good record, so that the first-record rule does not apply.
        let mut input = record(r#"{"a":"pu","data":1}"#, b"x");
        input.extend(line(json));
        assert_eq!(&run(&input).result, &Err(err.clone()), "{json}");
    }
    // More files than the config keeps numbers for: accepted, the first FILES_MAX keep theirs (the
    // others are sent again at the next update; `chk` alone makes the next check-in no-update).
    let many: Vec<String> = (0..=FILES_MAX).map(|i| format!("\"f{i}\":{i}")).collect();
    let json = format!(
        r#"{{"a":"restart","chk":"{CHK}","files":{{{}}}}}"#,
        many.join(",")
    );
    let Ok(Some(Outcome::Restart(cfg))) = run(&line(&json)).result else {
        panic!("a restart with {} files is refused", FILES_MAX + 1);
    };
    let kept: Vec<_> = cfg.files.iter().map(|f| f.number).collect();
    assert_eq!(kept, (0..FILES_MAX as u32).collect::<Vec<_>>());
    assert_eq!(cfg.chk.as_ref().map(|c| &c[..]), Some(CHK.as_bytes()));
    let json = format!(
        r#"{{"a":"restart","chk":"{CHK}","files":{{}},"server":"{}"}}"#,
        "s".repeat(SERVER_MAX + 1)
    );
    assert_eq!(run(&line(&json)).result, Err(Error::ServerTooLong));
    // A signed first record that is not JSON is an error, not "no update".
    assert!(matches!(
        run(&line("not json at all")).result,
        Err(Error::Json(_))
    ));
}

#[test]
fn after_an_error_the_session_stays_aborted() {
    use rota_luaota::{Poll, Session};
    let mut small = [0u8; 64];
    let mut file = [0u8; 16];
    let s = Session::new(
        SECRET,
        ID,
        &config(),
        MemStore::default(),
        &mut small,
        &mut file,
    );
    assert!(matches!(s, Err(Error::HiTooLong)));
    let mut line_buf = [0u8; 128];
    let mut s = Session::new(
        SECRET,
        ID,
        &config(),
        MemStore::default(),
        &mut line_buf,
        &mut file,
    )
    .unwrap();
    let mut out = [0u8; 256];
    assert_eq!(s.poll(), Poll::Transmit);
    assert_eq!(
        s.feed(b"{"),
        Ok(0),
        "no input taken while a reply is pending"
    );
    while s.transmit(&mut out).unwrap() > 0 {}
    assert_eq!(s.poll(), Poll::Receive);
    let good = record(r#"{"a":"pu","data":1}"#, b"x");
    let mut joined = good.clone();
    joined.extend(b"{\"a\":\"pu\",\"data\":1}bad000\n");
    assert_eq!(
        s.feed(&joined),
        Ok(good.len()),
        "stops after the record that needs a reply"
    );
    assert_eq!(s.poll(), Poll::Transmit);
    while s.transmit(&mut out).unwrap() > 0 {}
    assert_eq!(s.feed(&joined[good.len()..]), Err(Error::BadTag));
    assert_eq!(s.poll(), Poll::Aborted);
    assert_eq!(s.feed(b"x"), Err(Error::Aborted));
    assert_eq!(s.transmit(&mut out), Err(Error::Aborted));
    assert_eq!(s.outcome(), None);
}

#[test]
fn the_session_is_small() {
    // Everything but the caller's two buffers; the device keeps it on its stack or in its context.
    let size = std::mem::size_of::<rota_luaota::Session<'static, MemStore>>()
        - std::mem::size_of::<MemStore>();
    println!("Session: {size} bytes");
    assert!(size < 900, "{size} bytes");
}
