//! The overlay loader of rota's resident core.
//!
//! [`load`] reads a blob (found by the file store) through `embedded-storage`, verifying the header,
//! every relocation and the digest while it copies the image into the arena, and only then patches the
//! relocations for the arena's address. A refused blob leaves a typed [`LoadError`] and nothing to
//! execute. Arena writes are whole aligned 32-bit words, as the ESP8266's IRAM requires.
//!
//! [`verify_in_place`] checks a relocation-free blob completely so that it can run where the flash is
//! mapped, costing no RAM. A blob with relocations that runs in place was relocated for its flash
//! address ([`in_place_base`]) while it was staged (the resident core's store services do that);
//! [`verify_relocated_in_place`] checks it as built ([`read_as_built`]: each relocated word
//! un-relocated before it is hashed) against the blob's digest and the store's
//! (`docs/overlay-format.md`, "Running in place").
#![no_std]
#![deny(missing_docs)]

use embedded_storage::nor_flash::ReadNorFlash;
use rota_blob::{unrelocate_word, Header, HeaderRepr, Isa, Verifier, DIGEST_SIZE, HEADER_SIZE};

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

/// Reads and checks the header at `offset`, feeding it to `v` (the caller's, so that the verifier is
/// built where it stays and never copied); returns the header.
fn start<F: ReadNorFlash>(
    flash: &mut F,
    offset: u32,
    buf: &mut [u8; CHUNK],
    v: &mut Verifier,
) -> Result<HeaderRepr, LoadError> {
    read(flash, offset, &mut buf[..HEADER_SIZE])?;
    v.feed(&buf[..HEADER_SIZE])?;
    Ok(*v
        .header()
        .ok_or(LoadError::Blob(rota_blob::Error::Sequence))?)
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
    let mut v = Verifier::new();
    let header = start(flash, offset, &mut buf, &mut v)?;
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

/// Address of the image of the blob at storage `offset` (its header `header`) when the storage region
/// is mapped for execution at `mapped_base`: where the blob runs in place, and so the base a blob with
/// relocations is relocated for when it is staged. `None` if that overflows or is not 4-aligned.
pub fn in_place_base(mapped_base: u32, offset: u32, header: &HeaderRepr) -> Option<u32> {
    mapped_base
        .checked_add(offset)?
        .checked_add(header.image_offset())
        .filter(|b| b % 4 == 0)
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
    let mut v = Verifier::new();
    let header = start(flash, offset, &mut buf, &mut v)?;
    header.check_compatible(target.isa, target.abi_version, u32::MAX)?;
    let base = in_place_base(mapped_base, offset, &header)
        .filter(|_| header.reloc_count == 0)
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

/// What a blob is fed to as it is read: the next bytes in order; an error stops the reading.
pub type Sink<'a> = &'a mut dyn FnMut(&[u8]) -> Result<(), rota_blob::Error>;

/// Reads the blob at `offset`, stored relocated for `base` (each image word a relocation names holds
/// `relocate_word(word, base)`, every other byte is as built), as the blob it was built as: passes
/// `sink` all its bytes in order, from the header to the digest, each relocated word un-relocated
/// (`unrelocate_word`). Checks the header and every relocation (aligned, inside the image,
/// increasing) on the way, not the digest: the sink verifies or hashes what it gets. Returns the
/// header.
///
/// Un-relocating with another base than the one the words were relocated for changes every one of
/// them: whatever digest the sink checks then fails, which is what proves that the stored image was
/// relocated for exactly `base`.
pub fn read_as_built<F: ReadNorFlash>(
    flash: &mut F,
    offset: u32,
    base: u32,
    sink: Sink<'_>,
) -> Result<HeaderRepr, LoadError> {
    let mut buf = [0u8; CHUNK];
    let header = read_header(flash, offset, &mut buf)?;
    sink(&buf[..HEADER_SIZE])?;
    stream_as_built(flash, offset, &header, base, &mut buf, sink)?;
    Ok(header)
}

/// Verifies the blob at `offset`, stored relocated for its address in the flash mapping at
/// `mapped_base` ([`in_place_base`]), and returns it ready to run there: the header, ISA and ABI,
/// every relocation, the image with each relocated word un-relocated before it is hashed, the blob's
/// digest, and `file_digest`, the digest the store holds for the file (the SHA-256 of the whole blob
/// as built, checked against what the server announced when it was staged), which the blob as built
/// must have too. Nothing of the blob has run when this returns an error. The caller must keep the
/// blob's flash unchanged while it runs.
#[inline(never)]
pub fn verify_relocated_in_place<F: ReadNorFlash>(
    flash: &mut F,
    offset: u32,
    target: Target,
    mapped_base: u32,
    file_digest: &[u8; 32],
) -> Result<Loaded, LoadError> {
    let mut buf = [0u8; CHUNK];
    let header = read_header(flash, offset, &mut buf)?;
    header.check_compatible(target.isa, target.abi_version, u32::MAX)?;
    let base = in_place_base(mapped_base, offset, &header).ok_or(LoadError::TooLarge)?;
    // The verifier gets the very header bytes parsed above, then the rest.
    let mut v = Verifier::new();
    v.feed(&buf[..HEADER_SIZE])?;
    stream_as_built(flash, offset, &header, base, &mut buf, &mut |b| v.feed(b))?;
    let file = v.file_digest().unwrap_or_default();
    v.finish()?;
    // Compare without early exit.
    let diff = file
        .iter()
        .zip(file_digest)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(LoadError::Blob(rota_blob::Error::DigestMismatch));
    }
    let thumb = u32::from(header.isa == Isa::Thumbv7m);
    Ok(Loaded {
        header,
        base,
        entry: (base + header.entry_offset) | thumb,
    })
}

/// Reads and parses the header at `offset` (into the first bytes of `buf`).
fn read_header<F: ReadNorFlash>(
    flash: &mut F,
    offset: u32,
    buf: &mut [u8; CHUNK],
) -> Result<HeaderRepr, LoadError> {
    read(flash, offset, &mut buf[..HEADER_SIZE])?;
    Ok(HeaderRepr::parse(&Header::new_checked(
        &buf[..HEADER_SIZE],
    )?)?)
}

/// Reads relocation `index` of the blob at `offset` from flash and checks it against the image and
/// the previous one.
fn reloc_at<F: ReadNorFlash>(
    flash: &mut F,
    offset: u32,
    header: &HeaderRepr,
    index: u32,
    prev: Option<u32>,
) -> Result<u32, LoadError> {
    let mut word = [0u8; 4];
    read(
        flash,
        offset + header.relocs_offset() + 4 * index,
        &mut word,
    )?;
    let rel = u32::from_le_bytes(word);
    if rel % 4 != 0 || rel > header.image_size - 4 || prev.is_some_and(|p| rel <= p) {
        return Err(LoadError::Blob(rota_blob::Error::BadRelocation {
            index,
            offset: rel,
        }));
    }
    Ok(rel)
}

/// The body of [`read_as_built`] once `header` is known and its bytes went to `sink`: every later
/// byte of the blob at `offset`, from flash, to `sink`. Out of line and over a `dyn` sink: one copy
/// serves the boot's verification and the hash of a resumed transfer.
#[inline(never)]
fn stream_as_built<F: ReadNorFlash>(
    flash: &mut F,
    offset: u32,
    header: &HeaderRepr,
    base: u32,
    buf: &mut [u8; CHUNK],
    sink: Sink<'_>,
) -> Result<(), LoadError> {
    // The relocation table as stored (each relocation is checked again below).
    let mut pos = HEADER_SIZE as u32;
    while pos < header.image_offset() {
        let n = ((header.image_offset() - pos) as usize).min(CHUNK);
        read(flash, offset + pos, &mut buf[..n])?;
        sink(&buf[..n])?;
        pos += n as u32;
    }
    // Image: chunks of whole words from the image's start; each word a relocation names is
    // un-relocated before it goes on. Relocations are read one at a time, as they come.
    let mut index = 0;
    let mut next = match header.reloc_count {
        0 => None,
        _ => Some(reloc_at(flash, offset, header, 0, None)?),
    };
    while pos < header.digest_offset() {
        let n = ((header.digest_offset() - pos) as usize).min(CHUNK);
        read(flash, offset + pos, &mut buf[..n])?;
        let at = pos - header.image_offset();
        while let Some(rel) = next.filter(|&r| r < at + n as u32) {
            // `rel` >= `at` (increasing, and every earlier one was below this chunk), 4-aligned like
            // `at` and `n`: the word lies inside the chunk.
            let i = (rel - at) as usize;
            let w = u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
            buf[i..i + 4].copy_from_slice(&unrelocate_word(w, base).to_le_bytes());
            index += 1;
            next = match index < header.reloc_count {
                true => Some(reloc_at(flash, offset, header, index, Some(rel))?),
                false => None,
            };
        }
        sink(&buf[..n])?;
        pos += n as u32;
    }
    read(flash, offset + pos, &mut buf[..DIGEST_SIZE])?;
    sink(&buf[..DIGEST_SIZE])?;
    Ok(())
}
