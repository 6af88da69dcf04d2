//! The ESP8266's LoadStoreError handler and the `.rodata` in flash it allows (needs `make firmware
//! images`).
//!
//! QEMU's lx106 never raises LoadStoreError (byte loads from IRAM and the flash window just work),
//! so `build/esp8266/lx106-loadstore-xtfpga.elf` (the board's example `lx106_loadstore`) raises
//! synthetic ones: a0..a15, SAR, EPC1 at a real `l8ui`/`l16ui`/`l16si` in IRAM or flash, EXCVADDR,
//! EXCCAUSE 3 and PS.EXCM as the chip would set them, then a jump to the user vector; every load
//! site also runs directly, QEMU's own load being the reference. Then the resident core's static
//! RAM, with `.rodata` in flash: at most 1 KB on every esp8266 build.
use rota_emu::system::{release, storage_image, SECRET};
use rota_emu::xtfpga::XtfpgaRun;
use rota_emu::{artifact, boot, Machine, Run};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);
/// The chip's instruction RAM and the flash the cache maps (rota-lx106-loadstore's regions).
const IRAM: std::ops::Range<u64> = 0x4010_0000..0x4010_8000;
const FLASH: std::ops::Range<u64> = 0x4020_0000..0x4030_0000;

/// QEMU's `-icount shift=` for the handler's test firmware: 32 ns of virtual time per instruction.
const ICOUNT_SHIFT: u32 = 5;
/// CCOUNT ticks per instruction then: 2^5 ns at the board's 40 MHz.
const TICKS_PER_INSN: f64 = 32.0 * 0.04;

/// Runs the handler's test firmware with `args` on its command line, CCOUNT counting instructions.
fn loadstore(args: &[&str]) -> Run {
    let mut qemu = XtfpgaRun::new(artifact("esp8266/lx106-loadstore-xtfpga.elf"));
    qemu.no_nic = true;
    qemu.args = args.iter().map(|a| a.to_string()).collect();
    qemu.icount = Some(ICOUNT_SHIFT);
    qemu.run(LIMIT)
}

/// The value of `key=<n>` (decimal, or hex with 0x) in `line`.
fn field(line: &str, key: &str) -> u64 {
    let word = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"));
    match word.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => word.parse(),
    }
    .unwrap_or_else(|_| panic!("{key}={word} is not a number"))
}

/// The console's line that starts with `prefix`.
fn line<'a>(run: &'a Run, prefix: &str) -> &'a str {
    run.console
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{}", run.console))
}

#[test]
fn synthetic_load_store_errors_are_emulated_like_the_loads_themselves() {
    let run = loadstore(&[]);
    assert_eq!(run.status, Some(0), "{}", run.console);
    let pass = line(&run, "loadstore: pass ");
    assert_eq!(field(pass, "failures"), 0, "{pass}");
    // 37 sites: every target register, l8ui/l16ui/l16si, offsets up to 255/510, IRAM and flash;
    // each against both copies of the data at every lane, directly and through the handler.
    assert_eq!(field(pass, "sites"), 37, "{pass}");
    assert_eq!(field(pass, "cases"), 928, "{pass}");
    assert!(IRAM.contains(&field(pass, "iram_data")), "{pass}");
    // The other copy is `.rodata`: in flash now.
    assert!(FLASH.contains(&field(pass, "flash_data")), "{pass}");
    // What an emulated load adds to a direct one, in instructions: CCOUNT follows QEMU's virtual
    // clock, which -icount advances per instruction (so this is not the chip's cycles: no exception
    // latency, no flash cache). The handler's own path is about 110 to 120 instructions
    // (docs/boards-esp8266.md); the synthetic set-up adds a few.
    let timing = line(&run, "loadstore: timing ");
    let extra = field(timing, "synthetic_ticks") as f64 - field(timing, "direct_ticks") as f64;
    let per_load = extra / field(timing, "n") as f64 / TICKS_PER_INSN;
    eprintln!("{timing}: {per_load:.1} instructions per emulated load");
    assert!((100.0..150.0).contains(&per_load), "{timing}: {per_load}");
}

/// The fatal line's fields: (kind, EXCCAUSE, EPC1, EXCVADDR), checked against what the firmware
/// said it expected.
fn fatal(run: &Run) -> (String, u64, u64, u64) {
    assert_eq!(run.status, Some(3), "{}", run.console);
    let expect = line(run, "loadstore: expecting fatal ");
    let f = line(run, "rota: fatal ");
    assert!(!run.console.contains("loadstore: FAIL"), "{}", run.console);
    let kind = f.split_whitespace().nth(2).expect("kind").to_string();
    let (epc, addr) = (field(f, "EPC1"), field(f, "EXCVADDR"));
    assert_eq!(epc, field(expect, "EPC1"), "{}", run.console);
    assert_eq!(addr, field(expect, "EXCVADDR"), "{}", run.console);
    (kind, field(f, "EXCCAUSE"), epc, addr)
}

#[test]
fn load_store_errors_the_handler_refuses_are_fatal() {
    // A store (s8i), which cannot be emulated with a load.
    let (kind, cause, epc, addr) = fatal(&loadstore(&["refuse=store"]));
    assert_eq!((kind.as_str(), cause), ("user", 3));
    assert!(IRAM.contains(&epc) && IRAM.contains(&addr));
    // An l8ui from DRAM: a LoadStoreError there is a real fault.
    let (kind, cause, _, addr) = fatal(&loadstore(&["refuse=dram"]));
    assert_eq!((kind.as_str(), cause), ("user", 3));
    assert!((0x3ffe_8000..0x4000_0000).contains(&addr), "{addr:#x}");
}

#[test]
fn other_exception_causes_are_fatal_even_at_an_emulated_load() {
    // Illegal instruction, instruction fetch error, load/store alignment, load prohibited.
    for n in [0u64, 2, 9, 28] {
        let (kind, cause, epc, _) = fatal(&loadstore(&[&format!("cause={n}")]));
        assert_eq!((kind.as_str(), cause), ("user", n));
        assert!(IRAM.contains(&epc));
    }
}

/// Bytes of the ELF's sections in DRAM (`_ram_start.._ram_end`, heap and stack left out): what
/// `make size` reports as static RAM.
fn static_ram(elf: &std::path::Path) -> (u64, u64) {
    use object::{Object, ObjectSection, ObjectSymbol};
    let data = std::fs::read(elf).expect("read firmware");
    let file = object::File::parse(&*data).expect("parse firmware");
    let sym = |name: &str| {
        file.symbols()
            .find(|s| s.name() == Ok(name))
            .unwrap_or_else(|| panic!("{name} not in {}", elf.display()))
            .address()
    };
    let (ram, heap) = (sym("_ram_start")..sym("_ram_end"), sym("_heap_start"));
    let in_ram = file
        .sections()
        .filter(|s| ram.contains(&s.address()) && s.address() < heap)
        .map(|s| s.size())
        .sum();
    let rodata = file.section_by_name(".rodata").expect(".rodata").address();
    (in_ram, rodata)
}

#[test]
fn every_esp8266_build_keeps_at_most_1_kb_of_static_ram_with_rodata_in_flash() {
    for elf in ["rota-sim.elf", "rota-xtfpga.elf", "rota-chip.elf"] {
        let (bytes, rodata) = static_ram(&artifact(&format!("esp8266/{elf}")));
        assert!(bytes <= 1024, "{elf}: {bytes} B of static RAM");
        assert!(FLASH.contains(&rodata), "{elf}: .rodata at {rodata:#x}");
    }
    // What the core itself reports at boot (`ram statics=`) on both QEMU machines.
    for m in [Machine::Esp8266Xtfpga, Machine::Esp8266Sim] {
        let run = boot(m, &storage_image(m, &release(m, 1), SECRET), LIMIT);
        assert_eq!(run.status, Some(0), "{m:?}: {}", run.console);
        let ram = run
            .ram()
            .unwrap_or_else(|| panic!("{m:?}: {}", run.console));
        assert!(ram.statics <= 1024, "{m:?}: ram statics={}", ram.statics);
        let (bytes, _) = static_ram(&m.firmware());
        // The core counts up to the heap's 8-byte aligned start.
        assert!(
            ram.statics >= bytes && ram.statics < bytes + 8,
            "{m:?}: ram statics={} but {bytes} B in DRAM",
            ram.statics
        );
        assert!(run.console.contains("app: version 1 running"), "{m:?}");
    }
}
