//! The MPS2 AN385 board (Cortex-M3) under `qemu-system-arm -M mps2-an385`: the pieces the firmware
//! (`rota-mps2-an385`) and the examples share.
//!
//! Console: CMSDK UART0 ([`uart`]). Clock: CMSDK TIMER0 ([`clock`]). Network: the LAN9118 ([`nic`]).
//! Storage: the writable memory at 3 MiB, driven as NOR flash, optionally kept in a host file with
//! power-cut injection ([`storage`] over `rota-hostflash`). Exit: semihosting ([`semihosting`]), so
//! the emulator's exit status is the guest's.
#![no_std]
#![deny(missing_docs)]

pub mod clock;
pub mod nic;
pub mod semihosting;
pub mod storage;
pub mod uart;

/// Exit status of a run ended by an injected power cut (`cut=<n>`).
pub const POWER_CUT_EXIT: u32 = rota_hostflash::POWER_CUT_EXIT;

extern "C" {
    static mut _storage_start: u8;
    static _storage_size: u8;
}

/// The storage region's address (from the linker script).
pub fn storage_base() -> u32 {
    core::ptr::addr_of!(_storage_start) as usize as u32
}

/// The storage region: [`storage_base`] and `_storage_size` bytes from the linker script.
///
/// # Safety
/// Call once; the region must not be used through any other reference.
pub unsafe fn storage_region() -> &'static mut [u8] {
    // SAFETY: the linker script defines the region; the caller promises uniqueness.
    unsafe {
        let size = core::ptr::addr_of!(_storage_size) as usize;
        core::slice::from_raw_parts_mut(core::ptr::addr_of_mut!(_storage_start), size)
    }
}
