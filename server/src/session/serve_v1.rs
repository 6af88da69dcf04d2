//! The luaOTA (v1) driver: the HI, the send rule, then files and `restart`, strictly ping-pong.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Outcome, Phase, Session, SessionError};
use crate::luac;
use crate::repo::{Action, PlannedFile};
use crate::restart;
use crate::v1::{self, CommandRepr, HiRepr, Record, ReplyRepr, Signer};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    pub(super) async fn run_v1(&mut self) -> Result<Outcome, SessionError> {
        let line = self.read_line(Phase::Hi).await?;
        let record = Record::parse_line(&line)?;
        let hi = HiRepr::parse(record.object()?)?;
        self.device = Some(hi.id);
        // From the repository's snapshot without I/O, or read on a blocking thread (`Repo::served`).
        let rollout = self.rollout_commit(hi.id).await;
        let served = self.repo.served(hi.id, rollout.as_deref(), None).await?;
        self.release = Some(served.release.name.clone());
        let (inventory, plan) = (&served.inventory, &served.plan);
        let signer = Signer::new(&inventory.secret);
        if !record.verify(&signer) {
            return Err(SessionError::BadHiTag(inventory.file.clone()));
        }
        self.first_record_verified()?;
        let served_release = &served.release.name;
        self.v1_record = Some(crate::fleet::CheckIn {
            device: hi.id,
            time: crate::fleet::now(),
            peer: self.peer.to_owned(),
            protocol: 1,
            files: hi
                .files
                .iter()
                .filter_map(|(name, n)| {
                    let number = u32::try_from(n.as_u64()?).ok()?;
                    let served = plan
                        .files
                        .iter()
                        .any(|f| &f.name == name && f.number == number);
                    Some(crate::fleet::FileRecord {
                        name: name.clone(),
                        size: 0,
                        version: number,
                        digest: String::new(),
                        release: served.then(|| served_release.clone()),
                    })
                })
                .collect(),
            release: self.release.clone(),
            ..crate::fleet::CheckIn::default()
        });
        // A name the device cannot open would reboot it at every boot: refused before anything.
        restart::check_names(plan)?;
        let secret = &inventory.secret;

        if hi.chk.as_deref() == Some(plan.chk.as_str()) {
            let ok = v1::emit_record(&signer, &CommandRepr::NoUpdate.to_json(), &[])?;
            self.send(&ok).await?;
            self.wait_close().await;
            return Ok(Outcome::NoUpdate);
        }

        // Everything that could refuse the update is checked before the first byte is sent.
        let restart = restart::build(&hi, plan, secret)?;
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
