//! The dashboard end to end: the real `rota-server serve --http` binary, luaOTA and rota devices
//! checking in over TCP, a rollout started with `rota-server rollout start`; then its JSON API read
//! over HTTP, and the page driven in Debian's headless chromium by `check.mjs` (Playwright): it lists
//! the devices that just checked in, plots a device's heap and stack peaks over its boots, and shows
//! the started rollout's progress.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rota_devices::nodemcu::{self, Device};
use rota_devices::rota::{RotaDevice, V2Outcome};
use rota_wire::msg::PhasePeak;
use serde_json::Value;

use crate::common::{free_port, git, init_lua, Fixture};

const SECRET: &str = "dashboard secret";
const ROTA: [u32; 3] = [11, 12, 13];
const LUAOTA: [u64; 2] = [21, 22];
const BOOTS: usize = 4;

/// Kills the server when the test ends, however it ends.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(repo: &Path, devices: SocketAddr, http: SocketAddr) -> Serving {
    let child = Command::new(env!("CARGO_BIN_EXE_rota-server"))
        .args(["serve", "--repo"])
        .arg(repo)
        .args([
            "--listen",
            &devices.to_string(),
            "--http",
            &http.to_string(),
        ])
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .spawn()
        .expect("rota-server runs");
    let serving = Serving(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(http).is_err() || TcpStream::connect(devices).is_err() {
        assert!(Instant::now() < deadline, "rota-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    serving
}

/// `GET path` over plain HTTP/1.1; the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn rollout_start(repo: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_rota-server"))
        .args(["rollout", "--repo"])
        .arg(repo)
        .arg("start")
        .args(args)
        .output()
        .expect("rota-server runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the browser check runs: always under CI (which installs chromium and Playwright with
/// `make browser-setup`), elsewhere with `ROTA_BROWSER=1`.
fn browser_wanted() -> bool {
    let asked = std::env::var_os("ROTA_BROWSER").is_some_and(|v| v == "1");
    assert!(
        asked || std::env::var_os("CI").is_none(),
        "CI runs the browser check: make test sets ROTA_BROWSER=1 after make browser-setup"
    );
    asked
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_fleet_a_device_plot_and_a_rollout_in_chromium() {
    let fx = Fixture::empty();
    git(fx.path(), &["init", "-q", "-b", "main"]);
    for tag in ["v1", "v2"] {
        fx.write("data.txt", format!("data of {tag}").as_bytes());
        fx.write("init.lua", &init_lua());
        for id in ROTA {
            let json =
                serde_json::json!({"files": ["data.txt"], "secret": SECRET, "release": "v1"});
            fx.write(&format!("ESP-{id}.json"), json.to_string().as_bytes());
        }
        for id in LUAOTA {
            let json = serde_json::json!({"files": ["init.lua"], "secret": SECRET});
            fx.write(&format!("ESP-{id}.json"), json.to_string().as_bytes());
        }
        git(fx.path(), &["add", "-A"]);
        git(fx.path(), &["commit", "-q", "-m", tag]);
        git(fx.path(), &["tag", tag]);
    }
    let (devices, http): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    );
    let _server = serve(fx.path(), devices, http);

    // rota devices boot BOOTS times, each reporting other peaks; luaOTA devices twice.
    let mut rota: Vec<RotaDevice> = ROTA
        .iter()
        .map(|&id| RotaDevice::new(id, SECRET.as_bytes()))
        .collect();
    for boot in 0..BOOTS as u32 {
        for d in &mut rota {
            d.heap.phases.clear();
            for (heap, stack) in [(1000 + 100 * boot, 500), (6000 - 200 * boot, 1400 + boot)] {
                d.heap.phases.push(PhasePeak { heap, stack }).unwrap();
            }
            let check = d.check_in_tcp(devices).await.unwrap();
            assert!(
                matches!(check.outcome, V2Outcome::Committed(_) | V2Outcome::NoUpdate),
                "{check:?}"
            );
        }
    }
    for id in LUAOTA {
        let mut d = Device::new(id, SECRET, "127.0.0.1", devices.port());
        assert_eq!(
            d.check_in_tcp(devices).await.unwrap().outcome,
            nodemcu::Outcome::Restarted
        );
        assert_eq!(
            d.check_in_tcp(devices).await.unwrap().outcome,
            nodemcu::Outcome::NoUpdate
        );
    }

    // A rollout of v2 to two devices; the server picks it up within its evaluation period, and the
    // first of them is updated at its next boot.
    rollout_start(
        fx.path(),
        &[
            "v2",
            "--id",
            "canary",
            "--devices",
            "11,12",
            "--steps",
            "100",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let check = rota[0].check_in_tcp(devices).await.unwrap();
        if matches!(check.outcome, V2Outcome::Committed(_)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout never reached device 11"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(rota[0].file("data.txt"), Some(&b"data of v2"[..]));

    // The JSON API: the rollout and its progress (the session's outcome is written just after the
    // device saw its commit), every device with its protocol and release, a device's history.
    let deadline = Instant::now() + Duration::from_secs(5);
    let rollouts = loop {
        let (_, rollouts) = get(http, "/api/rollouts");
        if rollouts[0]["progress"]["updated"] == 1 || Instant::now() > deadline {
            break rollouts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rollouts[0]["id"], "canary");
    assert_eq!(rollouts[0]["progress"]["cohort"], 2);
    assert_eq!(rollouts[0]["progress"]["updated"], 1);
    let (status, list) = get(http, "/api/devices");
    assert_eq!(status, 200);
    let list = list.as_array().expect("GET /api/devices is a JSON array");
    let ids: Vec<u64> = list.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [11, 12, 13, 21, 22]);
    let protocol = |id: u64| list.iter().find(|d| d["id"] == id).unwrap()["protocol"].clone();
    assert_eq!(
        (protocol(11), protocol(21)),
        (Value::from(2), Value::from(1))
    );
    assert_eq!(list[0]["release"], "v2");
    // A file by the release it is from, not by a hash-derived number: device 13 holds v1's
    // data.txt, which it is served; device 11 listed, as it checked in, content it is no longer
    // served (v1's, replaced by v2 in that session), shown by its digest.
    assert_eq!(list[2]["files"][0]["version"], "v1");
    let v1_data = list[0]["files"][0]["version"].as_str().unwrap();
    assert!(v1_data.starts_with("sha256:"), "{v1_data}");
    assert_eq!(list[1]["release"], "v1");
    let (_, history) = get(http, "/api/devices/13");
    let boots = history["boots"].as_array().unwrap().len();
    assert_eq!(boots, BOOTS);
    assert_eq!(get(http, "/api/devices/99").0, 404);

    if !browser_wanted() {
        eprintln!("the browser check runs with ROTA_BROWSER=1 (after make browser-setup)");
        return;
    }
    let browser = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/browser");
    let boots = boots.to_string();
    let out = Command::new("node")
        .current_dir(browser)
        .args(["check.mjs", "--url", &format!("http://{http}")])
        .args(["--devices", "11,12,13,21,22", "--device", "13"])
        .args(["--boots", &boots, "--rollout", "canary"])
        .output()
        .expect("node runs (make browser-setup)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check.mjs: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    eprintln!("browser check against rota-server: {report}");
    assert_eq!(report["devices"], 5);
    // Two phases reported, heap peak and stack peak each.
    assert_eq!(report["plot_series"], 4);
}
