//! `make demo`: the whole system on this machine. A `rota-server` on 127.0.0.1 serves release 2 (a new
//! application and a new `tick` overlay) from a git repository; an emulated mps2-an385 holding release
//! 1 boots, checks in over TCP (through QEMU's guestfwd and `rota-bridge`), installs the update, reboots,
//! gets "no update" in one round trip and runs the new application. Then the heap report, the fleet as
//! the server recorded it, and the ESP8266 core under `qemu-system-xtensa -M sim` (no network there).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
use rota_emu::system::{host_bin, release, storage_image, Boot, Device, Server, SECRET};
use rota_emu::{boot, Machine, Run};
use std::process::{Command, ExitCode};
use std::time::Duration;

fn section(title: &str) {
    println!("\n=== {title} ===");
}

/// Whole-device RAM per phase: statics + arena + heap peak + stack peak.
fn ram_table(run: &Run) {
    let Some(ram) = run.ram() else { return };
    println!(
        "RAM: statics {} B, arena {} B, heap {} B, stack {} B",
        ram.statics, ram.arena, ram.heap, ram.stack
    );
    println!(
        "{:<10} {:>10} {:>11} {:>17}",
        "phase", "heap peak", "stack peak", "whole device"
    );
    for l in run.heap_lines() {
        let total = ram.statics + ram.arena + l.peak + l.stack_peak;
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

fn main() -> ExitCode {
    let m = Machine::Mps2An385;
    section("rota-server on 127.0.0.1 (release 2: new app, new tick)");
    let server = Server::start(&release(m, 2), SECRET);
    println!(
        "repository {} (git), port {}",
        server.repo.path().display(),
        server.port
    );

    section("mps2-an385 holding release 1: boot, update, reboot, no update");
    let device = Device::new(&storage_image(m, &release(m, 1), SECRET));
    let run = device.boot(&Boot::to(server.port));
    print!("{}", run.console);
    let updated = run.console.contains("app: version 2 running")
        && run.console.contains("provision: no update")
        && run.residue() == Some(0);

    section("heap report of that run (both boots)");
    ram_table(&run);

    section("the fleet as the server recorded it");
    let fleet = Command::new(host_bin("rota-server"))
        .arg("fleet")
        .arg(server.repo.path())
        .output();
    if let Ok(out) = fleet {
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }

    section("esp8266 (Xtensa LX106) under qemu-system-xtensa -M sim: no NIC, init starts the app");
    let image = storage_image(
        Machine::Esp8266Sim,
        &release(Machine::Esp8266Sim, 1),
        SECRET,
    );
    let esp = boot(Machine::Esp8266Sim, &image, Duration::from_secs(30));
    print!("{}", esp.console);

    if updated && esp.residue() == Some(0) {
        println!(
            "\ndemo: OK (updated to version 2, then no update in one round trip; heap residue 0)"
        );
        ExitCode::SUCCESS
    } else {
        println!("\ndemo: FAILED");
        ExitCode::FAILURE
    }
}
