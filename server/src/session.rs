//! One device session, generic over any byte stream (TCP, stdin/stdout, an in-memory pipe).
//!
//! The first byte tells the protocol ([`Protocol::detect`]): `{` is luaOTA v1, which then runs strictly
//! ping-pong: one record per write, each answered before the next; `0xB2` is rota v2 (`rota-wire`
//! frames; files stream with windowed acknowledgements). Every read and write has a deadline (the idle
//! timeout, capped by the whole-session limit, and until the first record has verified by the
//! first-record deadline), so a slow or silent peer only ever holds its own session, and not long.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};

use rota_wire::server::{self as wire_server, Event, ServerSession};
use rota_wire::{Header, HEADER_LEN, MAX_FRAME};

use crate::fleet::{Fleet, FleetError};
use crate::listen::Ticket;
use crate::luac::{self, CompileError};
use crate::plan_v2::{self as planner, PlanError};
use crate::repo::{Action, PlannedFile, Repo, RepoError};
use crate::restart::{self, RestartError};
use crate::v1::{self, CommandRepr, HiRepr, Record, ReplyRepr, Signer};

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
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::NoUpdate => "no-update",
            Outcome::Updated => "updated",
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
    /// The outcome or the error.
    pub outcome: Result<Outcome, SessionError>,
    /// Files sent completely.
    pub files: usize,
    /// Bytes written to the peer.
    pub bytes: u64,
    /// Wall time.
    pub duration: Duration,
}

/// The shared state of all sessions: the repository, its fleet state and the limits.
pub struct Server {
    repo: Repo,
    fleet: Fleet,
    limits: Limits,
    reports: Option<mpsc::UnboundedSender<SessionReport>>,
}

impl Server {
    /// A server for `repo` with `limits`; device check-ins are recorded in the repository's state
    /// ([`Fleet::for_repo`]).
    pub fn new(repo: Repo, limits: Limits) -> Self {
        Server {
            fleet: Fleet::for_repo(repo.dir()),
            repo,
            limits,
            reports: None,
        }
    }

    /// The fleet state the server records check-ins in.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The server's limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Also sends every session's report to the returned receiver (for tests and tools).
    pub fn report_channel(&mut self) -> mpsc::UnboundedReceiver<SessionReport> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.reports = Some(tx);
        rx
    }

    /// Runs one session on `io` and logs its summary line; `peer` names the other end in the log.
    /// Returns the report unless a report channel takes it.
    pub async fn serve<S>(&self, io: S, peer: &str) -> Option<SessionReport>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.serve_in(io, peer, None).await
    }

    /// [`Server::serve`] in a slot of the listener's table, which may close the session to make room
    /// until its first record has verified.
    pub(crate) async fn serve_slot<S>(
        &self,
        io: S,
        peer: &str,
        ticket: Ticket,
    ) -> Option<SessionReport>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.serve_in(io, peer, Some(ticket)).await
    }

    async fn serve_in<S>(
        &self,
        io: S,
        peer: &str,
        mut ticket: Option<Ticket>,
    ) -> Option<SessionReport>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let start = Instant::now();
        let eviction = ticket.as_mut().and_then(Ticket::take_eviction);
        let mut session = Session {
            io: LineReader::new(io),
            repo: &self.repo,
            fleet: &self.fleet,
            peer,
            limits: self.limits,
            idle: self.limits.idle,
            deadline: start + self.limits.session,
            first_deadline: Some(start + self.limits.first_record),
            ticket,
            protocol: None,
            device: None,
            check_in: None,
            files: 0,
            bytes: 0,
        };
        // Eviction only ever comes before the first record verified: nothing was sent or recorded.
        let outcome = tokio::select! {
            biased;
            () = evicted(eviction) => Err(SessionError::Evicted),
            outcome = session.run() => outcome,
        };
        if let Some((device, nonce)) = session.check_in {
            let label = match &outcome {
                Ok(o) => o.to_string(),
                Err(e) => format!("failed: {e}"),
            };
            let fleet = self.fleet.clone();
            let done =
                tokio::task::spawn_blocking(move || fleet.finish(device, nonce, &label)).await;
            if let Ok(Err(error)) = done {
                tracing::warn!(%device, %error, "cannot record the session's outcome");
            }
        }
        let report = SessionReport {
            peer: peer.to_owned(),
            protocol: session.protocol,
            device: session.device,
            outcome,
            files: session.files,
            bytes: session.bytes,
            duration: start.elapsed(),
        };
        let device = report
            .device
            .map_or_else(|| "-".to_owned(), |d| d.to_string());
        let ms = report.duration.as_millis();
        match &report.outcome {
            Ok(outcome) => tracing::info!(
                %device,
                %peer,
                %outcome,
                files = report.files,
                bytes = report.bytes,
                duration_ms = ms,
                "session"
            ),
            Err(error) => tracing::warn!(
                %device,
                %peer,
                outcome = %"failed",
                %error,
                files = report.files,
                bytes = report.bytes,
                duration_ms = ms,
                "session"
            ),
        }
        match &self.reports {
            Some(tx) => {
                // A closed receiver only means nobody listens any more.
                let _ = tx.send(report);
                None
            }
            None => Some(report),
        }
    }
}

/// Completes when the listener evicts the session; never if it cannot (no table, or past its first
/// record).
async fn evicted(signal: Option<oneshot::Receiver<()>>) {
    if let Some(signal) = signal {
        if signal.await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// Reads lines of at most [`v1::MAX_LINE`] bytes into a fixed buffer; a longer line is refused, never
/// buffered.
struct LineReader<S> {
    inner: S,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// What a bounded line read can end in.
enum LineError {
    TooLong,
    Eof,
    Io(io::Error),
}

impl<S: AsyncRead + Unpin> LineReader<S> {
    fn new(inner: S) -> Self {
        LineReader {
            inner,
            buf: vec![0; v1::MAX_LINE].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Reads more bytes after the buffered ones; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.inner.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// The next byte without consuming it; `None` at end of stream.
    async fn peek(&mut self) -> io::Result<Option<u8>> {
        if self.start == self.end && self.fill().await? == 0 {
            return Ok(None);
        }
        Ok(Some(self.buf[self.start]))
    }

    /// Makes at least `n` bytes available after `start` (`n` at most the buffer's size).
    async fn want(&mut self, n: usize) -> Result<(), LineError> {
        while self.end - self.start < n {
            match self.fill().await {
                Ok(0) => return Err(LineError::Eof),
                Ok(_) => {}
                Err(e) => return Err(LineError::Io(e)),
            }
        }
        Ok(())
    }

    /// The next v2 frame. The header is checked (magic, length bound) before the rest is read, so an
    /// oversized frame is refused without buffering it.
    async fn read_frame(&mut self) -> Result<&[u8], FrameError> {
        self.want(HEADER_LEN).await.map_err(FrameError::Read)?;
        let header = Header::parse(&self.buf[self.start..self.start + HEADER_LEN])
            .map_err(FrameError::Frame)?;
        let len = header.frame_len();
        self.want(len).await.map_err(FrameError::Read)?;
        let frame = self.start..self.start + len;
        self.start = frame.end;
        Ok(&self.buf[frame])
    }

    /// The next line, line feed included.
    async fn read_line(&mut self) -> Result<&[u8], LineError> {
        let mut scanned = 0;
        loop {
            let pending = &self.buf[self.start + scanned..self.end];
            if let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line = self.start..self.start + scanned + i + 1;
                self.start = line.end;
                return Ok(&self.buf[line]);
            }
            scanned = self.end - self.start;
            if scanned == self.buf.len() {
                return Err(LineError::TooLong);
            }
            match self.fill().await {
                Ok(0) => return Err(LineError::Eof),
                Ok(_) => {}
                Err(e) => return Err(LineError::Io(e)),
            }
        }
    }
}

/// What a v2 frame read can end in.
enum FrameError {
    Read(LineError),
    Frame(rota_wire::Error),
}

// The v2 frame buffer is the line buffer.
const _: () = assert!(MAX_FRAME <= v1::MAX_LINE);

struct Session<'r, S> {
    io: LineReader<S>,
    repo: &'r Repo,
    fleet: &'r Fleet,
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
    /// The device and nonce of a recorded check-in, whose outcome is recorded at the end.
    check_in: Option<(u64, Option<u32>)>,
    files: usize,
    bytes: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
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

    /// Records a verified v2 check-in (refusing a replayed nonce) before anything is sent.
    async fn record_check_in(&mut self, record: crate::fleet::CheckIn) -> Result<(), SessionError> {
        let fleet = self.fleet.clone();
        let (device, nonce) = (record.device, record.nonce);
        tokio::task::spawn_blocking(move || fleet.check_in(&record))
            .await
            .map_err(|e| SessionError::Io(io::Error::other(e)))??;
        self.check_in = Some((device, nonce));
        Ok(())
    }

    async fn run_v2(&mut self) -> Result<Outcome, SessionError> {
        let hello_frame = self.read_frame(Phase::Hi).await?.to_vec();
        let claimed = wire_server::peek_hello(&hello_frame).map_err(SessionError::V2)?;
        let id = u64::from(claimed.device_id);
        self.device = Some(id);
        let inventory = self.repo.inventory(id)?;
        let hello = match wire_server::open_hello(&hello_frame, &inventory.secret) {
            Ok(hello) => hello,
            Err(rota_wire::Error::BadTag) => {
                return Err(SessionError::BadHiTag(inventory.file.clone()))
            }
            Err(e) => return Err(SessionError::V2(e)),
        };
        self.first_record_verified()?;
        let plan = self.repo.plan(&inventory)?;
        let todo = planner::decide(&plan, &inventory, hello.device_id, &hello)?;
        let label = if todo.is_empty() {
            Outcome::NoUpdate.to_string()
        } else {
            "updating".to_owned()
        };
        self.record_check_in(planner::check_in_record(&hello, self.peer, &label))
            .await?;
        let secret = &inventory.secret;
        let mut out = vec![0u8; MAX_FRAME];

        if todo.is_empty() {
            let n = wire_server::no_update(secret, &hello, &mut out).map_err(SessionError::V2)?;
            self.send(&out[..n]).await?;
            self.wait_close().await;
            return Ok(Outcome::NoUpdate);
        }

        let mut server_nonce = [0u8; rota_wire::SERVER_NONCE_LEN];
        getrandom::fill(&mut server_nonce)
            .map_err(|e| SessionError::Io(io::Error::other(e.to_string())))?;
        let steps = todo.steps();
        let (mut session, n) =
            ServerSession::welcome(secret, &hello, server_nonce, &steps, &mut out)
                .map_err(SessionError::V2)?;
        let mut batch = out[..n].to_vec();
        loop {
            while let Some(n) = session.poll_transmit(&mut out).map_err(SessionError::V2)? {
                batch.extend_from_slice(&out[..n]);
            }
            if !batch.is_empty() {
                self.send(&batch).await?;
                batch.clear();
            }
            if session.is_done() {
                break;
            }
            let frame = self.read_frame(Phase::Reply).await?;
            match session.handle(frame).map_err(SessionError::V2)? {
                Event::Staged { .. } => self.files += 1,
                Event::Ready { step, offset } if offset > 0 => {
                    tracing::debug!(device = id, step, offset, "resuming a staged file");
                }
                _ => {}
            }
        }
        self.wait_close().await;
        Ok(Outcome::Updated)
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

    async fn run_v1(&mut self) -> Result<Outcome, SessionError> {
        let line = self.read_line(Phase::Hi).await?;
        let record = Record::parse_line(&line)?;
        let hi = HiRepr::parse(record.object()?)?;
        self.device = Some(hi.id);
        // Repository reads run inline: they are small page-cache reads (microseconds), and handing them
        // to a blocking thread cost a third of the no-update throughput in the benchmark.
        let inventory = self.repo.inventory(hi.id)?;
        let signer = Signer::new(&inventory.secret);
        if !record.verify(&signer) {
            return Err(SessionError::BadHiTag(inventory.file.clone()));
        }
        self.first_record_verified()?;
        let plan = self.repo.plan(&inventory)?;
        // A name the device cannot open would reboot it at every boot: refused before anything.
        restart::check_names(&plan)?;
        let secret = &inventory.secret;

        if hi.chk.as_deref() == Some(plan.chk.as_str()) {
            let ok = v1::emit_record(&signer, &CommandRepr::NoUpdate.to_json(), &[])?;
            self.send(&ok).await?;
            self.wait_close().await;
            return Ok(Outcome::NoUpdate);
        }

        // Everything that could refuse the update is checked before the first byte is sent.
        let restart = restart::build(&hi, &plan, secret)?;
        let restart = v1::emit_record(&signer, &restart, &[])?;
        // The one rule of both protocols; a v1 device holds a file when it echoes the file's number.
        let stale: Vec<&PlannedFile> = plan
            .to_send(|f| hi.file_number(&f.name) == Some(u64::from(f.number)))
            .map(Arc::as_ref)
            .collect();
        check_lua(&stale)?;
        for file in stale {
            self.send_file(file, &signer).await?;
        }
        self.send(&restart).await?;
        self.wait_close().await;
        Ok(Outcome::Updated)
    }

    async fn send_file(&mut self, file: &PlannedFile, signer: &Signer) -> Result<(), SessionError> {
        let mut chunks = file.data.chunks(v1::MAX_CHUNK).peekable();
        let mut chunk: &[u8] = chunks.next().unwrap_or_default();
        loop {
            let last = chunks.peek().is_none();
            let len = chunk.len() as u64;
            let name = file.name.clone();
            let command = match (last, file.action) {
                (false, _) => CommandRepr::Put { len },
                (true, Action::Download) => CommandRepr::Download { name, len },
                (true, Action::Compile) => CommandRepr::Compile { name, len },
            };
            let record = v1::emit_record(signer, &command.to_json(), chunk)?;
            self.send(&record).await?;
            self.expect_ok(&file.name, signer).await?;
            match chunks.next() {
                Some(next) => chunk = next,
                None => break,
            }
        }
        self.files += 1;
        Ok(())
    }

    async fn expect_ok(&mut self, file: &str, signer: &Signer) -> Result<(), SessionError> {
        let line = self.read_line(Phase::Reply).await?;
        let record = Record::parse_line(&line)?;
        if !record.verify(signer) {
            return Err(SessionError::BadReplyTag);
        }
        let reply = ReplyRepr::parse(&record.object()?)?;
        if !reply.is_ok() {
            return Err(SessionError::Refused {
                file: file.to_owned(),
                status: reply.status,
                err: reply.err,
            });
        }
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

/// Checks that every stale `.lua` file compiles before anything is sent.
fn check_lua(stale: &[&PlannedFile]) -> Result<(), SessionError> {
    for f in stale {
        if f.action == Action::Compile {
            luac::check(&f.name, &f.data).map_err(|error| SessionError::Lua {
                file: f.name.clone(),
                error,
            })?;
        }
    }
    Ok(())
}
