//! The overlay loader of rota's resident core.
//!
//! [`load`] reads a blob (found by the file store) through `embedded-storage`, verifying the header,
//! every relocation and the digest while it copies the image into the arena, and only then patches the
//! relocations for the arena's address. A refused blob leaves a typed [`LoadError`] and nothing to
//! execute. Arena writes are whole aligned 32-bit words, as the ESP8266's IRAM requires.
//!
//! [`verify_in_place`] checks a relocation-free blob completely so that it can run where the flash is
//! mapped, costing no RAM. Blobs with relocations could run in place too if relocated for their flash
//! address at install time; that is not done yet.
#![no_std]
#![deny(missing_docs)]

use embedded_storage::nor_flash::ReadNorFlash;
use rota_blob::{HeaderRepr, Isa, Verifier, HEADER_SIZE};

/// Why an overlay was not loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The store holds no file with that name.
    NotFound,
    /// The flash driver failed to read at this offset.
    Flash(u32),
    /// The blob is malformed or incompatible.
    Blob(rota_blob::Error),
    /// The image does not fit the arena and cannot run in place (it has relocations, or the board's
    /// flash is not mapped for execution).
    TooLarge,
}

impl LoadError {
    /// A short description for consoles without `core::fmt`.
    pub fn describe(&self) -> &'static str {
        match self {
            LoadError::NotFound => "not found",
            LoadError::Flash(_) => "flash read failed",
            LoadError::Blob(e) => e.describe(),
            LoadError::TooLarge => "too large for the arena and not runnable in place",
        }
    }
}

impl From<rota_blob::Error> for LoadError {
    fn from(e: rota_blob::Error) -> Self {
        LoadError::Blob(e)
    }
}

/// What the loader needs to know about the running core.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The core's ISA.
    pub isa: Isa,
    /// The core's service-table ABI version.
    pub abi_version: u32,
}

/// A placed, patched overlay ready to call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The blob's header.
    pub header: HeaderRepr,
    /// Address the image was placed and relocated at.
    pub base: u32,
    /// Address to call (Thumb bit set on Thumb).
    pub entry: u32,
}

/// Chunk size for flash reads; a multiple of 4 so image chunks are whole words.
const CHUNK: usize = 64;

fn read<F: ReadNorFlash>(flash: &mut F, offset: u32, buf: &mut [u8]) -> Result<(), LoadError> {
    flash
        .read(offset, buf)
        .map_err(|_| LoadError::Flash(offset))
}

/// Reads and checks the header at `offset`: a verifier fed with it, and the header.
fn start<F: ReadNorFlash>(
    flash: &mut F,
    offset: u32,
    buf: &mut [u8; CHUNK],
) -> Result<(Verifier, HeaderRepr), LoadError> {
    let mut v = Verifier::new();
    read(flash, offset, &mut buf[..HEADER_SIZE])?;
    v.feed(&buf[..HEADER_SIZE])?;
    let header = *v
        .header()
        .ok_or(LoadError::Blob(rota_blob::Error::Sequence))?;
    Ok((v, header))
}

/// Loads the blob at `offset` into `arena`, to run at address `base`.
///
/// On target `base` is the arena's own address; host tests pass any base to compare against a linker's
/// output at that base. On error the arena holds no runnable code: the image is only patched after the
/// digest has matched.
///
/// # Safety
/// `arena` must point to `arena_words` writable, 4-aligned words that nothing else uses during the call.
pub unsafe fn load<F: ReadNorFlash>(
    flash: &mut F,
    offset: u32,
    target: Target,
    arena: *mut u32,
    arena_words: usize,
    base: u32,
) -> Result<Loaded, LoadError> {
    let mut buf = [0u8; CHUNK];
    let (mut v, header) = start(flash, offset, &mut buf)?;
    let limit = u32::try_from(arena_words * 4).unwrap_or(u32::MAX);
    header.check_compatible(target.isa, target.abi_version, limit)?;

    // Relocations: the verifier checks each one (aligned, inside the image, increasing).
    let mut pos = header.relocs_offset();
    while pos < header.image_offset() {
        let n = ((header.image_offset() - pos) as usize).min(CHUNK);
        read(flash, offset + pos, &mut buf[..n])?;
        v.feed(&buf[..n])?;
        pos += n as u32;
    }

    // Image: hashed and copied word by word into the arena.
    let mut word_index = 0usize;
    while pos < header.digest_offset() {
        let n = ((header.digest_offset() - pos) as usize).min(CHUNK);
        read(flash, offset + pos, &mut buf[..n])?;
        v.feed(&buf[..n])?;
        for w in buf[..n].as_chunks::<4>().0 {
            // SAFETY: in bounds (image_size <= limit = the arena's size was checked above), and the
            // arena is writable, aligned and ours for the call (this function's contract).
            unsafe {
                arena
                    .add(word_index)
                    .write_volatile(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            };
            word_index += 1;
        }
        pos += n as u32;
    }

    read(flash, offset + pos, &mut buf[..rota_blob::DIGEST_SIZE])?;
    v.feed(&buf[..rota_blob::DIGEST_SIZE])?;
    v.finish()?;

    // Verified. Patch, re-checking each relocation in case flash changed under us.
    let mut pos = header.relocs_offset();
    let mut index = 0u32;
    while pos < header.image_offset() {
        let mut word = [0u8; 4];
        read(flash, offset + pos, &mut word)?;
        let rel = u32::from_le_bytes(word);
        if rel % 4 != 0 || rel > header.image_size - 4 {
            return Err(LoadError::Blob(rota_blob::Error::BadRelocation {
                index,
                offset: rel,
            }));
        }
        // SAFETY: `rel` is aligned and inside the image, which lies inside the arena (checked
        // just above and before the copy); the arena is ours for the call.
        unsafe {
            let p = arena.add((rel / 4) as usize);
            p.write_volatile(rota_blob::relocate_word(p.read_volatile(), base));
        }
        pos += 4;
        index += 1;
    }

    let thumb = u32::from(header.isa == Isa::Thumbv7m);
    Ok(Loaded {
        header,
        base,
        entry: (base + header.entry_offset) | thumb,
    })
}

/// Verifies the blob at `offset` completely and returns it ready to run in place, from the flash
/// mapping at `mapped_base` (the address of storage offset 0). Only blobs without relocations can: their
/// code is position-independent as linked. The caller must keep the blob's flash unchanged while it runs.
pub fn verify_in_place<F: ReadNorFlash>(
    flash: &mut F,
    offset: u32,
    target: Target,
    mapped_base: u32,
) -> Result<Loaded, LoadError> {
    let mut buf = [0u8; CHUNK];
    let (mut v, header) = start(flash, offset, &mut buf)?;
    header.check_compatible(target.isa, target.abi_version, u32::MAX)?;
    let base = mapped_base
        .checked_add(offset)
        .and_then(|b| b.checked_add(header.image_offset()))
        .filter(|b| header.reloc_count == 0 && b % 4 == 0)
        .ok_or(LoadError::TooLarge)?;
    let mut pos = HEADER_SIZE as u32;
    let end = header.total_size();
    while pos < end {
        let n = ((end - pos) as usize).min(CHUNK);
        read(flash, offset + pos, &mut buf[..n])?;
        v.feed(&buf[..n])?;
        pos += n as u32;
    }
    v.finish()?;
    let thumb = u32::from(header.isa == Isa::Thumbv7m);
    Ok(Loaded {
        header,
        base,
        entry: (base + header.entry_offset) | thumb,
    })
}
