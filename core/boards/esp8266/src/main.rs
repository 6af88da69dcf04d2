//! rota on the ESP8266 (Xtensa LX106): the firmware. The board crate ([`rota_board_esp8266`]) has
//! the runtime, the machine (`sim`, `xtfpga` or `chip`, a cargo feature) and the board the resident
//! core drives; this program hands that board to the core. Under QEMU the exit status is the guest's
//! (semihosting).
#![no_std]
#![no_main]

use rota_board_esp8266::{board, exit, rt, MACHINE};
use rota_core::heap::AccountingHeap;
use rota_core::report::Console;
use rota_core::{Memory, Outcome};

#[global_allocator]
static HEAP: AccountingHeap = AccountingHeap::empty();

rota_board_esp8266::entry!(main);

/// Board entry, called by the runtime with `.data`/`.bss` ready.
fn main() -> ! {
    let mut board = board::Esp8266::take();
    let (heap_start, heap_size) = board.heap();
    // SAFETY: the linker reserves the heap region; this runs once per boot.
    unsafe { HEAP.init(heap_start, heap_size) };
    let mem = Memory {
        arena: board.arena(),
        stack: board.stack(),
        statics: rt::symbols::heap_start() - rt::symbols::ram_start(),
    };
    board.print(b"rota core on esp8266 (");
    board.print(MACHINE.as_bytes());
    board.print(b")\n");
    let outcome = rota_core::run(&mut board, &HEAP, mem);
    exit(match outcome {
        Outcome::App | Outcome::Unprovisioned | Outcome::Refused(..) => 0,
        Outcome::Failed(..) => 1,
    })
}

/// Firmware is built with `-Cpanic=immediate-abort` (a panic traps and the exception handler reports
/// where, and records it on a trial boot); this handler is what the language still requires. It
/// records a panic on a trial boot too.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    let c = &mut rota_board_esp8266::console::Console;
    c.print(b"rota: panic\n");
    // SAFETY: this handler never returns: it exits (or, on the chip after a record, resets).
    let recorded = unsafe { rota_core::trial::ended(rota_core::trial::rollback::PANIC) };
    rota_board_esp8266::rt::trial_end(c, recorded, rota_core::trial::rollback::PANIC);
    exit(101)
}
