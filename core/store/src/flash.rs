//! Raw flash access: reads through an aligned bounce buffer when the driver needs it, programming at any offset, comparing, and the tail-first erase with its kill-before-erase rule.

use embedded_storage::nor_flash::{NorFlash, NorFlashError};

use crate::layout::{CONFIG_SECTORS, FILE_MAGIC, SECTOR};
use crate::{Access, Error, Failure, Store, BUF};

impl<F: NorFlash> Store<F> {
    /// Sectors in the region (bounded so that every offset fits in a `u32`).
    pub(crate) fn total(&self) -> u32 {
        let n = self.flash.capacity() / SECTOR as usize;
        n.min((u32::MAX / SECTOR) as usize) as u32
    }

    /// Records where a call failed, and returns its error.
    pub(crate) fn failed(
        &mut self,
        error: Error,
        access: Access,
        offset: u32,
        driver: Option<F::Error>,
    ) -> Error {
        self.failure = Some(Failure {
            error,
            access,
            offset,
            driver: driver.map(|e| e.kind()),
        });
        error
    }

    /// A read-back mismatch at `offset`: recorded, and [`Error::Readback`] returned.
    pub(crate) fn mismatch(&mut self, offset: u32) -> Error {
        self.failed(Error::Readback, Access::ReadBack, offset, None)
    }

    pub(crate) fn rd(&mut self, off: u32, buf: &mut [u8]) -> Result<(), Error> {
        if F::READ_SIZE <= 1 {
            let r = self.flash.read(off, buf);
            return r.map_err(|e| self.failed(Error::Flash, Access::Read, off, Some(e)));
        }
        // Reads through an aligned bounce buffer for drivers that need aligned reads.
        let rs = F::READ_SIZE as u32;
        let mut b = [0u8; BUF];
        let mut done = 0;
        while done < buf.len() {
            let Some(at) = off.checked_add(done as u32) else {
                return Err(self.failed(Error::Flash, Access::Read, off, None));
            };
            let skip = (at % rs) as usize;
            let n = (BUF - skip).min(buf.len() - done);
            let len = (skip + n).div_ceil(rs as usize) * rs as usize;
            let from = at - skip as u32;
            let r = self.flash.read(from, &mut b[..len]);
            r.map_err(|e| self.failed(Error::Flash, Access::Read, from, Some(e)))?;
            buf[done..done + n].copy_from_slice(&b[skip..skip + n]);
            done += n;
        }
        Ok(())
    }

    /// Programs `data` at any offset: unaligned head and tail go as 4-byte words padded with `0xFF`,
    /// which leaves the neighbouring bytes as they are.
    pub(crate) fn program(&mut self, mut off: u32, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let skip = (off % 4) as usize;
            let n = if skip != 0 || data.len() < 4 {
                let n = (4 - skip).min(data.len());
                let mut w = [0xFF; 4];
                w[skip..skip + n].copy_from_slice(&data[..n]);
                let at = off - skip as u32;
                let r = self.flash.write(at, &w);
                r.map_err(|e| self.failed(Error::Flash, Access::Write, at, Some(e)))?;
                n
            } else {
                let n = data.len() & !3;
                let r = self.flash.write(off, &data[..n]);
                r.map_err(|e| self.failed(Error::Flash, Access::Write, off, Some(e)))?;
                n
            };
            off += n as u32;
            data = &data[n..];
        }
        Ok(())
    }

    /// Checks that flash at `off` holds exactly `data`; [`Error::Readback`] (recorded with the
    /// offset of the first byte that differs) if not.
    pub(crate) fn same(&mut self, off: u32, data: &[u8]) -> Result<(), Error> {
        let mut b = [0u8; BUF];
        for (i, want) in data.chunks(BUF).enumerate() {
            let at = off + (i * BUF) as u32;
            let got = &mut b[..want.len()];
            self.rd(at, got)?;
            if let Some(k) = got.iter().zip(want).position(|(g, w)| g != w) {
                return Err(self.mismatch(at + k as u32));
            }
        }
        Ok(())
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
    pub(crate) fn erase_back(&mut self, start: u32, end: u32) -> Result<(), Error> {
        for s in (start..end).rev() {
            let base = s * SECTOR;
            if s >= CONFIG_SECTORS {
                let mut magic = [0u8; 4];
                self.rd(base, &mut magic)?;
                if magic == FILE_MAGIC {
                    self.program(base, &[0; 4])?;
                }
            }
            let r = self.flash.erase(base, base + SECTOR);
            r.map_err(|e| self.failed(Error::Flash, Access::Erase, base, Some(e)))?;
        }
        Ok(())
    }
}
