//! rota on the MPS2 AN385 board (Cortex-M3) under `qemu-system-arm -M mps2-an385`.
//!
//! Console: CMSDK UART0. Clock: CMSDK TIMER0 at 25 MHz. Network: the LAN9118. Storage: the writable
//! memory at 3 MiB, driven as NOR flash and, with `storage=<path>` on the semihosting command line,
//! kept in a host file (see the library's `storage` module). Exit: semihosting, so the emulator's exit
//! code is the guest's.
#![no_std]
#![no_main]

use core::ptr::addr_of_mut;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use rota_board_mps2_an385::{clock::Clock, nic, semihosting, storage, uart::Uart};
use rota_core::heap::AccountingHeap;
use rota_core::report::Console;
use rota_core::stack::Stack;
use rota_core::trial::rollback;
use rota_core::{Board, Memory, Outcome};

#[global_allocator]
static HEAP: AccountingHeap = AccountingHeap::empty();

extern "C" {
    static _ram_start: u8;
    static mut _arena_start: u32;
    static mut _arena_end: u32;
    static mut _heap_start: u8;
    static mut _heap_end: u8;
    static mut _stack_end: u32;
    static mut _stack_start: u32;
}

/// MAC address used when the LAN9118 does not answer (then there is no network anyway).
const FALLBACK_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

struct Mps2 {
    uart: Uart,
    flash: storage::Flash,
    nic: Option<&'static mut nic::Nic>,
    mac: [u8; 6],
    clock: Clock,
}

impl Board for Mps2 {
    type Flash = storage::Flash;
    type Nic = nic::Nic;
    const ISA: rota_core::Isa = rota_core::Isa::Thumbv7m;

    fn console_write(&mut self, bytes: &[u8]) {
        self.uart.print(bytes);
    }

    fn console_read(&mut self) -> Option<u8> {
        self.uart.read()
    }

    fn flash(&mut self) -> &mut Self::Flash {
        &mut self.flash
    }

    fn nic(&mut self) -> Option<&mut Self::Nic> {
        self.nic.as_deref_mut()
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn nic_release(&mut self) {
        if let Some(nic) = self.nic.as_mut() {
            nic.release();
        }
    }

    fn now_ms(&mut self) -> u32 {
        self.clock.now_ms()
    }

    fn reset(&mut self) -> ! {
        cortex_m::peripheral::SCB::sys_reset()
    }

    fn sync_icache(&mut self) {
        cortex_m::asm::dsb();
        cortex_m::asm::isb();
    }

    fn xip_base(&self) -> Option<u32> {
        // The storage region is ordinary executable memory here (NOR flash on a real part would be
        // memory-mapped the same way), so relocation-free blobs too large for the arena run in place.
        Some(rota_board_mps2_an385::storage_base())
    }
}

#[entry]
fn main() -> ! {
    // SAFETY: the linker script defines these regions; nothing else uses them.
    let (arena, stack, region) = unsafe {
        let heap_start = addr_of_mut!(_heap_start);
        HEAP.init(
            heap_start,
            addr_of_mut!(_heap_end) as usize - heap_start as usize,
        );
        let arena_start = addr_of_mut!(_arena_start);
        let arena_words = (addr_of_mut!(_arena_end) as usize - arena_start as usize) / 4;
        let arena = core::slice::from_raw_parts_mut(arena_start, arena_words);
        let stack = Stack {
            bottom: addr_of_mut!(_stack_end),
            top: addr_of_mut!(_stack_start),
        };
        (arena, stack, rota_board_mps2_an385::storage_region())
    };
    let clock = Clock::start();
    let mut uart = Uart::new();
    let flash = open_storage(region, &mut uart);
    // SAFETY: the only call.
    let (nic, mac) = match unsafe { nic::take() } {
        Some((nic, mac)) => (Some(nic), mac),
        None => (None, FALLBACK_MAC),
    };
    let mut board = Mps2 {
        uart,
        flash,
        nic,
        mac,
        clock,
    };
    board.print(b"rota core on mps2-an385\n");
    // `.data`, `.bss` and `.uninit` lie between the start of RAM and the arena.
    let statics = arena.as_ptr() as usize - core::ptr::addr_of!(_ram_start) as usize;
    let mem = Memory {
        arena,
        stack,
        statics,
    };
    let outcome = rota_core::run(&mut board, &HEAP, mem);
    exit(match outcome {
        Outcome::App | Outcome::Unprovisioned | Outcome::Refused(..) => 0,
        Outcome::Failed(..) => 1,
    })
}

/// Opens the storage region as the semihosting command line says (`storage=`, `cut=`). Out of line,
/// so that the command line's buffer is not in `main`'s frame, under every phase, for good.
#[inline(never)]
fn open_storage(region: &'static mut [u8], uart: &mut Uart) -> storage::Flash {
    let mut line = [0u8; 160];
    let cmdline = semihosting::cmdline(&mut line).unwrap_or(&[]);
    let (flash, origin) = storage::open(region, cmdline);
    match origin {
        storage::Origin::Failed => {
            uart.print(b"storage: cannot open the storage file; using memory\n")
        }
        storage::Origin::CutUnsupported => {
            uart.print(b"storage: cut= needs the power-cut build (rota-power-cut.elf)\n");
            semihosting::exit(2)
        }
        _ => {}
    }
    flash
}

fn exit(code: u32) -> ! {
    semihosting::exit(code)
}

/// The Configurable Fault Status Register (UFSR in its upper half).
const CFSR: *const u32 = 0xE000_ED28 as *const u32;
/// CFSR.UFSR.UNDEFINSTR: the fault was an undefined instruction.
const UNDEFINSTR: u32 = 1 << 16;

/// Whether the fault at `pc` was a trap the code raised on purpose: an undefined instruction that
/// is `udf` (what a Rust panic is in firmware built with `-Cpanic=immediate-abort`: `udf #254`, and
/// what `rota_abi::trap` executes: `udf #0`). Anything else is a fault.
fn is_trap(pc: u32) -> bool {
    // SAFETY: reading the System Control Block's fault status register has no side effect.
    let cfsr = unsafe { core::ptr::read_volatile(CFSR) };
    if cfsr & UNDEFINSTR == 0 {
        return false;
    }
    // SAFETY: the instruction at `pc` was fetched (it is the undefined one), so it is readable;
    // Thumb instructions are halfword aligned.
    let insn = unsafe { core::ptr::read_volatile((pc & !1) as *const u16) };
    insn & 0xFF00 == 0xDE00
}

/// Reports the fault and exits with 1 (QEMU's status; the test harness powers the device on
/// again, as a reset would). On a trial boot it first records how the boot ended
/// (`rota_core::trial::ended`): a panic for `udf`, a fault for anything else.
#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    let mut u = Uart::new();
    u.print(b"hard fault at pc=");
    rota_core::report::write_hex(&mut u, frame.pc());
    u.print(b"\n");
    let reason = if is_trap(frame.pc()) {
        rollback::PANIC
    } else {
        rollback::FAULT
    };
    // SAFETY: this handler never returns to the interrupted code (it exits), and nothing else runs.
    if unsafe { rota_core::trial::ended(reason) } {
        trial_recorded(&mut u, reason);
    }
    exit(1)
}

fn trial_recorded(u: &mut Uart, reason: u8) {
    u.print(b"trial boot ended: ");
    u.print(rollback::describe(reason).as_bytes());
    u.print(b" (recorded)\n");
}

/// Firmware is built with `-Cpanic=immediate-abort` (a panic traps into HardFault, which reports
/// where and records it on a trial boot); this handler is what the language still requires. It
/// records a panic on a trial boot too.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    let mut u = Uart::new();
    u.print(b"core panic\n");
    // SAFETY: this handler never returns (it exits), and nothing else runs.
    if unsafe { rota_core::trial::ended(rollback::PANIC) } {
        trial_recorded(&mut u, rollback::PANIC);
    }
    exit(1)
}
