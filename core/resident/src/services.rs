//! The service table: `extern "C"` functions, generic over the board, that overlays call.
//!
//! Every service gets the opaque `core` pointer back as its first argument and checks its arguments:
//! an overlay cannot make the core read or write outside the storage region or the buffers it passed.

use crate::heap::AccountingHeap;
use crate::Board;
use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use rota_abi::{status, Services, ABI_VERSION};

/// What the services reach through the `core` pointer.
pub struct CoreState<'a, B: Board> {
    /// The board.
    pub board: &'a mut B,
    /// The heap overlays allocate from.
    pub heap: &'static AccountingHeap,
}

/// Builds the table for `state`; valid while `state` lives and is not otherwise borrowed.
pub fn table<B: Board>(state: &mut CoreState<'_, B>) -> Services {
    Services {
        abi_version: ABI_VERSION,
        core: state as *mut CoreState<'_, B> as *mut c_void,
        console_write: console_write::<B>,
        heap_alloc: heap_alloc::<B>,
        heap_free: heap_free::<B>,
        flash_read: flash_read::<B>,
        flash_write: flash_write::<B>,
        flash_erase: flash_erase::<B>,
        time_ms: time_ms::<B>,
        reset: reset::<B>,
    }
}

/// # Safety
/// `core` must come from [`table`] and its state must be alive.
unsafe fn state<'a, B: Board>(core: *mut c_void) -> &'a mut CoreState<'a, B> {
    &mut *(core as *mut CoreState<'a, B>)
}

fn in_region<B: Board>(s: &mut CoreState<'_, B>, offset: u32, len: usize) -> bool {
    (offset as usize)
        .checked_add(len)
        .is_some_and(|end| end <= s.board.flash().capacity())
}

/// A flash driver's result as a service status code.
fn io_status<E>(r: Result<(), E>) -> i32 {
    match r {
        Ok(()) => status::OK,
        Err(_) => status::EIO,
    }
}

unsafe extern "C" fn console_write<B: Board>(core: *mut c_void, buf: *const u8, len: usize) {
    if buf.is_null() {
        return;
    }
    let s = state::<B>(core);
    s.board.console_write(core::slice::from_raw_parts(buf, len));
}

unsafe extern "C" fn heap_alloc<B: Board>(core: *mut c_void, size: usize, align: usize) -> *mut u8 {
    let s = state::<B>(core);
    match Layout::from_size_align(size, align) {
        Ok(l) if size > 0 => s.heap.alloc(l),
        _ => core::ptr::null_mut(),
    }
}

unsafe extern "C" fn heap_free<B: Board>(
    core: *mut c_void,
    ptr: *mut u8,
    size: usize,
    align: usize,
) {
    let s = state::<B>(core);
    if let Ok(l) = Layout::from_size_align(size, align) {
        s.heap.dealloc(ptr, l);
    }
}

unsafe extern "C" fn flash_read<B: Board>(
    core: *mut c_void,
    offset: u32,
    buf: *mut u8,
    len: usize,
) -> i32 {
    let s = state::<B>(core);
    if buf.is_null() || !in_region(s, offset, len) {
        return status::EINVAL;
    }
    io_status(
        s.board
            .flash()
            .read(offset, core::slice::from_raw_parts_mut(buf, len)),
    )
}

unsafe extern "C" fn flash_write<B: Board>(
    core: *mut c_void,
    offset: u32,
    buf: *const u8,
    len: usize,
) -> i32 {
    let s = state::<B>(core);
    if buf.is_null() || !in_region(s, offset, len) {
        return status::EINVAL;
    }
    io_status(
        s.board
            .flash()
            .write(offset, core::slice::from_raw_parts(buf, len)),
    )
}

unsafe extern "C" fn flash_erase<B: Board>(core: *mut c_void, from: u32, to: u32) -> i32 {
    let s = state::<B>(core);
    if from > to || !in_region(s, from, (to - from) as usize) {
        return status::EINVAL;
    }
    io_status(s.board.flash().erase(from, to))
}

unsafe extern "C" fn time_ms<B: Board>(core: *mut c_void) -> u32 {
    state::<B>(core).board.now_ms()
}

unsafe extern "C" fn reset<B: Board>(core: *mut c_void) -> ! {
    state::<B>(core).board.reset()
}
