//! The messages of protocol v2, each the postcard encoding of one struct; the frame's kind byte says
//! which. Device-to-server kinds are `0x01..`, server-to-device kinds `0x81..`, so a kind is never valid
//! both ways.
//!
//! Decoding borrows names and data from the received frame (no copy, no allocation) and refuses
//! trailing bytes, names over [`MAX_NAME`] bytes and lists over their bounds ([`Error::Malformed`]).

use heapless::Vec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Digest, Error, MAX_CHUNK, MAX_NAME, SERVER_NONCE_LEN};

/// Most files a [`Hello`] lists.
pub const MAX_FILES: usize = 10;
/// Most staged (partly received) files a [`Hello`] lists.
pub const MAX_STAGED: usize = 2;
/// Most heap report entries a [`Hello`] carries.
pub const MAX_HEAP: usize = 6;

/// The kind bytes.
pub mod kind {
    /// [`super::Hello`].
    pub const HELLO: u8 = 0x01;
    /// [`super::Ready`].
    pub const READY: u8 = 0x02;
    /// [`super::Ack`].
    pub const ACK: u8 = 0x03;
    /// [`super::DeviceMsg::Staged`].
    pub const STAGED: u8 = 0x04;
    /// [`super::Failed`].
    pub const FAILED: u8 = 0x05;
    /// [`super::FileData`].
    pub const FILE_DATA: u8 = 0x06;
    /// [`super::Committed`].
    pub const COMMITTED: u8 = 0x07;

    /// [`super::Welcome`].
    pub const WELCOME: u8 = 0x81;
    /// [`super::ServerMsg::NoUpdate`].
    pub const NO_UPDATE: u8 = 0x82;
    /// [`super::Begin`].
    pub const BEGIN: u8 = 0x83;
    /// [`super::Data`].
    pub const DATA: u8 = 0x84;
    /// [`super::ServerMsg::Finish`].
    pub const FINISH: u8 = 0x85;
    /// [`super::ServerMsg::Drop`].
    pub const DROP: u8 = 0x86;
    /// [`super::ServerMsg::Delete`].
    pub const DELETE: u8 = 0x87;
    /// [`super::Rename`].
    pub const RENAME: u8 = 0x88;
    /// [`super::Upload`].
    pub const UPLOAD: u8 = 0x89;
    /// [`super::Commit`].
    pub const COMMIT: u8 = 0x8a;
}

/// A file name: 1 to [`MAX_NAME`] bytes, borrowed from the frame (the store treats it as bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a>(&'a [u8]);

impl<'a> Name<'a> {
    /// `bytes` as a name, if it is 1 to [`MAX_NAME`] bytes long.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        (!bytes.is_empty() && bytes.len() <= MAX_NAME).then_some(Name(bytes))
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl Serialize for Name<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = <&'de [u8]>::deserialize(d)?;
        Name::new(bytes).ok_or_else(|| serde::de::Error::custom(""))
    }
}

/// File bytes, borrowed from the frame, at most [`MAX_CHUNK`] on decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes<'a>(pub &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = <&'de [u8]>::deserialize(d)?;
        if bytes.len() > MAX_CHUNK {
            return Err(serde::de::Error::custom(""));
        }
        Ok(Bytes(bytes))
    }
}

/// One file the device holds (committed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo<'a> {
    /// Its name.
    #[serde(borrow)]
    pub name: Name<'a>,
    /// Its size in bytes.
    pub size: u32,
    /// The version the server gave it (in [`Begin`]).
    pub version: u32,
    /// SHA-256 of its content.
    pub digest: Digest,
}

/// One file the device has partly received (staged, not committed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedInfo<'a> {
    /// Its name.
    #[serde(borrow)]
    pub name: Name<'a>,
    /// Its full size.
    pub size: u32,
    /// The digest it must end with.
    pub digest: Digest,
    /// Bytes durably written so far (where a resumed transfer continues).
    pub done: u32,
}

/// The heap use of one phase of the device's last boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeapReport {
    /// The phase (the device's own numbering, e.g. 0 init, 1 tick, 2 provision, 3 app).
    pub phase: u8,
    /// Heap bytes in use at the end of the phase.
    pub used: u32,
    /// Peak heap bytes.
    pub peak: u32,
    /// Peak stack bytes.
    pub stack_peak: u32,
}

/// The device's check-in: the first frame of every session (seq 0, tagged with [`crate::Key::hello`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello<'a> {
    /// The device's id (its chip id: the server's inventory is `ESP-<id>.json`).
    pub device_id: u32,
    /// The device nonce: its persisted boot counter, incremented before every check-in, never reused.
    pub nonce: u32,
    /// The protocol version, [`crate::VERSION`].
    pub protocol: u8,
    /// The application's version.
    pub app_version: u32,
    /// [`crate::config::config_version`] of the stored config record (0 if none).
    pub config: u32,
    /// The committed files.
    #[serde(borrow)]
    pub files: Vec<FileInfo<'a>, MAX_FILES>,
    /// The staged files.
    #[serde(borrow)]
    pub staged: Vec<StagedInfo<'a>, MAX_STAGED>,
    /// The last boot's heap report.
    pub heap: Vec<HeapReport, MAX_HEAP>,
}

/// Answer to [`Begin`]: where the transfer starts (resumes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// Bytes of the file already staged; the server sends from here.
    pub offset: u32,
}

/// Windowed acknowledgement: every byte before `offset` is written to flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Bytes of the current file durably written.
    pub offset: u32,
}

/// Why the device gave up (its `Failed` message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Reason {
    /// A frame did not parse or verify.
    Frame,
    /// A message out of place.
    Unexpected,
    /// An offset out of order or range.
    Offset,
    /// The protocol version.
    Version,
    /// `stage_begin` failed.
    Begin,
    /// `stage_write` failed.
    Write,
    /// `stage_finish` failed (digest mismatch or store error).
    Finish,
    /// `stage_drop` failed.
    Drop,
    /// `stage_delete` failed.
    Delete,
    /// `stage_rename` failed.
    Rename,
    /// `read` failed.
    Read,
    /// `commit` failed.
    Commit,
    /// The configuration in `Commit` was refused.
    Config,
}

/// The device gives up: the session ends, nothing is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    /// What failed.
    pub reason: Reason,
    /// A detail code (the store's error code, the offending kind, the config error).
    pub detail: u8,
}

/// A piece of an uploaded file (answer to [`Upload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileData<'a> {
    /// Offset of `bytes` in the file.
    pub offset: u32,
    /// The bytes; fewer than asked (or none) means the file ended.
    #[serde(borrow)]
    pub bytes: Bytes<'a>,
}

/// The device committed everything staged and will reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// What the store's commit returned (its generation counter).
    pub generation: u32,
}

/// The server's answer to a Hello when there is work: its nonce, from which the session key is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// A fresh random nonce.
    pub server_nonce: [u8; SERVER_NONCE_LEN],
}

/// Start (or resume) staging a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Begin<'a> {
    /// The file.
    #[serde(borrow)]
    pub name: Name<'a>,
    /// Its size.
    pub size: u32,
    /// The SHA-256 its content must have.
    pub digest: Digest,
    /// Its version (the device reports it back in [`FileInfo`]).
    pub version: u32,
}

/// File bytes for the file begun last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data<'a> {
    /// Offset of `bytes` in the file; always the next byte the device expects.
    pub offset: u32,
    /// At most [`MAX_CHUNK`] bytes.
    #[serde(borrow)]
    pub bytes: Bytes<'a>,
}

/// Rename a committed file (staged: takes effect on commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rename<'a> {
    /// The present name.
    #[serde(borrow)]
    pub from: Name<'a>,
    /// The new name.
    #[serde(borrow)]
    pub to: Name<'a>,
}

/// Send part of a file back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload<'a> {
    /// The file.
    #[serde(borrow)]
    pub name: Name<'a>,
    /// First byte.
    pub offset: u32,
    /// Bytes wanted.
    pub len: u32,
}

/// Commit everything staged, store the new config if any, reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit<'a> {
    /// A new [`crate::DeviceConfig`] (postcard), or none to keep the present one.
    #[serde(borrow)]
    pub config: Option<Bytes<'a>>,
}

/// A message from the device to the server.
// No allocation to box the Hello with; the device encodes it by reference (it never builds this enum
// around a Hello), and the server holds one per session.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceMsg<'a> {
    /// The check-in.
    Hello(Hello<'a>),
    /// Answer to `Begin`.
    Ready(Ready),
    /// Windowed acknowledgement.
    Ack(Ack),
    /// Answer to `Finish`: the file is complete and its digest is right.
    Staged,
    /// The device gives up.
    Failed(Failed),
    /// Answer to `Upload`.
    FileData(FileData<'a>),
    /// Answer to `Commit`.
    Committed(Committed),
}

/// A message from the server to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg<'a> {
    /// There is work: the session key comes from this nonce.
    Welcome(Welcome),
    /// Nothing to do: run the application. Empty payload, tagged with the Hello's key.
    NoUpdate,
    /// Stage a file.
    Begin(Begin<'a>),
    /// File bytes.
    Data(Data<'a>),
    /// The file is complete: check its digest.
    Finish(Name<'a>),
    /// Discard a staged leftover.
    Drop(Name<'a>),
    /// Delete a committed file (on commit).
    Delete(Name<'a>),
    /// Rename a committed file (on commit).
    Rename(Rename<'a>),
    /// Send a file back.
    Upload(Upload<'a>),
    /// Commit and reboot.
    Commit(Commit<'a>),
}

fn encode<T: Serialize>(value: &T, out: &mut [u8]) -> Result<usize, Error> {
    postcard::to_slice(value, out)
        .map(|used| used.len())
        .map_err(|_| Error::BufferTooSmall)
}

/// Decodes a whole payload as `T`: trailing bytes are refused.
fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, Error> {
    match postcard::take_from_bytes(payload) {
        Ok((value, [])) => Ok(value),
        _ => Err(Error::Malformed),
    }
}

impl<'a> DeviceMsg<'a> {
    /// The kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            DeviceMsg::Hello(_) => kind::HELLO,
            DeviceMsg::Ready(_) => kind::READY,
            DeviceMsg::Ack(_) => kind::ACK,
            DeviceMsg::Staged => kind::STAGED,
            DeviceMsg::Failed(_) => kind::FAILED,
            DeviceMsg::FileData(_) => kind::FILE_DATA,
            DeviceMsg::Committed(_) => kind::COMMITTED,
        }
    }

    /// Writes the payload (postcard) into `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        crate::codec::encode_device(self, out)
    }

    /// Decodes the payload of a frame of kind `kind`.
    pub fn decode(kind: u8, payload: &'a [u8]) -> Result<Self, Error> {
        Ok(match kind {
            kind::HELLO => DeviceMsg::Hello(decode(payload)?),
            kind::READY => DeviceMsg::Ready(decode(payload)?),
            kind::ACK => DeviceMsg::Ack(decode(payload)?),
            kind::STAGED => {
                decode::<()>(payload)?;
                DeviceMsg::Staged
            }
            kind::FAILED => DeviceMsg::Failed(decode(payload)?),
            kind::FILE_DATA => DeviceMsg::FileData(decode(payload)?),
            kind::COMMITTED => DeviceMsg::Committed(decode(payload)?),
            other => return Err(Error::UnknownKind(other)),
        })
    }
}

impl<'a> ServerMsg<'a> {
    /// The kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            ServerMsg::Welcome(_) => kind::WELCOME,
            ServerMsg::NoUpdate => kind::NO_UPDATE,
            ServerMsg::Begin(_) => kind::BEGIN,
            ServerMsg::Data(_) => kind::DATA,
            ServerMsg::Finish(_) => kind::FINISH,
            ServerMsg::Drop(_) => kind::DROP,
            ServerMsg::Delete(_) => kind::DELETE,
            ServerMsg::Rename(_) => kind::RENAME,
            ServerMsg::Upload(_) => kind::UPLOAD,
            ServerMsg::Commit(_) => kind::COMMIT,
        }
    }

    /// Writes the payload into `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        match self {
            ServerMsg::Welcome(m) => encode(m, out),
            ServerMsg::NoUpdate => Ok(0),
            ServerMsg::Begin(m) => encode(m, out),
            ServerMsg::Data(m) => encode(m, out),
            ServerMsg::Finish(m) | ServerMsg::Drop(m) | ServerMsg::Delete(m) => encode(m, out),
            ServerMsg::Rename(m) => encode(m, out),
            ServerMsg::Upload(m) => encode(m, out),
            ServerMsg::Commit(m) => encode(m, out),
        }
    }

    /// Decodes the payload (postcard) of a frame of kind `kind`.
    pub fn decode(kind: u8, payload: &'a [u8]) -> Result<Self, Error> {
        crate::codec::decode_server(kind, payload)
    }
}
