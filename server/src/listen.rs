//! The TCP listener: accepts every connection and runs each session in its own task.
//!
//! It never stops because of a peer: accept errors (e.g. out of file descriptors) are logged and retried,
//! and above `max_sessions` concurrent sessions new connections are closed at once, with a log line.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;

use crate::session::Server;

/// Accept backlog: room for a burst of devices connecting at once.
const BACKLOG: u32 = 4096;

/// Binds `addr` with a large accept backlog.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves connections from `listener` until `shutdown` completes, at most `max_sessions` at a time.
pub async fn run(
    listener: TcpListener,
    server: Arc<Server>,
    max_sessions: usize,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(max_sessions));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::error!(%error, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%peer, max_sessions, "too many sessions; connection closed");
            continue;
        };
        // Records are small and strictly ping-pong: never let Nagle hold one back.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            server.serve(stream, &peer.to_string()).await;
            drop(permit);
        });
    }
}
