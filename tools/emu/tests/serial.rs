//! The whole system over the serial line: a real `rota-server` on 127.0.0.1, the firmware with
//! persistent flash and a device config with `link = Serial`, its console UART on a QEMU chardev
//! socket joined by `rota-bridge serial` to the server (the console read from the bridge, keys typed
//! into it), with a proxy on the line between QEMU and the bridge where a test damages a byte. Every
//! test runs on both machines, mps2-an385 (CMSDK UART0) and the ESP8266's LX106 on QEMU's xtfpga
//! board (16550 UART), as `mps2::<test>` and `xtfpga::<test>`, except the one that boots the chip's
//! own storage image (LX106 only). Needs `make firmware images` and
//! `cargo build -p rota-bridge -p rota-server`.
#[macro_use]
mod common;

use common::{app_versions, assert_no_fault, numbers};
use rota_emu::line::{Damage, Direction, Fault, Tap};
use rota_emu::net::POWER_CUT_EXIT;
use rota_emu::system::{
    release, storage_image_with, Boot, Device, Fleet, FleetDevice, Server, SECRET,
};
use rota_emu::{Machine, Run};
use rota_wire::config::Link;

on_both_machines!(
    first_boot_updates_and_reboots_second_boot_gets_no_update_with_residue_0,
    a_flipped_or_dropped_byte_ends_the_session_commits_nothing_and_the_next_boot_resumes,
    power_cuts_at_spread_flash_operations_boot_old_or_new_and_then_complete,
);

/// A device of `m` holding release 1 with its link on the serial line, and a server offering
/// release 2 (a new `app`, `tick` and `provision`).
fn setup(m: Machine) -> (Device, Server) {
    let mut config = rota_emu::system::device_config(SECRET);
    config.link = Link::Serial;
    let image = storage_image_with(m, &config, &release(m, 1));
    (
        Device::on_serial(m, &image),
        Server::start(&release(m, 2), SECRET),
    )
}

/// The chip's device as `make images` writes its storage image (board.mk's `ESP_CHIP_ID` and
/// `ESP_CHIP_SECRET`).
const CHIP_ID: u32 = 1003;
/// Its secret.
const CHIP_SECRET: &str = "demo-secret-1003";

/// The chip's own storage image, `build/esp8266/storage-chip.bin` (what `make flash` writes to a
/// chip: link serial, device [`CHIP_ID`]), booted as it is on the LX106 of the xtfpga machine with
/// its UART on the line, is updated from a server over the line, as `make serial-update` updates
/// a chip: so the image a chip gets is the one that works over serial.
#[test]
fn the_chips_storage_image_is_updated_over_the_serial_line() {
    let m = Machine::Esp8266Xtfpga;
    let image = std::fs::read(rota_emu::artifact("esp8266/storage-chip.bin")).expect("read image");
    let device = Device::on_serial(m, &image);
    let fleet = Fleet::start(&[FleetDevice {
        id: CHIP_ID,
        secret: CHIP_SECRET.to_string(),
        files: release(m, 2),
    }]);
    let run = device.boot(&Boot::to(fleet.port(CHIP_ID)));
    assert!(
        run.console.contains(&format!(
            "init: device {CHIP_ID}, boot 1, protocol v2, serial link"
        )),
        "{}",
        run.console
    );
    assert_updated(m, &run);
}

/// The numbers after `prefix` at the start of console lines, in order.
/// The generation each commit of the run made.
fn commits(run: &Run) -> Vec<u64> {
    numbers(run, "provision: update committed, generation ")
}

/// Bytes the device received in each session that committed.
fn received(run: &Run) -> Vec<u64> {
    numbers(run, "provision: session received ")
}

/// Boots with a key typed at `tick`'s prompt: the update is skipped, so the app that runs is the one
/// installed. The server is a listener that never answers: a refused connection would end `tick`
/// at once, before the key could come through the bridge (a TCP device without a server waits).
fn installed_version(device: &Device) -> Vec<u64> {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let run = device.boot(&Boot {
        keys: b"x".to_vec(),
        ..Boot::to(silent.local_addr().expect("port").port())
    });
    assert!(
        run.console.contains("tick: key pressed: update skipped"),
        "{}\n{}",
        run.console,
        run.log
    );
    app_versions(&run)
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The run updated the device: one commit, a reboot, a no-update check-in, the new application,
/// tick and provision running, the heap back to 0 at every boot's end. Returns its commit's
/// generation.
fn assert_updated(m: Machine, run: &Run) -> u64 {
    assert_no_fault(run);
    let c = &run.console;
    let commit = commits(run);
    assert_eq!(commit.len(), 1, "{c}\n{}", run.log);
    assert!(c.contains("update committed; restarting"), "{c}");
    assert_eq!(c.matches(m.banner()).count(), 2, "two boots: {c}");
    let boots = numbers(run, "boot ");
    assert!(
        boots.len() == 2 && boots[1] == boots[0] + 1,
        "the boot counter counts both boots: {boots:?}"
    );
    assert!(c.contains("provision: no update"), "{c}");
    assert_eq!(app_versions(run), vec![2], "{c}");
    assert!(c.contains("tick: 2 at "), "the new tick overlay runs: {c}");
    assert!(c.contains("provision: version 2"), "{c}");
    let residues = numbers(run, "heap residue=");
    assert!(
        !residues.is_empty() && residues.iter().all(|&r| r == 0),
        "heap residue {residues:?}: {c}"
    );
    assert_eq!(run.status, Some(0), "{c}");
    commit[0]
}

fn first_boot_updates_and_reboots_second_boot_gets_no_update_with_residue_0(m: Machine) {
    let (device, server) = setup(m);
    let tap = Tap::default();
    let run = device.boot(&Boot {
        tap: Some(tap.clone()),
        ..Boot::to(server.port)
    });
    assert_updated(m, &run);
    // The bridge saw two connections: the update, then the no-update check-in after the reboot.
    let seen = tap.seen();
    assert_eq!(seen.connects.len(), 2, "{seen:?}\n{}", run.log);
    assert_eq!(
        run.log.matches("device asks for 10.0.2.100:8266").count(),
        2,
        "{}",
        run.log
    );
    // The updating session's frame bytes each way: from its Connect to the next one.
    let to = seen.connects[1][1] - seen.connects[0][1];
    let from = seen.connects[1][0] - seen.connects[0][0];
    let got = received(&run)[0];
    println!(
        "{m:?} over serial: the update received {got} bytes in {to} frame bytes on the line \
         ({:.2} % more), and sent {from} frame bytes",
        (to as f64 / got as f64 - 1.0) * 100.0
    );
    assert!(to > got, "the frames carry the session's bytes");
    // The device reports release 2's exact files in its last check-in, and got no update.
    let state = server.last_check_in().expect("check-in recorded");
    assert!(state.contains("no-update"), "{state}");
    for f in release(m, 2) {
        let digest = hex(&rota_blob::sha256(&f.data));
        assert!(
            state.contains(&digest),
            "{} {digest} not in {state}",
            f.name
        );
    }
    // Again: no update, one boot, the boot counter one further.
    let again = device.boot(&Boot::to(server.port));
    assert_no_fault(&again);
    assert!(
        again.console.contains("provision: no update"),
        "{}",
        again.console
    );
    assert!(commits(&again).is_empty(), "{}", again.console);
    assert_eq!(app_versions(&again), vec![2]);
    assert_eq!(again.console.matches(m.banner()).count(), 1);
    assert_eq!(
        numbers(&again, "boot "),
        vec![numbers(&run, "boot ")[1] + 1],
        "{}",
        again.console
    );
    assert_eq!(numbers(&again, "heap residue="), vec![0]);
}

/// The faults, each at a fraction (in thousandths) of the updating session's frame bytes that way.
const FAULTS: [(Direction, Damage, u64); 6] = [
    (Direction::ToDevice, Damage::Flip, 20),
    (Direction::ToDevice, Damage::Drop, 400),
    (Direction::ToDevice, Damage::Flip, 970),
    (Direction::FromDevice, Damage::Drop, 30),
    (Direction::FromDevice, Damage::Flip, 500),
    (Direction::FromDevice, Damage::Drop, 900),
];

fn a_flipped_or_dropped_byte_ends_the_session_commits_nothing_and_the_next_boot_resumes(
    m: Machine,
) {
    // A clean update through the proxy first: where the updating session lies each way on the line,
    // the generation it commits and the bytes it receives.
    let (device, server) = setup(m);
    let tap = Tap::default();
    let clean = device.boot(&Boot {
        tap: Some(tap.clone()),
        ..Boot::to(server.port)
    });
    let generation = assert_updated(m, &clean);
    let full = *received(&clean).first().expect("a session received line");
    let seen = tap.seen();
    assert_eq!(seen.connects.len(), 2, "{seen:?}");
    let (start, end) = (seen.connects[0], seen.connects[1]);
    for (direction, damage, permille) in FAULTS {
        let d = direction as usize;
        let at = start[d] + (end[d] - start[d]) * permille / 1000;
        let fault = Fault {
            direction,
            at,
            damage,
        };
        let (device, server) = setup(m);
        let tap = Tap::damaging(fault);
        let run = device.boot(&Boot {
            tap: Some(tap.clone()),
            ..Boot::to(server.port)
        });
        let why = format!("{fault:?}:\n{}\n{}", run.console, run.log);
        assert!(tap.seen().applied, "{why}");
        // The session ends, nothing is committed, the old application runs, no reboot.
        assert_no_fault(&run);
        assert!(commits(&run).is_empty(), "{why}");
        assert_eq!(app_versions(&run), vec![1], "{why}");
        assert_eq!(run.console.matches(m.banner()).count(), 1, "{why}");
        assert_eq!(run.status, Some(0), "{why}");
        assert!(
            !run.log.contains("(the server closed it)"),
            "the session did not run to its end: {why}"
        );
        // The next boot on a clean line completes the update with the generation after the one
        // the image had (so nothing was committed before), receiving no more than a whole session,
        // and less when a file had been staged: it resumed from what was staged.
        let next = device.boot(&Boot::to(server.port));
        assert_eq!(assert_updated(m, &next), generation, "{fault:?}");
        let got = received(&next)[0];
        let staged = run.console.matches("provision: file staged:").count();
        if staged > 0 {
            assert!(
                got < full,
                "{fault:?}: {staged} files staged, then {got} of {full} bytes"
            );
        } else {
            assert!(got <= full, "{fault:?}: {got} of {full} bytes");
        }
        println!(
            "{m:?}: {fault:?} ({permille}‰): session cut, {staged} files staged; the next boot \
             received {got} of {full} bytes"
        );
    }
}

fn power_cuts_at_spread_flash_operations_boot_old_or_new_and_then_complete(m: Machine) {
    let cuts = |n: u32| {
        let (device, server) = setup(m);
        let run = device.boot(&Boot {
            cut: Some(n),
            ..Boot::to(server.port)
        });
        (run, device, server)
    };
    // How many flash operations the updating boot makes: the first cut point that no longer cuts.
    let mut total = 64;
    while cuts(total).0.status == Some(POWER_CUT_EXIT) {
        total *= 2;
        assert!(total < 1 << 14, "no end to the flash operations");
    }
    const POINTS: u32 = 8;
    let mut cut = 0;
    for i in 0..POINTS {
        let n = i * total / POINTS + total / (2 * POINTS);
        let (run, device, server) = cuts(n);
        if run.status != Some(POWER_CUT_EXIT) {
            // Past the last operation of this install: it simply completed.
            assert_eq!(app_versions(&run), vec![2], "cut {n}: {}", run.console);
            continue;
        }
        cut += 1;
        // Right after the cut: the old or the new release boots, never neither.
        let versions = installed_version(&device);
        assert!(
            versions == vec![1] || versions == vec![2],
            "cut {n}: booted {versions:?}"
        );
        // The next check-in over the line completes the update.
        let run = device.boot(&Boot::to(server.port));
        assert_no_fault(&run);
        assert_eq!(
            app_versions(&run).last(),
            Some(&2),
            "cut {n}: {}\n{}",
            run.console,
            run.log
        );
        println!("{m:?} over serial: cut at flash operation {n} of ~{total}: booted {versions:?}, then completed");
    }
    assert!(
        cut >= POINTS / 2,
        "only {cut} of {POINTS} points cut the install"
    );
}
