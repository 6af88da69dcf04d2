//! The coordinator: the bench repository, the servers (rota-server and the OK! baseline, each a
//! process), the worker processes, the phases and the figures.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::worker::{self, Order, Report};

/// The load and where to run it.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The rota-server binary (default: the one beside this program).
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// Devices in the boot storm (v1 and v2 alternating).
    #[arg(long, default_value_t = 10_000)]
    pub devices: u64,
    /// The storm's connects are spread evenly over this many milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub window_ms: u64,
    /// Devices on slow links held open at once (luaOTA devices trickling their HI line).
    #[arg(long, default_value_t = 10_000)]
    pub slow: u64,
    /// How long each slow device takes to send its HI line, in seconds.
    #[arg(long, default_value_t = 4.0)]
    pub slow_secs: f64,
    /// Fast devices checking in while the slow ones are open (v1 and v2 alternating).
    #[arg(long, default_value_t = 100)]
    pub fast: u64,
    /// Devices per worker process.
    #[arg(long, default_value_t = 2_500)]
    pub per_worker: u64,
    /// rota-server's state database (`--database` of rota-server; default: its SQLite file).
    #[arg(long)]
    pub database: Option<String>,
    /// rota-server processes sharing the port (SO_REUSEPORT) and the database.
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// Also write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// First device id of each population (distinct ranges: no device is in two).
const STORM_ID: u64 = 1_000_000;
const SLOW_ID: u64 = 2_000_000;
const FAST_ID: u64 = 3_000_000;

/// The slow devices' connects are ramped over this long.
const SLOW_RAMP: Duration = Duration::from_secs(2);
/// Lead time between an order and its schedule's start, so every worker has it first.
const LEAD: Duration = Duration::from_millis(500);

/// One measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// What was measured.
    pub phase: String,
    /// Successful check-ins.
    pub ok: usize,
    /// Failed check-ins.
    pub failures: u64,
    /// The first failure, if any.
    pub first_failure: Option<String>,
    /// Check-ins per second: successes over first start to last end.
    pub per_second: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Worst latency, milliseconds.
    pub max_ms: f64,
}

fn figures(phase: &str, reports: &[Report]) -> Figures {
    let mut lat: Vec<u64> = reports
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p).round() as usize)
            .map_or(f64::NAN, |&us| us as f64 / 1000.0)
    };
    let begin = reports.iter().map(|r| r.begin_ns).min().unwrap_or(0);
    let end = reports.iter().map(|r| r.end_ns).max().unwrap_or(0);
    let secs = (end.saturating_sub(begin)) as f64 / 1e9;
    Figures {
        phase: phase.to_owned(),
        ok: lat.len(),
        failures: reports.iter().map(|r| r.failures).sum(),
        first_failure: reports.iter().find_map(|r| r.first_failure.clone()),
        per_second: if secs > 0.0 {
            lat.len() as f64 / secs
        } else {
            0.0
        },
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Writes the bench repository: one inventory per device (luaOTA devices get a trimmed Lua file and
/// a data file, rota devices the data file).
fn write_repo(dir: &Path, ids: impl Iterator<Item = u64>) -> Result<(), String> {
    let write = |name: &str, data: &[u8]| {
        std::fs::write(dir.join(name), data).map_err(|e| format!("{name}: {e}"))
    };
    write(
        "init.lua",
        b"--SAFETRIM\nlocal n = 0 -- counter\nfor i = 1, 10 do n = n + i end\nreturn n\n",
    )?;
    write("data.txt", &[b'd'; 2500])?;
    for id in ids {
        let files: &[&str] = if worker::is_v2(id) {
            &["data.txt"]
        } else {
            &["init.lua", "data.txt"]
        };
        let json = serde_json::json!({ "files": files, "secret": worker::secret(id) });
        write(&format!("ESP-{id}.json"), json.to_string().as_bytes())?;
    }
    Ok(())
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A worker process and its order pipe.
struct Worker {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    first: u64,
}

impl Worker {
    fn spawn(first: u64, count: u64, v1_only: bool) -> Result<Worker, String> {
        let mut cmd = Command::new(crate::this_program()?);
        cmd.args(["worker", "--first-id", &first.to_string()])
            .args(["--count", &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if v1_only {
            cmd.arg("--v1-only");
        }
        let mut child = cmd.spawn().map_err(|e| format!("worker: {e}"))?;
        let stdin = child.stdin.take().ok_or("worker stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("worker stdout")?).lines();
        Ok(Worker {
            _child: child,
            stdin,
            stdout,
            first,
        })
    }

    async fn send(&mut self, order: &Order) -> Result<(), String> {
        let mut line = serde_json::to_vec(order).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.stdin.write_all(&line).await.map_err(|e| e.to_string())
    }

    async fn answer(&mut self) -> Result<Report, String> {
        let line = self
            .stdout
            .next_line()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("a worker exited")?;
        serde_json::from_str(&line).map_err(|e| format!("worker answer: {e}"))
    }
}

/// Workers for `n` devices from `first`, `per` each.
fn workers(first: u64, n: u64, per: u64, v1_only: bool) -> Result<Vec<Worker>, String> {
    (0..n.div_ceil(per))
        .map(|i| Worker::spawn(first + i * per, per.min(n - i * per), v1_only))
        .collect()
}

/// Sends `order(worker)` to every worker, then collects every answer.
async fn all(
    workers: &mut [Worker],
    order: impl Fn(&Worker) -> Order,
) -> Result<Vec<Report>, String> {
    for w in workers.iter_mut() {
        let o = order(w);
        w.send(&o).await?;
    }
    let mut reports = Vec::new();
    for w in workers.iter_mut() {
        reports.push(w.answer().await?);
    }
    Ok(reports)
}

/// A storm order: the workers' devices in id order, spread over `window` from `LEAD` from now.
fn run_order(
    addr: SocketAddr,
    start_ns: u64,
    first: u64,
    total: u64,
    window: Duration,
    trickle: Duration,
    baseline: bool,
) -> impl Fn(&Worker) -> Order {
    move |w| Order::Run {
        addr,
        start_ns,
        offset: w.first - first,
        total,
        window_ns: window.as_nanos() as u64,
        trickle_ns: trickle.as_nanos() as u64,
        baseline,
    }
}

async fn start_servers(args: &BenchArgs, repo: &Path) -> Result<(Vec<Child>, SocketAddr), String> {
    let program = match &args.server {
        Some(p) => p.clone(),
        None => crate::this_program()?.with_file_name("rota-server"),
    };
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let mut children = Vec::new();
    for _ in 0..args.instances.max(1) {
        let mut cmd = Command::new(&program);
        cmd.arg("serve")
            .arg("--repo")
            .arg(repo)
            .args(["--listen", &addr.to_string()])
            .args([
                "--max-sessions",
                "15000",
                "--max-sessions-per-peer",
                "15000",
            ])
            .args(["--first-record-timeout", "20", "--log-level", "error"])
            .kill_on_drop(true);
        if args.instances > 1 {
            cmd.arg("--reuse-port");
        }
        if let Some(db) = &args.database {
            cmd.args(["--database", db]);
        }
        children.push(
            cmd.spawn()
                .map_err(|e| format!("{}: {e}", program.display()))?,
        );
    }
    // Up when it answers a connection.
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok((children, addr));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(format!(
        "{} did not start listening on {addr}",
        program.display()
    ))
}

async fn start_baseline() -> Result<(Child, SocketAddr), String> {
    let mut child = Command::new(crate::this_program()?)
        .arg("ok-server")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("ok-server: {e}"))?;
    let stdout = child.stdout.take().ok_or("ok-server stdout")?;
    let port = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("ok-server exited")?;
    let addr = format!("127.0.0.1:{port}")
        .parse()
        .map_err(|e| format!("ok-server port: {e}"))?;
    Ok((child, addr))
}

/// Runs both cases against the baseline and rota-server, prints a table, and fails when rota-server
/// failed a check-in.
pub async fn run(args: BenchArgs) -> Result<(), String> {
    let repo = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ids = (STORM_ID..STORM_ID + args.devices)
        .chain(SLOW_ID..SLOW_ID + args.slow)
        .chain(FAST_ID..FAST_ID + args.fast);
    write_repo(repo.path(), ids)?;
    // Files changed within the racy window are re-read at every check-in; a deployed repository is
    // older than that.
    tokio::time::sleep(rota_server::repo::RACY_WINDOW).await;
    let (_servers, addr) = start_servers(&args, repo.path()).await?;
    let (_baseline, base_addr) = start_baseline().await?;

    let per = args.per_worker.max(1);
    let mut storm = workers(STORM_ID, args.devices, per, false)?;
    let mut slow = workers(SLOW_ID, args.slow, per, true)?;
    let mut fast = workers(FAST_ID, args.fast, per, false)?;
    let t = std::time::Instant::now();
    for group in [&mut storm, &mut slow, &mut fast] {
        let reports = all(group, |_| Order::Provision { addr }).await?;
        let f = figures("provision", &reports);
        if f.failures > 0 {
            return Err(format!(
                "provisioning failed {} times: {}",
                f.failures,
                f.first_failure.unwrap_or_default()
            ));
        }
    }
    eprintln!(
        "provisioned {} devices in {:.1} s",
        args.devices + args.slow + args.fast,
        t.elapsed().as_secs_f64()
    );

    let window = Duration::from_millis(args.window_ms);
    let trickle = Duration::from_secs_f64(args.slow_secs);
    let mut results = Vec::new();
    for (name, target, baseline) in [
        ("baseline (OK!)", base_addr, true),
        ("rota-server", addr, false),
    ] {
        let start = unix_ns() + LEAD.as_nanos() as u64;
        let order = run_order(
            target,
            start,
            STORM_ID,
            args.devices,
            window,
            Duration::ZERO,
            baseline,
        );
        let reports = all(&mut storm, order).await?;
        results.push(figures(
            &format!(
                "{name}: storm, {} devices in {} ms",
                args.devices, args.window_ms
            ),
            &reports,
        ));

        // Slow links: the slow devices ramp up; the fast ones check in once they are all open.
        let start = unix_ns() + LEAD.as_nanos() as u64;
        let slow_order = run_order(
            target, start, SLOW_ID, args.slow, SLOW_RAMP, trickle, baseline,
        );
        for w in slow.iter_mut() {
            let o = slow_order(w);
            w.send(&o).await?;
        }
        let fast_start = start + SLOW_RAMP.as_nanos() as u64 + 200_000_000;
        let fast_window = trickle
            .saturating_sub(SLOW_RAMP)
            .max(Duration::from_millis(500));
        let fast_reports = all(
            &mut fast,
            run_order(
                target,
                fast_start,
                FAST_ID,
                args.fast,
                fast_window,
                Duration::ZERO,
                baseline,
            ),
        )
        .await?;
        let mut slow_reports = Vec::new();
        for w in slow.iter_mut() {
            slow_reports.push(w.answer().await?);
        }
        results.push(figures(
            &format!(
                "{name}: {} fast devices beside {} slow links",
                args.fast, args.slow
            ),
            &fast_reports,
        ));
        results.push(figures(
            &format!(
                "{name}: the {} slow links ({} s each)",
                args.slow, args.slow_secs
            ),
            &slow_reports,
        ));
    }

    println!(
        "{:<62} {:>7} {:>6} {:>10} {:>8} {:>8} {:>8}",
        "phase", "ok", "failed", "per s", "p50 ms", "p99 ms", "max ms"
    );
    for f in &results {
        println!(
            "{:<62} {:>7} {:>6} {:>10.0} {:>8.2} {:>8.2} {:>8.2}",
            f.phase, f.ok, f.failures, f.per_second, f.p50_ms, f.p99_ms, f.max_ms
        );
        if let Some(why) = &f.first_failure {
            println!("    first failure: {why}");
        }
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&results).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let failed: u64 = results
        .iter()
        .filter(|f| f.phase.starts_with("rota-server"))
        .map(|f| f.failures)
        .sum();
    if failed > 0 {
        return Err(format!("rota-server failed {failed} check-ins"));
    }
    Ok(())
}
