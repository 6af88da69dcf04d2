//! Power-fail-safe store of named files and a double config record on NOR flash.
//!
//! The store works on any [`NorFlash`] region (offsets from 0 to `capacity()`, 4 KB sectors, writes of
//! at most 4 bytes' granularity, erase sets `0xFF`, writes only clear bits). It keeps no directory in
//! RAM: every call reads the config record and scans the extent headers again, so a [`Store`] is a
//! few bytes and can be created per call. `docs/flash-layout.md` describes the layout and the commit
//! scheme; in short:
//!
//! - sectors 0 and 1 hold two copies of the config record (sequence number, committed *generation*,
//!   boot count, an opaque payload); the valid copy with the higher sequence number is current, and a
//!   new record always overwrites the other copy;
//! - sectors 2.. hold file extents: a header (name, size, version, SHA-256, generation, state words)
//!   followed by the file's bytes, contiguous;
//! - an update stages files at generation `committed + 1` ([`Store::stage_begin`],
//!   [`Store::stage_write`], [`Store::stage_finish`], [`Store::stage_delete`], [`Store::stage_rename`])
//!   and [`Store::commit`] makes all of them live at once by writing one config record;
//! - [`Store::gc`] erases what is no longer reachable, tail sector first.
//!
//! Every byte read from flash is untrusted: malformed headers are skipped, malformed config copies
//! ignored, and no flash content can make a call panic or index out of bounds.
#![no_std]
#![deny(missing_docs)]

mod layout;

use core::fmt;

use embedded_storage::nor_flash::NorFlash;
use layout::{
    crc32, le32, put32, Entry, CONFIG_HEADER, CONFIG_MAGIC, CONFIG_SECTORS, FILE_MAGIC, H_DEAD,
    H_FIXED, H_PROGRESS, H_READ, H_VERIFIED, KIND_FILE, KIND_TOMBSTONE, SECTOR,
};
use sha2::compress256;

/// SHA-256 initial hash value (FIPS 180-4, 5.3.3).
const SHA256_INIT: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

pub use layout::{header_area, DATA_ALIGN};

/// Bytes of file data per progress word: the granularity of resuming an interrupted transfer.
pub const CHUNK: u32 = 1024;
/// Longest file name, in bytes.
pub use rota_limits::NAME_MAX;
/// Largest config payload, in bytes (the core's config record).
pub use rota_limits::RECORD_MAX as CONFIG_MAX;
/// Bytes per sector: the unit of erase and of extent allocation.
pub const SECTOR_SIZE: u32 = SECTOR;

/// Size of the stack buffers used to stream data through (reads, compares, hashing).
const BUF: usize = 64;

/// Everything a store operation can report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The flash driver failed a read, write or erase.
    Flash,
    /// Neither config copy is valid: the store was never formatted (or both copies are damaged).
    NoConfig,
    /// A name longer than [`NAME_MAX`] bytes.
    NameTooLong,
    /// An empty name, a name containing a NUL byte, or a rename onto itself.
    BadName,
    /// A file that could never fit in the region.
    TooLarge,
    /// A config payload over [`CONFIG_MAX`] bytes.
    PayloadTooLong,
    /// No contiguous free room for the extent, even after garbage collection.
    NoSpace,
    /// No such (live or staged, as the call needs) file.
    NotFound,
    /// A write at another offset than the staged file's current progress.
    OutOfOrder,
    /// `stage_finish` before all bytes of the file were written.
    Incomplete,
    /// The data's SHA-256 is not the announced digest; the staged file was dropped.
    DigestMismatch,
    /// Data read back after writing differs from what was written; the staged file was dropped.
    Readback,
    /// Flash contents are inconsistent (e.g. a live file whose data no longer matches its digest).
    Corrupt,
}

impl Error {
    /// A short human-readable description.
    pub fn describe(&self) -> &'static str {
        match self {
            Error::Flash => "flash operation failed",
            Error::NoConfig => "no valid config record",
            Error::NameTooLong => "name too long",
            Error::BadName => "bad name",
            Error::TooLarge => "file larger than the region",
            Error::PayloadTooLong => "config payload too long",
            Error::NoSpace => "no space left",
            Error::NotFound => "no such file",
            Error::OutOfOrder => "write out of order",
            Error::Incomplete => "file incomplete",
            Error::DigestMismatch => "digest mismatch",
            Error::Readback => "read-back mismatch",
            Error::Corrupt => "flash contents corrupt",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A file name: 1 to [`NAME_MAX`] bytes, no NUL byte.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    len: u8,
    bytes: [u8; NAME_MAX],
}

impl Name {
    /// Checks and copies `name`.
    pub fn new(name: &[u8]) -> Result<Name, Error> {
        if name.len() > NAME_MAX {
            return Err(Error::NameTooLong);
        }
        if name.is_empty() || name.contains(&0) {
            return Err(Error::BadName);
        }
        let mut bytes = [0; NAME_MAX];
        bytes[..name.len()].copy_from_slice(name);
        Ok(Name {
            len: name.len() as u8,
            bytes,
        })
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(NAME_MAX)]
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => fmt::Debug::fmt(s, f),
            Err(_) => fmt::Debug::fmt(self.as_bytes(), f),
        }
    }
}

/// The current config record, as [`Store::config`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigInfo {
    /// Sequence number of the record (every record write increments it).
    pub seq: u32,
    /// Committed generation: files staged at a higher generation are not live.
    pub generation: u32,
    /// Boot count, as [`Store::bump_boot`] last persisted it.
    pub boot_count: u32,
    /// Full payload length (the caller's buffer may have received fewer bytes).
    pub len: usize,
}

/// A live file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct File {
    /// Its name.
    pub name: Name,
    /// Its size in bytes.
    pub size: u32,
    /// The version the server gave it.
    pub version: u32,
    /// SHA-256 of its contents.
    pub digest: [u8; 32],
    /// Offset of its first byte in the storage region; the bytes are contiguous.
    pub data_offset: u32,
    /// The generation that committed it.
    pub generation: u32,
}

/// A staged entry (written at generation committed + 1), as [`Store::next_staged`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staged {
    /// Its name.
    pub name: Name,
    /// A tombstone: commit deletes `name`.
    pub tombstone: bool,
    /// Announced size in bytes (0 for a tombstone).
    pub size: u32,
    /// Announced version.
    pub version: u32,
    /// Announced SHA-256.
    pub digest: [u8; 32],
    /// Bytes written and read back so far, from which a transfer resumes (`size` once verified).
    pub done: u32,
    /// The whole file was written and its digest checked: commit makes it live.
    pub verified: bool,
}

/// Position of an iteration over the store ([`Store::next_file`], [`Store::next_staged`]); start
/// with `Cursor::default()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    sector: u32,
}

/// Where the last `stage_write` of this `Store` value ended (RAM only, a hint for sub-chunk writes).
#[derive(Clone, Copy)]
struct WritePos {
    sector: u32,
    pos: u32,
}

/// The current config record copy.
#[derive(Clone, Copy)]
struct Cfg {
    slot: u32,
    seq: u32,
    generation: u32,
    boot_count: u32,
    len: u32,
}

/// Where a config record's payload comes from.
enum Payload<'a> {
    Bytes(&'a [u8]),
    /// Copied from the other slot's current record.
    Keep(Cfg),
}

/// The file store over a NOR flash region. Holds the flash and a few bytes; no heap, no directory.
pub struct Store<F> {
    flash: F,
    pos: Option<WritePos>,
}

/// Whether `e` may be live at committed generation `g`: intact, verified, not dead, not in the future.
fn candidate(e: &Entry, g: u32) -> bool {
    !e.dead && e.verified && e.generation <= g
}

/// Whether `e` is staged for the commit after `g`.
fn staged(e: &Entry, g: u32) -> bool {
    !e.dead && u64::from(e.generation) == u64::from(g) + 1
}

/// Whether `e` can never become live nor matter again (dead, abandoned, or from the future).
fn junk(e: &Entry, g: u32) -> bool {
    e.dead || (e.generation <= g && !e.verified) || u64::from(e.generation) > u64::from(g) + 1
}

/// Whether staged `e` is a tombstone that commit will honour. A tombstone is written in one write with
/// its `verified` word already cleared; if power failed in that word, the header is intact but the
/// tombstone unverified, so commit would not delete anything: it must be replaced, not kept.
fn whole_tombstone(e: &Entry) -> bool {
    e.tombstone && e.verified
}

/// Among candidates of one name, the higher generation wins, then the lower sector.
fn beats(a: &Entry, b: &Entry) -> bool {
    a.generation > b.generation || (a.generation == b.generation && a.sector < b.sector)
}

impl<F: NorFlash> Store<F> {
    /// Wraps `flash` (the storage region). Nothing is read until a call needs it.
    pub fn new(flash: F) -> Self {
        const {
            assert!(
                (SECTOR as usize).is_multiple_of(F::ERASE_SIZE),
                "erase size must divide 4096"
            );
            assert!(
                4usize.is_multiple_of(F::WRITE_SIZE),
                "write size must divide 4"
            );
            assert!(
                4usize.is_multiple_of(F::READ_SIZE),
                "read size must divide 4"
            );
        }
        Store { flash, pos: None }
    }

    /// The flash, e.g. for a loader that reads a file's data in place.
    pub fn flash(&mut self) -> &mut F {
        &mut self.flash
    }

    /// Gives the flash back.
    pub fn into_inner(self) -> F {
        self.flash
    }

    // ---- raw flash access ------------------------------------------------------------------

    /// Sectors in the region (bounded so that every offset fits in a `u32`).
    fn total(&self) -> u32 {
        let n = self.flash.capacity() / SECTOR as usize;
        n.min((u32::MAX / SECTOR) as usize) as u32
    }

    fn rd(&mut self, off: u32, buf: &mut [u8]) -> Result<(), Error> {
        if F::READ_SIZE <= 1 {
            return self.flash.read(off, buf).map_err(|_| Error::Flash);
        }
        // Reads through an aligned bounce buffer for drivers that need aligned reads.
        let rs = F::READ_SIZE as u32;
        let mut b = [0u8; BUF];
        let mut done = 0;
        while done < buf.len() {
            let at = off.checked_add(done as u32).ok_or(Error::Flash)?;
            let skip = (at % rs) as usize;
            let n = (BUF - skip).min(buf.len() - done);
            let len = (skip + n).div_ceil(rs as usize) * rs as usize;
            self.flash
                .read(at - skip as u32, &mut b[..len])
                .map_err(|_| Error::Flash)?;
            buf[done..done + n].copy_from_slice(&b[skip..skip + n]);
            done += n;
        }
        Ok(())
    }

    /// Programs `data` at any offset: unaligned head and tail go as 4-byte words padded with `0xFF`,
    /// which leaves the neighbouring bytes as they are.
    fn program(&mut self, mut off: u32, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let skip = (off % 4) as usize;
            let n = if skip != 0 || data.len() < 4 {
                let n = (4 - skip).min(data.len());
                let mut w = [0xFF; 4];
                w[skip..skip + n].copy_from_slice(&data[..n]);
                self.flash
                    .write(off - skip as u32, &w)
                    .map_err(|_| Error::Flash)?;
                n
            } else {
                let n = data.len() & !3;
                self.flash
                    .write(off, &data[..n])
                    .map_err(|_| Error::Flash)?;
                n
            };
            off += n as u32;
            data = &data[n..];
        }
        Ok(())
    }

    /// Whether flash at `off` holds exactly `data`.
    fn same(&mut self, off: u32, data: &[u8]) -> Result<bool, Error> {
        let mut b = [0u8; BUF];
        for (i, want) in data.chunks(BUF).enumerate() {
            let got = &mut b[..want.len()];
            self.rd(off + (i * BUF) as u32, got)?;
            if got != want {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Erases sectors `start..end` one by one from the last to the first, so that an interrupted
    /// erase never leaves a later sector of an extent without the extent's header in front of it.
    ///
    /// A file sector that starts with the header magic is *killed* first: its magic programmed to
    /// zero, which can never parse. An erase cut short can leave any part of a sector as it was, in
    /// particular a header and its `verified` word with the `dead` word already erased (an erase that
    /// proceeds from the top), which would bring a dropped entry back. After the kill, a partly done
    /// erase leaves each byte of the magic zero or `0xFF`, never the magic (and noise fails the
    /// checksum), so no partly erased sector is taken for a header. The tail-first order still
    /// holds: an extent's header is killed only once all its later sectors are erased.
    fn erase_back(&mut self, start: u32, end: u32) -> Result<(), Error> {
        for s in (start..end).rev() {
            let base = s * SECTOR;
            if s >= CONFIG_SECTORS {
                let mut magic = [0u8; 4];
                self.rd(base, &mut magic)?;
                if magic == FILE_MAGIC {
                    self.program(base, &[0; 4])?;
                }
            }
            self.flash
                .erase(base, base + SECTOR)
                .map_err(|_| Error::Flash)?;
        }
        Ok(())
    }

    // ---- config record ---------------------------------------------------------------------

    /// The record in `slot` if it is intact.
    #[inline(never)]
    fn load_slot(&mut self, slot: u32) -> Result<Option<Cfg>, Error> {
        let base = slot * SECTOR;
        let mut h = [0u8; CONFIG_HEADER as usize];
        self.rd(base, &mut h)?;
        let len = u32::from(u16::from_le_bytes([h[16], h[17]]));
        if h[..4] != CONFIG_MAGIC || len as usize > CONFIG_MAX || h[18..20] != [0, 0] {
            return Ok(None);
        }
        let mut crc = crc32(!0, &h);
        let mut b = [0u8; BUF];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(BUF as u32) as usize;
            self.rd(base + CONFIG_HEADER + at, &mut b[..n])?;
            crc = crc32(crc, &b[..n]);
            at += n as u32;
        }
        let mut c = [0u8; 4];
        self.rd(base + (CONFIG_HEADER + len).next_multiple_of(4), &mut c)?;
        if u32::from_le_bytes(c) != !crc {
            return Ok(None);
        }
        Ok(Some(Cfg {
            slot,
            seq: le32(&h, 4),
            generation: le32(&h, 8),
            boot_count: le32(&h, 12),
            len,
        }))
    }

    /// The current record: the intact copy with the higher sequence number (serial arithmetic).
    fn current(&mut self) -> Result<Cfg, Error> {
        if self.total() <= CONFIG_SECTORS {
            return Err(Error::NoConfig);
        }
        match (self.load_slot(0)?, self.load_slot(1)?) {
            (Some(a), Some(b)) if (b.seq.wrapping_sub(a.seq) as i32) > 0 => Ok(b),
            (Some(a), _) => Ok(a),
            (None, Some(b)) => Ok(b),
            (None, None) => Err(Error::NoConfig),
        }
    }

    fn generation(&mut self) -> Result<u32, Error> {
        Ok(self.current()?.generation)
    }

    /// Writes a whole record into `slot` (erase, header, payload, checksum last), then checks it.
    fn write_record(
        &mut self,
        slot: u32,
        seq: u32,
        generation: u32,
        boot_count: u32,
        payload: Payload<'_>,
    ) -> Result<(), Error> {
        let len = match payload {
            Payload::Bytes(p) if p.len() > CONFIG_MAX => return Err(Error::PayloadTooLong),
            Payload::Bytes(p) => p.len() as u32,
            Payload::Keep(c) => c.len,
        };
        let base = slot * SECTOR;
        let mut h = [0u8; CONFIG_HEADER as usize];
        h[..4].copy_from_slice(&CONFIG_MAGIC);
        put32(&mut h, 4, seq);
        put32(&mut h, 8, generation);
        put32(&mut h, 12, boot_count);
        h[16..18].copy_from_slice(&(len as u16).to_le_bytes());
        self.erase_back(slot, slot + 1)?;
        self.program(base, &h)?;
        let mut crc = crc32(!0, &h);
        match payload {
            Payload::Bytes(p) => {
                self.program(base + CONFIG_HEADER, p)?;
                crc = crc32(crc, p);
            }
            Payload::Keep(c) => {
                let mut b = [0u8; BUF];
                let mut at = 0;
                while at < len {
                    let n = (len - at).min(BUF as u32) as usize;
                    self.rd(c.slot * SECTOR + CONFIG_HEADER + at, &mut b[..n])?;
                    self.program(base + CONFIG_HEADER + at, &b[..n])?;
                    crc = crc32(crc, &b[..n]);
                    at += n as u32;
                }
            }
        }
        self.program(
            base + (CONFIG_HEADER + len).next_multiple_of(4),
            &(!crc).to_le_bytes(),
        )?;
        match self.load_slot(slot)? {
            Some(c) if c.seq == seq => Ok(()),
            _ => Err(Error::Readback),
        }
    }

    /// Writes a successor of the current record `c` into the other slot.
    fn next_record(
        &mut self,
        c: Cfg,
        generation: u32,
        boot_count: u32,
        payload: Option<&[u8]>,
    ) -> Result<(), Error> {
        let p = payload.map_or(Payload::Keep(c), Payload::Bytes);
        self.write_record(1 - c.slot, c.seq.wrapping_add(1), generation, boot_count, p)
    }

    /// Erases the whole region and writes a config record with generation 0, sequence 1, boot
    /// count 0 and `payload`. Every file is gone.
    pub fn format(&mut self, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > CONFIG_MAX {
            return Err(Error::PayloadTooLong);
        }
        let total = self.total();
        if total <= CONFIG_SECTORS {
            return Err(Error::NoSpace);
        }
        self.pos = None;
        self.erase_back(1, total)?;
        self.write_record(0, 1, 0, 0, Payload::Bytes(payload))
    }

    /// Copies the current config payload into `buf` (as much as fits) and describes the record.
    /// [`Error::NoConfig`] if neither copy is intact.
    pub fn config(&mut self, buf: &mut [u8]) -> Result<ConfigInfo, Error> {
        let c = self.current()?;
        let n = buf.len().min(c.len as usize);
        self.rd(c.slot * SECTOR + CONFIG_HEADER, &mut buf[..n])?;
        Ok(ConfigInfo {
            seq: c.seq,
            generation: c.generation,
            boot_count: c.boot_count,
            len: c.len as usize,
        })
    }

    /// Persists boot count + 1 (same generation and payload) and returns it once it is on flash.
    pub fn bump_boot(&mut self) -> Result<u32, Error> {
        let c = self.current()?;
        let boot = c.boot_count.wrapping_add(1);
        self.next_record(c, c.generation, boot, None)?;
        Ok(boot)
    }

    /// Replaces the config payload, keeping the generation and boot count.
    pub fn write_config(&mut self, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > CONFIG_MAX {
            return Err(Error::PayloadTooLong);
        }
        let c = self.current()?;
        self.next_record(c, c.generation, c.boot_count, Some(payload))
    }

    // ---- scanning --------------------------------------------------------------------------

    /// The first intact extent header at sector `s` or after it. Extents are skipped whole by the
    /// caller (it continues from [`Entry::end`]); sectors without a header one at a time.
    fn next_entry(&mut self, mut s: u32, out: &mut Entry) -> Result<bool, Error> {
        let total = self.total();
        s = s.max(CONFIG_SECTORS);
        while s < total {
            if self.entry_at(s, total, out)? {
                return Ok(true);
            }
            s += 1;
        }
        Ok(false)
    }

    /// Reads and checks the header at sector `s` into `out`; whether it is intact.
    #[inline(always)]
    fn entry_at(&mut self, s: u32, total: u32, out: &mut Entry) -> Result<bool, Error> {
        let mut b = [0u8; H_READ];
        self.rd(s * SECTOR, &mut b)?;
        Ok(layout::parse_header(&b, s, total, out))
    }

    /// The digest field of `e`'s header (not kept in [`Entry`] to keep scans' stack frames small).
    fn digest(&mut self, e: &Entry) -> Result<[u8; 32], Error> {
        let mut d = [0; 32];
        self.rd(e.base() + layout::H_DIGEST as u32, &mut d)?;
        Ok(d)
    }

    fn file(&mut self, e: &Entry) -> Result<File, Error> {
        Ok(File {
            name: e.name,
            size: e.size,
            version: e.version,
            digest: self.digest(e)?,
            data_offset: e.data(),
            generation: e.generation,
        })
    }

    /// Whether candidate `e` is the one that counts for its name (no better candidate exists).
    fn wins(&mut self, e: &Entry, g: u32) -> Result<bool, Error> {
        let mut s = 0;
        let mut x = Entry::EMPTY;
        while self.next_entry(s, &mut x)? {
            s = x.end();
            if x.sector != e.sector && candidate(&x, g) && x.name == e.name && beats(&x, e) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The winning candidate for `name` (a file or a tombstone), if any.
    fn winner(&mut self, name: &Name, g: u32) -> Result<Option<Entry>, Error> {
        let mut best: Option<Entry> = None;
        let mut s = 0;
        let mut x = Entry::EMPTY;
        while self.next_entry(s, &mut x)? {
            s = x.end();
            if candidate(&x, g) && x.name == *name && best.is_none_or(|b| beats(&x, &b)) {
                best = Some(x);
            }
        }
        Ok(best)
    }

    fn live(&mut self, name: &Name, g: u32) -> Result<Option<Entry>, Error> {
        Ok(self.winner(name, g)?.filter(|e| !e.tombstone))
    }

    /// The first staged entry named `name` whose kind is a tombstone iff `tombstone`.
    fn staged_entry(
        &mut self,
        name: &Name,
        tombstone: bool,
        g: u32,
    ) -> Result<Option<Entry>, Error> {
        let mut s = 0;
        let mut x = Entry::EMPTY;
        while self.next_entry(s, &mut x)? {
            s = x.end();
            if staged(&x, g) && x.name == *name && x.tombstone == tombstone {
                return Ok(Some(x));
            }
        }
        Ok(None)
    }

    /// Bytes of `e` written and read back, from its progress words (`size` if verified).
    fn progress(&mut self, e: &Entry) -> Result<u32, Error> {
        if e.verified {
            return Ok(e.size);
        }
        let n = layout::chunks(e.size);
        let mut b = [0u8; BUF];
        let mut done = 0;
        'words: while done < n {
            let k = (n - done).min(BUF as u32 / 4);
            let words = &mut b[..k as usize * 4];
            self.rd(e.base() + H_PROGRESS + done * 4, words)?;
            for w in words.as_chunks::<4>().0 {
                if *w != [0; 4] {
                    break 'words;
                }
                done += 1;
            }
        }
        Ok((u64::from(done) * u64::from(CHUNK)).min(u64::from(e.size)) as u32)
    }

    // ---- reading ---------------------------------------------------------------------------

    /// The live file named `name`, if any.
    pub fn find(&mut self, name: &[u8]) -> Result<Option<File>, Error> {
        let name = Name::new(name)?;
        let g = self.generation()?;
        match self.live(&name, g)? {
            Some(e) => self.file(&e).map(Some),
            None => Ok(None),
        }
    }

    /// The next live file after `cursor` (in flash order), advancing it; `None` at the end.
    pub fn next_file(&mut self, cursor: &mut Cursor) -> Result<Option<File>, Error> {
        let g = self.generation()?;
        let mut e = Entry::EMPTY;
        while self.next_entry(cursor.sector, &mut e)? {
            cursor.sector = e.end();
            if !e.tombstone && candidate(&e, g) && self.wins(&e, g)? {
                return self.file(&e).map(Some);
            }
        }
        cursor.sector = self.total();
        Ok(None)
    }

    /// The next staged entry (file or tombstone) after `cursor`, advancing it; `None` at the end.
    pub fn next_staged(&mut self, cursor: &mut Cursor) -> Result<Option<Staged>, Error> {
        let g = self.generation()?;
        let mut e = Entry::EMPTY;
        while self.next_entry(cursor.sector, &mut e)? {
            cursor.sector = e.end();
            if staged(&e, g) {
                return Ok(Some(Staged {
                    name: e.name,
                    tombstone: e.tombstone,
                    size: e.size,
                    version: e.version,
                    digest: self.digest(&e)?,
                    done: self.progress(&e)?,
                    verified: e.verified,
                }));
            }
        }
        cursor.sector = self.total();
        Ok(None)
    }

    /// Reads `file`'s bytes from `offset` into `buf`; returns how many (fewer at the end of the file,
    /// 0 at or past it).
    pub fn read(&mut self, file: &File, offset: u32, buf: &mut [u8]) -> Result<usize, Error> {
        let left = file.size.saturating_sub(offset) as usize;
        let n = left.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let at = file.data_offset.checked_add(offset).ok_or(Error::Corrupt)?;
        self.rd(at, &mut buf[..n])?;
        Ok(n)
    }

    // ---- staging ---------------------------------------------------------------------------

    fn kill(&mut self, e: &Entry) -> Result<(), Error> {
        if self.pos.is_some_and(|p| p.sector == e.sector) {
            self.pos = None;
        }
        self.program(e.base() + H_DEAD, &[0; 4])
    }

    /// Kills every staged entry named `name` except the first one `keep` accepts, which it returns.
    #[inline(never)]
    fn kill_staged(
        &mut self,
        name: &Name,
        g: u32,
        mut keep: impl FnMut(&mut Self, &Entry) -> Result<bool, Error>,
    ) -> Result<(Option<Entry>, bool), Error> {
        let mut kept = None;
        let mut killed = false;
        let mut s = 0;
        let mut e = Entry::EMPTY;
        while self.next_entry(s, &mut e)? {
            s = e.end();
            if staged(&e, g) && e.name == *name {
                if kept.is_none() && keep(self, &e)? {
                    kept = Some(e);
                } else {
                    self.kill(&e)?;
                    killed = true;
                }
            }
        }
        Ok((kept, killed))
    }

    /// Finds `need` contiguous free sectors (unclaimed sectors and whole junk extents), erases them
    /// (and the rest of the last junk extent they cut into) tail first, and returns the first one.
    fn alloc(&mut self, need: u32, g: u32) -> Result<Option<u32>, Error> {
        let total = self.total();
        let mut run = None;
        let mut s = CONFIG_SECTORS;
        while s < total {
            let mut e = Entry::EMPTY;
            let (end, free) = match self.entry_at(s, total, &mut e)? {
                true => (e.end(), junk(&e, g)),
                false => (s + 1, true),
            };
            if free {
                let start = *run.get_or_insert(s);
                if end - start >= need {
                    self.erase_back(start, end)?;
                    return Ok(Some(start));
                }
            } else {
                run = None;
            }
            s = end;
        }
        Ok(None)
    }

    /// Allocates and erases an extent, collecting garbage first if needed.
    fn alloc_or_gc(&mut self, need: u32, g: u32) -> Result<u32, Error> {
        if let Some(s) = self.alloc(need, g)? {
            return Ok(s);
        }
        self.collect(g)?;
        self.alloc(need, g)?.ok_or(Error::NoSpace)
    }

    /// Allocates an extent and writes its header (one write; `verified` set in it for tombstones).
    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        kind: u8,
        name: &Name,
        size: u32,
        version: u32,
        digest: &[u8; 32],
        g: u32,
    ) -> Result<Entry, Error> {
        let total = self.total();
        let need = layout::sectors_for(kind, size)
            .filter(|&n| n <= total.saturating_sub(CONFIG_SECTORS))
            .ok_or(Error::TooLarge)?;
        let generation = g.checked_add(1).ok_or(Error::Corrupt)?;
        let start = self.alloc_or_gc(need, g)?;
        self.write_header(start, kind, name, size, version, digest, generation, need)
    }

    /// Writes a header at `start` (kept out of [`Store::create`] so that its buffer is not on the
    /// stack while garbage is collected) and reads it back.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn write_header(
        &mut self,
        start: u32,
        kind: u8,
        name: &Name,
        size: u32,
        version: u32,
        digest: &[u8; 32],
        generation: u32,
        need: u32,
    ) -> Result<Entry, Error> {
        let mut h = [0u8; H_READ];
        layout::encode_header(&mut h, kind, name, size, version, digest, generation, need);
        let len = if kind == KIND_TOMBSTONE {
            h[H_VERIFIED as usize..H_DEAD as usize].fill(0);
            H_DEAD as usize
        } else {
            H_FIXED
        };
        self.program(start * SECTOR, &h[..len])?;
        let mut e = Entry::EMPTY;
        match self.entry_at(start, self.total(), &mut e)? {
            true => Ok(e),
            false => Err(Error::Readback),
        }
    }

    /// Writes `data` at byte `pos` of staged file `e` (`pos + data.len() <= e.size`), reading each
    /// piece back and clearing a progress word whenever a chunk (or the file) is complete.
    fn write_data(&mut self, e: &Entry, mut pos: u32, mut data: &[u8]) -> Result<(), Error> {
        let base = e.data();
        while !data.is_empty() {
            let chunk_end = ((pos / CHUNK + 1) * CHUNK).min(e.size);
            let n = data.len().min((chunk_end - pos) as usize);
            let (piece, rest) = data.split_at(n);
            self.program(base + pos, piece)?;
            if !self.same(base + pos, piece)? {
                self.kill(e)?;
                return Err(Error::Readback);
            }
            pos += n as u32;
            data = rest;
            if pos == chunk_end {
                self.program(e.base() + H_PROGRESS + 4 * ((pos - 1) / CHUNK), &[0; 4])?;
            }
            self.pos = Some(WritePos {
                sector: e.sector,
                pos,
            });
        }
        Ok(())
    }

    /// SHA-256 of `len` bytes of flash from `off`, a block at a time straight into the compression
    /// function (the hasher object with its own buffer would take twice the stack).
    #[inline(never)]
    fn hash(&mut self, off: u32, len: u32) -> Result<[u8; 32], Error> {
        let mut state = SHA256_INIT;
        let mut block = [0u8; 64];
        let mut at = 0;
        loop {
            let n = (len - at).min(64) as usize;
            self.rd(off + at, &mut block[..n])?;
            at += n as u32;
            if n < 64 {
                // Padding: 0x80, zeros, bit length (big-endian) in the last 8 bytes of a block.
                block[n] = 0x80;
                block[n + 1..].fill(0);
                if n >= 56 {
                    compress256(&mut state, &[block.into()]);
                    block.fill(0);
                }
                block[56..].copy_from_slice(&(u64::from(len) * 8).to_be_bytes());
                compress256(&mut state, &[block.into()]);
                break;
            }
            compress256(&mut state, &[block.into()]);
        }
        let mut out = [0u8; 32];
        for (o, w) in out.as_chunks_mut::<4>().0.iter_mut().zip(state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        Ok(out)
    }

    /// Hashes `e`'s data from flash and marks it verified if it matches; kills it otherwise.
    fn verify(&mut self, e: &Entry) -> Result<(), Error> {
        if self.hash(e.data(), e.size)? != self.digest(e)? {
            self.kill(e)?;
            return Err(Error::DigestMismatch);
        }
        self.program(e.base() + H_VERIFIED, &[0; 4])
    }

    /// Starts (or resumes) staging file `name` of `size` bytes with SHA-256 `digest`; returns the
    /// offset to continue from. A staged, not dropped entry of the same name, size, digest and version
    /// is resumed (its progress, `size` if already verified); otherwise every staged entry of that
    /// name is dropped, and a new extent is allocated (after [`Store::gc`] if needed), erased and
    /// given a header: returns 0.
    pub fn stage_begin(
        &mut self,
        name: &[u8],
        size: u32,
        digest: &[u8; 32],
        version: u32,
    ) -> Result<u32, Error> {
        let name = Name::new(name)?;
        if layout::sectors_for(KIND_FILE, size)
            .is_none_or(|n| n > self.total().saturating_sub(CONFIG_SECTORS))
        {
            return Err(Error::TooLarge);
        }
        let g = self.generation()?;
        let (kept, _) = self.kill_staged(&name, g, |st, e| {
            Ok(!e.tombstone && e.size == size && e.version == version && st.digest(e)? == *digest)
        })?;
        let (e, done) = match kept {
            Some(e) => (e, self.progress(&e)?),
            None => (self.create(KIND_FILE, &name, size, version, digest, g)?, 0),
        };
        self.pos = Some(WritePos {
            sector: e.sector,
            pos: done,
        });
        Ok(done)
    }

    /// Writes `data` at `offset` of staged file `name`. `offset` must be the current progress: where
    /// the previous write through this `Store` value ended, or (for a new `Store` value, which knows
    /// only what flash records) any offset within the first incomplete chunk, bytes before it in
    /// that chunk being taken as written; a gap would be caught by the digest check in
    /// [`Store::stage_finish`].
    pub fn stage_write(&mut self, name: &[u8], offset: u32, data: &[u8]) -> Result<(), Error> {
        let name = Name::new(name)?;
        let g = self.generation()?;
        let e = self.staged_entry(&name, false, g)?.ok_or(Error::NotFound)?;
        let flash = self.progress(&e)?;
        let ok = match self.pos {
            Some(p) if p.sector == e.sector && p.pos >= flash && p.pos - flash < CHUNK => {
                offset == p.pos
            }
            _ => offset >= flash && offset - flash < CHUNK,
        } && offset <= e.size;
        if !ok || (e.verified && !data.is_empty()) {
            return Err(Error::OutOfOrder);
        }
        if data.len() as u64 > u64::from(e.size - offset) {
            return Err(Error::TooLarge);
        }
        self.write_data(&e, offset, data)
    }

    /// Completes staged file `name`: all bytes must be written ([`Error::Incomplete`] otherwise);
    /// their SHA-256, computed from flash, must be the announced digest, and the file is marked
    /// verified. On a mismatch the entry is dropped and [`Error::DigestMismatch`] returned.
    pub fn stage_finish(&mut self, name: &[u8]) -> Result<(), Error> {
        match self.complete_entry(name)? {
            Some(e) => self.verify(&e),
            None => Ok(()),
        }
    }

    /// The staged entry `name` if it is completely written and not verified yet; `None` if it is
    /// verified already. Forgets the write position (the file takes no more bytes).
    fn complete_entry(&mut self, name: &[u8]) -> Result<Option<Entry>, Error> {
        let name = Name::new(name)?;
        let g = self.generation()?;
        let e = self.staged_entry(&name, false, g)?.ok_or(Error::NotFound)?;
        if e.verified {
            return Ok(None);
        }
        if self.progress(&e)? < e.size {
            return Err(Error::Incomplete);
        }
        self.pos = None;
        Ok(Some(e))
    }

    /// Completes staged file `name` like [`Store::stage_finish`], but takes the SHA-256 of its content
    /// from the caller instead of reading it back: for a caller that hashed exactly the bytes it passed
    /// to [`Store::stage_write`], each of which that call read back from flash and compared. A digest
    /// other than the announced one drops the entry ([`Error::DigestMismatch`]).
    pub fn stage_finish_hashed(&mut self, name: &[u8], content: &[u8; 32]) -> Result<(), Error> {
        let Some(e) = self.complete_entry(name)? else {
            return Ok(());
        };
        if *content != self.digest(&e)? {
            self.kill(&e)?;
            return Err(Error::DigestMismatch);
        }
        self.program(e.base() + H_VERIFIED, &[0; 4])
    }

    /// Drops every staged entry named `name` ([`Error::NotFound`] if there is none).
    pub fn stage_drop(&mut self, name: &[u8]) -> Result<(), Error> {
        let name = Name::new(name)?;
        let g = self.generation()?;
        match self.kill_staged(&name, g, |_, _| Ok(false))? {
            (_, true) => Ok(()),
            _ => Err(Error::NotFound),
        }
    }

    /// Drops every staged entry: the next commit changes no file.
    pub fn stage_abort(&mut self) -> Result<(), Error> {
        let g = self.generation()?;
        let mut s = 0;
        let mut e = Entry::EMPTY;
        while self.next_entry(s, &mut e)? {
            s = e.end();
            if staged(&e, g) {
                self.kill(&e)?;
            }
        }
        Ok(())
    }

    /// Stages a tombstone for `name` (kept if one is already staged), so that commit deletes it; drops
    /// staged files of that name. [`Error::NotFound`] if there was neither a live nor a staged file.
    pub fn stage_delete(&mut self, name: &[u8]) -> Result<(), Error> {
        let name = Name::new(name)?;
        let g = self.generation()?;
        let (kept, killed) = self.kill_staged(&name, g, |_, e| Ok(whole_tombstone(e)))?;
        if kept.is_some() {
            return Ok(());
        }
        if self.live(&name, g)?.is_none() {
            return if killed { Ok(()) } else { Err(Error::NotFound) };
        }
        self.create(KIND_TOMBSTONE, &name, 0, 0, &[0; 32], g)
            .map(drop)
    }

    /// Stages a verified copy of live file `from` named `to` and a tombstone for `from`: after the
    /// commit the file exists under `to` only. Staged entries of either name are replaced (a staged
    /// verified copy with the same contents is kept, so a repeated rename costs nothing).
    pub fn stage_rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), Error> {
        let (from, to) = (Name::new(from)?, Name::new(to)?);
        if from == to {
            return Err(Error::BadName);
        }
        let g = self.generation()?;
        let src = self.live(&from, g)?.ok_or(Error::NotFound)?;
        let digest = self.digest(&src)?;
        let (kept, _) = self.kill_staged(&to, g, |st, e| {
            Ok(!e.tombstone && e.verified && e.size == src.size && st.digest(e)? == digest)
        })?;
        if kept.is_none() {
            let dst = self.create(KIND_FILE, &to, src.size, src.version, &digest, g)?;
            let mut b = [0u8; BUF];
            let mut at = 0;
            while at < src.size {
                let n = (src.size - at).min(BUF as u32) as usize;
                self.rd(src.data() + at, &mut b[..n])?;
                self.write_data(&dst, at, &b[..n])?;
                at += n as u32;
            }
            self.pos = None;
            self.verify(&dst).map_err(|e| match e {
                Error::DigestMismatch => Error::Corrupt,
                e => e,
            })?;
        }
        let (kept, _) = self.kill_staged(&from, g, |_, e| Ok(whole_tombstone(e)))?;
        if kept.is_none() {
            self.create(KIND_TOMBSTONE, &from, 0, 0, &[0; 32], g)?;
        }
        Ok(())
    }

    /// Commits everything staged: writes one config record with generation + 1 (and `payload`, or
    /// the current one). From that write on, verified staged entries are live and replace older ones
    /// of their names; unverified ones are garbage. Returns the new generation.
    pub fn commit(&mut self, payload: Option<&[u8]>) -> Result<u32, Error> {
        if payload.is_some_and(|p| p.len() > CONFIG_MAX) {
            return Err(Error::PayloadTooLong);
        }
        let c = self.current()?;
        let g = c.generation.checked_add(1).ok_or(Error::Corrupt)?;
        self.pos = None;
        self.next_record(c, g, c.boot_count, payload)?;
        Ok(g)
    }

    /// Erases every extent that can no longer matter: dropped, abandoned or superseded entries, and
    /// tombstones with nothing left to hide. Live and staged entries are never touched. Each extent
    /// is erased from its last sector to its first.
    pub fn gc(&mut self) -> Result<(), Error> {
        let g = self.generation()?;
        self.collect(g)
    }

    fn collect(&mut self, g: u32) -> Result<(), Error> {
        self.pos = None;
        // Pass 1: all but winning candidates and staged entries.
        let mut s = 0;
        let mut e = Entry::EMPTY;
        while self.next_entry(s, &mut e)? {
            s = e.end();
            let erase = if staged(&e, g) {
                false
            } else if candidate(&e, g) {
                !self.wins(&e, g)?
            } else {
                true
            };
            if erase {
                self.erase_back(e.sector, e.end())?;
            }
        }
        // Pass 2: winning tombstones once no older candidate of their name is left (erasing one
        // earlier could bring such a candidate back).
        let mut s = 0;
        let mut e = Entry::EMPTY;
        while self.next_entry(s, &mut e)? {
            s = e.end();
            if e.tombstone && candidate(&e, g) {
                let mut alone = true;
                let mut t = 0;
                let mut x = Entry::EMPTY;
                while self.next_entry(t, &mut x)? {
                    t = x.end();
                    if x.sector != e.sector && candidate(&x, g) && x.name == e.name {
                        alone = false;
                        break;
                    }
                }
                if alone {
                    self.erase_back(e.sector, e.end())?;
                }
            }
        }
        Ok(())
    }
}
