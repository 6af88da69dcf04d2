//! The frame codec both ends share: what goes on the line, and a decoder that splits the line into
//! console bytes and checked frames (`docs/protocol.md`, "Serial link").
//!
//! ```text
//! line  := ( console byte (never 0x00) | 0x00 0x00 COBS(body) 0x00 )*
//! body  := kind:u8  seq:u8  payload  crc:u32 (little-endian CRC-32/ISO-HDLC of kind, seq, payload)
//! ```
//! A frame is opened and closed by a 0x00 byte; COBS keeps 0x00 out of its body, and console text
//! never holds one, so whatever lies between two frames is console text. Each frame opens with two:
//! if noise with a 0x00 in it (the ESP8266 boot ROM prints at 74,880 baud, noise at 115,200) left the
//! receiver inside a false frame, the first closes it and the second opens the real one; a receiver
//! outside any frame takes the pair as one opening. A lost delimiter merges a
//! frame with what follows and fails its CRC; a lost frame shows as a gap in `seq`. Either ends the
//! session: the link never repairs, the protocol on top resumes at the next check-in.

use crc::{Crc, NoTable, CRC_32_ISO_HDLC};

/// Most payload bytes one frame carries; a host sends at most what the device's credit allows.
pub const MAX_PAYLOAD: usize = 1024;
/// Bytes of a body besides its payload: kind, seq and the CRC.
pub const BODY_OVERHEAD: usize = 2 + 4;
/// Delimiters around a frame's body on the line: two before it, one after.
pub const DELIMITERS: usize = 3;
/// Most bytes a frame with `payload` bytes takes on the line, delimiters included.
pub const fn line_len(payload: usize) -> usize {
    DELIMITERS + cobs::max_encoding_length(payload + BODY_OVERHEAD)
}
/// Most bytes any frame takes on the line.
pub const MAX_LINE: usize = line_len(MAX_PAYLOAD);

const CRC32: Crc<u32, NoTable> = Crc::<u32, NoTable>::new(&CRC_32_ISO_HDLC);

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Device to host: open a connection (payload: IPv4 address, then port, little-endian; the
    /// host's bridge decides where it really connects, and says so).
    Connect = 1,
    /// Host to device: the connection is open (empty payload).
    Accept = 2,
    /// Either way: stream bytes (1..=[`MAX_PAYLOAD`]).
    Data = 3,
    /// Device to host: it will read one `Data` frame of at most this many payload bytes now (u16,
    /// little-endian); each credit replaces the one before.
    Credit = 4,
    /// Either way: the connection is over (payload: one [`Close`] byte).
    Close = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Connect,
            2 => Kind::Accept,
            3 => Kind::Data,
            4 => Kind::Credit,
            5 => Kind::Close,
            _ => return None,
        })
    }
}

/// Why a connection was closed (the payload of a [`Kind::Close`] frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Close {
    /// The sender ended it (the device after its session; the host when the server closed).
    Normal = 0,
    /// The host could not connect to the server.
    Refused = 1,
    /// The sender received a frame that failed its checks.
    LineError = 2,
}

impl Close {
    /// The reason a `Close` payload names (anything unknown counts as a line error).
    pub fn from_payload(p: &[u8]) -> Close {
        match p {
            [0] => Close::Normal,
            [1] => Close::Refused,
            _ => Close::LineError,
        }
    }
}

/// Why a frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes between two delimiters than [`MAX_LINE`] allows.
    TooLong,
    /// The bytes between the delimiters are not COBS.
    Cobs,
    /// Shorter than a body's kind, seq and CRC.
    TooShort,
    /// The CRC does not match (a flipped, lost or inserted byte).
    Crc,
    /// An unknown kind.
    Kind(u8),
    /// A kind's payload has the wrong length.
    Payload(Kind),
    /// Out of sequence: a frame was lost (expected, got).
    Seq(u8, u8),
}

impl FrameError {
    /// A short description for a log.
    pub fn describe(&self) -> &'static str {
        match self {
            FrameError::TooLong => "frame over its size limit",
            FrameError::Cobs => "frame not COBS-encoded",
            FrameError::TooShort => "frame shorter than its header",
            FrameError::Crc => "frame CRC mismatch",
            FrameError::Kind(_) => "unknown frame kind",
            FrameError::Payload(_) => "frame payload of the wrong length",
            FrameError::Seq(..) => "frame out of sequence (one was lost)",
        }
    }
}

/// Encodes one frame, delimiters included, into `out`; returns its length on the line, or `None`
/// if `payload` is over [`MAX_PAYLOAD`] or `out` is shorter than [`line_len`] of it.
pub fn encode(kind: Kind, seq: u8, payload: &[u8], out: &mut [u8]) -> Option<usize> {
    if payload.len() > MAX_PAYLOAD || out.len() < line_len(payload.len()) {
        return None;
    }
    let crc = {
        let mut d = CRC32.digest();
        d.update(&[kind as u8, seq]);
        d.update(payload);
        d.finalize()
    };
    let end = line_len(payload.len()) - 1;
    let mut enc = cobs::CobsEncoder::new(&mut out[2..end]);
    enc.push(&[kind as u8, seq]).ok()?;
    enc.push(payload).ok()?;
    enc.push(&crc.to_le_bytes()).ok()?;
    let n = enc.finalize();
    out[..2].fill(0);
    out[2 + n] = 0;
    Some(n + DELIMITERS)
}

/// One checked frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its kind.
    pub kind: Kind,
    /// Its sequence number.
    pub seq: u8,
    /// Its payload.
    pub payload: &'a [u8],
}

/// What one byte from the line was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// A console byte (outside any frame).
    Console(u8),
    /// Part of a frame; nothing to do yet.
    Pending,
    /// A frame ended and passed its checks: read it with [`Decoder::frame`].
    Frame,
}

/// Splits a line into console bytes and frames. Holds one frame's line bytes.
pub struct Decoder {
    buf: [u8; MAX_LINE],
    len: usize,
    in_frame: bool,
    /// Decoded body length of the last good frame.
    body: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder outside any frame.
    pub const fn new() -> Decoder {
        Decoder {
            buf: [0; MAX_LINE],
            len: 0,
            in_frame: false,
            body: 0,
        }
    }

    /// Takes the next byte from the line. After an error the decoder is outside any frame again.
    pub fn push(&mut self, byte: u8) -> Result<Token, FrameError> {
        match (self.in_frame, byte) {
            (false, 0) => {
                self.in_frame = true;
                self.len = 0;
                Ok(Token::Pending)
            }
            (false, b) => Ok(Token::Console(b)),
            // Two delimiters in a row: the first closed nothing (or a frame's end was lost and this
            // opens the next); stay open.
            (true, 0) if self.len == 0 => Ok(Token::Pending),
            (true, 0) => {
                self.in_frame = false;
                let n = core::mem::take(&mut self.len);
                self.body = self.check(n)?;
                Ok(Token::Frame)
            }
            (true, b) => {
                if self.len == self.buf.len() {
                    self.in_frame = false;
                    self.len = 0;
                    return Err(FrameError::TooLong);
                }
                self.buf[self.len] = b;
                self.len += 1;
                Ok(Token::Pending)
            }
        }
    }

    /// Whether the decoder is inside a frame (between its delimiters).
    pub fn in_frame(&self) -> bool {
        self.in_frame
    }

    fn check(&mut self, n: usize) -> Result<usize, FrameError> {
        let body = cobs::decode_in_place(&mut self.buf[..n]).map_err(|_| FrameError::Cobs)?;
        if body < BODY_OVERHEAD {
            return Err(FrameError::TooShort);
        }
        let (data, crc) = self.buf[..body].split_at(body - 4);
        if CRC32.checksum(data) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(FrameError::Crc);
        }
        let kind = Kind::from_u8(data[0]).ok_or(FrameError::Kind(data[0]))?;
        let len = data.len() - 2;
        let ok = match kind {
            Kind::Connect => len == 6,
            Kind::Accept => len == 0,
            Kind::Data => (1..=MAX_PAYLOAD).contains(&len),
            Kind::Credit => len == 2,
            Kind::Close => len == 1,
        };
        if !ok {
            return Err(FrameError::Payload(kind));
        }
        Ok(body)
    }

    /// The last frame [`Decoder::push`] returned [`Token::Frame`] for.
    pub fn frame(&self) -> Frame<'_> {
        let body = &self.buf[..self.body];
        Frame {
            // `check` accepted this body, so its kind is known.
            kind: Kind::from_u8(body[0]).unwrap_or(Kind::Close),
            seq: body[1],
            payload: &body[2..body.len() - 4],
        }
    }
}
