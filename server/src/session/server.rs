//! [`Server`]: the state all sessions share (repository, fleet state, limits), and the one summary
//! line each session is logged with.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Limits, LineReader, Session, SessionError, SessionReport};
use crate::fleet::{Fleet, FleetError};
use crate::listen::Ticket;
use crate::repo::Repo;
use crate::rollout::{book, Book, BookError};

/// The shared state of all sessions: the repository, its fleet state and the limits.
pub struct Server {
    repo: Repo,
    fleet: Fleet,
    limits: Limits,
    book: Book,
    reports: Option<mpsc::UnboundedSender<SessionReport>>,
}

impl Server {
    /// A server for `repo` with `limits`; device check-ins are recorded in the repository's default
    /// database ([`Fleet::for_repo`]), which is opened (and migrated) here.
    pub fn new(repo: Repo, limits: Limits) -> Result<Self, FleetError> {
        let fleet = Fleet::for_repo(repo.dir())?;
        Ok(Server::with_fleet(repo, fleet, limits))
    }

    /// A server for `repo` with `limits` recording check-ins in `fleet` (`--database`).
    pub fn with_fleet(repo: Repo, fleet: Fleet, limits: Limits) -> Self {
        Server {
            fleet,
            repo,
            limits,
            book: Book::default(),
            reports: None,
        }
    }

    /// The repository served.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// Reads the fleet's rollouts, evaluates them (halting, widening) and keeps them for the
    /// sessions. Blocking.
    pub fn refresh_rollouts(&self) -> Result<(), BookError> {
        self.book.refresh(&self.fleet, &self.repo)
    }

    /// Refreshes the rollouts every [`book::EVALUATE`], off the async workers, for as long as it
    /// runs (the serve loop runs it beside the listener).
    pub async fn keep_rollouts(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(book::EVALUATE);
        loop {
            tick.tick().await;
            let server = self.clone();
            match tokio::task::spawn_blocking(move || server.refresh_rollouts()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "cannot evaluate the rollouts"),
                Err(error) => tracing::warn!(%error, "rollout evaluation stopped"),
            }
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
            book: &self.book,
            peer,
            limits: self.limits,
            idle: self.limits.idle,
            deadline: start + self.limits.session,
            first_deadline: Some(start + self.limits.first_record),
            ticket,
            protocol: None,
            device: None,
            release: None,
            check_in: None,
            v1_record: None,
            files: 0,
            bytes: 0,
        };
        // Eviction only ever comes before the first record verified: nothing was sent or recorded.
        let outcome = tokio::select! {
            biased;
            () = evicted(eviction) => Err(SessionError::Evicted),
            outcome = session.run() => outcome,
        };
        let label = match &outcome {
            Ok(o) => o.to_string(),
            Err(e) => format!("failed: {e}"),
        };
        if let Some((device, nonce, recorded)) = session.check_in {
            // A no-update check-in is recorded as such before the answer: nothing more to write.
            if recorded != label {
                if let Err(error) = self.fleet.finish_async(device, nonce, &label).await {
                    tracing::warn!(%device, %error, "cannot record the session's outcome");
                }
            }
        } else if let Some(mut record) = session.v1_record.take() {
            record.outcome = label;
            if let Err(error) = self.fleet.check_in_async(&record).await {
                let device = record.device;
                tracing::warn!(%device, %error, "cannot record the check-in");
            }
        }
        let report = SessionReport {
            peer: peer.to_owned(),
            protocol: session.protocol,
            device: session.device,
            release: session.release.take(),
            outcome,
            files: session.files,
            bytes: session.bytes,
            duration: start.elapsed(),
        };
        let device = report
            .device
            .map_or_else(|| "-".to_owned(), |d| d.to_string());
        let ms = report.duration.as_millis();
        let release = report.release.as_deref().unwrap_or("-");
        match &report.outcome {
            Ok(outcome) => tracing::info!(
                %device,
                %peer,
                %release,
                %outcome,
                files = report.files,
                bytes = report.bytes,
                duration_ms = ms,
                "session"
            ),
            Err(error) => tracing::warn!(
                %device,
                %peer,
                %release,
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
