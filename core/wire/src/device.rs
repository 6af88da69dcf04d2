//! The device's half of a v2 session, sans-IO.
//!
//! ```text
//! let mut s = DeviceSession::new(secret, link);
//! send(&out[..s.hello(&hello, &mut out)?]);
//! loop {
//!     match s.poll(&mut store, &mut out)? {
//!         Poll::Receive => { let n = recv(s.rx_buffer()); s.rx_commit(n); }
//!         Poll::Send(n) => send(&out[..n]),
//!         Poll::NoUpdate => break,              // run the application
//!         Poll::Committed(_) => reboot(),
//!     }
//! }
//! ```
//! The session buffers at most one frame ([`crate::MAX_FRAME`] bytes): [`DeviceSession::rx_buffer`]
//! never asks for a byte past the end of the current frame, so the rest stays in the network stack.
//! Every command is checked (tag, sequence number, state, offsets) before the store sees it. Any error
//! after the Welcome is reported to the server once, as a `Failed` frame, before [`DeviceSession::poll`]
//! returns it; nothing is committed after an error.
//!
//! The session code is not generic: [`DeviceSession::poll`] only adapts the [`FileStore`] to an internal
//! trait object, so a firmware carries one copy of it whatever the store type.

use crate::codec::{encode_file, Writer};
use crate::config::{DeviceConfig, Keep, Link};
use crate::frame::{Channel, Dir, Frame, Header, Key};
use crate::msg::{
    kind, Ack, Committed, DeviceMsg, Failed, FileInfo, Hello, Name, Ready, Reason, ReleaseError,
    ServerMsg, Welcome, MAX_FILES,
};
use crate::{Digest, Error, HEADER_LEN, MAX_CHUNK, MAX_FRAME, MAX_NAME, MAX_PAYLOAD, WINDOW};
use rota_release::{Manifest, MANIFEST_MAX, SIGNATURE_SIZE};

/// The device's file store, as the session drives it (mirrors `rota-store`'s staging API, method for
/// method). Nothing staged is visible before [`FileStore::commit`], which applies every staged file,
/// deletion and rename, and the new config, atomically.
///
/// Staged file data survives a reboot (the next Hello reports it and the transfer resumes); staged
/// deletions and renames of a session that ended without a commit must not (no Hello reports them,
/// so a later commit would apply changes the server did not ask for in that session).
pub trait FileStore {
    /// The store's error.
    type Error;

    /// Starts (or resumes) staging `name` of `size` bytes whose content must have SHA-256 `digest`.
    /// Returns the resume offset: the bytes of the same file (same name, size and digest) already
    /// durably staged, 0 for a fresh start.
    fn stage_begin(
        &mut self,
        name: &[u8],
        size: u32,
        digest: &Digest,
        version: u32,
    ) -> Result<u32, Self::Error>;

    /// Writes `data` at `offset` of the staged `name` (offsets only ever grow by `data.len()`).
    fn stage_write(&mut self, name: &[u8], offset: u32, data: &[u8]) -> Result<(), Self::Error>;

    /// Completes the staged `name`: fails unless its content's SHA-256 is the digest of `stage_begin`.
    fn stage_finish(&mut self, name: &[u8]) -> Result<(), Self::Error>;

    /// Discards a staged (uncommitted) `name`.
    fn stage_drop(&mut self, name: &[u8]) -> Result<(), Self::Error>;

    /// Deletes the committed `name` at the next commit.
    fn stage_delete(&mut self, name: &[u8]) -> Result<(), Self::Error>;

    /// Renames the committed `from` to `to` at the next commit.
    fn stage_rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), Self::Error>;

    /// Reads committed `name` from `offset` into `buf`; returns the bytes read (fewer at its end).
    fn read(&mut self, name: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, Self::Error>;

    /// The committed file number `index` (in the store's own order), or `None` past the last.
    fn file(&mut self, index: u32) -> Result<Option<StoredFile>, Self::Error>;

    /// Commits everything staged and `config` (a [`DeviceConfig`] record payload) if given, as a
    /// generation on trial as `info` says; returns the store's new generation.
    fn commit(&mut self, config: Option<&[u8]>, info: &CommitInfo) -> Result<u32, Self::Error>;

    /// A one-byte code for `error`, reported to the server in `Failed`: the magnitude of the
    /// `rota_abi::status` code of the same failure, which the server's log names (0 when not
    /// overridden).
    fn error_code(error: &Self::Error) -> u8 {
        let _ = error;
        0
    }
}

/// One committed file, as [`FileStore::file`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredFile {
    /// Bytes of `name` used.
    pub name_len: u8,
    /// The name, zero-padded.
    pub name: [u8; MAX_NAME],
    /// Its size.
    pub size: u32,
    /// Its version.
    pub version: u32,
    /// SHA-256 of its content.
    pub digest: Digest,
}

impl StoredFile {
    /// The name's bytes.
    pub fn name(&self) -> &[u8] {
        &self.name[..usize::from(self.name_len).min(MAX_NAME)]
    }
}

/// How a commit is to be kept: what the store records with the new generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitInfo {
    /// The release's security version (0 for an unsigned one); the store refuses one below its own.
    pub security_version: u32,
    /// Boots the generation may take unconfirmed before the core rolls it back (0: confirmed now).
    pub trial_limit: u8,
    /// The session changed the application: only the application's own confirm may confirm it.
    pub needs_app: bool,
}

/// What a device's session knows of the device besides its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device<'s> {
    /// The HMAC secret.
    pub secret: &'s [u8],
    /// How it reaches the server (a new config must keep it).
    pub link: Link,
    /// Its release keys, 32 bytes each ([`crate::ConfigView::keys`]); none: releases need no
    /// signature.
    pub keys: &'s [u8],
    /// The application's file name (a session that changes it needs the application's confirm).
    pub app: &'s [u8],
    /// Trial boots of a committed generation (a new config's own value replaces it).
    pub trials: u8,
    /// Its instruction set (`rota_blob::Isa`): a release must be for it.
    pub isa: u8,
    /// Its core's ABI version: a release must be for it.
    pub abi: u8,
    /// The highest security version committed: a release must not be below it.
    pub security_version: u32,
}

impl<'s> Device<'s> {
    /// A device with `secret` reaching the server over `link`, holding no release keys, on no trial
    /// (what a session made by [`DeviceSession::new`] assumes).
    pub const fn plain(secret: &'s [u8], link: Link) -> Device<'s> {
        Device {
            secret,
            link,
            keys: &[],
            app: b"app",
            trials: 0,
            isa: 0,
            abi: 0,
            security_version: 0,
        }
    }
}

/// The store as the session core uses it: errors already reduced to their code.
trait Ops {
    fn begin(&mut self, name: &[u8], size: u32, digest: &Digest, version: u32) -> Result<u32, u8>;
    fn write(&mut self, name: &[u8], offset: u32, data: &[u8]) -> Result<(), u8>;
    fn finish(&mut self, name: &[u8]) -> Result<(), u8>;
    fn drop_staged(&mut self, name: &[u8]) -> Result<(), u8>;
    fn delete(&mut self, name: &[u8]) -> Result<(), u8>;
    fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), u8>;
    fn read(&mut self, name: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, u8>;
    fn file(&mut self, index: u32) -> Result<Option<StoredFile>, u8>;
    fn commit(&mut self, config: Option<&[u8]>, info: &CommitInfo) -> Result<u32, u8>;
}

struct Adapter<'a, S>(&'a mut S);

impl<S: FileStore> Ops for Adapter<'_, S> {
    fn begin(&mut self, name: &[u8], size: u32, digest: &Digest, version: u32) -> Result<u32, u8> {
        self.0
            .stage_begin(name, size, digest, version)
            .map_err(|e| S::error_code(&e))
    }
    fn write(&mut self, name: &[u8], offset: u32, data: &[u8]) -> Result<(), u8> {
        self.0
            .stage_write(name, offset, data)
            .map_err(|e| S::error_code(&e))
    }
    fn finish(&mut self, name: &[u8]) -> Result<(), u8> {
        self.0.stage_finish(name).map_err(|e| S::error_code(&e))
    }
    fn drop_staged(&mut self, name: &[u8]) -> Result<(), u8> {
        self.0.stage_drop(name).map_err(|e| S::error_code(&e))
    }
    fn delete(&mut self, name: &[u8]) -> Result<(), u8> {
        self.0.stage_delete(name).map_err(|e| S::error_code(&e))
    }
    fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), u8> {
        self.0.stage_rename(from, to).map_err(|e| S::error_code(&e))
    }
    fn read(&mut self, name: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, u8> {
        self.0
            .read(name, offset, buf)
            .map_err(|e| S::error_code(&e))
    }
    fn file(&mut self, index: u32) -> Result<Option<StoredFile>, u8> {
        self.0.file(index).map_err(|e| S::error_code(&e))
    }
    fn commit(&mut self, config: Option<&[u8]>, info: &CommitInfo) -> Result<u32, u8> {
        self.0.commit(config, info).map_err(|e| S::error_code(&e))
    }
}

/// What the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Receive more bytes into [`DeviceSession::rx_buffer`], then poll again.
    Receive,
    /// Send the first `n` bytes of the output buffer, then poll again.
    Send(usize),
    /// The server says there is nothing to do: run the application. The session is over.
    NoUpdate,
    /// Everything is committed (the store returned this generation): reboot. The session is over.
    Committed(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before [`DeviceSession::hello`].
    New,
    /// Hello sent; waiting for Welcome or NoUpdate.
    AwaitFirst,
    /// Session key set; taking commands.
    Running,
    /// Over: polls return this.
    Finished(Poll),
    /// Failed: polls return this error.
    Failed(Error),
}

/// A file (being staged or uploaded): name, end, and progress.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    active: bool,
    name_len: u8,
    name: [u8; MAX_NAME],
    /// Staging: the file's size. Upload: one past the last byte wanted.
    end: u32,
    /// The next byte.
    offset: u32,
    /// Staging: the offset last acknowledged.
    acked: u32,
}

impl Cursor {
    const IDLE: Cursor = Cursor {
        active: false,
        name_len: 0,
        name: [0; MAX_NAME],
        end: 0,
        offset: 0,
        acked: 0,
    };

    fn open(name: &[u8], end: u32, offset: u32) -> Cursor {
        let mut c = Cursor::IDLE;
        let n = name.len().min(MAX_NAME);
        c.name[..n].copy_from_slice(&name[..n]);
        c.name_len = n as u8;
        c.active = true;
        c.end = end;
        c.offset = offset;
        c.acked = offset;
        c
    }

    fn name(&self) -> &[u8] {
        &self.name[..usize::from(self.name_len).min(MAX_NAME)]
    }
}

/// Everything but the receive buffer (so a frame borrowed from it can drive the rest).
struct Core<'s> {
    device: Device<'s>,
    /// The session changed the application file.
    app_changed: bool,
    /// The verified release of this session: its manifest's length (0: none yet) ...
    release_len: u16,
    /// ... the manifest entries staged in this session, one bit each ...
    release_staged: u16,
    /// ... and the manifest.
    release: [u8; MANIFEST_MAX],
    /// A `Release` taken but not yet verified: its manifest's length in `release` (0: none), its
    /// signature at the start of `poll`'s `out`. [`DeviceSession::poll`] verifies it before it
    /// returns, from its own shallow frame.
    unverified: u16,
    device_id: u32,
    nonce: u32,
    chan: Channel,
    state: State,
    file: Cursor,
    upload: Cursor,
}

/// The device's half of one v2 session. About 1.3 KB: one frame buffer, the session key and a few
/// counters.
pub struct DeviceSession<'s> {
    core: Core<'s>,
    rx_len: usize,
    rx: [u8; MAX_FRAME],
}

fn release_error(e: ReleaseError) -> Error {
    Error::Release(e)
}

fn store_err(reason: Reason) -> impl Fn(u8) -> Error {
    move |detail| Error::Store { reason, detail }
}

/// Writes `v` as a postcard varint at `out[0..]`; returns its length (at most 5).
fn put_varint(out: &mut [u8], mut v: u32) -> usize {
    let mut i = 0;
    while let Some(b) = out.get_mut(i) {
        *b = (v & 0x7f) as u8;
        v >>= 7;
        i += 1;
        if v == 0 {
            return i;
        }
        *b |= 0x80;
    }
    i
}

impl<'s> DeviceSession<'s> {
    /// A session for a device holding `secret` and reaching the server over `link` (a config the
    /// server sends must keep both), with no release keys; [`DeviceSession::hello`] starts it.
    pub fn new(secret: &'s [u8], link: Link) -> Self {
        Self::for_device(Device::plain(secret, link))
    }

    /// A session for `device`; [`DeviceSession::hello`] starts it.
    pub fn for_device(device: Device<'s>) -> Self {
        DeviceSession {
            core: Core {
                device,
                app_changed: false,
                release_len: 0,
                release_staged: 0,
                release: [0; MANIFEST_MAX],
                unverified: 0,
                device_id: 0,
                nonce: 0,
                chan: Channel {
                    key: None,
                    out_dir: Dir::ToServer,
                    tx: 0,
                    rx: 0,
                },
                state: State::New,
                file: Cursor::IDLE,
                upload: Cursor::IDLE,
            },
            rx_len: 0,
            rx: [0; MAX_FRAME],
        }
    }

    /// Writes the Hello frame (seq 0, tagged with the hello key of `hello.device_id` and
    /// `hello.nonce`) into `out`; returns its length. Only once per session.
    pub fn hello(&mut self, hello: &Hello<'_>, out: &mut [u8]) -> Result<usize, Error> {
        let core = &mut self.core;
        if !matches!(core.state, State::New) {
            return Err(Error::Unexpected(kind::HELLO));
        }
        if out.len() < MAX_FRAME {
            return Err(Error::BufferTooSmall);
        }
        core.device_id = hello.device_id;
        core.nonce = hello.nonce;
        core.chan.key = Some(Key::hello(core.device.secret, hello.device_id, hello.nonce));
        let len = crate::codec::encode_hello(hello, &mut out[HEADER_LEN..HEADER_LEN + MAX_PAYLOAD])
            .map_err(|_| Error::TooLong(u16::MAX))?;
        let n = core.chan.seal(out, kind::HELLO, len)?;
        core.state = State::AwaitFirst;
        Ok(n)
    }

    /// Whether the session holds a release whose signature verified (a device with keys, after the
    /// server's `Release`).
    pub fn release_verified(&self) -> bool {
        self.core.release_len != 0
    }

    /// How many more bytes the current frame needs (0 when it is complete or its header is bad).
    fn need(&self) -> usize {
        if self.rx_len < HEADER_LEN {
            return HEADER_LEN - self.rx_len;
        }
        match Header::parse(&self.rx[..HEADER_LEN]) {
            Ok(h) => h.frame_len().saturating_sub(self.rx_len),
            Err(_) => 0,
        }
    }

    /// Where to put received bytes: exactly the bytes still missing from the current frame, never more
    /// (empty while a frame is complete and not yet polled).
    pub fn rx_buffer(&mut self) -> &mut [u8] {
        let need = self.need();
        let start = self.rx_len.min(MAX_FRAME);
        let end = (start + need).min(MAX_FRAME);
        &mut self.rx[start..end]
    }

    /// Records that `n` bytes were written into [`DeviceSession::rx_buffer`].
    pub fn rx_commit(&mut self, n: usize) {
        self.rx_len = (self.rx_len + n.min(self.need())).min(MAX_FRAME);
    }

    /// Copies received bytes in, as many as the current frame takes; returns how many it took (poll,
    /// then feed the rest).
    pub fn feed(&mut self, mut bytes: &[u8]) -> usize {
        let mut taken = 0;
        loop {
            let space = self.rx_buffer();
            let n = space.len().min(bytes.len());
            if n == 0 {
                return taken;
            }
            space[..n].copy_from_slice(&bytes[..n]);
            self.rx_commit(n);
            bytes = &bytes[n..];
            taken += n;
        }
    }

    /// Advances the session: processes a complete received frame with `store`, or continues an upload.
    /// `out` must hold [`MAX_FRAME`] bytes.
    ///
    /// A `Release`'s signature is verified here, after the frame's handling has returned: the
    /// verification takes 6 KB of stack (`docs/signing.md`), which then comes on top of this frame
    /// only, not of the handling's (1,000 B less at the peak on mps2-an385, `docs/sizes.md`).
    pub fn poll<S: FileStore>(&mut self, store: &mut S, out: &mut [u8]) -> Result<Poll, Error> {
        let polled = self.poll_dyn(&mut Adapter(store), out);
        match core::mem::take(&mut self.core.unverified) {
            0 => polled,
            len => self.core.verify_release(len, out),
        }
    }

    /// Out of line: the handling's frames are gone when `poll` verifies a release.
    #[inline(never)]
    fn poll_dyn(&mut self, store: &mut dyn Ops, out: &mut [u8]) -> Result<Poll, Error> {
        match self.core.state {
            State::Finished(p) => return Ok(p),
            State::Failed(e) => return Err(e),
            State::New => return Err(Error::Unexpected(kind::HELLO)),
            State::AwaitFirst | State::Running => {}
        }
        if out.len() < MAX_FRAME {
            return Err(Error::BufferTooSmall);
        }
        let result = if self.core.upload.active {
            self.core.upload_step(store, out)
        } else {
            if self.rx_len >= HEADER_LEN {
                // A bad header (magic, length) is final: the stream cannot be resynchronised.
                if let Err(e) = Header::parse(&self.rx[..HEADER_LEN]) {
                    return self.core.fail(e, out);
                }
            }
            if self.rx_len < HEADER_LEN || self.need() > 0 {
                return Ok(Poll::Receive);
            }
            let frame = &self.rx[..self.rx_len];
            let result = self.core.handle(frame, store, out);
            self.rx_len = 0;
            result
        };
        match result {
            Ok(p) => Ok(p),
            Err(e) => self.core.fail(e, out),
        }
    }
}

impl Core<'_> {
    /// Ends the session on `error`: tells the server once (when a session key exists), then returns
    /// the error on every poll.
    fn fail(&mut self, error: Error, out: &mut [u8]) -> Result<Poll, Error> {
        let running = matches!(self.state, State::Running);
        self.state = State::Failed(error);
        self.file.active = false;
        self.upload.active = false;
        if running {
            let (reason, detail) = error.reason();
            if let Ok(n) = self.reply(DeviceMsg::Failed(Failed { reason, detail }), out) {
                return Ok(Poll::Send(n));
            }
        }
        Err(error)
    }

    fn reply(&mut self, msg: DeviceMsg<'_>, out: &mut [u8]) -> Result<usize, Error> {
        let len = msg.encode(&mut out[HEADER_LEN..HEADER_LEN + MAX_PAYLOAD])?;
        self.chan.seal(out, msg.kind(), len)
    }

    fn handle(&mut self, bytes: &[u8], store: &mut dyn Ops, out: &mut [u8]) -> Result<Poll, Error> {
        if matches!(self.state, State::AwaitFirst) {
            return self.first(bytes);
        }
        let frame = self.chan.open(bytes)?;
        let msg = ServerMsg::decode(frame.kind(), frame.payload())?;
        self.command(msg, store, out)
    }

    /// The server's first frame: NoUpdate (hello key) or Welcome (session key from its nonce).
    fn first(&mut self, bytes: &[u8]) -> Result<Poll, Error> {
        let frame = Frame::new_checked(bytes)?;
        self.chan.check_seq(&frame)?;
        match ServerMsg::decode(frame.kind(), frame.payload()) {
            Ok(ServerMsg::NoUpdate) => {
                let key = self.chan.key()?.clone();
                self.chan.accept_with(&frame, key)?;
                self.state = State::Finished(Poll::NoUpdate);
                Ok(Poll::NoUpdate)
            }
            Ok(ServerMsg::Welcome(Welcome { server_nonce })) => {
                let key = Key::session(
                    self.device.secret,
                    self.device_id,
                    self.nonce,
                    &server_nonce,
                );
                self.chan.accept_with(&frame, key)?;
                self.state = State::Running;
                Ok(Poll::Receive)
            }
            // Nothing is trusted before the tag verifies: any other frame is simply refused.
            Ok(_) => Err(Error::Unexpected(frame.kind())),
            Err(e) => Err(e),
        }
    }

    fn command(
        &mut self,
        msg: ServerMsg<'_>,
        store: &mut dyn Ops,
        out: &mut [u8],
    ) -> Result<Poll, Error> {
        let kind = msg.kind();
        // While a file is open only its data and its end are accepted.
        if self.file.active != matches!(msg, ServerMsg::Data(_) | ServerMsg::Finish(_)) {
            return Err(Error::Unexpected(kind));
        }
        let reply = match msg {
            ServerMsg::List => return self.files(store, out),
            ServerMsg::NoUpdate => {
                self.state = State::Finished(Poll::NoUpdate);
                return Ok(Poll::NoUpdate);
            }
            ServerMsg::Release(r) => return self.open_release(r.manifest.0, &r.signature, out),
            ServerMsg::Begin(b) => {
                let name = b.name.as_bytes();
                self.note_change(name);
                if let Some(manifest) = self.signed()? {
                    let wanted = manifest.find(name).is_some_and(|e| {
                        (e.size, e.version, e.digest) == (b.size, b.version, &b.digest)
                    });
                    if !wanted {
                        return Err(release_error(ReleaseError::NotInManifest));
                    }
                }
                let offset = store
                    .begin(name, b.size, &b.digest, b.version)
                    .map_err(store_err(Reason::Begin))?;
                if offset > b.size {
                    return Err(Error::Offset);
                }
                self.file = Cursor::open(name, b.size, offset);
                DeviceMsg::Ready(Ready { offset })
            }
            ServerMsg::Data(d) => {
                let f = &mut self.file;
                let end = u32::try_from(d.bytes.0.len())
                    .ok()
                    .and_then(|n| d.offset.checked_add(n))
                    .filter(|&end| d.offset == f.offset && end <= f.end)
                    .ok_or(Error::Offset)?;
                store
                    .write(f.name(), d.offset, d.bytes.0)
                    .map_err(store_err(Reason::Write))?;
                f.offset = end;
                if end == f.acked || (end - f.acked < WINDOW && end != f.end) {
                    return Ok(Poll::Receive);
                }
                f.acked = end;
                DeviceMsg::Ack(Ack { offset: end })
            }
            ServerMsg::Finish(name) => {
                let f = &mut self.file;
                if name.as_bytes() != f.name() {
                    return Err(Error::Unexpected(kind));
                }
                if f.offset != f.end {
                    return Err(Error::Offset);
                }
                f.active = false;
                store
                    .finish(name.as_bytes())
                    .map_err(store_err(Reason::Finish))?;
                if let Some(manifest) = self.signed()? {
                    if let Some(i) = manifest.entries().position(|e| e.name == name.as_bytes()) {
                        self.release_staged |= 1 << i;
                    }
                }
                DeviceMsg::Staged
            }
            ServerMsg::Drop(name) => {
                store
                    .drop_staged(name.as_bytes())
                    .map_err(store_err(Reason::Drop))?;
                return Ok(Poll::Receive);
            }
            ServerMsg::Delete(name) => {
                self.note_change(name.as_bytes());
                if let Some(manifest) = self.signed()? {
                    if manifest.find(name.as_bytes()).is_some() {
                        return Err(release_error(ReleaseError::NotInManifest));
                    }
                }
                store
                    .delete(name.as_bytes())
                    .map_err(store_err(Reason::Delete))?;
                return Ok(Poll::Receive);
            }
            ServerMsg::Rename(r) => {
                self.note_change(r.from.as_bytes());
                self.note_change(r.to.as_bytes());
                // A rename makes a file of another name from content the manifest does not
                // vouch for under it: a signed session never renames.
                if self.signed()?.is_some() {
                    return Err(release_error(ReleaseError::NotInManifest));
                }
                store
                    .rename(r.from.as_bytes(), r.to.as_bytes())
                    .map_err(store_err(Reason::Rename))?;
                return Ok(Poll::Receive);
            }
            ServerMsg::Upload(u) => {
                let end = u.offset.checked_add(u.len).ok_or(Error::Offset)?;
                self.upload = Cursor::open(u.name.as_bytes(), end, u.offset);
                return self.upload_step(store, out);
            }
            ServerMsg::Commit(c) => {
                let config = c.config.map(|b| b.0);
                let mut info = CommitInfo {
                    security_version: self.device.security_version,
                    trial_limit: self.device.trials,
                    needs_app: self.app_changed,
                };
                if let Some(manifest) = self.signed()? {
                    self.check_complete(&manifest, store)?;
                    info.security_version = manifest.security_version();
                }
                if let Some(bytes) = config {
                    let keep = Keep {
                        device_id: self.device_id,
                        secret: self.device.secret,
                        link: self.device.link,
                        keys: self.device.keys,
                    };
                    let new = DeviceConfig::check_update(bytes, &keep).map_err(Error::Config)?;
                    info.trial_limit = new.trials;
                }
                let generation = store
                    .commit(config, &info)
                    .map_err(store_err(Reason::Commit))?;
                let n = self.reply(DeviceMsg::Committed(Committed { generation }), out)?;
                self.state = State::Finished(Poll::Committed(generation));
                return Ok(Poll::Send(n));
            }
            ServerMsg::Welcome(_) => return Err(Error::Unexpected(kind)),
        };
        Ok(Poll::Send(self.reply(reply, out)?))
    }

    /// The session's verified manifest, for a device that holds keys; `None` for one that does not;
    /// [`ReleaseError::Unsigned`] for one that does but has no release yet.
    fn signed(&self) -> Result<Option<Manifest<'_>>, Error> {
        if self.device.keys.is_empty() {
            return Ok(None);
        }
        let bytes = self
            .release
            .get(..usize::from(self.release_len))
            .filter(|b| !b.is_empty())
            .ok_or(release_error(ReleaseError::Unsigned))?;
        Manifest::parse(bytes)
            .map(Some)
            .map_err(|_| release_error(ReleaseError::Manifest))
    }

    /// Takes the session's release (before any file): the manifest is kept in `release`, and its
    /// signature in `out` (nothing is sent), for [`Core::verify_release`], which `poll` calls
    /// before it returns. Nothing is written.
    fn open_release(
        &mut self,
        manifest: &[u8],
        signature: &[u8; SIGNATURE_SIZE],
        out: &mut [u8],
    ) -> Result<Poll, Error> {
        if self.device.keys.is_empty() {
            return Err(Error::Unexpected(kind::RELEASE));
        }
        if self.release_len != 0 {
            return Err(release_error(ReleaseError::Twice));
        }
        let n = manifest.len();
        self.release
            .get_mut(..n)
            .ok_or(release_error(ReleaseError::Manifest))?
            .copy_from_slice(manifest);
        out[..SIGNATURE_SIZE].copy_from_slice(signature);
        self.unverified = n as u16;
        Ok(Poll::Receive)
    }

    /// Verifies the release [`Core::open_release`] took: its manifest must parse, its signature
    /// verify with one of the device's keys, and it must be for this device's ISA and ABI and not
    /// below its security version. Only then does the session hold it; otherwise the session
    /// fails. Out of line, so that the verification's stack starts from `poll`'s frame.
    #[inline(never)]
    fn verify_release(&mut self, len: u16, out: &mut [u8]) -> Result<Poll, Error> {
        let mut signature = [0u8; SIGNATURE_SIZE];
        signature.copy_from_slice(&out[..SIGNATURE_SIZE]);
        match self.check_release(usize::from(len), &signature) {
            Ok(()) => {
                self.release_len = len;
                Ok(Poll::Receive)
            }
            Err(e) => self.fail(e, out),
        }
    }

    fn check_release(&self, len: usize, signature: &[u8; SIGNATURE_SIZE]) -> Result<(), Error> {
        let manifest = &self.release[..len];
        let parsed =
            Manifest::parse(manifest).map_err(|_| release_error(ReleaseError::Manifest))?;
        let (keys, []) = self.device.keys.as_chunks::<32>() else {
            return Err(release_error(ReleaseError::Signature));
        };
        rota_release::verify(manifest, signature, keys)
            .map_err(|_| release_error(ReleaseError::Signature))?;
        if self.device.isa != 0 && parsed.isa() as u8 != self.device.isa {
            return Err(release_error(ReleaseError::Isa));
        }
        if self.device.isa != 0 && parsed.abi() != u16::from(self.device.abi) {
            return Err(release_error(ReleaseError::Abi));
        }
        if parsed.security_version() < self.device.security_version {
            return Err(release_error(ReleaseError::Rollback));
        }
        Ok(())
    }

    /// At commit: every file of the manifest was staged in this session or is committed with its
    /// size and digest.
    fn check_complete(&self, manifest: &Manifest<'_>, store: &mut dyn Ops) -> Result<(), Error> {
        for (i, entry) in manifest.entries().enumerate() {
            if self.release_staged & (1 << i) != 0 {
                continue;
            }
            let mut index = 0;
            let held = loop {
                match store.file(index).map_err(store_err(Reason::Read))? {
                    None => break false,
                    Some(f) if f.name() == entry.name => {
                        break (f.size, &f.digest) == (entry.size, entry.digest)
                    }
                    Some(_) => index += 1,
                }
            };
            if !held {
                return Err(release_error(ReleaseError::Incomplete));
            }
        }
        Ok(())
    }

    /// Notes that the session changes `name` (the application needs its own confirm then).
    fn note_change(&mut self, name: &[u8]) {
        self.app_changed |= name == self.device.app;
    }

    /// Answers `List`: the committed files, written straight into the output frame (the count, one
    /// byte as it is at most [`MAX_FILES`], patched in at the end).
    fn files(&mut self, store: &mut dyn Ops, out: &mut [u8]) -> Result<Poll, Error> {
        let payload = &mut out[HEADER_LEN..HEADER_LEN + MAX_PAYLOAD];
        let mut w = Writer::new(&mut payload[1..]);
        let mut count = 0;
        while count < MAX_FILES as u32 {
            let Some(f) = store.file(count).map_err(store_err(Reason::Read))? else {
                break;
            };
            let name = Name::new(f.name()).ok_or(Error::Store {
                reason: Reason::Read,
                detail: 0,
            })?;
            encode_file(
                &mut w,
                &FileInfo {
                    name,
                    size: f.size,
                    version: f.version,
                    digest: f.digest,
                },
            )?;
            count += 1;
        }
        let len = 1 + w.len();
        payload[0] = count as u8;
        Ok(Poll::Send(self.chan.seal(out, kind::FILES, len)?))
    }

    /// Sends the next piece of the upload in progress, read straight into the output frame.
    fn upload_step(&mut self, store: &mut dyn Ops, out: &mut [u8]) -> Result<Poll, Error> {
        let u = &mut self.upload;
        let want = ((u.end - u.offset) as usize).min(MAX_CHUNK);
        // FileData's postcard: varint offset, varint length, bytes. The length varint takes 2 bytes
        // for 128..=1024 and 1 below; read after a 2-byte slot and close the gap if it is shorter.
        let payload = &mut out[HEADER_LEN..HEADER_LEN + MAX_PAYLOAD];
        let at = put_varint(payload, u.offset);
        let data = at + 2;
        let n = store
            .read(u.name(), u.offset, &mut payload[data..data + want])
            .map_err(store_err(Reason::Read))?
            .min(want);
        let len_bytes = put_varint(&mut payload[at..at + 2], n as u32);
        if len_bytes == 1 {
            payload.copy_within(data..data + n, at + 1);
        }
        let len = at + len_bytes + n;
        u.offset += n as u32;
        if n < want || u.offset == u.end {
            u.active = false;
        }
        let frame = self.chan.seal(out, kind::FILE_DATA, len)?;
        Ok(Poll::Send(frame))
    }
}
