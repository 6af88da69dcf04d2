//! The whole system under QEMU: a real `rota-server` on 127.0.0.1, the firmware with persistent
//! flash, reaching the server only through `-nic user,restrict=on,guestfwd=...` and `rota-bridge`.
//! Every test runs on both networked machines: the mps2-an385 (Cortex-M3, LAN9118) and the ESP8266's
//! own CPU on QEMU's xtfpga board (LX106, OpenCores MAC, console on the 16550 UART), as
//! `mps2::<test>` and `xtfpga::<test>`. Needs `make firmware images` (the Makefile's `test` target
//! builds everything).
#[macro_use]
mod common;

use common::{app_versions, assert_no_fault};
use rota_emu::mitm::{Proxy, Tamper};
use rota_emu::system::{
    provision_ram_limit, release, storage_image, storage_image_with, Boot, Device, Server, SECRET,
};
use rota_emu::Machine;
use std::net::TcpListener;
use std::time::{Duration, Instant};

on_both_machines!(
    first_boot_updates_and_reboots_second_boot_is_one_round_trip_with_residue_0,
    an_update_with_a_new_config_is_committed_once_and_the_next_boot_gets_no_update,
    without_a_server_the_app_starts_within_the_deadlines,
    a_silent_server_gets_three_seconds_then_the_app_starts,
    a_key_during_the_first_second_skips_the_update,
    a_flipped_payload_byte_is_refused,
    reordered_frames_are_refused,
    a_frame_replayed_from_an_earlier_session_is_refused_and_a_dropped_transfer_resumes,
    a_server_with_another_devices_secret_commits_nothing,
    power_cut_at_spread_flash_operations_always_boots_old_or_new_and_then_completes,
    the_shipped_firmware_has_no_power_cut_injection,
    a_device_in_v1_mode_is_provisioned_by_the_luaota_protocol,
    with_dhcp_the_device_gets_its_address_and_is_updated,
);

/// A device of `m` holding release 1 and a server offering release 2 (a new `app`, `tick` and
/// `provision`).
fn setup(m: Machine) -> (Device, Server) {
    let device = Device::on(m, &storage_image(m, &release(m, 1), SECRET));
    (device, Server::start(&release(m, 2), SECRET))
}

/// Boots once with a key pressed at once: the update is skipped, so this shows what is installed.
fn installed_version(device: &Device) -> Vec<u64> {
    let run = device.boot(&Boot {
        server: None,
        keys: b"x".to_vec(),
        ..Boot::to(0)
    });
    assert!(
        run.console.contains("tick: key pressed: update skipped"),
        "{}",
        run.console
    );
    app_versions(&run)
}

fn first_boot_updates_and_reboots_second_boot_is_one_round_trip_with_residue_0(m: Machine) {
    let (device, server) = setup(m);
    let proxy = Proxy::start(server.port, Tamper::Record);
    let run = device.boot(&Boot::to(proxy.port));
    assert_no_fault(&run);
    let c = &run.console;
    assert!(c.contains("provision: update committed"), "{c}");
    assert!(c.contains("update committed; restarting"), "{c}");
    assert_eq!(c.matches(m.banner()).count(), 2, "{c}");
    assert!(c.contains("provision: no update"), "{c}");
    assert_eq!(app_versions(&run), vec![2], "{c}");
    assert!(c.contains("tick: 2 at "), "the new tick overlay runs: {c}");
    assert!(
        c.contains("provision: version 2"),
        "provision replaced itself while running in place: {c}"
    );
    assert_eq!(run.residue(), Some(0), "{c}");
    assert_eq!(run.status, Some(0), "{c}");
    // The whole device, network up, during the update and during the no-update check-in.
    let peak = run.peak_ram(m, "provision").expect("provision ran");
    assert!(
        peak <= provision_ram_limit(m, 2),
        "provision peaks at {peak} bytes: {c}"
    );
    println!("{m:?}: provision peaks at {peak} B of RAM, {:?}", run.ram());
    // The no-update session: exactly one frame from the server, the last one recorded.
    let frames = proxy.frames();
    let last = frames.last().expect("frames");
    assert_eq!(last[1], rota_wire::msg::kind::NO_UPDATE, "{frames:?}");
    let state = server.last_check_in().expect("check-in recorded");
    assert!(state.contains("no-update"), "{state}");
    // And again: nothing changes, nothing is written but the boot number.
    let again = device.boot(&Boot::to(server.port));
    assert!(
        again.console.contains("provision: no update"),
        "{}",
        again.console
    );
    assert_eq!(app_versions(&again), vec![2]);
}

fn an_update_with_a_new_config_is_committed_once_and_the_next_boot_gets_no_update(m: Machine) {
    let device = Device::on(m, &storage_image(m, &release(m, 1), SECRET));
    // The demo config with another DNS server: a config change the device can still check in with.
    let config = r#"{"server": "10.0.2.100", "port": 8266, "ip": "10.0.2.15", "gateway": "10.0.2.2",
        "netmask": "255.255.255.0", "dns": "10.0.2.3"}"#;
    let server = Server::start_with_config(&release(m, 2), SECRET, Some(config));
    let run = device.boot(&Boot::to(server.port));
    assert_no_fault(&run);
    let c = &run.console;
    // One commit, one reboot, then one no-update round trip: the committed config survived the
    // reboot (the Hello carries its version), so the server had nothing left to send.
    assert_eq!(c.matches("provision: update committed").count(), 1, "{c}");
    assert_eq!(c.matches(m.banner()).count(), 2, "{c}");
    assert!(c.contains("provision: no update"), "{c}");
    assert_eq!(app_versions(&run), vec![2], "{c}");
    let again = device.boot(&Boot::to(server.port));
    assert!(
        again.console.contains("provision: no update"),
        "{}",
        again.console
    );
    assert!(
        !again.console.contains("update committed"),
        "{}",
        again.console
    );
}

fn without_a_server_the_app_starts_within_the_deadlines(m: Machine) {
    let (device, _server) = setup(m);
    let start = Instant::now();
    let run = device.boot(&Boot {
        server: None,
        ..Boot::to(0)
    });
    let took = start.elapsed();
    assert_no_fault(&run);
    assert!(
        run.console
            .contains("tick: no server answer in 3 s; starting app"),
        "{}",
        run.console
    );
    assert_eq!(app_versions(&run), vec![1]);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

fn a_silent_server_gets_three_seconds_then_the_app_starts(m: Machine) {
    let (device, _server) = setup(m);
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        // Accept and hold the connection open without a word.
        let conn = silent.accept();
        std::thread::sleep(Duration::from_secs(8));
        drop(conn);
    });
    let run = device.boot(&Boot::to(port));
    assert_no_fault(&run);
    assert!(
        run.console.contains("provision: no server answer in 3 s"),
        "{}",
        run.console
    );
    assert_eq!(app_versions(&run), vec![1]);
    holder.join().unwrap();
}

fn a_key_during_the_first_second_skips_the_update(m: Machine) {
    let (device, server) = setup(m);
    let run = device.boot(&Boot {
        keys: b"s".to_vec(),
        ..Boot::to(server.port)
    });
    assert!(run.console.contains("tick: key pressed: update skipped"));
    assert_eq!(app_versions(&run), vec![1]);
    assert!(server.last_check_in().is_none(), "no check-in happened");
}

/// Runs one tampered session: it must be refused, nothing committed, release 1 still boots; then a
/// clean session completes the update.
fn refused_then_recovers(device: &Device, server: &Server, tamper: Tamper) {
    let proxy = Proxy::start(server.port, tamper.clone());
    let run = device.boot(&Boot::to(proxy.port));
    assert_no_fault(&run);
    assert!(
        !run.console.contains("update committed"),
        "{tamper:?} was accepted:\n{}",
        run.console
    );
    assert!(run.console.contains("nothing committed"), "{}", run.console);
    assert_eq!(app_versions(&run), vec![1], "{tamper:?}");
    let run = device.boot(&Boot::to(server.port));
    assert_no_fault(&run);
    assert_eq!(app_versions(&run), vec![2], "{}", run.console);
}

fn a_flipped_payload_byte_is_refused(m: Machine) {
    let (device, server) = setup(m);
    // Frame 0 is the Welcome, 1 the List, 2 the first Begin, 3 its first Data.
    refused_then_recovers(&device, &server, Tamper::FlipPayload { frame: 3 });
}

fn reordered_frames_are_refused(m: Machine) {
    let (device, server) = setup(m);
    // The first Data frame and the second.
    refused_then_recovers(&device, &server, Tamper::Swap { frame: 3 });
}

fn a_frame_replayed_from_an_earlier_session_is_refused_and_a_dropped_transfer_resumes(m: Machine) {
    let (device, server) = setup(m);
    // Session 1 is cut after two Data frames (Welcome, List, Begin, Data, Data): nothing is
    // committed, 2 KB of `tick` stay staged.
    let cut = Proxy::start(server.port, Tamper::CutAt { frame: 5 });
    let run = device.boot(&Boot::to(cut.port));
    assert!(!run.console.contains("update committed"), "{}", run.console);
    assert_eq!(app_versions(&run), vec![1]);
    let earlier = cut.frames();
    // Session 2 gets session 1's Begin in place of its own.
    let replay = Tamper::Replay {
        frame: 2,
        replacement: earlier[2].clone(),
    };
    let proxy = Proxy::start(server.port, replay);
    let run = device.boot(&Boot::to(proxy.port));
    assert!(!run.console.contains("update committed"), "{}", run.console);
    assert!(run.console.contains("nothing committed"), "{}", run.console);
    let state = server.last_check_in().expect("check-in");
    assert!(
        state.contains("\"done\":2048") || state.contains("\"done\": 2048"),
        "the check-in reports the staged 2 KB: {state}"
    );
    // A clean session resumes and completes.
    let run = device.boot(&Boot::to(server.port));
    assert_eq!(app_versions(&run), vec![2], "{}", run.console);
}

fn a_server_with_another_devices_secret_commits_nothing(m: Machine) {
    let device = Device::on(m, &storage_image(m, &release(m, 1), SECRET));
    let server = Server::start(&release(m, 2), "someone-elses-secret");
    let run = device.boot(&Boot::to(server.port));
    assert_no_fault(&run);
    assert!(!run.console.contains("update committed"), "{}", run.console);
    assert_eq!(app_versions(&run), vec![1]);
}

fn power_cut_at_spread_flash_operations_always_boots_old_or_new_and_then_completes(m: Machine) {
    // Find how many flash operations the updating boot makes: the first cut point that no longer
    // cuts (the run then completes the update and a no-update boot, which makes fewer operations).
    let cuts = |n: u32| {
        let (device, server) = setup(m);
        let run = device.boot(&Boot {
            cut: Some(n),
            ..Boot::to(server.port)
        });
        (run, device, server)
    };
    let mut total = 16;
    while cuts(total).0.status == Some(rota_emu::net::POWER_CUT_EXIT) {
        total *= 2;
        assert!(total < 1 << 14, "no end to the flash operations");
    }
    let points: Vec<u32> = (0..24).map(|i| i * total / 24).collect();
    // For each point: `None` if it was past the install's last flash operation, else how many files
    // were wholly staged before the cut (release 2 sends `tick`, `provision`, `app` in that order).
    let check = |n: u32| -> Option<usize> {
        let (run, device, server) = cuts(n);
        if run.status != Some(rota_emu::net::POWER_CUT_EXIT) {
            // Past the last operation of this install: it simply completed.
            assert_eq!(app_versions(&run), vec![2], "cut {n}: {}", run.console);
            return None;
        }
        let staged = run.console.matches("provision: file staged:").count();
        // Right after the cut: the old or the new release boots, never neither.
        let versions = installed_version(&device);
        assert!(
            versions == vec![1] || versions == vec![2],
            "cut {n}: booted {versions:?}"
        );
        // The next check-in completes the update.
        let run = device.boot(&Boot::to(server.port));
        assert_no_fault(&run);
        assert_eq!(
            app_versions(&run).last(),
            Some(&2),
            "cut {n}: {}",
            run.console
        );
        Some(staged)
    };
    // Two at a time: each point takes three short emulator runs.
    let (first, second) = points.split_at(points.len() / 2);
    let outcomes: Vec<Option<usize>> = std::thread::scope(|s| {
        let other = s.spawn(|| first.iter().map(|&n| check(n)).collect::<Vec<_>>());
        let mine: Vec<_> = second.iter().map(|&n| check(n)).collect();
        let mut all = other.join().unwrap();
        all.extend(mine);
        all
    });
    let cut = outcomes.iter().flatten().count();
    // Cut while `provision` was being staged: on the LX106 it is stored relocated for its flash
    // address as it arrives (install-time relocation), so these cuts fall inside the relocation.
    let in_provision = outcomes.iter().flatten().filter(|&&s| s == 1).count();
    println!("{m:?}: {total} flash operations probed; {cut} of 24 points cut, {in_provision} while provision was staged");
    assert!(cut >= 12, "only {cut} points cut the install");
    assert!(
        in_provision >= 4,
        "only {in_provision} cuts while provision was staged"
    );
}

fn the_shipped_firmware_has_no_power_cut_injection(m: Machine) {
    let storage = tempfile::NamedTempFile::new().unwrap();
    let image = storage_image(m, &release(m, 1), SECRET);
    std::fs::write(storage.path(), &image).unwrap();
    let (out, refusal) = match m {
        Machine::Mps2An385 => {
            let mut run = rota_emu::net::Mps2Run::new(m.firmware());
            run.storage = Some(storage.path().to_path_buf());
            run.cut = Some(3);
            (
                run.run(Duration::from_secs(20)),
                "cut= needs the power-cut build",
            )
        }
        _ => {
            let mut run = rota_emu::xtfpga::XtfpgaRun::new(m.firmware());
            run.storage = Some(storage.path().to_path_buf());
            run.cut = Some(3);
            (
                run.run(Duration::from_secs(20)),
                "cut= needs a build with power-cut injection",
            )
        }
    };
    assert_eq!(out.status, Some(2), "{}", out.console);
    assert!(out.console.contains(refusal), "{}", out.console);
    assert_eq!(
        std::fs::read(storage.path()).unwrap(),
        image,
        "nothing was written"
    );
}

fn a_device_in_v1_mode_is_provisioned_by_the_luaota_protocol(m: Machine) {
    let mut config = rota_emu::system::device_config(SECRET);
    config.protocol = 1;
    let device = Device::on(m, &storage_image_with(m, &config, &release(m, 1)));
    // The luaOTA inventory names only what it provisions: the new application and a data file.
    let mut files: Vec<_> = release(m, 2)
        .into_iter()
        .filter(|f| f.name == "app")
        .collect();
    files.push(rota_image::FileSpec {
        name: "data.txt".into(),
        data: (0..3000u32).map(|i| (i % 251) as u8).collect(),
        version: 1,
    });
    let server = Server::start(&files, SECRET);
    let run = device.boot(&Boot::to(server.port));
    assert_no_fault(&run);
    let c = &run.console;
    assert!(c.contains("protocol v1"), "{c}");
    // One download and commit, then the reboot's check-in carries the new chk: no second one.
    assert_eq!(
        c.matches("provision: v1 update committed").count(),
        1,
        "{c}"
    );
    assert_eq!(c.matches(m.banner()).count(), 2, "{c}");
    assert!(
        c.contains("provision: v1 no update"),
        "the second check-in sends chk: {c}"
    );
    assert_eq!(app_versions(&run), vec![2], "{c}");
    assert_eq!(run.residue(), Some(0), "{c}");
    let peak = run.peak_ram(m, "provision").expect("provision ran");
    assert!(
        peak <= provision_ram_limit(m, 1),
        "v1 provision peaks at {peak} bytes: {c}"
    );
    println!(
        "{m:?}: v1 provision: whole-device peak {peak} B, {:?}",
        run.phase("provision")
    );
}

fn with_dhcp_the_device_gets_its_address_and_is_updated(m: Machine) {
    // No static address: `init` starts DHCP, whose offers QEMU's user network sends to the Ethernet
    // broadcast address (the OpenCores MAC accepts them only with MODER.BRO clear).
    let mut config = rota_emu::system::device_config(SECRET);
    config.ip = None;
    config.gateway = [0; 4];
    config.netmask = [0; 4];
    let device = Device::on(m, &storage_image_with(m, &config, &release(m, 1)));
    let server = Server::start(&release(m, 2), SECRET);
    let run = device.boot(&Boot::to(server.port));
    assert_no_fault(&run);
    let c = &run.console;
    assert_eq!(c.matches("provision: update committed").count(), 1, "{c}");
    assert!(c.contains("provision: no update"), "{c}");
    assert_eq!(app_versions(&run), vec![2], "{c}");
    assert_eq!(run.residue(), Some(0), "{c}");
}
