//! Frames: round trips, and every way a frame can be damaged, replayed, reordered or misdirected.

mod common;

use common::*;
use rota_wire::msg::{kind, Bytes, Data, Hello, Name};
use rota_wire::server::{self, Outgoing, ServerSession, Step};
use rota_wire::{
    frame, DeviceConfig, DeviceMsg, DeviceSession, Dir, Error, Frame, Header, Key, Poll, ServerMsg,
    HEADER_LEN, MAX_FRAME, MAX_PAYLOAD, TAG_LEN,
};

/// A device session that has sent its Hello (nonce `nonce`) and taken the Welcome of server nonce
/// `[9; 16]`, and the server session facing it, plus the frames the server sends next (Begin and
/// data of a 3 KB file).
fn established(nonce: u32) -> (DeviceSession<'static>, Vec<Vec<u8>>) {
    static DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let data = DATA.get_or_init(|| pattern(3000, 1));
    let store = MemStore::default();
    let mut out = vec![0u8; MAX_FRAME];
    let mut device = DeviceSession::new(SECRET, rota_wire::Link::Tcp);
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
    let (mut session, n) =
        ServerSession::welcome(SECRET, &hello, [9; 16], steps, &mut out).unwrap();
    let welcome = out[..n].to_vec();
    assert_eq!(device.feed(&welcome), welcome.len());
    let mut store = MemStore::default();
    assert_eq!(device.poll(&mut store, &mut out), Ok(Poll::Receive));
    let mut frames = vec![welcome];
    // Begin, then pretend the device said Ready{0} to get the data frames.
    let n = session.poll_transmit(&mut out).unwrap().unwrap();
    frames.push(out[..n].to_vec());
    let key = Key::session(SECRET, DEVICE, nonce, &[9; 16]);
    let mut buf = vec![0u8; MAX_FRAME];
    let msg = DeviceMsg::Ready(rota_wire::msg::Ready { offset: 0 });
    let len = msg.encode(&mut buf[HEADER_LEN..]).unwrap();
    let n = frame::seal(&mut buf, &key, Dir::ToServer, msg.kind(), 1, len).unwrap();
    session.handle(&buf[..n]).unwrap();
    while let Some(n) = session.poll_transmit(&mut out).unwrap() {
        frames.push(out[..n].to_vec());
    }
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
    ];
    let key = Key::hello(SECRET, 1, 2);
    for (seq, msg) in device_msgs.iter().enumerate() {
        let mut buf = [0u8; MAX_FRAME];
        let len = msg.encode(&mut buf[HEADER_LEN..]).unwrap();
        let n = frame::seal(&mut buf, &key, Dir::ToServer, msg.kind(), seq as u32, len).unwrap();
        let f = Frame::new_checked(&buf[..n]).unwrap();
        f.verify(&key, Dir::ToServer).unwrap();
        assert_eq!(
            f.verify(&key, Dir::ToDevice),
            Err(Error::BadTag),
            "no reflection"
        );
        assert_eq!(f.seq(), seq as u32);
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
    // A full data chunk fits one frame.
    let mut buf = [0u8; MAX_PAYLOAD];
    assert!(server_msgs[3].encode(&mut buf).unwrap() <= MAX_PAYLOAD);
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
    // Device side: the Welcome, the Begin and a data frame.
    let (_, frames) = established(4);
    for (which, index) in [(0, 0), (1, 1), (2, 2)] {
        let good = &frames[index];
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let (mut device, frames) = established(4);
                let mut bad = good.clone();
                bad[i] ^= flip;
                let mut seq: Vec<&[u8]> =
                    frames[1..index.max(1)].iter().map(Vec::as_slice).collect();
                if index == 0 {
                    // Re-run the Welcome on a fresh device.
                    let store = MemStore::default();
                    device = DeviceSession::new(SECRET, rota_wire::Link::Tcp);
                    device.hello(&store.hello(4), &mut out).unwrap();
                    seq.clear();
                }
                seq.push(&bad);
                // More stream after it: a grown length field must not wait forever to be refused.
                let filler = vec![0u8; MAX_FRAME];
                seq.push(&filler);
                let result = device_takes(&mut device, &seq);
                assert!(
                    result.is_err(),
                    "frame {which} byte {i} ^ {flip:#x} accepted"
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
    let begin = &frames[1];
    let mut store = MemStore::default();
    let mut out = vec![0u8; MAX_FRAME];
    assert_eq!(device.feed(&begin[..begin.len() - 1]), begin.len() - 1);
    assert_eq!(device.poll(&mut store, &mut out), Ok(Poll::Receive));
    assert!(store.staged.is_empty());
}

#[test]
fn oversized_length_is_refused_from_the_header() {
    let mut header = [0xB2, kind::DATA, 0xff, 0xff, 0, 0, 0, 0];
    assert_eq!(Header::parse(&header), Err(Error::TooLong(0xffff)));
    let limit = (MAX_PAYLOAD as u16 + 1).to_le_bytes();
    header[2..4].copy_from_slice(&limit);
    assert_eq!(
        Header::parse(&header),
        Err(Error::TooLong(MAX_PAYLOAD as u16 + 1))
    );
    assert_eq!(Header::parse(&[b'{', 0, 0]), Err(Error::BadMagic(b'{')));
    assert_eq!(Header::parse(&[0xB2, 0, 0]), Err(Error::Truncated));
    // The device takes the 8 header bytes, then no more, and fails.
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
    assert_eq!(device_takes(&mut device, &[&old[1]]), Err(Error::BadTag));
    // The old Welcome, given to a device that sent a new Hello.
    let store = MemStore::default();
    let mut out = vec![0u8; MAX_FRAME];
    let mut device = DeviceSession::new(SECRET, rota_wire::Link::Tcp);
    device.hello(&store.hello(8), &mut out).unwrap();
    assert_eq!(device_takes(&mut device, &[&old[0]]), Err(Error::BadTag));
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
    // Data frames 2 and 3 swapped: well-tagged, wrong sequence number.
    let (mut device, frames) = established(9);
    let result = device_takes(&mut device, &[&frames[1], &frames[3]]);
    assert_eq!(
        result,
        Err(Error::BadSeq {
            expected: 2,
            got: 3
        })
    );
    // The same frame twice.
    let (mut device, frames) = established(9);
    let result = device_takes(&mut device, &[&frames[1], &frames[1]]);
    assert_eq!(
        result,
        Err(Error::BadSeq {
            expected: 2,
            got: 1
        })
    );
    // The Welcome again, mid-session.
    let (mut device, frames) = established(9);
    let result = device_takes(&mut device, &[&frames[0]]);
    assert_eq!(
        result,
        Err(Error::BadSeq {
            expected: 1,
            got: 0
        })
    );
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
        _ => false,
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

    // Server messages: the device's decoder accepts exactly what serde accepts.
    let name = Name::new(b"file").unwrap();
    let msgs = [
        ServerMsg::Welcome(rota_wire::msg::Welcome {
            server_nonce: [1; 16],
        }),
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
    let config = DeviceConfig {
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
        link: rota_wire::Link::Tcp,
        chk: "0123".try_into().unwrap(),
        files: [rota_wire::config::V1File {
            name: "a.lua".try_into().unwrap(),
            number: 99,
        }]
        .into_iter()
        .collect(),
    };
    let mut cbuf = [0u8; 600];
    let n = config.encode(&mut cbuf).unwrap();
    assert_eq!(
        DeviceConfig::check_update(&cbuf[..n], DEVICE, SECRET, rota_wire::Link::Tcp),
        Ok(())
    );
    // A config that would move the device to the other link is refused, naming the field.
    let serial = DeviceConfig {
        link: rota_wire::Link::Serial,
        ..config.clone()
    };
    let mut sbuf = [0u8; 600];
    let sn = serial.encode(&mut sbuf).unwrap();
    assert_eq!(
        DeviceConfig::check_update(&sbuf[..sn], DEVICE, SECRET, rota_wire::Link::Tcp),
        Err(rota_wire::ConfigError::Link)
    );
    assert_eq!(
        DeviceConfig::check_update(&sbuf[..sn], DEVICE, SECRET, rota_wire::Link::Serial),
        Ok(())
    );
    for m in mutations(&cbuf[..n]) {
        let hand = DeviceConfig::check_update(&m, DEVICE, SECRET, rota_wire::Link::Tcp);
        let reference = DeviceConfig::decode(&m).and_then(|c| {
            if c.device_id != DEVICE {
                Err(rota_wire::ConfigError::DeviceId)
            } else if c.secret.as_slice() != SECRET {
                Err(rota_wire::ConfigError::Secret)
            } else if c.link != rota_wire::Link::Tcp {
                Err(rota_wire::ConfigError::Link)
            } else {
                Ok(())
            }
        });
        assert_eq!(
            hand.is_ok(),
            reference.is_ok(),
            "{m:?}: {hand:?} vs {reference:?}"
        );
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
                    (v.gateway, v.netmask, v.protocol),
                    (c.gateway, c.netmask, c.protocol)
                );
            }
            Err(_) => assert!(view.is_err(), "{m:?}"),
        }
    }
}

#[test]
fn the_largest_hello_fits_one_frame() {
    use rota_wire::msg::{FileInfo, HeapReport, StagedInfo, MAX_FILES, MAX_HEAP, MAX_STAGED};
    let name = [b'n'; rota_wire::MAX_NAME];
    let store = MemStore::default();
    let mut hello = store.hello(u32::MAX);
    hello.heap.clear();
    (hello.device_id, hello.app_version, hello.config) = (u32::MAX, u32::MAX, u32::MAX);
    for _ in 0..MAX_FILES {
        let f = FileInfo {
            name: Name::new(&name).unwrap(),
            size: u32::MAX,
            version: u32::MAX,
            digest: [0xff; 32],
        };
        hello.files.push(f).unwrap();
    }
    for _ in 0..MAX_STAGED {
        let s = StagedInfo {
            name: Name::new(&name).unwrap(),
            size: u32::MAX,
            digest: [0xff; 32],
            done: u32::MAX,
        };
        hello.staged.push(s).unwrap();
    }
    for _ in 0..MAX_HEAP {
        let h = HeapReport {
            phase: 255,
            used: u32::MAX,
            peak: u32::MAX,
            stack_peak: u32::MAX,
        };
        hello.heap.push(h).unwrap();
    }
    let mut out = vec![0u8; MAX_FRAME];
    let n = DeviceSession::new(SECRET, rota_wire::Link::Tcp)
        .hello(&hello, &mut out)
        .unwrap();
    println!("largest Hello: {n} bytes");
    assert!(n <= MAX_FRAME);
    assert_eq!(server::open_hello(&out[..n], SECRET).unwrap(), hello);
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
/// link's variant index written as the overlong varint `80 80 00` (0, Tcp), protocol `protocol`.
fn overlong_link_record(protocol: u8) -> Vec<u8> {
    let mut m = vec![
        0xff, 0x05, 0x00, 0x00, 0x78, 0x78, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    m.extend_from_slice(&[
        0xff, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x05, 0xff, 0x05, 0x00, 0x00,
    ]);
    m.push(protocol);
    m.extend_from_slice(&[0x80, 0x80, 0x00, 0x00, 0x00]);
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
fn tags_are_hmac_sha256_of_direction_header_and_payload_with_the_derived_key() {
    // RFC 4231, test case 2: the reference itself.
    assert_eq!(
        reference_hmac(b"Jefe", b"what do ya want for nothing?"),
        [
            0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
            0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
            0x64, 0xec, 0x38, 0x43
        ]
    );
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
        // Every payload length across the block boundaries a frame meets, both directions; the
        // same key tags many frames (it is copied, never consumed).
        for len in (0..200).chain([1024, 1031, 1100]) {
            let payload = pattern(len, len as u8);
            for dir in [Dir::ToServer, Dir::ToDevice] {
                let header = [0xB2, 7, len as u8, (len >> 8) as u8, 3, 0, 0, 0];
                let message = [&[dir as u8][..], &header, &payload].concat();
                assert_eq!(
                    hello.tag(dir, &header, &payload),
                    reference_hmac(&k0, &message)
                );
                assert_eq!(
                    session.tag(dir, &header, &payload),
                    reference_hmac(&ks, &message)
                );
            }
        }
    }
}
