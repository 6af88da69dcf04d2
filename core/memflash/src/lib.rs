//! NOR flash over any byte buffer: erase sets bytes to `0xFF`, a write can only clear bits, and
//! operations are checked for range and alignment like a real part.
//!
//! Boards whose "flash" is plain memory (QEMU's mps2-an385, the Xtensa sim machine) use it as their
//! driver; host tests use it as a double that can fail any chosen write, or lose power in the middle of
//! one and stay dead until [`MemFlash::power_on`], as a device does across a power cut.
#![no_std]
#![deny(missing_docs)]

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Erase granularity.
pub const ERASE_SIZE: usize = 4096;
/// Write granularity.
pub const WRITE_SIZE: usize = 4;

/// Errors of [`MemFlash`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemFlashError {
    /// The range is outside the device.
    OutOfBounds,
    /// Offset or length is not a multiple of the write or erase size.
    NotAligned,
    /// An injected failure: the operation did nothing.
    Injected,
    /// Power was lost: this and every later operation fail until [`MemFlash::power_on`].
    PowerLost,
}

impl NorFlashError for MemFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            MemFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            MemFlashError::NotAligned => NorFlashErrorKind::NotAligned,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// A NOR flash over `S`, with fault injection. Writes and erases are counted as "operations" from 0.
pub struct MemFlash<S> {
    mem: S,
    ops: u32,
    fail_at: Option<u32>,
    cut_at: Option<u32>,
    dead: bool,
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> MemFlash<S> {
    /// Wraps `mem` as flash with its current contents.
    pub fn new(mem: S) -> Self {
        MemFlash {
            mem,
            ops: 0,
            fail_at: None,
            cut_at: None,
            dead: false,
        }
    }

    /// Makes operation number `op` fail without effect.
    pub fn fail_op(&mut self, op: u32) {
        self.fail_at = Some(op);
    }

    /// Cuts power during operation number `op`: it takes partial effect (the first half of a write's
    /// words, or the first half of an erase's bytes), and everything after fails.
    pub fn cut_power_at(&mut self, op: u32) {
        self.cut_at = Some(op);
    }

    /// Restores power and clears injected faults, keeping the contents, as a reboot does.
    pub fn power_on(&mut self) {
        self.dead = false;
        self.fail_at = None;
        self.cut_at = None;
    }

    /// Write and erase operations attempted so far.
    pub fn ops(&self) -> u32 {
        self.ops
    }

    /// The raw contents.
    pub fn contents(&self) -> &[u8] {
        self.mem.as_ref()
    }

    /// Mutable raw contents (for tests that corrupt bytes behind the driver's back).
    pub fn contents_mut(&mut self) -> &mut [u8] {
        self.mem.as_mut()
    }

    fn check(
        &self,
        offset: u32,
        len: usize,
        align: usize,
    ) -> Result<(usize, usize), MemFlashError> {
        let start = offset as usize;
        let end = start.checked_add(len).ok_or(MemFlashError::OutOfBounds)?;
        if end > self.mem.as_ref().len() {
            return Err(MemFlashError::OutOfBounds);
        }
        if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(MemFlashError::NotAligned);
        }
        Ok((start, end))
    }

    /// Counts an operation and decides its fate: `Ok(None)` full effect, `Ok(Some(()))` partial effect
    /// then power loss.
    fn begin_op(&mut self) -> Result<bool, MemFlashError> {
        if self.dead {
            return Err(MemFlashError::PowerLost);
        }
        let op = self.ops;
        self.ops += 1;
        if self.fail_at == Some(op) {
            return Err(MemFlashError::Injected);
        }
        Ok(self.cut_at == Some(op))
    }
}

impl<S> ErrorType for MemFlash<S> {
    type Error = MemFlashError;
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> ReadNorFlash for MemFlash<S> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        if self.dead {
            return Err(MemFlashError::PowerLost);
        }
        let (start, end) = self.check(offset, bytes.len(), 1)?;
        bytes.copy_from_slice(&self.mem.as_ref()[start..end]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.as_ref().len()
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> NorFlash for MemFlash<S> {
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let len = (to as usize)
            .checked_sub(from as usize)
            .ok_or(MemFlashError::OutOfBounds)?;
        let (start, end) = self.check(from, len, ERASE_SIZE)?;
        let cut = self.begin_op()?;
        let stop = if cut { start + len / 2 } else { end };
        self.mem.as_mut()[start..stop].fill(0xFF);
        if cut {
            self.dead = true;
            return Err(MemFlashError::PowerLost);
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let (start, _) = self.check(offset, bytes.len(), WRITE_SIZE)?;
        let cut = self.begin_op()?;
        let n = if cut {
            (bytes.len() / WRITE_SIZE / 2) * WRITE_SIZE
        } else {
            bytes.len()
        };
        for (cell, &b) in self.mem.as_mut()[start..start + n].iter_mut().zip(bytes) {
            *cell &= b;
        }
        if cut {
            self.dead = true;
            return Err(MemFlashError::PowerLost);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nor_semantics_erase_then_and() {
        let mut f = MemFlash::new([0u8; 8192]);
        f.erase(0, 4096).unwrap();
        assert!(f.contents()[..4096].iter().all(|&b| b == 0xFF));
        assert_eq!(f.contents()[4096], 0);
        f.write(4, &[0xF0, 0x0F, 0xAA, 0x55]).unwrap();
        f.write(4, &[0x3C, 0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(&f.contents()[4..8], &[0x30, 0x0F, 0xAA, 0x55]);
    }

    #[test]
    fn range_and_alignment_are_checked() {
        let mut f = MemFlash::new([0xFFu8; 4096]);
        assert_eq!(f.write(2, &[0; 4]), Err(MemFlashError::NotAligned));
        assert_eq!(f.write(4096, &[0; 4]), Err(MemFlashError::OutOfBounds));
        assert_eq!(f.erase(0, 100), Err(MemFlashError::NotAligned));
        assert_eq!(f.erase(4096, 0), Err(MemFlashError::OutOfBounds));
        let mut b = [0; 2];
        assert_eq!(f.read(4095, &mut b), Err(MemFlashError::OutOfBounds));
        assert_eq!(f.ops(), 0, "refused operations are not counted");
    }

    #[test]
    fn injected_failure_has_no_effect_and_power_cut_is_partial_and_sticky() {
        let mut f = MemFlash::new([0xFFu8; 4096]);
        f.fail_op(0);
        assert_eq!(f.write(0, &[0; 8]), Err(MemFlashError::Injected));
        assert!(f.contents()[..8].iter().all(|&b| b == 0xFF));
        f.cut_power_at(1);
        assert_eq!(f.write(0, &[0; 16]), Err(MemFlashError::PowerLost));
        assert_eq!(
            &f.contents()[..16],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        let mut b = [0; 1];
        assert_eq!(f.read(0, &mut b), Err(MemFlashError::PowerLost));
        f.power_on();
        f.read(0, &mut b).unwrap();
        f.write(8, &[0; 8]).unwrap();
        assert_eq!(f.ops(), 3);
    }
}
