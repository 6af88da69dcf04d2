//! Frames: round trips, and every way a frame can be damaged, replayed, reordered or misdirected.

mod common;

use common::*;
use rota_wire::msg::{kind, Bytes, Data, Hello, Name};
use rota_wire::server::{self, Event, Outgoing, ServerSession, Step};
use rota_wire::{
    frame, DeviceConfig, DeviceMsg, DeviceSession, Dir, Error, Frame, Header, Key, Link, Poll,
    ServerMsg, HEADER_LEN, MAX_FRAME, MAX_PAYLOAD, TAG_LEN,
};

/// A device session that has sent its Hello (nonce `nonce`) and nothing else.
fn fresh(nonce: u32) -> DeviceSession<'static> {
    let mut out = vec![0u8; MAX_FRAME];
    let mut device = DeviceSession::new(SECRET, Link::Tcp);
    device
        .hello(&MemStore::default().hello(nonce), &mut out)
        .unwrap();
    device
}

/// A device session that has sent its Hello (nonce `nonce`), taken the Welcome of server nonce
/// `[9; 16]` and the List, and answered Files; and the server's frames of that session: Welcome (seq
/// 0), List (1), then the Begin (2), the data (3, 4, 5) and the Finish (6) of a 3 KB file.
fn established(nonce: u32) -> (DeviceSession<'static>, Vec<Vec<u8>>) {
    static DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let data = DATA.get_or_init(|| pattern(3000, 1));
    let store = MemStore::default();
    let mut out = vec![0u8; 2 * MAX_FRAME];
    let mut device = DeviceSession::new(SECRET, Link::Tcp);
    let n = device.hello(&store.hello(nonce), &mut out).unwrap();
    let hello_frame = out[..n].to_vec();
    let hello = server::open_hello(&hello_frame, SECRET).unwrap();
    let steps = Box::leak(Box::new([
        Step::Send(Outgoing {
            name: b"app",
            version: 1,
            digest: rota_wire::sha256(data),
            data,
        }),
        Step::Commit(None),
    ]));
    let (mut session, n) = ServerSession::welcome(SECRET, &hello, [9; 16], &mut out).unwrap();
    let w = Header::parse(&out).unwrap().frame_len();
    let welcome = out[..w].to_vec();
    let list = out[w..n].to_vec();
    assert_eq!(list.len(), HEADER_LEN + TAG_LEN, "List has no payload");
    let mut store = MemStore::default();
    let mut dout = vec![0u8; MAX_FRAME];
    assert_eq!(device.feed(&welcome), welcome.len());
    assert_eq!(device.poll(&mut store, &mut dout), Ok(Poll::Receive));
    assert_eq!(device.feed(&list), list.len());
    let Ok(Poll::Send(m)) = device.poll(&mut store, &mut dout) else {
        panic!("no Files");
    };
    match session.handle(&dout[..m]) {
        Ok(Event::Files(f)) => assert!(f.files.is_empty()),
        other => panic!("{other:?}"),
    }
    session.plan(steps).unwrap();
    let mut frames = vec![welcome, list];
    // Begin, then pretend the device said Ready{0} (its frame 2: Hello, Files) to get the data.
    let n = session.poll_transmit(&mut out).unwrap().unwrap();
    frames.push(out[..n].to_vec());
    let key = Key::session(SECRET, DEVICE, nonce, &[9; 16]);
    let mut buf = vec![0u8; MAX_FRAME];
    let msg = DeviceMsg::Ready(rota_wire::msg::Ready { offset: 0 });
    let len = msg.encode(&mut buf[HEADER_LEN..]).unwrap();
    let n = frame::seal(&mut buf, &key, Dir::ToServer, msg.kind(), 2, len).unwrap();
    session.handle(&buf[..n]).unwrap();
    while let Some(n) = session.poll_transmit(&mut out).unwrap() {
        frames.push(out[..n].to_vec());
    }
    assert_eq!(frames.len(), 7);
    (device, frames)
}

/// Feeds `frames` to a device and returns the first error (after its Failed frame, if any).
fn device_takes(device: &mut DeviceSession<'_>, frames: &[&[u8]]) -> Result<(), Error> {
    let mut store = MemStore::default();
    let mut out = vec![0u8; MAX_FRAME];
    for f in frames {
        let mut taken = 0;
        loop {
            taken += device.feed(&f[taken..]);
            match device.poll(&mut store, &mut out) {
                Ok(Poll::Send(_)) => continue,
                Ok(Poll::Receive) if taken == f.len() => break,
                Ok(Poll::Receive) => continue,
                Ok(other) => panic!("{other:?}"),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[test]
fn every_message_round_trips() {
    let name = Name::new(b"app").unwrap();
    let store = {
        let mut s = MemStore::default();
        s.files.insert(b"init".to_vec(), (pattern(10, 1), 3));
        s
    };
    let hello: Hello<'_> = store.hello(5);
    let device_msgs = [
        DeviceMsg::Hello(hello),
        DeviceMsg::Ready(rota_wire::msg::Ready { offset: 77 }),
        DeviceMsg::Ack(rota_wire::msg::Ack { offset: 4096 }),
        DeviceMsg::Staged,
        DeviceMsg::Failed(rota_wire::msg::Failed {
            reason: rota_wire::Reason::Commit,
            detail: 9,
        }),
        DeviceMsg::FileData(rota_wire::msg::FileData {
            offset: 1,
            bytes: Bytes(&[1, 2, 3]),
        }),
        DeviceMsg::Committed(rota_wire::msg::Committed { generation: 4 }),
        DeviceMsg::Files(rota_wire::msg::Files {
            files: store.file_list().into_iter().collect(),
        }),
        DeviceMsg::Files(rota_wire::msg::Files {
            files: heapless::Vec::new(),
        }),
    ];
    let key = Key::hello(SECRET, 1, 2);
    for (i, msg) in device_msgs.iter().enumerate() {
        // Sequence numbers past one byte too: the header carries the low byte, the tag the rest.
        let seq = i as u32 * 0x0101_0101;
        let mut buf = [0u8; MAX_FRAME];
        let len = msg.encode(&mut buf[HEADER_LEN..]).unwrap();
        let n = frame::seal(&mut buf, &key, Dir::ToServer, msg.kind(), seq, len).unwrap();
        assert_eq!(n, HEADER_LEN + len + TAG_LEN);
        let f = Frame::new_checked(&buf[..n]).unwrap();
        f.verify(&key, Dir::ToServer, seq).unwrap();
        assert_eq!(
            f.verify(&key, Dir::ToDevice, seq),
            Err(Error::BadTag),
            "no reflection"
        );
        assert_eq!(
            f.verify(&key, Dir::ToServer, seq.wrapping_add(256)),
            Err(Error::BadTag),
            "the tag covers the whole sequence number"
        );
        assert_eq!(f.seq(), seq as u8);
        assert_eq!(buf[4], seq as u8);
        assert_eq!(f.tag().len(), TAG_LEN);
        assert_eq!(&DeviceMsg::decode(f.kind(), f.payload()).unwrap(), msg);
    }
    let server_msgs = [
        ServerMsg::Welcome(rota_wire::msg::Welcome {
            server_nonce: [3; 16],
        }),
        ServerMsg::NoUpdate,
        ServerMsg::Begin(rota_wire::msg::Begin {
            name,
            size: 5,
            digest: [4; 32],
            version: 1,
        }),
        ServerMsg::Data(Data {
            offset: 1 << 30,
            bytes: Bytes(&[7; 1024]),
        }),
        ServerMsg::Finish(name),
        ServerMsg::Drop(name),
        ServerMsg::Delete(name),
        ServerMsg::Rename(rota_wire::msg::Rename {
            from: name,
            to: Name::new(b"b").unwrap(),
        }),
        ServerMsg::Upload(rota_wire::msg::Upload {
            name,
            offset: 0,
            len: 9,
        }),
        ServerMsg::Commit(rota_wire::msg::Commit {
            config: Some(Bytes(b"cfg")),
        }),
        ServerMsg::Commit(rota_wire::msg::Commit { config: None }),
        ServerMsg::List,
        ServerMsg::Release(rota_wire::msg::Release {
            manifest: Bytes(&[8; 1024]),
            signature: [0xee; 64],
        }),
        ServerMsg::Release(rota_wire::msg::Release {
            manifest: Bytes(b""),
            signature: core::array::from_fn(|i| i as u8),
        }),
    ];
    for msg in &server_msgs {
        let mut buf = [0u8; MAX_PAYLOAD];
        let len = msg.encode(&mut buf).unwrap();
        assert_eq!(&ServerMsg::decode(msg.kind(), &buf[..len]).unwrap(), msg);
        // Trailing bytes are refused; kinds are not valid the other way.
        assert_eq!(
            ServerMsg::decode(msg.kind(), &[&buf[..len], &[0][..]].concat()),
            Err(Error::Malformed)
        );
        assert_eq!(
            DeviceMsg::decode(msg.kind(), &buf[..len]),
            Err(Error::UnknownKind(msg.kind()))
        );
    }
    // A full data chunk fits one frame, and so does the largest release.
    let mut buf = [0u8; MAX_PAYLOAD];
    assert!(server_msgs[3].encode(&mut buf).unwrap() <= MAX_PAYLOAD);
    assert!(server_msgs[12].encode(&mut buf).unwrap() <= MAX_PAYLOAD);
    // List and NoUpdate are empty: a frame of header and tag.
    assert_eq!(ServerMsg::List.encode(&mut buf), Ok(0));
    assert_eq!(ServerMsg::NoUpdate.encode(&mut buf), Ok(0));
}

#[test]
fn names_and_chunks_are_bounded_on_decode() {
    let mut buf = [0u8; MAX_PAYLOAD + 64];
    // A Finish whose name is 32 bytes: encode by hand (Name refuses to build it).
    buf[0] = 32;
    assert_eq!(
        ServerMsg::decode(kind::FINISH, &buf[..33]),
        Err(Error::Malformed)
    );
    buf[0] = 0;
    assert_eq!(
        ServerMsg::decode(kind::FINISH, &buf[..1]),
        Err(Error::Malformed),
        "empty name"
    );
    // Data of 1025 bytes.
    let n = postcard::to_slice(&(0u32, &[0u8; 1025][..]), &mut buf)
        .unwrap()
        .len();
    assert_eq!(
        ServerMsg::decode(kind::DATA, &buf[..n]),
        Err(Error::Malformed)
    );
    assert_eq!(ServerMsg::decode(0x99, &[]), Err(Error::UnknownKind(0x99)));
}

#[test]
fn every_single_byte_flip_is_refused() {
    // Server side: the Hello.
    let store = MemStore::default();
    let mut out = vec![0u8; MAX_FRAME];
    let mut device = DeviceSession::new(SECRET, rota_wire::Link::Tcp);
    let n = device.hello(&store.hello(3), &mut out).unwrap();
    let hello = out[..n].to_vec();
    server::open_hello(&hello, SECRET).unwrap();
    for i in 0..hello.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = hello.clone();
            bad[i] ^= flip;
            assert!(
                server::open_hello(&bad, SECRET).is_err(),
                "byte {i} ^ {flip:#x} accepted"
            );
        }
    }
    // Device side: the Welcome, the List, the Begin and a data frame, each after the good frames
    // before it, on a device that sent its Hello. After it more stream (zeros): a grown length field
    // must not wait forever to be refused. Had the damaged frame been taken, the device would fail
    // on that filler (`BadMagic(0)`), so that error does not count as a refusal.
    let (_, frames) = established(4);
    let filler = vec![0u8; MAX_FRAME];
    let prefix =
        |index: usize| -> Vec<&[u8]> { frames[..index].iter().map(Vec::as_slice).collect() };
    // (The undamaged frame is taken: the filler is what fails.)
    for index in 0..4 {
        let mut stream = prefix(index + 1);
        stream.push(&filler);
        assert_eq!(
            device_takes(&mut fresh(4), &stream),
            Err(Error::BadMagic(0)),
            "frame {index}"
        );
    }
    for (index, good) in frames[..4].iter().enumerate() {
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                let mut stream = prefix(index);
                stream.push(&bad);
                stream.push(&filler);
                let result = device_takes(&mut fresh(4), &stream);
                assert!(
                    result.is_err() && result != Err(Error::BadMagic(0)),
                    "frame {index} byte {i} ^ {flip:#x} accepted: {result:?}"
                );
            }
        }
    }
}

#[test]
fn truncation_at_every_length_is_refused() {
    let (_, frames) = established(5);
    for f in &frames {
        for len in 0..f.len() {
            assert_eq!(
                Frame::new_checked(&f[..len]).map(|_| ()),
                Err(Error::Truncated),
                "{len} of {}",
                f.len()
            );
        }
        // One byte too many is not a frame either.
        let mut long = f.clone();
        long.push(0);
        assert_eq!(
            Frame::new_checked(&long[..]).map(|_| ()),
            Err(Error::Malformed)
        );
    }
    // A device given a truncated frame waits for the rest and acts on nothing.
    let (mut device, frames) = established(5);
    let begin = &frames[2];
    let mut store = MemStore::default();
    let mut out = vec![0u8; MAX_FRAME];
    assert_eq!(device.feed(&begin[..begin.len() - 1]), begin.len() - 1);
    assert_eq!(device.poll(&mut store, &mut out), Ok(Poll::Receive));
    assert!(store.staged.is_empty());
}

#[test]
fn oversized_length_is_refused_from_the_header() {
    let mut header = [0xB2, kind::DATA, 0xff, 0xff, 0];
    assert_eq!(Header::parse(&header), Err(Error::TooLong(0xffff)));
    let limit = (MAX_PAYLOAD as u16 + 1).to_le_bytes();
    header[2..4].copy_from_slice(&limit);
    assert_eq!(
        Header::parse(&header),
        Err(Error::TooLong(MAX_PAYLOAD as u16 + 1))
    );
    assert_eq!(Header::parse(&[b'{', 0, 0]), Err(Error::BadMagic(b'{')));
    assert_eq!(Header::parse(&[0xB2, 0, 0]), Err(Error::Truncated));
    assert_eq!(
        Header::parse(&[0xB2, kind::DATA, 0, 0]),
        Err(Error::Truncated),
        "the header is 5 bytes"
    );
    assert_eq!(
        Header::parse(&[0xB2, kind::DATA, 3, 0, 0x7a]),
        Ok(Header {
            kind: kind::DATA,
            len: 3,
            seq: 0x7a
        })
    );
    // The device takes the 5 header bytes, then no more, and fails.
    let (mut device, _) = established(6);
    let mut stream = header.to_vec();
    stream.extend_from_slice(&[0u8; 4000]);
    assert_eq!(device.feed(&stream), HEADER_LEN);
    assert!(device.rx_buffer().is_empty());
    let mut out = vec![0u8; MAX_FRAME];
    let mut store = MemStore::default();
    assert!(matches!(
        device.poll(&mut store, &mut out),
        Ok(Poll::Send(_))
    ));
    assert_eq!(
        device.poll(&mut store, &mut out),
        Err(Error::TooLong(MAX_PAYLOAD as u16 + 1))
    );
}

#[test]
fn frames_of_an_earlier_session_are_refused() {
    // Same server nonce, even: the device nonce alone changes every key.
    let (_, old) = established(7);
    let (mut device, _) = established(8);
    // The old Begin: the sequence number the device expects (2), the wrong key.
    assert_eq!(device_takes(&mut device, &[&old[2]]), Err(Error::BadTag));
    // The old Welcome, given to a device that sent a new Hello.
    let store = MemStore::default();
    let mut out = vec![0u8; MAX_FRAME];
    assert_eq!(device_takes(&mut fresh(8), &[&old[0]]), Err(Error::BadTag));
    // An old NoUpdate, too.
    let mut d7 = DeviceSession::new(SECRET, rota_wire::Link::Tcp);
    let n = d7.hello(&store.hello(7), &mut out).unwrap();
    let hello7 = out[..n].to_vec();
    let n = server::no_update(
        SECRET,
        &server::open_hello(&hello7, SECRET).unwrap(),
        &mut out,
    )
    .unwrap();
    let no_update7 = out[..n].to_vec();
    let mut d8 = DeviceSession::new(SECRET, rota_wire::Link::Tcp);
    d8.hello(&store.hello(8), &mut out).unwrap();
    assert_eq!(device_takes(&mut d8, &[&no_update7]), Err(Error::BadTag));
    // (It was good for its own session.)
    d7.feed(&no_update7);
    assert_eq!(
        d7.poll(&mut MemStore::default(), &mut out),
        Ok(Poll::NoUpdate)
    );
}

#[test]
fn reordered_and_replayed_frames_are_refused() {
    // Data frames 1 and 2 swapped: well-tagged, wrong sequence byte, refused before the tag.
    let (mut device, frames) = established(9);
    let result = device_takes(&mut device, &[&frames[2], &frames[4]]);
    assert_eq!(
        result,
        Err(Error::BadSeq {
            expected: 3,
            got: 4
        })
    );
    // The same frame twice.
    let (mut device, frames) = established(9);
    let result = device_takes(&mut device, &[&frames[2], &frames[2]]);
    assert_eq!(
        result,
        Err(Error::BadSeq {
            expected: 3,
            got: 2
        })
    );
    // The Welcome again, mid-session.
    let (mut device, frames) = established(9);
    let result = device_takes(&mut device, &[&frames[0]]);
    assert_eq!(
        result,
        Err(Error::BadSeq {
            expected: 2,
            got: 0
        })
    );
    // The List again.
    let (mut device, frames) = established(9);
    let result = device_takes(&mut device, &[&frames[1]]);
    assert_eq!(
        result,
        Err(Error::BadSeq {
            expected: 2,
            got: 1
        })
    );
}

/// What a man in the middle saw of a replay: the frame it kept, and the one it replaced with it.
#[derive(Default)]
struct Replay {
    kept: Vec<u8>,
    replaced: Vec<u8>,
}

/// A man in the middle that keeps frame `from` of direction `down` and sends it again in place of
/// frame `from + 256`: the same sequence byte, 256 frames later.
fn replay_256_later(
    down: bool,
    from: usize,
    seen: &mut Replay,
) -> impl FnMut(bool, usize, &mut Vec<u8>) -> bool + '_ {
    move |is_down, i, frame| {
        if is_down == down {
            if i == from {
                seen.kept = frame.clone();
            } else if i == from + 256 {
                seen.replaced = std::mem::replace(frame, seen.kept.clone());
            }
        }
        true
    }
}

#[test]
fn a_frame_replayed_256_frames_later_fails_its_tag() {
    // Server to device: a 300 KB file is sent in 300 data frames (Welcome 0, List 1, Begin 2, data
    // from 3); data frame 5 comes again as frame 261.
    let repo = repo(&[("app", pattern(300 * 1024, 3))]);
    let mut store = MemStore::default();
    let mut seen = Replay::default();
    let run = check_in(&mut store, &repo, &mut replay_256_later(true, 5, &mut seen));
    // The sequence byte matches, so only the tag (over the whole number) can refuse it.
    assert_eq!(seen.kept[1], kind::DATA);
    assert_eq!(seen.replaced[1], kind::DATA);
    assert_eq!(seen.kept[4], seen.replaced[4], "same sequence byte");
    assert_ne!(seen.kept, seen.replaced);
    assert_eq!(run.device, Err(Error::BadTag));
    assert_eq!(
        run.server,
        Some(Err(Error::Refused {
            reason: rota_wire::Reason::Frame,
            detail: 0
        }))
    );
    assert!(store.files.is_empty() && store.generation == 0);

    // Device to server: an upload of 300 KB is 300 FileData frames (Hello 0, Files 1, from 2);
    // FileData 10 comes again as frame 266.
    let mut store = MemStore::default();
    store
        .files
        .insert(b"log".to_vec(), (pattern(300 * 1024, 4), 1));
    let mut seen = Replay::default();
    let run = check_in_with(
        &mut store,
        &Repo::new(),
        &mut replay_256_later(false, 10, &mut seen),
        |_, _, _| {
            vec![
                Step::Upload {
                    name: b"log",
                    offset: 0,
                    len: 300 * 1024,
                },
                Step::Commit(None),
            ]
        },
        SECRET,
        SECRET,
    );
    assert_eq!(seen.kept[1], kind::FILE_DATA);
    assert_eq!(seen.replaced[1], kind::FILE_DATA);
    assert_eq!(seen.kept[4], seen.replaced[4], "same sequence byte");
    assert_ne!(seen.kept, seen.replaced);
    assert_eq!(run.server, Some(Err(Error::BadTag)));
    assert_eq!(
        run.uploaded.len(),
        264 * 1024,
        "everything before the replay"
    );
    assert_eq!(store.generation, 0);
}

#[test]
fn frames_for_another_device_are_refused() {
    // Hello tagged with another device's secret, claiming this device's id.
    let store = MemStore::default();
    let mut out = vec![0u8; MAX_FRAME];
    let mut other = DeviceSession::new(b"the other device's secret", rota_wire::Link::Tcp);
    let n = other.hello(&store.hello(1), &mut out).unwrap();
    assert_eq!(
        server::open_hello(&out[..n], SECRET).map(|_| ()),
        Err(Error::BadTag)
    );
    // A session's frames given to a device with another secret (same id, nonce, server nonce).
    let (_, frames) = established(10);
    let mut device = DeviceSession::new(b"the other device's secret", rota_wire::Link::Tcp);
    device.hello(&store.hello(10), &mut out).unwrap();
    assert_eq!(device_takes(&mut device, &[&frames[0]]), Err(Error::BadTag));
    // Another device id with the same secret: its keys differ too.
    let mut hello: Hello<'_> = store.hello(10);
    hello.device_id += 1;
    let mut device = DeviceSession::new(SECRET, rota_wire::Link::Tcp);
    device.hello(&hello, &mut out).unwrap();
    assert_eq!(device_takes(&mut device, &[&frames[0]]), Err(Error::BadTag));
}

#[test]
fn config_round_trip_and_bounds() {
    let config = DeviceConfig::largest();
    assert!(config.files.is_full() && config.secret.is_full() && config.app.len() == 31);
    assert!(config.keys.is_full() && config.keys.len() == 2 && config.trials == u8::MAX);
    assert_eq!(config.keys.capacity(), rota_wire::config::MAX_KEYS);
    let mut buf = [0u8; 1024];
    let n = config.encode(&mut buf).unwrap();
    // The limit is exactly this worst case, rounded up to whole words.
    assert_eq!(
        rota_wire::config::MAX_CONFIG,
        n.next_multiple_of(4),
        "worst case {n} bytes"
    );
    println!("largest config: {n} bytes");
    assert_eq!(DeviceConfig::decode(&buf[..n]), Ok(config.clone()));
    let view = rota_wire::ConfigView::parse(&buf[..n]).unwrap();
    assert_eq!((view.trials, view.keys), (u8::MAX, &[0xff; 64][..]));
    assert_eq!(view.keys().count(), 2);
    assert_eq!(
        DeviceConfig::decode(&buf[..n - 1]),
        Err(rota_wire::ConfigError::Malformed)
    );
    let mut bad = config.clone();
    bad.protocol = 3;
    let n = bad.encode(&mut buf).unwrap();
    assert_eq!(
        DeviceConfig::decode(&buf[..n]),
        Err(rota_wire::ConfigError::Protocol)
    );
}

/// serde's decoding of a server message payload (the reference the device's hand-written decoder
/// must agree with).
fn serde_decode(kind: u8, p: &[u8]) -> bool {
    use rota_wire::msg::*;
    fn whole<'a, T: serde::Deserialize<'a>>(p: &'a [u8]) -> bool {
        matches!(postcard::take_from_bytes::<T>(p), Ok((_, [])))
    }
    match kind {
        kind::WELCOME => whole::<Welcome>(p),
        kind::NO_UPDATE => p.is_empty(),
        kind::BEGIN => whole::<Begin>(p),
        kind::DATA => whole::<Data>(p),
        kind::FINISH | kind::DROP | kind::DELETE => whole::<Name>(p),
        kind::RENAME => whole::<Rename>(p),
        kind::UPLOAD => whole::<Upload>(p),
        kind::COMMIT => whole::<Commit>(p),
        kind::LIST => p.is_empty(),
        kind::RELEASE => whole::<Release>(p),
        _ => false,
    }
}

/// A small deterministic generator (xorshift64*) for the randomised comparisons.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A u32 of random width (0 to 32 bits), so every varint length comes up.
    fn u32(&mut self) -> u32 {
        let bits = self.below(33) as u32;
        (self.next() as u32).checked_shr(32 - bits).unwrap_or(0)
    }

    fn u8(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        core::array::from_fn(|_| self.u8())
    }

    /// A file name of 1 to MAX_NAME random bytes.
    fn name(&mut self) -> Vec<u8> {
        let len = 1 + self.below(rota_wire::MAX_NAME as u64) as usize;
        (0..len).map(|_| self.u8()).collect()
    }
}

/// A random Hello (every field, every list length up to its bound), its names from `names`.
fn random_hello<'a>(rng: &mut Rng, names: &'a [Vec<u8>]) -> Hello<'a> {
    use rota_wire::msg::{
        ConfigVersion, HeapSummary, PhasePeak, Rollback, StagedInfo, MAX_HEAP, MAX_STAGED,
    };
    let staged = (0..rng.below(MAX_STAGED as u64 + 1) as usize)
        .map(|i| StagedInfo {
            name: Name::new(&names[i]).unwrap(),
            size: rng.u32(),
            digest: rng.bytes(),
            done: rng.u32(),
        })
        .collect();
    let rollback = (rng.below(2) == 1).then(|| Rollback {
        from: rng.u32(),
        to: rng.u32(),
        reason: rng.u8(),
        phase: rng.u8(),
    });
    let phases = (0..rng.below(MAX_HEAP as u64 + 1))
        .map(|_| PhasePeak {
            heap: rng.u32(),
            stack: rng.u32(),
        })
        .collect();
    Hello {
        device_id: rng.u32(),
        nonce: rng.u32(),
        isa: rng.u8(),
        abi: rng.u8(),
        flags: rng.u8(),
        config: ConfigVersion(rng.u32()),
        state: rng.bytes(),
        security_version: rng.u32(),
        staged,
        rollback,
        heap: HeapSummary {
            phases,
            residue: rng.u32(),
        },
    }
}

/// Every single-byte change and every truncation of `p`.
fn mutations(p: &[u8]) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for i in 0..p.len() {
        for v in [0x00, 0x01, 0x03, 0x1f, 0x20, 0x7f, 0x80, 0xc0, 0xff] {
            let mut m = p.to_vec();
            m[i] = v;
            all.push(m);
        }
        all.push(p[..i].to_vec());
    }
    let mut longer = p.to_vec();
    longer.push(0);
    all.push(longer);
    all
}

/// A config for [`DEVICE`] with every field set (the v1 state included), holding `keys`.
fn test_config(keys: &[[u8; 32]]) -> DeviceConfig {
    DeviceConfig {
        device_id: DEVICE,
        secret: heapless::Vec::from_slice(SECRET).unwrap(),
        server: [10, 0, 2, 2],
        port: 8266,
        leave: true,
        app: "app".try_into().unwrap(),
        entry: "main".try_into().unwrap(),
        ip: Some([10, 0, 2, 15]),
        gateway: [10, 0, 2, 2],
        netmask: [255, 255, 255, 0],
        dns: [10, 0, 2, 3],
        protocol: 2,
        link: Link::Tcp,
        trials: 3,
        keys: heapless::Vec::from_slice(keys).unwrap(),
        chk: "0123".try_into().unwrap(),
        files: [rota_wire::config::V1File {
            name: "a.lua".try_into().unwrap(),
            number: 99,
        }]
        .into_iter()
        .collect(),
    }
}

/// What a device holding `keys` keeps of its config (a `check_update` argument).
fn keep(link: Link, keys: &[u8]) -> rota_wire::config::Keep<'_> {
    rota_wire::config::Keep {
        device_id: DEVICE,
        secret: SECRET,
        link,
        keys,
    }
}

#[test]
fn hand_codec_agrees_with_serde() {
    // Device messages: byte-identical to serde's encoding.
    let mut store = MemStore::default();
    store
        .files
        .insert(b"init".to_vec(), (pattern(300, 1), 0x1234_5678));
    store.staged.insert(
        b"app".to_vec(),
        Staged {
            size: 70_000,
            digest: [9; 32],
            version: 1,
            data: pattern(200, 2),
            finished: false,
        },
    );
    let hello = store.hello(u32::MAX);
    let mut buf = [0u8; MAX_PAYLOAD];
    let n = DeviceMsg::Hello(hello.clone()).encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], postcard::to_allocvec(&hello).unwrap());
    // Random Hellos: every field, every list length, every varint width; and the device's own frame
    // (DeviceSession::hello) carries the same payload, which the server decodes to the Hello.
    let mut rng = Rng(0x5eed_0f4e_1100_0000);
    let mut out = vec![0u8; MAX_FRAME];
    for _ in 0..2000 {
        let names: Vec<Vec<u8>> = (0..2).map(|_| rng.name()).collect();
        let hello = random_hello(&mut rng, &names);
        let reference = postcard::to_allocvec(&hello).unwrap();
        let n = DeviceMsg::Hello(hello.clone()).encode(&mut buf).unwrap();
        assert_eq!(&buf[..n], reference, "{hello:?}");
        assert_eq!(
            DeviceMsg::decode(kind::HELLO, &reference),
            Ok(DeviceMsg::Hello(hello.clone()))
        );
        let m = DeviceSession::new(SECRET, Link::Tcp)
            .hello(&hello, &mut out)
            .unwrap();
        assert_eq!(&out[HEADER_LEN..m - TAG_LEN], reference);
        assert_eq!(server::open_hello(&out[..m], SECRET), Ok(hello));
    }
    let failed = rota_wire::msg::Failed {
        reason: rota_wire::Reason::Config,
        detail: 200,
    };
    let n = DeviceMsg::Failed(failed).encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], postcard::to_allocvec(&failed).unwrap());
    let data = rota_wire::msg::FileData {
        offset: 300_000,
        bytes: Bytes(&[5; 200]),
    };
    let n = DeviceMsg::FileData(data).encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], postcard::to_allocvec(&data).unwrap());
    // Files, of every length up to MAX_FILES.
    for count in 0..=rota_wire::msg::MAX_FILES {
        let names: Vec<Vec<u8>> = (0..count).map(|_| rng.name()).collect();
        let files = rota_wire::msg::Files {
            files: names
                .iter()
                .map(|name| rota_wire::msg::FileInfo {
                    name: Name::new(name).unwrap(),
                    size: rng.u32(),
                    version: rng.u32(),
                    digest: rng.bytes(),
                })
                .collect(),
        };
        let n = DeviceMsg::Files(files.clone()).encode(&mut buf).unwrap();
        assert_eq!(&buf[..n], postcard::to_allocvec(&files).unwrap());
    }

    // Server messages: the device's decoder accepts exactly what serde accepts.
    let name = Name::new(b"file").unwrap();
    let msgs = [
        ServerMsg::Welcome(rota_wire::msg::Welcome {
            server_nonce: [1; 16],
        }),
        ServerMsg::NoUpdate,
        ServerMsg::Begin(rota_wire::msg::Begin {
            name,
            size: 130,
            digest: [2; 32],
            version: 1 << 28,
        }),
        ServerMsg::Data(Data {
            offset: 16_383,
            bytes: Bytes(&[3; 130]),
        }),
        ServerMsg::Finish(name),
        ServerMsg::Rename(rota_wire::msg::Rename {
            from: name,
            to: name,
        }),
        ServerMsg::Upload(rota_wire::msg::Upload {
            name,
            offset: 127,
            len: 128,
        }),
        ServerMsg::Commit(rota_wire::msg::Commit {
            config: Some(Bytes(b"xyz")),
        }),
        ServerMsg::List,
        ServerMsg::Release(rota_wire::msg::Release {
            manifest: Bytes(&[4; 130]),
            signature: [5; 64],
        }),
    ];
    let mut checked = 0;
    for msg in &msgs {
        let n = msg.encode(&mut buf).unwrap();
        for m in mutations(&buf[..n]) {
            let hand = ServerMsg::decode(msg.kind(), &m).is_ok();
            assert_eq!(hand, serde_decode(msg.kind(), &m), "{:?} {m:?}", msg.kind());
            checked += 1;
        }
    }
    assert!(checked > 1000);

    // Configs: the device's check accepts exactly what DeviceConfig::decode accepts.
    let config = test_config(&[]);
    let mut cbuf = [0u8; 600];
    let n = config.encode(&mut cbuf).unwrap();
    let view = DeviceConfig::check_update(&cbuf[..n], &keep(Link::Tcp, &[])).unwrap();
    assert_eq!(view, rota_wire::ConfigView::parse(&cbuf[..n]).unwrap());
    assert_eq!(view.keep(), keep(Link::Tcp, &[]));
    // A config that would move the device to the other link is refused, naming the field.
    let serial = DeviceConfig {
        link: Link::Serial,
        ..config.clone()
    };
    let mut sbuf = [0u8; 600];
    let sn = serial.encode(&mut sbuf).unwrap();
    assert_eq!(
        DeviceConfig::check_update(&sbuf[..sn], &keep(Link::Tcp, &[])).err(),
        Some(rota_wire::ConfigError::Link)
    );
    assert!(DeviceConfig::check_update(&sbuf[..sn], &keep(Link::Serial, &[])).is_ok());
    // One that changes the release keys is refused, whichever way: added, removed, replaced,
    // reordered. The same keys are kept.
    let (a, b) = ([0xa1; 32], [0xb2; 32]);
    let ab: Vec<u8> = [a, b].concat();
    let ba: Vec<u8> = [b, a].concat();
    for (held, sent, ok) in [
        (&[][..], &[a][..], false),
        (&ab[..], &[a][..], false),
        (&ab[..], &[][..], false),
        (&a[..], &[b][..], false),
        (&ab[..], &[b, a][..], false),
        (&a[..], &[a, b][..], false),
        (&a[..], &[a][..], true),
        (&ba[..], &[b, a][..], true),
    ] {
        let mut kbuf = [0u8; 600];
        let kn = test_config(sent).encode(&mut kbuf).unwrap();
        let result = DeviceConfig::check_update(&kbuf[..kn], &keep(Link::Tcp, held));
        if ok {
            let view = result.unwrap();
            assert_eq!(view.keys, held);
            assert_eq!(view.keys().copied().collect::<Vec<_>>(), sent);
        } else {
            assert_eq!(
                result.err(),
                Some(rota_wire::ConfigError::Keys),
                "{held:?} -> {sent:?}"
            );
        }
    }
    // Mutations of a config holding both keys: the check and the view against serde.
    let ab_config = test_config(&[a, b]);
    let n = ab_config.encode(&mut cbuf).unwrap();
    for m in mutations(&cbuf[..n]) {
        let hand = DeviceConfig::check_update(&m, &keep(Link::Tcp, &ab));
        let reference = DeviceConfig::decode(&m).and_then(|c| {
            if c.device_id != DEVICE {
                Err(rota_wire::ConfigError::DeviceId)
            } else if c.secret.as_slice() != SECRET {
                Err(rota_wire::ConfigError::Secret)
            } else if c.link != Link::Tcp {
                Err(rota_wire::ConfigError::Link)
            } else if c.keys.concat() != ab {
                Err(rota_wire::ConfigError::Keys)
            } else {
                Ok(())
            }
        });
        assert_eq!(hand.err(), reference.err(), "{m:?}");
        // The device's borrowed view reads exactly the fields serde decodes.
        let view = rota_wire::ConfigView::parse(&m);
        match DeviceConfig::decode(&m) {
            Ok(c) => {
                let v = view.expect("the view accepts what decode accepts");
                assert_eq!(
                    (v.device_id, v.secret, v.server, v.port, v.ip),
                    (c.device_id, c.secret.as_slice(), c.server, c.port, c.ip)
                );
                assert_eq!(
                    (v.gateway, v.netmask, v.protocol, v.link),
                    (c.gateway, c.netmask, c.protocol, c.link)
                );
                assert_eq!(
                    (v.app, v.trials, v.keys, v.chk),
                    (
                        c.app.as_bytes(),
                        c.trials,
                        &c.keys.concat()[..],
                        c.chk.as_bytes()
                    )
                );
                assert_eq!(v.keys().copied().collect::<Vec<_>>(), c.keys.to_vec());
            }
            Err(e) => assert_eq!(view.err(), Some(e), "{m:?}"),
        }
    }
}

#[test]
fn the_largest_hello_fits_one_frame() {
    use rota_wire::msg::{
        ConfigVersion, FileInfo, Files, HeapSummary, PhasePeak, Rollback, StagedInfo, MAX_FILES,
        MAX_HEAP, MAX_STAGED, STATE_LEN,
    };
    let name = [b'n'; rota_wire::MAX_NAME];
    // Every number at its maximum (varints at their widest), every list full, a rollback.
    let hello = Hello {
        device_id: u32::MAX,
        nonce: u32::MAX,
        isa: u8::MAX,
        abi: u8::MAX,
        flags: u8::MAX,
        config: ConfigVersion(u32::MAX),
        state: [0xff; STATE_LEN],
        security_version: u32::MAX,
        staged: (0..MAX_STAGED)
            .map(|_| StagedInfo {
                name: Name::new(&name).unwrap(),
                size: u32::MAX,
                digest: [0xff; 32],
                done: u32::MAX,
            })
            .collect(),
        rollback: Some(Rollback {
            from: u32::MAX,
            to: u32::MAX,
            reason: u8::MAX,
            phase: u8::MAX,
        }),
        heap: HeapSummary {
            phases: (0..MAX_HEAP)
                .map(|_| PhasePeak {
                    heap: u32::MAX,
                    stack: u32::MAX,
                })
                .collect(),
            residue: u32::MAX,
        },
    };
    assert!(hello.staged.is_full() && hello.heap.phases.is_full());
    assert_eq!((MAX_STAGED, MAX_HEAP), (2, 6));
    let payload = postcard::to_allocvec(&hello).unwrap();
    assert!(payload.len() <= MAX_PAYLOAD, "{} bytes", payload.len());
    let mut out = vec![0u8; MAX_FRAME];
    let n = DeviceSession::new(SECRET, Link::Tcp)
        .hello(&hello, &mut out)
        .unwrap();
    println!("largest Hello: {n} bytes (payload {})", payload.len());
    assert_eq!(n, HEADER_LEN + payload.len() + TAG_LEN);
    assert_eq!(server::open_hello(&out[..n], SECRET).unwrap(), hello);

    // The largest Files: every file, longest names, widest numbers.
    let files = Files {
        files: (0..MAX_FILES)
            .map(|_| FileInfo {
                name: Name::new(&name).unwrap(),
                size: u32::MAX,
                version: u32::MAX,
                digest: [0xff; 32],
            })
            .collect(),
    };
    let mut buf = vec![0u8; MAX_PAYLOAD];
    let m = DeviceMsg::Files(files.clone()).encode(&mut buf).unwrap();
    println!("largest Files: {m} bytes of payload");
    assert!(m <= MAX_PAYLOAD);
    assert_eq!(
        DeviceMsg::decode(kind::FILES, &buf[..m]),
        Ok(DeviceMsg::Files(files))
    );
}

#[test]
fn the_state_digest_is_of_the_set_whatever_its_order() {
    use rota_wire::msg::{state_digest, FileInfo, STATE_LEN};
    let names: [&[u8]; 5] = [b"app", b"init", b"data.bin", b"a", b"z"];
    let set: Vec<FileInfo<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| FileInfo {
            name: Name::new(n).unwrap(),
            size: 1000 * i as u32,
            version: 7 + i as u32,
            digest: [i as u8; 32],
        })
        .collect();
    // The definition: rota-release's set digest (what a signed manifest of the same files has)
    // in name order, cut to 16 bytes.
    let mut sorted = set.clone();
    sorted.sort_by_key(|f| f.name.as_bytes());
    let full = rota_release::set_digest(sorted.iter().map(|f| rota_release::Entry {
        name: f.name.as_bytes(),
        size: f.size,
        version: f.version,
        digest: &f.digest,
    }));
    let reference: [u8; STATE_LEN] = full[..STATE_LEN].try_into().unwrap();
    let digest = state_digest(&mut set.clone());
    assert_eq!(digest, reference);
    // Every order of the input gives it (and the input is sorted in place).
    let mut rng = Rng(77);
    for _ in 0..200 {
        let mut shuffled = set.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        assert_eq!(state_digest(&mut shuffled), digest, "{shuffled:?}");
        assert_eq!(shuffled, sorted);
    }
    // Any change of any field of any file changes it, and so do a file more or less.
    let mut changed = Vec::new();
    for i in 0..set.len() {
        let renamed = [names[i], b"~"].concat();
        let renamed: &'static [u8] = Box::leak(renamed.into_boxed_slice());
        for edit in 0..5 {
            let mut files = set.clone();
            let f = &mut files[i];
            match edit {
                0 => f.name = Name::new(renamed).unwrap(),
                1 => f.size += 1,
                2 => f.version ^= 1 << 20,
                3 => f.digest[31] ^= 1,
                _ => f.digest[0] ^= 0x80,
            }
            let d = state_digest(&mut files);
            assert_ne!(d, digest, "file {i} edit {edit}");
            changed.push(d);
        }
        let mut fewer = set.clone();
        fewer.remove(i);
        changed.push(state_digest(&mut fewer));
    }
    let mut more = set.clone();
    more.push(FileInfo {
        name: Name::new(b"extra").unwrap(),
        size: 0,
        version: 0,
        digest: [0; 32],
    });
    changed.push(state_digest(&mut more));
    changed.push(state_digest(&mut []));
    changed.push(digest);
    let distinct: std::collections::BTreeSet<_> = changed.iter().collect();
    assert_eq!(
        distinct.len(),
        changed.len(),
        "every set has its own digest"
    );
    // A name's bytes are not confused with the size after it (length-prefixed).
    let mut one = [FileInfo {
        name: Name::new(b"ab").unwrap(),
        size: 1,
        version: 0,
        digest: [0; 32],
    }];
    let mut other = [FileInfo {
        name: Name::new(b"a").unwrap(),
        size: u32::from(b'b'),
        version: 0,
        digest: [0; 32],
    }];
    assert_ne!(state_digest(&mut one), state_digest(&mut other));
    // What MemStore's Hello carries is the digest of its committed files.
    let mut store = MemStore::default();
    for (i, n) in names.iter().enumerate() {
        store
            .files
            .insert(n.to_vec(), (pattern(10 * i, i as u8), i as u32));
    }
    let mut listed = store.file_list();
    listed.reverse();
    assert_eq!(store.hello(1).state, state_digest(&mut listed));
}

#[test]
fn the_v1_state_of_a_config_is_read_and_replaced_by_hand_as_serde_would() {
    let mut config = DeviceConfig {
        device_id: 9,
        secret: heapless::Vec::from_slice(b"s").unwrap(),
        server: [127, 0, 0, 1],
        port: 8266,
        leave: false,
        app: "app".try_into().unwrap(),
        entry: "".try_into().unwrap(),
        ip: None,
        gateway: [0; 4],
        netmask: [0; 4],
        dns: [0; 4],
        protocol: 1,
        link: rota_wire::Link::Tcp,
        trials: 2,
        // The v1 state comes after the keys: replacing it keeps them.
        keys: heapless::Vec::from_slice(&[[0x4b; 32]]).unwrap(),
        chk: "".try_into().unwrap(),
        files: heapless::Vec::new(),
    };
    let mut buf = [0u8; 600];
    let n = config.encode(&mut buf).unwrap();
    let view = rota_wire::ConfigView::parse(&buf[..n]).unwrap();
    assert_eq!((view.chk, view.v1_files().count()), (&b""[..], 0));
    let files = [(&b"main.lc"[..], 17u32), (b"data.txt", 4)];
    let mut out = [0u8; 600];
    let m = view
        .with_v1_state(
            b"0123456789abcdef0123456789abcdef",
            files.iter().copied(),
            &mut out,
        )
        .unwrap();
    config.chk = "0123456789abcdef0123456789abcdef".try_into().unwrap();
    for (name, number) in files {
        let name = core::str::from_utf8(name).unwrap().try_into().unwrap();
        config
            .files
            .push(rota_wire::config::V1File { name, number })
            .unwrap();
    }
    assert_eq!(DeviceConfig::decode(&out[..m]).unwrap(), config);
    let again = rota_wire::ConfigView::parse(&out[..m]).unwrap();
    assert_eq!(again.v1_files().collect::<Vec<_>>(), files.to_vec());
    let nine = [(&b"f"[..], 1u32); 9];
    assert!(view
        .with_v1_state(b"", nine.iter().copied(), &mut out)
        .is_err());
}

/// A config record as the fuzzer found it (fuzz target `config`): every field empty or zero, the
/// link's variant index written as the overlong varint `80 80 00` (0, Tcp), protocol `protocol`;
/// then (fields added since) trials 0 and no keys; the chk (empty) and the v1 files (none) last.
fn overlong_link_record(protocol: u8) -> Vec<u8> {
    let mut m = vec![
        0xff, 0x05, 0x00, 0x00, 0x78, 0x78, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    m.extend_from_slice(&[
        0xff, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x05, 0xff, 0x05, 0x00, 0x00,
    ]);
    m.push(protocol);
    m.extend_from_slice(&[0x80, 0x80, 0x00]);
    m.extend_from_slice(&[0x00, 0x00]); // trials, keys
    m.extend_from_slice(&[0x00, 0x00]); // chk, files
    m
}

#[test]
fn config_view_reads_the_link_as_a_varint_as_decode_does() {
    // postcard decodes an enum's variant index as a u32 varint, overlong forms included; the view
    // read one byte and refused what the server's decoder accepts.
    let m = overlong_link_record(1);
    let c = DeviceConfig::decode(&m).expect("postcard takes the overlong index");
    let v = rota_wire::ConfigView::parse(&m).expect("the view takes it too");
    assert_eq!(
        (v.link, c.link),
        (rota_wire::Link::Tcp, rota_wire::Link::Tcp)
    );
    // The record the fuzzer found: protocol 0 is refused by both for the same reason.
    let m = overlong_link_record(0);
    assert_eq!(
        rota_wire::ConfigView::parse(&m).err(),
        DeviceConfig::decode(&m).err()
    );
    assert_eq!(
        DeviceConfig::decode(&m).err(),
        Some(rota_wire::ConfigError::Protocol)
    );
}

#[test]
fn config_view_reads_lengths_as_wide_as_decode_does() {
    // Lengths and counts are postcard `usize`s: up to 10 varint bytes on a 64-bit host (5 on the
    // device). An overlong 6-byte empty chk: both accept it, or both refuse it.
    let mut m = overlong_link_record(1);
    let chk = m.len() - 2;
    m.splice(chk..chk + 1, [0x80, 0x80, 0x80, 0x80, 0x80, 0x00]);
    let view = rota_wire::ConfigView::parse(&m);
    let full = DeviceConfig::decode(&m);
    assert_eq!(view.is_ok(), full.is_ok(), "{view:?} vs {full:?}");
    assert_eq!(full.is_ok(), usize::BITS == 64);
}

/// HMAC-SHA256 as RFC 2104 defines it, from SHA-256 alone: what the tags must be.
fn reference_hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[test]
fn tags_are_truncated_hmac_sha256_of_direction_sequence_header_and_payload() {
    // RFC 4231, test case 2: the reference itself.
    assert_eq!(
        reference_hmac(b"Jefe", b"what do ya want for nothing?"),
        [
            0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
            0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
            0x64, 0xec, 0x38, 0x43
        ]
    );
    assert_eq!(TAG_LEN, 16, "HMAC-SHA256-128");
    let long_secret = pattern(100, 7);
    for secret in [SECRET, &long_secret[..]] {
        let k0 = reference_hmac(
            secret,
            &[&b"rota2 hello"[..], &[1, 0, 0, 0], &[2, 0, 0, 0]].concat(),
        );
        let hello = Key::hello(secret, 1, 2);
        let ks = reference_hmac(
            secret,
            &[
                &b"rota2 session"[..],
                &[1, 0, 0, 0],
                &[2, 0, 0, 0],
                &[9; 16],
            ]
            .concat(),
        );
        let session = Key::session(secret, 1, 2, &[9; 16]);
        // Every payload length across the block boundaries a frame meets, both directions, sequence
        // numbers sharing their low byte; the same key tags many frames (it is copied, never
        // consumed).
        for len in (0..200).chain([1024, 1031, 1100]) {
            let payload = pattern(len, len as u8);
            for dir in [Dir::ToServer, Dir::ToDevice] {
                for seq in [3u32, 259, 0x0100_0003] {
                    let header = [0xB2, 7, len as u8, (len >> 8) as u8, seq as u8];
                    let message =
                        [&[dir as u8][..], &seq.to_le_bytes(), &header, &payload].concat();
                    let tag = hello.tag(dir, seq, &header, &payload);
                    assert_eq!(tag[..], reference_hmac(&k0, &message)[..TAG_LEN]);
                    assert!(hello.verify(dir, seq, &header, &payload, &tag));
                    assert!(!hello.verify(dir, seq ^ 0x100, &header, &payload, &tag));
                    assert!(!hello.verify(dir, seq, &header, &payload, &tag[..TAG_LEN - 1]));
                    assert_eq!(
                        session.tag(dir, seq, &header, &payload)[..],
                        reference_hmac(&ks, &message)[..TAG_LEN]
                    );
                }
            }
        }
    }
    // A sealed frame: the header carries the low byte, the tag is over the whole number.
    let key = Key::session(SECRET, 1, 2, &[9; 16]);
    let mut buf = vec![0u8; MAX_FRAME];
    buf[HEADER_LEN..HEADER_LEN + 3].copy_from_slice(b"abc");
    let n = frame::seal(&mut buf, &key, Dir::ToDevice, kind::DATA, 0x1234_5678, 3).unwrap();
    assert_eq!(n, HEADER_LEN + 3 + TAG_LEN);
    assert_eq!(buf[..HEADER_LEN], [0xB2, kind::DATA, 3, 0, 0x78]);
    let message = [
        &[Dir::ToDevice as u8][..],
        &0x1234_5678u32.to_le_bytes(),
        &buf[..HEADER_LEN],
        b"abc",
    ]
    .concat();
    let ks = reference_hmac(
        SECRET,
        &[
            &b"rota2 session"[..],
            &[1, 0, 0, 0],
            &[2, 0, 0, 0],
            &[9; 16],
        ]
        .concat(),
    );
    assert_eq!(
        buf[HEADER_LEN + 3..n],
        reference_hmac(&ks, &message)[..TAG_LEN]
    );
    let f = Frame::new_checked(&buf[..n]).unwrap();
    assert_eq!(f.verify(&key, Dir::ToDevice, 0x1234_5678), Ok(()));
    assert_eq!(
        f.verify(&key, Dir::ToDevice, 0x1234_5778),
        Err(Error::BadTag)
    );
}
