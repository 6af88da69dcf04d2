//! The console: semihosting `write(1, ..)` under QEMU's sim machine (`sim`), the board's 16550 UART
//! on the xtfpga machine (`xtfpga`), UART0 at 115200 8N1 on the chip (`chip`). On the two UARTs it
//! is also the serial link's line when the device config says `link = Serial`: the core frames,
//! these only move bytes.

/// A zero-sized handle on the console, for code that runs without the board (fault handlers).
pub struct Console;

impl rota_core::report::Console for Console {
    fn print(&mut self, bytes: &[u8]) {
        write(bytes)
    }
}

/// Writes `bytes` to the console (blocking).
pub fn write(bytes: &[u8]) {
    imp::write(bytes)
}

/// A byte typed on the console, if one arrived (never blocks).
pub fn read() -> Option<u8> {
    imp::read()
}

/// Writes `len` bytes that start at `ptr` in memory that may allow only aligned 32-bit loads
/// (IRAM, the arena, memory-mapped flash: a byte load there raises LoadStoreError on the chip).
/// Reads whole aligned words and writes their bytes through a small DRAM buffer.
///
/// # Safety
/// `ptr..ptr + len`, widened to whole words, must be readable.
pub unsafe fn write_from_word_memory(ptr: *const u8, len: usize) {
    let mut buf = [0u8; 64];
    let mut fill = 0;
    let start = ptr as usize;
    let end = start + len;
    let mut word_addr = start & !3;
    while word_addr < end {
        // SAFETY: aligned word inside the caller's range (widened to words).
        let word = unsafe { core::ptr::read_volatile(word_addr as *const u32) }.to_le_bytes();
        for (i, b) in word.iter().enumerate() {
            let a = word_addr + i;
            if a >= start && a < end {
                buf[fill] = *b;
                fill += 1;
            }
        }
        if fill > buf.len() - 4 {
            write(&buf[..fill]);
            fill = 0;
        }
        word_addr += 4;
    }
    write(&buf[..fill]);
}

#[cfg(feature = "sim")]
mod imp {
    use crate::semihosting;

    pub fn write(mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match semihosting::write(1, bytes) {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes = &bytes[n.min(bytes.len())..],
            }
        }
    }

    /// The sim machine has no console input (semihosting reads would block).
    pub fn read() -> Option<u8> {
        None
    }
}

#[cfg(feature = "xtfpga")]
mod imp {
    pub use crate::xtfpga::uart::{read, write};
}

#[cfg(feature = "chip")]
mod imp {
    pub use crate::chip::uart::{read, write};
}
