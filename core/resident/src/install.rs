//! Relocation at install time: a blob that will run in place from the flash mapping is relocated for
//! its address there while it is staged, because NOR flash cannot be patched once written (bits only
//! go from 1 to 0).
//!
//! The store services write a staged file this way when all of these hold:
//! - its name is one the core loads as a blob (rota-limits' `BLOBS`: the overlays and the
//!   application), so no other file is ever changed;
//! - the board maps its storage region for execution ([`Board::xip_base`]);
//! - the file's first 48 bytes, once on flash, parse as a blob header (rota-blob's checked parser)
//!   with relocations, an image larger than the arena (so the loader will not copy it there) and a
//!   total size equal to the file's.
//!
//! Then every image word a relocation names is written as `relocate_word(word, base)`, where `base`
//! is [`rota_loader::in_place_base`] of the staged extent's data offset: the address the image will
//! have when it runs. Everything else (header, relocation table, the other image words, the digest)
//! is written as received. The relocation table comes before the image, so by the time an image byte
//! arrives the table is on flash: the relocations are read back from there one at a time, in order,
//! and nothing but a cursor is kept in RAM.
//!
//! The file's digest stays that of the blob as built: the services hash the bytes as received, and
//! a resumed transfer is hashed from flash with each relocated word un-relocated
//! ([`rota_loader::read_as_built`]). The loader checks the same way before anything runs
//! (`docs/overlay-format.md`, "Running in place").

use crate::{Board, Phase};
use embedded_storage::nor_flash::ReadNorFlash;
use rota_abi::{status, Name};
use rota_blob::{relocate_word, unrelocate_word, Header, HeaderRepr, HEADER_SIZE};
use rota_store::{Cursor, Staged, Staging, Store};
use sha2::{Digest, Sha256};

/// Bytes of a write patched in one piece (a stack buffer): relocations come in clusters (literal
/// pools, pointer tables), so one piece usually covers several.
const WINDOW: usize = 64;

/// How the core writes the file it is staging, as far as it knows yet.
pub(crate) struct Install {
    /// The staged file.
    name: Name,
    /// Offset of the staged file's first byte in the storage region.
    data: u32,
    /// Its size.
    size: u32,
    plan: Plan,
}

enum Plan {
    /// The header is not on flash yet: what comes before it is written as received.
    Unknown,
    /// Written exactly as received.
    AsReceived,
    /// Relocated for running in place.
    Relocate(Relocator),
}

/// Where a relocated file's image is going, and the next relocation to apply.
struct Relocator {
    /// The address the image runs at.
    base: u32,
    /// File offset of the image, and of its end (the digest).
    image: u32,
    end: u32,
    /// Relocations in the table.
    count: u32,
    /// The file offset the cursor below is right for (`u32::MAX`: not found yet).
    at: u32,
    /// The first relocation whose word is not completely written before `at` (`count`: none).
    index: u32,
    /// Its image offset.
    rel: u32,
}

/// Whether `name` is a file the core loads as a blob: a phase's overlay, or the application
/// (rota-limits' `BLOBS`, through the names the core already holds: no other table in RAM-resident
/// read-only data on the ESP8266).
fn is_blob_name(name: &[u8]) -> bool {
    name == crate::APP.as_bytes() || Phase::OVERLAYS.iter().any(|p| p.name().as_bytes() == name)
}

fn store_error(e: rota_store::Error) -> i32 {
    e.status()
}

/// The staged file named `name`, if there is one.
fn staged<F: embedded_storage::nor_flash::NorFlash>(
    store: &mut Store<F>,
    name: &[u8],
) -> Result<Option<Staged>, i32> {
    let mut cursor = Cursor::default();
    while let Some(s) = store.next_staged(&mut cursor).map_err(store_error)? {
        if !s.tombstone && s.name.as_bytes() == name {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

fn read<F: ReadNorFlash>(flash: &mut F, offset: u32, buf: &mut [u8]) -> Result<(), i32> {
    flash.read(offset, buf).map_err(|_| status::EIO)
}

fn read_word<F: ReadNorFlash>(flash: &mut F, offset: u32) -> Result<u32, i32> {
    let mut w = [0u8; 4];
    read(flash, offset, &mut w)?;
    Ok(u32::from_le_bytes(w))
}

/// Decides how the file whose first byte is at `data` (`size` bytes; at least its header on flash) is
/// written: relocated for running in place at the mapping `xip`, or as received.
fn plan<F: ReadNorFlash>(
    flash: &mut F,
    data: u32,
    size: u32,
    xip: u32,
    arena: u32,
) -> Result<Plan, i32> {
    let mut h = [0u8; HEADER_SIZE];
    read(flash, data, &mut h)?;
    let Ok(header) = Header::new_checked(&h[..]).and_then(|h| HeaderRepr::parse(&h)) else {
        return Ok(Plan::AsReceived);
    };
    let base = rota_loader::in_place_base(xip, data, &header);
    Ok(match base {
        Some(base)
            if header.reloc_count > 0
                && header.image_size > arena
                && header.total_size() == size =>
        {
            Plan::Relocate(Relocator {
                base,
                image: header.image_offset(),
                end: header.digest_offset(),
                count: header.reloc_count,
                at: u32::MAX,
                index: 0,
                rel: 0,
            })
        }
        _ => Plan::AsReceived,
    })
}

impl Relocator {
    /// Reads relocation `index` of the file at `data` and checks it: aligned, inside the image,
    /// after the previous one. A table that breaks these rules can never run: [`status::EINVAL`].
    fn reloc<F: ReadNorFlash>(
        &self,
        flash: &mut F,
        data: u32,
        index: u32,
        prev: Option<u32>,
    ) -> Result<u32, i32> {
        let rel = read_word(flash, data + HEADER_SIZE as u32 + 4 * index)?;
        let size = self.end - self.image;
        if rel % 4 != 0 || rel > size - 4 || prev.is_some_and(|p| rel <= p) {
            return Err(status::EINVAL);
        }
        Ok(rel)
    }

    /// Moves the cursor to the next relocation after the current one.
    fn advance<F: ReadNorFlash>(&mut self, flash: &mut F, data: u32) -> Result<(), i32> {
        self.index += 1;
        if self.index < self.count {
            self.rel = self.reloc(flash, data, self.index, Some(self.rel))?;
        }
        Ok(())
    }

    /// Finds the cursor for file offset `pos` (inside the image: the whole table is on flash), from
    /// the start of the table.
    fn seek<F: ReadNorFlash>(&mut self, flash: &mut F, data: u32, pos: u32) -> Result<(), i32> {
        self.index = 0;
        self.rel = self.reloc(flash, data, 0, None)?;
        while self.index < self.count && self.image + self.rel + 4 <= pos {
            self.advance(flash, data)?;
        }
        self.at = pos;
        Ok(())
    }

    /// File offset of the current relocation's word (`u32::MAX` when none is left).
    fn word(&self) -> u32 {
        match self.index < self.count {
            true => self.image + self.rel,
            false => u32::MAX,
        }
    }

    /// Patches `buf`, the bytes of the file from offset `pos`, for every relocation whose word meets
    /// it, advancing the cursor past each word that ends inside it. A word that began before `pos`
    /// (a write that ended inside it) has its first bytes on flash, already relocated: the original
    /// ones are recovered from them, since the low bytes of a sum depend only on the low bytes of its
    /// terms.
    fn patch<F: ReadNorFlash>(
        &mut self,
        flash: &mut F,
        data: u32,
        pos: u32,
        buf: &mut [u8],
    ) -> Result<(), i32> {
        let end = pos + buf.len() as u32;
        while self.word() < end {
            let w = self.word();
            let lo = w.max(pos);
            let hi = (w + 4).min(end);
            let before = (lo - w) as usize;
            let mut word = [0u8; 4];
            if before > 0 {
                let mask = u32::MAX >> (32 - 8 * before as u32);
                let written = read_word(flash, data + w)?;
                word = (unrelocate_word(written, self.base) & mask).to_le_bytes();
            }
            let part = &mut buf[(lo - pos) as usize..(hi - pos) as usize];
            word[before..before + part.len()].copy_from_slice(part);
            let patched = relocate_word(u32::from_le_bytes(word), self.base).to_le_bytes();
            part.copy_from_slice(&patched[before..before + part.len()]);
            if hi < w + 4 {
                // The word goes on in the next write.
                break;
            }
            self.advance(flash, data)?;
        }
        Ok(())
    }
}

/// The store write of staged file `name` at `offset`, as a status.
fn plain<F: embedded_storage::nor_flash::NorFlash>(
    store: &mut Store<F>,
    name: &[u8],
    offset: u32,
    data: &[u8],
) -> Result<(), i32> {
    store.stage_write(name, offset, data).map_err(store_error)
}

/// Writes `data` at `offset` of staged file `name` (the `stage_write` service), relocating it for
/// running in place if it is a blob that will (see the module documentation). `slot` keeps what is
/// known about the file between calls, and `staging` what the store knows (its extent and write
/// position: the store finds it again only if nothing else changed the store since); `arena` is the
/// arena's size in bytes.
pub(crate) fn write<B: Board>(
    board: &mut B,
    slot: &mut Option<Install>,
    staging: &mut Option<Staging>,
    arena: u32,
    name: &[u8],
    offset: u32,
    data: &[u8],
) -> Result<(), i32> {
    let xip = board.xip_base().filter(|_| B::RELOCATE_IN_PLACE);
    let mut store = Store::with_staging(&mut *board.flash(), staging.take());
    let r = match (xip, Name::new(name)) {
        (Some(xip), Some(n)) if !data.is_empty() && is_blob_name(name) => {
            let r = write_blob(&mut store, slot, n, xip, arena, offset, data);
            if r.is_err() {
                // Found again from flash by the next write.
                *slot = None;
            }
            if r == Err(status::EINVAL) {
                // A relocation table that can never run is not staged any further.
                let _ = store.stage_drop(name);
            }
            r
        }
        _ => plain(&mut store, name, offset, data),
    };
    *staging = store.staging();
    r
}

fn write_blob<F: embedded_storage::nor_flash::NorFlash>(
    store: &mut Store<F>,
    slot: &mut Option<Install>,
    name: Name,
    xip: u32,
    arena: u32,
    offset: u32,
    data: &[u8],
) -> Result<(), i32> {
    let install = match slot {
        Some(i) if i.name == name => i,
        _ => {
            let s = staged(store, name.as_bytes())?.ok_or(status::ENOENT)?;
            slot.insert(Install {
                name,
                data: s.data_offset,
                size: s.size,
                plan: Plan::Unknown,
            })
        }
    };
    let n = name.as_bytes();
    if u64::from(offset) + data.len() as u64 > u64::from(install.size) {
        // Past the file's end: the store refuses it.
        return plain(store, n, offset, data);
    }
    let (mut pos, mut rest) = (offset, data);
    let mut buf = [0u8; WINDOW];
    while !rest.is_empty() {
        let len = rest.len() as u32;
        let plain_len = match &mut install.plan {
            Plan::Unknown if pos < HEADER_SIZE as u32 => (HEADER_SIZE as u32 - pos).min(len),
            Plan::Unknown => {
                install.plan = plan(store.flash(), install.data, install.size, xip, arena)?;
                continue;
            }
            Plan::AsReceived => len,
            Plan::Relocate(r) if pos < r.image => (r.image - pos).min(len),
            Plan::Relocate(r) if pos >= r.end => len,
            Plan::Relocate(r) => {
                if r.at != pos {
                    r.seek(store.flash(), install.data, pos)?;
                }
                let w = r.word();
                if w >= pos + len {
                    len
                } else if w > pos {
                    w - pos
                } else {
                    // The current word begins here or before: patch a window from here.
                    let k = (len.min(r.end - pos) as usize).min(WINDOW);
                    buf[..k].copy_from_slice(&rest[..k]);
                    r.patch(store.flash(), install.data, pos, &mut buf[..k])?;
                    plain(store, n, pos, &buf[..k])?;
                    pos += k as u32;
                    rest = &rest[k..];
                    r.at = pos;
                    continue;
                }
            }
        };
        let (piece, tail) = rest.split_at(plain_len as usize);
        plain(store, n, pos, piece)?;
        pos += plain_len;
        rest = tail;
        if let Plan::Relocate(r) = &mut install.plan {
            if r.at != u32::MAX {
                r.at = pos;
            }
        }
    }
    Ok(())
}

/// For finishing staged file `name` when the services did not hash it as it was written (a resumed
/// transfer): `Ok(Some(digest))` with the SHA-256 of the file as received if it is stored relocated
/// (computed from flash, each relocated word un-relocated: [`rota_loader::read_as_built`]), `Ok(None)`
/// if the store can hash it from flash itself (stored as received, or not complete or not staged: the
/// store says which). A relocated file whose relocations cannot be read back as valid cannot be what
/// was sent: it is dropped ([`status::EDIGEST`]), and the next transfer starts from 0; one that reads
/// back but differs from what was sent fails the store's digest check and is dropped by it.
pub(crate) fn resumed_digest<B: Board>(
    board: &mut B,
    arena: u32,
    name: &[u8],
) -> Result<Option<[u8; 32]>, i32> {
    let Some(xip) = board
        .xip_base()
        .filter(|_| B::RELOCATE_IN_PLACE && is_blob_name(name))
    else {
        return Ok(None);
    };
    let Some((data, base)) = relocated_staged(board, xip, arena, name)? else {
        return Ok(None);
    };
    match hash_as_built(board.flash(), data, base) {
        Ok(digest) => Ok(Some(digest)),
        Err(rota_loader::LoadError::Flash(_)) => Err(status::EIO),
        Err(_) => {
            let _ = Store::new(&mut *board.flash()).stage_drop(name);
            Err(status::EDIGEST)
        }
    }
}

/// The data offset of staged file `name` and the base it is relocated for (the storage region being
/// mapped at `xip`), if it is a complete, unverified file stored relocated. Out of line, as [`hash_as_built`] is: the scan's buffers and the
/// hasher are never on the stack together.
#[inline(never)]
fn relocated_staged<B: Board>(
    board: &mut B,
    xip: u32,
    arena: u32,
    name: &[u8],
) -> Result<Option<(u32, u32)>, i32> {
    let mut store = Store::new(&mut *board.flash());
    let s = match staged(&mut store, name)? {
        Some(s) if !s.verified && s.done == s.size && s.size >= HEADER_SIZE as u32 => s,
        _ => return Ok(None),
    };
    Ok(
        match plan(store.flash(), s.data_offset, s.size, xip, arena)? {
            Plan::Relocate(r) => Some((s.data_offset, r.base)),
            _ => None,
        },
    )
}

/// SHA-256 of the blob at `data` read as built (as the loader reads it at boot: one instance of that
/// code in a firmware).
#[inline(never)]
fn hash_as_built<F: ReadNorFlash>(
    flash: &mut F,
    data: u32,
    base: u32,
) -> Result<[u8; 32], rota_loader::LoadError> {
    let mut hasher = Sha256::new();
    rota_loader::read_as_built(flash, data, base, &mut |b| {
        hasher.update(b);
        Ok(())
    })?;
    Ok(hasher.finalize().into())
}
