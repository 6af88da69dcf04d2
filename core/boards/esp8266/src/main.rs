//! rota on the ESP8266 (Xtensa LX106), on one of three machines (cargo features):
//! `sim` (`qemu-system-xtensa -M sim -cpu lx106`), `xtfpga` (`-M lx60-nommu -cpu lx106`: QEMU's
//! xtfpga board with the ESP8266's CPU core) or `chip`.
//!
//! The runtime ([`rt`]) sets up the stack, `.data` and `.bss`, then calls [`main`], which hands the
//! board to the resident core. Under QEMU the exit status is the guest's (semihosting).
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

#[cfg(any(
    all(feature = "sim", feature = "xtfpga"),
    all(feature = "sim", feature = "chip"),
    all(feature = "xtfpga", feature = "chip")
))]
compile_error!("enable exactly one of the features `sim`, `xtfpga` and `chip`");
#[cfg(not(any(feature = "sim", feature = "xtfpga", feature = "chip")))]
compile_error!("enable one of the features `sim` (default), `xtfpga` or `chip`");

pub mod board;
pub mod console;
#[cfg(not(feature = "xtfpga"))]
pub mod flash;
pub mod rt;
#[cfg(any(feature = "sim", feature = "xtfpga"))]
pub mod semihosting;
pub mod time;
#[cfg(feature = "xtfpga")]
pub mod xtfpga;

use rota_core::heap::AccountingHeap;
use rota_core::report::Console;
use rota_core::{Memory, Outcome};

#[global_allocator]
static HEAP: AccountingHeap = AccountingHeap::empty();

/// "sim", "xtfpga" or "chip".
pub const MACHINE: &str = if cfg!(feature = "sim") {
    "sim"
} else if cfg!(feature = "xtfpga") {
    "xtfpga"
} else {
    "chip"
};

/// Board entry, called by the runtime with `.data`/`.bss` ready.
pub fn main() -> ! {
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

/// Stops the machine: QEMU exits with `code` (sim, xtfpga); the chip prints the code and halts.
pub fn exit(code: u32) -> ! {
    #[cfg(any(feature = "sim", feature = "xtfpga"))]
    semihosting::exit(code);
    #[cfg(feature = "chip")]
    {
        let c = &mut console::Console;
        c.print(b"rota: exit(");
        rota_core::report::write_dec(c, code);
        c.print(b")\n");
        loop {
            core::hint::spin_loop();
        }
    }
}

/// Reboots. Sim and xtfpga: jumps to the reset vector (stack, `.data` and `.bss` start afresh; the
/// flash window keeps its contents). Chip: ROM `software_reset` (untested without a chip).
pub fn reset() -> ! {
    #[cfg(any(feature = "sim", feature = "xtfpga"))]
    // SAFETY: the reset trampoline re-initialises everything and never returns.
    unsafe {
        core::arch::asm!("jx {0}", in(reg) 0x5000_0000u32, options(noreturn))
    }
    #[cfg(feature = "chip")]
    {
        extern "C" {
            fn software_reset() -> !;
        }
        // SAFETY: ROM routine (address in linker/esp8266-chip.x).
        unsafe { software_reset() }
    }
}

/// Firmware is built with `-Cpanic=immediate-abort` (a panic traps and the exception handler reports
/// where); this handler is what the language still requires.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    console::Console.print(b"rota: panic\n");
    exit(101)
}
