//! Trial boots and rollback under QEMU (`docs/trial-boot.md`), on both networked machines
//! (`mps2::<test>`, `xtfpga::<test>`): a real `rota-server` on 127.0.0.1 sends an update that
//! replaces the app with one that panics, faults or hangs, or `provision` with one that crashes at
//! its start; the device commits it on trial and, after three trial boots that do not confirm,
//! runs the previous generation again and prints the rollback line once. An app that confirms
//! stays. Power cuts at the flash operations of confirm and of revert leave a device that boots.
//!
//! The device holds release 1; its `provision` commits every update on trial for the config's
//! `trials` boots (3, the default), confirmed by the app when the update changed it. The server hears
//! of the rollback in the next Hello, records it and stops offering the release. Each trial boot ends as the board's handlers end it: a panic or fault exits QEMU (the
//! next `Device::boot` is the reset), and a hang is ended by the harness's time limit, as a
//! watchdog would end it (QEMU's machines have none the firmware uses).
#[macro_use]
mod common;

use common::{app_versions, assert_no_fault};
use rota_emu::net::POWER_CUT_EXIT;
use rota_emu::system::{release, storage_image, Boot, Device, Server, SECRET};
use rota_emu::{artifact, Machine, Run};
use rota_image::FileSpec;
use rota_memflash::MemFlash;
use rota_store::{CommitParams, ConfigInfo, Store};
use std::time::Duration;

on_both_machines!(
    an_app_that_panics_is_rolled_back_after_three_trial_boots,
    an_app_that_faults_is_rolled_back_after_three_trial_boots,
    an_app_that_hangs_is_rolled_back_after_three_trial_boots,
    a_provision_that_crashes_at_its_start_is_rolled_back,
    a_release_whose_overlay_is_refused_is_rolled_back_although_its_app_confirms,
    an_app_that_confirms_stays,
    power_cuts_during_confirm_leave_a_device_that_boots_and_confirms,
    power_cuts_during_a_revert_leave_a_device_that_boots_the_old_generation,
);

/// The trial boots `provision` commits with: the device config's `trials`.
const TRIAL_LIMIT: usize = rota_wire::config::DEFAULT_TRIALS as usize;

/// A fixture blob of `m`'s ISA (`build/<isa>/fixtures/<name>.blob`).
fn fixture(m: Machine, name: &str) -> Vec<u8> {
    let path = artifact(&format!("{}/fixtures/{name}.blob", m.isa_dir()));
    std::fs::read(path).expect("read fixture")
}

/// `files` with `name`'s data replaced.
fn replaced(files: &[FileSpec], name: &str, data: Vec<u8>) -> Vec<FileSpec> {
    assert!(
        files.iter().any(|f| f.name == name),
        "{name} in the release"
    );
    files
        .iter()
        .map(|f| FileSpec {
            name: f.name.clone(),
            data: if f.name == name {
                data.clone()
            } else {
                f.data.clone()
            },
            version: f.version,
        })
        .collect()
}

/// Release 1, what the device holds.
fn old_release(m: Machine) -> Vec<FileSpec> {
    release(m, 1)
}

/// The store's record in `device`'s flash now.
fn record(device: &Device) -> ConfigInfo {
    Store::new(MemFlash::new(device.image()))
        .config(&mut [])
        .expect("a config record")
}

/// The server heard of the rollback: its fleet record of the device holds it (once), with `reason`,
/// and the check-in's outcome is that the rolled-back release is held back; `rota-server fleet`
/// shows the rollback line.
fn server_holds_the_rolled_back_release(server: &Server, reason: &str) {
    // The outcome is recorded when the server sees the device close, which may be a moment after
    // the emulator exits.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let record = loop {
        let record = server.last_check_in().expect("check-in recorded");
        if record.contains("held: ") || std::time::Instant::now() > deadline {
            break record;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(record.contains("\"held\""), "{record}");
    assert!(
        record.contains("held: the release was rolled back"),
        "{record}"
    );
    assert_eq!(
        record.matches("\"from\": 2").count(),
        1,
        "one rollback: {record}"
    );
    let out = std::process::Command::new(rota_emu::system::host_bin("rota-server"))
        .arg("fleet")
        .arg(server.repo.path())
        .output()
        .expect("rota-server fleet");
    let table = String::from_utf8_lossy(&out.stdout);
    // The Hello carries the reason, not the trial limit: `not confirmed in 3 boots` is shown as
    // `not confirmed`.
    let reason = reason.split(" in ").next().unwrap_or(reason);
    let line = format!("rollback generation 2 -> 1 ({reason})");
    assert!(table.contains(&line), "{table}");
}

/// How a trial boot ends.
enum End {
    /// The board's panic or fault handler records it (`panicked` or `faulted`) and exits.
    Recorded(&'static str),
    /// It hangs: the harness's time limit ends it, as a watchdog would; nothing is recorded.
    Killed,
}

/// Where each trial boot must have got to, and how it ended.
struct Bad {
    /// The file the update replaces and what it replaces it with.
    file: &'static str,
    data: Vec<u8>,
    /// What the device prints when it goes wrong.
    says: &'static str,
    /// How the trial boot ends.
    end: End,
    /// The reason in the rollback line.
    reason: &'static str,
    /// A trial boot's time limit: the watchdog's period for an app that hangs.
    limit: Duration,
}

/// The whole story: the update committed on trial, three trial boots that end badly, the boot
/// that rolls back (the line printed once, the old app running, "no update"), and a boot after it.
fn rolled_back(m: Machine, bad: Bad) {
    let old = old_release(m);
    let device = Device::on(m, &storage_image(m, &old, SECRET));
    let update = replaced(&old, bad.file, bad.data);
    let server = Server::start(&update, SECRET);
    let boot = |server: &Server, first: bool| -> Run {
        // The first run installs the update and reboots into trial boot 1.
        let extra = if first {
            Duration::from_secs(40)
        } else {
            Duration::ZERO
        };
        device.boot(&Boot {
            limit: bad.limit + extra,
            ..Boot::to(server.port)
        })
    };
    for n in 1..=TRIAL_LIMIT {
        let run = boot(&server, n == 1);
        let c = &run.console;
        if n == 1 {
            assert_eq!(c.matches("provision: update committed").count(), 1, "{c}");
        }
        assert!(
            c.contains(&format!(
                "trial: generation 2 on trial, boot {n} of {TRIAL_LIMIT}"
            )),
            "trial boot {n}: {c}"
        );
        assert!(c.contains(bad.says), "trial boot {n}: {c}");
        assert!(!c.contains("rollback:"), "trial boot {n}: {c}");
        match bad.end {
            End::Recorded(r) => {
                assert!(
                    c.contains(&format!("trial boot ended: {r} (recorded)")),
                    "trial boot {n}: {c}"
                );
                assert_ne!(run.status, Some(0), "trial boot {n}: {c}");
            }
            End::Killed => {
                assert_eq!(run.status, None, "trial boot {n}: {c}");
                assert!(!c.contains("(recorded)"), "trial boot {n}: {c}");
            }
        }
        if bad.file == "app" {
            // The check-ins of the trial boots: the device holds what the server offers.
            assert!(c.contains("provision: no update"), "trial boot {n}: {c}");
        }
        let r = record(&device);
        assert_eq!((r.generation, r.confirmed), (2, 1), "trial boot {n}");
    }
    // The server still offers the release; the boot that rolls back reports it, and is not
    // updated again.
    let run = device.boot(&Boot::to(server.port));
    let c = &run.console;
    let line = format!("rollback: generation 2 -> 1 ({})", bad.reason);
    assert_eq!(c.matches("rollback: ").count(), 1, "{c}");
    assert!(c.contains(&line), "{c}");
    assert!(c.contains("provision: no update"), "{c}");
    assert_eq!(app_versions(&run), vec![1], "the previous app runs: {c}");
    assert!(!c.contains("trial: "), "{c}");
    assert_eq!(run.status, Some(0), "{c}");
    let r = record(&device);
    assert_eq!((r.generation, r.confirmed), (1, 1));
    assert_eq!(
        (r.rollback.from, r.rollback.to),
        (2, 1),
        "kept for the next check-ins"
    );
    server_holds_the_rolled_back_release(&server, bad.reason);
    // And it stays there.
    let run = device.boot(&Boot::to(server.port));
    assert!(!run.console.contains("rollback: "), "{}", run.console);
    assert!(
        run.console.contains("provision: no update"),
        "{}",
        run.console
    );
    assert_eq!(app_versions(&run), vec![1], "{}", run.console);
    println!("{m:?}: {line}");
}

fn an_app_that_panics_is_rolled_back_after_three_trial_boots(m: Machine) {
    rolled_back(
        m,
        Bad {
            file: "app",
            data: fixture(m, "app-panic"),
            says: "app: panicking (fixture)",
            end: End::Recorded("panicked"),
            reason: "app panicked",
            limit: Duration::from_secs(60),
        },
    );
}

fn an_app_that_faults_is_rolled_back_after_three_trial_boots(m: Machine) {
    rolled_back(
        m,
        Bad {
            file: "app",
            data: fixture(m, "app-fault"),
            says: "app: faulting (fixture)",
            end: End::Recorded("faulted"),
            reason: "app faulted",
            limit: Duration::from_secs(60),
        },
    );
}

fn an_app_that_hangs_is_rolled_back_after_three_trial_boots(m: Machine) {
    rolled_back(
        m,
        Bad {
            file: "app",
            data: fixture(m, "app-hang"),
            says: "app: hanging (fixture)",
            end: End::Killed,
            reason: "not confirmed in 3 boots",
            // The watchdog's period: long enough for a check-in under a loaded machine.
            limit: Duration::from_secs(20),
        },
    );
}

fn a_provision_that_crashes_at_its_start_is_rolled_back(m: Machine) {
    rolled_back(
        m,
        Bad {
            file: "provision",
            data: fixture(m, "provision-crash"),
            says: "provision: crashing at its start (fixture)",
            end: End::Recorded("faulted"),
            reason: "provision faulted",
            limit: Duration::from_secs(60),
        },
    );
}

/// A release with a `tick` the loader refuses (a byte of its image changed) and an app that
/// confirms. The server refuses to send it (its blob check finds `tick` corrupted before a byte is
/// sent). Had it come anyway (a server that does not check), committed on trial: the app's confirm
/// is refused on a boot whose overlays were refused, so the generation is rolled back instead of
/// ending all updates.
fn a_release_whose_overlay_is_refused_is_rolled_back_although_its_app_confirms(m: Machine) {
    let mut tick = std::fs::read(artifact(&format!("{}/v2/tick.blob", m.isa_dir()))).unwrap();
    let at = tick.len() / 2;
    tick[at] ^= 0x40;
    let app = std::fs::read(artifact(&format!("{}/v2/app.blob", m.isa_dir()))).unwrap();
    let old = old_release(m);
    let device = Device::on(m, &storage_image(m, &old, SECRET));
    let update = replaced(&replaced(&old, "tick", tick.clone()), "app", app.clone());
    let refusing = Server::start(&update, SECRET);
    let run = device.boot(&Boot::to(refusing.port));
    assert!(!run.console.contains("update committed"), "{}", run.console);
    assert_eq!(app_versions(&run), vec![1], "{}", run.console);
    let checked = refusing.last_check_in().expect("check-in recorded");
    assert!(
        checked.contains("release refused: `tick`: digest mismatch"),
        "{checked}"
    );
    drop(refusing);

    let device = Device::on(
        m,
        &committed_on_trial(m, &old, &[("tick", &tick), ("app", &app)]),
    );
    let server = Server::start(&old, SECRET);
    for n in 1..=TRIAL_LIMIT {
        let run = device.boot(&Boot::to(server.port));
        let c = &run.console;
        assert!(
            c.contains("overlay tick refused: digest mismatch"),
            "trial boot {n}: {c}"
        );
        assert!(c.contains("app: confirm failed"), "trial boot {n}: {c}");
        assert_eq!(app_versions(&run), vec![2], "trial boot {n}: {c}");
        assert_eq!(record(&device).confirmed, 1, "trial boot {n}");
    }
    let run = device.boot(&Boot::to(server.port));
    let c = &run.console;
    assert_eq!(c.matches("rollback: ").count(), 1, "{c}");
    assert!(
        c.contains("rollback: generation 2 -> 1 (not confirmed in 3 boots)"),
        "{c}"
    );
    assert!(
        c.contains("provision: no update"),
        "the old tick and provision work: {c}"
    );
    assert_eq!(app_versions(&run), vec![1], "{c}");
}

fn an_app_that_confirms_stays(m: Machine) {
    let old = old_release(m);
    let device = Device::on(m, &storage_image(m, &old, SECRET));
    let new_app = std::fs::read(artifact(&format!("{}/v2/app.blob", m.isa_dir()))).unwrap();
    let update = replaced(&old, "app", new_app);
    let server = Server::start(&update, SECRET);
    let run = device.boot(&Boot::to(server.port));
    assert_no_fault(&run);
    let c = &run.console;
    assert!(c.contains("provision: update committed"), "{c}");
    assert!(
        c.contains("trial: generation 2 on trial, boot 1 of 3"),
        "{c}"
    );
    assert!(c.contains("app: generation 2 confirmed"), "{c}");
    assert_eq!(app_versions(&run), vec![2], "{c}");
    let r = record(&device);
    assert_eq!((r.generation, r.confirmed, r.trials), (2, 2, 0));
    for _ in 0..2 * TRIAL_LIMIT {
        let run = device.boot(&Boot::to(server.port));
        assert_no_fault(&run);
        let c = &run.console;
        assert!(!c.contains("rollback: ") && !c.contains("trial: "), "{c}");
        assert!(!c.contains("confirmed"), "nothing left to confirm: {c}");
        assert!(c.contains("provision: no update"), "{c}");
        assert_eq!(app_versions(&run), vec![2], "{c}");
    }
}

/// `old` committed, then each of `files` (name, data) replaced, committed on trial as `provision`
/// commits an update that changes the app (the same store calls, on the host; `app` and `tick` fit
/// every arena, so they are stored as received on either machine).
fn committed_on_trial(m: Machine, old: &[FileSpec], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut store = Store::new(MemFlash::new(storage_image(m, old, SECRET)));
    for (file, data) in files {
        let digest = rota_blob::sha256(data);
        let name = file.as_bytes();
        store
            .stage_begin(name, data.len() as u32, &digest, 2)
            .unwrap();
        store.stage_write(name, 0, data).unwrap();
        store.stage_finish(name).unwrap();
    }
    let params = CommitParams {
        trial_limit: TRIAL_LIMIT as u8,
        needs_app: 1,
        ..CommitParams::IMMEDIATE
    };
    assert_eq!(store.commit(None, &params).unwrap(), 2);
    store.into_inner().contents().to_vec()
}

/// Flash operations of one record write that copies the current payload (a bump, a confirm, a
/// revert's switch), counted on `image` as the device's driver counts them (`rota-memflash`).
fn record_write_ops(image: &[u8]) -> u32 {
    let mut store = Store::new(MemFlash::new(image.to_vec()));
    store.bump_boot().unwrap();
    store.into_inner().ops()
}

/// A boot that skips the update (a key at `tick`'s prompt), optionally cut at flash operation `cut`.
fn keyed(cut: Option<u32>) -> Boot {
    Boot {
        server: None,
        cut,
        keys: b"x".to_vec(),
        ..Boot::to(0)
    }
}

/// Flash operations of a boot of `image` (the first cut point that no longer cuts).
fn boot_ops(m: Machine, image: &[u8]) -> u32 {
    let cuts = |n: u32| Device::on(m, image).boot(&keyed(Some(n))).status == Some(POWER_CUT_EXIT);
    let (mut lo, mut hi) = (0, 64);
    while cuts(hi) {
        hi *= 2;
        assert!(hi < 4096, "no end to the flash operations");
    }
    // cuts(lo) and !cuts(hi).
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if cuts(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// Cut points: every one of `dense`, and `spread` points spread over `0..total` besides.
fn points(total: u32, dense: std::ops::Range<u32>, spread: u32) -> Vec<u32> {
    let mut p: Vec<u32> = (0..spread).map(|i| i * total / spread).collect();
    p.extend(dense);
    p.sort_unstable();
    p.dedup();
    p
}

/// Runs `check` on every point, two at a time (each point is two or three short emulator runs).
fn two_at_a_time<T: Send>(points: &[u32], check: impl Fn(u32) -> T + Sync) -> Vec<T> {
    let (first, second) = points.split_at(points.len() / 2);
    std::thread::scope(|s| {
        let other = s.spawn(|| first.iter().map(|&n| check(n)).collect::<Vec<_>>());
        let mine: Vec<_> = second.iter().map(|&n| check(n)).collect();
        let mut all = other.join().unwrap();
        all.extend(mine);
        all
    })
}

fn power_cuts_during_confirm_leave_a_device_that_boots_and_confirms(m: Machine) {
    let old = old_release(m);
    let new_app = std::fs::read(artifact(&format!("{}/v2/app.blob", m.isa_dir()))).unwrap();
    let image = committed_on_trial(m, &old, &[("app", &new_app)]);
    // The trial boot: the bump that counts it, the heap report, then the app's confirm: the last
    // operations of the boot, a record write like a bump of the record the boot leaves (its
    // payload holds this boot's heap report).
    let total = boot_ops(m, &image);
    let after = Device::on(m, &image);
    assert_eq!(after.boot(&keyed(None)).status, Some(0));
    let write = record_write_ops(&after.image());
    let confirm = total - write..total;
    let outcomes = two_at_a_time(&points(total, confirm.clone(), 6), |n| {
        let device = Device::on(m, &image);
        let run = device.boot(&keyed(Some(n)));
        assert_eq!(run.status, Some(POWER_CUT_EXIT), "cut {n}: {}", run.console);
        let cut = record(&device);
        assert_eq!(cut.generation, 2, "cut {n}");
        // Bootable: the trial generation runs (on trial still, or confirmed), its app confirms.
        let run = device.boot(&keyed(None));
        let c = &run.console;
        assert!(!c.contains("rollback: "), "cut {n}: {c}");
        assert_eq!(app_versions(&run), vec![2], "cut {n}: {c}");
        assert_eq!(run.status, Some(0), "cut {n}: {c}");
        let r = record(&device);
        assert_eq!((r.generation, r.confirmed), (2, 2), "cut {n}: {c}");
        (cut.confirmed == 2, confirm.contains(&n))
    });
    let in_confirm = outcomes.iter().filter(|o| o.1).count();
    let confirmed = outcomes.iter().filter(|o| o.0).count();
    println!(
        "{m:?}: trial boot of {total} flash operations, confirm {write}: {} cut points, {in_confirm} in confirm, {confirmed} left it confirmed",
        outcomes.len()
    );
    assert_eq!(in_confirm, write as usize);
}

fn power_cuts_during_a_revert_leave_a_device_that_boots_the_old_generation(m: Machine) {
    let old = old_release(m);
    let device = Device::on(
        m,
        &committed_on_trial(m, &old, &[("app", &fixture(m, "app-panic"))]),
    );
    for n in 1..=TRIAL_LIMIT {
        let run = device.boot(&keyed(None));
        assert!(
            run.console
                .contains("trial boot ended: panicked (recorded)"),
            "{n}: {}",
            run.console
        );
    }
    let image = device.image();
    // The boot past the limit: the bump, the revert's switch (a record write like it), one kill
    // (the rolled-back app), then the rest of the boot on the old generation (two of its operations
    // cut too).
    let write = record_write_ops(&image);
    let revert = 0..2 * write + 3;
    let total = boot_ops(m, &image);
    let outcomes = two_at_a_time(&points(total, revert.clone(), 6), |n| {
        let device = Device::on(m, &image);
        let cut = device.boot(&keyed(Some(n)));
        assert_eq!(cut.status, Some(POWER_CUT_EXIT), "cut {n}: {}", cut.console);
        let switched = record(&device).generation == 1;
        let run = device.boot(&keyed(None));
        let c = &run.console;
        // The line once over both runs: printed as soon as the switch is on flash.
        let lines = cut.console.matches("rollback: ").count() + c.matches("rollback: ").count();
        assert_eq!(lines, 1, "cut {n}: {}\n{c}", cut.console);
        assert!(
            cut.console
                .contains("rollback: generation 2 -> 1 (app panicked)")
                || c.contains("rollback: generation 2 -> 1 (app panicked)"),
            "cut {n}: {}\n{c}",
            cut.console
        );
        assert_eq!(app_versions(&run), vec![1], "cut {n}: {c}");
        assert_eq!(run.status, Some(0), "cut {n}: {c}");
        let r = record(&device);
        assert_eq!(
            (r.generation, r.confirmed, r.rollback.from),
            (1, 1, 2),
            "cut {n}"
        );
        (switched, revert.contains(&n))
    });
    let switched = outcomes.iter().filter(|o| o.0).count();
    println!(
        "{m:?}: revert boot of {total} flash operations, record write {write}: {} cut points, {switched} after the switch",
        outcomes.len()
    );
    assert!(switched > 0 && switched < outcomes.len());
}
