//! The one ABI between rota's resident core and its overlays.
//!
//! The core passes every overlay two pointers: a [`Services`] table (the only way an overlay reaches
//! hardware, the heap or the clock) and a [`Context`] (the only state an overlay may keep; overlays have
//! no writable statics). Both are `#[repr(C)]`; [`ABI_VERSION`] changes whenever either layout or the
//! meaning of a field changes, and the loader refuses a blob built against another version.
#![no_std]
#![cfg_attr(target_arch = "xtensa", feature(asm_experimental_arch))]
#![deny(missing_docs)]

use core::ffi::c_void;

/// Version of [`Services`] and [`Context`]. Bump on any layout or semantic change.
pub const ABI_VERSION: u32 = 1;

/// Symbol name of every overlay's entry point (see [`OverlayEntry`]).
pub const ENTRY_SYMBOL: &str = "rota_overlay_entry";

/// Signature of an overlay's entry point: returns [`status::OK`] or another status code.
pub type OverlayEntry = unsafe extern "C" fn(svc: *const Services, ctx: *mut Context) -> i32;

/// Status codes returned by services and overlay entries.
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// An argument was out of range (offset, length, alignment).
    pub const EINVAL: i32 = -1;
    /// The flash device reported an error.
    pub const EIO: i32 = -2;
    /// Out of memory.
    pub const ENOMEM: i32 = -3;
    /// Data read back did not match what was written, or a record failed its check.
    pub const ECORRUPT: i32 = -4;
}

/// Writes `len` bytes at `buf` to the console.
pub type ConsoleWriteFn = unsafe extern "C" fn(core: *mut c_void, buf: *const u8, len: usize);
/// Allocates `size` bytes aligned to `align` from the core's heap; null on failure.
pub type HeapAllocFn =
    unsafe extern "C" fn(core: *mut c_void, size: usize, align: usize) -> *mut u8;
/// Frees a block returned by [`HeapAllocFn`] with the same `size` and `align`.
pub type HeapFreeFn =
    unsafe extern "C" fn(core: *mut c_void, ptr: *mut u8, size: usize, align: usize);
/// Reads `len` bytes at `offset` of the storage region into `buf`; returns a status code.
pub type FlashReadFn =
    unsafe extern "C" fn(core: *mut c_void, offset: u32, buf: *mut u8, len: usize) -> i32;
/// Writes `len` bytes from `buf` at `offset` (erased bytes only); returns a status code.
pub type FlashWriteFn =
    unsafe extern "C" fn(core: *mut c_void, offset: u32, buf: *const u8, len: usize) -> i32;
/// Erases `[from, to)` of the storage region (erase-size aligned); returns a status code.
pub type FlashEraseFn = unsafe extern "C" fn(core: *mut c_void, from: u32, to: u32) -> i32;
/// Milliseconds since boot (wraps after ~49 days).
pub type TimeMsFn = unsafe extern "C" fn(core: *mut c_void) -> u32;
/// Resets the device; never returns.
pub type ResetFn = unsafe extern "C" fn(core: *mut c_void) -> !;

/// The service table the core hands to every overlay.
#[repr(C)]
pub struct Services {
    /// Must equal [`ABI_VERSION`]; overlays may check it, the loader already did.
    pub abi_version: u32,
    /// Opaque core state, passed back as the first argument of every service.
    pub core: *mut c_void,
    /// See [`ConsoleWriteFn`].
    pub console_write: ConsoleWriteFn,
    /// See [`HeapAllocFn`].
    pub heap_alloc: HeapAllocFn,
    /// See [`HeapFreeFn`].
    pub heap_free: HeapFreeFn,
    /// See [`FlashReadFn`].
    pub flash_read: FlashReadFn,
    /// See [`FlashWriteFn`].
    pub flash_write: FlashWriteFn,
    /// See [`FlashEraseFn`].
    pub flash_erase: FlashEraseFn,
    /// See [`TimeMsFn`].
    pub time_ms: TimeMsFn,
    /// See [`ResetFn`].
    pub reset: ResetFn,
}

/// Largest config record payload the context holds.
pub const CONFIG_MAX: usize = 128;

/// Storage-region geometry and well-known offsets, filled in by the core.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlashLayout {
    /// Size of the storage region in bytes.
    pub size: u32,
    /// Erase granularity in bytes.
    pub erase_size: u32,
    /// Write granularity in bytes.
    pub write_size: u32,
    /// Offset of the config record sector.
    pub config_offset: u32,
    /// Offset of a sector overlays may erase and rewrite freely.
    pub scratch_offset: u32,
}

/// All state shared by the core and the overlays (luaOTA's `self` table).
#[repr(C)]
pub struct Context {
    /// Storage geometry.
    pub flash: FlashLayout,
    /// Boot counter as read by `init` from the config record.
    pub boot_count: u32,
    /// Timer ticks counted by `tick`.
    pub ticks: u32,
    /// Number of valid bytes in `config`.
    pub config_len: u32,
    /// The config record payload, as read by `init`.
    pub config: [u8; CONFIG_MAX],
}

impl Context {
    /// A context with the given flash layout and everything else zero.
    pub const fn new(flash: FlashLayout) -> Self {
        Self {
            flash,
            boot_count: 0,
            ticks: 0,
            config_len: 0,
            config: [0; CONFIG_MAX],
        }
    }
}

impl Services {
    /// Writes `bytes` to the console.
    #[inline(always)]
    pub fn write(&self, bytes: &[u8]) {
        // SAFETY: the table comes from the core, which accepts any valid slice.
        unsafe { (self.console_write)(self.core, bytes.as_ptr(), bytes.len()) }
    }

    /// Writes `n` in decimal to the console (overlays carry no `core::fmt`).
    pub fn write_dec(&self, n: u32) {
        let mut buf = [0u8; 10];
        self.write(format_dec(n, &mut buf));
    }

    /// Allocates `size` bytes aligned to `align`; null on failure.
    #[inline(always)]
    pub fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        // SAFETY: the core validates size and align.
        unsafe { (self.heap_alloc)(self.core, size, align) }
    }

    /// Frees a block from [`Services::alloc`].
    ///
    /// # Safety
    /// `ptr`, `size` and `align` must be exactly those of one live allocation.
    #[inline(always)]
    pub unsafe fn free(&self, ptr: *mut u8, size: usize, align: usize) {
        (self.heap_free)(self.core, ptr, size, align)
    }

    /// Reads flash at `offset` into `buf`; returns a status code.
    #[inline(always)]
    pub fn flash_read(&self, offset: u32, buf: &mut [u8]) -> i32 {
        // SAFETY: `buf` is a valid writable slice; the core checks the range.
        unsafe { (self.flash_read)(self.core, offset, buf.as_mut_ptr(), buf.len()) }
    }

    /// Writes `buf` to flash at `offset`; returns a status code.
    #[inline(always)]
    pub fn flash_write(&self, offset: u32, buf: &[u8]) -> i32 {
        // SAFETY: `buf` is a valid slice; the core checks the range.
        unsafe { (self.flash_write)(self.core, offset, buf.as_ptr(), buf.len()) }
    }

    /// Erases flash `[from, to)`; returns a status code.
    #[inline(always)]
    pub fn flash_erase(&self, from: u32, to: u32) -> i32 {
        // SAFETY: the core checks the range.
        unsafe { (self.flash_erase)(self.core, from, to) }
    }

    /// Milliseconds since boot.
    #[inline(always)]
    pub fn time_ms(&self) -> u32 {
        // SAFETY: no arguments to misuse.
        unsafe { (self.time_ms)(self.core) }
    }

    /// Resets the device.
    #[inline(always)]
    pub fn reset(&self) -> ! {
        // SAFETY: no arguments to misuse.
        unsafe { (self.reset)(self.core) }
    }
}

/// Formats `n` in decimal into `buf` and returns the digits (shared by the core and the overlays, which
/// carry no `core::fmt`).
pub fn format_dec(n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Declares an overlay: exports `fn(&Services, &mut Context) -> i32` as [`ENTRY_SYMBOL`] and, on
/// bare-metal targets, a panic handler that traps (overlays cannot reach the console without `Services`).
#[macro_export]
macro_rules! overlay {
    ($main:path) => {
        /// The overlay entry point the loader calls.
        ///
        /// # Safety
        /// `svc` and `ctx` must be valid pointers provided by the resident core.
        #[no_mangle]
        pub unsafe extern "C" fn rota_overlay_entry(
            svc: *const $crate::Services,
            ctx: *mut $crate::Context,
        ) -> i32 {
            $main(&*svc, &mut *ctx)
        }

        #[cfg(target_os = "none")]
        #[panic_handler]
        fn panic(_: &core::panic::PanicInfo) -> ! {
            $crate::trap()
        }
    };
}

/// Stops execution with an illegal instruction (the core's fault handler reports it).
#[inline(always)]
pub fn trap() -> ! {
    #[cfg(target_arch = "arm")]
    // SAFETY: `udf` raises a fault and never returns.
    unsafe {
        core::arch::asm!("udf #0", options(noreturn))
    }
    #[cfg(target_arch = "xtensa")]
    // SAFETY: `ill` raises an exception and never returns.
    unsafe {
        core::arch::asm!("ill", options(noreturn))
    }
    #[cfg(not(any(target_arch = "arm", target_arch = "xtensa")))]
    loop {
        core::hint::spin_loop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn service_table_layout_is_frozen_for_this_abi_version() {
        // Changing the table without bumping ABI_VERSION would let old overlays call the wrong service.
        let w = size_of::<usize>();
        assert_eq!(offset_of!(Services, core), w);
        assert_eq!(offset_of!(Services, console_write), 2 * w);
        assert_eq!(offset_of!(Services, reset), 9 * w);
        assert_eq!(size_of::<Services>(), 10 * w);
        assert_eq!(size_of::<FlashLayout>(), 20);
        assert_eq!(offset_of!(Context, config), 32);
        assert_eq!(ABI_VERSION, 1);
    }

    #[test]
    fn format_dec_covers_the_whole_range() {
        let mut buf = [0; 10];
        assert_eq!(format_dec(0, &mut buf), b"0");
        assert_eq!(format_dec(1024, &mut buf), b"1024");
        assert_eq!(format_dec(u32::MAX, &mut buf), b"4294967295");
    }
}
