//! Experiment: load the overlay-demo record from the flash window, relocate it, run it.
//!
//! The record (written by `overlay-demo/mkflash.py` at flash-window offset 0) is:
//! magic "RXO1", image_len, entry_offset, n_relocs, relocs[n_relocs], image; all LE u32.
//! Each reloc is the offset of an R_XTENSA_32 word that holds S + A for load base 0, so
//! relocating = adding the load base to that word. R_XTENSA_SLOT0_OP (PC-relative) needs nothing.
//!
//! Two runs prove the scheme: from the IRAM arena (copied with 32-bit word stores, patched,
//! `isync`), and in place from the flash window (relocated for its mapped address while being
//! written into an erased sector through `NorFlash`). The real loader is rota-loader's.

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};

use crate::flash::{Flash, SECTOR_SIZE};
use crate::{console, cprintln, rt};

const NO_RECORD: &str = "no demo overlay record in the flash window";
const MAGIC: u32 = u32::from_le_bytes(*b"RXO1");
/// Flash-window offset where the in-place copy is written (sector aligned, after the record).
pub const XIP_OFFSET: u32 = 0x1_0000;
/// Offset of the load base inside the arena (anything 4-aligned; non-zero to prove relocation).
const ARENA_BASE_OFFSET: usize = 0x40;

/// The experiment's service table; layout shared with `overlay-demo/src/main.rs`.
#[repr(C)]
struct Services {
    version: u32,
    print: extern "C" fn(ptr: *const u8, len: usize) -> i32,
}

/// The service: prints bytes that live in the overlay image (IRAM or flash), reading whole words.
extern "C" fn svc_print(ptr: *const u8, len: usize) -> i32 {
    // SAFETY: the overlay passes a pointer into its own image, which is mapped memory.
    unsafe { console::write_from_word_memory(ptr, len) };
    len as i32
}

type Entry = unsafe extern "C" fn(svc: *const u8, ctx: *mut u8) -> i32;

fn read_u32(flash: &mut Flash, offset: u32) -> Option<u32> {
    let mut b = [0u8; 4];
    flash.read(offset, &mut b).ok()?;
    Some(u32::from_le_bytes(b))
}

struct Record {
    image_len: u32,
    entry: u32,
    n_relocs: u32,
}

impl Record {
    fn relocs_at(&self) -> u32 {
        16
    }
    fn image_at(&self) -> u32 {
        16 + 4 * self.n_relocs
    }
}

fn parse(flash: &mut Flash, arena_len: usize) -> Result<Record, &'static str> {
    if read_u32(flash, 0) != Some(MAGIC) {
        return Err(NO_RECORD);
    }
    let rec = Record {
        image_len: read_u32(flash, 4).ok_or("read")?,
        entry: read_u32(flash, 8).ok_or("read")?,
        n_relocs: read_u32(flash, 12).ok_or("read")?,
    };
    let fits = (rec.image_len as usize) <= arena_len - ARENA_BASE_OFFSET
        && rec.image_len % 4 == 0
        && rec.entry < rec.image_len
        && rec.n_relocs < 4096
        && rec.image_at() as usize + rec.image_len as usize <= XIP_OFFSET as usize;
    if !fits {
        return Err("demo record out of bounds");
    }
    Ok(rec)
}

/// Copies the image to `dst` (word stores only), adding `base` to every relocated word, through
/// `store(word_index, value)`.
fn relocate(
    flash: &mut Flash,
    rec: &Record,
    base: u32,
    mut store: impl FnMut(&mut Flash, u32, u32) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    let mut next_reloc = 0;
    let mut reloc_off = if rec.n_relocs > 0 {
        read_u32(flash, rec.relocs_at()).ok_or("read")?
    } else {
        u32::MAX
    };
    let mut off = 0;
    while off < rec.image_len {
        let mut word = read_u32(flash, rec.image_at() + off).ok_or("read")?;
        if off == reloc_off {
            word = word.wrapping_add(base);
            next_reloc += 1;
            reloc_off = if next_reloc < rec.n_relocs {
                read_u32(flash, rec.relocs_at() + 4 * next_reloc).ok_or("read")?
            } else {
                u32::MAX
            };
        } else if reloc_off != u32::MAX && (reloc_off < off || reloc_off % 4 != 0) {
            return Err("relocations not sorted / not word aligned");
        }
        store(flash, off, word)?;
        off += 4;
    }
    Ok(())
}

fn call(addr: u32, ctx: &mut u32) -> i32 {
    let svc = Services {
        version: 1,
        print: svc_print,
    };
    rt::isync();
    // SAFETY: `addr` is the entry of a relocated overlay image with this ABI.
    let entry: Entry = unsafe { core::mem::transmute(addr as usize) };
    unsafe {
        entry(
            &svc as *const Services as *const u8,
            ctx as *mut u32 as *mut u8,
        )
    }
}

/// Runs the experiment; returns false if a step fails. Without a record it says so and skips.
pub fn run() -> bool {
    match run_inner() {
        Ok(()) => true,
        Err(NO_RECORD) => {
            cprintln!("overlay demo: skipped ({})", NO_RECORD);
            true
        }
        Err(e) => {
            cprintln!("overlay demo: {}", e);
            false
        }
    }
}

fn run_inner() -> Result<(), &'static str> {
    let mut flash = Flash::take();
    let arena = rt::symbols::arena_start();
    let arena_len = rt::symbols::arena_end() - arena;
    let rec = parse(&mut flash, arena_len)?;
    cprintln!(
        "overlay demo: image {} bytes, entry +{:#x}, {} R_XTENSA_32 words",
        rec.image_len,
        rec.entry,
        rec.n_relocs
    );

    // 1. In the IRAM arena, at a non-zero offset.
    let base = (arena + ARENA_BASE_OFFSET) as u32;
    relocate(&mut flash, &rec, base, |_, off, word| {
        // SAFETY: inside the arena (bounds checked by `parse`), aligned word store.
        unsafe { core::ptr::write_volatile((base + off) as *mut u32, word) };
        Ok(())
    })?;
    let mut ctx = 0u32;
    let r1 = call(base + rec.entry, &mut ctx);
    let r2 = call(base + rec.entry, &mut ctx);
    cprintln!(
        "overlay demo: arena base {:#010x}: returned {} and {}, ctx = {}",
        base,
        r1,
        r2,
        ctx
    );

    // 2. In place from the flash window: relocate for the mapped address while writing.
    let xip = flash.mapped(XIP_OFFSET).ok_or("xip offset")? as u32;
    let sectors = rec.image_len.div_ceil(SECTOR_SIZE as u32) * SECTOR_SIZE as u32;
    flash
        .erase(XIP_OFFSET, XIP_OFFSET + sectors)
        .map_err(|_| "erase")?;
    relocate(&mut flash, &rec, xip, |f, off, word| {
        f.write(XIP_OFFSET + off, &word.to_le_bytes())
            .map_err(|_| "write")
    })?;
    let r3 = call(xip + rec.entry, &mut ctx);
    cprintln!(
        "overlay demo: in place at {:#010x}: returned {}, ctx = {}",
        xip,
        r3,
        ctx
    );
    if ctx != 3 || r1 <= 0 || r2 <= 0 || r3 <= 0 {
        return Err("unexpected results");
    }
    cprintln!("overlay demo: ok");
    Ok(())
}
