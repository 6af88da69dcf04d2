//! The rota (v2) driver: the Hello, the plan, the fleet record, then rota-wire's server session.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use rota_wire::server::{self as wire_server, Event, ServerSession};
use rota_wire::MAX_FRAME;

use super::{Outcome, Phase, Session, SessionError};
use crate::plan_v2 as planner;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
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

    pub(super) async fn run_v2(&mut self) -> Result<Outcome, SessionError> {
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
}
