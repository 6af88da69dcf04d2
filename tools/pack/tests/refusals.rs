//! The packer's refusals, on fixture ELF files built here from text (see `support`): each test builds an
//! overlay that breaks one rule, checks the fixture really has the defect, and asserts the exact
//! `PackError` and that its message names the culprit. Good fixtures of both ISAs show that the same
//! build path yields packable overlays whose relocations are the ones the ELF file lists.

mod support;

use object::read::elf::ElfFile32;
use object::{elf, Endianness, Object, ObjectSection, ObjectSymbol, RelocationFlags, SectionKind};
use rota_blob::{Blob, Isa};
use rota_pack::{pack, PackError};
use std::process::Command;
use support::*;

const LIMIT: u64 = 8192;

// ---------------------------------------------------------------------------------------------------
// Xtensa fixtures (assembled with xtensa-lx106-elf-as, linked with xtensa-lx106-elf-gcc -Wl,-q ...).

/// A good overlay: literals before the code that loads them (l32r reaches backwards), a call through a
/// literal, and a constant table of absolute addresses. R_XTENSA_32: two literals, two table words.
const XT_GOOD: &str = r#"
    .section .rodata.table,"a"
    .align 4
table:
    .word helper
    .word rota_overlay_entry + 4

    .section .literal.rota_overlay_entry,"ax"
    .align 4
.Lhelper:
    .word helper
.Ltable:
    .word table

    .section .text.rota_overlay_entry,"ax"
    .align 4
    .global rota_overlay_entry
    .type rota_overlay_entry,@function
rota_overlay_entry:
    l32r a3, .Ltable
    l32r a0, .Lhelper
    callx0 a0
    ret

    .section .text.helper,"ax"
    .align 4
    .type helper,@function
helper:
    movi a2, 42
    ret
"#;

/// An entry that increments a writable static `counter`; the fixtures below differ only in where
/// `counter` lives.
macro_rules! xt_counter_entry {
    () => {
        r#"
    .section .literal.rota_overlay_entry,"ax"
    .align 4
.Lcounter:
    .word counter
    .section .text.rota_overlay_entry,"ax"
    .align 4
    .global rota_overlay_entry
    .type rota_overlay_entry,@function
rota_overlay_entry:
    l32r a3, .Lcounter
    l32i a2, a3, 0
    addi a2, a2, 1
    s32i a2, a3, 0
    ret
"#
    };
}

/// A writable static: the counter in `.data`.
const XT_DATA: &str = concat!(
    xt_counter_entry!(),
    r#"    .section .data.counter,"aw"
    .align 4
counter:
    .word 7
"#
);

/// The same counter, zero-initialised in `.bss`.
const XT_BSS: &str = concat!(
    xt_counter_entry!(),
    r#"    .section .bss.counter,"aw",@nobits
    .align 4
counter:
    .space 4
"#
);

/// A literal word with an `R_XTENSA_32_PCREL` relocation (a type the loader does not apply); `ld -q`
/// keeps it in `.rela.text`.
const XT_PCREL: &str = r#"
    .section .literal.rota_overlay_entry,"ax"
    .align 4
.Lrel:
    .reloc ., R_XTENSA_32_PCREL, helper
    .word 0
    .section .text.rota_overlay_entry,"ax"
    .align 4
    .global rota_overlay_entry
    .type rota_overlay_entry,@function
rota_overlay_entry:
    l32r a2, .Lrel
    ret
    .section .text.helper,"ax"
    .align 4
helper:
    ret
"#;

/// A literal holding the address of `ext_abs`, an absolute symbol (`--defsym`): R_XTENSA_32 against
/// `SHN_ABS`, which must not be moved with the image.
const XT_ABS: &str = r#"
    .section .literal.rota_overlay_entry,"ax"
    .align 4
.Lext:
    .word ext_abs
    .section .text.rota_overlay_entry,"ax"
    .align 4
    .global rota_overlay_entry
    .type rota_overlay_entry,@function
rota_overlay_entry:
    l32r a2, .Lext
    ret
"#;

/// A literal holding the address of `missing`, an undefined weak symbol (ld resolves it to 0).
const XT_UNDEF_WEAK: &str = r#"
    .weak missing
    .section .literal.rota_overlay_entry,"ax"
    .align 4
.Lmissing:
    .word missing
    .section .text.rota_overlay_entry,"ax"
    .align 4
    .global rota_overlay_entry
    .type rota_overlay_entry,@function
rota_overlay_entry:
    l32r a2, .Lmissing
    ret
"#;

/// A PC-relative `call0` to `low_abs`, an absolute symbol (`--defsym=low_abs=0x100`): the
/// R_XTENSA_SLOT0_OP operand is correct only while the image sits at 0.
const XT_CALL_ABS: &str = r#"
    .section .text.rota_overlay_entry,"ax"
    .align 4
    .global rota_overlay_entry
    .type rota_overlay_entry,@function
rota_overlay_entry:
    call0 low_abs
    ret
"#;

/// Code, but the entry symbol is missing (kept with `-u overlay_main`).
const XT_NO_ENTRY: &str = r#"
    .section .text.overlay_main,"ax"
    .align 4
    .global overlay_main
overlay_main:
    movi a2, 42
    ret
"#;

/// The good overlay plus an 8 KB constant table (referenced, so --gc-sections keeps it).
const XT_BIG: &str = r#"
    .section .rodata.big,"a"
    .align 4
big:
    .space 8192, 0x5a
    .section .literal.rota_overlay_entry,"ax"
    .align 4
.Lbig:
    .word big
    .section .text.rota_overlay_entry,"ax"
    .align 4
    .global rota_overlay_entry
    .type rota_overlay_entry,@function
rota_overlay_entry:
    l32r a2, .Lbig
    ret
"#;

// ---------------------------------------------------------------------------------------------------
// Independent views of a fixture (object crate's reader, not the packer's code).

fn parse(bytes: &[u8]) -> ElfFile32<'_, Endianness> {
    ElfFile32::parse(bytes).expect("fixture is a 32-bit ELF")
}

fn section_size(bytes: &[u8], name: &str) -> Option<u64> {
    parse(bytes).section_by_name(name).map(|s| s.size())
}

fn is_alloc(section: &object::read::elf::ElfSection32<'_, '_, Endianness>) -> bool {
    matches!(section.flags(), object::SectionFlags::Elf { sh_flags } if sh_flags & u64::from(elf::SHF_ALLOC) != 0)
}

/// Offsets of the words the loader must patch, as `readelf -r` lists them: on Xtensa the
/// `R_XTENSA_32` relocations (kept by `ld -q`) of allocated sections, on ARM the `R_ARM_RELATIVE`
/// dynamic relocations.
fn expected_relocs(bytes: &[u8]) -> Vec<u32> {
    let file = parse(bytes);
    let mut offsets: Vec<u32> = match file.elf_header().e_machine.get(file.endian()) {
        elf::EM_XTENSA => file
            .sections()
            .filter(is_alloc)
            .flat_map(|s| s.relocations().collect::<Vec<_>>())
            .filter(|(_, r)| {
                r.flags()
                    == RelocationFlags::Elf {
                        r_type: elf::R_XTENSA_32,
                    }
            })
            .map(|(offset, _)| offset as u32)
            .collect(),
        elf::EM_ARM => file
            .dynamic_relocations()
            .expect("a PIE has dynamic relocations")
            .filter(|(_, r)| {
                r.flags()
                    == RelocationFlags::Elf {
                        r_type: elf::R_ARM_RELATIVE,
                    }
            })
            .map(|(offset, _)| offset as u32)
            .collect(),
        m => panic!("unexpected machine {m}"),
    };
    offsets.sort_unstable();
    offsets
}

/// Offset of the only relocation of type `r_type` in the fixture (static or dynamic).
fn reloc_offset(bytes: &[u8], r_type: u32) -> u64 {
    let file = parse(bytes);
    let mut found: Vec<u64> = file
        .sections()
        .flat_map(|s| s.relocations().collect::<Vec<_>>())
        .chain(file.dynamic_relocations().into_iter().flatten())
        .filter(|(_, r)| r.flags() == RelocationFlags::Elf { r_type })
        .map(|(offset, _)| offset)
        .collect();
    found.dedup();
    assert_eq!(
        found.len(),
        1,
        "fixture should have one relocation of type {r_type}: {found:?}"
    );
    found[0]
}

fn entry_address(bytes: &[u8]) -> u64 {
    parse(bytes)
        .symbols()
        .find(|s| s.name() == Ok(ENTRY) && s.is_definition())
        .expect("fixture defines the entry")
        .address()
}

/// End of the image as the linker script defines it (`_overlay_image_end` / `_image_end`).
fn image_end(bytes: &[u8]) -> u64 {
    let file = parse(bytes);
    file.symbols()
        .find(|s| matches!(s.name(), Ok("_overlay_image_end" | "_image_end")))
        .expect("the overlay scripts define the image end")
        .address()
}

fn assert_message(err: &PackError, parts: &[&str]) {
    let msg = err.to_string();
    for part in parts {
        assert!(msg.contains(part), "message {msg:?} should name {part:?}");
    }
}

// ---------------------------------------------------------------------------------------------------
// 1. Writable sections.

#[test]
fn xtensa_link_script_refuses_writable_statics() {
    // The first line of defence: the real script's ASSERTs stop the link itself.
    for (name, asm, section) in [
        ("xt_data_real", XT_DATA, ".data"),
        ("xt_bss_real", XT_BSS, ".bss"),
    ] {
        let err = try_xtensa_elf(name, asm, &xtensa_script(), &[])
            .err()
            .unwrap_or_else(|| panic!("{name}: overlay-xtensa.x linked an overlay with {section}"));
        assert!(
            err.contains(&format!("must not have writable statics ({section})")),
            "{name}: unexpected linker diagnostics:\n{err}"
        );
    }
}

#[test]
fn xtensa_data_is_refused() {
    // The real script without its .data/.bss ASSERTs, so that the packer sees the section.
    let script = xtensa_script_keeping_writable("xt_data");
    let f = xtensa_elf("xt_data", XT_DATA, &script, &[]);
    assert_eq!(
        section_size(&f.bytes, ".data"),
        Some(4),
        "fixture has a 4-byte .data"
    );
    let err = pack(&f.bytes, LIMIT).unwrap_err();
    assert_eq!(
        err,
        PackError::Writable {
            name: ".data".into(),
            size: 4
        }
    );
    assert_message(&err, &["`.data`", "4 bytes"]);
}

#[test]
fn xtensa_bss_is_refused() {
    let script = xtensa_script_keeping_writable("xt_bss");
    let f = xtensa_elf("xt_bss", XT_BSS, &script, &[]);
    assert_eq!(
        section_size(&f.bytes, ".bss"),
        Some(4),
        "fixture has a 4-byte .bss"
    );
    let err = pack(&f.bytes, LIMIT).unwrap_err();
    assert_eq!(
        err,
        PackError::Writable {
            name: ".bss".into(),
            size: 4
        }
    );
    assert_message(&err, &["`.bss`"]);
}

#[test]
fn arm_data_is_refused() {
    let mut o = ArmObject::new();
    o.function(ENTRY, &[BX_LR]);
    o.words(
        ".data.counter",
        SectionKind::Data,
        "counter",
        &[Word::Value(7)],
    );
    let f = o.link("arm_data", &[]);
    assert_eq!(
        section_size(&f.bytes, ".data"),
        Some(4),
        "fixture has a 4-byte .data"
    );
    let err = pack(&f.bytes, LIMIT).unwrap_err();
    assert_eq!(
        err,
        PackError::Writable {
            name: ".data".into(),
            size: 4
        }
    );
    assert_message(&err, &["`.data`"]);
}

#[test]
fn arm_bss_is_refused() {
    let mut o = ArmObject::new();
    o.function(ENTRY, &[BX_LR]);
    o.zeroed(".bss.counter", "counter", 8);
    let f = o.link("arm_bss", &[]);
    assert_eq!(
        section_size(&f.bytes, ".bss"),
        Some(8),
        "fixture has an 8-byte .bss"
    );
    let err = pack(&f.bytes, LIMIT).unwrap_err();
    assert_eq!(
        err,
        PackError::Writable {
            name: ".bss".into(),
            size: 8
        }
    );
    assert_message(&err, &["`.bss`", "8 bytes"]);
}

// ---------------------------------------------------------------------------------------------------
// 2. Relocation types the loader does not apply.

#[test]
fn xtensa_pcrel_relocation_is_refused() {
    let f = xtensa_elf("xt_pcrel", XT_PCREL, &xtensa_script(), &[]);
    let offset = reloc_offset(&f.bytes, elf::R_XTENSA_32_PCREL);
    let err = pack(&f.bytes, LIMIT).unwrap_err();
    assert_eq!(
        err,
        PackError::Relocation {
            kind: "R_XTENSA_32_PCREL",
            code: elf::R_XTENSA_32_PCREL,
            offset,
            section: ".rela.text".into(),
            isa: "lx106",
        }
    );
    assert_message(&err, &["R_XTENSA_32_PCREL", "`.rela.text`", "lx106"]);
}

#[test]
fn arm_abs32_dynamic_relocation_is_refused() {
    // A pointer to an undefined weak symbol; `-z dynamic-undefined-weak` makes lld leave it to the
    // (absent) dynamic linker as R_ARM_ABS32 instead of resolving it to 0.
    let mut o = ArmObject::new();
    o.function(ENTRY, &[BX_LR]);
    let missing = o.undefined("missing", true);
    o.words(
        ".data.rel.ro.hook",
        SectionKind::ReadOnlyDataWithRel,
        "hook",
        &[Word::Abs32(missing)],
    );
    let f = o.link("arm_abs32", &["-z", "dynamic-undefined-weak"]);
    let offset = reloc_offset(&f.bytes, elf::R_ARM_ABS32);
    let err = pack(&f.bytes, LIMIT).unwrap_err();
    assert_eq!(
        err,
        PackError::Relocation {
            kind: "R_ARM_ABS32",
            code: elf::R_ARM_ABS32,
            offset,
            section: ".rel.dyn".into(),
            isa: "thumbv7m",
        }
    );
    assert_message(&err, &["R_ARM_ABS32", "`.rel.dyn`", "thumbv7m"]);
}

// ---------------------------------------------------------------------------------------------------
// 3. Missing entry.

#[test]
fn xtensa_without_entry_is_refused() {
    let f = xtensa_elf(
        "xt_no_entry",
        XT_NO_ENTRY,
        &xtensa_script(),
        &["-Wl,-u,overlay_main"],
    );
    assert!(
        section_size(&f.bytes, ".text").unwrap() > 0,
        "fixture keeps its code"
    );
    let err = pack(&f.bytes, LIMIT).unwrap_err();
    assert_eq!(err, PackError::NoEntry(ENTRY));
    assert_message(&err, &["`rota_overlay_entry`"]);
}

#[test]
fn arm_without_entry_is_refused() {
    let mut o = ArmObject::new();
    o.function("overlay_main", &[MOVS_R0_42, BX_LR]);
    let f = o.link("arm_no_entry", &[]);
    assert!(
        section_size(&f.bytes, ".text").unwrap() > 0,
        "fixture keeps its code"
    );
    let err = pack(&f.bytes, LIMIT).unwrap_err();
    assert_eq!(err, PackError::NoEntry(ENTRY));
    assert_message(&err, &["`rota_overlay_entry`"]);
}

// ---------------------------------------------------------------------------------------------------
// 4. Size limit.

#[test]
fn xtensa_image_over_the_limit_is_refused() {
    let f = xtensa_elf("xt_big", XT_BIG, &xtensa_script(), &[]);
    let size = image_end(&f.bytes);
    assert!(size > LIMIT, "fixture is {size} bytes, over {LIMIT}");
    let err = pack(&f.bytes, LIMIT).unwrap_err();
    assert_eq!(err, PackError::TooLarge { size, limit: LIMIT });
    assert_message(&err, &[&size.to_string(), &LIMIT.to_string()]);
    // The limit is inclusive.
    assert_eq!(
        pack(&f.bytes, size - 1).unwrap_err(),
        PackError::TooLarge {
            size,
            limit: size - 1
        }
    );
    assert_eq!(pack(&f.bytes, size).unwrap().image.len() as u64, size);
}

#[test]
fn arm_image_over_the_limit_is_refused() {
    let f = arm_good().link("arm_big", &[]);
    let size = image_end(&f.bytes);
    let err = pack(&f.bytes, size - 4).unwrap_err();
    assert_eq!(
        err,
        PackError::TooLarge {
            size,
            limit: size - 4
        }
    );
    assert!(pack(&f.bytes, size).is_ok());
}

// ---------------------------------------------------------------------------------------------------
// 5. Relocations whose target does not move with the image.

#[test]
fn xtensa_absolute_symbol_is_refused() {
    let f = xtensa_elf(
        "xt_abs",
        XT_ABS,
        &xtensa_script(),
        &["-Wl,--defsym=ext_abs=0x60000000"],
    );
    let offset = reloc_offset(&f.bytes, elf::R_XTENSA_32);
    let err = pack(&f.bytes, LIMIT).unwrap_err();
    assert_eq!(
        err,
        PackError::Symbol {
            offset,
            symbol: "ext_abs".into()
        }
    );
    assert_message(&err, &["`ext_abs`"]);
}

#[test]
fn xtensa_undefined_weak_symbol_is_refused() {
    let f = xtensa_elf("xt_undef", XT_UNDEF_WEAK, &xtensa_script(), &[]);
    let offset = reloc_offset(&f.bytes, elf::R_XTENSA_32);
    let err = pack(&f.bytes, LIMIT).unwrap_err();
    assert_eq!(
        err,
        PackError::Symbol {
            offset,
            symbol: "missing".into()
        }
    );
    assert_message(&err, &["`missing`"]);
}

#[test]
fn xtensa_pc_relative_call_to_absolute_symbol_is_refused() {
    let f = xtensa_elf(
        "xt_call_abs",
        XT_CALL_ABS,
        &xtensa_script(),
        &["-Wl,--defsym=low_abs=0x100"],
    );
    let offset = reloc_offset(&f.bytes, elf::R_XTENSA_SLOT0_OP);
    let err = pack(&f.bytes, LIMIT).unwrap_err();
    assert_eq!(
        err,
        PackError::Symbol {
            offset,
            symbol: "low_abs".into()
        }
    );
    assert_message(&err, &["`low_abs`"]);
}

// ---------------------------------------------------------------------------------------------------
// 6. Inputs that are not overlay ELF files at all.

#[test]
fn garbage_is_not_elf() {
    for input in [
        &b""[..],
        b"hello, world",
        b"\x7fELF",
        &[0u8; 64],
        &[0xffu8; 4096],
    ] {
        assert!(
            matches!(pack(input, LIMIT), Err(PackError::NotElf(_))),
            "{input:?}"
        );
    }
}

#[test]
fn truncated_elf_is_refused_without_panic() {
    let xt = xtensa_elf("xt_truncated", XT_GOOD, &xtensa_script(), &[]);
    let arm = arm_good().link("arm_truncated", &[]);
    for f in [&xt, &arm] {
        assert!(pack(&f.bytes, LIMIT).is_ok());
        // Every prefix of the first 4 KB, then a spread of longer ones (section headers come last).
        let lens = (0..4096.min(f.bytes.len())).chain((4096..f.bytes.len()).step_by(97));
        for len in lens {
            match pack(&f.bytes[..len], LIMIT) {
                Err(PackError::NotElf(_)) => {}
                other => panic!("{}: prefix of {len} bytes gave {other:?}", f.path.display()),
            }
        }
    }
}

#[test]
fn corrupted_elf_does_not_panic() {
    // Overwrite every byte in turn (ELF and program headers, code, relocations, symbols, section
    // headers; not the alignment padding before the first section); any result but a panic is fine.
    let xt = xtensa_elf("xt_corrupted", XT_GOOD, &xtensa_script(), &[]);
    let arm = arm_good().link("arm_corrupted", &[]);
    for f in [&xt, &arm] {
        let file = parse(&f.bytes);
        let text = file
            .section_by_name(".text")
            .unwrap()
            .file_range()
            .unwrap()
            .0 as usize;
        for i in (0..f.bytes.len()).filter(|&i| i < 512 || i >= text) {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bytes = f.bytes.clone();
                bytes[i] = value;
                let _ = pack(&bytes, LIMIT);
            }
        }
    }
}

#[test]
fn x86_64_elf_is_refused() {
    // The test binary itself: a 64-bit ELF, refused before anything else is looked at.
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert_eq!(&exe[..4], b"\x7fELF");
    let err = pack(&exe, LIMIT).unwrap_err();
    assert!(matches!(err, PackError::NotElf(_)), "{err:?}");
    assert_message(&err, &["32-bit little-endian ELF"]);
}

#[test]
fn i386_elf_is_refused_by_machine() {
    // A linked 32-bit little-endian ELF of another machine: `ret` as the entry.
    let mut obj = object::write::Object::new(
        object::BinaryFormat::Elf,
        object::Architecture::I386,
        Endianness::Little,
    );
    let text = obj.section_id(object::write::StandardSection::Text);
    let offset = obj.append_section_data(text, &[0xc3], 1);
    obj.add_symbol(object::write::Symbol {
        name: ENTRY.into(),
        value: offset,
        size: 1,
        kind: object::SymbolKind::Text,
        scope: object::SymbolScope::Linkage,
        weak: false,
        section: object::write::SymbolSection::Section(text),
        flags: object::SymbolFlags::None,
    });
    let dir = scratch("i386");
    let (o, e) = (dir.join("i386.o"), dir.join("i386.elf"));
    std::fs::write(&o, obj.write().unwrap()).unwrap();
    let out = run(Command::new(rust_lld())
        .args(["-flavor", "gnu", "-m", "elf_i386", "-e", ENTRY])
        .arg(&o)
        .arg("-o")
        .arg(&e));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = pack(&std::fs::read(&e).unwrap(), LIMIT).unwrap_err();
    assert_eq!(err, PackError::Machine(elf::EM_386));
    assert_message(&err, &["machine 3"]);
}

#[test]
fn big_endian_elf_is_refused() {
    // A linked big-endian (BE8) ARM overlay that is otherwise fine: its words are not the loader's.
    let mut o = ArmObject::with_endian(Endianness::Big);
    o.function(ENTRY, &[BX_LR]);
    let f = o.link("arm_big_endian", &["--be8"]);
    assert!(!parse(&f.bytes).is_little_endian());
    let err = pack(&f.bytes, LIMIT).unwrap_err();
    assert_eq!(err, PackError::NotElf("big-endian".into()));
    assert_message(&err, &["little-endian", "big-endian"]);
}

#[test]
fn relocatable_objects_are_refused() {
    // Unlinked objects: sections all at 0, relocation offsets relative to their section.
    let xt = xtensa_object("xt_unlinked", XT_GOOD);
    let mut arm = arm_good();
    arm.function("other", &[BX_LR]);
    for bytes in [xt.bytes, arm.bytes()] {
        assert_eq!(
            parse(&bytes).elf_header().e_type.get(Endianness::Little),
            elf::ET_REL
        );
        let err = pack(&bytes, LIMIT).unwrap_err();
        assert_eq!(err, PackError::NotLinked(elf::ET_REL));
        assert_message(&err, &["ET_REL", "link"]);
    }
}

// ---------------------------------------------------------------------------------------------------
// 7. The command-line tool.

fn rota_pack(args: &[&std::ffi::OsStr]) -> std::process::Output {
    run(Command::new(env!("CARGO_BIN_EXE_rota-pack")).args(args))
}

#[test]
fn cli_refuses_without_writing_output() {
    let script = xtensa_script_keeping_writable("cli_data");
    let data = xtensa_elf("cli_data", XT_DATA, &script, &[]);
    let mut arm = ArmObject::new();
    arm.function(ENTRY, &[BX_LR]);
    let missing = arm.undefined("missing", true);
    arm.words(
        ".data.rel.ro.hook",
        SectionKind::ReadOnlyDataWithRel,
        "hook",
        &[Word::Abs32(missing)],
    );
    let abs32 = arm.link("cli_abs32", &["-z", "dynamic-undefined-weak"]);
    for (f, names) in [(&data, &["`.data`"][..]), (&abs32, &["R_ARM_ABS32"])] {
        let blob = f.path.with_extension("blob");
        let out = rota_pack(&[f.path.as_os_str(), "-o".as_ref(), blob.as_os_str()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "rota-pack accepted {}",
            f.path.display()
        );
        for name in names {
            assert!(
                stderr.contains(name),
                "stderr {stderr:?} should name {name}"
            );
        }
        assert!(
            stderr.contains(&*f.path.to_string_lossy()),
            "stderr names the file: {stderr:?}"
        );
        assert!(!blob.exists(), "{} was written", blob.display());
    }
}

#[test]
fn cli_packs_a_good_overlay() {
    let f = xtensa_elf("cli_good", XT_GOOD, &xtensa_script(), &[]);
    let blob = f.path.with_extension("blob");
    let out = rota_pack(&[
        f.path.as_os_str(),
        "-o".as_ref(),
        blob.as_os_str(),
        "--name".as_ref(),
        "good".as_ref(),
        "--report".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("good (lx106)") && report.contains(".text"),
        "{report}"
    );
    let bytes = std::fs::read(&blob).unwrap();
    let parsed = Blob::parse(&bytes).unwrap();
    assert_eq!(parsed.header.name.as_str(), "good");
    assert_eq!(
        parsed.relocs().collect::<Vec<_>>(),
        expected_relocs(&f.bytes)
    );
}

// ---------------------------------------------------------------------------------------------------
// 8. Good overlays.

fn arm_good() -> ArmObject {
    let mut o = ArmObject::new();
    let entry = o.function(ENTRY, &[BX_LR]);
    let helper = o.function("helper", &[MOVS_R0_42, BX_LR]);
    let greeting = o.words(
        ".rodata.greeting",
        SectionKind::ReadOnlyData,
        "greeting",
        &[Word::Value(u32::from_le_bytes(*b"hi!\0"))],
    );
    o.words(
        ".data.rel.ro.table",
        SectionKind::ReadOnlyDataWithRel,
        "table",
        &[
            Word::Abs32(helper),
            Word::Abs32(greeting),
            Word::Abs32(entry),
        ],
    );
    o
}

/// Packs a good fixture and checks the blob against an independent reading of the ELF file.
fn check_good(bytes: &[u8], isa: Isa, relocs: usize) {
    let expected = expected_relocs(bytes);
    assert_eq!(expected.len(), relocs, "fixture relocations: {expected:x?}");
    let packed = pack(bytes, LIMIT).unwrap();
    assert_eq!(packed.isa, isa);
    assert_eq!(packed.relocs, expected);
    assert_eq!(u64::from(packed.entry), entry_address(bytes) & !1);
    assert_eq!(packed.image.len() as u64, image_end(bytes));

    let blob = packed.blob("good").unwrap();
    let parsed = Blob::parse(&blob).unwrap();
    assert_eq!(parsed.header.isa, isa);
    assert_eq!(parsed.header.entry_offset, packed.entry);
    assert_eq!(parsed.relocs().collect::<Vec<_>>(), expected);
    // The image is the allocated sections' bytes at their link addresses.
    let image = parsed.image();
    for s in parse(bytes).sections().filter(is_alloc) {
        let (addr, data) = (s.address() as usize, s.data().unwrap());
        if addr + data.len() <= image.len() && !data.is_empty() {
            assert_eq!(
                &image[addr..addr + data.len()],
                data,
                "{}",
                s.name().unwrap()
            );
        }
    }
}

#[test]
fn xtensa_good_overlay_packs() {
    let f = xtensa_elf("xt_good", XT_GOOD, &xtensa_script(), &[]);
    check_good(&f.bytes, Isa::Lx106, 4);
}

#[test]
fn arm_good_overlay_packs() {
    let f = arm_good().link("arm_good", &[]);
    check_good(&f.bytes, Isa::Thumbv7m, 3);
}

#[test]
fn fixture_flags_match_the_overlay_build_script() {
    // The fixtures are linked like real overlays only as long as overlays/build.rs uses these flags.
    let build = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../overlays/build.rs"
    ))
    .unwrap();
    for flag in XTENSA_FLAGS.iter().chain(ARM_FLAGS) {
        assert!(
            build.contains(&format!("\"{flag}\"")),
            "overlays/build.rs no longer passes {flag}"
        );
    }
    for script in ["overlay-thumbv7m.x", "overlay-xtensa.x"] {
        assert!(
            build.contains(script),
            "overlays/build.rs no longer links with {script}"
        );
    }
}
