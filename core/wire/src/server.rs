//! The server's half of a v2 session, sans-IO.
//!
//! 1. [`peek_hello`] reads the device id from the first frame (not yet trusted) so the server can find
//!    that device's secret; [`open_hello`] then verifies the frame with it.
//! 2. The server decides. Nothing to do: [`no_update`] writes the one-frame answer and the session is
//!    over. Otherwise it lists [`Step`]s (ending with one [`Step::Commit`]) and starts a
//!    [`ServerSession`] with [`ServerSession::welcome`].
//! 3. It then alternates: send every frame [`ServerSession::poll_transmit`] gives (files stream up to
//!    [`IN_FLIGHT`] unacknowledged bytes; drops, deletes and renames are pipelined, they have no
//!    reply), and feed each received frame to [`ServerSession::handle`], until
//!    [`ServerSession::is_done`].

use crate::frame::{Channel, Dir, Frame, Key};
use crate::msg::{
    kind, Begin, Bytes, Commit, Data, DeviceMsg, FileData, Hello, Name, Rename, ServerMsg, Upload,
    Welcome,
};
use crate::{
    Digest, Error, HEADER_LEN, IN_FLIGHT, MAX_CHUNK, MAX_FRAME, MAX_PAYLOAD, SERVER_NONCE_LEN,
};

/// A file to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// Its name on the device (1 to [`crate::MAX_NAME`] bytes).
    pub name: &'a [u8],
    /// Its version.
    pub version: u32,
    /// SHA-256 of `data`.
    pub digest: Digest,
    /// Its content.
    pub data: &'a [u8],
}

/// One thing the server has the device do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// Stage a file (resuming where the device's staged copy ends).
    Send(Outgoing<'a>),
    /// Discard a staged leftover.
    Drop(&'a [u8]),
    /// Delete a committed file (on commit).
    Delete(&'a [u8]),
    /// Rename a committed file (on commit): from, to.
    Rename(&'a [u8], &'a [u8]),
    /// Fetch `len` bytes of a file from `offset` ([`Event::Uploaded`] hands them over).
    Upload {
        /// The file.
        name: &'a [u8],
        /// First byte.
        offset: u32,
        /// Bytes wanted.
        len: u32,
    },
    /// Send the signed release (manifest and Ed25519 signature): first, before any file.
    Release(&'a [u8], &'a [u8; 64]),
    /// Commit, with a new config record (postcard [`crate::DeviceConfig`]) or none. Last, exactly once.
    Commit(Option<&'a [u8]>),
}

/// What a received frame meant.
// No allocation to box the file list with (this crate is `no_std` without `alloc`); an event is
// handled at once, one at a time, so its size is paid once per session.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'f> {
    /// The device starts step `step`'s file at `offset` (above 0: resumed).
    Ready {
        /// The step index.
        step: usize,
        /// The resume offset.
        offset: u32,
    },
    /// The device has written step `step`'s file up to `offset`.
    Acked {
        /// The step index.
        step: usize,
        /// Bytes written.
        offset: u32,
    },
    /// Step `step`'s file is complete and its digest checked.
    Staged {
        /// The step index.
        step: usize,
    },
    /// Bytes of step `step`'s upload.
    Uploaded {
        /// The step index.
        step: usize,
        /// Their offset in the file.
        offset: u32,
        /// The bytes.
        bytes: &'f [u8],
        /// Whether the upload is complete.
        last: bool,
    },
    /// The device's committed files (answer to the `List` of [`ServerSession::welcome`]): plan with
    /// them, then [`ServerSession::plan`] or [`ServerSession::no_update`].
    Files(crate::msg::Files<'f>),
    /// The device committed and reboots; the session is over.
    Committed {
        /// The store's generation.
        generation: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Welcome and List sent: waiting for the device's files.
    AwaitFiles,
    /// The files came: waiting for the plan.
    Planning,
    /// The current step has not been sent.
    Start,
    AwaitReady,
    Streaming,
    AwaitStaged,
    AwaitUpload {
        next: u32,
        end: u32,
    },
    AwaitCommitted,
    Done,
}

/// Checks the first frame's structure (kind Hello, seq 0) and decodes it, WITHOUT verifying its tag:
/// only to learn which device claims to speak, to look up its secret. Use [`open_hello`] next.
pub fn peek_hello(frame: &[u8]) -> Result<Hello<'_>, Error> {
    let frame = Frame::new_checked(frame)?;
    if frame.kind() != kind::HELLO {
        return Err(Error::Unexpected(frame.kind()));
    }
    if frame.seq() != 0 {
        return Err(Error::BadSeq {
            expected: 0,
            got: u32::from(frame.seq()),
        });
    }
    match DeviceMsg::decode(kind::HELLO, frame.into_payload())? {
        DeviceMsg::Hello(hello) => Ok(hello),
        _ => Err(Error::Malformed),
    }
}

/// Verifies the first frame with the device's `secret` (key [`Key::hello`] of its id and nonce) and
/// returns the Hello. The caller must still refuse a nonce it has seen (replay): see
/// `docs/protocol.md`.
pub fn open_hello<'f>(frame: &'f [u8], secret: &[u8]) -> Result<Hello<'f>, Error> {
    let hello = peek_hello(frame)?;
    let key = Key::hello(secret, hello.device_id, hello.nonce);
    Frame::new_checked(frame)?.verify(&key, Dir::ToServer, 0)?;
    Ok(hello)
}

/// Writes the NoUpdate answer to a verified `hello` into `out` (21 bytes: header, no payload, tag
/// with the Hello's key in the server's direction); returns its length. The session is over.
pub fn no_update(secret: &[u8], hello: &Hello<'_>, out: &mut [u8]) -> Result<usize, Error> {
    let key = Key::hello(secret, hello.device_id, hello.nonce);
    crate::frame::seal(out, &key, Dir::ToDevice, kind::NO_UPDATE, 0, 0)
}

fn name(bytes: &[u8]) -> Result<Name<'_>, Error> {
    Name::new(bytes).ok_or(Error::BadPlan)
}

/// The server's half of one v2 session after the Hello (see the module documentation).
#[derive(Debug)]
pub struct ServerSession<'a> {
    chan: Channel,
    steps: &'a [Step<'a>],
    step: usize,
    phase: Phase,
    sent: u32,
    acked: u32,
}

impl<'a> ServerSession<'a> {
    /// Starts the session for a verified `hello` whose installed set differs from what the server
    /// would install: writes the Welcome carrying `server_nonce` (which must be fresh and random) and
    /// a `List` into `out` (two frames, one write), and returns the session and their length. The
    /// device's answer is [`Event::Files`].
    pub fn welcome(
        secret: &[u8],
        hello: &Hello<'_>,
        server_nonce: [u8; SERVER_NONCE_LEN],
        out: &mut [u8],
    ) -> Result<(Self, usize), Error> {
        let mut session = ServerSession {
            chan: Channel {
                key: Some(Key::session(
                    secret,
                    hello.device_id,
                    hello.nonce,
                    &server_nonce,
                )),
                out_dir: Dir::ToDevice,
                tx: 0,
                rx: 1,
            },
            steps: &[],
            step: 0,
            phase: Phase::AwaitFiles,
            sent: 0,
            acked: 0,
        };
        let n = session.emit(&ServerMsg::Welcome(Welcome { server_nonce }), out)?;
        let m = session.emit(&ServerMsg::List, &mut out[n..])?;
        Ok((session, n + m))
    }

    /// Gives the session its plan, once the device's files came: checks `steps` (a release only
    /// first, valid names, file sizes within `u32`, one `Commit`, last).
    pub fn plan(&mut self, steps: &'a [Step<'a>]) -> Result<(), Error> {
        if self.phase != Phase::Planning {
            return Err(Error::BadPlan);
        }
        let (last, rest) = steps.split_last().ok_or(Error::BadPlan)?;
        if !matches!(last, Step::Commit(_)) {
            return Err(Error::BadPlan);
        }
        for (i, step) in rest.iter().enumerate() {
            match *step {
                Step::Send(f) => {
                    name(f.name)?;
                    u32::try_from(f.data.len()).map_err(|_| Error::BadPlan)?;
                }
                Step::Drop(n) | Step::Delete(n) | Step::Upload { name: n, .. } => {
                    name(n)?;
                }
                Step::Rename(from, to) => {
                    name(from)?;
                    name(to)?;
                }
                Step::Release(manifest, _) => {
                    if i != 0 || manifest.len() > MAX_CHUNK {
                        return Err(Error::BadPlan);
                    }
                }
                Step::Commit(_) => return Err(Error::BadPlan),
            }
        }
        self.steps = steps;
        self.phase = Phase::Start;
        Ok(())
    }

    /// Ends a session in which, the device's files seen, there is nothing to do: writes NoUpdate
    /// (session key) into `out` and returns its length. The session is over.
    pub fn no_update(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        if self.phase != Phase::Planning {
            return Err(Error::BadPlan);
        }
        self.phase = Phase::Done;
        self.emit(&ServerMsg::NoUpdate, out)
    }

    /// Whether the device has committed.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The index of the step in progress.
    pub fn step(&self) -> usize {
        self.step
    }

    fn emit(&mut self, msg: &ServerMsg<'_>, out: &mut [u8]) -> Result<usize, Error> {
        if out.len() < MAX_FRAME {
            return Err(Error::BufferTooSmall);
        }
        let len = msg.encode(&mut out[HEADER_LEN..HEADER_LEN + MAX_PAYLOAD])?;
        self.chan.seal(out, msg.kind(), len)
    }

    fn file(&self) -> Result<&'a Outgoing<'a>, Error> {
        match self.steps.get(self.step) {
            Some(Step::Send(f)) => Ok(f),
            _ => Err(Error::BadPlan),
        }
    }

    /// The next frame to send now, written into `out` (at least [`MAX_FRAME`] bytes), or `None` while
    /// waiting for the device (a reply, or acknowledgements to open the window).
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<Option<usize>, Error> {
        let msg = match self.phase {
            Phase::Start => {
                let Some(&step) = self.steps.get(self.step) else {
                    return Ok(None);
                };
                match step {
                    Step::Send(f) => {
                        self.phase = Phase::AwaitReady;
                        ServerMsg::Begin(Begin {
                            name: name(f.name)?,
                            size: f.data.len() as u32,
                            digest: f.digest,
                            version: f.version,
                        })
                    }
                    Step::Drop(n) => {
                        self.step += 1;
                        ServerMsg::Drop(name(n)?)
                    }
                    Step::Delete(n) => {
                        self.step += 1;
                        ServerMsg::Delete(name(n)?)
                    }
                    Step::Rename(from, to) => {
                        self.step += 1;
                        ServerMsg::Rename(Rename {
                            from: name(from)?,
                            to: name(to)?,
                        })
                    }
                    Step::Upload {
                        name: n,
                        offset,
                        len,
                    } => {
                        let end = offset.checked_add(len).ok_or(Error::BadPlan)?;
                        self.phase = Phase::AwaitUpload { next: offset, end };
                        ServerMsg::Upload(Upload {
                            name: name(n)?,
                            offset,
                            len,
                        })
                    }
                    Step::Release(manifest, signature) => {
                        self.step += 1;
                        ServerMsg::Release(crate::msg::Release {
                            manifest: Bytes(manifest),
                            signature: *signature,
                        })
                    }
                    Step::Commit(config) => {
                        self.phase = Phase::AwaitCommitted;
                        ServerMsg::Commit(Commit {
                            config: config.map(Bytes),
                        })
                    }
                }
            }
            Phase::Streaming => {
                let f = self.file()?;
                let size = f.data.len() as u32;
                if self.sent == size {
                    self.phase = Phase::AwaitStaged;
                    ServerMsg::Finish(name(f.name)?)
                } else {
                    let limit = self.acked.saturating_add(IN_FLIGHT).min(size);
                    if self.sent >= limit {
                        return Ok(None);
                    }
                    let n = (limit - self.sent).min(MAX_CHUNK as u32);
                    let start = self.sent as usize;
                    let bytes = &f.data[start..start + n as usize];
                    let offset = self.sent;
                    self.sent += n;
                    ServerMsg::Data(Data {
                        offset,
                        bytes: Bytes(bytes),
                    })
                }
            }
            _ => return Ok(None),
        };
        self.emit(&msg, out).map(Some)
    }

    /// Takes one frame from the device: checks its tag, sequence number and place in the session.
    /// A `Failed` from the device is returned as [`Error::Refused`].
    pub fn handle<'f>(&mut self, bytes: &'f [u8]) -> Result<Event<'f>, Error> {
        if self.phase == Phase::Done {
            return Err(Error::Done);
        }
        let frame = self.chan.open(bytes)?;
        let msg = DeviceMsg::decode(frame.kind(), frame.into_payload())?;
        let step = self.step;
        match (self.phase, msg) {
            (_, DeviceMsg::Failed(f)) => Err(Error::Refused {
                reason: f.reason,
                detail: f.detail,
            }),
            (Phase::AwaitFiles, DeviceMsg::Files(files)) => {
                self.phase = Phase::Planning;
                Ok(Event::Files(files))
            }
            (Phase::AwaitReady, DeviceMsg::Ready(r)) => {
                if r.offset as usize > self.file()?.data.len() {
                    return Err(Error::Offset);
                }
                self.sent = r.offset;
                self.acked = r.offset;
                self.phase = Phase::Streaming;
                Ok(Event::Ready {
                    step,
                    offset: r.offset,
                })
            }
            (Phase::Streaming | Phase::AwaitStaged, DeviceMsg::Ack(a)) => {
                if a.offset <= self.acked || a.offset > self.sent {
                    return Err(Error::Offset);
                }
                self.acked = a.offset;
                Ok(Event::Acked {
                    step,
                    offset: a.offset,
                })
            }
            (Phase::AwaitStaged, DeviceMsg::Staged) => {
                if self.acked as usize != self.file()?.data.len() {
                    return Err(Error::Offset);
                }
                self.step += 1;
                self.phase = Phase::Start;
                Ok(Event::Staged { step })
            }
            (Phase::AwaitUpload { next, end }, DeviceMsg::FileData(FileData { offset, bytes })) => {
                let n = bytes.0.len() as u32;
                let want = (end - next).min(MAX_CHUNK as u32);
                if offset != next || n > want {
                    return Err(Error::Offset);
                }
                let last = n < want || next + n == end;
                self.phase = if last {
                    self.step += 1;
                    Phase::Start
                } else {
                    Phase::AwaitUpload {
                        next: next + n,
                        end,
                    }
                };
                Ok(Event::Uploaded {
                    step,
                    offset,
                    bytes: bytes.0,
                    last,
                })
            }
            (Phase::AwaitCommitted, DeviceMsg::Committed(c)) => {
                self.phase = Phase::Done;
                Ok(Event::Committed {
                    generation: c.generation,
                })
            }
            (_, msg) => Err(Error::Unexpected(msg.kind())),
        }
    }
}
