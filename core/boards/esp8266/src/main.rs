//! rota board binary for the ESP8266 (Xtensa LX106): `sim` (QEMU) or `chip` (the real one).
//!
//! For now it prints a hello line, checks the flash window's NOR semantics, runs the overlay
//! relocation experiment ([`overlay_demo`]) and exits with status 0. Under QEMU, a semihosting
//! argument selects a test of the runtime: `fault` (an illegal instruction: the exception report)
//! or `reset` (a soft reset and a second boot).
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

#[cfg(all(feature = "sim", feature = "chip"))]
compile_error!("enable exactly one of the features `sim` and `chip`");
#[cfg(not(any(feature = "sim", feature = "chip")))]
compile_error!("enable one of the features `sim` (default) or `chip`");

pub mod board;
pub mod console;
pub mod flash;
pub mod overlay_demo;
pub mod rt;
#[cfg(feature = "sim")]
pub mod semihosting;
pub mod time;

use core::sync::atomic::{AtomicU32, Ordering};

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};

/// "sim" or "chip".
pub const MACHINE: &str = if cfg!(feature = "sim") { "sim" } else { "chip" };

/// An initialised static: proves that `.data` is in place at every boot (also after a soft reset).
static DATA_CHECK: AtomicU32 = AtomicU32::new(0x5AFE_DA7A);

/// Board entry, called by the runtime with `.data`/`.bss` ready.
pub fn main() -> ! {
    let t0 = time::now_ms();
    let mut board = board::Esp8266::take();
    cprintln!("rota esp8266: hello from the LX106 ({})", MACHINE);
    if DATA_CHECK.load(Ordering::Relaxed) != 0x5AFE_DA7A {
        cprintln!(".data not initialised");
        exit(5)
    }
    DATA_CHECK.store(0, Ordering::Relaxed);
    let arena = board.arena();
    let (heap, stack) = (board.heap(), board.stack_bounds());
    cprintln!(
        "memory: arena {:#010x}+{} heap {:#010x}+{} stack {:#010x}..{:#010x} flash window {:#010x}+{}",
        arena.as_ptr() as usize,
        arena.len() * 4,
        heap.start,
        heap.len(),
        stack.start,
        stack.end,
        rt::symbols::flash_start(),
        board.flash.len()
    );

    #[cfg(feature = "sim")]
    semihosting::with_arg(1, |arg| match arg {
        Some("fault") => {
            cprintln!("test: executing an illegal instruction");
            // SAFETY: deliberately faults; the exception vector reports it and exits.
            unsafe { core::arch::asm!("ill") };
        }
        Some("reset") => reset_test(&mut board),
        Some("byteload") => {
            // A byte load from IRAM: LoadStoreError (cause 3) on the chip, allowed by QEMU.
            // SAFETY: the vector table is mapped, readable memory.
            let b = unsafe {
                core::ptr::read_volatile((rt::symbols::vector_table() + 0x10) as *const u8)
            };
            cprintln!("test: byte load from IRAM gave {:#04x} without a fault", b);
            exit(0)
        }
        Some("time") => {
            // Busy-waits 2 s of CCOUNT time: compare with the host's wall clock.
            time::delay_ms(2000);
            cprintln!("test: 2000 ms of CCOUNT elapsed");
            exit(0)
        }
        _ => {}
    });

    match flash_self_test(&mut board.flash) {
        Ok(()) => cprintln!("flash: NOR semantics ok (erase 0xFF, write ANDs, 4-byte writes)"),
        Err(e) => {
            cprintln!("flash: FAILED: {}", e);
            exit(1)
        }
    }
    if !overlay_demo::run() {
        exit(2)
    }
    cprintln!("time: {} ms since boot", time::now_ms() - t0);
    exit(0)
}

/// Last sector of the window: scratch space for the self tests.
fn scratch(flash: &flash::Flash) -> u32 {
    (flash.len() - flash::SECTOR_SIZE) as u32
}

fn flash_self_test(f: &mut flash::Flash) -> Result<(), &'static str> {
    let s = scratch(f);
    f.erase(s, s + flash::SECTOR_SIZE as u32)
        .map_err(|_| "erase")?;
    let mut b = [0u8; 8];
    f.read(s + 1, &mut b).map_err(|_| "read")?;
    if b != [0xFF; 8] {
        return Err("erase did not give 0xFF");
    }
    f.write(s, &[0x0F, 0xF0, 0x55, 0xAA]).map_err(|_| "write")?;
    f.write(s, &[0xFF, 0x0F, 0xFF, 0x0F]).map_err(|_| "write")?;
    f.read(s, &mut b[..4]).map_err(|_| "read")?;
    if b[..4] != [0x0F, 0x00, 0x55, 0x0A] {
        return Err("write must AND");
    }
    if f.write(s + 2, &[0; 4]).is_ok() || f.write(s, &[0; 3]).is_ok() {
        return Err("misaligned write accepted");
    }
    if f.erase(s + 4, s + 8).is_ok() || f.read(s + 4, &mut [0; 4096]).is_ok() {
        return Err("misaligned erase / out-of-bounds read accepted");
    }
    Ok(())
}

/// Boots twice: the first boot marks the scratch sector and resets; the second sees the mark.
#[cfg(feature = "sim")]
fn reset_test(board: &mut board::Esp8266) {
    const MARK: [u8; 4] = *b"RST1";
    let s = scratch(&board.flash);
    let mut b = [0u8; 4];
    let _ = board.flash.read(s, &mut b);
    let _ = board.flash.erase(s, s + flash::SECTOR_SIZE as u32);
    if b == MARK {
        cprintln!("test: second boot after the soft reset");
    } else {
        let _ = board.flash.write(s, &MARK);
        cprintln!("test: resetting");
        board.reset();
    }
}

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

/// Reboots. Sim: jumps to the reset vector (stack, `.data` and `.bss` start afresh; the flash
/// window keeps its contents). Chip: ROM `software_reset` (untested without a chip).
pub fn reset() -> ! {
    #[cfg(feature = "sim")]
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

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cprintln!("rota: panic: {}", info);
    exit(101)
}
