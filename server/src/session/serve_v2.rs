//! The rota (v2) driver: the Hello, the plan, the fleet record, then rota-wire's server session.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use rota_wire::server::{self as wire_server, Event, ServerSession};
use rota_wire::MAX_FRAME;

use super::{Outcome, Phase, Session, SessionError};
use crate::plan_v2 as planner;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    /// Records a verified v2 check-in (refusing a replayed nonce) before anything is sent, with the
    /// name of the release served; returns the record with the device's history.
    async fn record_check_in(
        &mut self,
        mut record: crate::fleet::CheckIn,
    ) -> Result<crate::fleet::CheckIn, SessionError> {
        record.release.clone_from(&self.release);
        let merged = self.fleet.check_in_async(&record).await?;
        self.check_in = Some((record.device, record.nonce, record.outcome));
        Ok(merged)
    }

    pub(super) async fn run_v2(&mut self) -> Result<Outcome, SessionError> {
        let hello_frame = self.read_frame(Phase::Hi).await?.to_vec();
        let claimed = wire_server::peek_hello(&hello_frame).map_err(SessionError::V2)?;
        let id = u64::from(claimed.device_id);
        self.device = Some(id);
        // From the repository's snapshot without I/O, or read on a blocking thread (`Repo::served`);
        // blobs missing from the release are packed from ELF files for the ISA the Hello reports.
        let isa = rota_blob::Isa::from_u8(claimed.isa);
        let rollout = self.rollout_commit(id).await;
        let served = self.repo.served(id, rollout.as_deref(), isa).await?;
        self.release = Some(served.release.name.clone());
        let inventory = &served.inventory;
        let hello = match wire_server::open_hello(&hello_frame, &inventory.secret) {
            Ok(hello) => hello,
            Err(rota_wire::Error::BadTag) => {
                return Err(SessionError::BadHiTag(inventory.file.clone()))
            }
            Err(e) => return Err(SessionError::V2(e)),
        };
        self.first_record_verified()?;
        let plan = &served.plan;
        let expected = planner::expected_state(plan);
        let up_to_date = planner::up_to_date(&expected, inventory, hello.device_id, &hello)?;
        let release = &served.release.name;
        let known = (hello.state == expected).then(|| planner::plan_records(plan, release));
        // Never send what cannot run, nor what the device would refuse: checked before anything is
        // sent (and recorded as the check-in's outcome).
        let checked = if up_to_date {
            Ok(None)
        } else {
            planner::check_release(
                plan,
                inventory,
                served.signed.as_deref().map(Vec::as_slice),
                &hello,
            )
        };
        let label = match (&checked, up_to_date) {
            (Err(why), _) => format!("failed: release refused: {why}"),
            (Ok(_), true) => Outcome::NoUpdate.to_string(),
            (Ok(_), false) => "updating".to_owned(),
        };
        let record = self
            .record_check_in(planner::check_in_record(
                &hello,
                known.as_deref(),
                self.peer,
                &label,
            ))
            .await?;
        let signed = checked.map_err(SessionError::Release)?;
        let secret = &inventory.secret;
        let mut out = vec![0u8; 2 * MAX_FRAME];

        let held = record.held.as_deref() == Some(crate::fleet::hex(&expected).as_str());
        if up_to_date || held {
            let n = wire_server::no_update(secret, &hello, &mut out).map_err(SessionError::V2)?;
            self.send(&out[..n]).await?;
            self.wait_close().await;
            if held {
                tracing::info!(device = id, "release held: this device rolled it back");
                return Ok(Outcome::Held);
            }
            return Ok(Outcome::NoUpdate);
        }

        let mut server_nonce = [0u8; rota_wire::SERVER_NONCE_LEN];
        getrandom::fill(&mut server_nonce)
            .map_err(|e| SessionError::Io(io::Error::other(e.to_string())))?;
        let (mut session, n) = ServerSession::welcome(secret, &hello, server_nonce, &mut out)
            .map_err(SessionError::V2)?;
        self.send(&out[..n]).await?;
        let frame = self.read_frame(Phase::Reply).await?.to_vec();
        let Event::Files(files) = session.handle(&frame).map_err(SessionError::V2)? else {
            return Err(SessionError::V2(rota_wire::Error::Unexpected(frame[1])));
        };
        let todo = planner::decide(plan, inventory, hello.device_id, &hello, &files.files)?;
        let listed = planner::file_records(&files.files, plan, &served.release.name);
        let nonce = Some(hello.nonce);
        if let Err(error) = self.fleet.listed_async(id, nonce, listed).await {
            tracing::warn!(device = id, %error, "cannot record the files listed");
        }
        if todo.is_empty() {
            let n = session.no_update(&mut out).map_err(SessionError::V2)?;
            self.send(&out[..n]).await?;
            self.wait_close().await;
            return Ok(Outcome::NoUpdate);
        }
        let steps = planner::with_release(signed.as_ref(), todo.steps());
        session.plan(&steps).map_err(SessionError::V2)?;
        let mut batch = Vec::new();
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
            let staged = match session.handle(frame).map_err(SessionError::V2)? {
                Event::Staged { .. } => true,
                Event::Ready { step, offset } if offset > 0 => {
                    tracing::debug!(device = id, step, offset, "resuming a staged file");
                    false
                }
                _ => false,
            };
            self.files += usize::from(staged);
        }
        let state = crate::fleet::hex(&expected);
        if let Err(error) = self.fleet.installed_async(id, nonce, &state).await {
            tracing::warn!(device = id, %error, "cannot record the release installed");
        }
        self.wait_close().await;
        Ok(Outcome::Updated)
    }
}
