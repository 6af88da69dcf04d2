//! One device session, generic over any byte stream (TCP, stdin/stdout, an in-memory pipe).
//!
//! The first byte tells the protocol ([`Protocol::detect`]); v1 then runs strictly ping-pong: one record
//! per write, each answered before the next. Every read and write has a deadline (the idle timeout, capped
//! by the whole-session limit), so a slow or silent peer only ever holds its own session.

use std::fmt;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

use crate::luac::{self, CompileError};
use crate::repo::{Action, Plan, Repo, RepoError};
use crate::restart::{self, RestartError};
use crate::v1::{self, CommandRepr, HiRepr, Record, ReplyRepr};

/// Timing limits of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for any one read (a whole line) or write.
    pub idle: Duration,
    /// Longest whole session.
    pub session: Duration,
    /// Longest wait for the device to close after the last record.
    pub close_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle: Duration::from_secs(15),
            session: Duration::from_secs(45),
            close_grace: Duration::from_secs(2),
        }
    }
}

/// The protocol a connection speaks, told by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// luaOTA v1: JSON lines, so the first byte is always `{`.
    V1,
}

impl Protocol {
    /// The protocol whose records start with `first`, if any.
    pub fn detect(first: u8) -> Option<Protocol> {
        (first == b'{').then_some(Protocol::V1)
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
    #[error("unknown protocol: first byte 0x{0:02x} (luaOTA v1 records start with '{{')")]
    UnknownProtocol(u8),
    /// A deadline passed.
    #[error("timed out {0}")]
    Timeout(Phase),
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
    /// The restart record would not fit; nothing was sent.
    #[error(transparent)]
    Restart(#[from] RestartError),
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

/// The shared state of all sessions: the repository and the limits.
pub struct Server {
    repo: Repo,
    limits: Limits,
    reports: Option<mpsc::UnboundedSender<SessionReport>>,
}

impl Server {
    /// A server for `repo` with `limits`.
    pub fn new(repo: Repo, limits: Limits) -> Self {
        Server {
            repo,
            limits,
            reports: None,
        }
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
        let start = Instant::now();
        let mut session = Session {
            io: LineReader::new(io),
            repo: &self.repo,
            limits: self.limits,
            deadline: start + self.limits.session,
            device: None,
            files: 0,
            bytes: 0,
        };
        let outcome = session.run().await;
        let report = SessionReport {
            peer: peer.to_owned(),
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

struct Session<'r, S> {
    io: LineReader<S>,
    repo: &'r Repo,
    limits: Limits,
    deadline: Instant,
    device: Option<u64>,
    files: usize,
    bytes: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    /// The deadline of the next operation: the idle timeout, capped by the session's.
    fn next_deadline(&self) -> Instant {
        (Instant::now() + self.limits.idle).min(self.deadline)
    }

    async fn run(&mut self) -> Result<Outcome, SessionError> {
        let first = timeout_at(self.next_deadline(), self.io.peek())
            .await
            .map_err(|_| SessionError::Timeout(Phase::Hi))??;
        match first.map(Protocol::detect) {
            None => Err(SessionError::Empty),
            Some(None) => Err(SessionError::UnknownProtocol(first.unwrap_or_default())),
            Some(Some(Protocol::V1)) => self.run_v1().await,
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

    async fn run_v1(&mut self) -> Result<Outcome, SessionError> {
        let line = self.read_line(Phase::Hi).await?;
        let record = Record::parse_line(&line)?;
        let hi = HiRepr::parse(record.object()?)?;
        self.device = Some(hi.id);
        // Repository reads run inline: they are small page-cache reads (microseconds), and handing them
        // to a blocking thread cost a third of the no-update throughput in the benchmark.
        let inventory = self.repo.inventory(hi.id)?;
        if !record.verify(&inventory.secret) {
            return Err(SessionError::BadHiTag(inventory.file.clone()));
        }
        let plan = self.repo.plan(&inventory)?;
        let secret = &inventory.secret;

        if hi.chk.as_deref() == Some(plan.chk.as_str()) {
            let ok = v1::emit_record(secret, &CommandRepr::NoUpdate.to_json(), &[])?;
            self.send(&ok).await?;
            self.wait_close().await;
            return Ok(Outcome::NoUpdate);
        }

        // Everything that could refuse the update is checked before the first byte is sent.
        let restart = restart::build(&hi, &plan, secret)?;
        let restart = v1::emit_record(secret, &restart, &[])?;
        let stale: Vec<usize> = plan
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| hi.file_number(&f.name) != Some(u64::from(f.number)))
            .map(|(i, _)| i)
            .collect();
        check_lua(&plan, &stale)?;
        for &i in &stale {
            self.send_file(&plan, i, secret).await?;
        }
        self.send(&restart).await?;
        self.wait_close().await;
        Ok(Outcome::Updated)
    }

    async fn send_file(
        &mut self,
        plan: &Plan,
        i: usize,
        secret: &[u8],
    ) -> Result<(), SessionError> {
        let file = &plan.files[i];
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
            let record = v1::emit_record(secret, &command.to_json(), chunk)?;
            self.send(&record).await?;
            self.expect_ok(&file.name, secret).await?;
            match chunks.next() {
                Some(next) => chunk = next,
                None => break,
            }
        }
        self.files += 1;
        Ok(())
    }

    async fn expect_ok(&mut self, file: &str, secret: &[u8]) -> Result<(), SessionError> {
        let line = self.read_line(Phase::Reply).await?;
        let record = Record::parse_line(&line)?;
        if !record.verify(secret) {
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
fn check_lua(plan: &Plan, stale: &[usize]) -> Result<(), SessionError> {
    for &i in stale {
        let f = &plan.files[i];
        if f.action == Action::Compile {
            luac::check(&f.name, &f.data).map_err(|error| SessionError::Lua {
                file: f.name.clone(),
                error,
            })?;
        }
    }
    Ok(())
}
