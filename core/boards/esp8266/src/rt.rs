//! rota's own minimal LX106 runtime: reset, stack, `.data`/`.bss` initialisation, exception vectors.
//!
//! Boot path (CALL0 ABI throughout, no register windows on the LX106):
//! - `sim`: QEMU starts the CPU at the reset vector 0x50000000 (`.rota.reset_vector`, placed by
//!   `linker/esp8266-sim.x`): `j` over two literal words, `l32r a1, <stack top>`,
//!   `l32r a0, _rota_start`, `jx a0`.
//! - `xtfpga`: the same trampoline and script; QEMU's xtfpga board enters at the ELF entry, which is
//!   the trampoline `_rota_reset` itself.
//! - `chip`: the ROM bootloader loads the IRAM/DRAM segments of the esptool image and calls the ELF
//!   entry `_rota_start` with its own stack; `_rota_start` switches to ours.
//!
//! `_rota_start` (in IRAM, usable before the flash cache is on) masks interrupts (INTENABLE = 0),
//! points VECBASE at `_vector_table`, sets PS = UM (EXCM = 0, so exceptions go to the user vector),
//! enables the flash cache and disables the ROM watchdog (chip only), copies `.data` from its load
//! address when that differs (sim: the pristine copy in IROM), zeroes `.bss` and calls
//! `rota_rt_main`, the program's entry (each program defines it with [`crate::entry!`]), which never
//! returns.
//!
//! Exceptions: a LoadStoreError (EXCCAUSE 3) at the user vector goes to its emulation
//! (`loadstore.rs`: byte and half-word loads from IRAM and flash, which the chip refuses). Every other
//! user exception, a load it refuses, and the kernel, double exception and debug vectors are fatal:
//! they reload the stack pointer, leave the exception mode and call [`rota_rt_fatal_exception`], which
//! prints the cause and stops. The NMI vector returns at once (`rfi 3`); nothing enables an NMI
//! source.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::console;
use rota_core::report::{self, Console};
use rota_core::trial::rollback;

/// PS value set at start: UM = 1 (general exceptions use the user vector), EXCM = 0, INTLEVEL = 0.
/// Interrupts stay off because INTENABLE is 0.
pub const PS_RUNNING: u32 = 0x20;

// The reset vector trampoline of the QEMU machines (the chip's ROM enters at `_rota_start`).
#[cfg(any(feature = "sim", feature = "xtfpga"))]
global_asm!(
    r#"
    .section .rota.reset_vector, "ax"
    .global _rota_reset
    .type _rota_reset, @function
    .p2align 2
_rota_reset:
    j       1f
    .p2align 2
.Lreset_stack:
    .long   _stack_start
.Lreset_entry:
    .long   _rota_start
1:
    l32r    a1, .Lreset_stack
    l32r    a0, .Lreset_entry
    jx      a0
    .size _rota_reset, . - _rota_reset
"#
);

// Exception vectors at VECBASE = `_vector_table` (1 KB aligned by the linker scripts). Offsets are
// those of the lx106 core: 0x10 debug (level 2), 0x20 NMI (level 3), 0x30 kernel, 0x50 user,
// 0x70 double exception. Each fatal stub loads its kind into a2 and jumps to the common stub. The
// user vector (`_rota_user_vector`) first keeps a0 in EXCSAVE1 and sends a LoadStoreError (EXCCAUSE
// 3) to its emulation (`loadstore.rs`), which goes on to the fatal stub if it refuses the load.
global_asm!(
    r#"
    .section .rota.vectors, "ax"
    .global _rota_vectors
    .p2align 2
_rota_vectors:
    ill
    .org    0x10
.Ldebug_vector:
    movi    a2, 3
    j       _rota_fatal_stub
    .org    0x20
.Lnmi_vector:
    rfi     3
    .org    0x30
.Lkernel_vector:
    movi    a2, 1
    j       _rota_fatal_stub
    .org    0x50
    .global _rota_user_vector
_rota_user_vector:
    wsr     a0, excsave1
    rsr     a0, exccause
    beqi    a0, 3, 1f
    movi    a2, 0
    j       _rota_fatal_stub
1:
    j       _rota_load_store_error
    .org    0x70
.Ldouble_vector:
    movi    a2, 2
    j       _rota_fatal_stub
    .org    0x80
"#
);

// The common fatal-exception stub and the runtime entry, both in IRAM. Literals precede their
// users because l32r only reaches backwards. The stub leaves the exception mode (PS = PS_RUNNING,
// EXCM = 0) before calling the reporter: its strings are `.rodata` in flash, which the reporter reads
// with byte loads, and on the chip those must reach the LoadStoreError emulation rather than raise a
// double exception.
//
// The reporter runs below the interrupted code's stack pointer, as a call would, when that pointer
// lies in the stack with at least FATAL_MIN bytes below it: on a trial boot the reporter records
// the fault through the storage driver, which lives in the firmware's `main` frame at the top of
// the stack, so the reporter's frames must not overwrite it. Otherwise (the stack pointer is
// corrupt, or the stack nearly exhausted) it runs from FATAL_FALLBACK bytes above the stack's
// bottom, far below `main`'s frame.
global_asm!(
    r#"
    .section .rota.iram.text, "ax"
    .p2align 2
.Lfatal_stack:
    .long   _stack_start
.Lfatal_low:
    .long   _stack_end + {fatal_min}
.Lfatal_fallback:
    .long   _stack_end + {fatal_fallback}
.Lfatal_handler:
    .long   rota_rt_fatal_exception
    .global _rota_fatal_stub
    .type _rota_fatal_stub, @function
    .p2align 2
_rota_fatal_stub:
    rsr     a3, exccause
    rsr     a4, epc1
    rsr     a5, excvaddr
    rsr     a6, depc
    l32r    a7, .Lfatal_low
    l32r    a8, .Lfatal_stack
    bltu    a1, a7, 1f
    bltu    a8, a1, 1f
    movi    a7, -16
    and     a1, a1, a7
    j       3f
1:
    l32r    a1, .Lfatal_fallback
3:
    movi    a0, {ps_running}
    wsr     a0, ps
    rsync
    movi    a0, 0
    l32r    a7, .Lfatal_handler
    callx0  a7
2:
    j       2b
    .size _rota_fatal_stub, . - _rota_fatal_stub

    .p2align 2
.Lstart_stack:
    .long   _stack_start
.Lstart_vecbase:
    .long   _vector_table
.Lstart_sidata:
    .long   _sidata
.Lstart_sdata:
    .long   _sdata
.Lstart_edata:
    .long   _edata
.Lstart_sbss:
    .long   _sbss
.Lstart_ebss:
    .long   _ebss
.Lstart_chip_init:
    .long   rota_rt_chip_init
.Lstart_main:
    .long   rota_rt_main
    .global _rota_start
    .type _rota_start, @function
    .p2align 2
_rota_start:
    l32r    a1, .Lstart_stack
    movi    a0, 0
    wsr     a0, intenable
    l32r    a2, .Lstart_vecbase
    wsr     a2, vecbase
    movi    a2, {ps_running}
    wsr     a2, ps
    rsync
    l32r    a2, .Lstart_chip_init
    callx0  a2
    l32r    a2, .Lstart_sidata
    l32r    a3, .Lstart_sdata
    l32r    a4, .Lstart_edata
    beq     a2, a3, 2f
1:
    bgeu    a3, a4, 2f
    l32i    a5, a2, 0
    s32i    a5, a3, 0
    addi    a2, a2, 4
    addi    a3, a3, 4
    j       1b
2:
    l32r    a3, .Lstart_sbss
    l32r    a4, .Lstart_ebss
    movi    a5, 0
3:
    bgeu    a3, a4, 4f
    s32i    a5, a3, 0
    addi    a3, a3, 4
    j       3b
4:
    movi    a0, 0
    l32r    a2, .Lstart_main
    callx0  a2
5:
    j       5b
    .size _rota_start, . - _rota_start
"#,
    ps_running = const PS_RUNNING,
    fatal_min = const FATAL_MIN,
    fatal_fallback = const FATAL_FALLBACK,
);

/// Stack the fatal-exception reporter needs below the interrupted stack pointer (it records a
/// trial boot's fault through the store: its scan and the record's checksum take under 1 KB).
const FATAL_MIN: u32 = 1536;
/// Where the reporter's stack starts, above the stack's bottom, when the interrupted stack pointer
/// is unusable: 3 KB, far below the firmware's `main` frame at the top of the 10 KB stack.
const FATAL_FALLBACK: u32 = 3072;

/// Chip-only early init, called by `_rota_start` before `.data`/`.bss` exist: maps the first MB of
/// flash through the cache (ROM `Cache_Read_Enable(0, 0, 1)`) and stops the watchdog for good (ROM
/// `ets_wdt_disable`: it clears the hardware watchdog's enable bit and disarms the ROM's software
/// one; nothing starts it again, so the flash driver's long ROM erases need no feeding: see
/// [`crate::chip`]). Must live in IRAM and touch no statics.
#[cfg(feature = "chip")]
#[no_mangle]
#[link_section = ".rota.iram.text.chip_init"]
extern "C" fn rota_rt_chip_init() {
    extern "C" {
        fn Cache_Read_Enable(odd_even: u32, mb_count: u32, unknown: u32);
        fn ets_wdt_disable();
    }
    // SAFETY: ROM routines at the addresses PROVIDEd by linker/esp8266-chip.x.
    unsafe {
        Cache_Read_Enable(0, 0, 1);
        ets_wdt_disable();
    }
}

/// QEMU's machines: nothing to do before `.data`/`.bss` (no flash cache, no watchdog).
#[cfg(any(feature = "sim", feature = "xtfpga"))]
#[no_mangle]
#[link_section = ".rota.iram.text.chip_init"]
extern "C" fn rota_rt_chip_init() {}

/// Kinds of fatal exception, in the order of the codes the vectors load into a2.
const KINDS: [&[u8]; 4] = [b"user", b"kernel", b"double", b"debug"];

static IN_FATAL: AtomicBool = AtomicBool::new(false);

/// EXCCAUSE of an illegal instruction.
const ILLEGAL_INSTRUCTION: u32 = 0;

/// Whether the user exception (`exccause`, at `epc1`) is a trap the code raised on purpose: an
/// illegal instruction that is `ill` (what a Rust panic is in firmware built with
/// `-Cpanic=immediate-abort`, and what `rota_abi::trap` executes) or `ill.n`. The instruction was
/// fetched (it raised the exception), so its words are readable; they are read as aligned words,
/// which IRAM and the flash window allow.
fn is_trap(exccause: u32, epc1: u32) -> bool {
    if exccause != ILLEGAL_INSTRUCTION {
        return false;
    }
    let word = |at: u32| {
        // SAFETY: an aligned word of the instruction memory the exception was raised from (or the
        // word after it, which holds the rest of an instruction that crosses into it).
        unsafe { core::ptr::read_volatile((at & !3) as *const u32) }
    };
    let shift = 8 * (epc1 & 3);
    let mut insn = word(epc1) >> shift;
    if shift > 8 {
        insn |= word(epc1 + 4) << (32 - shift);
    }
    // ILL is the 24-bit 0x000000; ILL.N the 16-bit 0xF06D (little-endian instruction bytes).
    insn & 0xFF_FFFF == 0 || insn & 0xFFFF == 0xF06D
}

/// Reports a fatal exception (`kind` 0 user, 1 kernel, 2 double, 3 debug) and stops: exit code 3
/// under semihosting, a halt on the chip. A fault while reporting stops at once with code 4.
/// EXCCAUSE values are those of the Xtensa ISA (0 illegal instruction, 3 load/store error, ...).
///
/// On a trial boot it first records the end of the boot (`rota_core::trial::ended`): a panic for a
/// trap instruction, a fault for anything else; the chip then resets, so that the next trial boot
/// follows without a person (under QEMU the test harness powers the device on again).
#[no_mangle]
extern "C" fn rota_rt_fatal_exception(
    kind: u32,
    exccause: u32,
    epc1: u32,
    excvaddr: u32,
    depc: u32,
) -> ! {
    // No compare-and-swap on the LX106; interrupts are off, so load + store is enough.
    if IN_FATAL.load(Ordering::Relaxed) {
        crate::exit(4);
    }
    IN_FATAL.store(true, Ordering::Relaxed);
    let reason = if kind == 0 && is_trap(exccause, epc1) {
        rollback::PANIC
    } else {
        rollback::FAULT
    };
    // SAFETY: this handler never returns to the interrupted code (it exits, halts or resets below),
    // and nothing else runs meanwhile (interrupts are off).
    let recorded = unsafe { rota_core::trial::ended(reason) };
    let c = &mut console::Console;
    c.print(b"\nrota: fatal ");
    c.print(KINDS.get(kind as usize).copied().unwrap_or(b"?"));
    c.print(b" exception: EXCCAUSE=");
    report::write_dec(c, exccause);
    for (name, value) in [
        (&b" EPC1="[..], epc1),
        (b" EXCVADDR=", excvaddr),
        (b" DEPC=", depc),
    ] {
        c.print(name);
        report::write_hex(c, value);
    }
    c.print(b"\n");
    trial_end(c, recorded, reason);
    crate::exit(3)
}

/// Says what a fatal exception or a panic on a trial boot recorded, and on the chip resets so that
/// the trial count goes on (elsewhere, and after a boot not on trial, the caller stops as before).
pub fn trial_end(c: &mut console::Console, recorded: bool, reason: u8) {
    if !recorded {
        return;
    }
    c.print(b"rota: trial boot ended: ");
    c.print(rollback::describe(reason).as_bytes());
    c.print(b" (recorded)\n");
    #[cfg(feature = "chip")]
    crate::reset();
}

/// Synchronises instruction fetch with earlier stores (`isync`): call after writing code to RAM.
#[inline(always)]
pub fn isync() {
    // SAFETY: `isync` only waits for earlier instruction-fetch-affecting changes.
    unsafe { core::arch::asm!("isync", options(nostack, preserves_flags)) }
}

/// Reads the cycle counter CCOUNT.
#[inline(always)]
pub fn ccount() -> u32 {
    let c: u32;
    // SAFETY: reading a special register has no side effect.
    unsafe {
        core::arch::asm!("rsr {0}, ccount", out(reg) c, options(nomem, nostack, preserves_flags))
    }
    c
}

/// Sets CCOMPARE0, the timer compare register (a timer interrupt when CCOUNT reaches it; none is
/// taken while INTENABLE is 0, as here).
#[inline(always)]
pub fn set_ccompare0(value: u32) {
    // SAFETY: writing CCOMPARE0 only arms the timer and clears its pending interrupt; with
    // INTENABLE = 0 no interrupt is taken. `rsync` lets the write take effect before what follows.
    unsafe {
        core::arch::asm!(
            "wsr {0}, ccompare0",
            "rsync",
            in(reg) value,
            options(nomem, nostack, preserves_flags)
        )
    }
}

/// The linker-script symbols, as addresses.
pub mod symbols {
    extern "C" {
        static _vector_table: u8;
        static _ram_start: u8;
        static _arena_start: u8;
        static _arena_end: u8;
        static _heap_start: u8;
        static _heap_end: u8;
        static _stack_start: u8;
        static _stack_end: u8;
        static _flash_start: u8;
        static _flash_end: u8;
    }

    macro_rules! addr {
        ($(#[$m:meta])* $name:ident, $sym:ident) => {
            $(#[$m])*
            #[inline(always)]
            pub fn $name() -> usize {
                core::ptr::addr_of!($sym) as usize
            }
        };
    }

    addr!(
        /// VECBASE: the exception vector table (start of IRAM).
        vector_table,
        _vector_table
    );
    addr!(
        /// First byte of DRAM (`.dram.rodata`, `.data`, `.bss`, then the heap).
        ram_start,
        _ram_start
    );
    addr!(
        /// First byte of the overlay arena (IRAM, executable).
        arena_start,
        _arena_start
    );
    addr!(
        /// One past the arena.
        arena_end,
        _arena_end
    );
    addr!(
        /// First byte of the heap (DRAM, after `.bss`).
        heap_start,
        _heap_start
    );
    addr!(
        /// One past the heap (= the stack's bottom).
        heap_end,
        _heap_end
    );
    addr!(
        /// The stack's top (initial a1).
        stack_start,
        _stack_start
    );
    addr!(
        /// The stack's bottom (lowest address).
        stack_end,
        _stack_end
    );
    addr!(
        /// First byte of the memory-mapped blob store window.
        flash_start,
        _flash_start
    );
    addr!(
        /// One past the blob store window.
        flash_end,
        _flash_end
    );
}
