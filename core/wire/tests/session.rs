//! Whole sessions, device against server, over an in-memory link.

mod common;

use common::*;
use rota_wire::msg::kind;
use rota_wire::server::{self, Event, Outgoing, ServerSession, Step};
use rota_wire::{
    config::config_version, sha256, CommitInfo, Device, DeviceConfig, DeviceSession, Error, Header,
    Link, Poll, Reason, HEADER_LEN, MAX_FRAME, TAG_LEN,
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
    // The device's frames: Hello, Files (the answer to List), per file Ready, its acks and Staged,
    // then Committed. No frame per 1 KB chunk (15 chunks were sent).
    assert_eq!(run.up_frames, 1 + 1 + 3 + 5 + 3 + 1);
    assert_eq!(run.up_kinds[..2], [kind::HELLO, kind::FILES]);
    assert_eq!(run.down_kinds[..2], [kind::WELCOME, kind::LIST]);
    println!(
        "update: {} bytes up in {} frames, {} down in {} frames",
        run.up, run.up_frames, run.down, run.down_frames
    );

    let run = check_in(&mut store, &repo, &mut pass());
    assert_eq!(run.device, Ok(Poll::NoUpdate));
    assert_eq!(run.server, Some(Ok(false)));
    assert_eq!((run.up_frames, run.down_frames, run.round_trips), (1, 1, 1));
    assert_eq!(
        (&run.up_kinds[..], &run.down_kinds[..]),
        (&[kind::HELLO][..], &[kind::NO_UPDATE][..]),
        "no List: the Hello's state digest says the files are the repository's"
    );
    // Hello: 5-byte header, payload, 16-byte tag. NoUpdate: header and tag only.
    assert_eq!(run.down, HEADER_LEN + TAG_LEN);
    assert_eq!(run.down, 21);
    let hello = store.hello(store.boots);
    let payload = postcard::to_allocvec(&hello).unwrap();
    assert_eq!(run.up, HEADER_LEN + payload.len() + TAG_LEN);
    println!(
        "no update (3 files, 3 heap phases): Hello {} bytes + NoUpdate {} bytes = {}",
        run.up,
        run.down,
        run.up + run.down
    );
    // Issue 11, item 5: the no-update check-in costs at most 96 bytes, both ways together.
    assert!(run.up + run.down <= 96, "{} bytes", run.up + run.down);
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
    // Cut the link after the 8th server frame (Welcome, List, Begin, then 5 KB of data).
    let run = check_in(&mut store, &repo, &mut |down, i, _| !(down && i >= 8));
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
                // A payload byte (the tag's, for List and other short frames).
                frame[HEADER_LEN + 1] ^= 0x20;
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
        |repo, _, _| {
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
        link: Link::Tcp,
        trials: 4,
        keys: Default::default(),
        chk: Default::default(),
        files: Default::default(),
    };
    let repo = repo(&[("app", pattern(100, 1))]);
    let serial = DeviceConfig {
        link: Link::Serial,
        ..config(DEVICE, SECRET)
    };
    // The device holds no release keys: a config that would give it one is refused.
    let keyed = DeviceConfig {
        keys: heapless::Vec::from_slice(&[[5; 32]]).unwrap(),
        ..config(DEVICE, SECRET)
    };
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
        (serial, Some(rota_wire::ConfigError::Link)),
        (keyed, Some(rota_wire::ConfigError::Keys)),
    ] {
        let mut buf = [0u8; 512];
        let n = cfg.encode(&mut buf).unwrap();
        let bytes: &'static [u8] = Box::leak(buf[..n].to_vec().into_boxed_slice());
        let mut store = MemStore::default();
        let run = check_in_with(
            &mut store,
            &repo,
            &mut pass(),
            |repo, hello, files| {
                let mut steps = plan(repo, hello, files);
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
                // The new config's trial boots are the ones the commit is kept with.
                assert_eq!(store.last_commit.map(|c| c.trial_limit), Some(cfg.trials));
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
                assert_eq!(store.last_commit, None);
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
        |_, _, _| {
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

/// A device that sent its Hello (nonce 1) and took the Welcome (server nonce `[3; 16]`) and the
/// List, and answered Files: the session key and the next sequence number (2) a forged frame needs.
fn device_past_list(store: &mut MemStore) -> DeviceSession<'static> {
    let mut out = vec![0u8; MAX_FRAME];
    let mut sout = vec![0u8; 2 * MAX_FRAME];
    let mut device = DeviceSession::new(SECRET, Link::Tcp);
    let n = device.hello(&store.hello(1), &mut out).unwrap();
    let hello_frame = out[..n].to_vec();
    let hello = server::open_hello(&hello_frame, SECRET).unwrap();
    let (_, n) = ServerSession::welcome(SECRET, &hello, [3; 16], &mut sout).unwrap();
    // Two frames: the device takes the Welcome only, then the List.
    let welcome = device.feed(&sout[..n]);
    assert_eq!(welcome, Header::parse(&sout).unwrap().frame_len());
    assert_eq!(device.poll(store, &mut out), Ok(Poll::Receive));
    assert_eq!(device.feed(&sout[welcome..n]), n - welcome);
    let Ok(Poll::Send(m)) = device.poll(store, &mut out) else {
        panic!("no Files");
    };
    assert_eq!(out[1], kind::FILES);
    assert!(m <= MAX_FRAME);
    device
}

/// Seals `msg` as server frame `seq` of the session of [`device_past_list`].
fn forge(msg: &rota_wire::ServerMsg<'_>, seq: u32) -> Vec<u8> {
    let key = rota_wire::Key::session(SECRET, DEVICE, 1, &[3; 16]);
    let mut sout = vec![0u8; MAX_FRAME];
    let len = msg.encode(&mut sout[HEADER_LEN..]).unwrap();
    let n = rota_wire::frame::seal(
        &mut sout,
        &key,
        rota_wire::Dir::ToDevice,
        msg.kind(),
        seq,
        len,
    )
    .unwrap();
    sout.truncate(n);
    sout
}

/// Feeds `msg` (forged as the server's frame 2) to a fresh device that has listed its files: the
/// device tells the server it failed, then refuses the message as out of place (`kind`). Returns its
/// store.
fn refused_past_list(msg: &rota_wire::ServerMsg<'_>, kind: u8) -> MemStore {
    let mut store = MemStore::default();
    let mut out = vec![0u8; MAX_FRAME];
    let mut device = device_past_list(&mut store);
    device.feed(&forge(msg, 2));
    assert!(matches!(
        device.poll(&mut store, &mut out),
        Ok(Poll::Send(_))
    ));
    assert_eq!(
        device.poll(&mut store, &mut out),
        Err(Error::Unexpected(kind))
    );
    store
}

#[test]
fn out_of_place_commands_are_refused() {
    // Each forged with the right key and seq after the device listed its files: only the state
    // machine can refuse it.
    // Data with no file open.
    let data = rota_wire::ServerMsg::Data(rota_wire::msg::Data {
        offset: 0,
        bytes: rota_wire::msg::Bytes(b"x"),
    });
    let store = refused_past_list(&data, kind::DATA);
    assert_eq!(store.generation, 0);
    // A Welcome mid-session.
    let welcome = rota_wire::ServerMsg::Welcome(rota_wire::msg::Welcome {
        server_nonce: [3; 16],
    });
    refused_past_list(&welcome, kind::WELCOME);
    // A Release, to a device that holds no release keys: refused as out of place, nothing committed.
    let release = rota_wire::ServerMsg::Release(rota_wire::msg::Release {
        manifest: rota_wire::msg::Bytes(b"manifest"),
        signature: [1; 64],
    });
    let store = refused_past_list(&release, kind::RELEASE);
    assert_eq!((store.generation, store.last_commit), (0, None));

    let mut out = vec![0u8; MAX_FRAME];
    // The server: a plan or a NoUpdate before the device's files came, a plan after the plan.
    let mut store = MemStore::default();
    let mut device = DeviceSession::new(SECRET, Link::Tcp);
    let n = device.hello(&store.hello(1), &mut out).unwrap();
    let hello_frame = out[..n].to_vec();
    let hello = server::open_hello(&hello_frame, SECRET).unwrap();
    let mut sout = vec![0u8; 2 * MAX_FRAME];
    let (mut session, n) = ServerSession::welcome(SECRET, &hello, [3; 16], &mut sout).unwrap();
    let steps = [Step::Commit(None)];
    assert_eq!(session.plan(&steps), Err(Error::BadPlan));
    assert_eq!(session.no_update(&mut sout), Err(Error::BadPlan));
    let first = device.feed(&sout[..n]);
    device.poll(&mut store, &mut out).unwrap();
    device.feed(&sout[first..n]);
    let Ok(Poll::Send(m)) = device.poll(&mut store, &mut out) else {
        panic!("no Files");
    };
    let files = out[..m].to_vec();
    assert!(matches!(session.handle(&files), Ok(Event::Files(_))));
    assert_eq!(session.plan(&[]), Err(Error::BadPlan), "no Commit");
    session.plan(&steps).unwrap();
    assert_eq!(session.plan(&steps), Err(Error::BadPlan));
    assert_eq!(session.no_update(&mut sout), Err(Error::BadPlan));
}

#[test]
fn the_device_session_stays_small() {
    // One receive buffer; the verified manifest of a signed session (rota-release's MANIFEST_MAX);
    // what it knows of the device (`Device`: three slices, the secret, the
    // keys and the application's name, and a few numbers); the session key's two HMAC hash states
    // (80 bytes) and a few counters (on a 32-bit device the pointers are smaller still).
    use rota_release::MANIFEST_MAX;
    let size = std::mem::size_of::<DeviceSession<'static>>();
    let device = std::mem::size_of::<Device<'static>>();
    println!("DeviceSession: {size} bytes on this host (Device: {device})");
    assert!(device <= 3 * 16 + 8, "{device} bytes");
    assert!(
        size <= MAX_FRAME + MANIFEST_MAX + device + 260,
        "{size} bytes"
    );
}

/// `files` as owned `(name, size, version, digest)`, in name order.
/// A file list as owned (name, size, version, digest) rows.
type Listing = Vec<(Vec<u8>, u32, u32, [u8; 32])>;

fn listing(files: &[rota_wire::msg::FileInfo<'_>]) -> Listing {
    let mut all: Vec<_> = files
        .iter()
        .map(|f| (f.name.as_bytes().to_vec(), f.size, f.version, f.digest))
        .collect();
    all.sort();
    all
}

/// A check-in of `store` against `repo` with the usual planner, and the files the device listed
/// (`None`: it was not asked).
fn check_in_listed(store: &mut MemStore, repo: &Repo) -> (Run, Option<Listing>) {
    let mut seen = None;
    let run = check_in_with(
        store,
        repo,
        &mut pass(),
        |repo, hello, files| {
            seen = Some(listing(files));
            plan(repo, hello, files)
        },
        SECRET,
        SECRET,
    );
    (run, seen)
}

#[test]
fn a_device_whose_state_differs_is_listed_then_updated() {
    let repo = three_files();
    let mut store = MemStore::default();
    check_in(&mut store, &repo, &mut pass());
    // Files equal to the repository's: NoUpdate in one round trip, no List, no Files.
    let run = check_in(&mut store, &repo, &mut pass());
    assert_eq!(run.device, Ok(Poll::NoUpdate));
    assert_eq!(
        (run.up_kinds, run.down_kinds),
        (vec![kind::HELLO], vec![kind::NO_UPDATE])
    );
    assert_eq!(run.round_trips, 1);

    // One file changed on the server: the Hello's digest differs, the server sends Welcome and
    // List in one write, the device answers Files with exactly its committed files, then the
    // update runs on that list.
    let mut changed = repo.clone();
    changed.insert(b"init".to_vec(), pattern(900, 7));
    let before = listing(&store.file_list());
    assert_eq!(before.len(), 3);
    let (run, seen) = check_in_listed(&mut store, &changed);
    assert_eq!(run.server, Some(Ok(true)), "{run:?}");
    assert_eq!(run.device, Ok(Poll::Committed(2)));
    assert_eq!(seen, Some(before), "Files lists the committed files");
    assert_eq!(
        run.down_kinds[..3],
        [kind::WELCOME, kind::LIST, kind::BEGIN]
    );
    assert_eq!(run.up_kinds[..3], [kind::HELLO, kind::FILES, kind::READY]);
    assert_eq!(run.data_bytes, 900, "only the changed file is sent");
    assert_eq!(store.files[b"init".as_slice()].0, pattern(900, 7));
    // Hello, then Files and Ready (the first Begin is sent with nothing else to wait for), ...
    assert!(run.round_trips >= 2);
    // ... and afterwards the digests agree again.
    let run = check_in(&mut store, &changed, &mut pass());
    assert_eq!((run.up_frames, run.down_frames), (1, 1));
    assert_eq!(run.device, Ok(Poll::NoUpdate));
}

#[test]
fn a_full_files_answer_fits_one_frame_and_lists_every_file() {
    // As many committed files as a Files holds, with the longest names.
    let mut store = MemStore::default();
    let mut repo = Repo::new();
    for i in 0..rota_wire::msg::MAX_FILES {
        let mut name = vec![b'a' + i as u8; rota_wire::MAX_NAME];
        name[0] = b'0' + i as u8;
        let data = pattern(10 + i, i as u8);
        let version = version_of(&sha256(&data));
        store.files.insert(name.clone(), (data.clone(), version));
        repo.insert(name, data);
    }
    // The server has one more: the device is listed, and gets it.
    repo.insert(b"new".to_vec(), pattern(5, 5));
    let expected = listing(&store.file_list());
    let (run, seen) = check_in_listed(&mut store, &repo);
    assert_eq!(run.server, Some(Ok(true)), "{run:?}");
    assert_eq!(seen, Some(expected));
    assert_eq!(run.data_bytes, 5);
}

#[test]
fn no_update_after_the_list_ends_the_session_and_commits_nothing() {
    // The device holds the repository's files under other version numbers: its state digest differs
    // (it covers the versions), so the server asks for the list; the planner, comparing digests,
    // finds nothing to send and answers NoUpdate mid-session.
    let repo = three_files();
    let mut store = MemStore::default();
    for (name, data) in &repo {
        let version = version_of(&sha256(data)).wrapping_add(1);
        store.files.insert(name.clone(), (data.clone(), version));
    }
    let files_before = store.files.clone();
    assert_ne!(store.hello(1).state, repo_state(&repo));
    let mut planned = None;
    let run = check_in_with(
        &mut store,
        &repo,
        &mut pass(),
        |repo, hello, files| {
            let steps = plan(repo, hello, files);
            planned = Some(steps.len());
            steps
        },
        SECRET,
        SECRET,
    );
    assert_eq!(planned, Some(0), "the planner was asked, with the list");
    assert_eq!(run.device, Ok(Poll::NoUpdate));
    assert_eq!(run.server, Some(Ok(false)));
    assert_eq!(run.up_kinds, [kind::HELLO, kind::FILES]);
    assert_eq!(run.down_kinds, [kind::WELCOME, kind::LIST, kind::NO_UPDATE]);
    assert_eq!(run.round_trips, 2);
    assert_eq!((store.generation, store.last_commit), (0, None));
    assert_eq!(store.files, files_before);
    assert!(store.staged.is_empty());
}

/// Runs one check-in of `store` against `repo` for a device whose application file is `app` and
/// that takes `trials` trial boots; returns how the commit was to be kept.
fn commit_info(store: &mut MemStore, repo: &Repo, app: &[u8], trials: u8) -> Option<CommitInfo> {
    store.last_commit = None;
    let device = Device {
        app,
        trials,
        ..Device::plain(SECRET, Link::Tcp)
    };
    let run = check_in_as(store, repo, &mut pass(), plan, device, SECRET);
    assert_eq!(run.server, Some(Ok(true)), "{run:?}");
    store.last_commit
}

#[test]
fn needs_app_is_set_exactly_when_the_session_begins_the_application() {
    let mut store = MemStore::default();
    let mut repo = three_files();
    // The first update sends every file, the application among them.
    let info = commit_info(&mut store, &repo, b"app", 2).unwrap();
    assert_eq!(
        info,
        CommitInfo {
            security_version: 0,
            trial_limit: 2,
            needs_app: true
        }
    );
    // Only another file changes: no application confirm needed.
    repo.insert(b"init".to_vec(), pattern(701, 2));
    let info = commit_info(&mut store, &repo, b"app", 2).unwrap();
    assert!(!info.needs_app, "{info:?}");
    // It is the device's own application name that counts, not the name "app".
    repo.insert(b"init".to_vec(), pattern(702, 2));
    assert!(
        commit_info(&mut store, &repo, b"init", 0)
            .unwrap()
            .needs_app
    );
    repo.insert(b"app".to_vec(), pattern(10_001, 1));
    assert!(
        !commit_info(&mut store, &repo, b"init", 0)
            .unwrap()
            .needs_app
    );
    // Dropping a staged leftover named like the application begins nothing.
    store.staged.insert(
        b"app".to_vec(),
        Staged {
            size: 10,
            digest: [1; 32],
            version: 1,
            data: vec![0; 4],
            finished: false,
        },
    );
    repo.insert(b"data.bin".to_vec(), pattern(4097, 3));
    let info = commit_info(&mut store, &repo, b"app", 1).unwrap();
    assert!(!info.needs_app, "{info:?}");
    assert!(store.staged.is_empty());
}
