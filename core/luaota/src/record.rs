//! v1 record framing, for both ends: the device's [`Session`](crate::Session) and rota-server use it.
//!
//! ```text
//! record  := json tag "\n" [payload]
//! tag     := the last 3 bytes of HMAC-MD5(secret, json), 6 lowercase hex characters (see Signer)
//! payload := raw bytes, present only when json has "data": N (exactly N bytes; never signed)
//! ```
//!
//! [`Record`] is a checked view over received bytes (lengths and the tag's syntax are checked once, on
//! construction; no accessor can panic), [`Line`] the signed line of a record to send, written piece
//! by piece into any buffer. No heap, no I/O; every malformed input gives a typed [`RecordError`].

use crate::sign::{Signer, TAG_LEN};

/// A record's JSON must be at least this long (the NodeMCU client's rule).
pub const MIN_JSON_LEN: usize = 10;

/// Why bytes are not a (valid) v1 record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// No line feed ends the JSON and tag.
    NoLineFeed,
    /// Bytes follow the line feed of what must be a single line (a device's records).
    TrailingBytes(usize),
    /// The JSON (the bytes before the tag; `usize` of them) is shorter than [`MIN_JSON_LEN`], or the
    /// line has no room for a tag.
    TooShort(usize),
    /// The tag is not 6 lowercase hex characters.
    TagSyntax,
    /// The tag is well formed but is not the JSON's under this secret.
    BadTag,
    /// JSON to send contains a raw line feed (it would end the line early).
    RawLineFeed,
    /// The payload is not as long as the JSON's `data` field says.
    PayloadLength {
        /// The `data` field.
        declared: u64,
        /// The payload bytes present.
        actual: usize,
    },
}

/// Bytes on the wire of a record with JSON of `json_len` bytes and a payload of `payload_len` bytes.
pub const fn record_len(json_len: usize, payload_len: usize) -> usize {
    json_len + TAG_LEN + 1 + payload_len
}

/// A checked view of one received record: its JSON, its tag and the bytes after its line feed.
///
/// A view says nothing about authenticity until [`Record::verify`] succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    json: &'a [u8],
    tag: &'a [u8],
    payload: &'a [u8],
}

impl<'a> Record<'a> {
    /// Checks a line without its line feed, `json tag` (as a device gathers it in its line buffer).
    pub fn parse_head(head: &'a [u8]) -> Result<Self, RecordError> {
        let Some(json_len) = head.len().checked_sub(TAG_LEN) else {
            return Err(RecordError::TooShort(0));
        };
        if json_len < MIN_JSON_LEN {
            return Err(RecordError::TooShort(json_len));
        }
        let (json, tag) = head.split_at(json_len);
        if !tag.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(RecordError::TagSyntax);
        }
        Ok(Record {
            json,
            tag,
            payload: &[],
        })
    }

    /// Checks one segment `json tag "\n" payload`: the payload is everything after the first line feed.
    pub fn parse_segment(segment: &'a [u8]) -> Result<Self, RecordError> {
        let lf = segment
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(RecordError::NoLineFeed)?;
        let (head, rest) = segment.split_at(lf);
        let record = Record::parse_head(head)?;
        Ok(Record {
            payload: rest.get(1..).unwrap_or_default(),
            ..record
        })
    }

    /// Checks a single line `json tag "\n"`, with nothing after the line feed (a device's record).
    pub fn parse_line(line: &'a [u8]) -> Result<Self, RecordError> {
        let record = Record::parse_segment(line)?;
        match record.payload.len() {
            0 => Ok(record),
            n => Err(RecordError::TrailingBytes(n)),
        }
    }

    /// The signed JSON bytes.
    pub fn json(&self) -> &'a [u8] {
        self.json
    }

    /// The 6 tag characters.
    pub fn tag(&self) -> &'a [u8] {
        self.tag
    }

    /// The bytes after the line feed (empty for a line or a head).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Checks the tag against the JSON under `signer`'s secret (constant time): [`RecordError::BadTag`]
    /// when it is not the JSON's.
    pub fn verify(&self, signer: &Signer) -> Result<(), RecordError> {
        if signer.verify(self.json, self.tag) {
            Ok(())
        } else {
            Err(RecordError::BadTag)
        }
    }

    /// The payload, checked to be exactly `declared` bytes long (the JSON's `data` field).
    pub fn payload_of(&self, declared: u64) -> Result<&'a [u8], RecordError> {
        if self.payload.len() as u64 == declared {
            Ok(self.payload)
        } else {
            Err(RecordError::PayloadLength {
                declared,
                actual: self.payload.len(),
            })
        }
    }
}

/// The line of a record to send, `json tag "\n"`, signed once and copied out in pieces of any size
/// (the payload, if any, is sent after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    json: &'a [u8],
    tag: [u8; TAG_LEN],
}

impl<'a> Line<'a> {
    /// Signs `json`, refusing what a NodeMCU client cannot read: JSON shorter than [`MIN_JSON_LEN`]
    /// ([`RecordError::TooShort`]) or holding a raw line feed ([`RecordError::RawLineFeed`]).
    pub fn new(signer: &Signer, json: &'a [u8]) -> Result<Self, RecordError> {
        if json.len() < MIN_JSON_LEN {
            return Err(RecordError::TooShort(json.len()));
        }
        if json.contains(&b'\n') {
            return Err(RecordError::RawLineFeed);
        }
        Ok(Line::from_parts(json, signer.tag(json)))
    }

    /// A line of `json` and its already computed `tag` (unchecked: for JSON the caller wrote itself
    /// and signed with [`Signer::tag`]).
    pub fn from_parts(json: &'a [u8], tag: [u8; TAG_LEN]) -> Self {
        Line { json, tag }
    }

    /// The tag.
    pub fn tag(&self) -> [u8; TAG_LEN] {
        self.tag
    }

    /// Bytes on the wire, line feed included.
    pub fn len(&self) -> usize {
        record_len(self.json.len(), 0)
    }

    /// Never: a line holds at least its tag and line feed (for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Copies the line's bytes from offset `from` into `out`, as many as fit; returns how many (0 once
    /// `from` is at or past [`Line::len`]).
    pub fn copy_to(&self, from: usize, out: &mut [u8]) -> usize {
        let parts: [&[u8]; 3] = [self.json, &self.tag, b"\n"];
        let (mut skip, mut n) = (from, 0);
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            let src = part.get(skip..).unwrap_or_default();
            skip = 0;
            let Some(dst) = out.get_mut(n..) else { break };
            let k = src.len().min(dst.len());
            dst[..k].copy_from_slice(&src[..k]);
            n += k;
            if k < src.len() {
                break;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const SECRET: &[u8] = b"supersekrit";

    /// The protocol document's vectors: (signed JSON, tag).
    const VECTORS: [(&str, &str); 6] = [
        (r#"{"s":"OK"}"#, "7990f6"),
        (r#"{"r":"OK!"}"#, "4ef057"),
        (r#"{"a":"pu","data":1024}"#, "073644"),
        (r#"{"s":"OK","lcsize":82}"#, "33a009"),
        (r#"{"a":"dl","data":5,"name":"tiny.txt"}"#, "987b5d"),
        (
            r#"{"leave":0,"port":8266,"ssid":"YourSID","spwd":"YourSSIDpwd","server":"127.0.0.1","id":11223344,"a":"HI"}"#,
            "9e3162",
        ),
    ];

    fn wire(line: &Line<'_>) -> Vec<u8> {
        let mut out = std::vec![0u8; line.len()];
        assert_eq!(line.copy_to(0, &mut out), line.len());
        out
    }

    #[test]
    fn lines_of_the_protocol_vectors() {
        let signer = Signer::new(SECRET);
        for (json, tag) in VECTORS {
            let line = Line::new(&signer, json.as_bytes()).unwrap();
            let expected = std::format!("{json}{tag}\n");
            assert_eq!(wire(&line), expected.as_bytes(), "{json}");
            let record = Record::parse_line(expected.as_bytes()).unwrap();
            assert_eq!(
                (record.json(), record.tag()),
                (json.as_bytes(), tag.as_bytes())
            );
            assert_eq!(record.verify(&signer), Ok(()));
            assert_eq!(
                record.verify(&Signer::new(b"other")),
                Err(RecordError::BadTag)
            );
        }
        assert_eq!(
            wire(&Line::new(&signer, br#"{"r":"OK!"}"#).unwrap()),
            b"{\"r\":\"OK!\"}4ef057\n"
        );
    }

    #[test]
    fn lines_copy_out_in_pieces_of_any_size() {
        let signer = Signer::new(SECRET);
        let line = Line::new(&signer, br#"{"a":"dl","data":5,"name":"tiny.txt"}"#).unwrap();
        let whole = wire(&line);
        for piece in 1..=whole.len() + 1 {
            let mut got = Vec::new();
            let mut buf = std::vec![0u8; piece];
            loop {
                let n = line.copy_to(got.len(), &mut buf);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, whole, "pieces of {piece}");
        }
        assert_eq!(line.copy_to(whole.len() + 5, &mut [0u8; 8]), 0);
        assert_eq!(line.copy_to(0, &mut []), 0);
    }

    #[test]
    fn lines_a_client_cannot_read_are_refused() {
        let signer = Signer::new(SECRET);
        assert_eq!(Line::new(&signer, b"{}"), Err(RecordError::TooShort(2)));
        assert_eq!(
            Line::new(&signer, b"{\"a\":\"b\n\"}"),
            Err(RecordError::RawLineFeed)
        );
        assert!(Line::new(&signer, br#"{"s":"OK"}"#).is_ok());
    }

    #[test]
    fn framing_errors_are_typed() {
        assert_eq!(
            Record::parse_line(b"{\"a\":\"HI\"}"),
            Err(RecordError::NoLineFeed)
        );
        assert_eq!(
            Record::parse_line(b"{}abcdef\n"),
            Err(RecordError::TooShort(2))
        );
        assert_eq!(Record::parse_line(b"abc\n"), Err(RecordError::TooShort(0)));
        assert_eq!(
            Record::parse_line(b"{\"s\":\"OK\"}7990F6\n"),
            Err(RecordError::TagSyntax)
        );
        assert_eq!(
            Record::parse_line(b"{\"s\":\"OK\"}7990f6\nx"),
            Err(RecordError::TrailingBytes(1))
        );
        let seg = Record::parse_segment(b"{\"a\":\"pu\",\"data\":3}000000\nabc").unwrap();
        assert_eq!(seg.payload(), b"abc");
        assert_eq!(seg.payload_of(3), Ok(&b"abc"[..]));
        assert_eq!(
            seg.payload_of(4),
            Err(RecordError::PayloadLength {
                declared: 4,
                actual: 3
            })
        );
        let head = Record::parse_head(b"{\"s\":\"OK\"}7990f6").unwrap();
        assert!(head.payload().is_empty());
        assert_eq!(head.verify(&Signer::new(SECRET)), Ok(()));
    }

    /// Parses a received server segment as a device does, checking its tag and its payload length.
    fn receive(bytes: &[u8], signer: &Signer, declared: u64) -> Result<(), RecordError> {
        let record = Record::parse_segment(bytes)?;
        record.verify(signer)?;
        record.payload_of(declared).map(|_| ())
    }

    #[test]
    fn every_truncation_and_bit_flip_is_refused() {
        let signer = Signer::new(SECRET);
        // Lines (a device's records and payload-free commands): every byte is covered.
        for (json, tag) in VECTORS {
            let good = std::format!("{json}{tag}\n").into_bytes();
            assert_eq!(
                Record::parse_line(&good).map(|r| r.verify(&signer)),
                Ok(Ok(()))
            );
            for len in 0..good.len() {
                let got = Record::parse_line(&good[..len]).and_then(|r| r.verify(&signer));
                assert!(got.is_err(), "{json} cut at {len}");
            }
            for i in 0..good.len() {
                for bit in 0..8 {
                    let mut m = good.clone();
                    m[i] ^= 1 << bit;
                    let got = Record::parse_line(&m).and_then(|r| r.verify(&signer));
                    let in_tag = (json.len()..json.len() + TAG_LEN).contains(&i);
                    let expected_kind = match got {
                        // A flip that makes a line feed cuts the line there: refused all the same.
                        Err(_) if m[i] == b'\n' => true,
                        Err(RecordError::BadTag) => i < json.len() + TAG_LEN,
                        Err(RecordError::TagSyntax) => in_tag,
                        Err(RecordError::NoLineFeed) => i == good.len() - 1,
                        other => panic!("{json}: flip of bit {bit} at {i}: {other:?}"),
                    };
                    assert!(expected_kind, "{json}: flip of bit {bit} at {i}: {got:?}");
                }
            }
        }
        // A record with a payload: a cut anywhere is refused; a flip anywhere before the payload
        // too. (The payload itself is not signed: luaOTA's defect, which v1 cannot fix.)
        let json = br#"{"a":"dl","data":5,"name":"tiny.txt"}"#;
        let mut good = wire(&Line::new(&signer, json).unwrap());
        good.extend_from_slice(b"hello");
        assert_eq!(receive(&good, &signer, 5), Ok(()));
        for len in 0..good.len() {
            assert!(receive(&good[..len], &signer, 5).is_err(), "cut at {len}");
        }
        for i in 0..good.len() - 5 {
            for bit in 0..8 {
                let mut m = good.clone();
                m[i] ^= 1 << bit;
                assert!(receive(&m, &signer, 5).is_err(), "flip of bit {bit} at {i}");
            }
        }
    }
}
