//! rota protocol v2 ("rota-wire"): authenticated binary frames, messages and the sans-IO device and
//! server sessions.
//!
//! `docs/protocol.md` is the reference; this crate is its implementation for both ends:
//!
//! - [`frame`]: the frame (`0xB2`, kind, length, sequence number, postcard payload, 32-byte HMAC-SHA256
//!   tag, truncated to 16 bytes), as a checked view ([`frame::Frame`]) and a parsed header ([`frame::Header`]), and the keys
//!   ([`frame::Key`]) that bind every frame to one device and one session;
//! - [`msg`]: the messages each way ([`msg::DeviceMsg`], [`msg::ServerMsg`]), encoded with postcard;
//! - [`config`]: the device's stored configuration ([`config::DeviceConfig`]);
//! - [`device`]: the device's half, [`device::DeviceSession`], over a [`device::FileStore`];
//! - [`server`]: the server's half, [`server::ServerSession`], driven by a list of [`server::Step`]s;
//! - `mem` (feature `std`): an in-memory [`FileStore`] for tests and simulated devices.
//!
//! Nothing here does I/O or allocates: sessions are fed received bytes and hand back bytes to send.
//! Every parser checks lengths once and returns a typed [`Error`]; no input makes it panic.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

mod codec;
pub mod config;
pub mod device;
pub mod frame;
#[cfg(feature = "std")]
pub mod mem;
pub mod msg;
pub mod server;

use core::fmt;

pub use config::{ConfigError, ConfigView, DeviceConfig, Link};
pub use device::{CommitInfo, Device, DeviceSession, FileStore, Poll, StoredFile};
pub use frame::{Dir, Frame, Header, Key};
pub use msg::{DeviceMsg, Reason, ServerMsg};
pub use server::{ServerSession, Step};

/// The protocol version a [`msg::Hello`] announces.
pub const VERSION: u8 = 2;
/// First byte of every v2 frame (a v1 record always starts with `{`).
pub const MAGIC: u8 = 0xB2;
/// Bytes of the frame header: magic, kind, payload length (u16 LE), the sequence number's low byte.
pub const HEADER_LEN: usize = 5;
/// Bytes of the tag: HMAC-SHA256 truncated to 128 bits (RFC 4868's HMAC-SHA256-128; docs/protocol.md
/// argues why that is enough).
pub const TAG_LEN: usize = 16;
/// Largest payload a frame may carry (a [`msg::Data`] of [`MAX_CHUNK`] bytes fits with room to spare).
pub const MAX_PAYLOAD: usize = 1100;
/// Largest frame: header, payload and tag. A receiver never needs more buffer than this.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD + TAG_LEN;
/// Most file bytes in one [`msg::Data`] or [`msg::FileData`].
pub const MAX_CHUNK: usize = 1024;
/// The device acknowledges every `WINDOW` bytes of a file (and its end).
pub const WINDOW: u32 = 4096;
/// The server keeps at most this many bytes of a file unacknowledged. More than the device's TCP
/// window, so TCP's own flow control paces the stream and the acknowledgements never stall it (each
/// one would cost a round trip through the emulator's network, measured in docs/sizes.md).
pub const IN_FLIGHT: u32 = 8 * WINDOW;
/// Longest file name, in bytes (rota-limits declares it for every crate).
pub use rota_limits::NAME_MAX as MAX_NAME;
/// Bytes of a content digest (SHA-256).
pub const DIGEST_LEN: usize = 32;
/// Bytes of the server's nonce.
pub const SERVER_NONCE_LEN: usize = 16;

/// A SHA-256 content digest.
pub type Digest = [u8; DIGEST_LEN];

/// Everything that can go wrong in a frame, a message or a session. Every variant ends the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The first byte is not [`MAGIC`].
    BadMagic(u8),
    /// Fewer bytes than the header or the header's length needs.
    Truncated,
    /// The header announces a payload over [`MAX_PAYLOAD`]; refused before reading it.
    TooLong(u16),
    /// More bytes than the header announces, or a payload that is not the message its kind names
    /// (postcard error, trailing bytes, a name over [`MAX_NAME`] bytes, a list over its bound).
    Malformed,
    /// The tag does not verify: forged, corrupted, from another session, device or direction.
    BadTag,
    /// A well-tagged frame with another sequence number than the next one: replayed or reordered.
    BadSeq {
        /// The sequence number expected.
        expected: u32,
        /// The one received.
        got: u32,
    },
    /// A kind byte no message has (in this direction).
    UnknownKind(u8),
    /// A message that is valid but not now (e.g. `Data` with no file open); carries its kind.
    Unexpected(u8),
    /// An offset out of order or out of range (data, acknowledgement, resume point, upload).
    Offset,
    /// The Hello announces a protocol version this end does not speak.
    Version(u8),
    /// The output buffer is smaller than [`MAX_FRAME`].
    BufferTooSmall,
    /// The device's file store failed: which operation, and the store's own code.
    Store {
        /// The operation that failed.
        reason: Reason,
        /// The store's error code ([`FileStore::error_code`]).
        detail: u8,
    },
    /// The peer gave up and said why (a `Failed` message).
    Refused {
        /// The peer's reason.
        reason: Reason,
        /// The peer's detail code.
        detail: u8,
    },
    /// A configuration the device refuses.
    Config(ConfigError),
    /// A release the device refuses (signature, ISA, ABI, security version, a file it does not
    /// name); nothing of it was committed.
    Release(msg::ReleaseError),
    /// The server's step list is not a valid plan (it must end with one `Commit`).
    BadPlan,
    /// The session is over; nothing more is accepted.
    Done,
}

impl Error {
    /// The reason a device reports in its `Failed` message for this error.
    pub fn reason(&self) -> (Reason, u8) {
        match *self {
            Error::Store { reason, detail } | Error::Refused { reason, detail } => (reason, detail),
            Error::Config(c) => (Reason::Config, c as u8),
            Error::Release(e) => (Reason::Release, e as u8),
            Error::Unexpected(kind) | Error::UnknownKind(kind) => (Reason::Unexpected, kind),
            Error::Offset => (Reason::Offset, 0),
            Error::Version(v) => (Reason::Version, v),
            _ => (Reason::Frame, 0),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadMagic(b) => write!(f, "bad magic byte 0x{b:02x}"),
            Error::Truncated => f.write_str("truncated frame"),
            Error::TooLong(n) => {
                write!(f, "payload of {n} bytes over the {MAX_PAYLOAD}-byte limit")
            }
            Error::Malformed => f.write_str("malformed frame or message"),
            Error::BadTag => f.write_str("tag does not verify"),
            Error::BadSeq { expected, got } => {
                write!(f, "sequence number {got}, expected {expected}")
            }
            Error::UnknownKind(k) => write!(f, "unknown message kind 0x{k:02x}"),
            Error::Unexpected(k) => write!(f, "unexpected message kind 0x{k:02x}"),
            Error::Offset => f.write_str("offset out of order or range"),
            Error::Version(v) => write!(f, "protocol version {v} not supported"),
            Error::BufferTooSmall => f.write_str("buffer smaller than one frame"),
            Error::Store { reason, detail } => {
                write!(
                    f,
                    "store failed: {reason:?}: {}",
                    detail_text(*reason, *detail)
                )
            }
            Error::Refused { reason, detail } => {
                write!(
                    f,
                    "peer failed: {reason:?}: {}",
                    detail_text(*reason, *detail)
                )
            }
            Error::Config(c) => write!(f, "config refused: {c:?}"),
            Error::Release(e) => write!(
                f,
                "release refused: {}",
                msg::ReleaseError::describe(*e as u8)
            ),
            Error::BadPlan => f.write_str("plan must end with one Commit"),
            Error::Done => f.write_str("session is over"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// SHA-256 of `data`: the content digest files are compared and checked by.
pub fn sha256(data: &[u8]) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

/// What a `Failed` message's detail code means for its reason: for a store operation, the magnitude of
/// the device's status code (`rota_abi::status`), so a log line names the store's own failure.
pub fn detail_text(reason: msg::Reason, detail: u8) -> &'static str {
    use msg::Reason as R;
    match reason {
        R::Begin | R::Write | R::Finish | R::Drop | R::Delete | R::Rename | R::Read | R::Commit => {
            rota_abi::status::describe(-i32::from(detail))
        }
        R::Config => "the config was refused",
        R::Frame => "a frame did not parse or verify",
        R::Unexpected => "a message out of place",
        R::Offset => "an offset out of order",
        R::Version => "protocol version not supported",
        R::Release => msg::ReleaseError::describe(detail),
    }
}
