//! The board as the resident core will see it: console, flash, time, reset/exit, arena, stack.
//!
//! rota-core's `Board` trait is implemented on [`Esp8266`] once it exists; these inherent methods
//! are the pieces it needs.

use core::ops::Range;

use crate::flash::Flash;
use crate::{console, rt, time};

/// The ESP8266 board (sim or chip, per the cargo feature).
pub struct Esp8266 {
    /// The blob store window.
    pub flash: Flash,
}

impl Esp8266 {
    /// Takes the board. Call once.
    pub fn take() -> Self {
        Esp8266 {
            flash: Flash::take(),
        }
    }

    /// Writes bytes to the console.
    pub fn console_write(&mut self, bytes: &[u8]) {
        console::write(bytes)
    }

    /// The blob store as `embedded-storage` `NorFlash`.
    pub fn flash(&mut self) -> &mut Flash {
        &mut self.flash
    }

    /// Milliseconds since boot.
    pub fn now_ms(&self) -> u64 {
        time::now_ms()
    }

    /// The overlay arena, as words: IRAM allows only aligned 32-bit stores on the chip.
    pub fn arena(&mut self) -> &'static mut [u32] {
        let start = rt::symbols::arena_start();
        let len = (rt::symbols::arena_end() - start) / 4;
        // SAFETY: the linker reserves the arena for this use only; `take` is called once.
        unsafe { core::slice::from_raw_parts_mut(start as *mut u32, len) }
    }

    /// The heap region (DRAM between `.bss` and the stack).
    pub fn heap(&self) -> Range<usize> {
        rt::symbols::heap_start()..rt::symbols::heap_end()
    }

    /// The stack: `start` = its bottom (`_stack_end`), `end` = its top (`_stack_start`).
    pub fn stack_bounds(&self) -> Range<usize> {
        rt::symbols::stack_end()..rt::symbols::stack_start()
    }

    /// Makes code written to the arena (or flash window) visible to instruction fetch.
    pub fn sync_icache(&mut self) {
        rt::isync()
    }

    /// Reboots. See [`crate::reset`].
    pub fn reset(&mut self) -> ! {
        crate::reset()
    }

    /// Stops the machine with `code`. See [`crate::exit`].
    pub fn exit(&mut self, code: u32) -> ! {
        crate::exit(code)
    }
}
