//! The dashboard's own test fixtures: a fake fleet (three devices, two rollouts) behind the
//! `Source` trait, and the dashboard served from it on 127.0.0.1 in a thread of its own.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rota_dashboard::{
    Boot, Device, DeviceHistory, FileVersion, Phase, Progress, Rollbacks, Rollout, Source,
    SourceError,
};

/// The boots the fake device 2 has.
pub const DEVICE_2_BOOTS: usize = 5;
/// The boot phases each of device 2's boots reports.
pub const PHASES: [&str; 4] = ["init", "tick", "provision", "app"];

/// A gate a test can close so that `devices()` blocks until it opens it again.
#[derive(Default)]
pub struct Gate {
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

/// A closed [`Gate`]: it opens when dropped.
pub struct Closed<'a>(&'a Gate);

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.0.open();
    }
}

impl Gate {
    /// Makes `devices()` wait until the guard is dropped (a failing test never leaves it closed,
    /// which would hang the server's shutdown).
    pub fn close(&self) -> Closed<'_> {
        self.state.lock().unwrap().0 = true;
        Closed(self)
    }
    fn open(&self) {
        self.state.lock().unwrap().0 = false;
        self.changed.notify_all();
    }
    /// Waits until `n` calls are held at the gate.
    pub fn wait_for_waiting(&self, n: usize) {
        let mut state = self.state.lock().unwrap();
        while state.1 < n {
            state = self.changed.wait(state).unwrap();
        }
    }
    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        state.1 += 1;
        self.changed.notify_all();
        while state.0 {
            state = self.changed.wait(state).unwrap();
        }
        state.1 -= 1;
    }
}

/// The fake fleet.
#[derive(Default)]
pub struct Fake {
    /// When set, every method fails with it.
    pub fail: Option<String>,
    /// Held by `devices()`.
    pub gate: Gate,
}

fn device(id: u64) -> Device {
    match id {
        1 => Device {
            id: 1,
            protocol: 1,
            release: Some("v1.0".into()),
            files: vec![FileVersion {
                name: "init.lua".into(),
                version: "3".into(),
            }],
            last_check_in: 1_790_000_000,
            peer: "127.0.0.1:40001".into(),
            outcome: "no-update".into(),
            rollbacks: Rollbacks::default(),
            signed: None,
            security_version: None,
            state: None,
        },
        2 => Device {
            id: 2,
            protocol: 2,
            release: Some("v1.1".into()),
            files: vec![
                FileVersion {
                    name: "app".into(),
                    version: "2".into(),
                },
                FileVersion {
                    name: "tick".into(),
                    version: "1".into(),
                },
            ],
            last_check_in: 1_790_000_500,
            peer: "127.0.0.1:40002".into(),
            outcome: "updated".into(),
            rollbacks: Rollbacks {
                count: 1,
                last: Some("generation 2 -> 1 (app panicked)".into()),
            },
            signed: Some(true),
            security_version: Some(3),
            state: Some("ab".repeat(32)),
        },
        _ => Device {
            id,
            protocol: 2,
            release: None,
            files: vec![],
            last_check_in: 1_790_000_900,
            peer: "127.0.0.1:40003".into(),
            outcome: "failed: <b>bad</b> digest".into(),
            rollbacks: Rollbacks::default(),
            signed: Some(false),
            security_version: Some(0),
            state: None,
        },
    }
}

/// Device 2's boots: every one reports all four phases, with figures that differ per boot.
pub fn boots_of_2() -> Vec<Boot> {
    (0..DEVICE_2_BOOTS as u32)
        .map(|b| Boot {
            time: 1_790_000_000 + 100 * u64::from(b),
            nonce: Some(10 + b),
            release: Some(if b < 3 { "v1.0" } else { "v1.1" }.into()),
            outcome: if b == 3 { "updated" } else { "no-update" }.into(),
            phases: PHASES
                .iter()
                .enumerate()
                .map(|(i, name)| Phase {
                    phase: i as u8,
                    name: (*name).into(),
                    heap_peak: 4096 * (i as u32 + 1) + 128 * b,
                    stack_peak: 1024 + 256 * i as u32 + 32 * b,
                    heap_used: 512 * i as u32,
                })
                .collect(),
        })
        .collect()
}

impl Fake {
    fn check(&self) -> Result<(), SourceError> {
        match &self.fail {
            Some(why) => Err(SourceError(why.clone())),
            None => Ok(()),
        }
    }
}

impl Source for Fake {
    fn devices(&self) -> Result<Vec<Device>, SourceError> {
        self.gate.pass();
        self.check()?;
        Ok(vec![device(1), device(2), device(3)])
    }

    fn device(&self, id: u64) -> Result<Option<DeviceHistory>, SourceError> {
        self.check()?;
        let boots = match id {
            1 => vec![Boot {
                time: 1_790_000_000,
                nonce: None,
                release: Some("v1.0".into()),
                outcome: "no-update".into(),
                phases: vec![],
            }],
            2 => boots_of_2(),
            3 => vec![],
            _ => return Ok(None),
        };
        Ok(Some(DeviceHistory {
            device: device(id),
            boots,
        }))
    }

    fn rollouts(&self) -> Result<Vec<Rollout>, SourceError> {
        self.check()?;
        Ok(vec![
            Rollout {
                id: "7".into(),
                release: "v1.1".into(),
                cohort: "20% of the fleet".into(),
                steps: vec![5, 25, 100],
                current_step: 1,
                status: "active".into(),
                progress: Progress {
                    cohort: 40,
                    updated: 9,
                    confirmed: 7,
                    rolled_back: 1,
                    failed: 2,
                },
            },
            Rollout {
                id: "8".into(),
                release: "v1.2".into(),
                cohort: "devices 1, 2".into(),
                steps: vec![50, 100],
                current_step: 0,
                status: "halted: 1 rollback of 1 update".into(),
                progress: Progress {
                    cohort: 2,
                    updated: 0,
                    confirmed: 0,
                    rolled_back: 1,
                    failed: 0,
                },
            },
        ])
    }
}

/// The dashboard served from a source on 127.0.0.1:0, on a runtime in a thread of its own; dropping
/// it shuts the server down and checks `serve` returned `Ok`.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Serves `source`.
    pub fn start(source: Arc<dyn Source>) -> Server {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                addr_tx.send(listener.local_addr()?).unwrap();
                rota_dashboard::serve(listener, source, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let addr = addr_rx.recv().expect("the server thread started");
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let result = self.thread.take().unwrap().join().expect("serve panicked");
        if !std::thread::panicking() {
            result.expect("serve returned an error");
        }
    }
}
