//! The decode-and-emulate step of the ESP8266's LoadStoreError handler, as a pure function.
//!
//! On the ESP8266, instruction RAM (0x40100000..) and the flash mapped through the cache
//! (0x40200000..) answer only aligned 32-bit loads: `l8ui`, `l16ui` and `l16si` there raise
//! LoadStoreError (EXCCAUSE 3) with EPC1 at the load and EXCVADDR its address. The board's user
//! exception vector (`core/boards/esp8266/src/loadstore.rs`) saves a0..a15 in a frame, fetches the
//! instruction at EPC1 with [`fetch`] and calls [`emulate`], which loads the containing word with
//! `read_word` and returns the register to write and its value; the vector writes it into the frame,
//! advances EPC1 by 3 and returns with `rfe`. Anything [`emulate`] refuses goes to the fatal path.
//!
//! The instructions (Xtensa ISA, RRI8 format, 3 bytes, little-endian): byte 0 = `t << 4 | op0`,
//! byte 1 = `r << 4 | s`, byte 2 = `imm8`; op0 = 2 (LSAI) and r = 0 `l8ui at, as, imm8`
//! (address as + imm8), r = 1 `l16ui` and r = 9 `l16si` (address as + (imm8 << 1)), t the target
//! register, s the base register. Decisions:
//! - A half-word load must be 2-aligned (as the ISA requires of every `l16`): an odd address is
//!   refused ([`Error::Misaligned`]), so an emulated half-word never straddles two words and every
//!   emulated load reads exactly one word.
//! - The address is recomputed from the instruction and the saved registers and must equal EXCVADDR
//!   ([`Error::AddressMismatch`]): a frame that does not describe this load is refused.
//! - Only addresses in [`IRAM`] or [`FLASH`] are emulated ([`Error::OutsideRegions`]): a
//!   LoadStoreError anywhere else is a real fault.
//! - Every register a0..a15 may be the target or the base, a1 (the stack pointer) included: the
//!   vector restores a1 last, from the frame, so a load into a1 takes effect like any other.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::ops::Range;

/// The ESP8266's instruction RAM (32 KB): only aligned 32-bit loads and stores work there.
pub const IRAM: Range<u32> = 0x4010_0000..0x4010_8000;
/// The flash mapped through the cache, the first MB as `Cache_Read_Enable(0, 0, 1)` maps it (IROM
/// and the blob store window): only aligned 32-bit loads work there.
pub const FLASH: Range<u32> = 0x4020_0000..0x4030_0000;

/// The register file a0..a15 as the exception frame saved it (a1 as the faulting code had it).
pub type Registers = [u32; 16];

/// The loads that are emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `l8ui`: a byte, zero-extended.
    L8ui,
    /// `l16ui`: a half-word, zero-extended.
    L16ui,
    /// `l16si`: a half-word, sign-extended.
    L16si,
}

/// A decoded load: `op at, as, offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Which load.
    pub op: Op,
    /// The target register's number, 0..=15.
    pub target: u8,
    /// The base register's number, 0..=15.
    pub base: u8,
    /// The byte offset added to the base: imm8 for `l8ui` (0..=255), imm8 << 1 for the half-word
    /// loads (0..=510).
    pub offset: u32,
}

/// What the emulated load writes: `value` into register a`target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// The target register's number, 0..=15 (an index into [`Registers`]).
    pub target: u8,
    /// The value, zero- or sign-extended to 32 bits.
    pub value: u32,
}

/// Why a LoadStoreError is not emulated (the handler then reports it as fatal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The instruction is not `l8ui`, `l16ui` or `l16si` (a store, `l32i`, another opcode).
    NotEmulated([u8; 3]),
    /// The address the instruction computes from the saved registers is not EXCVADDR.
    AddressMismatch {
        /// The base register plus the offset.
        computed: u32,
        /// What the CPU reported.
        excvaddr: u32,
    },
    /// A half-word load from an odd address.
    Misaligned(u32),
    /// The address is in neither [`IRAM`] nor [`FLASH`].
    OutsideRegions(u32),
}

/// LSAI: the major opcode of the RRI8 loads and stores.
const OP0_LSAI: u8 = 2;
/// The r field (minor opcode) of each emulated load under LSAI.
const R_L8UI: u8 = 0;
const R_L16UI: u8 = 1;
const R_L16SI: u8 = 9;

/// Decodes `insn` (its three bytes in memory order) if it is one of the emulated loads.
pub fn decode(insn: [u8; 3]) -> Result<Decoded, Error> {
    let [b0, b1, imm8] = insn;
    if b0 & 0xf != OP0_LSAI {
        return Err(Error::NotEmulated(insn));
    }
    let (op, offset) = match b1 >> 4 {
        R_L8UI => (Op::L8ui, u32::from(imm8)),
        R_L16UI => (Op::L16ui, u32::from(imm8) << 1),
        R_L16SI => (Op::L16si, u32::from(imm8) << 1),
        _ => return Err(Error::NotEmulated(insn)),
    };
    Ok(Decoded {
        op,
        target: b0 >> 4,
        base: b1 & 0xf,
        offset,
    })
}

/// Emulates the faulting load `insn` with one aligned 32-bit load: checks it against `regs` (the
/// saved a0..a15) and `excvaddr`, reads the containing word with `read_word` (called at most once,
/// with a 4-aligned address in [`IRAM`] or [`FLASH`]) and returns the target register and its new
/// value. Writes nothing: the caller puts the value in its frame.
pub fn emulate(
    insn: [u8; 3],
    regs: &Registers,
    excvaddr: u32,
    read_word: impl FnOnce(u32) -> u32,
) -> Result<Load, Error> {
    let d = decode(insn)?;
    let addr = regs[usize::from(d.base)].wrapping_add(d.offset);
    if addr != excvaddr {
        return Err(Error::AddressMismatch {
            computed: addr,
            excvaddr,
        });
    }
    if d.op != Op::L8ui && addr & 1 != 0 {
        return Err(Error::Misaligned(addr));
    }
    if !IRAM.contains(&addr) && !FLASH.contains(&addr) {
        return Err(Error::OutsideRegions(addr));
    }
    let shifted = read_word(addr & !3) >> ((addr & 3) * 8);
    let value = match d.op {
        Op::L8ui => shifted & 0xff,
        Op::L16ui => shifted & 0xffff,
        Op::L16si => shifted as u16 as i16 as i32 as u32,
    };
    Ok(Load {
        target: d.target,
        value,
    })
}

/// The three bytes of the instruction at `pc`, read with aligned 32-bit loads (`read_word` gets
/// 4-aligned addresses only: one word, or two when the instruction straddles a word boundary).
pub fn fetch(pc: u32, mut read_word: impl FnMut(u32) -> u32) -> [u8; 3] {
    let aligned = pc & !3;
    let lane = pc & 3;
    let low = read_word(aligned) >> (lane * 8);
    // From lane 2 on, the instruction's last bytes are the first of the next word.
    let insn = if lane > 1 {
        low | read_word(aligned.wrapping_add(4)) << ((4 - lane) * 8)
    } else {
        low
    };
    let [b0, b1, b2, _] = insn.to_le_bytes();
    [b0, b1, b2]
}
