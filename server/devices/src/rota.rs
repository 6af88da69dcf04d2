//! A rota (protocol v2) device simulator for tests and benchmarks: `rota-wire`'s [`DeviceSession`]
//! over any byte stream, with an in-memory [`FileStore`] that stages like the real store (staged data
//! survives a dropped connection; nothing is visible before commit).

use std::net::SocketAddr;
use std::time::Duration;

pub use rota_wire::mem::MemStore;
use rota_wire::msg::{flags, HeapSummary, Hello, PhasePeak};
use rota_wire::{Device, DeviceSession, Error, Poll, MAX_FRAME};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

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
    /// The instruction set it reports (`rota_blob::Isa`; 0: it runs no overlay blobs, so the
    /// server does not check them).
    pub isa: u8,
    /// The ABI version it reports.
    pub abi: u8,
    /// Its release keys (Ed25519 public keys): with any, it commits only signed releases.
    pub keys: Vec<[u8; 32]>,
    /// The rollback its Hello reports (a trial boot's core went back a generation), if any.
    pub rollback: Option<rota_wire::msg::Rollback>,
    /// Its files.
    pub store: MemStore,
    /// Its last boot's heap report.
    pub heap: HeapSummary,
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
            isa: 0,
            abi: 0,
            keys: Vec::new(),
            rollback: None,
            store: MemStore::default(),
            heap: HeapSummary {
                phases: [(2048, 900), (6144, 1400)]
                    .into_iter()
                    .map(|(heap, stack)| PhasePeak { heap, stack })
                    .collect(),
                residue: 0,
            },
            cut_after: None,
            patience: Duration::from_secs(20),
        }
    }

    /// The Hello its present state makes, with device nonce `nonce`.
    pub fn hello(&self, nonce: u32) -> Hello<'_> {
        let mut hello = self.store.check_in(self.id, nonce);
        hello.isa = self.isa;
        hello.abi = self.abi;
        if !self.keys.is_empty() {
            hello.flags |= flags::SIGNED;
        }
        hello.heap = self.heap.clone();
        hello.rollback = self.rollback;
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
        let nonce = self.store.reboot();
        let secret = self.secret.clone();
        let keys = self.keys.concat();
        let mut session = DeviceSession::for_device(Device {
            secret: &secret,
            link: rota_wire::Link::Tcp,
            keys: &keys,
            app: b"app",
            trials: 0,
            isa: self.isa,
            abi: self.abi,
            security_version: self.store.security_version,
        });
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
