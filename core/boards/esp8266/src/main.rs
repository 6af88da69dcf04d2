//! rota board binary for the ESP8266 (Xtensa LX106): `sim` (QEMU) or `chip` (the real one).
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

#[cfg(all(feature = "sim", feature = "chip"))]
compile_error!("enable exactly one of the features `sim` and `chip`");

pub mod console;
pub mod rt;
#[cfg(feature = "sim")]
pub mod semihosting;
pub mod time;

/// Board entry, called by the runtime with `.data`/`.bss` ready.
pub fn main() -> ! {
    cprintln!("rota esp8266: hello from the LX106 ({})", MACHINE);
    exit(0)
}

/// "sim" or "chip".
pub const MACHINE: &str = if cfg!(feature = "sim") { "sim" } else { "chip" };

/// Stops the machine: QEMU exits with `code` (sim); the chip prints the code and halts.
pub fn exit(code: u32) -> ! {
    #[cfg(feature = "sim")]
    semihosting::exit(code);
    #[cfg(feature = "chip")]
    {
        cprintln!("rota: exit({})", code);
        loop {
            core::hint::spin_loop();
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cprintln!("rota: panic: {}", info);
    exit(101)
}
