//! The LoadStoreError handler: on the chip, `l8ui`, `l16ui` and `l16si` from IRAM or the mapped
//! flash raise LoadStoreError (EXCCAUSE 3); this emulates them with aligned 32-bit loads, so that
//! constants (`.rodata`) can live in flash. The decoding is `rota-lx106-loadstore`'s, host-tested;
//! this is the glue between it and the user exception vector (`rt.rs`), which jumps to
//! `_rota_load_store_error` when EXCCAUSE is 3, with a0 in EXCSAVE1 and PS.EXCM set:
//!
//! 1. push a [`FRAME_BYTES`] frame on the faulting code's stack: a0..a15 as that code had them
//!    (a0 from EXCSAVE1, a1 the stack pointer before the push), then SAR (the Rust call may shift);
//! 2. call [`rota_rt_load_store_error`] with the frame, EPC1 and EXCVADDR: it fetches the
//!    instruction at EPC1 by words, emulates it and writes the target register into the frame;
//! 3. refused: the fatal path, which reports the LoadStoreError as before (`rota: fatal user
//!    exception: EXCCAUSE=3 ...`);
//! 4. emulated: EPC1 += 3, SAR and a0..a15 back from the frame, a1 last (so a load into a1 works
//!    like any other), `rfe`.
//!
//! Everything on this path is in IRAM and touches no `.rodata`: it runs with PS.EXCM set, so a
//! LoadStoreError inside it would be a double exception, and it must not depend on the flash cache.
//! The linker scripts keep the code of `rota-lx106-loadstore` in IRAM and its constants in DRAM.
//!
//! Under QEMU the loads never fault (QEMU's lx106 allows byte loads from IRAM and the flash window),
//! so the path is tested on synthetic exceptions: `examples/lx106_loadstore.rs`.

use core::arch::global_asm;
use rota_lx106_loadstore::Registers;

/// Bytes of the frame: a0..a15, SAR, padding to keep the stack pointer 16-byte aligned.
const FRAME_BYTES: usize = 80;
/// Offset of SAR in the frame.
const FRAME_SAR: usize = 64;

// Literals first: l32r reaches only backwards.
global_asm!(
    r#"
    .section .rota.iram.text.load_store_error, "ax"
    .p2align 2
.Lload_store_emulate:
    .long   rota_rt_load_store_error
    .global _rota_load_store_error
    .type _rota_load_store_error, @function
    .p2align 2
_rota_load_store_error:
    addi    a1, a1, -{frame}
    s32i    a2, a1, 8
    s32i    a3, a1, 12
    s32i    a4, a1, 16
    s32i    a5, a1, 20
    s32i    a6, a1, 24
    s32i    a7, a1, 28
    s32i    a8, a1, 32
    s32i    a9, a1, 36
    s32i    a10, a1, 40
    s32i    a11, a1, 44
    s32i    a12, a1, 48
    s32i    a13, a1, 52
    s32i    a14, a1, 56
    s32i    a15, a1, 60
    rsr     a2, excsave1
    s32i    a2, a1, 0
    addi    a2, a1, {frame}
    s32i    a2, a1, 4
    rsr     a2, sar
    s32i    a2, a1, {sar}
    mov     a2, a1
    rsr     a3, epc1
    rsr     a4, excvaddr
    l32r    a0, .Lload_store_emulate
    callx0  a0
    bnez    a2, 1f
    rsr     a2, epc1
    addi    a2, a2, 3
    wsr     a2, epc1
    l32i    a2, a1, {sar}
    wsr     a2, sar
    rsync
    l32i    a0, a1, 0
    l32i    a2, a1, 8
    l32i    a3, a1, 12
    l32i    a4, a1, 16
    l32i    a5, a1, 20
    l32i    a6, a1, 24
    l32i    a7, a1, 28
    l32i    a8, a1, 32
    l32i    a9, a1, 36
    l32i    a10, a1, 40
    l32i    a11, a1, 44
    l32i    a12, a1, 48
    l32i    a13, a1, 52
    l32i    a14, a1, 56
    l32i    a15, a1, 60
    l32i    a1, a1, 4
    rfe
1:
    movi    a2, 0
    j       _rota_fatal_stub
    .size _rota_load_store_error, . - _rota_load_store_error
"#,
    frame = const FRAME_BYTES,
    sar = const FRAME_SAR,
);

/// Emulates the load at `epc1` for `_rota_load_store_error`: 0 when done (the target register
/// written into `frame`, a0..a15 of the faulting code), 1 when refused (not an `l8ui`, `l16ui` or
/// `l16si`, EXCVADDR not its address, outside IRAM and flash, a misaligned half-word). In IRAM;
/// called with PS.EXCM set.
#[no_mangle]
#[link_section = ".rota.iram.text.load_store_error_emulate"]
extern "C" fn rota_rt_load_store_error(frame: &mut Registers, epc1: u32, excvaddr: u32) -> u32 {
    let read_word = |addr: u32| {
        // SAFETY: aligned (both callers pass 4-aligned addresses) and readable by words: `fetch`
        // reads the words holding the instruction the CPU just fetched at EPC1, `emulate` only
        // words of IRAM and the mapped flash, which allow 32-bit loads.
        unsafe { core::ptr::read_volatile(addr as *const u32) }
    };
    let insn = rota_lx106_loadstore::fetch(epc1, read_word);
    match rota_lx106_loadstore::emulate(insn, frame, excvaddr, read_word) {
        Ok(load) => {
            frame[usize::from(load.target)] = load.value;
            0
        }
        Err(_) => 1,
    }
}
