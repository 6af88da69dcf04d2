//! The device's side of one v1 session, sans-IO: bytes in through [`Session::feed`], bytes out through
//! [`Session::transmit`].

use sha2::{Digest, Sha256};

use crate::config::{Config, FileNumber, CHK_LEN, SERVER_MAX};
use crate::json::{self, JsonFault, Key, Span, Val, Writer};
use crate::record::{Line, Record, RecordError};
use crate::sign::{Signer, TAG_LEN};
use crate::store::V1Store;
/// Recommended line buffer: the longest HI or `restart` of a full [`Config`] (8 files of 31-byte names,
/// a 64-byte server, the `chk`) is about 560 bytes with its tag.
pub const LINE_LEN: usize = 640;
/// The file buffer rota's `provision` gives a session: the largest file a v1 server can install on a
/// rota device. v1 announces no size, so a larger file is refused at the first chunk that overflows
/// the buffer, with this number in the reply's `err` (which the server logs).
pub const FILE_LEN: usize = 4096;

const OK: &[u8] = br#"{"s":"OK"}"#;
const WRITE_FAILED: &[u8] = br#"{"s":"write failed"}"#;
const COMPILE_FAIL: &[u8] = br#"{"s":"compile fail","err":"no Lua on this device"}"#;
const RENAME_FAILED: &[u8] = br#"{"s":"Rename failed"}"#;
const READ_FAILED: &[u8] = br#"{"s":"read failed"}"#;

/// Why the first record meant "no update".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoUpdate {
    /// A correctly signed `{"r":"OK!"}`: the device is up to date.
    Signed,
    /// A first record containing `"r":"OK!"` without a valid tag (the original client accepted it;
    /// it is reported, and still only means "run the application").
    Unsigned,
    /// A first record with a missing or bad tag (fail-safe: run the application).
    BadTag,
}

/// How a session ended successfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'s> {
    /// Nothing to install: start the application (discard anything staged).
    NoUpdate(NoUpdate),
    /// The server's `restart`: commit the staged files, store this new config, reboot.
    Restart(&'s Config),
}

/// How the session ended (the new config stays in [`Session`]'s own copy: no second one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    NoUpdate(NoUpdate),
    Restart,
}

/// A command the device answered with a failure status (the server is expected to abort).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A `cm` (Lua source to compile) was answered `compile fail`: this device runs no Lua.
    NoLua,
    /// A file outgrew the file buffer and was answered `write failed`; nothing was stored.
    TooBig,
    /// The store refused a file (`write failed`).
    WriteFailed,
}

/// Why a session was aborted. Nothing from an aborted session may be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error<E> {
    /// A line (JSON and tag) longer than the line buffer; refused before it was buffered.
    LineTooLong,
    /// A record (after the first) whose JSON is shorter than [`MIN_JSON_LEN`](crate::MIN_JSON_LEN) or
    /// has no room for a tag.
    TooShort,
    /// A record (after the first) whose tag does not verify.
    BadTag,
    /// A signed record whose JSON this device does not accept.
    Json(JsonFault),
    /// A required field is missing.
    Missing(&'static str),
    /// A field has the wrong type or is out of range.
    Field(&'static str),
    /// A `restart` file name is over [`NAME_MAX`](crate::NAME_MAX) bytes.
    NameTooLong,
    /// `restart` names a server over [`SERVER_MAX`] bytes.
    ServerTooLong,
    /// The HI does not fit the line buffer.
    HiTooLong,
    /// A `restart` came after the device refused a command in this session: it would record files the
    /// device does not have.
    Refused(Refusal),
    /// The store failed while a reply was being sent (`ul`).
    Store(E),
    /// The session was already aborted by an earlier error.
    Aborted,
}

/// What the session waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Bytes to send: call [`Session::transmit`] (the caller sends them) until this changes.
    Transmit,
    /// Waiting for the server: call [`Session::feed`] with what arrives.
    Receive,
    /// Finished: see [`Session::outcome`]; the caller closes the connection.
    Done,
    /// Aborted by an error: commit nothing.
    Aborted,
}

/// The command of a signed record.
#[derive(Debug, Clone, Copy)]
enum Cmd {
    Put,
    Download,
    Compile,
    List,
    Rename,
    Upload,
    Restart,
    Other,
}

/// What the payload of the current record is for.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    Put,
    Download(Span),
    Compile,
}

#[derive(Debug, Clone, Copy)]
enum Rx {
    /// Reading a line; `usize` bytes buffered.
    Line(usize),
    /// Reading `left` payload bytes.
    Payload { left: u32, chunk: Chunk },
}

#[derive(Debug, Clone, Copy)]
enum Body {
    Static(&'static [u8]),
    /// The first `usize` bytes of the line buffer.
    Line(usize),
}

#[derive(Debug, Clone, Copy)]
struct Upload {
    name: Span,
    offset: u32,
    left: u32,
}

#[derive(Debug, Clone, Copy)]
struct Tx {
    body: Body,
    tag: [u8; TAG_LEN],
    pos: usize,
    upload: Option<Upload>,
}

/// One check-in of a device with a luaOTA (v1) server, from the HI to `OK!` or `restart`.
///
/// The session owns no I/O and no heap: the caller passes a line buffer (the longest record line it
/// accepts, e.g. [`LINE_LEN`]) and a file buffer (the largest file it accepts, e.g. [`FILE_LEN`]), and
/// moves bytes between the session and its TCP socket:
///
/// ```text
/// loop {
///     match session.poll() {
///         Poll::Transmit => { let n = session.transmit(&mut out)?; send(&out[..n]) }
///         Poll::Receive  => { /* recv into buf, then */ let used = session.feed(&buf[..n])?;
///                             /* keep buf[used..] for the next feed */ }
///         Poll::Done | Poll::Aborted => break,
///     }
/// }
/// ```
/// Records may arrive split or joined in any way: `feed` consumes up to the end of a record that needs
/// a reply and returns how many bytes it used. The caller enforces the time limits (3 s to the first
/// record, 30 s for the session), and treats a closed connection before [`Poll::Done`] as a failed
/// session (see [`Session::refusal`] for why the server may have given up).
pub struct Session<'b, S: V1Store> {
    signer: Signer,
    store: S,
    line: &'b mut [u8],
    file: &'b mut [u8],
    config: Config,
    rx: Rx,
    tx: Option<Tx>,
    first: bool,
    file_len: usize,
    file_over: bool,
    refusal: Option<Refusal>,
    done: Option<Done>,
    aborted: bool,
}

impl<'b, S: V1Store> Session<'b, S> {
    /// Starts a check-in of chip `id` with `config`, signing with `secret`; the HI is ready to
    /// [`transmit`](Self::transmit).
    pub fn new(
        secret: &[u8],
        id: u32,
        config: &Config,
        store: S,
        line: &'b mut [u8],
        file: &'b mut [u8],
    ) -> Result<Self, Error<S::Error>> {
        let len = crate::render_hi(line, id, config, None).ok_or(Error::HiTooLong)?;
        let signer = Signer::new(secret);
        let tag = signer.tag(&line[..len]);
        Ok(Session {
            signer,
            store,
            line,
            file,
            config: config.clone(),
            rx: Rx::Line(0),
            tx: Some(Tx {
                body: Body::Line(len),
                tag,
                pos: 0,
                upload: None,
            }),
            first: true,
            file_len: 0,
            file_over: false,
            refusal: None,
            done: None,
            aborted: false,
        })
    }

    /// What the session waits for.
    pub fn poll(&self) -> Poll {
        if self.aborted {
            Poll::Aborted
        } else if self.tx.is_some() {
            Poll::Transmit
        } else if self.done.is_some() {
            Poll::Done
        } else {
            Poll::Receive
        }
    }

    /// How the session ended, once [`Poll::Done`].
    pub fn outcome(&self) -> Option<Outcome<'_>> {
        Some(match self.done? {
            Done::NoUpdate(why) => Outcome::NoUpdate(why),
            Done::Restart => Outcome::Restart(&self.config),
        })
    }

    /// The last command this device refused in this session, if any (a server aborts on it).
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal
    }

    /// The store.
    pub fn store(&mut self) -> &mut S {
        &mut self.store
    }

    /// Ends the session, giving the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Writes pending output into `out`; returns how many bytes (0 when nothing is pending).
    pub fn transmit(&mut self, out: &mut [u8]) -> Result<usize, Error<S::Error>> {
        if self.aborted {
            return Err(Error::Aborted);
        }
        let Some(tx) = &mut self.tx else {
            return Ok(0);
        };
        let json: &[u8] = match tx.body {
            Body::Static(s) => s,
            Body::Line(len) => self.line.get(..len).unwrap_or(&[]),
        };
        let line = Line::from_parts(json, tx.tag);
        let mut n = 0;
        if tx.pos < line.len() {
            n = line.copy_to(tx.pos, out);
            tx.pos += n;
            if tx.pos < line.len() {
                return Ok(n);
            }
        }
        if let Some(up) = &mut tx.upload {
            let room = (out.len() - n).min(up.left as usize);
            if room > 0 {
                let name = json::text(self.line, up.name);
                let got = match self.store.read(name, up.offset, &mut out[n..n + room]) {
                    Ok(got) => got.min(room),
                    Err(e) => {
                        self.aborted = true;
                        return Err(Error::Store(e));
                    }
                };
                if got == 0 {
                    up.left = 0;
                } else {
                    n += got;
                    up.offset = up.offset.saturating_add(got as u32);
                    up.left -= got as u32;
                }
            }
            if up.left > 0 {
                return Ok(n);
            }
        }
        self.tx = None;
        Ok(n)
    }

    /// Takes bytes from the server; returns how many were used. It stops early (and returns fewer than
    /// `input.len()`) when a reply must be transmitted first or the session is done; feed the rest
    /// after transmitting. An error aborts the session.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, Error<S::Error>> {
        if self.aborted {
            return Err(Error::Aborted);
        }
        let r = self.feed_inner(input);
        if r.is_err() {
            self.aborted = true;
        }
        r
    }

    fn feed_inner(&mut self, input: &[u8]) -> Result<usize, Error<S::Error>> {
        let mut used = 0;
        while used < input.len() && self.tx.is_none() && self.done.is_none() {
            let rest = &input[used..];
            match self.rx {
                Rx::Line(len) => {
                    let lf = rest.iter().position(|&c| c == b'\n');
                    let take = lf.unwrap_or(rest.len());
                    let dst = self
                        .line
                        .get_mut(len..len + take)
                        .ok_or(Error::LineTooLong)?;
                    dst.copy_from_slice(&rest[..take]);
                    if lf.is_some() {
                        used += take + 1;
                        self.rx = Rx::Line(0);
                        self.on_line(len + take)?;
                    } else {
                        used += take;
                        self.rx = Rx::Line(len + take);
                    }
                }
                Rx::Payload { left, chunk } => {
                    let take = rest.len().min(left as usize);
                    if !matches!(chunk, Chunk::Compile) {
                        self.append(&rest[..take]);
                    }
                    used += take;
                    let left = left - take as u32;
                    if left == 0 {
                        self.rx = Rx::Line(0);
                        self.end_chunk(chunk);
                    } else {
                        self.rx = Rx::Payload { left, chunk };
                    }
                }
            }
        }
        Ok(used)
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.file_over {
            return;
        }
        match self
            .file
            .get_mut(self.file_len..self.file_len + bytes.len())
        {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.file_len += bytes.len();
            }
            None => {
                self.file_over = true;
                self.file_len = 0;
            }
        }
    }

    fn reply(&mut self, body: Body) {
        let json: &[u8] = match body {
            Body::Static(s) => s,
            Body::Line(len) => self.line.get(..len).unwrap_or(&[]),
        };
        self.tx = Some(Tx {
            body,
            tag: self.signer.tag(json),
            pos: 0,
            upload: None,
        });
    }

    fn refuse(&mut self, why: Refusal, json: &'static [u8]) {
        self.refusal = Some(why);
        self.reply(Body::Static(json));
    }

    /// `{"s":"write failed","err":"file over N bytes"}` for a file that outgrew the file buffer: the
    /// server aborts and logs the reason, at the first chunk that did not fit.
    fn refuse_too_big(&mut self) {
        self.refusal = Some(Refusal::TooBig);
        let mut w = Writer::new(self.line);
        w.raw(br#"{"s":"write failed","err":"file over "#)
            .int(self.file.len() as u32)
            .raw(br#" bytes"}"#);
        match w.finish() {
            Some(len) => self.reply(Body::Line(len)),
            // A line buffer too small for the reason still refuses.
            None => self.reply(Body::Static(WRITE_FAILED)),
        }
    }

    /// The payload of a `pu`/`dl`/`cm` is complete.
    fn end_chunk(&mut self, chunk: Chunk) {
        match chunk {
            Chunk::Put if self.file_over => self.refuse_too_big(),
            Chunk::Put => self.reply(Body::Static(OK)),
            Chunk::Compile => {
                self.file_len = 0;
                self.file_over = false;
                self.refuse(Refusal::NoLua, COMPILE_FAIL);
            }
            Chunk::Download(name) => {
                let (len, over) = (self.file_len, self.file_over);
                self.file_len = 0;
                self.file_over = false;
                if over {
                    return self.refuse_too_big();
                }
                let data = self.file.get(..len).unwrap_or(&[]);
                let digest: [u8; 32] = Sha256::digest(data).into();
                match self.store.put(json::text(self.line, name), data, &digest) {
                    Ok(()) => self.reply(Body::Static(OK)),
                    Err(_) => self.refuse(Refusal::WriteFailed, WRITE_FAILED),
                }
            }
        }
    }

    /// A complete line (JSON and tag) of `len` bytes is in the line buffer.
    fn on_line(&mut self, len: usize) -> Result<(), Error<S::Error>> {
        let first = core::mem::replace(&mut self.first, false);
        let line = self.line.get_mut(..len).unwrap_or_default();
        let signed = Record::parse_head(line).and_then(|record| {
            record.verify(&self.signer)?;
            Ok(record.json().len())
        });
        let json_len = match signed {
            Ok(json_len) => json_len,
            Err(RecordError::TooShort(_)) if !first => return Err(Error::TooShort),
            Err(_) if !first => return Err(Error::BadTag),
            Err(_) => {
                let ok = line.windows(9).any(|w| w == br#""r":"OK!""#);
                self.done = Some(Done::NoUpdate(if ok {
                    NoUpdate::Unsigned
                } else {
                    NoUpdate::BadTag
                }));
                return Ok(());
            }
        };
        let f = json::parse(&mut line[..json_len]).map_err(Error::Json)?;
        let text = |key| match f.get(key) {
            Some(Val::Str(s)) => Some(json::text(self.line, s)),
            _ => None,
        };
        if first && text(Key::R) == Some(b"OK!") {
            self.done = Some(Done::NoUpdate(NoUpdate::Signed));
            return Ok(());
        }
        let cmd = match text(Key::A).unwrap_or_default() {
            b"pu" => Cmd::Put,
            b"dl" => Cmd::Download,
            b"cm" => Cmd::Compile,
            b"ls" => Cmd::List,
            b"mv" => Cmd::Rename,
            b"ul" => Cmd::Upload,
            b"restart" => Cmd::Restart,
            _ => Cmd::Other,
        };
        match cmd {
            Cmd::Put => self.start_chunk(Chunk::Put, int(&f, Key::Data)?),
            Cmd::Download => {
                self.start_chunk(Chunk::Download(string(&f, Key::Name)?), int(&f, Key::Data)?)
            }
            Cmd::Compile => self.start_chunk(Chunk::Compile, int(&f, Key::Data)?),
            Cmd::List => self.list(),
            Cmd::Rename => {
                let (from, to) = (string(&f, Key::From)?, string(&f, Key::To)?);
                let (from, to) = (json::text(self.line, from), json::text(self.line, to));
                let json = if from == to {
                    // luaOTA's client removes `to`, then fails to rename `from`: the file is gone.
                    let _ = self.store.delete(to);
                    RENAME_FAILED
                } else if self.store.rename(from, to).is_ok() {
                    OK
                } else {
                    RENAME_FAILED
                };
                self.reply(Body::Static(json));
            }
            Cmd::Upload => {
                let name = string(&f, Key::Name)?;
                let (offset, len) = (int(&f, Key::Offset)?, int(&f, Key::Len)?);
                match self.store.size(json::text(self.line, name)) {
                    None => self.reply(Body::Static(READ_FAILED)),
                    Some(size) => {
                        self.reply(Body::Static(OK));
                        if let Some(tx) = &mut self.tx {
                            tx.upload = Some(Upload {
                                name,
                                offset,
                                left: len.min(size.saturating_sub(offset)),
                            });
                        }
                    }
                }
            }
            Cmd::Restart => {
                self.restart(&f)?;
                self.done = Some(Done::Restart);
            }
            Cmd::Other => self.reply(Body::Static(OK)),
        }
        Ok(())
    }

    fn start_chunk(&mut self, chunk: Chunk, len: u32) {
        if len == 0 {
            self.end_chunk(chunk);
        } else {
            self.rx = Rx::Payload { left: len, chunk };
        }
    }

    /// `ls`: `{"s":"OK","<name>":<size>,...}`, as many files as fit in the line buffer.
    fn list(&mut self) {
        let mut w = Writer::new(self.line);
        w.raw(b"{\"s\":\"OK\"");
        let mut i = 0;
        while let Some((name, size)) = self.store.list(i) {
            let before = w.len();
            w.raw(b",").string(name).raw(b":").int(size);
            // Keep room for the closing brace.
            if w.is_full() || w.len() == w.capacity() {
                w.truncate(before);
                break;
            }
            i += 1;
        }
        w.raw(b"}");
        let len = w.finish().unwrap_or(0);
        self.reply(Body::Line(len));
    }

    /// The new config of a `restart`: `chk` and `files` replace the old ones; `server`, `port` and
    /// `leave` change when present; other fields (`ssid`, `app`, ...) mean nothing to this device.
    /// Applied in place: on an error the session is aborted and its config is never used.
    fn restart(&mut self, f: &json::Fields) -> Result<(), Error<S::Error>> {
        if let Some(why) = self.refusal {
            return Err(Error::Refused(why));
        }
        let line = &*self.line;
        let config = &mut self.config;
        let chk = json::text(line, string(f, Key::Chk)?);
        let mut c = [0u8; CHK_LEN];
        if chk.len() != CHK_LEN || !chk.iter().all(u8::is_ascii_hexdigit) {
            return Err(Error::Field("chk"));
        }
        c.copy_from_slice(chk);
        config.chk = Some(c);
        match f.get(Key::Files) {
            Some(Val::Object) => {}
            Some(_) => return Err(Error::Field("files")),
            None => return Err(Error::Missing("files")),
        }
        // More files than the config keeps numbers for: the first FILES_MAX keep theirs; the others
        // are installed all the same and, having no number, are sent again at the next update (the
        // `chk` alone makes the next check-in a no-update one).
        config.files.clear();
        for &(name, number) in &f.files {
            let Val::Int(Some(number)) = number else {
                return Err(Error::Field("files"));
            };
            let name = heapless::Vec::from_slice(json::text(line, name))
                .map_err(|_| Error::NameTooLong)?;
            let entry = FileNumber { name, number };
            // Cannot fail: `files` holds at most as many entries as `config.files`.
            let _ = config.files.push(entry);
        }
        match f.get(Key::Server) {
            None => {}
            Some(Val::Str(s)) => {
                config.server = heapless::Vec::<u8, SERVER_MAX>::from_slice(json::text(line, s))
                    .map_err(|_| Error::ServerTooLong)?;
            }
            Some(_) => return Err(Error::Field("server")),
        }
        match f.get(Key::Port) {
            None => {}
            Some(Val::Int(Some(p))) if p <= u32::from(u16::MAX) => config.port = p as u16,
            Some(_) => return Err(Error::Field("port")),
        }
        match f.get(Key::Leave) {
            None => {}
            Some(Val::Int(Some(n))) => config.leave = n,
            Some(Val::Bool(b)) => config.leave = u32::from(b),
            Some(_) => return Err(Error::Field("leave")),
        }
        Ok(())
    }
}

fn field_name(key: Key) -> &'static str {
    match key {
        Key::A => "a",
        Key::R => "r",
        Key::Data => "data",
        Key::Name => "name",
        Key::From => "from",
        Key::To => "to",
        Key::Offset => "offset",
        Key::Len => "len",
        Key::Chk => "chk",
        Key::Server => "server",
        Key::Port => "port",
        Key::Leave => "leave",
        Key::Files => "files",
    }
}

fn int<E>(f: &json::Fields, key: Key) -> Result<u32, Error<E>> {
    match f.get(key) {
        Some(Val::Int(Some(n))) => Ok(n),
        Some(_) => Err(Error::Field(field_name(key))),
        None => Err(Error::Missing(field_name(key))),
    }
}

fn string<E>(f: &json::Fields, key: Key) -> Result<Span, Error<E>> {
    match f.get(key) {
        Some(Val::Str(s)) => Ok(s),
        Some(_) => Err(Error::Field(field_name(key))),
        None => Err(Error::Missing(field_name(key))),
    }
}
