//! A rota (protocol v2) device simulator for tests and benchmarks: `rota-wire`'s [`DeviceSession`]
//! over any byte stream, with an in-memory [`FileStore`] that stages like the real store (staged data
//! survives a dropped connection; nothing is visible before commit).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rota_wire::msg::{FileInfo, HeapReport, Hello, Name, StagedInfo};
use rota_wire::{sha256, DeviceSession, Digest, Error, FileStore, Poll, MAX_FRAME};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A file being staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// Announced size.
    pub size: u32,
    /// Announced digest.
    pub digest: Digest,
    /// Announced version.
    pub version: u32,
    /// Bytes written so far.
    pub data: Vec<u8>,
    /// Whether `stage_finish` checked it.
    pub finished: bool,
}

/// Errors of [`MemStore`], each with its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    /// No such file.
    NotFound = 1,
    /// A write not at the end of the staged data.
    Offset = 2,
    /// The content does not have the announced digest.
    Digest = 3,
    /// More data than announced.
    Size = 4,
    /// Commit with a file still being staged.
    Unfinished = 5,
}

/// An in-memory file store with staging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStore {
    /// Committed files: content and version.
    pub files: BTreeMap<Vec<u8>, (Vec<u8>, u32)>,
    /// Staged files (kept across sessions, as on flash).
    pub staged: BTreeMap<Vec<u8>, Staged>,
    /// Deletions pending commit (forgotten at the next boot).
    pub deletes: Vec<Vec<u8>>,
    /// Renames pending commit (forgotten at the next boot).
    pub renames: Vec<(Vec<u8>, Vec<u8>)>,
    /// The committed config record.
    pub config: Option<Vec<u8>>,
    /// Commits so far.
    pub generation: u32,
}

impl FileStore for MemStore {
    type Error = MemError;

    fn stage_begin(
        &mut self,
        name: &[u8],
        size: u32,
        digest: &Digest,
        version: u32,
    ) -> Result<u32, MemError> {
        if let Some(s) = self.staged.get(name) {
            if s.size == size && s.digest == *digest {
                return Ok(s.data.len() as u32);
            }
        }
        let fresh = Staged {
            size,
            digest: *digest,
            version,
            data: Vec::new(),
            finished: false,
        };
        self.staged.insert(name.to_vec(), fresh);
        Ok(0)
    }

    fn stage_write(&mut self, name: &[u8], offset: u32, data: &[u8]) -> Result<(), MemError> {
        let s = self.staged.get_mut(name).ok_or(MemError::NotFound)?;
        if offset as usize != s.data.len() {
            return Err(MemError::Offset);
        }
        if s.data.len() + data.len() > s.size as usize {
            return Err(MemError::Size);
        }
        s.data.extend_from_slice(data);
        Ok(())
    }

    fn stage_finish(&mut self, name: &[u8]) -> Result<(), MemError> {
        let s = self.staged.get_mut(name).ok_or(MemError::NotFound)?;
        if s.data.len() != s.size as usize || sha256(&s.data) != s.digest {
            return Err(MemError::Digest);
        }
        s.finished = true;
        Ok(())
    }

    fn stage_drop(&mut self, name: &[u8]) -> Result<(), MemError> {
        self.staged.remove(name).map(drop).ok_or(MemError::NotFound)
    }

    fn stage_delete(&mut self, name: &[u8]) -> Result<(), MemError> {
        if !self.files.contains_key(name) {
            return Err(MemError::NotFound);
        }
        self.deletes.push(name.to_vec());
        Ok(())
    }

    fn stage_rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), MemError> {
        if !self.files.contains_key(from) {
            return Err(MemError::NotFound);
        }
        self.renames.push((from.to_vec(), to.to_vec()));
        Ok(())
    }

    fn read(&mut self, name: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, MemError> {
        let (data, _) = self.files.get(name).ok_or(MemError::NotFound)?;
        let rest = data.get(offset as usize..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn commit(&mut self, config: Option<&[u8]>) -> Result<u32, MemError> {
        if self.staged.values().any(|s| !s.finished) {
            return Err(MemError::Unfinished);
        }
        for name in std::mem::take(&mut self.deletes) {
            self.files.remove(&name);
        }
        for (from, to) in std::mem::take(&mut self.renames) {
            if let Some(f) = self.files.remove(&from) {
                self.files.insert(to, f);
            }
        }
        for (name, s) in std::mem::take(&mut self.staged) {
            self.files.insert(name, (s.data, s.version));
        }
        if let Some(c) = config {
            self.config = Some(c.to_vec());
        }
        self.generation += 1;
        Ok(self.generation)
    }

    fn error_code(error: &MemError) -> u8 {
        *error as u8
    }
}

/// How a check-in ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Outcome {
    /// `NoUpdate`: the device runs its application.
    NoUpdate,
    /// Committed with this generation: the device reboots.
    Committed(u32),
    /// The session failed on the device's side.
    Failed(Error),
    /// The connection ended (or was cut) before either.
    Closed,
    /// The device gave up waiting.
    TimedOut,
}

/// One check-in's result.
#[derive(Debug, Clone)]
pub struct V2CheckIn {
    /// How it ended.
    pub outcome: V2Outcome,
    /// Bytes the device sent.
    pub bytes_sent: usize,
    /// Bytes the device received.
    pub bytes_received: usize,
    /// The Hello's size.
    pub hello_bytes: usize,
}

/// A simulated rota device.
#[derive(Debug, Clone)]
pub struct RotaDevice {
    /// Its id.
    pub id: u32,
    /// Its secret.
    pub secret: Vec<u8>,
    /// Its boot counter (the device nonce is the counter after the increment at boot).
    pub boots: u32,
    /// Its application version.
    pub app_version: u32,
    /// Its files.
    pub store: MemStore,
    /// Its last boot's heap report.
    pub heap: Vec<HeapReport>,
    /// Cut the connection after receiving this many bytes (to test resuming).
    pub cut_after: Option<usize>,
    /// How long it waits for the server, in all.
    pub patience: Duration,
}

impl RotaDevice {
    /// A device with no files.
    pub fn new(id: u32, secret: &[u8]) -> Self {
        RotaDevice {
            id,
            secret: secret.to_vec(),
            boots: 0,
            app_version: 1,
            store: MemStore::default(),
            heap: vec![
                HeapReport {
                    phase: 0,
                    used: 0,
                    peak: 2048,
                    stack_peak: 900,
                },
                HeapReport {
                    phase: 3,
                    used: 512,
                    peak: 6144,
                    stack_peak: 1400,
                },
            ],
            cut_after: None,
            patience: Duration::from_secs(20),
        }
    }

    /// The Hello its present state makes, with device nonce `nonce`.
    pub fn hello(&self, nonce: u32) -> Hello<'_> {
        let mut hello = Hello {
            device_id: self.id,
            nonce,
            protocol: rota_wire::VERSION,
            app_version: self.app_version,
            config: self
                .store
                .config
                .as_deref()
                .map_or(0, rota_wire::config::config_version),
            files: Default::default(),
            staged: Default::default(),
            heap: Default::default(),
        };
        for (name, (data, version)) in &self.store.files {
            let Some(name) = Name::new(name) else {
                continue;
            };
            let info = FileInfo {
                name,
                size: data.len() as u32,
                version: *version,
                digest: sha256(data),
            };
            if hello.files.push(info).is_err() {
                break;
            }
        }
        for (name, s) in &self.store.staged {
            let Some(name) = Name::new(name) else {
                continue;
            };
            let info = StagedInfo {
                name,
                size: s.size,
                digest: s.digest,
                done: s.data.len() as u32,
            };
            if hello.staged.push(info).is_err() {
                break;
            }
        }
        for r in self.heap.iter().take(rota_wire::msg::MAX_HEAP) {
            let _ = hello.heap.push(*r);
        }
        hello
    }

    /// A file's committed content.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.store
            .files
            .get(name.as_bytes())
            .map(|(d, _)| d.as_slice())
    }

    /// Boots (the counter moves, pending operations are forgotten) and checks in over TCP.
    pub async fn check_in_tcp(&mut self, addr: SocketAddr) -> std::io::Result<V2CheckIn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(self.check_in(stream).await)
    }

    /// Boots and checks in over `io`.
    pub async fn check_in<S: AsyncRead + AsyncWrite + Unpin>(&mut self, mut io: S) -> V2CheckIn {
        self.boots += 1;
        self.store.deletes.clear();
        self.store.renames.clear();
        let nonce = self.boots;
        let secret = self.secret.clone();
        let mut session = DeviceSession::new(&secret);
        let mut out = vec![0u8; MAX_FRAME];
        let n = match session.hello(&self.hello(nonce), &mut out) {
            Ok(n) => n,
            Err(e) => {
                return V2CheckIn {
                    outcome: V2Outcome::Failed(e),
                    bytes_sent: 0,
                    bytes_received: 0,
                    hello_bytes: 0,
                }
            }
        };
        let mut result = V2CheckIn {
            outcome: V2Outcome::Closed,
            bytes_sent: 0,
            bytes_received: 0,
            hello_bytes: n,
        };
        let patience = self.patience;
        let cut_after = self.cut_after;
        let store = &mut self.store;
        let run = async {
            if io.write_all(&out[..n]).await.is_err() {
                return V2Outcome::Closed;
            }
            result.bytes_sent += n;
            loop {
                match session.poll(store, &mut out) {
                    Ok(Poll::Send(n)) => {
                        if io.write_all(&out[..n]).await.is_err() {
                            return V2Outcome::Closed;
                        }
                        result.bytes_sent += n;
                    }
                    Ok(Poll::Receive) => {
                        let mut space = session.rx_buffer();
                        if let Some(limit) = cut_after {
                            let left = limit.saturating_sub(result.bytes_received);
                            if left == 0 {
                                return V2Outcome::Closed;
                            }
                            let keep = space.len().min(left);
                            space = &mut space[..keep];
                        }
                        match io.read(space).await {
                            Ok(0) | Err(_) => return V2Outcome::Closed,
                            Ok(n) => {
                                result.bytes_received += n;
                                session.rx_commit(n);
                            }
                        }
                    }
                    Ok(Poll::NoUpdate) => return V2Outcome::NoUpdate,
                    Ok(Poll::Committed(g)) => return V2Outcome::Committed(g),
                    Err(e) => return V2Outcome::Failed(e),
                }
            }
        };
        let outcome = tokio::time::timeout(patience, run)
            .await
            .unwrap_or(V2Outcome::TimedOut);
        let _ = io.shutdown().await;
        result.outcome = outcome;
        result
    }
}
