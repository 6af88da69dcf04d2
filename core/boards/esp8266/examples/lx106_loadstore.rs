//! The LoadStoreError handler (`src/loadstore.rs`) under QEMU, on synthetic exceptions: QEMU's lx106
//! never raises LoadStoreError for byte loads from IRAM or flash, so this program sets up what the
//! chip would (a0..a15 and SAR of the faulting code, EPC1 at a real `l8ui`/`l16ui`/`l16si` in IRAM
//! or flash, EXCVADDR its address, EXCCAUSE 3, PS.EXCM set) and jumps to the user vector
//! `_rota_user_vector`, which emulates the load and returns with `rfe` to the instruction after it.
//! There, a continuation stores every register and returns here.
//!
//! Each load site (assembled below, in IRAM and in flash, at every instruction alignment) is also
//! run directly (`rfe` to it, QEMU does the load), and both runs must give the registers the data
//! says: the target register loaded (zero- or sign-extended), every other register and SAR as
//! they were. Data: the same 16 bytes in IRAM and in `.rodata`, which is in flash.
//!
//! Prints `loadstore: pass cases=<n> ...` and exits 0, or `loadstore: FAIL ...` and exits 1; then
//! the cost in CCOUNT ticks of an emulated load against a direct one (QEMU's CCOUNT follows its
//! virtual clock, not the chip's cycles). With `refuse=store`, `refuse=dram` or `cause=<n>` on the
//! command line (semihosting `arg=`), it raises one exception the handler must not emulate (a
//! store, a load from DRAM, a cause other than 3) after printing `loadstore: expecting fatal EPC1=..
//! EXCVADDR=..`: the fatal path reports it and QEMU exits with 3.
//!
//! `--no-default-features --features xtfpga --example lx106_loadstore` (`make firmware`:
//! build/esp8266/lx106-loadstore-xtfpga.elf), run by `tools/emu/tests/lx106_loadstore.rs`.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::mem::offset_of;
use rota_board_esp8266::{console, exit, rt, semihosting, xtfpga};
use rota_core::heap::AccountingHeap;
use rota_core::report::{write_dec, write_hex, Console};

#[global_allocator]
static HEAP: AccountingHeap = AccountingHeap::empty();

rota_board_esp8266::entry!(main);

/// What the assembly and this program share (one run at a time).
#[repr(C)]
struct Ctx {
    /// a0..a15 when the load runs.
    input: [u32; 16],
    /// SAR when the load runs.
    sar_in: u32,
    /// a0..a15 after it.
    output: [u32; 16],
    /// SAR after it.
    sar_out: u32,
    /// EPC1 after it: the site after a direct run (`rfe` leaves EPC1), the site + 3 after a
    /// synthetic one (the handler advanced it; were it not, the load would run again, natively, and
    /// give the same registers).
    epc_out: u32,
    /// EPC1: the load site.
    epc: u32,
    /// EXCVADDR (synthetic runs).
    excvaddr: u32,
    /// EXCCAUSE (synthetic runs).
    exccause: u32,
    /// The caller's a0, a1, a12..a15 while the run has every register.
    saved: [u32; 6],
}

/// A static the assembly reaches by its symbol.
#[repr(C, align(16))]
struct Shared<T>(UnsafeCell<T>);
// SAFETY: one thread, no interrupts; the program and the assembly take turns.
unsafe impl<T> Sync for Shared<T> {}

#[no_mangle]
static ROTA_LSTEST_CTX: Shared<Ctx> = Shared(UnsafeCell::new(Ctx {
    input: [0; 16],
    sar_in: 0,
    output: [0; 16],
    sar_out: 0,
    epc_out: 0,
    epc: 0,
    excvaddr: 0,
    exccause: 0,
    saved: [0; 6],
}));

/// The stack the faulting code of a run has (a1): the handler pushes its frame there.
static STACK: Shared<[u32; 256]> = Shared(UnsafeCell::new([0; 256]));

/// The data the loads read, with both signs in every half-word lane.
const DATA: [u8; 16] = [
    0x01, 0x80, 0x7f, 0xff, 0x34, 0x12, 0x00, 0x80, 0xfe, 0x7f, 0x55, 0xaa, 0x81, 0x00, 0xc3, 0x3c,
];
#[repr(C, align(4))]
struct Data([u8; 16]);
/// In IRAM (a section of `.iram.text`).
#[link_section = ".iram.text.rota_lstest_data"]
static IRAM_DATA: Data = Data(DATA);
/// In `.rodata`, which the linker scripts place in flash (IROM).
static FLASH_DATA: Data = Data(DATA);

/// A load site of the table the assembly builds.
#[repr(C)]
struct Site {
    /// The instruction's address.
    addr: u32,
    /// 0 `l8ui`, 1 `l16ui`, 2 `l16si`.
    op: u8,
    /// Target register.
    t: u8,
    /// Base register (never a1: the run's a1 is its stack).
    s: u8,
    /// 0 IRAM, 1 flash.
    region: u8,
    /// Byte offset.
    offset: u32,
}

// `rota_lstest_direct` and `rota_lstest_synthetic` (CALL0, no arguments) run `ROTA_LSTEST_CTX`:
// save the caller's a0, a1, a12..a15, set EPC1 (and, synthetic, EXCVADDR and EXCCAUSE), set
// PS.EXCM, load SAR and a0..a15, then `rfe` to the site (direct) or jump to the user vector
// (synthetic). Each site is `<load>; j <continuation>` (7 bytes with a pad byte, so that the sites
// fall at every alignment); the continuation stores a0..a15 and SAR and returns to the caller.
global_asm!(
    r#"
    .macro lstest_cont ctx
    wsr     a0, excsave1
    l32r    a0, \ctx
    s32i    a1, a0, {out} + 4
    s32i    a2, a0, {out} + 8
    s32i    a3, a0, {out} + 12
    s32i    a4, a0, {out} + 16
    s32i    a5, a0, {out} + 20
    s32i    a6, a0, {out} + 24
    s32i    a7, a0, {out} + 28
    s32i    a8, a0, {out} + 32
    s32i    a9, a0, {out} + 36
    s32i    a10, a0, {out} + 40
    s32i    a11, a0, {out} + 44
    s32i    a12, a0, {out} + 48
    s32i    a13, a0, {out} + 52
    s32i    a14, a0, {out} + 56
    s32i    a15, a0, {out} + 60
    rsr     a1, excsave1
    s32i    a1, a0, {out}
    rsr     a1, sar
    s32i    a1, a0, {sar_out}
    rsr     a1, epc1
    s32i    a1, a0, {epc_out}
    l32i    a1, a0, {saved} + 4
    l32i    a12, a0, {saved} + 8
    l32i    a13, a0, {saved} + 12
    l32i    a14, a0, {saved} + 16
    l32i    a15, a0, {saved} + 20
    l32i    a0, a0, {saved}
    ret
    .endm

    .macro lstest_enter
    l32r    a8, .Llstest_ctx
    s32i    a0, a8, {saved}
    s32i    a1, a8, {saved} + 4
    s32i    a12, a8, {saved} + 8
    s32i    a13, a8, {saved} + 12
    s32i    a14, a8, {saved} + 16
    s32i    a15, a8, {saved} + 20
    l32i    a9, a8, {epc}
    wsr     a9, epc1
    .endm

    .macro lstest_load
    rsr     a9, ps
    movi    a10, 0x10
    or      a9, a9, a10
    wsr     a9, ps
    l32i    a9, a8, {sar_in}
    wsr     a9, sar
    rsync
    mov     a0, a8
    l32i    a1, a0, 4
    l32i    a2, a0, 8
    l32i    a3, a0, 12
    l32i    a4, a0, 16
    l32i    a5, a0, 20
    l32i    a6, a0, 24
    l32i    a7, a0, 28
    l32i    a8, a0, 32
    l32i    a9, a0, 36
    l32i    a10, a0, 40
    l32i    a11, a0, 44
    l32i    a12, a0, 48
    l32i    a13, a0, 52
    l32i    a14, a0, 56
    l32i    a15, a0, 60
    l32i    a0, a0, 0
    .endm

    .macro lsite cont, region, op, code, t, s, off
    .pushsection .rodata.rota_lstest_sites, "a"
    .p2align 2
    .long   9f
    .byte   \code, \t, \s, \region
    .long   \off
    .popsection
9:
    \op     a\t, a\s, \off
    j       \cont
    .byte   0
    .endm

    .pushsection .rodata.rota_lstest_sites, "a"
    .p2align 2
    .global rota_lstest_sites
rota_lstest_sites:
    .popsection

    .section .iram.text.rota_lstest, "ax"
    .p2align 2
.Llstest_ctx:
    .long   ROTA_LSTEST_CTX
    .global rota_lstest_direct
    .type rota_lstest_direct, @function
    .p2align 2
rota_lstest_direct:
    lstest_enter
    lstest_load
    rfe
    .size rota_lstest_direct, . - rota_lstest_direct

    .global rota_lstest_synthetic
    .type rota_lstest_synthetic, @function
    .p2align 2
rota_lstest_synthetic:
    lstest_enter
    l32i    a9, a8, {excvaddr}
    wsr     a9, excvaddr
    l32i    a9, a8, {exccause}
    wsr     a9, exccause
    lstest_load
    j       _rota_user_vector
    .size rota_lstest_synthetic, . - rota_lstest_synthetic

.Llstest_cont_iram:
    lstest_cont .Llstest_ctx

    .global rota_lstest_store_site
rota_lstest_store_site:
    s8i     a2, a3, 0
    j       .Llstest_cont_iram

    lsite .Llstest_cont_iram, 0, l8ui, 0, 0, 2, 0
    lsite .Llstest_cont_iram, 0, l8ui, 0, 1, 3, 1
    lsite .Llstest_cont_iram, 0, l8ui, 0, 2, 4, 2
    lsite .Llstest_cont_iram, 0, l8ui, 0, 3, 5, 3
    lsite .Llstest_cont_iram, 0, l8ui, 0, 4, 6, 127
    lsite .Llstest_cont_iram, 0, l8ui, 0, 5, 7, 128
    lsite .Llstest_cont_iram, 0, l8ui, 0, 6, 8, 255
    lsite .Llstest_cont_iram, 0, l8ui, 0, 7, 9, 17
    lsite .Llstest_cont_iram, 0, l8ui, 0, 8, 10, 64
    lsite .Llstest_cont_iram, 0, l8ui, 0, 9, 11, 200
    lsite .Llstest_cont_iram, 0, l8ui, 0, 10, 12, 254
    lsite .Llstest_cont_iram, 0, l8ui, 0, 11, 13, 5
    lsite .Llstest_cont_iram, 0, l8ui, 0, 12, 14, 0
    lsite .Llstest_cont_iram, 0, l8ui, 0, 13, 15, 9
    lsite .Llstest_cont_iram, 0, l8ui, 0, 14, 0, 31
    lsite .Llstest_cont_iram, 0, l8ui, 0, 15, 0, 255
    lsite .Llstest_cont_iram, 0, l8ui, 0, 5, 5, 0
    lsite .Llstest_cont_iram, 0, l16ui, 1, 0, 3, 0
    lsite .Llstest_cont_iram, 0, l16ui, 1, 1, 2, 510
    lsite .Llstest_cont_iram, 0, l16ui, 1, 2, 0, 2
    lsite .Llstest_cont_iram, 0, l16ui, 1, 7, 7, 4
    lsite .Llstest_cont_iram, 0, l16ui, 1, 12, 13, 256
    lsite .Llstest_cont_iram, 0, l16ui, 1, 15, 14, 508
    lsite .Llstest_cont_iram, 0, l16si, 2, 0, 4, 510
    lsite .Llstest_cont_iram, 0, l16si, 2, 1, 5, 0
    lsite .Llstest_cont_iram, 0, l16si, 2, 3, 15, 2
    lsite .Llstest_cont_iram, 0, l16si, 2, 9, 9, 254
    lsite .Llstest_cont_iram, 0, l16si, 2, 14, 6, 100
    lsite .Llstest_cont_iram, 0, l16si, 2, 15, 12, 6

    .section .text.rota_lstest_flash, "ax"
    .p2align 2
.Llstest_ctx_flash:
    .long   ROTA_LSTEST_CTX
.Llstest_cont_flash:
    lstest_cont .Llstest_ctx_flash

    lsite .Llstest_cont_flash, 1, l8ui, 0, 3, 4, 0
    lsite .Llstest_cont_flash, 1, l8ui, 0, 15, 2, 255
    lsite .Llstest_cont_flash, 1, l8ui, 0, 0, 9, 1
    lsite .Llstest_cont_flash, 1, l8ui, 0, 1, 10, 77
    lsite .Llstest_cont_flash, 1, l16ui, 1, 6, 7, 0
    lsite .Llstest_cont_flash, 1, l16ui, 1, 11, 3, 510
    lsite .Llstest_cont_flash, 1, l16si, 2, 2, 8, 0
    lsite .Llstest_cont_flash, 1, l16si, 2, 13, 14, 510

    .pushsection .rodata.rota_lstest_sites, "a"
    .global rota_lstest_sites_end
rota_lstest_sites_end:
    .popsection
"#,
    out = const offset_of!(Ctx, output),
    sar_in = const offset_of!(Ctx, sar_in),
    sar_out = const offset_of!(Ctx, sar_out),
    epc_out = const offset_of!(Ctx, epc_out),
    epc = const offset_of!(Ctx, epc),
    excvaddr = const offset_of!(Ctx, excvaddr),
    exccause = const offset_of!(Ctx, exccause),
    saved = const offset_of!(Ctx, saved),
);

extern "C" {
    fn rota_lstest_direct();
    fn rota_lstest_synthetic();
    static rota_lstest_store_site: u8;
    static rota_lstest_sites: [Site; 0];
    static rota_lstest_sites_end: [Site; 0];
}

/// The load sites.
fn sites() -> &'static [Site] {
    let start = core::ptr::addr_of!(rota_lstest_sites).cast::<Site>();
    let end = core::ptr::addr_of!(rota_lstest_sites_end) as usize;
    let n = (end - start as usize) / core::mem::size_of::<Site>();
    // SAFETY: the assembly lays `n` sites out between the two symbols, in `.rodata`.
    unsafe { core::slice::from_raw_parts(start, n) }
}

/// What `op` loads from `DATA[k..]`.
fn expected(op: u8, k: usize) -> u32 {
    let half = u16::from_le_bytes([DATA[k], DATA[k + 1]]);
    match op {
        0 => u32::from(DATA[k]),
        1 => u32::from(half),
        _ => half as i16 as i32 as u32,
    }
}

/// One run's inputs: distinct register values, a1 the run's stack, SAR 21.
fn inputs() -> [u32; 16] {
    let mut regs: [u32; 16] = core::array::from_fn(|i| 0xc0de_0000 | (i as u32 * 0x1111));
    regs[1] = STACK.0.get() as u32 + core::mem::size_of::<[u32; 256]>() as u32;
    regs
}

/// Runs `site` with `regs` (direct, or synthetic with (EXCVADDR, EXCCAUSE)); returns the registers,
/// SAR and EPC1 after it.
fn run(site: u32, regs: [u32; 16], synthetic: Option<(u32, u32)>) -> ([u32; 16], u32, u32) {
    let ctx = ROTA_LSTEST_CTX.0.get();
    // SAFETY: nothing else uses the context between runs (one thread, no interrupts).
    unsafe {
        (*ctx).input = regs;
        (*ctx).sar_in = 21;
        (*ctx).epc = site;
        (*ctx).output = [0; 16];
        (*ctx).sar_out = 0;
        (*ctx).epc_out = 0;
        match synthetic {
            Some((excvaddr, cause)) => {
                (*ctx).excvaddr = excvaddr;
                (*ctx).exccause = cause;
                rota_lstest_synthetic();
            }
            None => rota_lstest_direct(),
        }
        ((*ctx).output, (*ctx).sar_out, (*ctx).epc_out)
    }
}

/// The base address of the data in `region` (0 IRAM, 1 flash).
fn data_addr(region: usize) -> u32 {
    [&IRAM_DATA, &FLASH_DATA][region].0.as_ptr() as u32
}

/// The inputs of a run of `site` that loads `DATA[k]` from `region`: (registers, address).
fn case(site: &Site, region: usize, k: usize) -> ([u32; 16], u32) {
    let addr = data_addr(region) + k as u32;
    let mut regs = inputs();
    regs[usize::from(site.s)] = addr.wrapping_sub(site.offset);
    (regs, addr)
}

fn print(c: &mut console::Console, parts: &[(&[u8], Option<u32>)]) {
    for (text, hex) in parts {
        c.print(text);
        if let Some(v) = hex {
            write_hex(c, *v);
        }
    }
}

/// Every site, against the data in both regions at every lane its form allows.
fn check_all(c: &mut console::Console) -> bool {
    let mut cases = 0u32;
    let mut failures = 0u32;
    let mut alignments = [false; 4];
    for site in sites() {
        alignments[(site.addr & 3) as usize] = true;
        let lanes: &[usize] = if site.op == 0 {
            &[0, 1, 2, 3, 4, 5, 6, 7]
        } else {
            &[0, 2, 4, 6]
        };
        for region in 0..2 {
            for &k in lanes {
                let (regs, addr) = case(site, region, k);
                let mut want = regs;
                want[usize::from(site.t)] = expected(site.op, k);
                for synthetic in [None, Some((addr, 3))] {
                    cases += 1;
                    let (got, sar, epc) = run(site.addr, regs, synthetic);
                    let want_epc = site.addr + if synthetic.is_some() { 3 } else { 0 };
                    if got != want || sar != 21 || epc != want_epc {
                        failures += 1;
                        if failures <= 8 {
                            // The first register that differs (the target if none does).
                            let r = (0..16)
                                .find(|&r| got[r] != want[r])
                                .unwrap_or(site.t.into());
                            c.print(b"loadstore: FAIL a");
                            write_dec(c, r as u32);
                            print(
                                c,
                                &[
                                    (b" site=", Some(site.addr)),
                                    (b" addr=", Some(addr)),
                                    (
                                        if synthetic.is_some() {
                                            b" synthetic"
                                        } else {
                                            b" direct   "
                                        },
                                        None,
                                    ),
                                    (b" got=", Some(got[r])),
                                    (b" want=", Some(want[r])),
                                    (b" sar=", Some(sar)),
                                    (b" epc1=", Some(epc)),
                                    (b"\n", None),
                                ],
                            );
                        }
                    }
                }
            }
        }
    }
    let flash = data_addr(1);
    c.print(if failures == 0 && alignments == [true; 4] {
        b"loadstore: pass cases="
    } else {
        b"loadstore: FAIL cases="
    });
    write_dec(c, cases);
    c.print(b" failures=");
    write_dec(c, failures);
    c.print(b" sites=");
    write_dec(c, sites().len() as u32);
    print(
        c,
        &[
            (b" iram_data=", Some(data_addr(0))),
            (b" flash_data=", Some(flash)),
            (b"\n", None),
        ],
    );
    failures == 0 && alignments == [true; 4]
}

/// CCOUNT ticks for `N` synthetic runs of the first site (an `l8ui` in IRAM loading from flash)
/// and `N` direct ones; the difference per run is what the handler adds.
fn timing(c: &mut console::Console) {
    const N: u32 = 1000;
    let site = &sites()[0];
    let (regs, addr) = case(site, 1, 3);
    let t0 = rt::ccount();
    for _ in 0..N {
        run(site.addr, regs, Some((addr, 3)));
    }
    let t1 = rt::ccount();
    for _ in 0..N {
        run(site.addr, regs, None);
    }
    let t2 = rt::ccount();
    let (synthetic, direct) = (t1.wrapping_sub(t0), t2.wrapping_sub(t1));
    c.print(b"loadstore: timing n=");
    write_dec(c, N);
    c.print(b" synthetic_ticks=");
    write_dec(c, synthetic);
    c.print(b" direct_ticks=");
    write_dec(c, direct);
    c.print(b" per_load=");
    write_dec(c, synthetic.saturating_sub(direct) / N);
    c.print(b"\n");
}

/// One exception the handler must pass to the fatal path: `refuse=store` (an `s8i`),
/// `refuse=dram` (an `l8ui` from DRAM), `cause=<n>` (a valid `l8ui` with another cause).
fn refuse(c: &mut console::Console, word: &[u8]) -> ! {
    let site = &sites()[0];
    let (mut regs, mut addr) = case(site, 0, 1);
    let mut epc = site.addr;
    let mut cause = 3;
    match word {
        b"refuse=store" => {
            epc = core::ptr::addr_of!(rota_lstest_store_site) as u32;
            regs[3] = addr;
        }
        b"refuse=dram" => {
            addr = STACK.0.get() as u32;
            regs[usize::from(site.s)] = addr.wrapping_sub(site.offset);
        }
        _ => match word.strip_prefix(b"cause=").and_then(parse) {
            Some(n) => cause = n,
            None => {
                c.print(b"loadstore: unknown argument\n");
                exit(2)
            }
        },
    }
    print(
        c,
        &[
            (b"loadstore: expecting fatal EPC1=", Some(epc)),
            (b" EXCVADDR=", Some(addr)),
            (b"\n", None),
        ],
    );
    run(epc, regs, Some((addr, cause)));
    c.print(b"loadstore: FAIL the exception came back\n");
    exit(1)
}

fn parse(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u32::from(d - b'0')))
            .flatten()
    })
}

fn main() -> ! {
    xtfpga::uart::init();
    let c = &mut console::Console;
    let mut line = [0u8; 128];
    let cmdline = semihosting::cmdline(&mut line).unwrap_or(&[]);
    if let Some(word) = cmdline.split(|&b| b == b' ').find(|w| w.contains(&b'=')) {
        refuse(c, word)
    }
    let ok = check_all(c);
    timing(c);
    exit(if ok { 0 } else { 1 })
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    console::Console.print(b"loadstore: panic\n");
    exit(101)
}
