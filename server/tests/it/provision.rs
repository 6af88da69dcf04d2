//! Provisioning sessions end to end, through the device simulator.

use std::process::Stdio;
use std::time::Duration;

use rota_devices::nodemcu::{AppReason, CheckIn, Device, Outcome};
use rota_server::repo::{content_number, fingerprint, Repo};
use rota_server::session::{Limits, Outcome as ServerOutcome, SessionError};
use rota_server::trim;
use serde_json::Value;

use crate::common::{data_txt, git, init_lua, start, Fixture};

/// `a` (or `r`) and `name` of each record received, e.g. `pu`, `cm:init.lua`, `restart`, `OK!`.
fn commands(check: &CheckIn) -> Vec<String> {
    check
        .received
        .iter()
        .map(|r| {
            assert!(r.tag_ok, "badly signed record {}", r.json);
            let obj: serde_json::Map<String, Value> = serde_json::from_str(&r.json).unwrap();
            let a = obj
                .get("a")
                .or(obj.get("r"))
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned();
            match obj.get("name") {
                Some(Value::String(n)) => format!("{a}:{n}"),
                _ => a,
            }
        })
        .collect()
}

fn config(device: &Device) -> serde_json::Map<String, Value> {
    device.boot_config().unwrap().0
}

#[tokio::test]
async fn full_then_no_update_then_one_file_change() {
    let fx = Fixture::standard();
    let mut server = fx.start().await;
    let mut device = Device::new(11223344, "supersekrit", "127.0.0.1", server.addr.port());

    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, Outcome::Restarted);
    assert_eq!(
        commands(&check),
        [
            "pu",
            "cm:init.lua",
            "pu",
            "pu",
            "dl:data.txt",
            "dl:lib/util.lc",
            "restart"
        ]
    );
    let payloads: Vec<usize> = check.received.iter().map(|r| r.payload).collect();
    let trimmed = trim::safetrim(&init_lua());
    assert_eq!(
        payloads,
        [1024, trimmed.len() - 1024, 1024, 1024, 452, 24, 0],
        "chunks of 1024, the rest last"
    );
    assert_eq!(device.sources["init.lua"], trimmed);
    assert!(
        device.fs.contains_key("init.lc"),
        "cm stores the compiled .lc"
    );
    assert!(!device.fs.contains_key("init.lua"));
    assert_eq!(device.fs["data.txt"], data_txt());
    assert_eq!(device.fs["lib/util.lc"], b"\x1bLuaQ\x00compiled elsewhere");
    let cfg = config(&device);
    let numbers = [
        content_number(&trimmed),
        content_number(&data_txt()),
        content_number(b"\x1bLuaQ\x00compiled elsewhere"),
    ];
    let names = ["init.lua", "data.txt", "lib/util.lc"];
    assert_eq!(
        cfg["chk"],
        fingerprint(names.iter().copied().zip(numbers.iter().copied()))
    );
    assert_eq!(cfg["files"]["data.txt"], numbers[1]);
    assert_eq!(cfg["ssid"], "YourSID", "the HI's config is kept");
    let report = server.report().await;
    assert_eq!(report.device, Some(11223344));
    assert_eq!(report.outcome.unwrap(), ServerOutcome::Updated);
    assert_eq!(report.files, 3);
    assert_eq!(report.bytes, check.bytes_received);

    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, Outcome::NoUpdate);
    assert_eq!(commands(&check), ["OK!"]);
    assert_eq!(
        check.bytes_received,
        b"{\"r\":\"OK!\"}4ef057\n".len() as u64
    );
    assert_eq!(
        server.report().await.outcome.unwrap(),
        ServerOutcome::NoUpdate
    );

    let mut changed = data_txt();
    changed[100] ^= 0xff;
    fx.write("data.txt", &changed);
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(commands(&check), ["pu", "pu", "dl:data.txt", "restart"]);
    assert_eq!(device.fs["data.txt"], changed);
    assert_eq!(server.report().await.files, 1);
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, Outcome::NoUpdate);
}

#[tokio::test]
async fn numbers_follow_content_not_mtime() {
    let fx = Fixture::standard();
    let mut device = Device::new(1, "supersekrit", "127.0.0.1", 8266);
    let server = fx.start().await;
    assert_eq!(
        device.check_in_tcp(server.addr).await.unwrap().outcome,
        Outcome::Restarted
    );

    // A copy (every mtime new) is still the same content: no re-send.
    let copy = Fixture::empty();
    for name in ["init.lua", "data.txt", "lib/util.lc", "default.json"] {
        copy.write(name, &std::fs::read(fx.path().join(name)).unwrap());
    }
    let copied = copy.start().await;
    assert_eq!(
        device.check_in_tcp(copied.addr).await.unwrap().outcome,
        Outcome::NoUpdate
    );

    // A same-size edit within the same second (mtime restored) is still seen.
    let path = copy.path().join("data.txt");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut edited = data_txt();
    edited[0] ^= 1;
    copy.write("data.txt", &edited);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    let check = device.check_in_tcp(copied.addr).await.unwrap();
    assert_eq!(commands(&check), ["pu", "pu", "dl:data.txt", "restart"]);
}

#[tokio::test]
async fn default_json_is_the_fallback_and_own_inventory_wins() {
    let fx = Fixture::standard();
    fx.write("own.txt", b"mine");
    fx.inventory("ESP-42.json", &["own.txt"], "forty-two");
    let server = fx.start().await;

    let mut own = Device::new(42, "forty-two", "127.0.0.1", 8266);
    let check = own.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(commands(&check), ["dl:own.txt", "restart"]);

    // Device 43 has no ESP-43.json: default.json (and its secret) applies.
    let mut other = Device::new(43, "supersekrit", "127.0.0.1", 8266);
    let check = other.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, Outcome::Restarted);
    assert!(other.fs.contains_key("data.txt") && !other.fs.contains_key("own.txt"));
}

#[tokio::test]
async fn cm_for_lua_dl_for_everything_else() {
    let fx = Fixture::empty();
    fx.write("a.lua", b"return 1");
    fx.write("b.lc", b"\x1bLua");
    fx.write("c.json", b"{}");
    fx.write("d.lua.txt", b"not lua");
    fx.write("empty.txt", b"");
    fx.inventory(
        "default.json",
        &["a.lua", "b.lc", "c.json", "d.lua.txt", "empty.txt"],
        "s",
    );
    let server = fx.start().await;
    let mut device = Device::new(5, "s", "127.0.0.1", 8266);
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(
        commands(&check),
        [
            "cm:a.lua",
            "dl:b.lc",
            "dl:c.json",
            "dl:d.lua.txt",
            "dl:empty.txt",
            "restart"
        ]
    );
    assert_eq!(
        device.sources["a.lua"], b"return 1",
        "no --SAFETRIM: sent as is"
    );
    assert_eq!(device.fs["empty.txt"], b"");
}

#[tokio::test]
async fn files_are_pruned_to_the_inventory() {
    let fx = Fixture::standard();
    let server = fx.start().await;
    let mut device = Device::new(9, "supersekrit", "127.0.0.1", 8266);
    device.check_in_tcp(server.addr).await.unwrap();
    fx.inventory("default.json", &["data.txt"], "supersekrit");
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(commands(&check), ["restart"], "data.txt is already there");
    let files = config(&device)["files"].as_object().unwrap().clone();
    assert_eq!(files.keys().collect::<Vec<_>>(), ["data.txt"]);
    assert_eq!(
        device.check_in_tcp(server.addr).await.unwrap().outcome,
        Outcome::NoUpdate
    );
}

#[tokio::test]
async fn a_lua_file_that_does_not_compile_is_never_sent() {
    let fx = Fixture::standard();
    fx.write("broken.lua", b"local ok = 1\nlocal = 2\n");
    fx.inventory("default.json", &["data.txt", "broken.lua"], "supersekrit");
    let mut server = fx.start().await;
    let mut device = Device::new(3, "supersekrit", "127.0.0.1", 8266);
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, Outcome::AppStarted(AppReason::ClosedEarly));
    assert!(check.received.is_empty(), "not even data.txt is sent");
    let report = server.report().await;
    let err = report.outcome.unwrap_err();
    assert!(matches!(&err, SessionError::Lua { file, .. } if file == "broken.lua"));
    let text = err.to_string();
    assert!(
        text.contains("broken.lua:2:") && text.contains("near '='"),
        "{text}"
    );
}

#[tokio::test]
async fn a_restart_that_could_brick_is_refused() {
    let fx = Fixture::empty();
    let names: Vec<String> = (0..50)
        // At most 31 bytes each (what NodeMCU can open): lib/a_long_module_name_49.txt is 29.
        .map(|i| format!("lib/a_long_module_name_{i:02}.txt"))
        .collect();
    for n in &names {
        fx.write(n, b"x");
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    fx.inventory("default.json", &refs, "s");
    let mut server = fx.start().await;
    let mut device = Device::new(3, "s", "127.0.0.1", 8266);
    let before = device.fs.clone();
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert!(check.received.is_empty());
    assert_eq!(device.fs, before, "nothing written: the device still boots");
    let text = server.report().await.outcome.unwrap_err().to_string();
    assert!(
        text.contains("restart record refused") && text.contains("shorten"),
        "{text}"
    );

    // Fewer files fit on the wire but the stored config would exceed 1000 bytes.
    fx.inventory("default.json", &refs[..22], "s");
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert!(check.received.is_empty());
    let text = server.report().await.outcome.unwrap_err().to_string();
    assert!(
        text.contains("config would be") && text.contains("1000"),
        "{text}"
    );

    fx.inventory("default.json", &refs[..15], "s");
    assert_eq!(
        device.check_in_tcp(server.addr).await.unwrap().outcome,
        Outcome::Restarted
    );
    assert!(device.fs[rota_devices::nodemcu::CONFIG_FILE].len() <= 1000);
    assert_eq!(
        device.check_in_tcp(server.addr).await.unwrap().outcome,
        Outcome::NoUpdate
    );
}

/// NodeMCU's `file.open` raises `filename invalid` above 31 bytes, so a real device would panic and
/// reboot at every boot on such a file: the inventory is refused for v1 devices before anything is
/// sent, and the error names the file. 31 bytes are served.
#[tokio::test]
async fn a_file_name_over_31_bytes_is_refused_before_anything_is_sent() {
    let fx = Fixture::standard();
    let long = "lib/a_module_name_of_32_bytes.lc";
    let fits = "lib/a_module_name_of_31_byte.lc";
    assert_eq!((long.len(), fits.len()), (32, 31));
    fx.write(long, b"long");
    fx.write(fits, b"fits");
    fx.inventory("ESP-4.json", &["data.txt", long], "four");
    let mut server = fx.start().await;
    let mut device = Device::new(4, "four", "127.0.0.1", 8266);
    let before = device.fs.clone();
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, Outcome::AppStarted(AppReason::ClosedEarly));
    assert!(check.received.is_empty(), "not even data.txt is sent");
    assert_eq!(check.bytes_received, 0);
    assert_eq!(device.fs, before, "nothing written: the device still boots");
    let err = server.report().await.outcome.unwrap_err();
    assert!(
        matches!(&err, SessionError::Restart(rota_server::restart::RestartError::NameTooLong { name, .. }) if name == long),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(long) && text.contains("31"), "{text}");

    fx.inventory("ESP-4.json", &["data.txt", fits], "four");
    let check = device.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, Outcome::Restarted);
    assert_eq!(device.fs[fits], b"fits");
    assert_eq!(device.fs["data.txt"], data_txt());
    assert!(server.report().await.outcome.is_ok());
}

#[tokio::test]
async fn rev_serves_the_commit_not_the_working_tree() {
    let work = Fixture::empty();
    let fx = Fixture::standard();
    // The repository is the subdirectory `ota` of a git work tree.
    let ota = work.path().join("ota");
    for name in ["init.lua", "data.txt", "lib/util.lc", "default.json"] {
        let path = ota.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, std::fs::read(fx.path().join(name)).unwrap()).unwrap();
    }
    git(work.path(), &["init", "-q"]);
    git(work.path(), &["add", "."]);
    git(work.path(), &["commit", "-q", "-m", "v1"]);
    // The working tree moves on: changed, deleted and uncommitted files.
    std::fs::write(ota.join("data.txt"), b"uncommitted edit").unwrap();
    std::fs::remove_file(ota.join("lib/util.lc")).unwrap();

    let committed = start(Repo::open_rev(&ota, "HEAD").unwrap(), Limits::default()).await;
    let mut device = Device::new(8, "supersekrit", "127.0.0.1", 8266);
    let check = device.check_in_tcp(committed.addr).await.unwrap();
    assert_eq!(check.outcome, Outcome::Restarted);
    assert_eq!(device.fs["data.txt"], data_txt());
    assert_eq!(device.fs["lib/util.lc"], b"\x1bLuaQ\x00compiled elsewhere");

    // The working tree itself would be refused (a file is missing) ...
    let worktree = start(Repo::open_dir(&ota).unwrap(), Limits::default()).await;
    let check = device.check_in_tcp(worktree.addr).await.unwrap();
    assert!(check.received.is_empty());
    // ... and a bad revision is a clear error at start.
    let err = Repo::open_rev(&ota, "no-such-branch").err().unwrap();
    assert!(err.to_string().starts_with("git:"), "{err}");
}

/// `serve-stdio`: one session per process over stdin/stdout, as emulated devices use it.
#[tokio::test]
async fn serve_stdio_runs_one_session() {
    let fx = Fixture::standard();
    let mut device = Device::new(77, "supersekrit", "127.0.0.1", 8266);
    for expected in [Outcome::Restarted, Outcome::NoUpdate] {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rota-server"))
            .args(["serve-stdio", "--repo"])
            .arg(fx.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut io = tokio::io::join(child.stdout.take().unwrap(), child.stdin.take().unwrap());
        let check = device
            .check_in(&mut io, tokio::time::Instant::now())
            .await
            .unwrap();
        assert_eq!(check.outcome, expected);
        // The process ends after its session even while the device keeps the pipe open.
        let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
            .await
            .expect("serve-stdio exits after one session")
            .unwrap();
        drop(io);
        assert!(out.status.success());
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            log.contains("device=77") && log.contains("peer=stdio"),
            "{log}"
        );
    }
    assert_eq!(device.fs["data.txt"], data_txt());
}
