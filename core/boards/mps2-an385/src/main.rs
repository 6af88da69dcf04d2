//! rota on the MPS2 AN385 board (Cortex-M3) under `qemu-system-arm -M mps2-an385`.
//!
//! Console: CMSDK UART0. Clock: CMSDK TIMER0 at 25 MHz. Storage: the writable memory at 3 MiB, driven
//! as NOR flash by `rota-memflash`. Exit: semihosting, so the emulator's exit code is the guest's.
#![no_std]
#![no_main]

mod uart;

use core::ptr::addr_of_mut;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use rota_core::heap::AccountingHeap;
use rota_core::report::Console;
use rota_core::stack::Stack;
use rota_core::{Board, Memory, Outcome};
use rota_memflash::MemFlash;

#[global_allocator]
static HEAP: AccountingHeap = AccountingHeap::empty();

extern "C" {
    static mut _arena_start: u32;
    static mut _arena_end: u32;
    static mut _heap_start: u8;
    static mut _heap_end: u8;
    static mut _stack_end: u32;
    static mut _stack_start: u32;
    static mut _storage_start: u8;
    static _storage_size: u8;
}

/// CMSDK TIMER0 registers.
const TIMER0_CTRL: *mut u32 = 0x4000_0000 as *mut u32;
const TIMER0_VALUE: *mut u32 = 0x4000_0004 as *mut u32;
const TIMER0_RELOAD: *mut u32 = 0x4000_0008 as *mut u32;
/// Timer ticks per millisecond (25 MHz system clock).
const TICKS_PER_MS: u64 = 25_000;

struct Mps2 {
    uart: uart::Uart,
    flash: MemFlash<&'static mut [u8]>,
    last: u32,
    ticks: u64,
}

impl Board for Mps2 {
    type Flash = MemFlash<&'static mut [u8]>;
    const ISA: rota_core::Isa = rota_core::Isa::Thumbv7m;

    fn console_write(&mut self, bytes: &[u8]) {
        self.uart.print(bytes);
    }

    fn flash(&mut self) -> &mut Self::Flash {
        &mut self.flash
    }

    fn now_ms(&mut self) -> u32 {
        // SAFETY: TIMER0 is a valid MMIO register on this board.
        let now = unsafe { TIMER0_VALUE.read_volatile() };
        // Down-counter: elapsed = last - now (wrapping).
        self.ticks += u64::from(self.last.wrapping_sub(now));
        self.last = now;
        (self.ticks / TICKS_PER_MS) as u32
    }

    fn reset(&mut self) -> ! {
        cortex_m::peripheral::SCB::sys_reset()
    }

    fn sync_icache(&mut self) {
        cortex_m::asm::dsb();
        cortex_m::asm::isb();
    }
}

#[entry]
fn main() -> ! {
    // SAFETY: the linker script defines these regions; nothing else uses them.
    let (arena, stack, storage) = unsafe {
        let heap_start = addr_of_mut!(_heap_start);
        HEAP.init(
            heap_start,
            addr_of_mut!(_heap_end) as usize - heap_start as usize,
        );
        TIMER0_RELOAD.write_volatile(u32::MAX);
        TIMER0_VALUE.write_volatile(u32::MAX);
        TIMER0_CTRL.write_volatile(1);
        let arena_start = addr_of_mut!(_arena_start);
        let arena_words = (addr_of_mut!(_arena_end) as usize - arena_start as usize) / 4;
        let arena = core::slice::from_raw_parts_mut(arena_start, arena_words);
        let stack = Stack {
            bottom: addr_of_mut!(_stack_end),
            top: addr_of_mut!(_stack_start),
        };
        let size = core::ptr::addr_of!(_storage_size) as usize;
        let storage = core::slice::from_raw_parts_mut(addr_of_mut!(_storage_start), size);
        (arena, stack, storage)
    };
    let mut board = Mps2 {
        uart: uart::Uart::new(),
        flash: MemFlash::new(storage),
        last: u32::MAX,
        ticks: 0,
    };
    board.print(b"rota core on mps2-an385\n");
    let outcome = rota_core::run(
        &mut board,
        &HEAP,
        Memory { arena, stack },
        rota_core::demo_app,
    );
    exit(outcome == Outcome::Complete || matches!(outcome, Outcome::Refused(..)))
}

fn exit(ok: bool) -> ! {
    cortex_m_semihosting::debug::exit(if ok { Ok(()) } else { Err(()) });
    loop {
        cortex_m::asm::wfi();
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    let mut u = uart::Uart::new();
    u.print(b"hard fault at pc=");
    rota_core::report::write_hex(&mut u, frame.pc());
    u.print(b"\n");
    exit(false)
}

/// Firmware is built with `-Cpanic=immediate-abort` (a panic traps into HardFault, which reports
/// where); this handler is what the language still requires.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    uart::Uart::new().print(b"core panic\n");
    exit(false)
}
