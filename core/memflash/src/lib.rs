//! NOR flash over any byte buffer: erase sets bytes to `0xFF`, a write can only clear bits, and
//! operations are checked for range and alignment like a real part.
//!
//! Boards whose "flash" is plain memory (QEMU's mps2-an385, the Xtensa sim machine) use it as their
//! driver; host tests use it as a double that can fail any chosen write, or lose power in the middle of
//! one and stay dead until `MemFlash::power_on`, as a device does across a power cut.
//!
//! The fault injection (`fail_op`, `cut_power_at`, `cut_power_with`, `power_on` and the [`Cut`] modes)
//! is compiled only with the cargo feature `fault-injection`, which test code enables in its
//! dev-dependency; without it a `MemFlash` is a plain driver with no fault state or checks.
//!
//! A power cut leaves the interrupted operation partly done, in one of the ways a real part can be left
//! (`Cut`): a write with a prefix of its words programmed and the next word only partly (some of its
//! 1 -> 0 transitions happened, not all), an erase that stopped part-way from either end of its range,
//! or an erase that left its range with arbitrary contents.
#![no_std]
#![forbid(unsafe_code)]
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
    /// An injected failure: the operation did nothing (only with the `fault-injection` feature).
    Injected,
    /// Power was lost: this and every later operation fail until `MemFlash::power_on` (only with the
    /// `fault-injection` feature).
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

#[cfg(feature = "fault-injection")]
/// How a write takes effect when power fails during it. Words are [`WRITE_SIZE`] bytes, counted from
/// the write's first; they are programmed in address order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TornWrite {
    /// The first half of the words (rounded down) in full, the rest not at all.
    Half,
    /// The words before `word` in full; then word `word` (clamped to the write's last word) only
    /// partly: of the bits the write would clear, only those also set in `bits` are cleared (as
    /// little-endian `u32` bits of the word); the later words not at all.
    Bits {
        /// The torn word's index in the write (`usize::MAX`: the last word).
        word: usize,
        /// Which of the word's 1 -> 0 transitions happen.
        bits: u32,
    },
}

#[cfg(feature = "fault-injection")]
/// How an erase takes effect when power fails during it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TornErase {
    /// The lower half of the range's bytes erased, the upper half untouched.
    Half,
    /// Erasing from the lowest address upwards, stopped with the top `left` bytes (clamped to the
    /// range) not yet erased.
    Upward {
        /// Bytes at the top of the range left as they were.
        left: usize,
    },
    /// Erasing from the highest address downwards, stopped with the bottom `left` bytes (clamped to
    /// the range) not yet erased.
    Downward {
        /// Bytes at the bottom of the range left as they were.
        left: usize,
    },
    /// The whole range left with pseudo-random contents (a cell array caught between programmed
    /// and erased), derived from `seed` and each byte's address.
    Random {
        /// The pattern's seed.
        seed: u32,
    },
}

#[cfg(feature = "fault-injection")]
/// What the operation a power cut interrupts does before the power is gone: the write behaviour if it
/// is a write, the erase behaviour if it is an erase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// How an interrupted write is left.
    pub write: TornWrite,
    /// How an interrupted erase is left.
    pub erase: TornErase,
}

#[cfg(feature = "fault-injection")]
impl Cut {
    /// The first half of a write's words, the lower half of an erase's bytes: what
    /// [`MemFlash::cut_power_at`] does.
    pub const HALF: Cut = Cut {
        write: TornWrite::Half,
        erase: TornErase::Half,
    };
}

/// A NOR flash over `S` (with fault injection under the `fault-injection` feature). Writes and erases
/// are counted as "operations" from 0.
pub struct MemFlash<S> {
    mem: S,
    ops: u32,
    #[cfg(feature = "fault-injection")]
    faults: Faults,
}

/// The injected faults and the power state.
#[cfg(feature = "fault-injection")]
#[derive(Default)]
struct Faults {
    fail_at: Option<u32>,
    cut_at: Option<(u32, Cut)>,
    dead: bool,
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> MemFlash<S> {
    /// Wraps `mem` as flash with its current contents.
    pub fn new(mem: S) -> Self {
        MemFlash {
            mem,
            ops: 0,
            #[cfg(feature = "fault-injection")]
            faults: Faults::default(),
        }
    }

    /// Makes operation number `op` fail without effect.
    #[cfg(feature = "fault-injection")]
    pub fn fail_op(&mut self, op: u32) {
        self.faults.fail_at = Some(op);
    }

    /// Cuts power during operation number `op`: it takes partial effect (the first half of a write's
    /// words, or the first half of an erase's bytes), and everything after fails.
    #[cfg(feature = "fault-injection")]
    pub fn cut_power_at(&mut self, op: u32) {
        self.cut_power_with(op, Cut::HALF);
    }

    /// Cuts power during operation number `op`, which takes the partial effect `cut` describes;
    /// everything after fails.
    #[cfg(feature = "fault-injection")]
    pub fn cut_power_with(&mut self, op: u32, cut: Cut) {
        self.faults.cut_at = Some((op, cut));
    }

    /// Restores power and clears injected faults, keeping the contents, as a reboot does.
    #[cfg(feature = "fault-injection")]
    pub fn power_on(&mut self) {
        self.faults = Faults::default();
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

    /// Counts an operation and decides its fate: `Ok(None)` full effect, `Ok(Some(cut))` partial
    /// effect as `cut` says, then power loss.
    #[cfg(feature = "fault-injection")]
    fn begin_op(&mut self) -> Result<Option<Cut>, MemFlashError> {
        let f = &mut self.faults;
        if f.dead {
            return Err(MemFlashError::PowerLost);
        }
        let op = self.ops;
        self.ops += 1;
        if f.fail_at == Some(op) {
            return Err(MemFlashError::Injected);
        }
        Ok(f.cut_at.filter(|&(at, _)| at == op).map(|(_, c)| c))
    }

    /// Counts an operation (without fault injection it always takes full effect).
    #[cfg(not(feature = "fault-injection"))]
    fn begin_op(&mut self) {
        self.ops += 1;
    }

    /// Whether power is off (after a cut, until [`MemFlash::power_on`]).
    #[cfg(feature = "fault-injection")]
    fn powered_off(&self) -> bool {
        self.faults.dead
    }

    /// Whether power is off: never, without fault injection.
    #[cfg(not(feature = "fault-injection"))]
    fn powered_off(&self) -> bool {
        false
    }

    /// Ends an operation cut short: power is gone.
    #[cfg(feature = "fault-injection")]
    fn lose_power(&mut self) -> Result<(), MemFlashError> {
        self.faults.dead = true;
        Err(MemFlashError::PowerLost)
    }
}

/// One step of xorshift32 (never 0 from a non-zero state).
#[cfg(feature = "fault-injection")]
fn xorshift(mut x: u32) -> u32 {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

/// Programs `data` into `cells`: NOR cells only go from 1 to 0.
fn program(cells: &mut [u8], data: &[u8]) {
    for (cell, &d) in cells.iter_mut().zip(data) {
        *cell &= d;
    }
}

/// Programs one word only partly: of the bits `data` would clear, only those set in `bits`.
#[cfg(feature = "fault-injection")]
fn program_torn(cells: &mut [u8], data: &[u8], bits: u32) {
    for ((cell, &d), b) in cells.iter_mut().zip(data).zip(bits.to_le_bytes()) {
        *cell &= d | !b;
    }
}

impl<S> ErrorType for MemFlash<S> {
    type Error = MemFlashError;
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> ReadNorFlash for MemFlash<S> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        if self.powered_off() {
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
        #[cfg(feature = "fault-injection")]
        if let Some(cut) = self.begin_op()? {
            return self.cut_erase(start, end, cut);
        }
        #[cfg(not(feature = "fault-injection"))]
        self.begin_op();
        self.mem.as_mut()[start..end].fill(0xFF);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let (start, end) = self.check(offset, bytes.len(), WRITE_SIZE)?;
        #[cfg(feature = "fault-injection")]
        if let Some(cut) = self.begin_op()? {
            return self.cut_write(start, bytes, cut);
        }
        #[cfg(not(feature = "fault-injection"))]
        self.begin_op();
        program(&mut self.mem.as_mut()[start..end], bytes);
        Ok(())
    }
}

#[cfg(feature = "fault-injection")]
impl<S: AsRef<[u8]> + AsMut<[u8]>> MemFlash<S> {
    /// The partial effect of an erase of `start..end` that power fails during, then the power loss.
    fn cut_erase(&mut self, start: usize, end: usize, cut: Cut) -> Result<(), MemFlashError> {
        let len = end - start;
        let range = &mut self.mem.as_mut()[start..end];
        match cut.erase {
            TornErase::Half => range[..len / 2].fill(0xFF),
            TornErase::Upward { left } => range[..len - left.min(len)].fill(0xFF),
            TornErase::Downward { left } => range[left.min(len)..].fill(0xFF),
            TornErase::Random { seed } => {
                for (i, b) in range.iter_mut().enumerate() {
                    let at = (start + i) as u32;
                    *b = xorshift(xorshift(seed ^ at.wrapping_mul(0x9E37_79B9)) | 1) as u8;
                }
            }
        }
        self.lose_power()
    }

    /// The partial effect of a write of `bytes` at `start` that power fails during, then the power
    /// loss.
    fn cut_write(&mut self, start: usize, bytes: &[u8], cut: Cut) -> Result<(), MemFlashError> {
        let cells = &mut self.mem.as_mut()[start..start + bytes.len()];
        let words = bytes.len() / WRITE_SIZE;
        let (full, torn) = match cut.write {
            TornWrite::Half => (words / 2, None),
            TornWrite::Bits { word, bits } => match words {
                0 => (0, None),
                _ => (word.min(words - 1), Some(bits)),
            },
        };
        let n = full * WRITE_SIZE;
        program(&mut cells[..n], &bytes[..n]);
        if let Some(bits) = torn {
            let w = n..n + WRITE_SIZE;
            program_torn(&mut cells[w.clone()], &bytes[w], bits);
        }
        self.lose_power()
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

    #[cfg(feature = "fault-injection")]
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

    #[cfg(feature = "fault-injection")]
    /// A flash whose first sector is erased and then holds `0x00, 0x11, .., 0xFF` repeated, cut
    /// at its next operation as `cut` says.
    fn patterned(cut: Cut) -> MemFlash<[u8; 8192]> {
        let mut f = MemFlash::new([0u8; 8192]);
        f.contents_mut()[..4096]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 16) as u8 * 0x11);
        f.cut_power_with(0, cut);
        f
    }

    #[cfg(feature = "fault-injection")]
    fn erase_cut(erase: TornErase) -> MemFlash<[u8; 8192]> {
        let mut f = patterned(Cut {
            write: TornWrite::Half,
            erase,
        });
        assert_eq!(f.erase(0, 4096), Err(MemFlashError::PowerLost));
        assert_eq!(f.erase(4096, 8192), Err(MemFlashError::PowerLost));
        f.power_on();
        f
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn torn_erases_stop_part_way_from_either_end_or_leave_noise() {
        let pattern = |i: usize| (i % 16) as u8 * 0x11;
        let f = erase_cut(TornErase::Downward { left: 100 });
        assert!(f.contents()[100..4096].iter().all(|&b| b == 0xFF));
        assert!((0..100).all(|i| f.contents()[i] == pattern(i)));
        let f = erase_cut(TornErase::Upward { left: 8 });
        assert!(f.contents()[..4088].iter().all(|&b| b == 0xFF));
        assert!((4088..4096).all(|i| f.contents()[i] == pattern(i)));
        let f = erase_cut(TornErase::Half);
        assert!(f.contents()[..2048].iter().all(|&b| b == 0xFF));
        assert!((2048..4096).all(|i| f.contents()[i] == pattern(i)));
        // `left` beyond the range: nothing erased.
        let f = erase_cut(TornErase::Downward { left: 10_000 });
        assert!((0..4096).all(|i| f.contents()[i] == pattern(i)));
        // Noise: neither erased nor the old contents, a function of the seed, and the second
        // sector (never reached) untouched.
        let a = erase_cut(TornErase::Random { seed: 1 });
        let b = erase_cut(TornErase::Random { seed: 2 });
        let again = erase_cut(TornErase::Random { seed: 1 });
        assert_eq!(a.contents(), again.contents());
        assert_ne!(a.contents()[..4096], b.contents()[..4096]);
        let erased = a.contents()[..4096].iter().filter(|&&b| b == 0xFF).count();
        let kept = (0..4096).filter(|&i| a.contents()[i] == pattern(i)).count();
        assert!(erased < 100 && kept < 500, "{erased} erased, {kept} kept");
        assert!(a.contents()[4096..].iter().all(|&b| b == 0));
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn torn_writes_program_a_prefix_and_part_of_one_word() {
        const W: [u8; 4] = [0x00, 0x0F, 0xF0, 0x55];
        // Writes three words, `W` at index `at` and zeros elsewhere, torn at `word` with `bits`.
        let torn = |at: usize, word, bits| {
            let mut data = [0u8; 12];
            data[4 * at..4 * at + 4].copy_from_slice(&W);
            let mut f = MemFlash::new([0xFFu8; 4096]);
            let write = TornWrite::Bits { word, bits };
            let erase = TornErase::Half;
            f.cut_power_with(0, Cut { write, erase });
            assert_eq!(f.write(0, &data), Err(MemFlashError::PowerLost));
            assert_eq!(f.write(16, &[0; 4]), Err(MemFlashError::PowerLost));
            f.power_on();
            let mut got = [0u8; 16];
            got.copy_from_slice(&f.contents()[..16]);
            got
        };
        // First word torn: only the selected transitions, nothing after it.
        let got = torn(0, 0, 0x0000_FF0F);
        assert_eq!(got[..4], [0xF0, 0x0F, 0xFF, 0xFF]);
        assert!(got[4..].iter().all(|&b| b == 0xFF));
        // No transition selected: the write did nothing at all.
        assert!(torn(0, 0, 0).iter().all(|&b| b == 0xFF));
        // Last word (clamped): the words before it in full.
        let got = torn(2, usize::MAX, 0x8000_0001);
        assert_eq!(got[..8], [0; 8]);
        assert_eq!(got[8..12], [0xFE, 0xFF, 0xFF, 0x7F]);
        assert_eq!(got[12..], [0xFF; 4]);
        // All transitions selected: the word is complete, the rest still untouched.
        let got = torn(1, 1, u32::MAX);
        assert_eq!(got[..8], [0, 0, 0, 0, 0x00, 0x0F, 0xF0, 0x55]);
        assert!(got[8..].iter().all(|&b| b == 0xFF));
    }
}
