//! Fixture ELF files for the packer tests, built at test time from text: Xtensa assembly assembled and
//! linked with the Debian `xtensa-lx106-elf` toolchain, and ARM relocatable objects written with the
//! `object` crate and linked with the toolchain's `rust-lld`, both with the flags of `overlays/build.rs`
//! and the real linker scripts of `linker/`.
//!
//! A missing tool makes the test fail with a message naming the tool and `make setup`.
#![allow(dead_code)] // Each test binary uses a different part of the helpers.

use object::elf;
use object::write::{self, Object, Relocation, StandardSegment, Symbol, SymbolId, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, FileFlags, RelocationFlags, SectionKind, SymbolFlags,
    SymbolKind, SymbolScope,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The entry symbol every overlay exports.
pub const ENTRY: &str = rota_abi::ENTRY_SYMBOL;

/// The repository's `linker/` directory.
pub fn linker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../linker")
}

/// The real Xtensa overlay link script.
pub fn xtensa_script() -> PathBuf {
    linker_dir().join("overlay-xtensa.x")
}

/// The real ARMv7-M overlay link script.
pub fn arm_script() -> PathBuf {
    linker_dir().join("overlay-thumbv7m.x")
}

/// Link flags of Xtensa overlays (`overlays/build.rs`), before `-Wl,-T<script>`.
pub const XTENSA_FLAGS: &[&str] = &["-nostartfiles", "-nostdlib", "-Wl,-q", "-Wl,--gc-sections"];
/// Link flags of ARM overlays (`overlays/build.rs`), before `-T<script>`.
pub const ARM_FLAGS: &[&str] = &["-pie", "-znorelro", "--no-dynamic-linker"];

/// A fresh directory for one fixture (kept after the test, for inspection).
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("rota-pack-fixtures")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A tool that must be on PATH; panics naming it and `make setup` otherwise.
pub fn tool(name: &str, package: &str) -> PathBuf {
    on_path(name).unwrap_or_else(|| {
        panic!(
            "required tool `{name}` is not on PATH (Debian package `{package}`): run `make setup`"
        )
    })
}

/// `rust-lld` of the pinned toolchain (`rustc --print target-libdir`/../bin/rust-lld).
pub fn rust_lld() -> PathBuf {
    static LLD: OnceLock<PathBuf> = OnceLock::new();
    LLD.get_or_init(|| {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let out = Command::new(&rustc)
            .args(["--print", "target-libdir"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run `rustc --print target-libdir` to locate `rust-lld` ({e}): run `make setup`")
            });
        assert!(
            out.status.success(),
            "`rustc --print target-libdir` failed, cannot locate `rust-lld`: run `make setup`\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let libdir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let lld = libdir.parent().map(|p| p.join("bin/rust-lld"));
        match lld {
            Some(lld) if lld.is_file() => lld,
            _ => panic!(
                "required tool `rust-lld` not found next to {} (the Rust toolchain's host tools): run `make setup`",
                libdir.display()
            ),
        }
    })
    .clone()
}

/// Runs a command, returning its output (the caller decides what failure means).
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A fixture file on disk and its bytes.
pub struct Fixture {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// Assembles Xtensa source with `xtensa-lx106-elf-as`; panics if the assembler refuses it.
pub fn xtensa_object(name: &str, asm: &str) -> Fixture {
    let dir = scratch(name);
    let src = dir.join(format!("{name}.S"));
    std::fs::write(&src, asm).unwrap();
    let obj = dir.join(format!("{name}.o"));
    let out = run(
        Command::new(tool("xtensa-lx106-elf-as", "binutils-xtensa-lx106"))
            .arg(&src)
            .arg("-o")
            .arg(&obj),
    );
    assert!(
        out.status.success(),
        "xtensa-lx106-elf-as refused fixture {name}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Fixture {
        bytes: read(&obj),
        path: obj,
    }
}

/// Assembles and links an Xtensa fixture like a real overlay (`xtensa-lx106-elf-gcc` with the flags of
/// `overlays/build.rs`) with `script`, plus `extra` linker-driver arguments.
/// `Err` holds the linker's diagnostics if the link fails.
pub fn try_xtensa_elf(
    name: &str,
    asm: &str,
    script: &Path,
    extra: &[&str],
) -> Result<Fixture, String> {
    let obj = xtensa_object(name, asm);
    let elf = obj.path.with_extension("elf");
    let out = run(
        Command::new(tool("xtensa-lx106-elf-gcc", "gcc-xtensa-lx106"))
            .args(XTENSA_FLAGS)
            .arg(format!("-Wl,-T{}", script.display()))
            .args(extra)
            .arg(&obj.path)
            .arg("-o")
            .arg(&elf),
    );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(Fixture {
        bytes: read(&elf),
        path: elf,
    })
}

/// [`try_xtensa_elf`] that must link.
pub fn xtensa_elf(name: &str, asm: &str, script: &Path, extra: &[&str]) -> Fixture {
    try_xtensa_elf(name, asm, script, extra)
        .unwrap_or_else(|e| panic!("fixture {name} did not link:\n{e}"))
}

/// The real Xtensa overlay script without its link-time `ASSERT`s on `.data`/`.bss`, written to the
/// fixture's directory: the same layout, so that the packer (the second line of defence) sees the
/// writable sections the assertions would have refused.
pub fn xtensa_script_keeping_writable(name: &str) -> PathBuf {
    let real = std::fs::read_to_string(xtensa_script()).unwrap();
    let derived: String = real
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            !(line.starts_with("ASSERT(SIZEOF(.data)") || line.starts_with("ASSERT(SIZEOF(.bss)"))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(
        derived.contains(".data") && derived.contains(".bss"),
        "overlay-xtensa.x no longer places .data/.bss: update the fixture script"
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rota-pack-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-keep-writable.x"));
    std::fs::write(&path, derived).unwrap();
    path
}

/// One 32-bit word of an ARM data section.
#[derive(Clone, Copy)]
pub enum Word {
    /// A plain value.
    Value(u32),
    /// `R_ARM_ABS32` against a symbol (the linker turns it into `R_ARM_RELATIVE` in a PIE when the
    /// symbol is local to the image).
    Abs32(SymbolId),
}

/// A relocatable ARM (Thumb) object written with the `object` crate.
pub struct ArmObject {
    obj: Object<'static>,
    big_endian: bool,
}

impl Default for ArmObject {
    fn default() -> Self {
        Self::new()
    }
}

impl ArmObject {
    /// An empty EABI v5 little-endian object.
    pub fn new() -> Self {
        Self::with_endian(Endianness::Little)
    }

    /// An empty EABI v5 object of the given byte order.
    pub fn with_endian(endian: Endianness) -> Self {
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::Arm, endian);
        obj.flags = FileFlags::Elf {
            os_abi: elf::ELFOSABI_NONE,
            abi_version: 0,
            e_flags: elf::EF_ARM_EABI_VER5,
        };
        Self {
            obj,
            big_endian: endian == Endianness::Big,
        }
    }

    /// A global Thumb function in its own `.text.<name>` section.
    pub fn function(&mut self, name: &str, thumb_code: &[u16]) -> SymbolId {
        let section = self.obj.add_section(
            self.obj.segment_name(StandardSegment::Text).to_vec(),
            format!(".text.{name}").into_bytes(),
            SectionKind::Text,
        );
        let code: Vec<u8> = thumb_code
            .iter()
            .flat_map(|h| match self.big_endian {
                true => h.to_be_bytes(),
                false => h.to_le_bytes(),
            })
            .collect();
        let offset = self.obj.append_section_data(section, &code, 4);
        self.obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value: offset | 1, // Thumb
            size: code.len() as u64,
            kind: SymbolKind::Text,
            scope: SymbolScope::Linkage,
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        })
    }

    /// A local data symbol `name` in section `section` holding `words`.
    pub fn words(
        &mut self,
        section: &str,
        kind: SectionKind,
        name: &str,
        words: &[Word],
    ) -> SymbolId {
        let id = self
            .obj
            .add_section(vec![], section.as_bytes().to_vec(), kind);
        let data: Vec<u8> = words
            .iter()
            .flat_map(|w| match w {
                Word::Value(v) if self.big_endian => v.to_be_bytes(),
                Word::Value(v) => v.to_le_bytes(),
                Word::Abs32(_) => [0; 4],
            })
            .collect();
        let base = self.obj.append_section_data(id, &data, 4);
        for (i, w) in words.iter().enumerate() {
            if let Word::Abs32(symbol) = *w {
                self.obj
                    .add_relocation(
                        id,
                        Relocation {
                            offset: base + 4 * i as u64,
                            symbol,
                            addend: 0,
                            flags: RelocationFlags::Elf {
                                r_type: elf::R_ARM_ABS32,
                            },
                        },
                    )
                    .unwrap();
            }
        }
        self.data_symbol(name, id, base, data.len() as u64)
    }

    /// A zero-initialised (`SHT_NOBITS`) section of `size` bytes with a local symbol.
    pub fn zeroed(&mut self, section: &str, name: &str, size: u64) -> SymbolId {
        let id = self.obj.add_section(
            vec![],
            section.as_bytes().to_vec(),
            SectionKind::UninitializedData,
        );
        let offset = self.obj.append_section_bss(id, size, 4);
        self.data_symbol(name, id, offset, size)
    }

    fn data_symbol(
        &mut self,
        name: &str,
        section: write::SectionId,
        value: u64,
        size: u64,
    ) -> SymbolId {
        self.obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value,
            size,
            kind: SymbolKind::Data,
            scope: SymbolScope::Compilation,
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        })
    }

    /// An undefined (optionally weak) symbol.
    pub fn undefined(&mut self, name: &str, weak: bool) -> SymbolId {
        self.obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value: 0,
            size: 0,
            kind: SymbolKind::Data,
            scope: SymbolScope::Dynamic, // default visibility: preemptible
            weak,
            section: SymbolSection::Undefined,
            flags: SymbolFlags::None,
        })
    }

    /// The object file's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.obj.write().unwrap()
    }

    /// Writes the object and links it like a real ARM overlay (`rust-lld -flavor gnu` with the flags
    /// of `overlays/build.rs` and the real script), plus `extra` linker arguments.
    /// `Err` holds the linker's diagnostics if the link fails.
    pub fn try_link(&self, name: &str, extra: &[&str]) -> Result<Fixture, String> {
        let dir = scratch(name);
        let obj = dir.join(format!("{name}.o"));
        std::fs::write(&obj, self.bytes()).unwrap();
        let elf = dir.join(format!("{name}.elf"));
        let out = run(Command::new(rust_lld())
            .args(["-flavor", "gnu"])
            .args(ARM_FLAGS)
            .arg(format!("-T{}", arm_script().display()))
            .args(extra)
            .arg(&obj)
            .arg("-o")
            .arg(&elf));
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Fixture {
            bytes: read(&elf),
            path: elf,
        })
    }

    /// [`ArmObject::try_link`] that must link.
    pub fn link(&self, name: &str, extra: &[&str]) -> Fixture {
        self.try_link(name, extra)
            .unwrap_or_else(|e| panic!("fixture {name} did not link:\n{e}"))
    }
}

/// Thumb `bx lr`.
pub const BX_LR: u16 = 0x4770;
/// Thumb `movs r0, #42`.
pub const MOVS_R0_42: u16 = 0x202a;
