//! The v2 frame and its keys.
//!
//! ```text
//! frame := 0xB2 kind:u8 len:u16le seq8:u8 payload[len] tag[16]
//! tag   := HMAC-SHA256-128(key, dir || seq:u32le || the 5 header bytes || payload)
//! ```
//! `seq8` is the low byte of the frame's sequence number; the whole number is implicit (each end
//! counts) and covered by the tag, so a frame is only ever valid at its own place in its session.
//! [`Header::parse`] checks the magic byte and the length before anything else is read, so an oversized
//! frame is refused without buffering it. [`Frame::new_checked`] checks every length once; after it no
//! accessor can panic. The tag covers the direction byte ([`Dir`]), so a frame cannot be reflected back
//! to its sender, and is keyed per device and per session ([`Key`]).

use hmac::{HmacCore, Mac};
use sha2::Sha256;

use crate::{Error, HEADER_LEN, MAGIC, MAX_PAYLOAD, SERVER_NONCE_LEN, TAG_LEN};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Which way a frame travels; the tag covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Dir {
    /// From the device to the server.
    ToServer = 0x01,
    /// From the server to the device.
    ToDevice = 0x02,
}

/// A 32-byte HMAC key for frame tags, kept keyed: as HMAC-SHA256's two hash states after the key's
/// inner and outer pads, so that each tag starts from a copy of them instead of hashing both pads
/// again (2 of the 20 SHA-256 blocks of a 1 KB data frame).
#[derive(Clone)]
pub struct Key(HmacCore<Sha256>);

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Key(..)")
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    finish(keyed(key), parts)
}

/// HMAC-SHA256 keyed with `key` (of any length: longer ones are hashed first).
fn keyed(key: &[u8]) -> HmacCore<Sha256> {
    <HmacCore<Sha256> as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!())
}

/// The HMAC of `parts` from the keyed state `core`.
fn finish(core: HmacCore<Sha256>, parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::from_core(core);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl Key {
    /// The key `bytes`.
    pub fn new(bytes: &[u8; 32]) -> Key {
        Key(keyed(bytes))
    }

    /// `K0 = HMAC(secret, "rota2 hello" || device_id LE || device_nonce LE)`: tags the device's Hello
    /// and the server's NoUpdate.
    pub fn hello(secret: &[u8], device_id: u32, nonce: u32) -> Key {
        Key::new(&hmac(
            secret,
            &[
                b"rota2 hello",
                &device_id.to_le_bytes(),
                &nonce.to_le_bytes(),
            ],
        ))
    }

    /// `Ks = HMAC(secret, "rota2 session" || device_id LE || device_nonce LE || server_nonce)`: tags
    /// every frame from the server's Welcome on, both ways.
    pub fn session(
        secret: &[u8],
        device_id: u32,
        nonce: u32,
        server_nonce: &[u8; SERVER_NONCE_LEN],
    ) -> Key {
        Key::new(&hmac(
            secret,
            &[
                b"rota2 session",
                &device_id.to_le_bytes(),
                &nonce.to_le_bytes(),
                server_nonce,
            ],
        ))
    }

    /// The tag of frame number `seq` travelling `dir` with `header` and `payload`: HMAC-SHA256
    /// truncated to its first [`TAG_LEN`] bytes (HMAC-SHA256-128, RFC 4868).
    pub fn tag(&self, dir: Dir, seq: u32, header: &[u8], payload: &[u8]) -> [u8; TAG_LEN] {
        let mac = finish(
            self.0.clone(),
            &[&[dir as u8], &seq.to_le_bytes(), header, payload],
        );
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&mac[..TAG_LEN]);
        tag
    }

    /// Whether `tag` is the tag of frame `seq` of `dir` with `header`, `payload` (compared in
    /// constant time).
    pub fn verify(&self, dir: Dir, seq: u32, header: &[u8], payload: &[u8], tag: &[u8]) -> bool {
        let expected = self.tag(dir, seq, header, payload);
        if tag.len() != TAG_LEN {
            return false;
        }
        // Accumulate every difference: the time does not depend on where the tags differ.
        let diff = expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        core::hint::black_box(diff) == 0
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The message kind ([`crate::msg::Kind`]).
    pub kind: u8,
    /// Payload length, at most [`MAX_PAYLOAD`].
    pub len: u16,
    /// The low byte of the sequence number in this direction of this session.
    pub seq: u8,
}

impl Header {
    /// Parses the first [`HEADER_LEN`] bytes of `bytes`: magic byte, then the length bound.
    pub fn parse(bytes: &[u8]) -> Result<Header, Error> {
        let first = *bytes.first().ok_or(Error::Truncated)?;
        if first != MAGIC {
            return Err(Error::BadMagic(first));
        }
        let h: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(Error::Truncated)?;
        let len = u16::from_le_bytes([h[2], h[3]]);
        if usize::from(len) > MAX_PAYLOAD {
            return Err(Error::TooLong(len));
        }
        Ok(Header {
            kind: h[1],
            len,
            seq: h[4],
        })
    }

    /// The whole frame's length: header, payload and tag.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + usize::from(self.len) + TAG_LEN
    }

    /// The header's wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let len = self.len.to_le_bytes();
        [MAGIC, self.kind, len[0], len[1], self.seq]
    }
}

/// A checked view of one whole frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
    header: Header,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Checks that `buffer` holds exactly one frame: magic, length bound, and total length.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let bytes = buffer.as_ref();
        let header = Header::parse(bytes)?;
        match bytes.len().cmp(&header.frame_len()) {
            core::cmp::Ordering::Less => Err(Error::Truncated),
            core::cmp::Ordering::Greater => Err(Error::Malformed),
            core::cmp::Ordering::Equal => Ok(Frame { buffer, header }),
        }
    }

    /// The parsed header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The message kind.
    pub fn kind(&self) -> u8 {
        self.header.kind
    }

    /// The sequence number's low byte (the rest is implicit).
    pub fn seq(&self) -> u8 {
        self.header.seq
    }

    fn payload_end(&self) -> usize {
        HEADER_LEN + usize::from(self.header.len)
    }

    /// The payload (not yet authenticated: check [`Frame::verify`] before acting on it).
    pub fn payload(&self) -> &[u8] {
        let bytes = self.buffer.as_ref();
        bytes
            .get(HEADER_LEN..self.payload_end())
            .unwrap_or_default()
    }

    /// The tag.
    pub fn tag(&self) -> &[u8] {
        let bytes = self.buffer.as_ref();
        bytes.get(self.payload_end()..).unwrap_or_default()
    }

    /// Checks the tag with `key` for a frame travelling `dir` as number `seq` of its direction.
    pub fn verify(&self, key: &Key, dir: Dir, seq: u32) -> Result<(), Error> {
        let bytes = self.buffer.as_ref();
        let header = bytes.get(..HEADER_LEN).unwrap_or_default();
        if key.verify(dir, seq, header, self.payload(), self.tag()) {
            Ok(())
        } else {
            Err(Error::BadTag)
        }
    }
}

impl<'a> Frame<&'a [u8]> {
    /// The payload, borrowed for as long as the underlying bytes.
    pub fn into_payload(self) -> &'a [u8] {
        let end = self.payload_end();
        self.buffer.get(HEADER_LEN..end).unwrap_or_default()
    }
}

/// Completes a frame in `out` whose payload (`len` bytes) is already at `out[HEADER_LEN..]`: writes
/// the header and the tag and returns the frame's length.
pub fn seal(
    out: &mut [u8],
    key: &Key,
    dir: Dir,
    kind: u8,
    seq: u32,
    len: usize,
) -> Result<usize, Error> {
    if len > MAX_PAYLOAD {
        return Err(Error::TooLong(len as u16));
    }
    let header = Header {
        kind,
        len: len as u16,
        seq: seq as u8,
    };
    let total = header.frame_len();
    let out = out.get_mut(..total).ok_or(Error::BufferTooSmall)?;
    out[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    let (head, tail) = out.split_at_mut(HEADER_LEN + len);
    let tag = key.tag(dir, seq, &head[..HEADER_LEN], &head[HEADER_LEN..]);
    tail.copy_from_slice(&tag);
    Ok(total)
}

/// One direction-aware, sequence-checked channel: a key and the next sequence number each way.
#[derive(Debug, Clone)]
pub(crate) struct Channel {
    /// `None` until the first key is set (a device session before its Hello): a session is built in
    /// place, and an HMAC key is not a constant the compiler can write there (a placeholder key made
    /// provision build the whole 1.4 KB session on its stack first, measured on thumbv7m).
    pub key: Option<Key>,
    /// Direction of the frames this end sends.
    pub out_dir: Dir,
    pub tx: u32,
    pub rx: u32,
}

impl Channel {
    pub fn in_dir(&self) -> Dir {
        match self.out_dir {
            Dir::ToServer => Dir::ToDevice,
            Dir::ToDevice => Dir::ToServer,
        }
    }

    /// The key, once there is one.
    pub fn key(&self) -> Result<&Key, Error> {
        self.key
            .as_ref()
            .ok_or(Error::Unexpected(crate::msg::kind::HELLO))
    }

    /// Verifies a received frame's sequence number and tag; returns the checked view.
    pub fn open<'f>(&mut self, bytes: &'f [u8]) -> Result<Frame<&'f [u8]>, Error> {
        let frame = Frame::new_checked(bytes)?;
        self.check_seq(&frame)?;
        frame.verify(self.key()?, self.in_dir(), self.rx)?;
        self.rx = self.rx.wrapping_add(1);
        Ok(frame)
    }

    /// Refuses a frame whose sequence byte is not the next number's (`BadSeq`), before its tag,
    /// which covers the whole number, is checked.
    pub fn check_seq<T: AsRef<[u8]>>(&self, frame: &Frame<T>) -> Result<(), Error> {
        if frame.seq() != self.rx as u8 {
            return Err(Error::BadSeq {
                expected: self.rx,
                got: u32::from(frame.seq()),
            });
        }
        Ok(())
    }

    /// Opens `frame`, already checked by [`Channel::check_seq`], with `key`: verifies its tag as the
    /// next received frame, makes `key` the channel's and counts the frame.
    pub fn accept_with(&mut self, frame: &Frame<&[u8]>, key: Key) -> Result<(), Error> {
        frame.verify(&key, self.in_dir(), self.rx)?;
        self.key = Some(key);
        self.rx = self.rx.wrapping_add(1);
        Ok(())
    }

    /// Seals the payload at `out[HEADER_LEN..][..len]` as the next outgoing frame.
    pub fn seal(&mut self, out: &mut [u8], kind: u8, len: usize) -> Result<usize, Error> {
        let n = seal(out, self.key()?, self.out_dir, kind, self.tx, len)?;
        self.tx = self.tx.wrapping_add(1);
        Ok(n)
    }
}
