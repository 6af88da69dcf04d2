//! Stack use measured by painting: fill the unused stack with a pattern, later find the lowest word
//! that changed.

/// The paint pattern.
pub const PAINT: u32 = 0x5AC3_5AC3;

/// Bytes below the current frame left unpainted (the painter's own frame).
const MARGIN: usize = 64;

/// A full-descending stack region `[bottom, top)`.
#[derive(Clone, Copy, Debug)]
pub struct Stack {
    /// Lowest address of the stack.
    pub bottom: *mut u32,
    /// One past the highest address (the initial stack pointer).
    pub top: *mut u32,
}

impl Stack {
    /// Paints everything below the caller's frame.
    ///
    /// # Safety
    /// `bottom..top` must be this CPU's stack.
    #[inline(never)]
    pub unsafe fn paint(&self) {
        let here = core::ptr::addr_of!(*self) as usize;
        let marker = 0u32;
        let sp = (core::ptr::addr_of!(marker) as usize).min(here);
        // Never outside [bottom, top), even if the caller is not running on this stack.
        let limit = ((sp.saturating_sub(MARGIN) & !3) as *mut u32).min(self.top);
        let mut p = self.bottom;
        while p < limit {
            // SAFETY: `bottom <= p < limit <= top`, inside this CPU's stack (the contract) and below
            // the caller's frame and the margin, so no live data is overwritten.
            unsafe {
                p.write_volatile(PAINT);
                p = p.add(1);
            }
        }
    }

    /// Bytes of the whole stack region.
    pub fn size(&self) -> usize {
        self.top as usize - self.bottom as usize
    }

    /// Deepest stack use since the last [`Stack::paint`], in bytes from the top.
    pub fn peak(&self) -> u32 {
        let mut p = self.bottom;
        // SAFETY: reads stay inside the stack region.
        unsafe {
            while p < self.top && p.read_volatile() == PAINT {
                p = p.add(1);
            }
        }
        (self.top as usize - p as usize) as u32
    }
}
