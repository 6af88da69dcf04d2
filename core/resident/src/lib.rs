//! rota's resident core: the part of the firmware that is always there.
//!
//! A board implements [`Board`] (console, flash, network interface, clock, reset, instruction-cache
//! sync) and calls [`run`]. The core persists a new boot number, then loads the `init`, `tick` and
//! `provision` overlays from the file store one at a time into the arena and calls each with the
//! [`rota_abi::Services`] table and the core-owned [`rota_abi::Context`]; it prints one heap report
//! line per phase, persists the report, frees the network and starts the application (the `app` blob).
//! A refused or failing overlay ends the update phases and falls through to the application.
//!
//! A generation committed on trial is rolled back at boot once its trial boots are over
//! ([`trial`], `docs/trial-boot.md`); the boards' panic and fault handlers call [`trial::ended`].
#![no_std]
#![deny(missing_docs)]

extern crate alloc;

pub mod heap;
mod install;
pub mod record;
pub mod report;
pub mod services;
pub mod stack;
pub mod trial;

use embedded_storage::nor_flash::NorFlash;
use heap::AccountingHeap;
use report::Console;
use rota_abi::report::PhaseStat;
// Each overlay phase runs the blob rota-limits names for it, in the same order.
const _: () = {
    let mut i = 0;
    while i < Phase::OVERLAYS.len() {
        assert!(Phase::OVERLAYS[i] as usize == i + 1);
        i += 1;
    }
};
use rota_abi::{status, verdict, Context, OverlayEntry, ABI_VERSION};
pub use rota_blob::Isa;
use rota_loader::{LoadError, Loaded, Target};
use rota_store::Store;
use services::CoreState;
use stack::Stack;

/// What a board provides to the core.
pub trait Board {
    /// The storage region's driver; offsets are relative to the region.
    type Flash: NorFlash;
    /// The network interface; boards without one use [`rota_net::NoNic`].
    type Nic: smoltcp::phy::Device;
    /// The CPU's instruction set.
    const ISA: Isa;
    /// Writes bytes to the console (UART or semihosting).
    fn console_write(&mut self, bytes: &[u8]);
    /// A byte from the console if one arrived (never blocks).
    fn console_read(&mut self) -> Option<u8>;
    /// The storage region.
    fn flash(&mut self) -> &mut Self::Flash;
    /// The network interface, if the board has one.
    fn nic(&mut self) -> Option<&mut Self::Nic>;
    /// The interface's MAC address.
    fn mac(&self) -> [u8; 6];
    /// Gives back what the interface holds only while the network is in use (frame buffers taken
    /// from the heap); the core calls it when it takes the network down, so the application finds
    /// the heap as before.
    fn nic_release(&mut self) {}
    /// Milliseconds since boot.
    fn now_ms(&mut self) -> u32;
    /// Resets the device.
    fn reset(&mut self) -> !;
    /// Makes code just written to the arena visible to instruction fetch.
    fn sync_icache(&mut self);
    /// Where the storage region is mapped for execution, if it is: blobs too large for the arena then
    /// run in place, those with relocations relocated for their address there as they are staged
    /// (`docs/overlay-format.md`, "Running in place").
    fn xip_base(&self) -> Option<u32> {
        None
    }
    /// Whether blobs with relocations that are too large for the arena are relocated for their
    /// flash address as they are staged, and run in place relocated (`docs/overlay-format.md`). On by
    /// default on the LX106, whose code always carries absolute literal words; off elsewhere, where
    /// overlays are position-independent and the code for it (about 5 KB of core flash) is left out.
    const RELOCATE_IN_PLACE: bool = matches!(Self::ISA, Isa::Lx106);
}

pub use rota_abi::report::Phase;
/// Period between two calls of `tick`.
pub const TICK_MS: u32 = 10;
/// The application blob's file name.
pub use rota_limits::APP;

/// How the update phases ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The phases ran and chose to start the application (no update, deadline, abort, no network).
    App,
    /// The store has no config record: the device was never provisioned.
    Unprovisioned,
    /// The phase's blob was refused.
    Refused(Phase, LoadError),
    /// The phase returned an error status.
    Failed(Phase, i32),
}

/// The memory the core manages besides the heap.
pub struct Memory {
    /// The overlay arena (word-aligned; on the ESP8266 in IRAM).
    pub arena: &'static mut [u32],
    /// The stack, for painting.
    pub stack: Stack,
    /// Bytes of RAM the firmware's statics take (`.data`, `.bss`, and `.rodata` where it lives in RAM).
    pub statics: usize,
}

/// Runs the boot: the update phases, then the application. Returns how the phases ended (after the
/// application returns); an installed update resets the device instead of returning.
pub fn run<B: Board>(board: &mut B, heap: &'static AccountingHeap, mem: Memory) -> Outcome {
    let Memory {
        arena,
        stack,
        statics,
    } = mem;
    // SAFETY: painting stays below the current frame.
    unsafe { stack.paint() };
    heap.reset_peak();
    let s = heap.stats();
    report::ram_line(
        board,
        statics,
        arena.len() * 4,
        s.used + s.free,
        stack.size(),
    );
    let before = heap.stats().used;
    let mut ctx = Context::new();
    ctx.boot_ms = board.now_ms();
    let mut stats = [None; STATS];
    let outcome = match record::start_boot(board, &mut ctx) {
        Ok(()) => {
            if ctx.trial.on_trial() {
                trial::arm(board.flash());
            }
            stats[Phase::Boot as usize] = Some(phase_stat(Phase::Boot, heap, &stack));
            report::heap_line(board, Phase::Boot.name(), heap.stats(), 0, stack.peak());
            let mut state = CoreState::new(board, heap, arena.len() * 4);
            let outcome = run_phases(&mut state, arena, &stack, &mut ctx, &mut stats);
            state.net_down();
            outcome
        }
        Err(e) => {
            report::heap_line(board, Phase::Boot.name(), heap.stats(), 0, stack.peak());
            board.print(b"store: ");
            board.print(e.describe().as_bytes());
            board.print(b"; starting app\n");
            Outcome::Unprovisioned
        }
    };
    let residue = heap.stats().used as i64 - before as i64;
    board.print(b"heap residue=");
    report::write_signed(board, residue);
    board.print(b"\n");
    if outcome != Outcome::Unprovisioned {
        stats[Phase::Residue as usize] = Some(PhaseStat {
            phase: Phase::Residue as u8,
            used: residue as i32 as u32,
            ..PhaseStat::default()
        });
        record::save_report(board, &stats);
    }
    // A generation whose overlays were refused or failed this boot is not confirmed by its app:
    // its updater does not work, and confirming it would end all updates.
    let updater_ok = !matches!(outcome, Outcome::Refused(..) | Outcome::Failed(..));
    start_app(board, heap, arena, &stack, &mut ctx, updater_ok);
    // The board outlives this call, its driver's address not necessarily.
    trial::disarm();
    outcome
}

/// Entries of a boot's heap report: one per [`Phase`].
const STATS: usize = Phase::Residue as usize + 1;

fn phase_stat(phase: Phase, heap: &AccountingHeap, stack: &Stack) -> PhaseStat {
    let s = heap.stats();
    PhaseStat {
        phase: phase as u8,
        used: s.used as u32,
        peak: s.peak as u32,
        stack_peak: stack.peak(),
    }
}

fn run_phases<B: Board>(
    state: &mut CoreState<'_, B>,
    arena: &mut [u32],
    stack: &Stack,
    ctx: &mut Context,
    stats: &mut [Option<PhaseStat>; STATS],
) -> Outcome {
    for phase in Phase::OVERLAYS {
        let name = phase.name();
        state.heap.reset_peak();
        // SAFETY: painting stays below the current frame.
        unsafe { stack.paint() };
        // From its loading on, what happens is the phase's (a trial boot's handlers record it).
        state.set_phase(trial::rollback_phase(phase));
        let loaded = match load(state.board, arena, name) {
            Ok(l) => l,
            Err(e) => {
                report::refusal(state.board, name, &e);
                return Outcome::Refused(phase, e);
            }
        };
        let svc = services::table(state);
        // SAFETY: the blob was fully verified and relocated for this address; the entry follows the ABI.
        let entry: OverlayEntry = unsafe { core::mem::transmute(loaded.entry as usize) };
        let verdict = if phase == Phase::Tick {
            tick_loop(state, &svc, entry, ctx)
        } else {
            // SAFETY: as above; `svc` points at `state`, which outlives the call.
            unsafe { entry(&svc, ctx) }
        };
        state.set_phase(trial::rollback_phase(Phase::Boot));
        if phase == Phase::Provision && verdict != verdict::RESTART {
            state.net_down();
        }
        let used = forget(arena, &loaded);
        stats[phase as usize] = Some(phase_stat(phase, state.heap, stack));
        report::heap_line(state.board, name, state.heap.stats(), used, stack.peak());
        match verdict {
            status::OK | verdict::PROVISION => {}
            verdict::APP => return Outcome::App,
            verdict::RESTART => {
                state.net_down();
                // Space of the files this update replaced, now that none of them runs; a failure or a
                // power cut here loses nothing (the store collects again when it needs room).
                let _ = Store::new(&mut *state.board.flash()).gc();
                // The next check-in reports this boot's figures too.
                record::save_report(state.board, stats);
                state.board.print(b"update committed; restarting\n");
                state.board.reset()
            }
            v => {
                report::failure(state.board, name, v);
                return Outcome::Failed(phase, v);
            }
        }
    }
    Outcome::App
}

/// Calls `tick` once per [`TICK_MS`] period, driving the network in between, until it decides.
fn tick_loop<B: Board>(
    state: &mut CoreState<'_, B>,
    svc: &rota_abi::Services,
    entry: OverlayEntry,
    ctx: &mut Context,
) -> i32 {
    let mut next = state.board.now_ms();
    loop {
        // SAFETY: see `run_phases`.
        let v = unsafe { entry(svc, ctx) };
        if v != verdict::CONTINUE {
            return v;
        }
        next = next.wrapping_add(TICK_MS);
        // Wrapping-safe "now < next".
        while next.wrapping_sub(state.board.now_ms()) as i32 > 0 {
            state.poll();
        }
    }
}

/// Finds the blob stored under `name`, verifies it completely and prepares it to run: copied into the
/// arena and relocated there if its image fits; otherwise in place from the flash mapping, if the board
/// has one, the blob either needing no relocation or having been relocated for that address when it
/// was staged (`docs/overlay-format.md`, "Running in place"). Nothing of the blob runs here, and
/// nothing is made executable unless every check passed.
pub fn load<B: Board>(board: &mut B, arena: &mut [u32], name: &str) -> Result<Loaded, LoadError> {
    let file = Store::new(&mut *board.flash())
        .find(name.as_bytes())
        .map_err(|e| match e {
            rota_store::Error::NoConfig => LoadError::NotFound,
            _ => LoadError::Flash(0),
        })?
        .ok_or(LoadError::NotFound)?;
    let target = Target {
        isa: B::ISA,
        abi_version: ABI_VERSION,
    };
    let base = arena.as_ptr() as usize as u32;
    // SAFETY: the arena is ours and nothing runs from it now.
    let loaded = unsafe {
        rota_loader::load(
            board.flash(),
            file.data_offset,
            target,
            arena.as_mut_ptr(),
            arena.len(),
            base,
        )
    };
    let loaded = match (loaded, board.xip_base()) {
        (Err(LoadError::Blob(rota_blob::Error::ImageTooLarge { .. })), Some(mapped)) => {
            // Nothing in the store overwrites a live file, so the code stays as verified while it runs.
            let flash = board.flash();
            match rota_loader::verify_in_place(flash, file.data_offset, target, mapped) {
                // It has relocations: staged relocated for this address (or refused here).
                Err(LoadError::TooLarge) if B::RELOCATE_IN_PLACE => {
                    rota_loader::verify_relocated_in_place(
                        flash,
                        file.data_offset,
                        target,
                        mapped,
                        &file.digest,
                    )?
                }
                r => r?,
            }
        }
        (r, _) => r?,
    };
    board.sync_icache();
    report::placed(board, name, &loaded);
    Ok(loaded)
}

/// Clears the code from the arena (dead until the next load); returns the arena bytes it used (0 for a
/// blob that ran in place).
fn forget(arena: &mut [u32], loaded: &Loaded) -> u32 {
    if loaded.base != arena.as_ptr() as usize as u32 {
        return 0;
    }
    let words = (loaded.header.image_size as usize / 4).min(arena.len());
    arena[..words].fill(0);
    loaded.header.image_size
}

/// Starts the application blob with the heap exactly as the boot found it.
// Out of line, as `record::start_boot` is: its second `CoreState` and services table would
// otherwise sit in `run`'s frame under every phase (docs/sizes.md, the signed update's stack).
#[inline(never)]
fn start_app<B: Board>(
    board: &mut B,
    heap: &'static AccountingHeap,
    arena: &mut [u32],
    stack: &Stack,
    ctx: &mut Context,
    updater_ok: bool,
) {
    heap.reset_peak();
    // SAFETY: painting stays below the current frame.
    unsafe { stack.paint() };
    trial::set_phase(rota_abi::rollback::PHASE_APP);
    let loaded = match load(board, arena, APP) {
        Ok(l) => l,
        Err(e) => {
            board.print(b"app: ");
            board.print(e.describe().as_bytes());
            board.print(b"; nothing to run\n");
            return;
        }
    };
    let mut state = CoreState::new(board, heap, arena.len() * 4);
    state.set_phase(rota_abi::rollback::PHASE_APP);
    state.may_confirm = updater_ok;
    let svc = services::table(&mut state);
    // SAFETY: as in `run_phases`.
    let status = unsafe {
        let entry: OverlayEntry = core::mem::transmute(loaded.entry as usize);
        entry(&svc, ctx)
    };
    state.net_down();
    let used = forget(arena, &loaded);
    if status < 0 {
        report::failure(board, APP, status);
    }
    report::heap_line(board, APP, heap.stats(), used, stack.peak());
}
