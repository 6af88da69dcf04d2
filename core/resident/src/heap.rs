//! The heap with its accounting: bytes in use, free, and the peak since the last reset.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{null_mut, NonNull};
use linked_list_allocator::Heap;

/// Heap figures at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HeapStats {
    /// Bytes in use (including the allocator's rounding).
    pub used: usize,
    /// Bytes free.
    pub free: usize,
    /// Highest `used` since the last [`AccountingHeap::reset_peak`].
    pub peak: usize,
}

/// A first-fit heap that counts what it hands out. Usable as the `#[global_allocator]`.
///
/// The core is single-threaded and never allocates from interrupt handlers, so no lock is taken.
pub struct AccountingHeap {
    heap: UnsafeCell<Heap>,
    peak: UnsafeCell<usize>,
}

// SAFETY: rota's core runs on one CPU without allocating in interrupts (see the type's docs).
unsafe impl Sync for AccountingHeap {}

impl AccountingHeap {
    /// An empty heap; call [`AccountingHeap::init`] before use.
    pub const fn empty() -> Self {
        AccountingHeap {
            heap: UnsafeCell::new(Heap::empty()),
            peak: UnsafeCell::new(0),
        }
    }

    /// Gives the heap its memory.
    ///
    /// # Safety
    /// `[start, start + size)` must be unused memory that lives forever; call once.
    pub unsafe fn init(&self, start: *mut u8, size: usize) {
        // SAFETY: single-threaded, no other reference to the heap exists during the call; the memory
        // is unused and lives forever (this function's contract).
        unsafe { (*self.heap.get()).init(start, size) };
    }

    /// Current figures.
    pub fn stats(&self) -> HeapStats {
        // SAFETY: single-threaded (see the type's docs); no reference outlives this call.
        unsafe {
            let h = &*self.heap.get();
            HeapStats {
                used: h.used(),
                free: h.free(),
                peak: *self.peak.get(),
            }
        }
    }

    /// Starts a new peak measurement from the current use.
    pub fn reset_peak(&self) {
        // SAFETY: as in `stats`.
        unsafe { *self.peak.get() = (*self.heap.get()).used() }
    }
}

// SAFETY: `alloc` returns null or a block of at least `layout.size()` bytes aligned to `layout.align()`
// that no other live allocation overlaps (the linked-list allocator's guarantee); `dealloc` hands a
// block back with the layout it was allocated with (GlobalAlloc's contract on the caller).
unsafe impl GlobalAlloc for AccountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded and never called from an interrupt (the type's docs), so these
        // are the only references to the heap and the peak during the call.
        let (h, peak) = unsafe { (&mut *self.heap.get(), &mut *self.peak.get()) };
        match h.allocate_first_fit(layout) {
            Ok(p) => {
                *peak = (*peak).max(h.used());
                p.as_ptr()
            }
            Err(()) => null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the only reference to the heap during the call (as in `alloc`); `p` and
            // `layout` are one live allocation of this heap (GlobalAlloc's contract).
            unsafe { (*self.heap.get()).deallocate(p, layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_use_peak_and_returns_to_empty() {
        static HEAP: AccountingHeap = AccountingHeap::empty();
        static mut MEM: [u64; 512] = [0; 512];
        // SAFETY: MEM is used by nothing else.
        unsafe { HEAP.init(core::ptr::addr_of_mut!(MEM) as *mut u8, 4096) };
        let empty = HEAP.stats();
        assert_eq!(empty.used, 0);
        let l = Layout::from_size_align(100, 4).unwrap();
        // SAFETY: layouts match their allocations.
        unsafe {
            let a = HEAP.alloc(l);
            let b = HEAP.alloc(l);
            assert!(!a.is_null() && !b.is_null());
            assert!(HEAP.stats().used >= 200);
            HEAP.dealloc(b, l);
            HEAP.dealloc(a, l);
        }
        let after = HEAP.stats();
        assert_eq!(after.used, 0);
        assert_eq!(after.free, empty.free);
        assert!(after.peak >= 200);
        HEAP.reset_peak();
        assert_eq!(HEAP.stats().peak, 0);
        // SAFETY: too large to fit; must fail cleanly.
        assert!(unsafe { HEAP.alloc(Layout::from_size_align(8192, 4).unwrap()) }.is_null());
    }
}
