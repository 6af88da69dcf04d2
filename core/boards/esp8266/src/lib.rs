//! rota's board support for the ESP8266 (Xtensa LX106), on one of three machines (cargo features):
//! `sim` (`qemu-system-xtensa -M sim -cpu lx106`), `xtfpga` (`-M lx60-nommu -cpu lx106`: QEMU's
//! xtfpga board with the ESP8266's CPU core) or `chip`: the pieces the firmware (`src/main.rs`) and
//! the examples (`examples/`) share.
//!
//! The runtime ([`rt`]) sets up the stack, `.data` and `.bss`, then calls the program's entry, which
//! each program names with [`entry!`]. The board ([`board::Esp8266`]) is what the resident core
//! drives; [`console`], [`time`], [`semihosting`], on xtfpga [`xtfpga`] (UART, storage file,
//! Ethernet MAC) and on the chip `chip` (its clock, UART0) are usable on their own. Under QEMU the exit status is the guest's ([`exit`]).
#![no_std]
#![feature(asm_experimental_arch)]
#![deny(missing_docs)]

#[cfg(any(
    all(feature = "sim", feature = "xtfpga"),
    all(feature = "sim", feature = "chip"),
    all(feature = "xtfpga", feature = "chip")
))]
compile_error!("enable exactly one of the features `sim`, `xtfpga` and `chip`");
#[cfg(not(any(feature = "sim", feature = "xtfpga", feature = "chip")))]
compile_error!("enable one of the features `sim` (default), `xtfpga` or `chip`");

pub mod board;
#[cfg(feature = "chip")]
pub mod chip;
pub mod console;
#[cfg(not(feature = "xtfpga"))]
pub mod flash;
mod loadstore;
pub mod rt;
#[cfg(any(feature = "sim", feature = "xtfpga"))]
pub mod semihosting;
pub mod time;
#[cfg(feature = "xtfpga")]
pub mod xtfpga;

/// "sim", "xtfpga" or "chip".
pub const MACHINE: &str = if cfg!(feature = "sim") {
    "sim"
} else if cfg!(feature = "xtfpga") {
    "xtfpga"
} else {
    "chip"
};

/// Names the program's entry, `fn() -> !`, which the runtime calls once `.data` and `.bss` are
/// ready (as `rota_rt_main`). Every program on this board (the firmware, each example) names one.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// The program's entry, called by the runtime (`_rota_start`) with `.data`/`.bss` ready.
        #[no_mangle]
        extern "C" fn rota_rt_main() -> ! {
            let main: fn() -> ! = $main;
            main()
        }
    };
}

/// Stops the machine: QEMU exits with `code` (sim, xtfpga); the chip prints the code and halts.
pub fn exit(code: u32) -> ! {
    #[cfg(any(feature = "sim", feature = "xtfpga"))]
    semihosting::exit(code);
    #[cfg(feature = "chip")]
    {
        use rota_core::report::Console;
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
