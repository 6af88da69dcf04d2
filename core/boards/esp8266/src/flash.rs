//! The blob store: `embedded-storage` 0.3 `NorFlash` over the flash window
//! (`_flash_start.._flash_end`, flash offset 0x80000.., 512 KB, mapped at 0x40280000 on both
//! machines).
//!
//! NOR semantics on both machines: erase (4 KB sectors) sets bytes to 0xFF; a write (4-byte
//! aligned offset and length) can only clear bits (the result is old AND new, as on a real SPI NOR
//! chip); reads have no alignment rule. The window is also where overlays run in place:
//! [`Flash::mapped`] gives the CPU address of an offset.
//!
//! - `sim`: the window is RAM in QEMU's sim machine (instrom0). All accesses are aligned 32-bit
//!   loads/stores, as the chip's mapped flash requires. Under QEMU the window starts zeroed (not
//!   erased) unless the harness loads an image into it (docs/boards-esp8266.md).
//! - `chip`: ROM `SPIRead`/`SPIWrite`/`SPIEraseSector` with the flash cache off, from IRAM.
//!   UNTESTED without a chip.

use embedded_storage::nor_flash::{
    check_erase, check_read, check_write, ErrorType, MultiwriteNorFlash, NorFlash,
    NorFlashErrorKind, ReadNorFlash,
};

use crate::rt::symbols;

/// Erase sector size.
pub const SECTOR_SIZE: usize = 4096;
/// Write granularity.
pub const WORD_SIZE: usize = 4;
/// Offset of the window in the SPI flash chip (the chip's flash is mapped at 0x40200000).
pub const FLASH_OFFSET: u32 = 0x8_0000;

/// The blob store window as a `NorFlash`. Offsets are relative to `_flash_start`.
pub struct Flash {
    _private: (),
}

/// Errors of [`Flash`]: the standard `NorFlashErrorKind`s, plus a failed ROM call on the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashError {
    /// Misaligned offset or length, or out of bounds.
    Kind(NorFlashErrorKind),
    /// A ROM SPI routine returned this non-zero status (chip only).
    Rom(u32),
}

impl embedded_storage::nor_flash::NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::Kind(k) => *k,
            FlashError::Rom(_) => NorFlashErrorKind::Other,
        }
    }
}

impl From<NorFlashErrorKind> for FlashError {
    fn from(k: NorFlashErrorKind) -> Self {
        FlashError::Kind(k)
    }
}

impl Flash {
    /// Takes the blob store. Only one instance should exist.
    pub fn take() -> Self {
        Flash { _private: () }
    }
}

impl ErrorType for Flash {
    type Error = FlashError;
}

impl ReadNorFlash for Flash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        check_read(self, offset, bytes.len())?;
        imp::read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        symbols::flash_end() - symbols::flash_start()
    }
}

impl NorFlash for Flash {
    const WRITE_SIZE: usize = WORD_SIZE;
    const ERASE_SIZE: usize = SECTOR_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        check_erase(self, from, to)?;
        let mut sector = from;
        while sector < to {
            imp::erase_sector(sector)?;
            sector += SECTOR_SIZE as u32;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        check_write(self, offset, bytes.len())?;
        imp::write(offset, bytes)
    }
}

/// NOR flash lets a word be written again (bits only go from 1 to 0).
impl MultiwriteNorFlash for Flash {}

#[cfg(feature = "sim")]
mod imp {
    use super::{FlashError, SECTOR_SIZE};
    use crate::rt::symbols;

    fn word_ptr(offset: u32) -> *mut u32 {
        (symbols::flash_start() + offset as usize) as *mut u32
    }

    /// Reads through aligned words, as the chip's mapped flash requires.
    pub fn read(offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        let mut pos = 0;
        while pos < bytes.len() {
            let addr = offset as usize + pos;
            let word_off = (addr & !3) as u32;
            // SAFETY: in bounds (checked by the caller), aligned.
            let word = unsafe { core::ptr::read_volatile(word_ptr(word_off)) }.to_le_bytes();
            let mut i = addr & 3;
            while i < 4 && pos < bytes.len() {
                bytes[pos] = word[i];
                i += 1;
                pos += 1;
            }
        }
        Ok(())
    }

    pub fn write(offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        for (i, chunk) in bytes.as_chunks::<4>().0.iter().enumerate() {
            let p = word_ptr(offset + 4 * i as u32);
            let new = u32::from_le_bytes(*chunk);
            // SAFETY: in bounds and aligned (checked by the caller).
            unsafe { core::ptr::write_volatile(p, core::ptr::read_volatile(p) & new) };
        }
        Ok(())
    }

    pub fn erase_sector(offset: u32) -> Result<(), FlashError> {
        for i in 0..SECTOR_SIZE / 4 {
            // SAFETY: in bounds and aligned (checked by the caller).
            unsafe { core::ptr::write_volatile(word_ptr(offset + 4 * i as u32), u32::MAX) };
        }
        Ok(())
    }
}

#[cfg(feature = "chip")]
mod imp {
    //! The ROM routines need the flash cache off while they run, so the code that calls them is in
    //! IRAM and touches only its arguments (no calls into flash-resident code, no constants in
    //! flash). Byte packing happens outside, with the cache on.
    use super::{FlashError, FLASH_OFFSET, SECTOR_SIZE};

    extern "C" {
        fn Cache_Read_Disable();
        fn Cache_Read_Enable(odd_even: u32, mb_count: u32, unknown: u32);
        fn SPIRead(addr: u32, dst: *mut u32, size: u32) -> u32;
        fn SPIWrite(addr: u32, src: *const u32, size: u32) -> u32;
        fn SPIEraseSector(sector: u32) -> u32;
        fn SPIUnlock() -> u32;
    }

    const CHUNK_WORDS: usize = 16;

    #[link_section = ".rota.iram.text.flash_read"]
    #[inline(never)]
    unsafe extern "C" fn rom_read(addr: u32, dst: *mut u32, size: u32) -> u32 {
        // SAFETY: ROM routines; `dst` is a DRAM buffer of `size` bytes.
        unsafe {
            Cache_Read_Disable();
            let r = SPIRead(addr, dst, size);
            Cache_Read_Enable(0, 0, 1);
            r
        }
    }

    #[link_section = ".rota.iram.text.flash_write"]
    #[inline(never)]
    unsafe extern "C" fn rom_write(addr: u32, src: *const u32, size: u32) -> u32 {
        // SAFETY: ROM routines; `src` is a DRAM buffer of `size` bytes.
        unsafe {
            Cache_Read_Disable();
            let mut r = SPIUnlock();
            if r == 0 {
                r = SPIWrite(addr, src, size);
            }
            Cache_Read_Enable(0, 0, 1);
            r
        }
    }

    #[link_section = ".rota.iram.text.flash_erase"]
    #[inline(never)]
    unsafe extern "C" fn rom_erase(sector: u32) -> u32 {
        // SAFETY: ROM routines.
        unsafe {
            Cache_Read_Disable();
            let mut r = SPIUnlock();
            if r == 0 {
                r = SPIEraseSector(sector);
            }
            Cache_Read_Enable(0, 0, 1);
            r
        }
    }

    fn check(r: u32) -> Result<(), FlashError> {
        if r == 0 {
            Ok(())
        } else {
            Err(FlashError::Rom(r))
        }
    }

    pub fn read(offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        let mut buf = [0u32; CHUNK_WORDS];
        let mut pos = 0usize;
        while pos < bytes.len() {
            let addr = FLASH_OFFSET + offset + pos as u32;
            let aligned = addr & !3;
            let skip = (addr - aligned) as usize;
            let n = (bytes.len() - pos).min(CHUNK_WORDS * 4 - skip);
            let words = (skip + n).div_ceil(4);
            // SAFETY: `buf` holds `words` words.
            check(unsafe { rom_read(aligned, buf.as_mut_ptr(), (words * 4) as u32) })?;
            for i in 0..n {
                bytes[pos + i] = buf[(skip + i) / 4].to_le_bytes()[(skip + i) % 4];
            }
            pos += n;
        }
        Ok(())
    }

    pub fn write(offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        let mut buf = [0u32; CHUNK_WORDS];
        for (c, chunk) in bytes.chunks(CHUNK_WORDS * 4).enumerate() {
            for (i, w) in chunk.as_chunks::<4>().0.iter().enumerate() {
                buf[i] = u32::from_le_bytes(*w);
            }
            let addr = FLASH_OFFSET + offset + (c * CHUNK_WORDS * 4) as u32;
            // SAFETY: `buf` holds `chunk.len()` bytes of words.
            check(unsafe { rom_write(addr, buf.as_ptr(), chunk.len() as u32) })?;
        }
        Ok(())
    }

    pub fn erase_sector(offset: u32) -> Result<(), FlashError> {
        // SAFETY: ROM routine on a sector of the blob store.
        check(unsafe { rom_erase((FLASH_OFFSET + offset) / SECTOR_SIZE as u32) })
    }
}
