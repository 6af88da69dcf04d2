//! ELF to rota blob: collects the loadable image of an overlay linked at address 0, the words the loader
//! must relocate, and the entry point, refusing anything the resident core could not run safely.
//!
//! - thumbv7m: a PIE linked at 0; only `R_ARM_RELATIVE` dynamic relocations may remain.
//! - lx106: linked at 0 with `ld -q`; `R_XTENSA_32` words are relocated, PC-relative `R_XTENSA_SLOT0_OP`
//!   and the `R_XTENSA_NONE`/`R_XTENSA_ASM_EXPAND` markers need nothing; any other type is refused, and
//!   so are `R_XTENSA_32`/`R_XTENSA_SLOT0_OP` whose symbol is undefined or absolute (it does not move).
//!
//! Only linked little-endian files (ET_EXEC/ET_DYN) are accepted: relocation offsets in a relocatable
//! object are section-relative.
//!
//! Writable sections are refused: overlays keep their state in the core's context.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use object::elf;
use object::read::elf::{ElfFile32, FileHeader, Rel, SectionHeader, Sym};
use object::{Endianness, Object, ObjectSection, ObjectSymbol, SectionIndex};
use rota_blob::Isa;

/// Dynamic-linking metadata that is never part of the loaded image.
const METADATA: &[&str] = &[
    ".dynamic",
    ".dynsym",
    ".dynstr",
    ".hash",
    ".gnu.hash",
    ".rel.dyn",
    ".rela.dyn",
];
/// Writable sections that only the loader writes (patched pointers), so an overlay may have them.
const RELOCATED_ONLY: &[&str] = &[".got", ".got.plt", ".data.rel.ro"];

/// Why an ELF file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackError {
    /// The input is not a 32-bit little-endian ELF.
    #[error("not a 32-bit little-endian ELF file: {0}")]
    NotElf(String),
    /// The ELF file is not a linked executable (ET_EXEC or ET_DYN): relocation offsets in a
    /// relocatable object (ET_REL) are section-relative and its sections all start at 0.
    #[error("ELF type {0} is not a linked overlay (ET_EXEC or ET_DYN); a relocatable object (ET_REL = 1) must be linked with the overlay linker script first")]
    NotLinked(u16),
    /// The ELF machine is neither ARM nor Xtensa.
    #[error("unsupported ELF machine {0}: only ARM (thumbv7m) and Xtensa (lx106) overlays exist")]
    Machine(u16),
    /// The entry symbol is missing.
    #[error("missing entry symbol `{0}` (declare the overlay with rota_abi::overlay!)")]
    NoEntry(&'static str),
    /// A writable section would need per-overlay state.
    #[error("writable section `{name}` ({size} bytes): overlays may not have writable statics; keep state in the Context")]
    Writable {
        /// Section name.
        name: String,
        /// Section size.
        size: u64,
    },
    /// A relocation type the loader cannot apply.
    #[error("relocation {kind} ({code}) at {offset:#x} in `{section}` is not allowed for {isa}")]
    Relocation {
        /// Type name.
        kind: &'static str,
        /// Type number.
        code: u32,
        /// Offset in the image.
        offset: u64,
        /// Section the relocation applies to.
        section: String,
        /// ISA name.
        isa: &'static str,
    },
    /// A relocation refers to a symbol that is undefined or absolute.
    #[error("relocation at {offset:#x} refers to undefined or absolute symbol `{symbol}`")]
    Symbol {
        /// Offset in the image.
        offset: u64,
        /// Symbol name.
        symbol: String,
    },
    /// A relocated word is misaligned or outside the image.
    #[error("relocated word at {0:#x} is misaligned or outside the image")]
    RelocationOutside(u64),
    /// An image section is not linked where the image starts at 0.
    #[error("section `{0}` is not linked inside the image starting at address 0")]
    Layout(String),
    /// The image exceeds the configured limit.
    #[error("image of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Image size.
        size: u64,
        /// Limit.
        limit: u64,
    },
    /// The blob could not be built.
    #[error("blob: {0}")]
    Blob(rota_blob::Error),
}

/// One section of the image, for the size report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionInfo {
    /// Section name.
    pub name: String,
    /// Link address (offset in the image).
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Executable.
    pub exec: bool,
}

/// A packed overlay.
#[derive(Debug, Clone)]
pub struct Packed {
    /// ISA of the image.
    pub isa: Isa,
    /// The image as linked at 0.
    pub image: Vec<u8>,
    /// Offsets of words to relocate.
    pub relocs: Vec<u32>,
    /// Entry offset (Thumb bit cleared).
    pub entry: u32,
    /// Image sections.
    pub sections: Vec<SectionInfo>,
}

impl Packed {
    /// Builds the blob with the given overlay name.
    pub fn blob(&self, name: &str) -> Result<Vec<u8>, PackError> {
        rota_blob::emit_blob(
            self.isa,
            rota_abi::ABI_VERSION,
            name,
            &self.image,
            self.entry,
            &self.relocs,
        )
        .map_err(PackError::Blob)
    }
}

fn reloc_name(isa: Isa, code: u32) -> &'static str {
    match (isa, code) {
        (Isa::Thumbv7m, elf::R_ARM_RELATIVE) => "R_ARM_RELATIVE",
        (Isa::Thumbv7m, elf::R_ARM_ABS32) => "R_ARM_ABS32",
        (Isa::Thumbv7m, elf::R_ARM_GLOB_DAT) => "R_ARM_GLOB_DAT",
        (Isa::Thumbv7m, elf::R_ARM_JUMP_SLOT) => "R_ARM_JUMP_SLOT",
        (Isa::Thumbv7m, elf::R_ARM_THM_MOVW_ABS_NC) => "R_ARM_THM_MOVW_ABS_NC",
        (Isa::Thumbv7m, elf::R_ARM_THM_MOVT_ABS) => "R_ARM_THM_MOVT_ABS",
        (Isa::Lx106, elf::R_XTENSA_NONE) => "R_XTENSA_NONE",
        (Isa::Lx106, elf::R_XTENSA_32) => "R_XTENSA_32",
        (Isa::Lx106, elf::R_XTENSA_RELATIVE) => "R_XTENSA_RELATIVE",
        (Isa::Lx106, elf::R_XTENSA_ASM_EXPAND) => "R_XTENSA_ASM_EXPAND",
        (Isa::Lx106, elf::R_XTENSA_SLOT0_OP) => "R_XTENSA_SLOT0_OP",
        (Isa::Lx106, elf::R_XTENSA_32_PCREL) => "R_XTENSA_32_PCREL",
        _ => "unknown",
    }
}

/// The name of section `sh` (empty if the string table does not have it).
fn section_name(file: &ElfFile32<'_, Endianness>, sh: &elf::SectionHeader32<Endianness>) -> String {
    file.elf_section_table()
        .section_name(file.endian(), sh)
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default()
}

/// Reads an overlay ELF file and collects its image, relocations and entry.
pub fn pack(data: &[u8], limit: u64) -> Result<Packed, PackError> {
    let file =
        ElfFile32::<Endianness>::parse(data).map_err(|e| PackError::NotElf(e.to_string()))?;
    let endian = file.endian();
    // Images are copied as they are and patched as little-endian words.
    if !file.is_little_endian() {
        return Err(PackError::NotElf("big-endian".into()));
    }
    let header = file.elf_header();
    let isa = match header.e_machine(endian) {
        elf::EM_ARM => Isa::Thumbv7m,
        elf::EM_XTENSA => Isa::Lx106,
        m => return Err(PackError::Machine(m)),
    };
    match header.e_type(endian) {
        elf::ET_EXEC | elf::ET_DYN => {}
        t => return Err(PackError::NotLinked(t)),
    }
    let entry = file
        .symbols()
        .find(|s| s.name() == Ok(rota_abi::ENTRY_SYMBOL) && s.is_definition())
        .ok_or(PackError::NoEntry(rota_abi::ENTRY_SYMBOL))?;
    let entry =
        u32::try_from(entry.address() & !1).map_err(|_| PackError::Layout("entry".into()))?;

    // Image sections: allocated, not metadata; writable ones only if they are loader-patched pointers.
    let mut sections = Vec::new();
    let mut image_indices = Vec::new();
    for (index, sh) in file.elf_section_table().iter().enumerate() {
        let flags = sh.sh_flags(endian);
        if flags & elf::SHF_ALLOC == 0 {
            continue;
        }
        let name = section_name(&file, sh);
        let size = u64::from(sh.sh_size(endian));
        if METADATA.contains(&name.as_str()) || size == 0 {
            continue;
        }
        let nobits = sh.sh_type(endian) == elf::SHT_NOBITS;
        if nobits || (flags & elf::SHF_WRITE != 0 && !RELOCATED_ONLY.contains(&name.as_str())) {
            return Err(PackError::Writable { name, size });
        }
        sections.push(SectionInfo {
            name,
            addr: u64::from(sh.sh_addr(endian)),
            size,
            exec: flags & elf::SHF_EXECINSTR != 0,
        });
        image_indices.push(index);
    }
    let image_end = sections.iter().map(|s| s.addr + s.size).max().unwrap_or(0);
    let image_end = (image_end + 3) & !3;
    if image_end > limit {
        return Err(PackError::TooLarge {
            size: image_end,
            limit,
        });
    }
    let mut image = vec![0u8; image_end as usize];
    for (s, &index) in sections.iter().zip(&image_indices) {
        let sec = file
            .section_by_index(SectionIndex(index))
            .map_err(|e| PackError::NotElf(e.to_string()))?;
        let bytes = sec.data().map_err(|e| PackError::NotElf(e.to_string()))?;
        let start = s.addr as usize;
        image[start..start + bytes.len()].copy_from_slice(bytes);
    }
    if u64::from(entry) >= image_end {
        return Err(PackError::Layout(rota_abi::ENTRY_SYMBOL.into()));
    }

    let mut relocs = Vec::new();
    let symbols = file.elf_symbol_table();
    for sh in file.elf_section_table().iter() {
        let kind = sh.sh_type(endian);
        if kind != elf::SHT_REL && kind != elf::SHT_RELA {
            continue;
        }
        let target = sh.sh_info(endian) as usize;
        let dynamic = sh.sh_flags(endian) & elf::SHF_ALLOC != 0 || target == 0;
        // Static relocations kept by `ld -q` against non-image (debug) sections do not matter.
        if !dynamic && !image_indices.contains(&target) {
            continue;
        }
        let section_name = section_name(&file, sh);
        // (offset, type, symbol index)
        let mut entries: Vec<(u64, u32, u32)> = Vec::new();
        if kind == elf::SHT_REL {
            let rels: &[elf::Rel32<Endianness>] = sh
                .data_as_array(endian, data)
                .map_err(|e| PackError::NotElf(e.to_string()))?;
            entries.extend(rels.iter().map(|r| {
                (
                    u64::from(r.r_offset(endian)),
                    r.r_type(endian),
                    r.r_sym(endian),
                )
            }));
        } else {
            let relas: &[elf::Rela32<Endianness>] = sh
                .data_as_array(endian, data)
                .map_err(|e| PackError::NotElf(e.to_string()))?;
            entries.extend(relas.iter().map(|r| {
                (
                    u64::from(r.r_offset.get(endian)),
                    r.r_type(endian),
                    r.r_sym(endian),
                )
            }));
        }
        // Static relocation offsets are section-relative in relocatable files but absolute in
        // linked ones (ET_EXEC/ET_DYN), which is all the packer accepts.
        for (offset, code, sym) in entries {
            // Absolute words and PC-relative operands only move with the image if their target is
            // inside it: a target that is undefined (resolved to 0) or absolute does not move.
            let inside_image = || {
                let s = symbols.symbol(object::SymbolIndex(sym as usize)).ok();
                let shndx = s.map(|s| s.st_shndx(endian));
                if shndx.is_none() || shndx == Some(elf::SHN_UNDEF) || shndx == Some(elf::SHN_ABS) {
                    let symbol = s
                        .and_then(|s| s.name(endian, symbols.strings()).ok())
                        .map(|n| String::from_utf8_lossy(n).into_owned())
                        .unwrap_or_default();
                    return Err(PackError::Symbol { offset, symbol });
                }
                Ok(())
            };
            let patch = match (isa, code) {
                (Isa::Thumbv7m, elf::R_ARM_RELATIVE) => true,
                (Isa::Thumbv7m, elf::R_ARM_NONE) => false,
                (Isa::Lx106, elf::R_XTENSA_32) => {
                    inside_image()?;
                    true
                }
                (Isa::Lx106, elf::R_XTENSA_SLOT0_OP) => {
                    inside_image()?;
                    false
                }
                (Isa::Lx106, elf::R_XTENSA_NONE | elf::R_XTENSA_ASM_EXPAND) => false,
                _ => {
                    return Err(PackError::Relocation {
                        kind: reloc_name(isa, code),
                        code,
                        offset,
                        section: section_name,
                        isa: isa.name(),
                    })
                }
            };
            if patch {
                if offset % 4 != 0 || offset + 4 > image_end {
                    return Err(PackError::RelocationOutside(offset));
                }
                relocs.push(offset as u32);
            }
        }
    }
    relocs.sort_unstable();
    relocs.dedup();
    Ok(Packed {
        isa,
        image,
        relocs,
        entry,
        sections,
    })
}

/// The `--report` text: one line per image section, then totals.
pub fn report(p: &Packed, name: &str, blob_len: usize) -> String {
    let mut out = format!("{name} ({}):\n", p.isa.name());
    for s in &p.sections {
        let kind = if s.exec { "code" } else { "data" };
        out += &format!(
            "  {:<16} {:>#8x} {:>6} bytes  {kind}\n",
            s.name, s.addr, s.size
        );
    }
    out += &format!(
        "  image {} bytes, {} relocations, entry {:#x}, blob {} bytes\n",
        p.image.len(),
        p.relocs.len(),
        p.entry,
        blob_len
    );
    out
}
