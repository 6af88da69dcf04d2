//! The TCP listener: accepts every connection and runs each session in its own task, in a table of
//! session slots that no flood of idle connections can fill for long.
//!
//! - A connection that has not sent its first record (the v1 HI line or the v2 Hello) within
//!   [`Limits::first_record`] (2 s) is dropped by its session: silence holds a slot 2 s at most.
//! - One peer address holds at most [`Limits::sessions_per_peer`] slots (by default a quarter of
//!   the table, [`run`]'s `max_sessions`; an IPv6 peer counts by its /64): a further connection from
//!   it is closed at once.
//! - When the table is full, a new connection takes the slot of the oldest connection that has not
//!   yet sent its first record, which is closed ([`SessionError::Evicted`]); if every session is past
//!   its first record, the new connection is closed at once. A device is never left waiting in the
//!   accept queue past its own deadline (a NodeMCU device allows 3 s from `connect()`).
//! - The table never holds more sessions than the process has file descriptors for (three quarters
//!   of `RLIMIT_NOFILE`, the rest kept for the listener, the runtime, repository and fleet files).
//!   Should `accept()` still run out of descriptors (`EMFILE`, `ENFILE`), the oldest connection
//!   without a first record is closed to make room; if there is none, the waiting connection is
//!   accepted on a reserved descriptor and closed at once, so it is answered instead of left in the
//!   queue. The loop never spins: every retry follows a closed connection or a short pause.
//!
//! The listener never stops because of a peer: other accept errors are logged and retried.
//!
//! [`Limits::first_record`]: crate::session::Limits::first_record
//! [`Limits::sessions_per_peer`]: crate::session::Limits::sessions_per_peer
//! [`SessionError::Evicted`]: crate::session::SessionError::Evicted

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;

use crate::session::Server;

/// Accept backlog: room for a burst of devices connecting at once.
const BACKLOG: u32 = 4096;

/// The default session table size (`--max-sessions`).
pub const MAX_SESSIONS: usize = 4096;

/// Pause after closing a connection for want of descriptors, so that its task can release one.
const RELEASE_PAUSE: Duration = Duration::from_millis(5);

/// Pause before retrying a failed `accept()` when nothing could be closed.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Binds `addr` with a large accept backlog.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_shared(addr, false)
}

/// [`bind`], and with `reuse_port` shares `addr` with other processes that bind it the same way
/// (`SO_REUSEPORT`): the kernel spreads new connections over them, so several `rota-server`
/// instances with one database serve one address.
pub fn bind_shared(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The sessions `descriptors` file descriptors leave room for: three quarters of them, a quarter (at
/// least 16) being kept for everything else.
pub fn sessions_for_descriptors(descriptors: u64) -> usize {
    let spare = (descriptors / 4).max(16);
    usize::try_from(descriptors.saturating_sub(spare)).unwrap_or(usize::MAX)
}

/// Raises this process's soft limit of open files (up to the hard limit) so that `sessions` fit
/// ([`sessions_for_descriptors`]); returns the limit now in force, if it can be read.
pub fn raise_descriptor_limit(sessions: usize) -> Option<u64> {
    let sessions = u64::try_from(sessions).unwrap_or(u64::MAX);
    let wanted = sessions
        .saturating_add((sessions / 3).max(16))
        .saturating_add(1);
    rlimit::increase_nofile_limit(wanted).ok()
}

/// The peer key of the per-address cap: an IPv4 address (IPv4-mapped IPv6 included), or the /64 of
/// an IPv6 address (one host commonly holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PeerKey {
    V4(Ipv4Addr),
    V6([u8; 8]),
}

impl PeerKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => PeerKey::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => PeerKey::V4(v4),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    PeerKey::V6(prefix)
                }
            },
        }
    }
}

/// Why a connection gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Its address holds its share of the table.
    PeerFull,
    /// Every slot is held by a session past its first record.
    Full,
}

/// The session table.
struct Table {
    slots: usize,
    per_peer: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Sessions holding a slot.
    live: usize,
    /// Slots held per peer key.
    by_peer: HashMap<PeerKey, usize>,
    /// Sessions without a first record yet, oldest first, with the signal that closes them.
    pending: BTreeMap<u64, (PeerKey, oneshot::Sender<()>)>,
}

impl State {
    fn release(&mut self, key: PeerKey) {
        self.live -= 1;
        if let Some(n) = self.by_peer.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.by_peer.remove(&key);
            }
        }
    }

    /// Closes the oldest session without a first record; whether there was one.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, (key, signal))) = self.pending.pop_first() else {
            return false;
        };
        self.release(key);
        // The session may have ended by itself meanwhile: nothing to tell it then.
        let _ = signal.send(());
        true
    }
}

impl Table {
    fn new(slots: usize, per_peer: usize) -> Arc<Self> {
        Arc::new(Table {
            slots,
            per_peer,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a connection from `ip`, taking the oldest pending session's if the table is full.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let key = PeerKey::of(ip);
        let mut state = self.lock();
        if state.by_peer.get(&key).copied().unwrap_or(0) >= self.per_peer {
            return Err(Refusal::PeerFull);
        }
        if state.live >= self.slots && !state.evict_oldest() {
            return Err(Refusal::Full);
        }
        let id = state.next;
        state.next += 1;
        state.live += 1;
        *state.by_peer.entry(key).or_default() += 1;
        let (signal, evicted) = oneshot::channel();
        state.pending.insert(id, (key, signal));
        Ok(Ticket {
            table: Arc::clone(self),
            id,
            key,
            state: TicketState::Pending,
            evicted: Some(evicted),
        })
    }

    /// Closes the oldest session without a first record; whether there was one.
    fn evict_oldest(&self) -> bool {
        self.lock().evict_oldest()
    }
}

/// Where a ticket's session stands in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TicketState {
    /// No first record yet: can be evicted.
    Pending,
    /// Past its first record: keeps its slot to the end.
    Active,
    /// Evicted: its slot is already someone else's.
    Evicted,
}

/// A session's slot in the listener's table, released when dropped.
pub struct Ticket {
    table: Arc<Table>,
    id: u64,
    key: PeerKey,
    state: TicketState,
    evicted: Option<oneshot::Receiver<()>>,
}

impl Ticket {
    /// The signal that the listener closed this session to make room (it fires only before
    /// [`Ticket::activate`]); taken once.
    pub(crate) fn take_eviction(&mut self) -> Option<oneshot::Receiver<()>> {
        self.evicted.take()
    }

    /// The session's first record arrived (and verified): it keeps its slot to the end. `false` if the
    /// listener evicted it first.
    pub(crate) fn activate(&mut self) -> bool {
        if self.state != TicketState::Pending {
            return self.state == TicketState::Active;
        }
        let mut state = self.table.lock();
        if state.pending.remove(&self.id).is_some() {
            self.state = TicketState::Active;
            true
        } else {
            self.state = TicketState::Evicted;
            false
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.table.lock();
        let holds = match self.state {
            TicketState::Active => true,
            TicketState::Pending => state.pending.remove(&self.id).is_some(),
            TicketState::Evicted => false,
        };
        if holds {
            state.release(self.key);
        }
    }
}

/// Whether `error` says the process or the system is out of file descriptors (`EMFILE`, `ENFILE`:
/// 24 and 23 on Linux, macOS and the BSDs alike).
fn out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(23 | 24))
}

/// Serves connections from `listener` until `shutdown` completes, at most `max_sessions` at a time
/// (capped by the process's file descriptors), at most the server's
/// [`Limits::sessions_per_peer`](crate::session::Limits::sessions_per_peer) of them from one peer
/// address.
pub async fn run(
    listener: TcpListener,
    server: Arc<Server>,
    max_sessions: usize,
    shutdown: impl Future<Output = ()>,
) {
    let limits = server.limits();
    let descriptors = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft);
    let slots = descriptors
        .map_or(max_sessions, |d| {
            max_sessions.min(sessions_for_descriptors(d))
        })
        .max(1);
    if slots < max_sessions {
        tracing::warn!(
            sessions = max_sessions,
            slots,
            descriptors = descriptors.unwrap_or_default(),
            "the open-file limit leaves room for fewer sessions than asked; raise `ulimit -n` for more"
        );
    }
    let per_peer = limits
        .sessions_per_peer
        .unwrap_or(slots / 4)
        .clamp(1, slots);
    tracing::info!(
        slots,
        per_peer,
        first_record_ms = limits.first_record.as_millis() as u64,
        "session table"
    );
    let table = Table::new(slots, per_peer);
    // One descriptor kept back to accept, and close at once, a connection when all are in use.
    let mut reserve = File::open("/dev/null").ok();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(error) if out_of_descriptors(&error) => {
                if table.evict_oldest() {
                    tracing::warn!(%error, "out of file descriptors: closed the oldest connection without a first record");
                    tokio::time::sleep(RELEASE_PAUSE).await;
                } else if let Some(spare) = reserve.take() {
                    drop(spare);
                    let waiting = tokio::time::timeout(RELEASE_PAUSE, listener.accept()).await;
                    if let Ok(Ok((stream, peer))) = waiting {
                        tracing::warn!(%peer, "out of file descriptors and every session is past its first record; connection closed");
                        drop(stream);
                    }
                    reserve = File::open("/dev/null").ok();
                } else {
                    tracing::error!(%error, "out of file descriptors; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    reserve = File::open("/dev/null").ok();
                }
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "accept failed; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let ticket = match table.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(Refusal::PeerFull) => {
                tracing::warn!(%peer, per_peer, "this address holds its share of the sessions; connection closed");
                continue;
            }
            Err(Refusal::Full) => {
                tracing::warn!(%peer, slots, "too many sessions, all past their first record; connection closed");
                continue;
            }
        };
        // Records are small and strictly ping-pong: never let Nagle hold one back.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            server.serve_slot(stream, &peer.to_string(), ticket).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn full_tables_evict_the_oldest_pending_and_addresses_keep_to_their_share() {
        let table = Table::new(4, 2);
        let mut a1 = table.admit(ip(2)).unwrap();
        let mut a2 = table.admit(ip(2)).unwrap();
        assert_eq!(table.admit(ip(2)).err(), Some(Refusal::PeerFull));
        assert!(a1.activate(), "a1 sent its first record");
        let mut b1 = table.admit(ip(3)).unwrap();
        let mut b2 = table.admit(ip(3)).unwrap();
        let mut a2_signal = a2.take_eviction().unwrap();
        let mut b1_signal = b1.take_eviction().unwrap();
        // Full: the oldest pending session (a2; a1 is active) makes room.
        let c1 = table.admit(ip(4)).unwrap();
        assert!(a2_signal.try_recv().is_ok(), "a2 told to close");
        assert!(b1_signal.try_recv().is_err(), "b1 not yet");
        assert!(
            !a2.activate(),
            "evicted while its first record was on its way"
        );
        let d1 = table.admit(ip(5)).unwrap();
        assert!(b1_signal.try_recv().is_ok());
        assert!(b2.activate());
        assert_eq!(table.lock().live, 4);
        drop((a1, a2, b1, b2, c1, d1));
        let state = table.lock();
        assert_eq!(
            (state.live, state.by_peer.len(), state.pending.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn an_evicted_session_frees_nothing_twice_and_active_ones_are_never_evicted() {
        let table = Table::new(1, 1);
        let mut first = table.admit(ip(2)).unwrap();
        let mut second = table.admit(ip(3)).unwrap();
        assert!(!first.activate());
        drop(first);
        assert_eq!(table.lock().live, 1, "the slot is the second's");
        assert!(second.activate());
        assert_eq!(table.admit(ip(4)).err(), Some(Refusal::Full));
        drop(second);
        assert_eq!(table.lock().live, 0);
        assert!(table.admit(ip(4)).is_ok());
    }

    #[test]
    fn ipv6_peers_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(PeerKey::of(a), PeerKey::of(b));
        assert_ne!(PeerKey::of(a), PeerKey::of(c));
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(PeerKey::of(mapped), PeerKey::of(ip(2)));
    }

    #[test]
    fn descriptors_leave_a_quarter_spare() {
        assert_eq!(sessions_for_descriptors(256), 192);
        assert_eq!(sessions_for_descriptors(20_000), 15_000);
        assert_eq!(sessions_for_descriptors(32), 16);
        assert_eq!(sessions_for_descriptors(8), 0);
        let e = io::Error::from_raw_os_error(24);
        assert!(out_of_descriptors(&e));
        assert!(!out_of_descriptors(&io::Error::from_raw_os_error(103)));
    }
}
