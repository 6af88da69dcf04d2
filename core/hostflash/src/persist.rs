//! Flash that survives the emulator: a RAM-backed [`MemFlash`] whose every write and erase is also
//! written to a [`Backing`] (the host file), with an optional power cut at one chosen operation.
//!
//! [`crate::open`] reads the file into the region at boot, and [`PersistentFlash`] writes the bytes
//! each operation changed through to it, right after the operation. The file is therefore always what
//! the flash would hold after a real power loss.
//!
//! Power cut (`cut=<n>`): operation number `n` (writes and erases counted from 0 since boot, as
//! [`MemFlash`] counts them; refused operations do not count) takes effect only partly, exactly as
//! `MemFlash::cut_power_at` defines it (the first half of a write's words, the first half of an erase's
//! bytes), that partial state is written to the file, and then [`Backing::power_cut`] is called: on a
//! board it ends QEMU at once with [`crate::POWER_CUT_EXIT`].

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use rota_memflash::{MemFlash, MemFlashError};

/// Where changed bytes go.
pub trait Backing {
    /// Writes `bytes` at `offset` of the backing file; `false` on an I/O error.
    fn store(&mut self, offset: u32, bytes: &[u8]) -> bool;
    /// The injected power cut has just happened (its partial effect is stored). On the board this does
    /// not return.
    fn power_cut(&mut self);
}

/// No backing file: plain RAM flash (a cut still ends the run).
impl<B: Backing> Backing for Option<B> {
    fn store(&mut self, offset: u32, bytes: &[u8]) -> bool {
        self.as_mut().is_none_or(|b| b.store(offset, bytes))
    }

    fn power_cut(&mut self) {
        if let Some(b) = self {
            b.power_cut()
        }
    }
}

/// Errors of [`PersistentFlash`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistError {
    /// The flash refused or failed the operation.
    Flash(MemFlashError),
    /// The operation took effect in RAM but the backing file could not be written.
    Io,
}

impl NorFlashError for PersistError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            PersistError::Flash(e) => e.kind(),
            PersistError::Io => NorFlashErrorKind::Other,
        }
    }
}

/// A [`MemFlash`] written through to a [`Backing`].
pub struct PersistentFlash<S, B> {
    flash: MemFlash<S>,
    backing: B,
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, B: Backing> PersistentFlash<S, B> {
    /// Wraps `flash` (already holding the file's contents) and its backing file.
    pub fn new(flash: MemFlash<S>, backing: B) -> Self {
        PersistentFlash { flash, backing }
    }

    /// Cuts power during operation `op` (see the module docs).
    #[cfg(feature = "power-cut")]
    pub fn cut_power_at(&mut self, op: u32) {
        self.flash.cut_power_at(op);
    }

    /// The flash underneath.
    pub fn flash(&self) -> &MemFlash<S> {
        &self.flash
    }

    /// The backing.
    pub fn backing(&mut self) -> &mut B {
        &mut self.backing
    }

    /// Stores the range an operation touched if it changed anything, and handles a cut.
    fn after(
        &mut self,
        ops_before: u32,
        start: u32,
        len: usize,
        r: Result<(), MemFlashError>,
    ) -> Result<(), PersistError> {
        let counted = self.flash.ops() != ops_before;
        let changed = counted && matches!(r, Ok(()) | Err(MemFlashError::PowerLost));
        if changed {
            let s = start as usize;
            let bytes = &self.flash.contents()[s..s + len];
            if !self.backing.store(start, bytes) {
                return Err(PersistError::Io);
            }
            if r.is_err() {
                self.backing.power_cut();
            }
        }
        r.map_err(PersistError::Flash)
    }
}

impl<S, B> ErrorType for PersistentFlash<S, B> {
    type Error = PersistError;
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, B: Backing> ReadNorFlash for PersistentFlash<S, B> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.flash.read(offset, bytes).map_err(PersistError::Flash)
    }

    fn capacity(&self) -> usize {
        self.flash.capacity()
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, B: Backing> NorFlash for PersistentFlash<S, B> {
    const WRITE_SIZE: usize = rota_memflash::WRITE_SIZE;
    const ERASE_SIZE: usize = rota_memflash::ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let before = self.flash.ops();
        let r = self.flash.erase(from, to);
        self.after(before, from, to.saturating_sub(from) as usize, r)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let before = self.flash.ops();
        let r = self.flash.write(offset, bytes);
        self.after(before, offset, bytes.len(), r)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// A "file" of the region's size, and whether the cut was reported.
    struct FileDouble {
        file: Vec<u8>,
        cut: bool,
        fail: bool,
    }

    impl Backing for FileDouble {
        fn store(&mut self, offset: u32, bytes: &[u8]) -> bool {
            assert!(!self.cut, "nothing is stored after the power cut");
            let o = offset as usize;
            self.file[o..o + bytes.len()].copy_from_slice(bytes);
            !self.fail
        }
        fn power_cut(&mut self) {
            self.cut = true;
        }
    }

    fn flash() -> PersistentFlash<Vec<u8>, FileDouble> {
        PersistentFlash::new(
            MemFlash::new(vec![0u8; 8192]),
            FileDouble {
                file: vec![0u8; 8192],
                cut: false,
                fail: false,
            },
        )
    }

    #[test]
    fn every_change_reaches_the_file() {
        let mut f = flash();
        f.erase(4096, 8192).unwrap();
        f.write(4100, &[1, 2, 3, 4, 0xF0, 0xF1, 0xF2, 0xF3])
            .unwrap();
        f.write(4104, &[0x0F; 4]).unwrap();
        let contents = f.flash().contents().to_vec();
        assert_eq!(f.backing().file, contents);
        assert_eq!(&f.flash().contents()[4100..4108], &[1, 2, 3, 4, 0, 1, 2, 3]);
    }

    #[test]
    fn refused_operations_store_nothing_and_are_not_counted() {
        let mut f = flash();
        f.backing().file[0] = 0x55;
        assert_eq!(
            f.write(2, &[0; 4]),
            Err(PersistError::Flash(MemFlashError::NotAligned))
        );
        assert_eq!(
            f.erase(0, 100_000),
            Err(PersistError::Flash(MemFlashError::OutOfBounds))
        );
        assert_eq!(f.backing().file[0], 0x55);
        assert_eq!(f.flash().ops(), 0);
    }

    #[test]
    fn a_cut_write_stores_its_first_half_then_reports_the_cut() {
        let mut f = flash();
        f.erase(0, 4096).unwrap();
        f.flash.cut_power_at(1);
        assert_eq!(
            f.write(0, &[0; 16]),
            Err(PersistError::Flash(MemFlashError::PowerLost))
        );
        assert!(f.backing().cut);
        assert_eq!(&f.backing().file[..8], &[0; 8]);
        assert_eq!(&f.backing().file[8..16], &[0xFF; 8]);
        // Dead afterwards: nothing more is stored (FileDouble asserts that).
        assert!(f.write(16, &[0; 4]).is_err());
        assert!(f.erase(4096, 8192).is_err());
    }

    #[test]
    fn a_cut_erase_stores_half_the_sector() {
        let mut f = flash();
        f.flash.cut_power_at(0);
        assert!(f.erase(0, 4096).is_err());
        assert!(f.backing().cut);
        assert!(f.backing().file[..2048].iter().all(|&b| b == 0xFF));
        assert!(f.backing().file[2048..4096].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_file_error_is_reported() {
        let mut f = flash();
        f.backing().fail = true;
        assert_eq!(f.erase(0, 4096), Err(PersistError::Io));
    }
}
