//! The scan: walking the extent headers, and which entry is live, staged or garbage at a committed generation.

use embedded_storage::nor_flash::NorFlash;

use crate::layout::{self, Entry, CONFIG_SECTORS, H_PROGRESS, H_READ, SECTOR};
use crate::{Error, File, Name, Store, BUF, CHUNK};

/// Whether `e` may be live at committed generation `g`: intact, verified, not dead, not in the future.
pub(crate) fn candidate(e: &Entry, g: u32) -> bool {
    !e.dead && e.verified && e.generation <= g
}

/// Whether `e` is staged for the commit after `g`.
pub(crate) fn staged(e: &Entry, g: u32) -> bool {
    !e.dead && u64::from(e.generation) == u64::from(g) + 1
}

/// Whether `e` can never become live nor matter again (dead, abandoned, or from the future).
pub(crate) fn junk(e: &Entry, g: u32) -> bool {
    e.dead || (e.generation <= g && !e.verified) || u64::from(e.generation) > u64::from(g) + 1
}

/// Whether staged `e` is a tombstone that commit will honour. A tombstone is written in one write with
/// its `verified` word already cleared; if power failed in that word, the header is intact but the
/// tombstone unverified, so commit would not delete anything: it must be replaced, not kept.
pub(crate) fn whole_tombstone(e: &Entry) -> bool {
    e.tombstone && e.verified
}

/// Among candidates of one name, the higher generation wins, then the lower sector.
pub(crate) fn beats(a: &Entry, b: &Entry) -> bool {
    a.generation > b.generation || (a.generation == b.generation && a.sector < b.sector)
}

impl<F: NorFlash> Store<F> {
    /// The first intact extent header at sector `s` or after it. Extents are skipped whole by the
    /// caller (it continues from [`Entry::end`]); sectors without a header one at a time.
    pub(crate) fn next_entry(&mut self, mut s: u32, out: &mut Entry) -> Result<bool, Error> {
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
    pub(crate) fn entry_at(&mut self, s: u32, total: u32, out: &mut Entry) -> Result<bool, Error> {
        let mut b = [0u8; H_READ];
        self.rd(s * SECTOR, &mut b)?;
        Ok(layout::parse_header(&b, s, total, out))
    }

    /// The digest field of `e`'s header (not kept in [`Entry`] to keep scans' stack frames small).
    pub(crate) fn digest(&mut self, e: &Entry) -> Result<[u8; 32], Error> {
        let mut d = [0; 32];
        self.rd(e.base() + layout::H_DIGEST as u32, &mut d)?;
        Ok(d)
    }

    pub(crate) fn file(&mut self, e: &Entry) -> Result<File, Error> {
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
    pub(crate) fn wins(&mut self, e: &Entry, g: u32) -> Result<bool, Error> {
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
    pub(crate) fn winner(&mut self, name: &Name, g: u32) -> Result<Option<Entry>, Error> {
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

    pub(crate) fn live(&mut self, name: &Name, g: u32) -> Result<Option<Entry>, Error> {
        Ok(self.winner(name, g)?.filter(|e| !e.tombstone))
    }

    /// The first staged entry named `name` whose kind is a tombstone iff `tombstone`.
    pub(crate) fn staged_entry(
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
    pub(crate) fn progress(&mut self, e: &Entry) -> Result<u32, Error> {
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
}
