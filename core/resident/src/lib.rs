//! rota's resident core: the part of the firmware that is always there.
//!
//! A board implements [`Board`] (console, flash, clock, reset, instruction-cache sync) and calls [`run`],
//! which loads the `init`, `tick` and `provision` overlays from flash one at a time into the arena, calls
//! each with the [`rota_abi::Services`] table and the core-owned [`rota_abi::Context`], prints one heap
//! report line per phase, and then starts the application. A refused or failing overlay ends the update
//! phases and falls through to the application.
#![no_std]
#![deny(missing_docs)]

pub mod heap;
pub mod layout;
pub mod report;
pub mod services;
pub mod stack;

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use heap::AccountingHeap;
use report::Console;
pub use rota_abi::CONFIG_MAX;
use rota_abi::{Context, FlashLayout, OverlayEntry, ABI_VERSION};
pub use rota_blob::Isa;
use rota_loader::{LoadError, Target};
use stack::Stack;

/// What a board provides to the core.
pub trait Board {
    /// The storage region's driver; offsets are relative to the region.
    type Flash: NorFlash;
    /// The CPU's instruction set.
    const ISA: Isa;
    /// Writes bytes to the console (UART or semihosting).
    fn console_write(&mut self, bytes: &[u8]);
    /// The storage region.
    fn flash(&mut self) -> &mut Self::Flash;
    /// Milliseconds since boot.
    fn now_ms(&mut self) -> u32;
    /// Resets the device.
    fn reset(&mut self) -> !;
    /// Makes code just written to the arena visible to instruction fetch.
    fn sync_icache(&mut self);
}

/// The overlay phases, in boot order.
pub const PHASES: [&str; 3] = ["init", "tick", "provision"];

/// How the update phases ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every phase ran and returned OK.
    Complete,
    /// The named phase's blob was refused.
    Refused(&'static str, LoadError),
    /// The named phase returned a non-zero status.
    Failed(&'static str, i32),
}

/// The memory the core manages besides the heap.
pub struct Memory {
    /// The overlay arena (word-aligned; on the ESP8266 in IRAM).
    pub arena: &'static mut [u32],
    /// The stack, for painting.
    pub stack: Stack,
}

/// Runs the boot: the overlay phases, then `app`. Returns how the phases ended (after `app` returns).
pub fn run<B: Board>(
    board: &mut B,
    heap: &'static AccountingHeap,
    mem: Memory,
    app: impl FnOnce(&mut B, &'static AccountingHeap),
) -> Outcome {
    let Memory { arena, stack } = mem;
    // SAFETY: painting stays below the current frame.
    unsafe { stack.paint() };
    heap.reset_peak();
    report::heap_line(board, "boot", heap.stats(), 0, stack.peak());
    let before = heap.stats().used;

    let flash_layout = FlashLayout {
        size: board.flash().capacity() as u32,
        erase_size: B::Flash::ERASE_SIZE as u32,
        write_size: B::Flash::WRITE_SIZE as u32,
        config_offset: layout::CONFIG_OFFSET,
        scratch_offset: layout::SCRATCH_OFFSET,
    };
    let mut ctx = Context::new(flash_layout);
    // Corrupt slots are reported once; they never hide the slots after them.
    report_corrupt_slots(board);
    let outcome = run_phases(board, heap, arena, &stack, &mut ctx);

    let residue = heap.stats().used as i64 - before as i64;
    board.print(b"heap residue=");
    report::write_signed(board, residue);
    board.print(b"\n");
    heap.reset_peak();
    // SAFETY: as above.
    unsafe { stack.paint() };
    app(board, heap);
    report::heap_line(board, "app", heap.stats(), 0, stack.peak());
    outcome
}

fn run_phases<B: Board>(
    board: &mut B,
    heap: &'static AccountingHeap,
    arena: &mut [u32],
    stack: &Stack,
    ctx: &mut Context,
) -> Outcome {
    let target = Target {
        isa: B::ISA,
        abi_version: ABI_VERSION,
    };
    for phase in PHASES {
        heap.reset_peak();
        // SAFETY: painting stays below the current frame.
        unsafe { stack.paint() };
        let slot = rota_loader::find(board.flash(), layout::slots(), phase.as_bytes(), |_, _| {});
        let loaded = slot.and_then(|offset| {
            let base = arena.as_ptr() as usize as u32;
            // SAFETY: the arena is ours and nothing runs from it now.
            unsafe {
                rota_loader::load(
                    board.flash(),
                    offset,
                    target,
                    arena.as_mut_ptr(),
                    arena.len(),
                    base,
                )
            }
        });
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                report::refusal(board, phase, &e);
                return Outcome::Refused(phase, e);
            }
        };
        board.sync_icache();
        report::placed(board, phase, &loaded);
        let status = {
            let mut state = services::CoreState {
                board: &mut *board,
                heap,
            };
            let svc = services::table(&mut state);
            // SAFETY: the blob was fully verified and relocated for this address; the entry follows the ABI.
            unsafe {
                let entry: OverlayEntry = core::mem::transmute(loaded.entry as usize);
                entry(&svc, ctx)
            }
        };
        // Forget the code: the arena is dead until the next load.
        arena[..(loaded.header.image_size / 4) as usize].fill(0);
        report::heap_line(
            board,
            phase,
            heap.stats(),
            loaded.header.image_size,
            stack.peak(),
        );
        if status != rota_abi::status::OK {
            report::failure(board, phase, status);
            return Outcome::Failed(phase, status);
        }
    }
    Outcome::Complete
}

fn report_corrupt_slots<B: Board>(board: &mut B) {
    for offset in layout::slots() {
        if let rota_loader::SlotState::Corrupt(e) = rota_loader::probe(board.flash(), offset) {
            board.print(b"slot ");
            report::write_dec(board, offset);
            board.print(b": skipped, ");
            board.print(e.describe().as_bytes());
            board.print(b"\n");
        }
    }
}

/// The stage-1 application: says it started and exercises the heap (what it allocates, it frees).
pub fn demo_app<B: Board>(board: &mut B, heap: &'static AccountingHeap) {
    use core::alloc::{GlobalAlloc, Layout};
    board.print(b"app: started\n");
    let layout = Layout::from_size_align(256, 4).unwrap_or(Layout::new::<u32>());
    // SAFETY: the block is freed with the layout it was allocated with.
    unsafe {
        let p = heap.alloc(layout);
        if !p.is_null() {
            heap.dealloc(p, layout);
        }
    }
}
