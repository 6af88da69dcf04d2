//! Staging: allocating and writing extents, writing and checking data, verifying, dropping, and the stage_* calls.

use embedded_storage::nor_flash::NorFlash;

use crate::layout::{
    self, le32, Entry, CONFIG_SECTORS, FILE_MAGIC, H_CRC, H_DEAD, H_FIXED, H_PROGRESS, H_READ,
    H_VERIFIED, KIND_FILE, KIND_TOMBSTONE, SECTOR,
};
use crate::scan::{junk, staged, whole_tombstone};
use crate::{checked_name, Error, Name, Staging, Store, BUF, CHUNK};

impl<F: NorFlash> Store<F> {
    pub(crate) fn kill(&mut self, e: &Entry) -> Result<(), Error> {
        if self.staging.is_some_and(|h| h.entry.sector == e.sector) {
            self.staging = None;
        }
        self.program(e.base() + H_DEAD, &[0; 4])
    }

    /// Makes `e` (staged, header intact) the file this `Store` value is staging, its last write
    /// ending at `pos`.
    fn remember(&mut self, e: &Entry, pos: u32) -> Result<(), Error> {
        let mut crc = [0u8; 4];
        self.rd(e.base() + H_CRC as u32, &mut crc)?;
        self.staging = Some(Staging {
            entry: *e,
            crc: u32::from_le_bytes(crc),
            pos,
        });
        Ok(())
    }

    /// The extent [`Staging`] says file `name` is staged in, if flash confirms it: the same header
    /// (magic and checksum word) at its sector, neither dead nor verified. Otherwise forgets it.
    fn staged_hint(&mut self, name: &Name) -> Result<Option<Staging>, Error> {
        let Some(h) = self.staging.filter(|h| h.entry.name == *name) else {
            return Ok(None);
        };
        let mut head = [0u8; 8];
        self.rd(h.entry.base(), &mut head)?;
        let mut state = [0u8; 8];
        self.rd(h.entry.base() + H_VERIFIED, &mut state)?;
        let same = head[..4] == FILE_MAGIC && le32(&head, H_CRC) == h.crc;
        if same && state == [0xFF; 8] {
            return Ok(Some(h));
        }
        self.staging = None;
        Ok(None)
    }

    /// Kills every staged entry named `name` except the first one `keep` accepts, which it returns.
    #[inline(never)]
    pub(crate) fn kill_staged(
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
    /// Entries live under the confirmed generation while another is on trial are verified
    /// candidates, never junk, so they are never reused.
    pub(crate) fn alloc(&mut self, need: u32, g: u32) -> Result<Option<u32>, Error> {
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
    pub(crate) fn alloc_or_gc(&mut self, need: u32, g: u32) -> Result<u32, Error> {
        if let Some(s) = self.alloc(need, g)? {
            return Ok(s);
        }
        self.collect()?;
        self.alloc(need, g)?.ok_or(Error::NoSpace)
    }

    /// Allocates an extent and writes its header (one write; `verified` set in it for tombstones).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create(
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
    pub(crate) fn write_header(
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
            false => Err(self.mismatch(start * SECTOR)),
        }
    }

    /// Writes `data` at byte `pos` of staged file `e` (`pos + data.len() <= e.size`), reading each
    /// piece back and clearing a progress word whenever a chunk (or the file) is complete.
    pub(crate) fn write_data(
        &mut self,
        e: &Entry,
        mut pos: u32,
        mut data: &[u8],
    ) -> Result<(), Error> {
        let base = e.data();
        while !data.is_empty() {
            let chunk_end = ((pos / CHUNK + 1) * CHUNK).min(e.size);
            let n = data.len().min((chunk_end - pos) as usize);
            let (piece, rest) = data.split_at(n);
            self.program(base + pos, piece)?;
            if let Err(mismatch) = self.same(base + pos, piece) {
                if mismatch == Error::Readback {
                    self.kill(e)?;
                }
                return Err(mismatch);
            }
            pos += n as u32;
            data = rest;
            if pos == chunk_end {
                self.program(e.base() + H_PROGRESS + 4 * ((pos - 1) / CHUNK), &[0; 4])?;
            }
            if let Some(h) = self.staging.as_mut().filter(|h| h.entry.sector == e.sector) {
                h.pos = pos;
            }
        }
        Ok(())
    }

    /// Hashes `e`'s data from flash and marks it verified if it matches; kills it otherwise.
    pub(crate) fn verify(&mut self, e: &Entry) -> Result<(), Error> {
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
        let name = checked_name(name)?;
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
        self.remember(&e, done)?;
        Ok(done)
    }

    /// Writes `data` at `offset` of staged file `name`. `offset` must be the current progress: where
    /// the previous write through this `Store` value ended, or (for a new `Store` value, which knows
    /// only what flash records) any offset within the first incomplete chunk, bytes before it in
    /// that chunk being taken as written; a gap would be caught by the digest check in
    /// [`Store::stage_finish`].
    ///
    /// The file's extent is found from the config record and the headers, or taken from what this
    /// `Store` value knows it is staging ([`Staging`]) once its header confirms it.
    pub fn stage_write(&mut self, name: &[u8], offset: u32, data: &[u8]) -> Result<(), Error> {
        let name = checked_name(name)?;
        let (e, pos) = match self.staged_hint(&name)? {
            Some(h) => (h.entry, Some(h.pos)),
            None => {
                let g = self.generation()?;
                let e = self.staged_entry(&name, false, g)?.ok_or(Error::NotFound)?;
                (e, None)
            }
        };
        let flash = self.progress(&e)?;
        let ok = match pos {
            Some(p) if p >= flash && p - flash < CHUNK => offset == p,
            _ => offset >= flash && offset - flash < CHUNK,
        } && offset <= e.size;
        if !ok || (e.verified && !data.is_empty()) {
            return Err(Error::OutOfOrder);
        }
        if data.len() as u64 > u64::from(e.size - offset) {
            return Err(Error::TooLarge);
        }
        if pos.is_none() {
            self.remember(&e, offset)?;
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
    pub(crate) fn complete_entry(&mut self, name: &[u8]) -> Result<Option<Entry>, Error> {
        let name = checked_name(name)?;
        let g = self.generation()?;
        let e = self.staged_entry(&name, false, g)?.ok_or(Error::NotFound)?;
        if e.verified {
            return Ok(None);
        }
        if self.progress(&e)? < e.size {
            return Err(Error::Incomplete);
        }
        self.staging = None;
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
        let name = checked_name(name)?;
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
        let name = checked_name(name)?;
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
        let (from, to) = (checked_name(from)?, checked_name(to)?);
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
            self.staging = None;
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
}
