//! Reading: live files by name or in flash order, staged entries, and file contents.

use embedded_storage::nor_flash::NorFlash;

use crate::layout::Entry;
use crate::scan::{candidate, staged};
use crate::{checked_name, Cursor, Error, File, Staged, Store};

impl<F: NorFlash> Store<F> {
    /// The live file named `name`, if any.
    pub fn find(&mut self, name: &[u8]) -> Result<Option<File>, Error> {
        let name = checked_name(name)?;
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
                    data_offset: if e.tombstone { 0 } else { e.data() },
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
}
