//! The board as the resident core sees it: [`rota_core::Board`] over the console, the flash window,
//! CCOUNT time, reset, and the instruction-cache sync.

use crate::flash::Flash;
use crate::{console, rt, time};
use rota_core::stack::Stack;

/// The ESP8266 board (sim or chip, per the cargo feature).
pub struct Esp8266 {
    /// The storage region (the flash window).
    pub flash: Flash,
}

/// Instruction RAM and memory-mapped flash: only aligned 32-bit loads are allowed there on the chip.
const WORD_ONLY: core::ops::Range<usize> = 0x4000_0000..0x4040_0000;

impl Esp8266 {
    /// Takes the board. Call once.
    pub fn take() -> Self {
        Esp8266 {
            flash: Flash::take(),
        }
    }

    /// The overlay arena, as words: IRAM allows only aligned 32-bit stores on the chip.
    pub fn arena(&mut self) -> &'static mut [u32] {
        let start = rt::symbols::arena_start();
        let len = (rt::symbols::arena_end() - start) / 4;
        // SAFETY: the linker reserves the arena for this use only; `take` is called once.
        unsafe { core::slice::from_raw_parts_mut(start as *mut u32, len) }
    }

    /// The heap region (DRAM between `.bss` and the stack) as (start, size).
    pub fn heap(&self) -> (*mut u8, usize) {
        let start = rt::symbols::heap_start();
        (start as *mut u8, rt::symbols::heap_end() - start)
    }

    /// The stack, for painting.
    pub fn stack(&self) -> Stack {
        Stack {
            bottom: rt::symbols::stack_end() as *mut u32,
            top: rt::symbols::stack_start() as *mut u32,
        }
    }
}

impl rota_core::Board for Esp8266 {
    type Flash = Flash;
    /// No Rust WiFi driver exists for the ESP8266 (docs/boards-esp8266.md): the update phases find no
    /// network and the application starts.
    type Nic = rota_net::NoNic;
    const ISA: rota_core::Isa = rota_core::Isa::Lx106;

    fn console_write(&mut self, bytes: &[u8]) {
        // Overlays pass strings that live in the IRAM arena: read those by words.
        if WORD_ONLY.contains(&(bytes.as_ptr() as usize)) {
            // SAFETY: the slice is readable; widening to whole words stays inside the same region.
            unsafe { console::write_from_word_memory(bytes.as_ptr(), bytes.len()) }
        } else {
            console::write(bytes)
        }
    }

    fn console_read(&mut self) -> Option<u8> {
        console::read()
    }

    fn nic(&mut self) -> Option<&mut rota_net::NoNic> {
        None
    }

    fn mac(&self) -> [u8; 6] {
        // Locally administered; the chip's own MAC would come from its eFuses with a WiFi driver.
        [0x02, 0x00, 0x82, 0x66, 0x00, 0x01]
    }

    fn flash(&mut self) -> &mut Flash {
        &mut self.flash
    }

    fn now_ms(&mut self) -> u32 {
        time::now_ms() as u32
    }

    fn reset(&mut self) -> ! {
        crate::reset()
    }

    fn sync_icache(&mut self) {
        rt::isync()
    }
}
