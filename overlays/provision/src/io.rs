//! The connection and the store as `provision` sees them, both through the core's services.

use core::cell::Cell;
use rota_abi::{status, CommitParams, Name, Services};
use rota_wire::{CommitInfo, Digest, FileStore, StoredFile};

/// The server must answer within this long after the connect.
pub const FIRST_ANSWER_MS: u32 = 3000;
/// A whole session must end within this long.
pub const SESSION_MS: u32 = 30_000;
/// Longest wait for queued bytes to leave before a reboot.
const FLUSH_MS: u32 = 200;

/// The TCP connection `tick` opened, with the session's deadlines.
pub struct Link<'a> {
    svc: &'a Services,
    connect_ms: u32,
    answered: Cell<bool>,
    /// When the server's first bytes arrived.
    first_ms: Cell<u32>,
    /// Bytes received so far.
    received: Cell<u32>,
}

impl<'a> Link<'a> {
    /// The connection started at `connect_ms`.
    pub fn new(svc: &'a Services, connect_ms: u32) -> Self {
        Self {
            svc,
            connect_ms,
            answered: Cell::new(false),
            first_ms: Cell::new(0),
            received: Cell::new(0),
        }
    }

    /// Bytes received so far and the time now: a mark to measure a transfer from.
    pub fn mark(&self) -> (u32, u32) {
        (self.received.get(), self.svc.time_ms())
    }

    /// Prints what arrived since `mark` (or since the first byte) and how long it took.
    pub fn report(&self, what: &[u8], mark: Option<(u32, u32)>) {
        let (bytes, ms) = mark.unwrap_or((0, self.first_ms.get()));
        self.svc.write(b"provision: ");
        self.svc.write(what);
        self.svc.write(b" ");
        self.svc.write_dec(self.received.get().wrapping_sub(bytes));
        self.svc.write(b" bytes in ");
        self.svc.write_dec(self.svc.time_ms().wrapping_sub(ms));
        self.svc.write(b" ms\n");
    }

    /// Whether the deadline that applies now has passed.
    fn late(&self) -> bool {
        let limit = if self.answered.get() {
            SESSION_MS
        } else {
            FIRST_ANSWER_MS
        };
        self.svc.time_ms().wrapping_sub(self.connect_ms) > limit
    }

    /// Sends all of `bytes`; false if the connection closed or the deadline passed.
    pub fn send_all(&self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            let n = self.svc.net_send(bytes);
            if n < 0 || self.late() {
                return false;
            }
            bytes = &bytes[(n as usize).min(bytes.len())..];
        }
        true
    }

    /// Receives at least one byte into `buf` (which must not be empty).
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, &'static [u8]> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.svc.net_recv(buf);
            if n > 0 {
                if !self.answered.replace(true) {
                    self.first_ms.set(self.svc.time_ms());
                }
                self.received
                    .set(self.received.get().wrapping_add(n as u32));
                return Ok(n as usize);
            }
            if n < 0 {
                return Err(b"server closed the connection");
            }
            if self.late() {
                return Err(if self.answered.get() {
                    b"session over 30 s"
                } else {
                    b"no server answer in 3 s"
                });
            }
        }
    }

    /// Gives queued bytes a moment to leave before the device reboots.
    pub fn flush(&self) {
        let start = self.svc.time_ms();
        while self.svc.time_ms().wrapping_sub(start) < FLUSH_MS {
            if self.svc.net_poll() < 0 {
                return;
            }
        }
    }
}

/// The core's store services as the session's [`FileStore`]; errors are service status codes.
pub struct SvcStore<'a>(pub &'a Services);

/// A name argument as the ABI wants it ([`status::EINVAL`] if empty or too long).
pub fn name(n: &[u8]) -> Result<Name, i32> {
    Name::new(n).ok_or(status::EINVAL)
}

/// A service status as a result: the non-negative value, or the error code.
pub fn check(rc: i32) -> Result<i32, i32> {
    if rc < 0 {
        Err(rc)
    } else {
        Ok(rc)
    }
}

impl FileStore for SvcStore<'_> {
    type Error = i32;

    fn stage_begin(
        &mut self,
        n: &[u8],
        size: u32,
        digest: &Digest,
        version: u32,
    ) -> Result<u32, i32> {
        check(self.0.stage_begin(&name(n)?, size, digest, version)).map(|at| at as u32)
    }

    fn stage_write(&mut self, n: &[u8], offset: u32, data: &[u8]) -> Result<(), i32> {
        check(self.0.stage_write(&name(n)?, offset, data)).map(drop)
    }

    fn stage_finish(&mut self, n: &[u8]) -> Result<(), i32> {
        check(self.0.stage_finish(&name(n)?)).map(drop)
    }

    fn stage_drop(&mut self, n: &[u8]) -> Result<(), i32> {
        check(self.0.stage_drop(&name(n)?)).map(drop)
    }

    fn stage_delete(&mut self, n: &[u8]) -> Result<(), i32> {
        check(self.0.stage_delete(&name(n)?)).map(drop)
    }

    fn stage_rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), i32> {
        check(self.0.stage_rename(&name(from)?, &name(to)?)).map(drop)
    }

    fn read(&mut self, n: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, i32> {
        check(self.0.file_read(&name(n)?, offset, buf)).map(|n| n as usize)
    }

    fn file(&mut self, index: u32) -> Result<Option<StoredFile>, i32> {
        Ok(self.0.file_info(false, index)?.map(|f| {
            let mut out = StoredFile {
                name_len: f.name.len,
                name: [0; rota_wire::MAX_NAME],
                size: f.size,
                version: f.version,
                digest: f.digest,
            };
            let n = f.name.as_bytes().len();
            out.name[..n].copy_from_slice(f.name.as_bytes());
            out
        }))
    }

    fn commit(&mut self, config: Option<&[u8]>, info: &CommitInfo) -> Result<u32, i32> {
        // The session's security version (its signed manifest's), the config's trial boots, and
        // whether it changed the app (then only the app's confirm confirms it).
        let params = CommitParams {
            security_version: info.security_version,
            trial_limit: info.trial_limit,
            needs_app: u8::from(info.needs_app),
            ..CommitParams::IMMEDIATE
        };
        check(self.0.commit(config.unwrap_or(&[]), &params)).map(|g| g as u32)
    }

    fn error_code(error: &i32) -> u8 {
        error.unsigned_abs().min(255) as u8
    }
}
