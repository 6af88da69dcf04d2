//! Raw copy over the console UART (the xtfpga machine's 16550): the baseline of `make bench`'s
//! install over the serial link on the LX106, through the same QEMU chardev socket. Prints
//! `serial_copy ready` once the board (and its UART) is set up (a byte sent before could be lost),
//! then reads a 4-byte little-endian length n from the UART, then n bytes, and prints `serial_copy bytes=<n> ms=<t>
//! fnv=<FNV-1a 32 of the bytes, hex>`, t from the first of the n bytes to the last (the header and
//! FNV-1a are `rota-tcp-copy`'s [`rota_tcp_copy::Stream`]), as mps2-an385's example of the same
//! name does. Ends the emulator with 0, or 1 after 60 s. `make tcp-copy`:
//! build/esp8266/serial_copy-xtfpga.elf.
#![no_std]
#![no_main]

use rota_board_esp8266::board::Esp8266;
use rota_board_esp8266::{console, exit, time};
use rota_core::heap::AccountingHeap;
use rota_core::report::{write_dec, write_hex, Console};

#[global_allocator]
static HEAP: AccountingHeap = AccountingHeap::empty();

rota_board_esp8266::entry!(main);

/// The copy must end within this long.
const LIMIT_MS: u64 = 60_000;

fn main() -> ! {
    let board = Esp8266::take();
    let (heap_start, heap_size) = board.heap();
    // SAFETY: the linker reserves the heap region; this runs once.
    unsafe { HEAP.init(heap_start, heap_size) };
    let mut c = console::Console;
    c.print(b"serial_copy ready\n");
    let mut stream = rota_tcp_copy::Stream::new(None);
    let start = time::now_ms();
    let mut first = None;
    while !stream.done() {
        let now = time::now_ms();
        if now - start > LIMIT_MS {
            c.print(b"serial_copy failed: not all bytes in 60 s\n");
            exit(1)
        }
        if let Some(b) = console::read() {
            if !stream.take(&[b]).is_empty() {
                first.get_or_insert(now);
            }
        }
    }
    let ms = time::now_ms() - first.unwrap_or(start);
    c.print(b"serial_copy bytes=");
    write_dec(&mut c, stream.count());
    c.print(b" ms=");
    write_dec(&mut c, ms as u32);
    c.print(b" fnv=");
    write_hex(&mut c, stream.fnv());
    c.print(b"\n");
    exit(0)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    console::Console.print(b"serial_copy panic\n");
    exit(1)
}
