//! The device's half against a host made of the same codec, over an in-memory line.

extern crate std;
use super::*;
use frame::{encode, line_len, Frame, MAX_LINE};
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

/// The device's UART: what the host sent (to read) and what the device wrote.
#[derive(Default)]
struct Line {
    to_device: VecDeque<u8>,
    from_device: Vec<u8>,
}

impl Port for Line {
    fn write(&mut self, bytes: &[u8]) {
        self.from_device.extend_from_slice(bytes);
    }
    fn read(&mut self) -> Option<u8> {
        self.to_device.pop_front()
    }
}

/// The host's side: its own sequence number and a decoder of what the device wrote.
struct Host {
    seq: u8,
    decoder: Decoder,
    console: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
struct Owned {
    kind: Kind,
    seq: u8,
    payload: Vec<u8>,
}

impl Host {
    fn new() -> Host {
        Host {
            seq: 0,
            decoder: Decoder::new(),
            console: Vec::new(),
        }
    }

    fn frame(&mut self, kind: Kind, payload: &[u8]) -> Vec<u8> {
        let mut out = [0u8; MAX_LINE];
        let n = encode(kind, self.seq, payload, &mut out).expect("encodes");
        self.seq = self.seq.wrapping_add(1);
        out[..n].to_vec()
    }

    fn send(&mut self, line: &mut Line, kind: Kind, payload: &[u8]) {
        let f = self.frame(kind, payload);
        line.to_device.extend(f);
    }

    /// Every frame the device wrote since the last call (console bytes kept aside).
    fn take(&mut self, line: &mut Line) -> Vec<Owned> {
        let mut frames = Vec::new();
        for b in core::mem::take(&mut line.from_device) {
            match self.decoder.push(b).expect("device frames are well formed") {
                Token::Console(c) => self.console.push(c),
                Token::Pending => {}
                Token::Frame => {
                    let Frame { kind, seq, payload } = self.decoder.frame();
                    frames.push(Owned {
                        kind,
                        seq,
                        payload: payload.to_vec(),
                    });
                }
            }
        }
        frames
    }
}

fn connected() -> (SerialLink, Line, Host) {
    let (mut link, mut line, mut host) = (SerialLink::new(), Line::default(), Host::new());
    link.connect(&mut line, [10, 0, 2, 100], 8266).unwrap();
    let sent = host.take(&mut line);
    assert_eq!(
        sent,
        [Owned {
            kind: Kind::Connect,
            seq: 0,
            payload: [10, 0, 2, 100, 0x4a, 0x20].to_vec()
        }]
    );
    assert_eq!(link.state(), State::Connecting);
    host.send(&mut line, Kind::Accept, &[]);
    link.poll(&mut line);
    assert_eq!(link.state(), State::Established);
    (link, line, host)
}

/// The device asks for a frame; the host answers with `data`; returns what recv handed out.
fn deliver(link: &mut SerialLink, line: &mut Line, host: &mut Host, data: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 300];
    assert_eq!(link.recv(line, &mut buf), Ok(0));
    let credits = host.take(line);
    assert_eq!(credits.len(), 1);
    assert_eq!(credits[0].kind, Kind::Credit);
    assert_eq!(credits[0].payload, (MAX_PAYLOAD as u16).to_le_bytes());
    host.send(line, Kind::Data, data);
    let mut got = Vec::new();
    while got.len() < data.len() {
        let n = link.recv(line, &mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn every_payload_length_and_byte_value_round_trips_through_the_codec() {
    let mut out = [0u8; MAX_LINE];
    for len in (0..=MAX_PAYLOAD)
        .step_by(7)
        .chain([253, 254, 255, 508, MAX_PAYLOAD])
    {
        for fill in [0u8, 1, 0xff] {
            let payload: Vec<u8> = (0..len)
                .map(|i| if fill == 1 { i as u8 } else { fill })
                .collect();
            let n = encode(Kind::Data, len as u8, &payload, &mut out).unwrap();
            let empty = len == 0;
            assert!(n <= line_len(len));
            assert_eq!((out[0], out[1], out[n - 1]), (0, 0, 0));
            assert!(!out[2..n - 1].contains(&0), "no delimiter inside a frame");
            let mut d = Decoder::new();
            let mut frames = 0;
            for &b in &out[..n] {
                let token = match d.push(b) {
                    Err(FrameError::Payload(Kind::Data)) if empty => continue,
                    t => t.unwrap(),
                };
                if token == Token::Frame {
                    frames += 1;
                    let f = d.frame();
                    if len > 0 {
                        assert_eq!(
                            (f.kind, f.seq, f.payload),
                            (Kind::Data, len as u8, &payload[..])
                        );
                    }
                }
            }
            // An empty Data frame encodes but is refused on decode.
            assert_eq!(frames, usize::from(len > 0), "len {len}");
        }
    }
    assert_eq!(encode(Kind::Data, 0, &[1; MAX_PAYLOAD + 1], &mut out), None);
    assert_eq!(
        encode(Kind::Data, 0, &[1; 10], &mut out[..line_len(10) - 1]),
        None
    );
}

#[test]
fn console_text_between_frames_is_console_and_frames_are_found_in_it() {
    let mut host = Host::new();
    let mut stream = b"boot 1\n".to_vec();
    stream.extend(host.frame(Kind::Accept, &[]));
    stream.extend(b"provision: staged\n");
    stream.extend(host.frame(Kind::Data, b"\x00\x00abc"));
    let mut d = Decoder::new();
    let mut text = Vec::new();
    let mut frames = Vec::new();
    for b in stream {
        match d.push(b).unwrap() {
            Token::Console(c) => text.push(c),
            Token::Pending => {}
            Token::Frame => frames.push((d.frame().kind, d.frame().payload.to_vec())),
        }
    }
    assert_eq!(text, b"boot 1\nprovision: staged\n");
    assert_eq!(
        frames,
        [
            (Kind::Accept, Vec::new()),
            (Kind::Data, b"\0\0abc".to_vec())
        ]
    );
}

#[test]
fn data_flows_both_ways_one_credited_frame_at_a_time() {
    let (mut link, mut line, mut host) = connected();
    // A send longer than one frame goes in TX_PAYLOAD pieces.
    let big = [7u8; TX_PAYLOAD + 10];
    assert_eq!(link.send(&mut line, &big), Ok(TX_PAYLOAD));
    assert_eq!(link.send(&mut line, &big[TX_PAYLOAD..]), Ok(10));
    let sent = host.take(&mut line);
    assert_eq!(
        sent.iter()
            .map(|f| (f.kind, f.seq, f.payload.len()))
            .collect::<Vec<_>>(),
        [(Kind::Data, 1, TX_PAYLOAD), (Kind::Data, 2, 10)]
    );
    let data: Vec<u8> = (0..MAX_PAYLOAD).map(|i| (i * 7) as u8).collect();
    assert_eq!(deliver(&mut link, &mut line, &mut host, &data), data);
    assert_eq!(deliver(&mut link, &mut line, &mut host, b"next"), b"next");
    // No new credit while the device has not asked again.
    assert!(host.take(&mut line).is_empty());
}

#[test]
fn the_line_is_not_read_while_received_bytes_wait_to_be_taken() {
    let (mut link, mut line, mut host) = connected();
    let mut buf = [0u8; 4];
    assert_eq!(link.recv(&mut line, &mut buf), Ok(0));
    host.take(&mut line);
    host.send(&mut line, Kind::Data, b"abcdefgh");
    host.send(&mut line, Kind::Close, &[0]);
    assert_eq!(link.recv(&mut line, &mut buf), Ok(4));
    // The Close is still on the line: the first frame's bytes are taken first.
    assert!(!line.to_device.is_empty());
    assert_eq!(link.state(), State::Established);
    assert_eq!(link.recv(&mut line, &mut buf), Ok(4));
    assert_eq!(&buf, b"efgh");
    assert_eq!(link.recv(&mut line, &mut buf), Err(LinkError::Closed));
    assert_eq!(link.state(), State::Closed(Ended::Peer(Close::Normal)));
}

#[test]
fn a_flipped_byte_ends_the_connection_and_tells_the_host() {
    for at in 1..12 {
        let (mut link, mut line, mut host) = connected();
        let mut buf = [0u8; 64];
        assert_eq!(link.recv(&mut line, &mut buf), Ok(0));
        host.take(&mut line);
        let mut f = host.frame(Kind::Data, b"a frame of data");
        f[at] ^= 0x10;
        line.to_device.extend(f);
        assert_eq!(
            link.recv(&mut line, &mut buf),
            Err(LinkError::Closed),
            "flip at {at}"
        );
        assert!(matches!(link.state(), State::Closed(Ended::Line(_))));
        let told = host.take(&mut line);
        assert_eq!(
            told.last().map(|f| (f.kind, f.payload.clone())),
            Some((Kind::Close, vec![Close::LineError as u8]))
        );
    }
}

#[test]
fn a_dropped_byte_never_yields_wrong_bytes_and_ends_the_connection() {
    // Three frames, each byte of them dropped in turn; each frame is sent when the device asks.
    let parts: [&[u8]; 3] = [b"payload bytes", b"more", b"last"];
    let full: Vec<u8> = parts.concat();
    let lens: Vec<usize> = {
        let mut h = Host::new();
        h.seq = 1;
        parts.iter().map(|p| h.frame(Kind::Data, p).len()).collect()
    };
    let total: usize = lens.iter().sum();
    for drop in 0..total {
        let (mut link, mut line, mut host) = connected();
        let mut frames: Vec<Vec<u8>> = parts.iter().map(|p| host.frame(Kind::Data, p)).collect();
        // Remove the byte from the frame that holds it.
        let (mut i, mut at) = (0, drop);
        while at >= frames[i].len() {
            at -= frames[i].len();
            i += 1;
        }
        frames[i].remove(at);
        let opening = at < 2;
        let mut pending = frames.into_iter();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        let end = loop {
            match link.recv(&mut line, &mut buf) {
                Ok(0) => match pending.next() {
                    Some(f) => line.to_device.extend(f),
                    None => break None,
                },
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Some(e),
            }
        };
        // Never a wrong or skipped byte: what was handed out is a prefix of what was sent.
        assert!(full.starts_with(&got), "drop at {drop}: got {got:?}");
        if opening {
            // A frame opens with two delimiters: losing one of them loses nothing.
            assert_eq!(got, full, "drop at {drop}");
        } else {
            assert!(got.len() < full.len(), "drop at {drop}: got {got:?}");
            // The loss shows at once, except for the very last delimiter, which only a deadline
            // finds.
            if drop != total - 1 {
                assert_eq!(end, Some(LinkError::Closed), "drop at {drop}: got {got:?}");
            }
        }
    }
    // A whole frame lost: the next one's sequence number gives it away.
    let (mut link, mut line, mut host) = connected();
    let mut buf = [0u8; 64];
    assert_eq!(link.recv(&mut line, &mut buf), Ok(0));
    let _lost = host.frame(Kind::Data, b"lost");
    host.send(&mut line, Kind::Data, b"seen");
    assert_eq!(link.recv(&mut line, &mut buf), Err(LinkError::Closed));
    assert_eq!(
        link.state(),
        State::Closed(Ended::Line(FrameError::Seq(1, 2)))
    );
}

#[test]
fn data_the_device_did_not_ask_for_is_a_protocol_error() {
    let (mut link, mut line, mut host) = connected();
    host.send(&mut line, Kind::Data, b"unasked");
    link.poll(&mut line);
    assert_eq!(link.state(), State::Closed(Ended::Protocol(Kind::Data)));
    let (mut link, mut line, mut host) = connected();
    host.send(&mut line, Kind::Accept, &[]);
    link.poll(&mut line);
    assert_eq!(link.state(), State::Closed(Ended::Protocol(Kind::Accept)));
}

#[test]
fn oversized_garbage_and_bad_fields_are_refused_with_their_reason() {
    let mut d = Decoder::new();
    assert_eq!(d.push(0), Ok(Token::Pending));
    let mut last = Ok(Token::Pending);
    for _ in 0..=MAX_LINE {
        last = d.push(0x55);
        if last.is_err() {
            break;
        }
    }
    assert_eq!(last, Err(FrameError::TooLong));
    assert!(!d.in_frame());
    let feed = |bytes: &[u8]| {
        let mut d = Decoder::new();
        let mut r = Ok(Token::Pending);
        for &b in bytes {
            r = d.push(b);
        }
        r
    };
    // A body too short, a bad COBS code, an unknown kind, wrong payload lengths.
    assert_eq!(feed(&[0, 3, 1, 1, 0]), Err(FrameError::TooShort));
    assert_eq!(feed(&[0, 9, 1, 0]), Err(FrameError::Cobs));
    let mut out = [0u8; MAX_LINE];
    let with_kind = |kind: u8, payload: &[u8], out: &mut [u8]| {
        // Encode as Data, then rewrite the kind byte and fix the CRC by re-encoding by hand.
        let mut body = vec![kind, 0];
        body.extend_from_slice(payload);
        let crc = crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISO_HDLC).checksum(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        let n = cobs::encode(&body, &mut out[1..]);
        out[0] = 0;
        out[n + 1] = 0;
        out[..n + 2].to_vec()
    };
    assert_eq!(
        feed(&with_kind(9, b"x", &mut out)),
        Err(FrameError::Kind(9))
    );
    assert_eq!(
        feed(&with_kind(Kind::Credit as u8, &[1], &mut out)),
        Err(FrameError::Payload(Kind::Credit))
    );
    assert_eq!(
        feed(&with_kind(Kind::Connect as u8, &[1; 5], &mut out)),
        Err(FrameError::Payload(Kind::Connect))
    );
    assert_eq!(
        feed(&with_kind(Kind::Close as u8, &[], &mut out)),
        Err(FrameError::Payload(Kind::Close))
    );
    assert_eq!(
        feed(&with_kind(Kind::Accept as u8, &[], &mut out)),
        Ok(Token::Frame)
    );
}

#[test]
fn a_refused_connection_and_a_local_close() {
    let (mut link, mut line, mut host) = (SerialLink::new(), Line::default(), Host::new());
    let mut buf = [0u8; 8];
    assert_eq!(
        link.recv(&mut line, &mut buf),
        Err(LinkError::Closed),
        "never opened"
    );
    link.connect(&mut line, [1, 2, 3, 4], 1).unwrap();
    assert_eq!(
        link.connect(&mut line, [1, 2, 3, 4], 1),
        Err(LinkError::InUse)
    );
    assert_eq!(link.recv(&mut line, &mut buf), Ok(0), "connecting");
    host.take(&mut line);
    host.send(&mut line, Kind::Close, &[Close::Refused as u8]);
    link.poll(&mut line);
    assert_eq!(link.state(), State::Closed(Ended::Peer(Close::Refused)));
    assert_eq!(link.send(&mut line, b"x"), Err(LinkError::Closed));
    // A new connection after the refusal starts its sequence numbers over.
    let (mut link, mut line, mut host) = connected();
    link.close(&mut line);
    let f = host.take(&mut line);
    assert_eq!(
        (f[0].kind, f[0].seq, f[0].payload.clone()),
        (Kind::Close, 1, vec![0])
    );
    assert_eq!(link.state(), State::Idle);
    // The host's late frames for the closed connection are ignored.
    host.send(&mut line, Kind::Close, &[0]);
    link.poll(&mut line);
    assert_eq!(link.state(), State::Idle);
    link.connect(&mut line, [1, 2, 3, 4], 1).unwrap();
    assert_eq!(host.take(&mut line)[0].seq, 0);
}

#[test]
fn keys_typed_during_a_session_reach_the_console_queue() {
    let (mut link, mut line, mut host) = connected();
    line.to_device.extend(b"q");
    let mut buf = [0u8; 8];
    assert_eq!(link.recv(&mut line, &mut buf), Ok(0));
    host.take(&mut line);
    host.send(&mut line, Kind::Data, b"data");
    line.to_device.extend(b"0123456789");
    assert_eq!(link.recv(&mut line, &mut buf), Ok(4));
    let mut keys = Vec::new();
    while let Some(k) = link.console_byte(&mut line) {
        keys.push(k);
    }
    // Eight are kept; the rest are dropped.
    assert_eq!(keys, b"q0123456");
    assert_eq!(link.state(), State::Established);
}

#[test]
fn noise_with_a_zero_byte_before_a_frame_does_not_swallow_it() {
    // The ESP8266's boot ROM prints at 74,880 baud: at 115,200 that is noise, zero bytes included.
    let mut host = Host::new();
    let mut stream = vec![0x9c, 0x00, 0x12, 0x6c, 0x00, 0x8c, 0xe2];
    stream.extend(b"rota core on esp8266\n");
    // (Those bytes after the last noise 0x00 are lost to the console: a false frame holds them.)
    stream.extend(host.frame(Kind::Connect, &[10, 0, 2, 100, 0x4a, 0x20]));
    let mut d = Decoder::new();
    let mut frames = Vec::new();
    let mut errors = 0;
    for b in stream {
        match d.push(b) {
            Ok(Token::Frame) => frames.push(d.frame().kind),
            Ok(_) => {}
            Err(_) => errors += 1,
        }
    }
    assert_eq!(frames, [Kind::Connect]);
    assert!(errors >= 1, "the noise is reported");
    // After a damaged frame the decoder is outside again: the console text that follows shows.
    let mut d = Decoder::new();
    let mut bad = host.frame(Kind::Data, b"data");
    bad[4] ^= 0x40;
    assert_ne!(bad[4], 0);
    let mut text = Vec::new();
    for b in bad
        .into_iter()
        .chain(b"provision: failed\n".iter().copied())
    {
        if let Ok(Token::Console(c)) = d.push(b) {
            text.push(c);
        }
    }
    assert_eq!(text, b"provision: failed\n");
}
