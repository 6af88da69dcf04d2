//! The whole system on this machine: a real `rota-server` on 127.0.0.1 serving a git repository, and
//! an emulated device with persistent storage, an mps2-an385 or an esp8266 on the xtfpga machine, that
//! reaches it only through QEMU's `-nic user,restrict=on,guestfwd=...` and `rota-bridge`.

use crate::line::Tap;
use crate::net::Mps2Run;
use crate::serial::{self, SerialBoot};
use crate::xtfpga::XtfpgaRun;
use crate::{artifact, Machine, Run};
use rota_image::FileSpec;
use rota_wire::DeviceConfig;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The demo device's id (`ESP-1001.json` on the server).
pub const DEVICE_ID: u32 = 1001;
/// The demo device's secret.
pub const SECRET: &str = "demo-secret-1001";
/// The files of a release, in inventory order.
pub use rota_limits::BLOBS as FILES;

/// The demo's second device, the ESP8266 (LX106) on the xtfpga machine, beside the mps2-an385
/// ([`DEVICE_ID`]) in the same repository (`ESP-1002.json`).
pub const LX106_DEVICE_ID: u32 = 1002;
/// That device's secret.
pub const LX106_SECRET: &str = "demo-secret-1002";

/// The whole device's data RAM (statics, the arena where it is data RAM, heap and stack peaks) that
/// `provision` may use on `machine` speaking `protocol`, network up, signed release or not: 20 KB
/// (issue 9), but for mps2's v1 mode, whose 4 KB file buffer and line buffer come on top of the
/// network (24 KB).
pub fn provision_ram_limit(machine: Machine, protocol: u8) -> u64 {
    match (machine, protocol) {
        (Machine::Mps2An385, 1) => 24 * 1024,
        _ => 20 * 1024,
    }
}

/// The demo device's config: static 10.0.2.15/24, server 10.0.2.100:8266, protocol v2.
pub fn device_config(secret: &str) -> DeviceConfig {
    device_config_for(DEVICE_ID, secret)
}

/// [`device_config`] for device `device_id`.
pub fn device_config_for(device_id: u32, secret: &str) -> DeviceConfig {
    DeviceConfig {
        device_id,
        secret: heapless::Vec::from_slice(secret.as_bytes()).expect("secret fits"),
        server: [10, 0, 2, 100],
        port: 8266,
        leave: false,
        app: heapless::String::try_from("app").expect("fits"),
        entry: heapless::String::new(),
        ip: Some([10, 0, 2, 15]),
        gateway: [10, 0, 2, 2],
        netmask: [255, 255, 255, 0],
        dns: [0; 4],
        protocol: rota_wire::VERSION,
        link: rota_wire::Link::Tcp,
        trials: rota_wire::config::DEFAULT_TRIALS,
        keys: heapless::Vec::new(),
        chk: heapless::String::new(),
        files: heapless::Vec::new(),
    }
}

/// A release's blobs for `machine`: version 1 is what `make overlays` builds; version 2 replaces each
/// blob that the Makefile's `UPDATED` list rebuilt with `ROTA_VERSION=2` (in `<isa>/v2/`).
pub fn release(machine: Machine, version: u32) -> Vec<FileSpec> {
    FILES
        .iter()
        .map(|&name| {
            let v2 = format!("{}/v2/{name}.blob", machine.isa_dir());
            let rel = if version == 2 && crate::build_dir().join(&v2).exists() {
                v2
            } else {
                format!("{}/{name}.blob", machine.isa_dir())
            };
            FileSpec {
                name: name.to_string(),
                data: std::fs::read(artifact(&rel)).expect("read blob"),
                version: 1,
            }
        })
        .collect()
}

/// A storage image for `machine` holding `files` and the demo device config (with `secret`).
pub fn storage_image(machine: Machine, files: &[FileSpec], secret: &str) -> Vec<u8> {
    storage_image_with(machine, &device_config(secret), files)
}

/// A storage image for `machine` holding `files` and `config`: a blob the machine's core runs in
/// place relocated is stored relocated for its address there, as the core would stage it.
pub fn storage_image_with(machine: Machine, config: &DeviceConfig, files: &[FileSpec]) -> Vec<u8> {
    rota_image::build_for(rota_image::REGION_SIZE, config, files, machine.in_place())
        .expect("image")
}

/// A host program built by `cargo build` in the profile directory that holds the running executable.
pub fn host_bin(name: &str) -> PathBuf {
    crate::beside_exe(name)
        .unwrap_or_else(|| panic!("{name} is missing: run `cargo build` (make test does)"))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A running `rota-server serve` on 127.0.0.1 over a git repository; killed when dropped.
pub struct Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The repository directory.
    pub repo: tempfile::TempDir,
    child: Child,
}

impl Server {
    /// Commits `files` and the inventory of [`DEVICE_ID`] (with `secret`) to a new repository and serves it.
    pub fn start(files: &[FileSpec], secret: &str) -> Server {
        Server::start_with_config(files, secret, None)
    }

    /// As [`Server::start`], with an inventory `config` object (JSON) that the device is to store.
    pub fn start_with_config(files: &[FileSpec], secret: &str, config: Option<&str>) -> Server {
        let repo = tempfile::tempdir().expect("repo dir");
        git(repo.path(), &["init", "-q"]);
        commit_release(repo.path(), DEVICE_ID, files, secret, config);
        let (port, child) = serve(repo.path(), "HEAD");
        Server { port, repo, child }
    }

    /// As [`Server::start`], with the release signed by `rota-sign release` (`signer`) beside the
    /// inventory.
    pub fn start_signed(files: &[FileSpec], secret: &str, signer: &Signer) -> Server {
        let repo = tempfile::tempdir().expect("repo dir");
        git(repo.path(), &["init", "-q"]);
        write_release(repo.path(), DEVICE_ID, files, secret, None);
        signer.sign(repo.path(), DEVICE_ID);
        commit(repo.path());
        let (port, child) = serve(repo.path(), "HEAD");
        Server { port, repo, child }
    }

    /// The device's last check-in as the server recorded it, if any: `rota-server fleet --json`
    /// of the repository (the fleet's export, JSON; this server serves that one device).
    pub fn last_check_in(&self) -> Option<String> {
        let out = Command::new(host_bin("rota-server"))
            .arg("fleet")
            .arg(self.repo.path())
            .arg("--json")
            .output()
            .ok()?;
        let json = String::from_utf8(out.stdout).ok()?;
        json.contains(&format!("\"device\": {DEVICE_ID},"))
            .then_some(json)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A release key made by `rota-sign keygen`, and the security version and ISA it signs releases
/// with.
pub struct Signer {
    /// The key pair's path, without `.key`/`.pub`.
    pub path: PathBuf,
    /// The security version of the releases it signs.
    pub security_version: u32,
    /// The ISA of the blobs (`thumbv7m` or `lx106`).
    pub isa: &'static str,
    _dir: tempfile::TempDir,
}

impl Signer {
    /// A new key pair (`rota-sign keygen`) signing for `machine` at `security_version`.
    pub fn new(machine: Machine, security_version: u32) -> Signer {
        let dir = tempfile::tempdir().expect("key dir");
        let path = dir.path().join("release");
        run(Command::new(host_bin("rota-sign"))
            .args(["keygen", "--out"])
            .arg(&path));
        Signer {
            path,
            security_version,
            isa: machine.isa_dir(),
            _dir: dir,
        }
    }

    /// The public key (what a device's config holds).
    pub fn public_key(&self) -> [u8; 32] {
        let text = std::fs::read_to_string(self.path.with_extension("pub")).expect("public key");
        rota_release::from_hex(&text).expect("a public key file of rota-sign")
    }

    /// Signs device `id`'s release in the work tree `repo` (`rota-sign release`).
    pub fn sign(&self, repo: &Path, id: u32) {
        run(Command::new(host_bin("rota-sign"))
            .args(["release", "--repo"])
            .arg(repo)
            .args(["--device", &id.to_string(), "--key"])
            .arg(self.path.with_extension("key"))
            .args([
                "--security-version",
                &self.security_version.to_string(),
                "--isa",
                self.isa,
            ]));
    }
}

/// Runs `cmd`; panics with its output unless it succeeds.
fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Replaces the work tree of the git repository `repo` with `files` and the inventory of device `id`
/// (with `secret` and an optional `config` object), and commits it.
fn commit_release(repo: &Path, id: u32, files: &[FileSpec], secret: &str, config: Option<&str>) {
    write_release(repo, id, files, secret, config);
    commit(repo);
}

/// Replaces the work tree of `repo` with `files` and the inventory of device `id`.
fn write_release(repo: &Path, id: u32, files: &[FileSpec], secret: &str, config: Option<&str>) {
    for entry in std::fs::read_dir(repo).expect("read repo") {
        let path = entry.expect("repo entry").path();
        if path.file_name().is_some_and(|n| n != ".git") && path.is_file() {
            std::fs::remove_file(&path).expect("clear the work tree");
        }
    }
    for f in files {
        std::fs::write(repo.join(&f.name), &f.data).expect("write file");
    }
    let names: Vec<_> = files.iter().map(|f| format!("\"{}\"", f.name)).collect();
    std::fs::write(
        repo.join(format!("ESP-{id}.json")),
        format!(
            "{{\"files\": [{}], \"secret\": \"{secret}\"{}}}\n",
            names.join(", "),
            config
                .map(|c| format!(", \"config\": {c}"))
                .unwrap_or_default()
        ),
    )
    .expect("write inventory");
}

/// Commits the work tree of `repo`.
fn commit(repo: &Path) {
    git(repo, &["add", "-A", "."]);
    git(
        repo,
        &[
            "-c",
            "user.name=rota",
            "-c",
            "user.email=rota@localhost",
            "commit",
            "-qm",
            "release",
        ],
    );
}

/// Starts `rota-server serve` on 127.0.0.1 (a free port) for revision `rev` of the repository `repo`;
/// returns once it accepts connections.
fn serve(repo: &Path, rev: &str) -> (u16, Child) {
    let port = free_port();
    let child = Command::new(host_bin("rota-server"))
        .args(["serve", "--repo"])
        .arg(repo)
        .args(["--rev", rev, "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rota-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rota-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (port, child)
}

/// One device of a [`Fleet`]: its id, secret and the release the server offers it.
pub struct FleetDevice {
    /// The device id (`ESP-<id>.json`).
    pub id: u32,
    /// Its secret.
    pub secret: String,
    /// The files its inventory names, in order.
    pub files: Vec<FileSpec>,
}

/// Several devices in ONE server repository, each with its own release. The server names a device's
/// files by their repository paths and a rota device's files by their names on the device, so two
/// devices that need different bytes under the same name (`app` for thumbv7m and for the LX106)
/// cannot share one revision: each device's release is a branch (`device-<id>`) of the repository,
/// served by its own `rota-server --rev device-<id>` on 127.0.0.1. Every server records its check-ins
/// in the repository's state, so `rota-server fleet` on it lists them all. Killed when dropped.
pub struct Fleet {
    /// The repository directory.
    pub repo: tempfile::TempDir,
    servers: Vec<(u32, u16, Child)>,
}

impl Fleet {
    /// Commits each device's release to its branch and serves each.
    pub fn start(devices: &[FleetDevice]) -> Fleet {
        let repo = tempfile::tempdir().expect("repo dir");
        git(repo.path(), &["init", "-q"]);
        let mut servers = Vec::new();
        for d in devices {
            let branch = format!("device-{}", d.id);
            git(repo.path(), &["checkout", "-q", "-B", &branch]);
            commit_release(repo.path(), d.id, &d.files, &d.secret, None);
        }
        for d in devices {
            let (port, child) = serve(repo.path(), &format!("device-{}", d.id));
            servers.push((d.id, port, child));
        }
        Fleet { repo, servers }
    }

    /// The port on 127.0.0.1 of the server for device `id`.
    pub fn port(&self, id: u32) -> u16 {
        self.servers
            .iter()
            .find(|s| s.0 == id)
            .map(|s| s.1)
            .expect("a device of the fleet")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, _, child) in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .status()
        .expect("run git")
        .success();
    assert!(ok, "git {args:?} failed");
}

/// How to boot the device.
#[derive(Clone, Debug)]
pub struct Boot {
    /// The TCP port on 127.0.0.1 the guest's 10.0.2.100:8266 reaches (`None`: nothing answers).
    pub server: Option<u16>,
    /// Cut power at this flash operation of the run.
    pub cut: Option<u32>,
    /// Bytes typed on the console right after start.
    pub keys: Vec<u8>,
    /// Kill the emulator after this long.
    pub limit: Duration,
    /// A proxy on the serial line that records it and may damage a byte (a device on the serial
    /// line only).
    pub tap: Option<Tap>,
}

impl Boot {
    /// With the server on `port`, no cut, no keys, a 60 s limit.
    pub fn to(port: u16) -> Boot {
        Boot {
            server: Some(port),
            cut: None,
            keys: Vec::new(),
            limit: Duration::from_secs(60),
            tap: None,
        }
    }
}

/// An emulated device whose storage lives in a host file across runs, with the network and power cuts:
/// an mps2-an385, or an esp8266 on the xtfpga machine.
pub struct Device {
    machine: Machine,
    storage: tempfile::NamedTempFile,
    /// Its link to the server is over the console UART and `rota-bridge serial` ([`serial`]).
    serial: bool,
}

impl Device {
    /// An mps2-an385 whose flash holds `image`.
    pub fn new(image: &[u8]) -> Device {
        Device::on(Machine::Mps2An385, image)
    }

    /// A device of `machine` whose flash holds `image`. The esp8266 sim machine keeps no storage file:
    /// it cannot be a `Device`.
    pub fn on(machine: Machine, image: &[u8]) -> Device {
        assert_ne!(
            machine,
            Machine::Esp8266Sim,
            "the sim machine has no persistent storage: use boot()"
        );
        let mut storage = tempfile::NamedTempFile::new().expect("storage file");
        storage.write_all(image).expect("write storage");
        Device {
            machine,
            storage,
            serial: false,
        }
    }

    /// A device of `machine` whose flash holds `image` (a config with `link = Serial`), reaching
    /// the server over its console UART: a QEMU chardev socket joined by `rota-bridge serial`, which
    /// also prints the console and types the keys ([`serial`]).
    pub fn on_serial(machine: Machine, image: &[u8]) -> Device {
        Device {
            serial: true,
            ..Device::on(machine, image)
        }
    }

    /// The machine it runs on.
    pub fn machine(&self) -> Machine {
        self.machine
    }

    /// The flash contents now.
    pub fn image(&self) -> Vec<u8> {
        std::fs::read(self.storage.path()).expect("read storage")
    }

    /// Powers the device on until it exits (the app ran), a cut, or the time limit. A reboot inside
    /// the run (after an update) keeps going in the same run, as on hardware.
    pub fn boot(&self, b: &Boot) -> Run {
        if self.serial {
            let over = SerialBoot {
                server: b.server,
                keys: &b.keys,
                tap: b.tap.as_ref(),
                limit: b.limit,
            };
            return serial::boot(|line| self.command(b, Some(line)), &over);
        }
        assert!(
            b.tap.is_none(),
            "a line tap needs a device on the serial line"
        );
        // The UART is on QEMU's stdio: the keys below reach its receiver.
        let cmd = self.command(b, None);
        let mut child = crate::under_timeout(&cmd, b.limit)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run qemu (make setup installs it)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let keys = b.keys.clone();
        let reader = std::thread::spawn(move || console_typing(stdout, stdin, &keys));
        let out = child.wait_with_output().expect("qemu output");
        let status = out.status.code().filter(|&c| c != 124);
        let mut console = String::from_utf8_lossy(&reader.join().expect("reader")).into_owned();
        console.push_str(&String::from_utf8_lossy(&out.stderr));
        Run {
            console,
            status,
            log: String::new(),
        }
    }
}

impl Device {
    /// The QEMU command of boot `b`; with `line`, the console UART is on that chardev socket and the
    /// NIC has no forward.
    fn command(&self, b: &Boot, line: Option<&Path>) -> Command {
        let storage = self.storage.path().to_path_buf();
        let elf = match b.cut {
            Some(_) => self.machine.power_cut_firmware(),
            None => self.machine.firmware(),
        };
        let server = b.server.filter(|_| line.is_none());
        let line = line.map(Path::to_path_buf);
        match self.machine {
            Machine::Mps2An385 => {
                let mut qemu = Mps2Run::new(elf);
                qemu.storage = Some(storage);
                qemu.cut = b.cut;
                qemu.server_port = server;
                qemu.line = line;
                qemu.command()
            }
            Machine::Esp8266Xtfpga => {
                let mut qemu = XtfpgaRun::new(elf);
                qemu.storage = Some(storage);
                qemu.cut = b.cut;
                qemu.server_port = server;
                qemu.line = line;
                qemu.command()
            }
            Machine::Esp8266Sim => unreachable!("Device::on refuses the sim machine"),
        }
    }
}

/// Reads a console from `stdout` until it ends, typing `keys` into `stdin` at each new "press a
/// key" prompt (`tick` asks when it listens: the UART drops what arrives before it is on).
pub(crate) fn console_typing(mut stdout: impl Read, mut stdin: impl Write, keys: &[u8]) -> Vec<u8> {
    let mut console = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut prompts = 0;
    while let Ok(n) = stdout.read(&mut chunk) {
        if n == 0 {
            break;
        }
        console.extend_from_slice(&chunk[..n]);
        let seen = String::from_utf8_lossy(&console)
            .matches("press a key")
            .count();
        if !keys.is_empty() && seen > prompts {
            let _ = stdin.write_all(keys).and_then(|()| stdin.flush());
        }
        prompts = seen;
    }
    console
}
