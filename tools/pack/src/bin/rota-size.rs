//! `rota-size FIRMWARE.elf [BLOB...]`: the resident core's flash and static RAM, the arena, heap and
//! stack reserved by the board's linker script, and each blob's size.
//!
//! Flash = every allocated section with contents (code, rodata, vectors, the initial values of `.data`).
//! Static RAM = every allocated section placed in the data RAM (`_ram_start.._ram_end`), whatever its
//! flags (constants a board keeps in RAM count: the ESP8266's `.dram.rodata`), excluding the arena,
//! heap and stack regions, which the linker scripts mark with `_arena_start/_arena_end`,
//! `_heap_start/_heap_end`, `_stack_end/_stack_start`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionKind};
use std::process::ExitCode;

fn symbol(file: &object::File, name: &str) -> Option<u64> {
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address())
}

fn report(path: &str) -> Result<String, String> {
    let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{path}: {e}"))?;
    let region = |a: &str, b: &str| match (symbol(&file, a), symbol(&file, b)) {
        (Some(x), Some(y)) if y >= x => Ok((x, y)),
        _ => Err(format!("{path}: linker symbols {a}/{b} missing")),
    };
    let arena = region("_arena_start", "_arena_end")?;
    let heap = region("_heap_start", "_heap_end")?;
    let stack = region("_stack_end", "_stack_start")?;
    let ram_region = region("_ram_start", "_ram_end")?;
    let reserved = |addr: u64| {
        [arena, heap, stack]
            .iter()
            .any(|&(s, e)| addr >= s && addr < e)
    };
    let (mut flash, mut ram) = (0u64, 0u64);
    for s in file.sections() {
        let SectionFlags::Elf { sh_flags } = s.flags() else {
            continue;
        };
        let alloc = sh_flags & u64::from(object::elf::SHF_ALLOC) != 0;
        if !alloc || s.size() == 0 {
            continue;
        }
        let in_ram = s.address() >= ram_region.0 && s.address() < ram_region.1;
        if s.kind() != SectionKind::UninitializedData && !reserved(s.address()) {
            flash += s.size();
        }
        if in_ram && !reserved(s.address()) {
            ram += s.size();
        }
    }
    Ok(format!(
        "{path}\n  core flash (text+rodata+data init)       {flash} bytes\n  core static RAM (data+bss+rodata in RAM) {ram} bytes\n  overlay arena                           {} bytes\n  heap                                    {} bytes\n  stack                                   {} bytes\n",
        arena.1 - arena.0,
        heap.1 - heap.0,
        stack.1 - stack.0
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((elf, blobs)) = args.split_first() else {
        eprintln!("usage: rota-size FIRMWARE.elf [BLOB...]");
        return ExitCode::FAILURE;
    };
    match report(elf) {
        Ok(r) => print!("{r}"),
        Err(e) => {
            eprintln!("rota-size: {e}");
            return ExitCode::FAILURE;
        }
    }
    for b in blobs {
        match std::fs::read(b).map_err(|e| e.to_string()).and_then(|d| {
            rota_blob::Blob::parse(&d)
                .map(|p| (d.len(), p.header.image_size))
                .map_err(|e| e.to_string())
        }) {
            Ok((len, image)) => println!("  blob {b}: {len} bytes (image {image})"),
            Err(e) => {
                eprintln!("rota-size: {b}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
