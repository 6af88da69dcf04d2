//! Trial boots on the device (`docs/trial-boot.md`): the rollback at boot, and how a panic or fault
//! handler records why a trial boot ended.
//!
//! A generation committed with a trial limit N is on trial until it is confirmed (the `confirm`
//! service). Every boot on trial is counted by the store's `bump_boot`; the boot counted N + 1, that
//! is the first after N trial boots that did not confirm, reverts to the last confirmed generation
//! before loading any overlay ([`check`]).
//!
//! A panic or fault handler cannot reach the board the core was given, so while a trial boot runs
//! the core leaves the handlers a way to the storage region's driver ([`arm`]): [`ended`], which
//! the boards' fault and panic handlers call, writes the reason and the phase that was running
//! into the store with one 4-byte flash write (`rota_store::Store::mark_end`). Nothing is armed on
//! a boot that is not on trial, nor after the app (or an overlay) confirmed.

use crate::report::{self, Console};
use crate::Board;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering::Relaxed};
use embedded_storage::nor_flash::NorFlash;
/// The reasons and phase numbers of a rollback (the ABI's), for the boards' handlers.
pub use rota_abi::rollback;
use rota_abi::Trial;
use rota_store::{ConfigInfo, Rollback, Store, TrialEnd};

/// The storage region's driver while a trial boot is armed (null otherwise).
static FLASH: AtomicPtr<()> = AtomicPtr::new(null_mut());
/// [`mark::<F>`] for that driver's type, as a data pointer (there is no atomic fn pointer).
static MARK: AtomicPtr<()> = AtomicPtr::new(null_mut());
/// The phase running now (`rota_abi::rollback` numbering).
static PHASE: AtomicU8 = AtomicU8::new(0);
/// Set by the first [`ended`]: a fault while recording records nothing more.
static BUSY: AtomicBool = AtomicBool::new(false);

type MarkFn = unsafe fn(*mut (), TrialEnd) -> bool;

/// Writes `end` through the driver at `flash`.
///
/// # Safety
/// `flash` must point to a live `F` that nothing else uses during the call.
#[inline(never)]
unsafe fn mark<F: NorFlash>(flash: *mut (), end: TrialEnd) -> bool {
    // SAFETY: the caller's contract.
    let flash = unsafe { &mut *(flash as *mut F) };
    Store::new(flash).mark_end(end).is_ok()
}

/// Arms the handlers for this trial boot: [`ended`] will write through `flash`, which must stay
/// where it is until [`disarm`] (the core's board outlives the boot).
pub(crate) fn arm<F: NorFlash>(flash: &mut F) {
    let f: MarkFn = mark::<F>;
    MARK.store(f as *mut (), Relaxed);
    PHASE.store(rollback_phase(crate::Phase::Boot), Relaxed);
    BUSY.store(false, Relaxed);
    FLASH.store(flash as *mut F as *mut (), Relaxed);
}

/// Nothing more is recorded this boot (confirmed, or over).
pub(crate) fn disarm() {
    FLASH.store(null_mut(), Relaxed);
}

/// The phase that runs from now on (`rota_abi::rollback` numbering), for [`ended`].
pub(crate) fn set_phase(phase: u8) {
    PHASE.store(phase, Relaxed);
}

/// A heap-report phase's number, as rollbacks record it.
pub(crate) const fn rollback_phase(phase: crate::Phase) -> u8 {
    phase as u8
}

/// For the boards' panic and fault handlers: if this boot is a trial boot, records that it ended
/// with `reason` ([`rollback::PANIC`] or [`rollback::FAULT`]) in the phase running now, with one
/// flash write. Returns whether it wrote. At most once per boot: a fault while recording (or a
/// second call) records nothing.
///
/// # Safety
/// Only from a panic or fault handler that afterwards stops or resets the device, never returning
/// to the code it interrupted: the write goes through the storage driver that code may have been
/// using (the core's board holds it), which is sound only because that code never runs again. No
/// other code may use the driver meanwhile.
pub unsafe fn ended(reason: u8) -> bool {
    // No compare-and-swap on the LX106; a fault handler is not interrupted by another one that
    // returns, so load + store is enough.
    if BUSY.load(Relaxed) {
        return false;
    }
    BUSY.store(true, Relaxed);
    let flash = FLASH.load(Relaxed);
    if flash.is_null() {
        return false;
    }
    disarm();
    let end = TrialEnd {
        reason,
        phase: PHASE.load(Relaxed),
    };
    // SAFETY: `arm` stored `mark::<F>` for the `F` `flash` points to, and `flash` is that board's
    // driver, which outlives the boot (the core disarms before `run` returns). The interrupted code
    // that may hold it never runs again and nothing else uses it now (this function's contract).
    unsafe {
        let f: MarkFn = core::mem::transmute::<*mut (), MarkFn>(MARK.load(Relaxed));
        f(flash, end)
    }
}

/// The reason and phase a revert records: the panic or fault the last trial boot's handler
/// marked, or else "not confirmed" (a hang ended by a watchdog or a reset, a power cut, an app
/// that returned without confirming).
fn reason(info: &ConfigInfo) -> (u8, u8) {
    match info.ended.reason {
        rollback::PANIC | rollback::FAULT => (info.ended.reason, info.ended.phase),
        _ => (rollback::UNCONFIRMED, 0),
    }
}

/// At boot, right after the store counted this boot: if it is past the trial limit, reverts to
/// the last confirmed generation and prints `rollback: generation <from> -> <to> (<reason>)`
/// once the switch is on flash (before the rolled-back entries are dropped, so a power cut cannot
/// lose the line: until the switch the next boot reverts and prints, after it the line is out).
/// Out of line: its store calls' buffers are not on the stack while the boot loads the config.
#[inline(never)]
pub(crate) fn check<B: Board>(board: &mut B) -> Result<(), rota_store::Error> {
    let info = Store::new(&mut *board.flash()).config(&mut [])?;
    if !info.revert_due() {
        return Ok(());
    }
    let (why, phase) = reason(&info);
    let Some(r) = Store::new(&mut *board.flash()).revert_record(why, phase)? else {
        return Ok(());
    };
    print_rollback(board, &r, info.trials.saturating_sub(1));
    Store::new(&mut *board.flash()).drop_reverted()
}

/// `rollback: generation <from> -> <to> (<reason>)`, the reason being `<phase> panicked`,
/// `<phase> faulted` or `not confirmed in <boots> boots`.
fn print_rollback(c: &mut impl Console, r: &Rollback, boots: u8) {
    c.print(b"rollback: generation ");
    report::write_dec(c, r.from);
    c.print(b" -> ");
    report::write_dec(c, r.to);
    c.print(b" (");
    match r.reason {
        rollback::PANIC | rollback::FAULT => {
            c.print(rollback::phase_name(r.phase).as_bytes());
            c.print(b" ");
            c.print(rollback::describe(r.reason).as_bytes());
        }
        _ => {
            c.print(rollback::describe(rollback::UNCONFIRMED).as_bytes());
            c.print(b" in ");
            report::write_dec(c, u32::from(boots));
            c.print(b" boots");
        }
    }
    c.print(b")\n");
}

/// `trial: generation <g> on trial, boot <n> of <limit>` (confirmed: `<c>`).
pub(crate) fn print_trial(c: &mut impl Console, info: &ConfigInfo) {
    c.print(b"trial: generation ");
    report::write_dec(c, info.generation);
    c.print(b" on trial, boot ");
    report::write_dec(c, u32::from(info.trials));
    c.print(b" of ");
    report::write_dec(c, u32::from(info.trial_limit));
    c.print(b" (confirmed: ");
    report::write_dec(c, info.confirmed);
    c.print(b")\n");
}

/// The trial state overlays see ([`rota_abi::Context::trial`]).
pub(crate) fn state(info: &ConfigInfo) -> Trial {
    Trial {
        generation: info.generation,
        confirmed: info.confirmed,
        security_version: info.security_version,
        rollback_from: info.rollback.from,
        rollback_to: info.rollback.to,
        rollback_reason: info.rollback.reason,
        rollback_phase: info.rollback.phase,
        trials: info.trials,
        needs_app: u8::from(info.needs_app),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Buf(std::string::String);
    extern crate std;

    impl Console for Buf {
        fn print(&mut self, bytes: &[u8]) {
            self.0.push_str(core::str::from_utf8(bytes).unwrap());
        }
    }

    #[test]
    fn the_rollback_line_has_the_documented_form() {
        let line = |r: Rollback, boots| {
            let mut b = Buf(std::string::String::new());
            print_rollback(&mut b, &r, boots);
            b.0
        };
        let r = |reason, phase| Rollback {
            from: 7,
            to: 5,
            reason,
            phase,
        };
        assert_eq!(
            line(r(rollback::PANIC, rollback::PHASE_APP), 3),
            "rollback: generation 7 -> 5 (app panicked)\n"
        );
        assert_eq!(
            line(r(rollback::FAULT, 3), 3),
            "rollback: generation 7 -> 5 (provision faulted)\n"
        );
        assert_eq!(
            line(r(rollback::UNCONFIRMED, 0), 3),
            "rollback: generation 7 -> 5 (not confirmed in 3 boots)\n"
        );
    }
}
