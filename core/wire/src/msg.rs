//! The messages of protocol v2, each the postcard encoding of one struct; the frame's kind byte says
//! which. Device-to-server kinds are `0x01..`, server-to-device kinds `0x81..`, so a kind is never valid
//! both ways.
//!
//! Decoding borrows names and data from the received frame (no copy, no allocation) and refuses
//! trailing bytes, names over [`MAX_NAME`] bytes and lists over their bounds ([`Error::Malformed`]).

use heapless::Vec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Digest, Error, MAX_CHUNK, MAX_NAME, SERVER_NONCE_LEN};

/// Most files a [`Files`] answer lists: as many as a signed release names (rota-limits), so a device
/// can always list the set its manifest vouches for.
pub const MAX_FILES: usize = rota_limits::RELEASE_FILES_MAX;
/// Most staged (partly received) files a [`Hello`] lists.
pub const MAX_STAGED: usize = 2;
/// Most phases a [`Hello`]'s heap report carries.
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
    /// [`super::Files`].
    pub const FILES: u8 = 0x08;

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
    /// [`super::ServerMsg::List`].
    pub const LIST: u8 = 0x8b;
    /// [`super::Release`].
    pub const RELEASE: u8 = 0x8c;
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

/// The peaks of one phase of the device's last boot (the phases in boot order: boot, then each
/// overlay; `rota_abi::report::Phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhasePeak {
    /// Peak heap bytes.
    pub heap: u32,
    /// Peak stack bytes.
    pub stack: u32,
}

/// The last boot's heap report, compact: each phase's peaks in boot order, and the residue.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeapSummary {
    /// Peaks of the phases, in boot order.
    pub phases: Vec<PhasePeak, MAX_HEAP>,
    /// Heap bytes still in use when the update phases were over (must be 0).
    pub residue: u32,
}

/// A rollback the device did, reported by every Hello until its next commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    /// The generation that was on trial.
    pub from: u32,
    /// The generation the device went back to.
    pub to: u32,
    /// Why: `rota_abi::rollback` (panic, fault, not confirmed).
    pub reason: u8,
    /// The phase the last trial boot ended in (`rota_abi::report::Phase`).
    pub phase: u8,
}

/// Bits of [`Hello::flags`].
pub mod flags {
    /// The device holds release keys: it commits only signed releases.
    pub const SIGNED: u8 = 1;
    /// The device's generation is on trial (not yet confirmed).
    pub const TRIAL: u8 = 2;
}

/// Bytes of [`Hello::state`]: the first bytes of the installed set's digest.
pub const STATE_LEN: usize = 16;

/// The device's check-in: the first frame of every session (seq 0, tagged with [`crate::Key::hello`]).
/// It names the installed files by one digest over them; the server asks for the list
/// ([`ServerMsg::List`]) only when that differs from what it would install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello<'a> {
    /// The device's id (its chip id: the server's inventory is `ESP-<id>.json`).
    pub device_id: u32,
    /// The device nonce: its persisted boot counter, incremented before every check-in, never reused.
    pub nonce: u32,
    /// The device's instruction set (`rota_blob::Isa`): which overlay blobs it can run.
    pub isa: u8,
    /// The ABI version of its core's service table (`rota_abi::ABI_VERSION`).
    pub abi: u8,
    /// [`flags`].
    pub flags: u8,
    /// [`crate::config::config_version`] of the stored config record (0 if none), as 4 bytes LE.
    pub config: ConfigVersion,
    /// [`state_digest`] of the committed files.
    pub state: [u8; STATE_LEN],
    /// The highest security version the device has committed.
    pub security_version: u32,
    /// The staged files.
    #[serde(borrow)]
    pub staged: Vec<StagedInfo<'a>, MAX_STAGED>,
    /// The last rollback, until the next commit.
    pub rollback: Option<Rollback>,
    /// The last boot's heap report.
    pub heap: HeapSummary,
}

/// A config record's version as it travels in a [`Hello`]: 4 bytes, little endian (the version is a
/// digest prefix, so a varint would mostly take 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConfigVersion(pub u32);

impl Serialize for ConfigVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.to_le_bytes().serialize(s)
    }
}

impl<'de> Deserialize<'de> for ConfigVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ConfigVersion(u32::from_le_bytes(<[u8; 4]>::deserialize(
            d,
        )?)))
    }
}

/// What a [`Hello`] carries as [`Hello::state`]: the first [`STATE_LEN`] bytes of
/// `rota_release::set_digest` (the digest a signed manifest's file set has) over `files`, in name
/// order (`files` is sorted in place). The device computes it over its committed files, the server
/// over the files it would install: equal means there is nothing to send. 128 bits: telling two file
/// sets apart needs no more (it is not what authenticates anything: the frame's tag does, the
/// signature the code).
pub fn state_digest(files: &mut [FileInfo<'_>]) -> [u8; STATE_LEN] {
    // Insertion sort: at most MAX_FILES entries, and no sort routine in the device's code.
    for i in 1..files.len() {
        let mut j = i;
        while j > 0 && files[j - 1].name.as_bytes() > files[j].name.as_bytes() {
            files.swap(j - 1, j);
            j -= 1;
        }
    }
    let d = rota_release::set_digest(files.iter().map(|f| rota_release::Entry {
        name: f.name.as_bytes(),
        size: f.size,
        version: f.version,
        digest: &f.digest,
    }));
    let mut out = [0; STATE_LEN];
    out.copy_from_slice(&d[..STATE_LEN]);
    out
}

/// The device's committed files, in answer to [`ServerMsg::List`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Files<'a> {
    /// The committed files.
    #[serde(borrow)]
    pub files: Vec<FileInfo<'a>, MAX_FILES>,
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
    /// The release was refused (detail: [`ReleaseError`]): bad signature, another ISA or ABI, a lower
    /// security version, a file it does not name, a missing signature.
    Release,
}

/// Why a device refused a release (the detail of [`Reason::Release`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReleaseError {
    /// The manifest does not parse.
    Manifest = 1,
    /// The signature does not verify with any of the device's keys.
    Signature = 2,
    /// The manifest is for another instruction set.
    Isa = 3,
    /// The manifest is for another ABI.
    Abi = 4,
    /// The manifest's security version is below the device's.
    Rollback = 5,
    /// The device holds keys and the session changes files or config without a signed release.
    Unsigned = 6,
    /// A file begun is not in the manifest with that size, digest and version (or a rename).
    NotInManifest = 7,
    /// At commit, a file of the manifest is neither committed nor staged with its digest.
    Incomplete = 8,
    /// A second release in one session.
    Twice = 9,
}

impl ReleaseError {
    /// What the code means, for logs.
    pub fn describe(detail: u8) -> &'static str {
        match detail {
            1 => "the manifest does not parse",
            2 => "the signature does not verify with the device's keys",
            3 => "the release is for another instruction set",
            4 => "the release is for another ABI",
            5 => "the security version is below the device's (anti-rollback)",
            6 => "the device holds keys and the release is not signed",
            7 => "a file is not in the signed manifest as sent",
            8 => "a file of the signed manifest is missing at commit",
            9 => "a second release in one session",
            _ => "unknown release error",
        }
    }
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

/// The signed release the session installs (before any file is staged): the manifest
/// (`rota_release::Manifest`) and its Ed25519 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release<'a> {
    /// The manifest's bytes, at most [`crate::MAX_CHUNK`].
    #[serde(borrow)]
    pub manifest: Bytes<'a>,
    /// Ed25519 over `manifest`.
    #[serde(with = "signature")]
    pub signature: [u8; 64],
}

/// serde for a 64-byte array (serde's own impls stop at 32), as postcard writes `[u8; N]`: N bytes.
mod signature {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(64)?;
        for b in v {
            t.serialize_element(b)?;
        }
        t.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = [u8; 64];
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("64 bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 64], A::Error> {
                let mut out = [0u8; 64];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(64, V)
    }
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
    /// Answer to `List`.
    Files(Files<'a>),
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
    /// Send the committed files' list (`Files`).
    List,
    /// The signed release of this session.
    Release(Release<'a>),
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
            DeviceMsg::Files(_) => kind::FILES,
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
            kind::FILES => DeviceMsg::Files(decode(payload)?),
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
            ServerMsg::List => kind::LIST,
            ServerMsg::Release(_) => kind::RELEASE,
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
            ServerMsg::List => Ok(0),
            ServerMsg::Release(m) => encode(m, out),
        }
    }

    /// Decodes the payload (postcard) of a frame of kind `kind`.
    pub fn decode(kind: u8, payload: &'a [u8]) -> Result<Self, Error> {
        crate::codec::decode_server(kind, payload)
    }
}
