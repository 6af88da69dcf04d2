//! Whole sessions, device against server, over an in-memory link.

mod common;

use common::*;
use rota_wire::server::{self, Outgoing, ServerSession, Step};
use rota_wire::{
    config::config_version, sha256, DeviceConfig, DeviceSession, Error, Poll, Reason, MAX_FRAME,
};

fn three_files() -> Repo {
    repo(&[
        ("app", pattern(10_000, 1)),
        ("init", pattern(700, 2)),
        ("data.bin", pattern(4096, 3)),
    ])
}

#[test]
fn update_then_no_update_in_one_round_trip() {
    let repo = three_files();
    let mut store = MemStore::default();
    let run = check_in(&mut store, &repo, &mut pass());
    assert_eq!(run.server, Some(Ok(true)), "{run:?}");
    assert_eq!(run.device, Ok(Poll::Committed(1)));
    for (name, data) in &repo {
        assert_eq!(&store.files[name].0, data);
    }
    assert!(store.staged.is_empty());
    assert_eq!(run.data_bytes, 10_000 + 700 + 4096);
    // Windowed: acks only every 4 KB and at each file's end, never per chunk.
    assert_eq!(run.acks, [4096, 8192, 10_000, 4096, 700]);
    // The device's frames: Hello, per file Ready, its acks and Staged, then Committed. No frame per
    // 1 KB chunk (15 chunks were sent).
    assert_eq!(run.up_frames, 1 + 3 + 5 + 3 + 1);
    println!(
        "update: {} bytes up in {} frames, {} down in {} frames",
        run.up, run.up_frames, run.down, run.down_frames
    );

    let run = check_in(&mut store, &repo, &mut pass());
    assert_eq!(run.device, Ok(Poll::NoUpdate));
    assert_eq!(run.server, Some(Ok(false)));
    assert_eq!((run.up_frames, run.down_frames, run.round_trips), (1, 1, 1));
    // Hello: 8-byte header, payload, 32-byte tag. NoUpdate: header and tag only.
    assert_eq!(run.down, 40);
    let hello = store.hello(store.boots);
    let payload = postcard::to_allocvec(&hello).unwrap();
    assert_eq!(run.up, 8 + payload.len() + 32);
    println!(
        "no update (3 files, 3 heap phases): Hello {} bytes + NoUpdate {} bytes = {}",
        run.up,
        run.down,
        run.up + run.down
    );
    assert_eq!(store.generation, 1, "a no-update check-in commits nothing");
}

#[test]
fn changed_deleted_and_staged_leftovers() {
    let mut store = MemStore::default();
    check_in(&mut store, &three_files(), &mut pass());
    // A leftover of an abandoned transfer the server no longer wants.
    store.staged.insert(
        b"old".to_vec(),
        Staged {
            size: 10,
            digest: [1; 32],
            version: 1,
            data: vec![0; 4],
            finished: false,
        },
    );
    let mut repo = three_files();
    repo.remove(b"data.bin".as_slice());
    repo.insert(b"init".to_vec(), pattern(800, 9));
    let run = check_in(&mut store, &repo, &mut pass());
    assert_eq!(run.server, Some(Ok(true)), "{run:?}");
    assert_eq!(run.data_bytes, 800, "only the changed file is sent");
    let names: Vec<&[u8]> = store.files.keys().map(Vec::as_slice).collect();
    assert_eq!(names, [b"app".as_slice(), b"init"]);
    assert_eq!(store.files[b"init".as_slice()].0, pattern(800, 9));
    assert!(store.staged.is_empty());
}

#[test]
fn resume_after_a_dropped_connection() {
    let repo = repo(&[("app", pattern(10_240, 5))]);
    let mut store = MemStore::default();
    // Cut the link after the 7th server frame (Welcome, Begin, then 5 KB of data).
    let run = check_in(&mut store, &repo, &mut |down, i, _| !(down && i >= 7));
    assert_eq!(run.server, None);
    assert_eq!(run.device, Ok(Poll::Receive));
    assert!(store.files.is_empty(), "nothing committed");
    let done = store.staged[b"app".as_slice()].data.len();
    assert_eq!(done, 5 * 1024, "every chunk received was written");

    let run = check_in(&mut store, &repo, &mut pass());
    assert_eq!(run.server, Some(Ok(true)), "{run:?}");
    assert_eq!(run.ready, [done as u32], "resumes at the staged offset");
    assert_eq!(run.data_bytes, 10_240 - done);
    assert_eq!(store.files[b"app".as_slice()].0, pattern(10_240, 5));
}

#[test]
fn resumed_leftover_with_another_digest_is_restarted() {
    let repo = repo(&[("app", pattern(3000, 5))]);
    let mut store = MemStore::default();
    store.staged.insert(
        b"app".to_vec(),
        Staged {
            size: 3000,
            digest: sha256(&pattern(3000, 6)),
            version: 1,
            data: pattern(1000, 6),
            finished: false,
        },
    );
    let run = check_in(&mut store, &repo, &mut pass());
    assert_eq!(run.server, Some(Ok(true)), "{run:?}");
    assert_eq!(run.ready, [0]);
    assert_eq!(store.files[b"app".as_slice()].0, pattern(3000, 5));
}

#[test]
fn mitm_flipping_a_payload_byte_aborts_and_commits_nothing() {
    let repo = three_files();
    for target in 1..12 {
        let mut store = MemStore::default();
        let run = check_in(&mut store, &repo, &mut |down, i, frame: &mut Vec<u8>| {
            if down && i == target {
                frame[9] ^= 0x20;
            }
            true
        });
        assert_eq!(run.device, Err(Error::BadTag), "frame {target}");
        assert_eq!(
            run.server,
            Some(Err(Error::Refused {
                reason: Reason::Frame,
                detail: 0
            })),
            "frame {target}"
        );
        assert!(store.files.is_empty() && store.generation == 0);
    }
    // Device to server: the server refuses, the device never gets a Commit.
    for target in 1..6 {
        let mut store = MemStore::default();
        let run = check_in(&mut store, &repo, &mut |down, i, frame: &mut Vec<u8>| {
            if !down && i == target {
                let last = frame.len() - 1;
                frame[last] ^= 1;
            }
            true
        });
        assert_eq!(run.server, Some(Err(Error::BadTag)), "frame {target}");
        assert!(store.files.is_empty() && store.generation == 0);
    }
}

#[test]
fn a_corrupted_file_fails_its_digest_and_nothing_is_committed() {
    let repo = repo(&[("app", pattern(2000, 1))]);
    let mut store = MemStore::default();
    // The server itself sends the wrong bytes for the announced digest.
    let wrong = pattern(2000, 2);
    let run = check_in_with(
        &mut store,
        &repo,
        &mut pass(),
        |repo, _| {
            let data = &repo[b"app".as_slice()];
            let _ = data;
            let leaked: &'static [u8] = Box::leak(wrong.into_boxed_slice());
            vec![
                Step::Send(Outgoing {
                    name: b"app",
                    version: 1,
                    digest: sha256(&pattern(2000, 1)),
                    data: leaked,
                }),
                Step::Commit(None),
            ]
        },
        SECRET,
        SECRET,
    );
    assert_eq!(
        run.server,
        Some(Err(Error::Refused {
            reason: Reason::Finish,
            detail: rota_abi::status::EDIGEST.unsigned_abs() as u8
        }))
    );
    assert!(store.files.is_empty() && store.generation == 0);
}

#[test]
fn a_device_with_another_secret_gets_nothing() {
    let mut store = MemStore::default();
    let run = check_in_with(
        &mut store,
        &three_files(),
        &mut pass(),
        plan,
        b"other",
        SECRET,
    );
    assert_eq!(run.server, Some(Err(Error::BadTag)));
    assert!(store.files.is_empty());
}

#[test]
fn config_in_commit_kept_or_refused() {
    let config = |id: u32, secret: &[u8]| DeviceConfig {
        device_id: id,
        secret: heapless::Vec::from_slice(secret).unwrap(),
        server: [10, 0, 2, 2],
        port: 8266,
        leave: false,
        app: "app".try_into().unwrap(),
        entry: "main".try_into().unwrap(),
        ip: None,
        gateway: [0; 4],
        netmask: [0; 4],
        dns: [0; 4],
        protocol: 2,
        link: rota_wire::Link::Tcp,
        chk: Default::default(),
        files: Default::default(),
    };
    let repo = repo(&[("app", pattern(100, 1))]);
    for (cfg, expect) in [
        (config(DEVICE, SECRET), None),
        (
            config(DEVICE + 1, SECRET),
            Some(rota_wire::ConfigError::DeviceId),
        ),
        (
            config(DEVICE, b"new secret"),
            Some(rota_wire::ConfigError::Secret),
        ),
    ] {
        let mut buf = [0u8; 512];
        let n = cfg.encode(&mut buf).unwrap();
        let bytes: &'static [u8] = Box::leak(buf[..n].to_vec().into_boxed_slice());
        let mut store = MemStore::default();
        let run = check_in_with(
            &mut store,
            &repo,
            &mut pass(),
            |repo, hello| {
                let mut steps = plan(repo, hello);
                steps.pop();
                steps.push(Step::Commit(Some(bytes)));
                steps
            },
            SECRET,
            SECRET,
        );
        match expect {
            None => {
                assert_eq!(run.server, Some(Ok(true)));
                assert_eq!(store.config.as_deref(), Some(bytes));
                assert_ne!(config_version(bytes), 0);
            }
            Some(e) => {
                assert_eq!(
                    run.server,
                    Some(Err(Error::Refused {
                        reason: Reason::Config,
                        detail: e as u8
                    }))
                );
                assert_eq!(store.generation, 0);
                assert!(store.config.is_none());
            }
        }
    }
}

#[test]
fn upload_and_rename() {
    let repo = repo(&[("app", pattern(100, 1))]);
    let mut store = MemStore::default();
    store.files.insert(b"log".to_vec(), (pattern(2500, 4), 1));
    store.files.insert(b"app".to_vec(), (pattern(100, 1), 1));
    let run = check_in_with(
        &mut store,
        &repo,
        &mut pass(),
        |_, _| {
            vec![
                Step::Upload {
                    name: b"log",
                    offset: 100,
                    len: 5000,
                },
                Step::Rename(b"log", b"log.old"),
                Step::Commit(None),
            ]
        },
        SECRET,
        SECRET,
    );
    assert_eq!(run.server, Some(Ok(true)), "{run:?}");
    assert_eq!(run.uploaded, pattern(2500, 4)[100..]);
    assert!(store.files.contains_key(b"log.old".as_slice()));
    assert!(!store.files.contains_key(b"log".as_slice()));
}

#[test]
fn out_of_place_commands_are_refused() {
    // Data with no file open.
    let mut store = MemStore::default();
    let mut out = vec![0u8; MAX_FRAME];
    let mut sout = vec![0u8; MAX_FRAME];
    let mut device = DeviceSession::new(SECRET, rota_wire::Link::Tcp);
    let n = device.hello(&store.hello(1), &mut out).unwrap();
    let hello_frame = out[..n].to_vec();
    let hello = server::open_hello(&hello_frame, SECRET).unwrap();
    let steps = [Step::Commit(None)];
    let (_, n) = ServerSession::welcome(SECRET, &hello, [3; 16], &steps, &mut sout).unwrap();
    assert_eq!(device.feed(&sout[..n]), n);
    assert_eq!(device.poll(&mut store, &mut out), Ok(Poll::Receive));
    // Forge a Data frame with the right key and seq: only the state machine can refuse it.
    let key = rota_wire::Key::session(SECRET, DEVICE, 1, &[3; 16]);
    let msg = rota_wire::ServerMsg::Data(rota_wire::msg::Data {
        offset: 0,
        bytes: rota_wire::msg::Bytes(b"x"),
    });
    let len = msg.encode(&mut sout[8..]).unwrap();
    let n = rota_wire::frame::seal(
        &mut sout,
        &key,
        rota_wire::Dir::ToDevice,
        msg.kind(),
        1,
        len,
    )
    .unwrap();
    device.feed(&sout[..n]);
    assert!(matches!(
        device.poll(&mut store, &mut out),
        Ok(Poll::Send(_))
    ));
    assert_eq!(
        device.poll(&mut store, &mut out),
        Err(Error::Unexpected(rota_wire::msg::kind::DATA))
    );
    assert_eq!(store.generation, 0);
}

#[test]
fn the_device_session_stays_small() {
    // One receive buffer, the session key's two HMAC hash states (80 bytes) and a few counters (on
    // a 32-bit device the pointers are smaller still).
    let size = std::mem::size_of::<DeviceSession<'static>>();
    println!("DeviceSession: {size} bytes on this host");
    assert!(size <= MAX_FRAME + 260, "{size} bytes");
}
