//! `make demo`: the whole system on this machine, on both emulated machines. One git repository
//! holds release 2 (a new application and new `tick` and `provision` overlays) for three devices: an
//! emulated mps2-an385 (Cortex-M3, device 1001) and the ESP8266's own CPU on QEMU's xtfpga board
//! (LX106, device 1002), both over TCP (through QEMU's guestfwd and `rota-bridge`), and a second LX106
//! (device 1003) over its serial line, as a real ESP8266 without a WiFi driver is updated: its console
//! UART on a QEMU chardev socket, `rota-bridge serial` joining it to the server and printing its
//! console. `rota-server` serves each its release on 127.0.0.1. Each device holds release 1, boots,
//! checks in, installs the update, reboots, gets "no update" in one round trip and runs the new
//! application. Then each one's heap report and the fleet as the server recorded it. Last, on the
//! mps2-an385, two releases that must not stay: one signed by a key the device does not hold, which
//! it refuses before it commits anything, and one whose app panics, which the device takes on trial,
//! rolls back after three trial boots and reports; the server records the rollback and holds the
//! release back.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
use rota_emu::system::{
    device_config, device_config_for, host_bin, release, storage_image, storage_image_with, Boot,
    Device, Fleet, FleetDevice, Server, Signer, DEVICE_ID, LX106_DEVICE_ID, LX106_SECRET, SECRET,
};
use rota_emu::{artifact, Machine, Run};
use rota_image::FileSpec;
use rota_wire::config::Link;
use std::process::{Command, ExitCode};

/// The device updated over its serial line (an LX106 beside device 1002).
const SERIAL_DEVICE_ID: u32 = 1003;
/// Its secret.
const SERIAL_SECRET: &str = "demo-secret-1003";

fn section(title: &str) {
    println!("\n=== {title} ===");
}

/// Whole-device data RAM per phase: statics + arena (where it is data RAM) + heap peak + stack peak.
fn ram_table(machine: Machine, run: &Run) {
    let Some(ram) = run.ram() else { return };
    println!(
        "RAM: statics {} B, arena {} B ({}), heap {} B, stack {} B",
        ram.statics,
        ram.arena,
        if machine.arena_is_data_ram() {
            "data RAM"
        } else {
            "IRAM, not counted below"
        },
        ram.heap,
        ram.stack
    );
    println!(
        "{:<10} {:>10} {:>11} {:>17}",
        "phase", "heap peak", "stack peak", "whole device (data RAM)"
    );
    for l in run.heap_lines() {
        let total = ram.data_ram(machine, &l);
        println!(
            "{:<10} {:>8} B {:>9} B {:>9} B ({:.1} KB)",
            l.phase,
            l.peak,
            l.stack_peak,
            total,
            total as f64 / 1024.0
        );
    }
}

/// Whether `run` shows the whole update: committed, rebooted into version 2 after one no-update
/// round trip, heap residue 0.
fn updated(run: &Run) -> bool {
    run.console.contains("provision: update committed")
        && run.console.contains("app: version 2 running")
        && run.console.contains("provision: no update")
        && run.residue() == Some(0)
}

/// One device of the demo: which machine, its id and secret, and how it reaches the server.
struct Demo {
    machine: Machine,
    id: u32,
    secret: &'static str,
    title: &'static str,
    link: Link,
}

const DEVICES: [Demo; 3] = [
    Demo {
        machine: Machine::Mps2An385,
        id: DEVICE_ID,
        secret: SECRET,
        title: "mps2-an385 (Cortex-M3, qemu-system-arm -M mps2-an385, LAN9118)",
        link: Link::Tcp,
    },
    Demo {
        machine: Machine::Esp8266Xtfpga,
        id: LX106_DEVICE_ID,
        secret: LX106_SECRET,
        title:
            "esp8266 (Xtensa LX106, qemu-system-xtensa -M lx60-nommu -cpu lx106, OpenCores MAC, \
                console on the 16550 UART)",
        link: Link::Tcp,
    },
    Demo {
        machine: Machine::Esp8266Xtfpga,
        id: SERIAL_DEVICE_ID,
        secret: SERIAL_SECRET,
        title:
            "esp8266 (Xtensa LX106, qemu-system-xtensa -M lx60-nommu -cpu lx106) over its serial \
                line: the 16550 UART on a chardev socket, rota-bridge serial",
        link: Link::Serial,
    },
];

/// The console lines of `run` that show what the trial and release machinery did.
fn trial_lines(run: &Run) -> Vec<&str> {
    run.console
        .lines()
        .filter(|l| {
            ["boot ", "trial", "rollback:", "provision: ", "app: "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect()
}

/// `rota-server fleet` of `repo`.
fn fleet_table(repo: &std::path::Path) -> String {
    Command::new(host_bin("rota-server"))
        .arg("fleet")
        .arg(repo)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("rota-server fleet: {e}"))
}

/// A release signed by a key the device does not hold: refused at the Release, before anything is
/// written; the old app runs. Returns whether it went so.
fn wrong_key() -> bool {
    let m = Machine::Mps2An385;
    let ours = Signer::new(m, 1);
    let theirs = Signer::new(m, 1);
    let mut config = device_config(SECRET);
    config.keys.push(ours.public_key()).expect("a key fits");
    let device = Device::on(m, &storage_image_with(m, &config, &release(m, 1)));
    let server = Server::start_signed(&release(m, 2), SECRET, &theirs);
    println!(
        "device {DEVICE_ID} holds release 1 and the public key {}; the server offers release 2 \
         signed with another key (rota-sign release)",
        hex(&ours.public_key())
    );
    let run = device.boot(&Boot::to(server.port));
    for l in trial_lines(&run) {
        println!("{l}");
    }
    let refused = run
        .console
        .contains("provision: session refused (reason 13, code 2)")
        && run.console.contains("app: version 1 running")
        && !run.console.contains("update committed");
    std::thread::sleep(std::time::Duration::from_millis(300));
    print!("{}", fleet_table(server.repo.path()));
    refused
}

/// A release whose app panics: committed on trial, three trial boots that panic, the rollback, the
/// old app; the server records the rollback and offers the release no more. Returns whether it went
/// so.
fn rolled_back() -> bool {
    let m = Machine::Mps2An385;
    let old = release(m, 1);
    let panicking = std::fs::read(artifact(&format!(
        "{}/fixtures/app-panic.blob",
        m.isa_dir()
    )));
    let Ok(panicking) = panicking else {
        println!("demo: the app-panic fixture is missing (make fixtures)");
        return false;
    };
    let update: Vec<FileSpec> = old
        .iter()
        .map(|f| FileSpec {
            name: f.name.clone(),
            data: if f.name == "app" {
                panicking.clone()
            } else {
                f.data.clone()
            },
            version: f.version,
        })
        .collect();
    let device = Device::on(m, &storage_image(m, &old, SECRET));
    let server = Server::start(&update, SECRET);
    println!(
        "device {DEVICE_ID} holds release 1; the server offers an app that panics at its start"
    );
    let mut all = String::new();
    for _ in 0..4 {
        let run = device.boot(&Boot::to(server.port));
        for l in trial_lines(&run) {
            println!("{l}");
        }
        all.push_str(&run.console);
    }
    let last = device.boot(&Boot::to(server.port));
    for l in trial_lines(&last) {
        println!("{l}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let table = fleet_table(server.repo.path());
    print!("{table}");
    all.contains("rollback: generation 2 -> 1 (app panicked)")
        && last.console.contains("app: version 1 running")
        && table.contains("rollback generation 2 -> 1 (app panicked)")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> ExitCode {
    section(
        "rota-server on 127.0.0.1: release 2 (new app, tick, provision) for devices 1001, 1002 and 1003",
    );
    let fleet = Fleet::start(&DEVICES.map(|d| FleetDevice {
        id: d.id,
        secret: d.secret.to_string(),
        files: release(d.machine, 2),
    }));
    println!(
        "repository {} (git; branch device-<id> per device, each served by its own rota-server)",
        fleet.repo.path().display()
    );
    for d in &DEVICES {
        println!(
            "device {}: rota-server --rev device-{} on 127.0.0.1:{}",
            d.id,
            d.id,
            fleet.port(d.id)
        );
    }

    let mut ok = true;
    let mut runs = Vec::new();
    for d in &DEVICES {
        section(&format!(
            "device {}, {}, holding release 1: boot, update, reboot, no update",
            d.id, d.title
        ));
        let mut config = device_config_for(d.id, d.secret);
        config.link = d.link;
        let image = storage_image_with(d.machine, &config, &release(d.machine, 1));
        let device = match d.link {
            Link::Tcp => Device::on(d.machine, &image),
            Link::Serial => Device::on_serial(d.machine, &image),
        };
        let run = device.boot(&Boot::to(fleet.port(d.id)));
        print!("{}", run.console);
        if d.link == Link::Serial {
            println!(
                "\nrota-bridge serial's log (its stderr):\n{}",
                run.log.trim_end()
            );
        }
        if !updated(&run) {
            ok = false;
            println!("\ndemo: device {} was NOT updated end to end", d.id);
            if let Some(why) = run.console.lines().find(|l| l.contains("refused")) {
                println!("demo: the reason it printed: {why}");
            }
        }
        runs.push(run);
    }

    for (d, run) in DEVICES.iter().zip(&runs) {
        section(&format!("heap report of device {} (both boots)", d.id));
        ram_table(d.machine, run);
    }

    section("the fleet as the server recorded it (rota-server fleet)");
    let out = Command::new(host_bin("rota-server"))
        .arg("fleet")
        .arg(fleet.repo.path())
        .output();
    match out {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            print!("{text}");
            for d in &DEVICES {
                if !text.lines().any(|l| l.starts_with(&d.id.to_string())) {
                    ok = false;
                    println!("demo: device {} is missing from the fleet", d.id);
                }
            }
        }
        Err(e) => {
            ok = false;
            println!("demo: rota-server fleet: {e}");
        }
    }

    section("a release signed by another key (mps2-an385, device holding a release key)");
    if !wrong_key() {
        ok = false;
        println!("demo: the release signed by another key was NOT refused");
    }
    section("a release whose app panics: trial boots, rollback (mps2-an385)");
    if !rolled_back() {
        ok = false;
        println!("demo: the panicking release was NOT rolled back and recorded");
    }

    if ok {
        println!(
            "\ndemo: OK (all three devices updated to version 2, over TCP and over the serial line, \
             then no update in one round trip; heap residue 0; all in the fleet; a release signed by \
             another key refused; a release whose app panics rolled back after three trial boots \
             and held back by the server)"
        );
        ExitCode::SUCCESS
    } else {
        println!("\ndemo: FAILED");
        ExitCode::FAILURE
    }
}
