//! One device session, generic over any byte stream (TCP, stdin/stdout, an in-memory pipe).
//!
//! The first byte tells the protocol ([`Protocol::detect`]): `{` is luaOTA v1, which then runs strictly
//! ping-pong: one record per write, each answered before the next; `0xB2` is rota v2 (`rota-wire`
//! frames; files stream with windowed acknowledgements). Every read and write has a deadline (the idle
//! timeout, capped by the whole-session limit, and until the first record has verified by the
//! first-record deadline), so a slow or silent peer only ever holds its own session, and not long.
//!
//! Here: the limits, the protocol dispatch, the error and report types, and the per-connection
//! `Session`'s deadlines and I/O; in submodules: [`Server`] (the state all sessions share, and the
//! one log line per session), the bounded reader of lines and frames, and the two protocol drivers
//! (`serve_v1`: luaOTA ping-pong; `serve_v2`: rota-wire's server session).

use std::fmt;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use crate::fleet::{Fleet, FleetError};
use crate::listen::Ticket;
use crate::luac::CompileError;
use crate::plan_v2::PlanError;
use crate::repo::{Repo, RepoError};
use crate::restart::RestartError;
use crate::v1;

mod reader;
mod serve_v1;
mod serve_v2;
mod server;

use reader::{FrameError, LineError, LineReader};
pub use server::Server;

/// The limits of the server: the timing of each session, and how many sessions one peer address
/// may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait, from a connection's start, for its first record (the v1 HI line or the v2 Hello)
    /// to arrive whole: a connection that sends nothing holds its slot no longer
    /// ([`Limits::FIRST_RECORD`]).
    pub first_record: Duration,
    /// Most sessions the listener holds at once from one peer address (an IPv4 address, or an IPv6
    /// /64); `None`: a quarter of its table (see [`crate::listen::run`]).
    pub sessions_per_peer: Option<usize>,
    /// Longest wait for any one read (a whole line) or write.
    pub idle: Duration,
    /// Longest whole session.
    pub session: Duration,
    /// Longest wait for the device to close after the last record.
    pub close_grace: Duration,
    /// Longest wait for any one read or write of a protocol v2 session (its devices answer at once:
    /// a silent one is dropped quickly).
    pub v2_idle: Duration,
}

impl Limits {
    /// The default first-record deadline: devices send their first record right after connecting,
    /// and a NodeMCU device gives up 3 s after `connect()`.
    pub const FIRST_RECORD: Duration = Duration::from_secs(2);
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            first_record: Limits::FIRST_RECORD,
            sessions_per_peer: None,
            idle: Duration::from_secs(15),
            session: Duration::from_secs(45),
            close_grace: Duration::from_secs(2),
            v2_idle: Duration::from_secs(5),
        }
    }
}

/// The protocol a connection speaks, told by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// luaOTA v1: JSON lines, so the first byte is always `{`.
    V1,
    /// rota v2: binary frames starting with [`rota_wire::MAGIC`] (`0xB2`).
    V2,
}

impl Protocol {
    /// The protocol whose records start with `first`, if any.
    pub fn detect(first: u8) -> Option<Protocol> {
        match first {
            b'{' => Some(Protocol::V1),
            rota_wire::MAGIC => Some(Protocol::V2),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        })
    }
}

/// What a session stopped at: its phase, for timeouts and early closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the first byte or the HI line.
    Hi,
    /// Sending a record.
    Send,
    /// Waiting for the device's reply.
    Reply,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Hi => "waiting for HI",
            Phase::Send => "sending",
            Phase::Reply => "waiting for the device's reply",
        })
    }
}

/// Why a session failed. Every failure ends only that session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The release cannot be sent to this device (a blob it cannot run, a release it would refuse);
    /// nothing was sent.
    #[error("release refused: {0}; nothing sent")]
    Release(String),
    /// The peer closed without sending anything (e.g. a port scan).
    #[error("peer closed before sending anything")]
    Empty,
    /// The first byte is no known protocol's.
    #[error("unknown protocol: first byte 0x{0:02x} (luaOTA v1 records start with '{{', rota v2 frames with 0xb2)")]
    UnknownProtocol(u8),
    /// A deadline passed.
    #[error("timed out {0}")]
    Timeout(Phase),
    /// The listener's table was full and this connection, the oldest without a first record, was
    /// closed to make room for a new one.
    #[error("closed to make room: the session table was full and this connection had sent no first record yet")]
    Evicted,
    /// The peer closed mid-session.
    #[error("peer closed the connection while {0}")]
    Closed(Phase),
    /// A device line exceeded [`v1::MAX_LINE`]; it was refused without being buffered.
    #[error("line longer than {} bytes refused", v1::MAX_LINE)]
    LineTooLong,
    /// Transport error.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// A malformed record.
    #[error("bad record: {0}")]
    Record(#[from] v1::Error),
    /// The HI's tag does not verify with the device's own secret; nothing was sent.
    #[error("HI tag does not verify with the secret of {0}; no files sent")]
    BadHiTag(String),
    /// A reply's tag does not verify.
    #[error("reply tag does not verify")]
    BadReplyTag,
    /// The repository cannot serve this device.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A `.lua` file does not compile; it was never sent.
    #[error("`{file}` does not compile as Lua 5.1, nothing sent: {error}")]
    Lua {
        /// The file.
        file: String,
        /// The compiler's message.
        error: CompileError,
    },
    /// The update could brick the device (a `restart` that would not fit, a file name it cannot open);
    /// nothing was sent.
    #[error(transparent)]
    Restart(#[from] RestartError),
    /// A protocol v2 frame or session error (bad tag, sequence, message, or the device's `Failed`).
    #[error("v2: {0}")]
    V2(rota_wire::Error),
    /// The inventory cannot serve a v2 device (name too long, bad `config`); nothing was sent.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The check-in could not be recorded, or replays an earlier Hello; nothing was sent.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// The device answered a command with another status than `OK`.
    #[error("device refused `{file}`: {status}{}", err.as_deref().map(|e| format!(" ({e})")).unwrap_or_default())]
    Refused {
        /// The file being sent.
        file: String,
        /// The device's `s`.
        status: String,
        /// The device's `err`, if any.
        err: Option<String>,
    },
}

/// How a successful session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The device is up to date: `OK!` sent.
    NoUpdate,
    /// Files and a `restart` were sent.
    Updated,
    /// Not updated: the release is one this device rolled back (v2).
    Held,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::NoUpdate => "no-update",
            Outcome::Updated => "updated",
            Outcome::Held => "held: the release was rolled back on this device",
        })
    }
}

/// The summary of one session (also logged as one line).
#[derive(Debug)]
pub struct SessionReport {
    /// Who connected.
    pub peer: String,
    /// The protocol, once told by the first byte.
    pub protocol: Option<Protocol>,
    /// The chip id from the HI, once known.
    pub device: Option<u64>,
    /// The name of the release the device was served (`Release::name`: `v2`, `3f2a9c1`,
    /// `3f2a9c1+dirty`, `dir`), once known.
    pub release: Option<String>,
    /// The outcome or the error.
    pub outcome: Result<Outcome, SessionError>,
    /// Files sent completely.
    pub files: usize,
    /// Bytes written to the peer.
    pub bytes: u64,
    /// Wall time.
    pub duration: Duration,
}

/// One connection, from its first byte to its end: the deadlines in force, the I/O, and what the
/// report will say. Each protocol's driver (`serve_v1`, `serve_v2`) adds its own methods.
struct Session<'r, S> {
    io: LineReader<S>,
    repo: &'r Repo,
    fleet: &'r Fleet,
    book: &'r crate::rollout::Book,
    peer: &'r str,
    limits: Limits,
    /// The idle timeout in force (v1's, or v2's once told).
    idle: Duration,
    deadline: Instant,
    /// The first-record deadline, until the first record verified.
    first_deadline: Option<Instant>,
    /// The listener's slot, if the session holds one.
    ticket: Option<Ticket>,
    protocol: Option<Protocol>,
    device: Option<u64>,
    /// The release served, once known.
    release: Option<String>,
    /// The device, nonce and outcome of a recorded check-in; the session's own outcome is recorded
    /// at the end unless it is that one.
    check_in: Option<(u64, Option<u32>, String)>,
    /// A verified luaOTA (v1) check-in, recorded with its outcome once the session ended (v1 has
    /// no nonce to refuse a replay by, so nothing needs recording before the answer).
    v1_record: Option<crate::fleet::CheckIn>,
    files: usize,
    bytes: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    /// The commit a rollout gives device `id`, if one does: from the rollouts in memory, reading the
    /// device's last check-in (off the async workers) only when a halted rollout needs it.
    async fn rollout_commit(&self, id: u64) -> Option<String> {
        let record = if self.book.needs_record(id) {
            let fleet = self.fleet.clone();
            match tokio::task::spawn_blocking(move || fleet.load(id)).await {
                Ok(Ok(record)) => record,
                _ => None,
            }
        } else {
            None
        };
        self.book.commit_for(id, record.as_ref())
    }

    /// The deadline of the next operation: the idle timeout, capped by the session's and, until the
    /// first record verified, by the first-record deadline.
    fn next_deadline(&self) -> Instant {
        let next = (Instant::now() + self.idle).min(self.deadline);
        self.first_deadline.map_or(next, |first| next.min(first))
    }

    /// The first record verified: the first-record deadline no longer applies, and the session keeps
    /// its slot to the end (unless the listener evicted it just before).
    fn first_record_verified(&mut self) -> Result<(), SessionError> {
        self.first_deadline = None;
        match self.ticket.as_mut().map(Ticket::activate) {
            Some(false) => Err(SessionError::Evicted),
            _ => Ok(()),
        }
    }

    async fn run(&mut self) -> Result<Outcome, SessionError> {
        let first = timeout_at(self.next_deadline(), self.io.peek())
            .await
            .map_err(|_| SessionError::Timeout(Phase::Hi))??;
        self.protocol = first.and_then(Protocol::detect);
        match first.map(Protocol::detect) {
            None => Err(SessionError::Empty),
            Some(None) => Err(SessionError::UnknownProtocol(first.unwrap_or_default())),
            Some(Some(Protocol::V1)) => self.run_v1().await,
            Some(Some(Protocol::V2)) => {
                self.idle = self.limits.v2_idle;
                self.run_v2().await
            }
        }
    }

    async fn read_frame(&mut self, phase: Phase) -> Result<&[u8], SessionError> {
        let deadline = self.next_deadline();
        match timeout_at(deadline, self.io.read_frame()).await {
            Err(_) => Err(SessionError::Timeout(phase)),
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(FrameError::Frame(e))) => Err(SessionError::V2(e)),
            Ok(Err(FrameError::Read(LineError::Eof))) => Err(SessionError::Closed(phase)),
            Ok(Err(FrameError::Read(LineError::Io(e)))) => Err(e.into()),
            Ok(Err(FrameError::Read(LineError::TooLong))) => Err(SessionError::LineTooLong),
        }
    }

    async fn read_line(&mut self, phase: Phase) -> Result<Vec<u8>, SessionError> {
        let deadline = self.next_deadline();
        match timeout_at(deadline, self.io.read_line()).await {
            Err(_) => Err(SessionError::Timeout(phase)),
            Ok(Ok(line)) => Ok(line.to_vec()),
            Ok(Err(LineError::TooLong)) => Err(SessionError::LineTooLong),
            Ok(Err(LineError::Eof)) => Err(SessionError::Closed(phase)),
            Ok(Err(LineError::Io(e))) => Err(e.into()),
        }
    }

    /// Writes one whole record with one write.
    async fn send(&mut self, record: &[u8]) -> Result<(), SessionError> {
        let deadline = self.next_deadline();
        let io = &mut self.io.inner;
        timeout_at(deadline, async {
            io.write_all(record).await?;
            io.flush().await
        })
        .await
        .map_err(|_| SessionError::Timeout(Phase::Send))??;
        self.bytes += record.len() as u64;
        Ok(())
    }

    /// Lets the device close first (closing on unread input would reset the connection and could drop
    /// the last record); gives up after the close grace.
    async fn wait_close(&mut self) {
        let deadline = (Instant::now() + self.limits.close_grace).min(self.deadline);
        let mut scratch = [0u8; 256];
        let _ = timeout_at(deadline, async {
            while matches!(self.io.inner.read(&mut scratch).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}
