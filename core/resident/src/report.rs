//! Console output without `core::fmt`: the heap report lines and refusal messages.
//!
//! The `ram` and heap line formats are parsed by tests and tools; keep them exactly:
//! `ram statics=<bytes> arena=<bytes> heap=<bytes> stack=<bytes>` (once per boot), and
//! `heap phase=<boot|init|tick|provision|app> used=<bytes> free=<bytes> peak=<bytes> arena=<bytes> stack_peak=<bytes>`

use crate::heap::HeapStats;
use crate::Board;

/// Anything that prints bytes.
pub trait Console {
    /// Prints `bytes`.
    fn print(&mut self, bytes: &[u8]);
}

impl<B: Board> Console for B {
    fn print(&mut self, bytes: &[u8]) {
        self.console_write(bytes)
    }
}

/// Prints `n` in decimal.
pub fn write_dec(c: &mut impl Console, n: u32) {
    let mut buf = [0u8; 10];
    c.print(rota_abi::format_dec(n, &mut buf));
}

/// Prints `n` as `0x` and eight lowercase hex digits.
pub fn write_hex(c: &mut impl Console, n: u32) {
    let mut buf = *b"0x00000000";
    for (i, b) in buf[2..].iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((n >> (28 - 4 * i)) & 0xF) as usize];
    }
    c.print(&buf);
}

/// Prints a signed number in decimal.
pub fn write_signed(c: &mut impl Console, n: i64) {
    if n < 0 {
        c.print(b"-");
    }
    write_dec(c, n.unsigned_abs().min(u64::from(u32::MAX)) as u32);
}

/// Prints the RAM map once per boot: `ram statics=<bytes> arena=<bytes> heap=<bytes> stack=<bytes>`.
/// A phase's whole-device peak is `statics + arena + its heap peak + its stack peak`.
pub fn ram_line(c: &mut impl Console, statics: usize, arena: usize, heap: usize, stack: usize) {
    c.print(b"ram");
    for (key, value) in [
        (&b" statics="[..], statics),
        (b" arena=", arena),
        (b" heap=", heap),
        (b" stack=", stack),
    ] {
        c.print(key);
        write_dec(c, value as u32);
    }
    c.print(b"\n");
}

/// Prints one heap report line.
pub fn heap_line(c: &mut impl Console, phase: &str, s: HeapStats, arena: u32, stack_peak: u32) {
    c.print(b"heap phase=");
    c.print(phase.as_bytes());
    for (key, value) in [
        (&b" used="[..], s.used as u32),
        (b" free=", s.free as u32),
        (b" peak=", s.peak as u32),
        (b" arena=", arena),
        (b" stack_peak=", stack_peak),
    ] {
        c.print(key);
        write_dec(c, value);
    }
    c.print(b"\n");
}

/// Prints where an overlay was placed: `overlay <name> at 0x<base> image=<bytes> relocs=<count>`.
pub fn placed(c: &mut impl Console, phase: &str, l: &rota_loader::Loaded) {
    c.print(b"overlay ");
    c.print(phase.as_bytes());
    c.print(b" at ");
    write_hex(c, l.base);
    c.print(b" image=");
    write_dec(c, l.header.image_size);
    c.print(b" relocs=");
    write_dec(c, l.header.reloc_count);
    c.print(b"\n");
}

/// Prints why an overlay was refused.
pub fn refusal(c: &mut impl Console, phase: &str, e: &rota_loader::LoadError) {
    c.print(b"overlay ");
    c.print(phase.as_bytes());
    c.print(b" refused: ");
    c.print(e.describe().as_bytes());
    c.print(b"; starting app\n");
}

/// Prints an overlay's failure status.
pub fn failure(c: &mut impl Console, phase: &str, status: i32) {
    c.print(b"overlay ");
    c.print(phase.as_bytes());
    c.print(b" failed: status ");
    write_signed(c, i64::from(status));
    c.print(b"; starting app\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Buf {
        bytes: [u8; 256],
        len: usize,
    }

    impl Buf {
        fn new() -> Self {
            Buf {
                bytes: [0; 256],
                len: 0,
            }
        }
        fn text(&self) -> &str {
            core::str::from_utf8(&self.bytes[..self.len]).unwrap()
        }
    }

    impl Console for Buf {
        fn print(&mut self, bytes: &[u8]) {
            self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    #[test]
    fn heap_line_has_the_exact_documented_form() {
        let mut c = Buf::new();
        heap_line(
            &mut c,
            "tick",
            HeapStats {
                used: 12,
                free: 4084,
                peak: 1040,
            },
            336,
            0,
        );
        assert_eq!(
            c.text(),
            "heap phase=tick used=12 free=4084 peak=1040 arena=336 stack_peak=0\n"
        );
        let mut c = Buf::new();
        write_signed(&mut c, -4294967296);
        write_signed(&mut c, 0);
        write_hex(&mut c, 0x4010_0a3c);
        assert_eq!(c.text(), "-429496729500x40100a3c");
    }
}
