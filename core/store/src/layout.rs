//! The on-flash formats: the config record and the extent header (see `docs/flash-layout.md`).
//!
//! Everything here works on bytes already read from flash, which are untrusted: parsing returns
//! `None` for anything malformed and never indexes outside its fixed-size buffers.

use crate::{checked_name, Name, CHUNK, NAME_MAX};

/// Bytes per sector (the unit of erase and of extent allocation).
pub const SECTOR: u32 = 4096;
/// Sectors at the start of the region that hold the two config record copies.
pub const CONFIG_SECTORS: u32 = 2;

/// The config record's magic (format 3: with the trial state).
pub const CONFIG_MAGIC: [u8; 4] = *b"RCF3";
/// Config record header: magic, seq, generation, boot_count, len (u16), zero (u16), then the trial
/// state (`docs/flash-layout.md`): confirmed, security version, rollback from and to (u32 each),
/// rollback reason and phase, trials, trial limit, flags, the last boot's end (reason, phase), zero
/// (u8 each).
pub const CONFIG_HEADER: u32 = 44;
/// The previous format's magic: read (as confirmed, security version 0, no trial), never written.
pub const CONFIG_MAGIC_V2: [u8; 4] = *b"RCF2";
/// The previous format's header (up to the zero field).
pub const CONFIG_HEADER_V2: u32 = 20;
// Config header offsets past the common part (0..20).
pub const C_CONFIRMED: usize = 20;
pub const C_SECURITY: usize = 24;
pub const C_RB_FROM: usize = 28;
pub const C_RB_TO: usize = 32;
pub const C_RB_REASON: usize = 36;
pub const C_RB_PHASE: usize = 37;
pub const C_TRIALS: usize = 38;
pub const C_LIMIT: usize = 39;
pub const C_FLAGS: usize = 40;
pub const C_ENDED_REASON: usize = 41;
pub const C_ENDED_PHASE: usize = 42;
pub const C_ZERO: usize = 43;
/// [`C_FLAGS`]: only the app may confirm the generation on trial.
pub const FLAG_NEEDS_APP: u8 = 1;

pub const FILE_MAGIC: [u8; 4] = *b"RFX1";
pub const KIND_FILE: u8 = 1;
pub const KIND_TOMBSTONE: u8 = 2;

// Extent header offsets.
/// The header's checksum word (CRC-32 of its kind to its end of the write-once part).
pub const H_CRC: usize = 4;
const H_KIND: usize = 8;
const H_NAME_LEN: usize = 9;
const H_ZERO: usize = 10;
const H_NAME: usize = 12;
const H_SIZE: usize = 44;
const H_VERSION: usize = 48;
/// The digest field.
pub const H_DIGEST: usize = 52;
const H_GEN: usize = 84;
const H_SECTORS: usize = 88;
const H_RESERVED: usize = 92;
/// End of the checksummed, write-once part of the header.
pub const H_FIXED: usize = 96;
/// The `verified` state word.
pub const H_VERIFIED: u32 = 96;
/// The `dead` state word.
pub const H_DEAD: u32 = 100;
/// The first progress word (one per [`CHUNK`] of data).
pub const H_PROGRESS: u32 = 104;
/// Bytes read to parse a header (fixed part and both state words).
pub const H_READ: usize = 104;
/// File data starts at a multiple of this from the extent's start.
pub const DATA_ALIGN: u32 = 64;

/// CRC-32 (IEEE 802.3, reflected) running update; start with `!0`, finish with `!crc`.
/// Bitwise on purpose: no table in `.rodata`, a few dozen bytes of code.
pub fn crc32(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    crc
}

pub fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(w) => u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
        None => 0,
    }
}

pub fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(w) = b.get_mut(at..at + 4) {
        w.copy_from_slice(&v.to_le_bytes());
    }
}

pub fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Number of progress words of a file of `size` bytes.
pub fn chunks(size: u32) -> u32 {
    size.div_ceil(CHUNK)
}

/// Bytes from the extent's start to its data: header, state words, progress words, aligned.
pub fn header_area(size: u32) -> u32 {
    // At most 104 + 4 * 2^22 bytes: fits in u32.
    align_up(
        u64::from(H_PROGRESS) + 4 * u64::from(chunks(size)),
        u64::from(DATA_ALIGN),
    ) as u32
}

/// Sectors an extent of `kind` holding `size` bytes occupies (`None` if it cannot fit in 32 bits).
pub fn sectors_for(kind: u8, size: u32) -> Option<u32> {
    if kind == KIND_TOMBSTONE {
        return Some(1);
    }
    let bytes = u64::from(header_area(size)) + u64::from(size);
    u32::try_from(bytes.div_ceil(u64::from(SECTOR))).ok()
}

/// A parsed, checked extent header.
#[derive(Clone, Copy)]
pub struct Entry {
    /// First sector of the extent.
    pub sector: u32,
    /// Sectors in the extent (at least 1; checked against the region's end).
    pub sectors: u32,
    pub tombstone: bool,
    pub name: Name,
    pub size: u32,
    pub version: u32,
    pub generation: u32,
    pub verified: bool,
    pub dead: bool,
}

impl Entry {
    /// A placeholder to parse into.
    pub const EMPTY: Entry = Entry {
        sector: 0,
        sectors: 1,
        tombstone: false,
        name: Name {
            len: 0,
            bytes: [0; NAME_MAX],
        },
        size: 0,
        version: 0,
        generation: 0,
        verified: false,
        dead: false,
    };

    /// One past the extent's last sector.
    pub fn end(&self) -> u32 {
        self.sector + self.sectors
    }
    /// Absolute offset of the extent's start.
    pub fn base(&self) -> u32 {
        self.sector * SECTOR
    }
    /// Absolute offset of the file data.
    pub fn data(&self) -> u32 {
        self.base() + header_area(self.size)
    }
}

/// Encodes the write-once part of a header (bytes `0..H_FIXED`), checksum included.
#[allow(clippy::too_many_arguments)]
pub fn encode_header(
    out: &mut [u8; H_READ],
    kind: u8,
    name: &Name,
    size: u32,
    version: u32,
    digest: &[u8; 32],
    generation: u32,
    sectors: u32,
) {
    *out = [0xFF; H_READ];
    out[..H_FIXED].fill(0);
    out[..4].copy_from_slice(&FILE_MAGIC);
    out[H_KIND] = kind;
    let n = name.as_bytes();
    out[H_NAME_LEN] = n.len() as u8;
    out[H_NAME..H_NAME + n.len()].copy_from_slice(n);
    put32(out, H_SIZE, size);
    put32(out, H_VERSION, version);
    out[H_DIGEST..H_DIGEST + 32].copy_from_slice(digest);
    put32(out, H_GEN, generation);
    put32(out, H_SECTORS, sectors);
    let crc = !crc32(!0, &out[H_KIND..H_FIXED]);
    put32(out, H_CRC, crc);
}

/// Parses the header bytes read at `sector` into `out`; false (and `out` unspecified) unless magic, checksum, kind, name, zero fields
/// and sector count are all right and the extent ends within `total` sectors.
pub fn parse_header(b: &[u8; H_READ], sector: u32, total: u32, out: &mut Entry) -> bool {
    if b[..4] != FILE_MAGIC || le32(b, H_CRC) != !crc32(!0, &b[H_KIND..H_FIXED]) {
        return false;
    }
    let kind = b[H_KIND];
    let len = usize::from(b[H_NAME_LEN]);
    if len > NAME_MAX
        || b[H_ZERO..H_NAME] != [0, 0]
        || le32(b, H_RESERVED) != 0
        || b[H_NAME + len..H_NAME + 32].iter().any(|&c| c != 0)
    {
        return false;
    }
    let Ok(name) = checked_name(&b[H_NAME..H_NAME + len]) else {
        return false;
    };
    let size = le32(b, H_SIZE);
    let sectors = le32(b, H_SECTORS);
    let ok_kind = kind == KIND_FILE || (kind == KIND_TOMBSTONE && size == 0);
    if !ok_kind
        || sectors_for(kind, size) != Some(sectors)
        || sector.checked_add(sectors).is_none_or(|end| end > total)
    {
        return false;
    }
    *out = Entry {
        sector,
        sectors,
        tombstone: kind == KIND_TOMBSTONE,
        name,
        size,
        version: le32(b, H_VERSION),
        generation: le32(b, H_GEN),
        // A state word counts as set only when fully cleared; `dead` is set by any cleared bit.
        verified: le32(b, H_VERIFIED as usize) == 0,
        dead: le32(b, H_DEAD as usize) != u32::MAX,
    };
    true
}
