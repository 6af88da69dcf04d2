//! The loader on real packed overlays (needs `make images fixtures`): relocation agrees with the
//! linker's own output at other bases, and every corruption or truncation is refused before anything
//! could run.
use object::{Object, ObjectSection};
use rota_blob::{Blob, Error, Isa, HEADER_SIZE};
use rota_emu::{artifact, blob, Machine};
use rota_loader::{load, LoadError, Loaded, Target};
use rota_memflash::MemFlash;

const ISAS: [(Machine, Isa, &str); 2] = [
    (Machine::Mps2An385, Isa::Thumbv7m, "thumbv7m"),
    (Machine::Esp8266Sim, Isa::Lx106, "lx106"),
];

fn target(isa: Isa) -> Target {
    Target {
        isa,
        abi_version: rota_abi::ABI_VERSION,
    }
}

/// Loads `bytes` (as a flash device of exactly that content) into a fresh 64 KB arena at `base` (room
/// for `provision`, which the boards run in place).
fn load_from(bytes: Vec<u8>, isa: Isa, base: u32) -> (Result<Loaded, LoadError>, Vec<u32>) {
    let mut flash = MemFlash::new(bytes);
    // 128 KB: the largest blob the Makefile packs (its IMAGE_LIMIT; the LX106's provision with
    // Ed25519 is 97 KB) fits.
    let mut arena = vec![0u32; 32 * 1024];
    // SAFETY: the arena is a live, exclusively borrowed buffer of that many words.
    let r = unsafe {
        load(
            &mut flash,
            0,
            target(isa),
            arena.as_mut_ptr(),
            arena.len(),
            base,
        )
    };
    (r, arena)
}

fn bytes_of(words: &[u32], len: usize) -> Vec<u8> {
    words
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .take(len)
        .collect()
}

fn redigest(b: &mut [u8]) {
    let n = b.len() - 32;
    let d = rota_blob::sha256(&b[..n]);
    b[n..].copy_from_slice(&d);
}

fn fixture_bases(prefix: &str) -> Vec<(u32, std::path::PathBuf)> {
    let dir = artifact("fixtures");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let hex = name
                .strip_prefix(&format!("{prefix}-app-at-0x"))?
                .strip_suffix(".elf")?;
            Some((u32::from_str_radix(hex, 16).ok()?, dir.join(&name)))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn relocated_image_equals_the_linkers_own_output_at_each_base() {
    for (_, isa, prefix) in ISAS {
        let elf0 = std::fs::read(artifact(&format!("fixtures/{prefix}-app-at-0.elf"))).unwrap();
        let packed = rota_pack::pack(&elf0, 8192).unwrap();
        assert!(
            !packed.relocs.is_empty(),
            "{prefix}: the app must carry relocations for this test to mean anything"
        );
        let blob = packed.blob("app").unwrap();
        let bases = fixture_bases(prefix);
        assert!(
            bases.len() >= 2,
            "{prefix}: need fixtures at two bases, found {bases:?}"
        );
        for (base, path) in bases {
            let (loaded, arena) = load_from(blob.clone(), isa, base);
            let loaded = loaded.unwrap();
            assert_eq!(loaded.base, base);
            let ours = bytes_of(&arena, packed.image.len());
            // The linker's image at `base`, section by section.
            let data = std::fs::read(&path).unwrap();
            let file = object::File::parse(&*data).unwrap();
            let mut linker = vec![0u8; packed.image.len()];
            for s in &packed.sections {
                let sec = file
                    .section_by_name(&s.name)
                    .unwrap_or_else(|| panic!("{} in {path:?}", s.name));
                assert_eq!(
                    sec.address(),
                    u64::from(base) + s.addr,
                    "{prefix} {}: not linked at base",
                    s.name
                );
                let bytes = sec.data().unwrap();
                linker[s.addr as usize..s.addr as usize + bytes.len()].copy_from_slice(bytes);
            }
            assert_eq!(
                ours, linker,
                "{prefix}: relocation at {base:#x} differs from the linker's output"
            );
            assert_ne!(
                ours, packed.image,
                "{prefix}: nothing was relocated at {base:#x}"
            );
        }
    }
}

#[test]
fn every_single_byte_corruption_of_header_and_relocations_is_refused() {
    for (machine, isa, prefix) in ISAS {
        for name in ["init", "tick", "provision", "app"] {
            let good = blob(machine, name);
            let relocs = Blob::parse(&good).unwrap().header.reloc_count as usize;
            assert!(load_from(good.clone(), isa, 0x1000).0.is_ok());
            for i in 0..HEADER_SIZE + 4 * relocs {
                for flip in [0x01u8, 0x80, 0xFF] {
                    let mut bad = good.clone();
                    bad[i] ^= flip;
                    let (r, _) = load_from(bad, isa, 0x1000);
                    assert!(
                        r.is_err(),
                        "{prefix}/{name}: flip {flip:#x} at byte {i} was loaded"
                    );
                }
            }
        }
    }
}

#[test]
fn truncation_at_every_length_is_refused() {
    for (machine, isa, prefix) in ISAS {
        let good = blob(machine, "init");
        for len in 0..good.len() {
            // A device that ends there, and erased flash after the cut.
            let (r, _) = load_from(good[..len].to_vec(), isa, 0x1000);
            assert!(
                r.is_err(),
                "{prefix}: truncated to {len} loaded from a short device"
            );
            let mut erased = good[..len].to_vec();
            erased.resize(good.len() + 64, 0xFF);
            let (r, _) = load_from(erased, isa, 0x1000);
            assert!(
                r.is_err(),
                "{prefix}: truncated to {len} loaded from erased flash"
            );
        }
    }
}

#[test]
fn relocation_past_the_image_is_refused() {
    for (machine, isa, _) in ISAS {
        // The application has relocations on both ISAs.
        let mut bad = blob(machine, "app");
        let h = Blob::parse(&bad).unwrap().header;
        let last = HEADER_SIZE + 4 * (h.reloc_count as usize - 1);
        for offset in [h.image_size, h.image_size - 2, u32::MAX - 3] {
            bad[last..last + 4].copy_from_slice(&offset.to_le_bytes());
            redigest(&mut bad);
            let (r, arena) = load_from(bad.clone(), isa, 0x1000);
            assert_eq!(
                r.unwrap_err(),
                LoadError::Blob(Error::BadRelocation {
                    index: h.reloc_count - 1,
                    offset
                })
            );
            assert!(
                arena.iter().all(|&w| w == 0),
                "nothing may be placed for a refused relocation table"
            );
        }
    }
}

#[test]
fn abi_and_isa_mismatches_are_refused() {
    for (machine, isa, _) in ISAS {
        let mut bad = blob(machine, "tick");
        bad[16..20].copy_from_slice(&(rota_abi::ABI_VERSION + 1).to_le_bytes());
        redigest(&mut bad);
        let (r, _) = load_from(bad, isa, 0x1000);
        assert_eq!(
            r.unwrap_err(),
            LoadError::Blob(Error::AbiMismatch {
                expected: rota_abi::ABI_VERSION,
                found: rota_abi::ABI_VERSION + 1
            })
        );
        let other = if isa == Isa::Lx106 {
            Isa::Thumbv7m
        } else {
            Isa::Lx106
        };
        let (r, _) = load_from(blob(machine, "tick"), other, 0x1000);
        assert_eq!(
            r.unwrap_err(),
            LoadError::Blob(Error::WrongIsa {
                expected: other,
                found: isa
            })
        );
    }
}
