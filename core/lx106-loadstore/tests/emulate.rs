//! The emulation against the Xtensa ISA's encodings: every emulated form, target and base register,
//! offsets up to the maximum, every byte lane, sign extension, both regions and their edges, and the
//! refusals. Instructions are built by this file's own RRI8 encoder, checked first against bytes
//! `xtensa-lx106-elf-as` produced.

use rota_lx106_loadstore::{
    decode, emulate, fetch, Decoded, Error, Load, Op, Registers, FLASH, IRAM,
};
use std::cell::RefCell;

/// RRI8: byte 0 = t << 4 | op0, byte 1 = r << 4 | s, byte 2 = imm8.
fn rri8(op0: u8, r: u8, t: u8, s: u8, imm8: u8) -> [u8; 3] {
    assert!(op0 < 16 && r < 16 && t < 16 && s < 16);
    [t << 4 | op0, r << 4 | s, imm8]
}

/// The r field of each load under op0 = 2 (LSAI).
fn r_of(op: Op) -> u8 {
    match op {
        Op::L8ui => 0,
        Op::L16ui => 1,
        Op::L16si => 9,
    }
}

/// `op at, as, offset` (offset in bytes, as the assembler takes it).
fn load(op: Op, t: u8, s: u8, offset: u32) -> [u8; 3] {
    let imm8 = match op {
        Op::L8ui => offset,
        Op::L16ui | Op::L16si => {
            assert_eq!(offset % 2, 0);
            offset / 2
        }
    };
    rri8(2, r_of(op), t, s, u8::try_from(imm8).unwrap())
}

/// Bytes as `xtensa-lx106-elf-objdump -d` showed them for `xtensa-lx106-elf-as` output (it prints
/// the 24-bit word: byte 2, byte 1, byte 0).
fn objdump(word: u32) -> [u8; 3] {
    let [b0, b1, b2, _] = word.to_le_bytes();
    [b0, b1, b2]
}

#[test]
fn the_encoder_agrees_with_the_assembler() {
    assert_eq!(load(Op::L8ui, 5, 9, 17), objdump(0x110952)); // l8ui a5, a9, 17
    assert_eq!(load(Op::L8ui, 0, 1, 255), objdump(0xff0102)); // l8ui a0, a1, 255
    assert_eq!(load(Op::L8ui, 15, 15, 128), objdump(0x800ff2)); // l8ui a15, a15, 128
    assert_eq!(load(Op::L16ui, 15, 14, 510), objdump(0xff1ef2)); // l16ui a15, a14, 510
    assert_eq!(load(Op::L16si, 1, 0, 0), objdump(0x009012)); // l16si a1, a0, 0
    assert_eq!(load(Op::L16si, 7, 3, 2), objdump(0x019372)); // l16si a7, a3, 2
    assert_eq!(rri8(2, 2, 2, 3, 1), objdump(0x012322)); // l32i a2, a3, 4
    assert_eq!(rri8(2, 4, 2, 3, 1), objdump(0x014322)); // s8i a2, a3, 1
    assert_eq!(rri8(2, 5, 2, 3, 1), objdump(0x015322)); // s16i a2, a3, 2
    assert_eq!(rri8(2, 6, 4, 5, 3), objdump(0x036542)); // s32i a4, a5, 12
    assert_eq!(rri8(2, 10, 2, 0, 100), objdump(0x64a022)); // movi a2, 100
    assert_eq!(rri8(2, 12, 2, 3, 0xfc), objdump(0xfcc322)); // addi a2, a3, -4
    assert_eq!(rri8(2, 13, 2, 3, 1), objdump(0x01d322)); // addmi a2, a3, 256
}

/// Memory for the tests: word `a` of either region holds `pattern(a)`; anything else panics, as
/// does an unaligned or second read.
struct Memory {
    reads: RefCell<Vec<u32>>,
}

fn pattern(word_addr: u32) -> u32 {
    // Distinct bytes per address, with high bits set in some lanes (sign extension).
    word_addr.wrapping_mul(0x9e37_79b9).rotate_left(7) ^ 0x80f0_0f08
}

impl Memory {
    fn new() -> Self {
        Memory {
            reads: RefCell::new(Vec::new()),
        }
    }

    fn read(&self, addr: u32) -> u32 {
        assert_eq!(addr % 4, 0, "unaligned read at {addr:#x}");
        assert!(
            IRAM.contains(&addr) || FLASH.contains(&addr),
            "read outside the regions at {addr:#x}"
        );
        self.reads.borrow_mut().push(addr);
        pattern(addr)
    }

    /// The byte at `addr` as the chip's memory holds it (little-endian words).
    fn byte(addr: u32) -> u32 {
        u32::from(pattern(addr & !3).to_le_bytes()[(addr & 3) as usize])
    }

    fn expected(op: Op, addr: u32) -> u32 {
        let lo = Self::byte(addr);
        match op {
            Op::L8ui => lo,
            Op::L16ui => lo | Self::byte(addr + 1) << 8,
            Op::L16si => (lo | Self::byte(addr + 1) << 8) as u16 as i16 as i32 as u32,
        }
    }
}

/// Registers with a distinct value in each (none of them a valid address), base `s` set so that
/// the load of `offset` from it reaches `addr`.
fn regs_for(s: u8, offset: u32, addr: u32) -> Registers {
    let mut regs: Registers = core::array::from_fn(|i| 0x0bad_0000 + i as u32 * 0x111);
    regs[usize::from(s)] = addr.wrapping_sub(offset);
    regs
}

/// Runs one emulation and checks everything about it.
fn check(op: Op, t: u8, s: u8, offset: u32, addr: u32) {
    let mem = Memory::new();
    let regs = regs_for(s, offset, addr);
    let insn = load(op, t, s, offset);
    let got = emulate(insn, &regs, addr, |a| mem.read(a));
    assert_eq!(
        got,
        Ok(Load {
            target: t,
            value: Memory::expected(op, addr)
        }),
        "{op:?} a{t}, a{s}, {offset} at {addr:#x}"
    );
    assert_eq!(
        *mem.reads.borrow(),
        [addr & !3],
        "exactly one aligned word read"
    );
}

const OPS: [Op; 3] = [Op::L8ui, Op::L16ui, Op::L16si];

/// Offsets spread over the range of each form, the maximum included.
fn offsets(op: Op) -> &'static [u32] {
    match op {
        Op::L8ui => &[0, 1, 2, 3, 4, 7, 64, 127, 128, 129, 200, 254, 255],
        Op::L16ui | Op::L16si => &[0, 2, 4, 6, 128, 254, 256, 258, 400, 508, 510],
    }
}

#[test]
fn every_form_target_base_and_offset_in_both_regions() {
    for op in OPS {
        for t in 0..16 {
            for s in 0..16 {
                for &offset in offsets(op) {
                    for addr in [IRAM.start + 0x1234, FLASH.start + 0x5_6788] {
                        check(op, t, s, offset, addr);
                    }
                }
            }
        }
    }
}

#[test]
fn every_byte_lane_of_a_word() {
    for region in [IRAM, FLASH] {
        let word = region.start + 0x400;
        for lane in 0..4 {
            check(Op::L8ui, 2, 3, 0, word + lane);
            check(Op::L8ui, 9, 12, 255, word + lane);
        }
        for lane in [0, 2] {
            for op in [Op::L16ui, Op::L16si] {
                check(op, 2, 3, 0, word + lane);
                check(op, 14, 0, 510, word + lane);
            }
        }
    }
}

#[test]
fn the_lanes_of_a_known_word() {
    let addr = FLASH.start + 0x100;
    let word = 0x8001_7fff_u32;
    let run = |op, a| {
        let regs = regs_for(4, 0, a);
        emulate(load(op, 5, 4, 0), &regs, a, |w| {
            assert_eq!(w, addr);
            word
        })
        .map(|l| l.value)
    };
    assert_eq!(run(Op::L8ui, addr), Ok(0xff));
    assert_eq!(run(Op::L8ui, addr + 1), Ok(0x7f));
    assert_eq!(run(Op::L8ui, addr + 2), Ok(0x01));
    assert_eq!(run(Op::L8ui, addr + 3), Ok(0x80));
    assert_eq!(run(Op::L16ui, addr), Ok(0x7fff));
    assert_eq!(run(Op::L16ui, addr + 2), Ok(0x8001));
    assert_eq!(run(Op::L16si, addr), Ok(0x7fff));
    assert_eq!(run(Op::L16si, addr + 2), Ok(0xffff_8001));
}

#[test]
fn l16si_sign_extends_and_l16ui_and_l8ui_do_not() {
    for (half, signed) in [
        (0x0000u32, 0x0000_0000u32),
        (0x7fff, 0x0000_7fff),
        (0x8000, 0xffff_8000),
        (0xffff, 0xffff_ffff),
        (0x80ff, 0xffff_80ff),
    ] {
        for lane in [0, 2] {
            let addr = IRAM.start + 0x10 + lane;
            let word = half << (lane * 8) | 0x5a5a_u32 << ((2 - lane) * 8);
            let regs = regs_for(6, 0, addr);
            let run = |op| emulate(load(op, 7, 6, 0), &regs, addr, |_| word).map(|l| l.value);
            assert_eq!(run(Op::L16si), Ok(signed), "{half:#x} lane {lane}");
            assert_eq!(run(Op::L16ui), Ok(half), "{half:#x} lane {lane}");
            assert_eq!(run(Op::L8ui), Ok(half & 0xff), "{half:#x} lane {lane}");
        }
    }
}

#[test]
fn a1_the_stack_pointer_is_a_register_like_the_others() {
    // Target a1: the value is returned for a1, which the vector restores last.
    let addr = IRAM.start + 0x21;
    let mem = Memory::new();
    let regs = regs_for(3, 0, addr);
    let got = emulate(load(Op::L8ui, 1, 3, 0), &regs, addr, |a| mem.read(a));
    assert_eq!(got.map(|l| l.target), Ok(1));
    // Base a1.
    check(Op::L16si, 4, 1, 510, FLASH.start + 0x2000);
    check(Op::L8ui, 1, 1, 255, FLASH.start + 0x2003);
}

#[test]
fn the_edges_of_each_region() {
    for region in [IRAM, FLASH] {
        check(Op::L8ui, 2, 3, 0, region.start);
        check(Op::L8ui, 2, 3, 0, region.end - 1);
        check(Op::L16si, 2, 3, 0, region.end - 2);
        for addr in [region.start - 1, region.end] {
            for op in OPS {
                let addr = if op == Op::L8ui { addr } else { addr & !1 };
                let regs = regs_for(3, 0, addr);
                let got = emulate(load(op, 2, 3, 0), &regs, addr, |_| panic!("read"));
                assert_eq!(got, Err(Error::OutsideRegions(addr)), "{op:?} {addr:#x}");
            }
        }
    }
    // DRAM, ROM, the IRAM the flash cache uses, and an address that wraps around.
    for addr in [
        0x3ffe_8000,
        0x4000_0000,
        0x4010_8000,
        0x4010_c000,
        0x0000_0010,
    ] {
        let regs = regs_for(3, 0x20, addr);
        let got = emulate(load(Op::L8ui, 2, 3, 0x20), &regs, addr, |_| panic!("read"));
        assert_eq!(got, Err(Error::OutsideRegions(addr)));
    }
    let regs = regs_for(3, 0, 0xffff_ff80);
    let wrapped = emulate(load(Op::L8ui, 2, 3, 0xff), &regs, 0x7f, |_| panic!("read"));
    assert_eq!(wrapped, Err(Error::OutsideRegions(0x7f)));
}

#[test]
fn a_half_word_at_an_odd_address_is_refused() {
    for op in [Op::L16ui, Op::L16si] {
        for lane in [1, 3] {
            let addr = FLASH.start + 0x40 + lane;
            let regs = regs_for(3, 2, addr);
            let got = emulate(load(op, 2, 3, 2), &regs, addr, |_| panic!("read"));
            assert_eq!(got, Err(Error::Misaligned(addr)));
        }
    }
}

#[test]
fn excvaddr_must_be_the_address_the_instruction_computes() {
    let addr = IRAM.start + 0x100;
    let regs = regs_for(3, 8, addr);
    for other in [addr + 1, addr - 1, 0, regs[3]] {
        let got = emulate(load(Op::L8ui, 2, 3, 8), &regs, other, |_| panic!("read"));
        assert_eq!(
            got,
            Err(Error::AddressMismatch {
                computed: addr,
                excvaddr: other
            })
        );
    }
}

#[test]
fn other_instructions_are_refused_without_a_read() {
    let regs = regs_for(3, 0, IRAM.start);
    let refused = |insn: [u8; 3]| {
        assert_eq!(
            emulate(insn, &regs, IRAM.start, |_| panic!("read")),
            Err(Error::NotEmulated(insn)),
            "{insn:02x?}"
        );
        assert_eq!(decode(insn), Err(Error::NotEmulated(insn)));
    };
    // Every other minor opcode of LSAI: l32i (2), reserved (3), s8i (4), s16i (5), s32i (6),
    // CACHE (7), reserved (8), l32ai (11), movi (10), addi (12), addmi (13), s32c1i (14), s32ri (15).
    for r in (0..16).filter(|r| ![0, 1, 9].contains(r)) {
        for (t, s, imm8) in [(2, 3, 0), (15, 0, 0xff), (0, 15, 0x80)] {
            refused(rri8(2, r, t, s, imm8));
        }
    }
    // The loads' r fields under every other major opcode (l32r is op0 1, call0 5, narrow l32i.n 8,
    // ...), and what the assembler made of a few.
    for op0 in (0..16).filter(|&o| o != 2) {
        for r in [0, 1, 9] {
            refused(rri8(op0, r, 2, 3, 4));
        }
    }
    for word in [
        0x000000, 0xfffc21, 0x0020f0, 0x742030, 0x012322, 0x014322, 0x036542,
    ] {
        refused(objdump(word));
    }
}

#[test]
fn decode_gives_the_fields() {
    assert_eq!(
        decode(load(Op::L16si, 7, 3, 2)),
        Ok(Decoded {
            op: Op::L16si,
            target: 7,
            base: 3,
            offset: 2
        })
    );
    assert_eq!(
        decode(load(Op::L8ui, 0, 15, 255)),
        Ok(Decoded {
            op: Op::L8ui,
            target: 0,
            base: 15,
            offset: 255
        })
    );
    assert_eq!(
        decode(load(Op::L16ui, 15, 0, 510)).map(|d| (d.op, d.offset)),
        Ok((Op::L16ui, 510))
    );
}

#[test]
fn fetch_reads_an_instruction_at_every_alignment_with_word_loads() {
    // Two words of code: 00 11 22 33 | 44 55 66 77.
    let code = [0x3322_1100u32, 0x7766_5544];
    let base = IRAM.start + 0x200;
    for lane in 0..4u32 {
        let reads = RefCell::new(Vec::new());
        let insn = fetch(base + lane, |a| {
            assert_eq!(a % 4, 0);
            reads.borrow_mut().push(a);
            code[((a - base) / 4) as usize]
        });
        let first = lane as u8 * 0x11;
        assert_eq!(insn, [first, first + 0x11, first + 0x22], "lane {lane}");
        let words = if lane > 1 { 2 } else { 1 };
        assert_eq!(reads.borrow().len(), words, "lane {lane}");
    }
}

#[test]
fn fetch_then_emulate_as_the_vector_does() {
    // `l16si a3, a10, 6` at an address whose instruction straddles two words, loading from flash.
    let pc = IRAM.start + 0x302;
    let insn = load(Op::L16si, 3, 10, 6);
    let word0 = u32::from_le_bytes([0, 0, insn[0], insn[1]]);
    let word1 = u32::from_le_bytes([insn[2], 0, 0, 0]);
    let data = FLASH.start + 0x1_0000;
    let mem = |a: u32| match a {
        a if a == pc - 2 => word0,
        a if a == pc + 2 => word1,
        a if a == data => 0xfffe_0000,
        _ => panic!("read at {a:#x}"),
    };
    let fetched = fetch(pc, mem);
    assert_eq!(fetched, insn);
    let regs = regs_for(10, 6, data + 2);
    assert_eq!(
        emulate(fetched, &regs, data + 2, mem),
        Ok(Load {
            target: 3,
            value: 0xffff_fffe
        })
    );
}
