//! One process of simulated devices. `bench` drives it over stdin/stdout, one JSON [`Order`] per line
//! in, one JSON answer per line out; it exits at the end of its stdin.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rota_devices::nodemcu::{Device, Outcome};
use rota_devices::rota::{RotaDevice, V2Outcome};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The devices of one worker.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// The first device id.
    #[arg(long)]
    pub first_id: u64,
    /// How many devices.
    #[arg(long)]
    pub count: u64,
    /// Every device speaks luaOTA (v1); otherwise odd ids are rota (v2) devices.
    #[arg(long)]
    pub v1_only: bool,
}

/// The secret of device `id` in the bench repository.
pub fn secret(id: u64) -> String {
    format!("storm-secret-{id}")
}

/// Whether device `id` is a rota (v2) device when v1 and v2 alternate.
pub fn is_v2(id: u64) -> bool {
    id % 2 == 1
}

/// What `bench` asks a worker to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Order {
    /// Check every device in once (it gets its files), so later check-ins are no-updates.
    Provision {
        /// The server.
        addr: SocketAddr,
    },
    /// Check every device in once, open loop: device `k` connects at `start_ns + (offset + k) *
    /// window_ns / total` (Unix nanoseconds).
    Run {
        /// The server.
        addr: SocketAddr,
        /// When the schedule starts.
        start_ns: u64,
        /// This worker's first device's place in the whole schedule.
        offset: u64,
        /// The whole schedule's size (all workers).
        total: u64,
        /// How long the schedule's connects are spread over.
        window_ns: u64,
        /// Send each v1 HI line in four pieces spread over this long (slow links); 0: at once.
        trickle_ns: u64,
        /// Whether the server is the constant-reply baseline, whose answers no device accepts: a
        /// check-in counts once the answer came.
        baseline: bool,
    },
}

/// A worker's answer to an [`Order`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Latency of each successful check-in, microseconds.
    pub latencies_us: Vec<u64>,
    /// Check-ins that failed.
    pub failures: u64,
    /// The first failure's description.
    pub first_failure: Option<String>,
    /// When the first check-in started and the last ended (Unix nanoseconds).
    pub begin_ns: u64,
    /// See `begin_ns`.
    pub end_ns: u64,
}

enum Sim {
    V1(Device),
    V2(Box<RotaDevice>),
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The `Instant` of Unix time `ns` (in the past: now).
fn instant_of(ns: u64) -> Instant {
    Instant::now() + Duration::from_nanos(ns.saturating_sub(unix_ns()))
}

/// Runs a worker: answers each order on stdin until it ends.
pub async fn run(args: WorkerArgs) -> Result<(), String> {
    // Every socket is a descriptor: take the hard limit.
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
    let mut devices: Vec<Option<Sim>> = (args.first_id..args.first_id + args.count)
        .map(|id| {
            Some(if is_v2(id) && !args.v1_only {
                Sim::V2(Box::new(RotaDevice::new(id as u32, secret(id).as_bytes())))
            } else {
                Sim::V1(Device::new(id, &secret(id), "127.0.0.1", 8266))
            })
        })
        .collect();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let order: Order = serde_json::from_str(&line).map_err(|e| format!("order: {e}"))?;
        let report = match order {
            Order::Provision { addr } => provision(&mut devices, addr).await,
            Order::Run {
                addr,
                start_ns,
                offset,
                total,
                window_ns,
                trickle_ns,
                baseline,
            } => {
                let at = |k: u64| {
                    instant_of(start_ns)
                        + Duration::from_nanos(
                            ((offset + k) as u128 * window_ns as u128 / total.max(1) as u128)
                                as u64,
                        )
                };
                check_in_all(
                    &mut devices,
                    addr,
                    at,
                    Duration::from_nanos(trickle_ns),
                    baseline,
                )
                .await
            }
        };
        let mut out = serde_json::to_vec(&report).map_err(|e| e.to_string())?;
        out.push(b'\n');
        stdout.write_all(&out).await.map_err(|e| e.to_string())?;
        stdout.flush().await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Most provisioning check-ins in flight per worker.
const PROVISION_PARALLEL: usize = 256;

async fn provision(devices: &mut [Option<Sim>], addr: SocketAddr) -> Report {
    let mut report = Report {
        begin_ns: unix_ns(),
        ..Report::default()
    };
    for chunk in devices.chunks_mut(PROVISION_PARALLEL) {
        let tasks: Vec<_> = chunk
            .iter_mut()
            .map(|slot| {
                let sim = slot.take().expect("every device is home between orders");
                tokio::spawn(async move {
                    let ok = match sim {
                        Sim::V1(mut d) => {
                            let r = d.check_in_tcp(addr).await;
                            let ok = matches!(&r, Ok(c) if c.outcome == Outcome::Restarted);
                            (Sim::V1(d), ok.then_some(()).ok_or(format!("{r:?}")))
                        }
                        Sim::V2(mut d) => {
                            let r = d.check_in_tcp(addr).await;
                            let ok =
                                matches!(&r, Ok(c) if matches!(c.outcome, V2Outcome::Committed(_)));
                            (Sim::V2(d), ok.then_some(()).ok_or(format!("{r:?}")))
                        }
                    };
                    ok
                })
            })
            .collect();
        for (slot, task) in chunk.iter_mut().zip(tasks) {
            let (sim, ok) = task.await.expect("a provisioning task");
            *slot = Some(sim);
            if let Err(why) = ok {
                report.failures += 1;
                report.first_failure.get_or_insert(why);
            }
        }
    }
    report.end_ns = unix_ns();
    report
}

async fn check_in_all(
    devices: &mut [Option<Sim>],
    addr: SocketAddr,
    at: impl Fn(u64) -> Instant,
    trickle: Duration,
    baseline: bool,
) -> Report {
    let tasks: Vec<_> = devices
        .iter_mut()
        .enumerate()
        .map(|(k, slot)| {
            let sim = slot.take().expect("every device is home between orders");
            let when = at(k as u64);
            tokio::spawn(async move {
                tokio::time::sleep_until(when).await;
                let begin = unix_ns();
                let start = Instant::now();
                let (sim, result) = match sim {
                    Sim::V1(d) => check_in_v1(d, addr, start, trickle, baseline).await,
                    Sim::V2(d) => check_in_v2(d, addr, start, baseline).await,
                };
                (sim, result, begin, unix_ns())
            })
        })
        .collect();
    let mut report = Report {
        begin_ns: u64::MAX,
        ..Report::default()
    };
    for (slot, task) in devices.iter_mut().zip(tasks) {
        let (sim, result, begin, end) = task.await.expect("a check-in task");
        *slot = Some(sim);
        report.begin_ns = report.begin_ns.min(begin);
        report.end_ns = report.end_ns.max(end);
        match result {
            Ok(latency) => report.latencies_us.push(latency.as_micros() as u64),
            Err(why) => {
                report.failures += 1;
                report.first_failure.get_or_insert(why);
            }
        }
    }
    report
}

async fn check_in_v1(
    mut d: Device,
    addr: SocketAddr,
    start: Instant,
    trickle: Duration,
    baseline: bool,
) -> (Sim, Result<Duration, String>) {
    d.first_record_window = trickle + Duration::from_secs(5);
    let result = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let c = d
            .check_in(Trickle::new(stream, trickle), start)
            .await
            .map_err(|e| e.to_string())?;
        match (c.first_record_after, c.outcome) {
            (Some(t), Outcome::NoUpdate) => Ok(t),
            (Some(t), _) if baseline => Ok(t),
            (_, outcome) => Err(format!("v1 device {}: {outcome:?}", d.id)),
        }
    }
    .await;
    (Sim::V1(d), result)
}

async fn check_in_v2(
    mut d: Box<RotaDevice>,
    addr: SocketAddr,
    start: Instant,
    baseline: bool,
) -> (Sim, Result<Duration, String>) {
    let result = match d.check_in_tcp(addr).await {
        Ok(c) if c.outcome == V2Outcome::NoUpdate => Ok(start.elapsed()),
        Ok(c) if baseline && c.bytes_received > 0 => Ok(start.elapsed()),
        Ok(c) => Err(format!("v2 device {}: {:?}", d.id, c.outcome)),
        Err(e) => Err(format!("v2 device {}: {e}", d.id)),
    };
    (Sim::V2(d), result)
}

/// Pieces a slow link's first write (its HI line) is sent in.
const PIECES: usize = 4;

/// A stream whose first write goes out in [`PIECES`] pieces spread evenly over a duration (the
/// first at once, the last at its end): a slow link's HI line. Later writes go out at once.
struct Trickle {
    inner: TcpStream,
    over: Duration,
    /// The piece size, set by the first write; `usize::MAX` once it is all out (or with no delay).
    piece: Option<usize>,
    left: usize,
    pause: Option<Pin<Box<Sleep>>>,
}

impl Trickle {
    fn new(inner: TcpStream, over: Duration) -> Self {
        Trickle {
            inner,
            over,
            piece: over.is_zero().then_some(usize::MAX),
            left: PIECES,
            pause: None,
        }
    }
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(pause) = self.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
        }
        let piece = *self.piece.get_or_insert(buf.len().div_ceil(PIECES).max(1));
        let n = buf.len().min(piece);
        let written = Pin::new(&mut self.inner).poll_write(cx, &buf[..n]);
        if matches!(written, Poll::Ready(Ok(_))) && piece != usize::MAX {
            self.left -= 1;
            if self.left == 0 {
                self.piece = Some(usize::MAX);
            } else {
                let gap = self.over / (PIECES as u32 - 1);
                self.pause = Some(Box::pin(tokio::time::sleep(gap)));
            }
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The baseline server: for every connection, one read, a constant `OK!` record, then waits for the
/// device to close (as in v1, the device closes first). No JSON, no HMAC, no repository, no state.
pub async fn ok_server(listen: SocketAddr) -> Result<(), String> {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
    let listener = rota_server::listen::bind(listen).map_err(|e| format!("{listen}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(format!("{port}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    stdout.flush().await.map_err(|e| e.to_string())?;
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut got = 0;
            // A v1 line ends in a line feed; a v2 Hello is one frame, read whole or in part.
            while got == 0 || (buf[0] == b'{' && !buf[..got].contains(&b'\n') && got < buf.len()) {
                match s.read(&mut buf[got..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got += n,
                }
            }
            let _ = s.write_all(b"{\"r\":\"OK!\"}4ef057\n").await;
            let _ = s.read(&mut buf).await;
        });
    }
}
