//! Trial boots (`docs/trial-boot.md`): a commit on trial keeps the confirmed generation's files,
//! confirm and revert are one record write each, the trial boots are counted by `bump_boot`, the
//! security version never goes down; and power cuts at every flash operation of confirm, revert,
//! the bump that counts a trial and the panic/fault mark leave exactly the trial or exactly the
//! confirmed generation, on a store that boots.

mod common;

use common::*;
use rota_memflash::MemFlash;
use rota_store::{CommitParams, Error, Rollback, Store, TrialEnd};

const SECTORS: usize = 48;
/// Reason and phase numbers as the core uses them (`rota_abi::rollback`).
const PANIC: u8 = 1;
const FAULT: u8 = 2;
const UNCONFIRMED: u8 = 3;
const APP: u8 = 5;
const PROVISION: u8 = 3;

fn trial(limit: u8) -> CommitParams {
    CommitParams {
        trial_limit: limit,
        needs_app: 1,
        ..CommitParams::IMMEDIATE
    }
}

/// A store with generation 1 confirmed (`app`, `init`, `provision`, `data.txt`) and generation 2
/// committed on trial with a limit of 3: `app` and `provision` replaced, `tick` added, `data.txt`
/// deleted, `init` renamed to `init2`, a new payload.
struct Trial {
    /// Generation 2 committed, on trial, never booted.
    image: Vec<u8>,
    old: View,
    new: View,
}

fn trial_store() -> Trial {
    let (app1, init, prov1, data) = (
        bytes(1, 12_000),
        bytes(2, 2_000),
        bytes(3, 5_000),
        bytes(4, 300),
    );
    let mut s = formatted(SECTORS, b"P0");
    stage(&mut s, b"app", &app1, 1, 1024).unwrap();
    stage(&mut s, b"init", &init, 1, 4096).unwrap();
    stage(&mut s, b"provision", &prov1, 1, 999).unwrap();
    stage(&mut s, b"data.txt", &data, 1, 64).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    s.gc().unwrap();
    let old = view_of(
        &[
            (b"app", 1, &app1),
            (b"init", 1, &init),
            (b"provision", 1, &prov1),
            (b"data.txt", 1, &data),
        ],
        b"P0",
    );
    let (app2, prov2, tick) = (bytes(5, 17_501), bytes(6, 6_000), bytes(7, 3_000));
    stage(&mut s, b"app", &app2, 2, 777).unwrap();
    stage(&mut s, b"provision", &prov2, 2, 4096).unwrap();
    stage(&mut s, b"tick", &tick, 1, 1024).unwrap();
    s.stage_delete(b"data.txt").unwrap();
    s.stage_rename(b"init", b"init2").unwrap();
    // A payload as long as the core's (unaligned: a body and a tail write).
    let p1 = bytes(40, 301);
    assert_eq!(s.commit(Some(&p1), &trial(3)).unwrap(), 2);
    // What the core does before rebooting into it.
    s.gc().unwrap();
    let new = view_of(
        &[
            (b"app", 2, &app2),
            (b"init2", 1, &init),
            (b"provision", 2, &prov2),
            (b"tick", 1, &tick),
        ],
        &p1,
    );
    assert_eq!(view(&mut s), new);
    Trial {
        image: s.into_inner().contents().to_vec(),
        old,
        new,
    }
}

fn info<F: embedded_storage::nor_flash::NorFlash>(s: &mut Store<F>) -> rota_store::ConfigInfo {
    s.config(&mut []).unwrap()
}

/// The old view's files with the new payload: a revert switches the files, not the config.
fn old_files(x: &Trial) -> View {
    View {
        payload: x.new.payload.clone(),
        ..x.old.clone()
    }
}

#[test]
fn a_commit_on_trial_keeps_the_confirmed_generation_until_confirm() {
    let x = trial_store();
    let mut s = Store::new(MemFlash::new(x.image.clone()));
    let i = info(&mut s);
    assert_eq!(
        (i.generation, i.confirmed, i.trials, i.trial_limit),
        (2, 1, 0, 3)
    );
    assert!(i.on_trial() && i.needs_app && !i.revert_due());
    // Both sets' extents are on flash: the 4 old entries, and 4 new ones and 2 tombstones.
    assert_eq!(headers(s.flash().contents()), 10);
    assert!(s.confirm().unwrap());
    let i = info(&mut s);
    assert_eq!((i.generation, i.confirmed, i.trials), (2, 2, 0));
    assert!(!i.on_trial() && !i.needs_app);
    assert_eq!(view(&mut s), x.new);
    // Confirming again writes nothing.
    let ops = s.flash().ops();
    assert!(!s.confirm().unwrap());
    assert_eq!(s.flash().ops(), ops);
    // Now the old set is garbage.
    s.gc().unwrap();
    assert_eq!(view(&mut s), x.new);
    assert_eq!(headers(s.flash().contents()), 4);
    assert_eq!(s.revert(UNCONFIRMED, 0).unwrap(), None, "nothing on trial");
}

#[test]
fn trial_boots_are_counted_by_bump_boot_and_the_boot_past_the_limit_reverts() {
    let x = trial_store();
    let mut s = Store::new(MemFlash::new(x.image.clone()));
    for n in 1..=3 {
        s.bump_boot().unwrap();
        let i = info(&mut s);
        assert_eq!(i.trials, n);
        assert!(!i.revert_due(), "boot {n} of 3 runs the trial");
    }
    s.bump_boot().unwrap();
    let i = info(&mut s);
    assert!(i.revert_due(), "the fourth boot reverts: {i:?}");
    assert_eq!(i.ended, TrialEnd::NONE, "no boot left a mark");
    let r = s.revert(UNCONFIRMED, 0).unwrap().unwrap();
    assert_eq!(
        r,
        Rollback {
            from: 2,
            to: 1,
            reason: UNCONFIRMED,
            phase: 0
        }
    );
    let i = info(&mut s);
    assert_eq!((i.generation, i.confirmed, i.trials), (1, 1, 0));
    assert_eq!(i.rollback, r, "kept for the next check-ins");
    assert!(!i.needs_app);
    assert_eq!(view(&mut s), old_files(&x));
    assert!(staged_all(&mut s).is_empty(), "everything newer was killed");
    // The rolled-back generation is garbage now; the old set stays live.
    s.gc().unwrap();
    assert_eq!(view(&mut s), old_files(&x));
    assert_eq!(headers(s.flash().contents()), 4);
    // Later boots count nothing; the next commit clears the rollback record.
    s.bump_boot().unwrap();
    assert_eq!(info(&mut s).trials, 0);
    assert_eq!(info(&mut s).rollback, r);
    stage(&mut s, b"tick", &bytes(9, 100), 3, 64).unwrap();
    assert_eq!(s.commit(None, &CommitParams::IMMEDIATE).unwrap(), 2);
    let i = info(&mut s);
    assert_eq!(
        (i.generation, i.confirmed, i.rollback),
        (2, 2, Rollback::NONE)
    );
}

#[test]
fn confirm_stops_the_count() {
    let x = trial_store();
    let mut s = Store::new(MemFlash::new(x.image.clone()));
    for _ in 0..3 {
        s.bump_boot().unwrap();
    }
    assert!(s.confirm().unwrap());
    for _ in 0..10 {
        s.bump_boot().unwrap();
        let i = info(&mut s);
        assert!(!i.revert_due() && i.trials == 0);
    }
    assert_eq!(view(&mut s), x.new);
}

#[test]
fn a_panic_or_fault_mark_is_one_write_and_reaches_the_next_record_once() {
    let x = trial_store();
    let mut s = Store::new(MemFlash::new(x.image.clone()));
    s.bump_boot().unwrap();
    let ops = s.flash().ops();
    let panic = TrialEnd {
        reason: PANIC,
        phase: APP,
    };
    s.mark_end(panic).unwrap();
    assert_eq!(s.flash().ops(), ops + 1, "one flash write");
    // A second mark in the same boot (a fault while handling the first) writes nothing.
    s.mark_end(TrialEnd {
        reason: FAULT,
        phase: PROVISION,
    })
    .unwrap();
    assert_eq!(s.flash().ops(), ops + 1);
    assert_eq!(info(&mut s).ended, TrialEnd::NONE, "read at the next bump");
    s.bump_boot().unwrap();
    assert_eq!(info(&mut s).ended, panic);
    assert_eq!(info(&mut s).trials, 2);
    // A boot without a mark: the next record says so.
    s.bump_boot().unwrap();
    assert_eq!(info(&mut s).ended, TrialEnd::NONE);
    // Not on trial: nothing is written.
    assert!(s.confirm().unwrap());
    let ops = s.flash().ops();
    s.mark_end(panic).unwrap();
    assert_eq!(s.flash().ops(), ops);
    s.bump_boot().unwrap();
    assert_eq!(info(&mut s).ended, TrialEnd::NONE);
}

#[test]
fn a_boot_that_only_reverted_keeps_the_reason_of_the_last_trial_boot() {
    // Boot 4 is past the limit; its revert is cut short before the record write, so boot 5 reverts:
    // still for the panic of boot 3, not for boot 4, which ran nothing.
    let x = trial_store();
    let mut s = Store::new(MemFlash::new(x.image.clone()));
    for _ in 0..3 {
        s.bump_boot().unwrap();
    }
    let fault = TrialEnd {
        reason: FAULT,
        phase: PROVISION,
    };
    s.mark_end(fault).unwrap();
    s.bump_boot().unwrap();
    assert!(info(&mut s).revert_due());
    assert_eq!(info(&mut s).ended, fault);
    s.bump_boot().unwrap();
    assert!(info(&mut s).revert_due());
    assert_eq!(info(&mut s).ended, fault);
}

#[test]
fn gc_keeps_the_confirmed_set_while_on_trial_and_frees_it_after_confirm() {
    let x = trial_store();
    let mut s = Store::new(MemFlash::new(x.image.clone()));
    s.gc().unwrap();
    assert_eq!(
        headers(s.flash().contents()),
        10,
        "nothing of generation 1 erased"
    );
    // Even a revert after gc finds every old file whole (view checks each digest).
    let mut t = Store::new(MemFlash::new(s.flash().contents().to_vec()));
    t.revert(UNCONFIRMED, 0).unwrap();
    assert_eq!(view(&mut t), old_files(&x));
    // A second update while on trial: the old set stays, the trial one's replaced files go.
    let app3 = bytes(8, 5_000);
    stage(&mut s, b"app", &app3, 3, 4096).unwrap();
    assert_eq!(s.commit(None, &trial(3)).unwrap(), 3);
    s.gc().unwrap();
    let i = info(&mut s);
    assert_eq!(
        (i.generation, i.confirmed),
        (3, 1),
        "generation 1 is still the confirmed one"
    );
    assert_eq!(headers(s.flash().contents()), 10, "app 2 gone, app 3 in");
    let mut t = Store::new(MemFlash::new(s.flash().contents().to_vec()));
    assert_eq!(t.revert(PANIC, APP).unwrap().unwrap().from, 3);
    assert_eq!(view(&mut t), old_files(&x));
    assert!(s.confirm().unwrap());
    s.gc().unwrap();
    assert_eq!(headers(s.flash().contents()), 4);
    let mut want = x.new.clone();
    want.files.insert(b"app".to_vec(), (3, app3));
    assert_eq!(view(&mut s), want);
}

#[test]
fn allocation_never_reuses_the_confirmed_set() {
    // 10 sectors: 2 for the records, 4 for a (4 sectors), 4 for its replacement on trial. A third
    // copy has no room while the first must stay; after confirm it takes the first one's place.
    let (a1, a2, a3) = (bytes(20, 14_000), bytes(21, 14_000), bytes(22, 14_000));
    let mut s = formatted(10, b"");
    stage(&mut s, b"a", &a1, 1, 4096).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    stage(&mut s, b"a", &a2, 2, 4096).unwrap();
    s.commit(None, &trial(3)).unwrap();
    assert_eq!(stage(&mut s, b"a", &a3, 3, 4096), Err(Error::NoSpace));
    let mut t = Store::new(MemFlash::new(s.flash().contents().to_vec()));
    t.revert(UNCONFIRMED, 0).unwrap();
    assert_eq!(view(&mut t), view_of(&[(b"a", 1, &a1)], b""));
    assert!(s.confirm().unwrap());
    stage(&mut s, b"a", &a3, 3, 4096).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    assert_eq!(view(&mut s), view_of(&[(b"a", 3, &a3)], b""));
}

#[test]
fn a_lower_security_version_is_refused_before_anything_is_written() {
    let mut s = formatted(16, b"cfg");
    let sv = |v: u32| CommitParams {
        security_version: v,
        ..CommitParams::IMMEDIATE
    };
    stage(&mut s, b"a", &bytes(1, 100), 1, 64).unwrap();
    assert_eq!(s.commit(None, &sv(5)).unwrap(), 1);
    assert_eq!(info(&mut s).security_version, 5);
    stage(&mut s, b"a", &bytes(2, 100), 2, 64).unwrap();
    let before = s.flash().contents().to_vec();
    let ops = s.flash().ops();
    assert_eq!(s.commit(Some(b"new"), &sv(4)), Err(Error::Downgrade));
    assert_eq!(Error::Downgrade.status(), rota_abi::status::EROLLBACK);
    assert_eq!(s.flash().ops(), ops, "no flash operation");
    assert_eq!(s.flash().contents(), &before[..]);
    assert_eq!(info(&mut s).generation, 1);
    // The same version is accepted, and a rollback does not lower it either.
    assert_eq!(s.commit(None, &sv(5)).unwrap(), 2);
    stage(&mut s, b"a", &bytes(3, 100), 3, 64).unwrap();
    s.commit(
        None,
        &CommitParams {
            trial_limit: 2,
            ..sv(9)
        },
    )
    .unwrap();
    s.revert(UNCONFIRMED, 0).unwrap().unwrap();
    let i = info(&mut s);
    assert_eq!((i.generation, i.security_version), (2, 9));
    stage(&mut s, b"a", &bytes(4, 100), 4, 64).unwrap();
    assert_eq!(s.commit(None, &sv(8)), Err(Error::Downgrade));
}

#[test]
fn a_commit_while_on_trial_keeps_the_confirmed_generation_and_adds_needs_app() {
    let mut s = formatted(16, b"");
    stage(&mut s, b"a", &bytes(1, 100), 1, 64).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    stage(&mut s, b"a", &bytes(2, 100), 2, 64).unwrap();
    s.commit(None, &trial(3)).unwrap();
    s.bump_boot().unwrap();
    stage(&mut s, b"b", &bytes(3, 100), 1, 64).unwrap();
    let p = CommitParams {
        trial_limit: 2,
        needs_app: 0,
        ..CommitParams::IMMEDIATE
    };
    assert_eq!(s.commit(None, &p).unwrap(), 3);
    let i = info(&mut s);
    assert_eq!(
        (i.generation, i.confirmed, i.trials, i.trial_limit),
        (3, 1, 0, 2)
    );
    assert!(i.needs_app, "the generation on trial before needed the app");
    // Limit 0 confirms everything at once (the behaviour before trials).
    stage(&mut s, b"c", &bytes(4, 100), 1, 64).unwrap();
    assert_eq!(s.commit(None, &CommitParams::IMMEDIATE).unwrap(), 4);
    let i = info(&mut s);
    assert_eq!((i.confirmed, i.trials), (4, 0));
    assert!(!i.on_trial() && !i.needs_app);
}

/// A record of the previous format (`RCF2`: no trial state), as a store before trial boots wrote
/// it, is read as confirmed; the next write is in the current format.
#[test]
fn a_format_2_record_reads_as_confirmed() {
    let mut s = formatted(8, b"");
    stage(&mut s, b"a", &bytes(1, 100), 1, 64).unwrap();
    s.commit(None, &CommitParams::IMMEDIATE).unwrap();
    let mut image = s.into_inner().contents().to_vec();
    image[..2 * SECTOR].fill(0xFF);
    let payload = b"old payload";
    let mut rec = Vec::new();
    rec.extend_from_slice(b"RCF2");
    for v in [7u32, 1, 41] {
        rec.extend_from_slice(&v.to_le_bytes());
    }
    rec.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    rec.extend_from_slice(&[0, 0]);
    rec.extend_from_slice(payload);
    while rec.len() % 4 != 0 {
        rec.push(0xFF);
    }
    let crc = !crc32(!0, &rec[..20 + payload.len()]);
    rec.extend_from_slice(&crc.to_le_bytes());
    image[..rec.len()].copy_from_slice(&rec);
    let mut s = Store::new(MemFlash::new(image));
    let i = info(&mut s);
    assert_eq!(
        (i.seq, i.generation, i.boot_count, i.confirmed),
        (7, 1, 41, 1)
    );
    assert_eq!(view(&mut s), view_of(&[(b"a", 1, &bytes(1, 100))], payload));
    assert_eq!(s.bump_boot().unwrap(), 42);
    assert_eq!(&s.flash().contents()[SECTOR..SECTOR + 4], b"RCF3");
    assert_eq!(view(&mut s).payload, payload);
}

fn crc32(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    crc
}

/// What a boot does with the store, as the core does it: bump (counting a trial boot), revert if
/// that boot is past the limit, drop whatever is staged (the core keeps a few for resuming; none
/// of these come from a session the server knows of). Returns the rollback, if one was made.
fn boot(s: &mut Store<Mem>) -> Option<Rollback> {
    s.bump_boot().unwrap();
    let i = info(s);
    let r = if i.revert_due() {
        s.revert(UNCONFIRMED, 0).unwrap()
    } else {
        None
    };
    s.stage_abort().unwrap();
    r
}

#[test]
fn power_cut_at_every_operation_of_confirm() {
    let x = trial_store();
    let mut booted = Store::new(MemFlash::new(x.image.clone()));
    booted.bump_boot().unwrap();
    let image = booted.flash().contents().to_vec();
    let mut s = Store::new(MemFlash::new(image.clone()));
    assert!(s.confirm().unwrap());
    let total = s.flash().ops();
    assert!(total >= 4, "{total} ops");
    for cut in CUTS {
        let (mut trials, mut confirmed) = (0, 0);
        for n in 0..total {
            let mut s = Store::new(cut_flash(&image, n, cut));
            assert!(s.confirm().is_err(), "{cut:?} at {n} went unnoticed");
            let mut s = reboot(s);
            let what = format!("confirm, {cut:?} at op {n}/{total}");
            // The files are the trial generation's either way; only the record differs.
            assert_eq!(view(&mut s), x.new, "{what}");
            let i = info(&mut s);
            assert_eq!(i.generation, 2, "{what}");
            match i.confirmed {
                1 => trials += 1,
                2 => confirmed += 1,
                c => panic!("{what}: confirmed {c}"),
            }
            // The device boots, and the next confirm completes it.
            assert_eq!(boot(&mut s), None, "{what}");
            s.confirm().unwrap();
            assert_eq!(info(&mut s).confirmed, 2, "{what}");
            s.gc().unwrap();
            assert_eq!(view(&mut s), x.new, "{what}");
            assert_eq!(headers(s.flash().contents()), 4, "{what}: extents leaked");
        }
        eprintln!("confirm, {cut:?}: {total} cut points: {trials} on trial, {confirmed} confirmed");
        assert!(trials > 0, "{cut:?}");
    }
}

#[test]
fn power_cut_at_every_operation_of_revert() {
    let x = trial_store();
    let mut s = Store::new(MemFlash::new(x.image.clone()));
    for _ in 0..4 {
        s.bump_boot().unwrap();
    }
    assert!(info(&mut s).revert_due());
    let image = s.flash().contents().to_vec();
    let mut s = Store::new(MemFlash::new(image.clone()));
    s.revert(UNCONFIRMED, 0).unwrap().unwrap();
    let total = s.flash().ops();
    // The record, then one kill per entry of generation 2 (4 files, 2 tombstones).
    assert!(total >= 4 + 6, "{total} ops");
    for cut in CUTS {
        let (mut before, mut after) = (0, 0);
        for n in 0..total {
            let mut s = Store::new(cut_flash(&image, n, cut));
            assert!(
                s.revert(UNCONFIRMED, 0).is_err(),
                "{cut:?} at {n} went unnoticed"
            );
            let mut s = reboot(s);
            let what = format!("revert, {cut:?} at op {n}/{total}");
            let v = view(&mut s);
            let i = info(&mut s);
            if v == x.new {
                assert_eq!((i.generation, i.confirmed), (2, 1), "{what}");
                before += 1;
            } else if v == old_files(&x) {
                assert_eq!((i.generation, i.rollback.from), (1, 2), "{what}");
                after += 1;
            } else {
                panic!("{what}: neither set: {v:?}");
            }
            // The next boot reverts (again, or not at all) and runs the confirmed set; anything of
            // generation 2 left is a staged leftover the boot drops, or garbage.
            let r = boot(&mut s);
            assert_eq!(r.is_some(), v == x.new, "{what}");
            assert_eq!(view(&mut s), old_files(&x), "{what}");
            assert_eq!(info(&mut s).rollback.from, 2, "{what}");
            s.gc().unwrap();
            assert_eq!(headers(s.flash().contents()), 4, "{what}: extents leaked");
            // And takes the next update.
            stage(&mut s, b"tick", &bytes(9, 2000), 3, 512).unwrap();
            assert_eq!(
                s.commit(None, &CommitParams::IMMEDIATE).unwrap(),
                2,
                "{what}"
            );
        }
        eprintln!("revert, {cut:?}: {total} cut points: {before} before the switch, {after} after");
        assert!(before > 0 && after > 0, "{cut:?}");
    }
}

#[test]
fn power_cut_at_every_operation_of_a_bump_that_counts_a_trial() {
    let x = trial_store();
    let mut s = Store::new(MemFlash::new(x.image.clone()));
    s.bump_boot().unwrap();
    let mark = TrialEnd {
        reason: PANIC,
        phase: APP,
    };
    s.mark_end(mark).unwrap();
    let image = s.flash().contents().to_vec();
    let mut s = Store::new(MemFlash::new(image.clone()));
    let boot_count = info(&mut s).boot_count;
    s.bump_boot().unwrap();
    let total = s.flash().ops();
    for cut in CUTS {
        for n in 0..total {
            let mut s = Store::new(cut_flash(&image, n, cut));
            assert!(s.bump_boot().is_err(), "{cut:?} at {n} went unnoticed");
            let mut s = reboot(s);
            let what = format!("bump, {cut:?} at op {n}/{total}");
            assert_eq!(view(&mut s), x.new, "{what}");
            let i = info(&mut s);
            match i.boot_count - boot_count {
                // Not counted: the old record, mark and all, is still the current one.
                0 => assert_eq!((i.trials, i.ended), (1, TrialEnd::NONE), "{what}"),
                1 => assert_eq!((i.trials, i.ended), (2, mark), "{what}"),
                d => panic!("{what}: {d} boots"),
            }
            // The next boots count on from there and revert when the limit is passed.
            let mut reverted = None;
            for _ in 0..4 {
                reverted = reverted.or(boot(&mut s));
            }
            let r = reverted.unwrap_or_else(|| panic!("{what}: never reverted"));
            assert_eq!((r.from, r.to), (2, 1), "{what}");
            assert_eq!(view(&mut s), old_files(&x), "{what}");
        }
    }
    eprintln!("trial bump: {total} cut points in {} modes", CUTS.len());
}

#[test]
fn power_cut_during_the_mark_never_leaves_another_reason() {
    let x = trial_store();
    let mut s = Store::new(MemFlash::new(x.image.clone()));
    s.bump_boot().unwrap();
    let image = s.flash().contents().to_vec();
    let mark = TrialEnd {
        reason: FAULT,
        phase: PROVISION,
    };
    for cut in CUTS {
        let mut s = Store::new(cut_flash(&image, 0, cut));
        assert!(s.mark_end(mark).is_err(), "{cut:?}");
        let mut s = reboot(s);
        s.bump_boot().unwrap();
        // A torn mark is no mark: the boot counts as one that ended without a record.
        let ended = info(&mut s).ended;
        assert!(
            ended == TrialEnd::NONE || ended == mark,
            "{cut:?}: {ended:?}"
        );
        assert_eq!(view(&mut s), x.new, "{cut:?}");
    }
}
