//! Raw copy over the console UART (UART0): the baseline of `make bench`'s install over the serial
//! link, through the same QEMU chardev socket. Prints `serial_copy ready` once the UART is set up (a
//! byte sent before could be lost), then reads a 4-byte little-endian length n from the UART,
//! then n bytes, and prints `serial_copy bytes=<n> ms=<t> fnv=<FNV-1a 32 of the bytes, hex>`, t
//! from the first of the n bytes to the last (the header and FNV-1a are `rota-tcp-copy`'s
//! [`rota_tcp_copy::Stream`]). Ends the emulator with 0, or 1 after 60 s.
#![no_std]
#![no_main]

use core::ptr::addr_of_mut;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use rota_board_mps2_an385::{clock::Clock, semihosting, uart::Uart};
use rota_core::heap::AccountingHeap;
use rota_core::report::{write_dec, write_hex, Console};

#[global_allocator]
static HEAP: AccountingHeap = AccountingHeap::empty();

extern "C" {
    static mut _heap_start: u8;
    static mut _heap_end: u8;
}

/// The copy must end within this long.
const LIMIT_MS: u32 = 60_000;

#[entry]
fn main() -> ! {
    // SAFETY: the linker script defines the heap region; nothing else uses it.
    unsafe {
        let start = addr_of_mut!(_heap_start);
        HEAP.init(start, addr_of_mut!(_heap_end) as usize - start as usize);
    }
    let mut clock = Clock::start();
    let mut u = Uart::new();
    u.print(b"serial_copy ready\n");
    let mut stream = rota_tcp_copy::Stream::new(None);
    let start = clock.now_ms();
    let mut first = None;
    while !stream.done() {
        let now = clock.now_ms();
        if now.wrapping_sub(start) > LIMIT_MS {
            u.print(b"serial_copy failed: not all bytes in 60 s\n");
            semihosting::exit(1)
        }
        if let Some(b) = u.read() {
            if !stream.take(&[b]).is_empty() {
                first.get_or_insert(now);
            }
        }
    }
    let ms = clock.now_ms().wrapping_sub(first.unwrap_or(start));
    u.print(b"serial_copy bytes=");
    write_dec(&mut u, stream.count());
    u.print(b" ms=");
    write_dec(&mut u, ms);
    u.print(b" fnv=");
    write_hex(&mut u, stream.fnv());
    u.print(b"\n");
    semihosting::exit(0)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    let mut u = Uart::new();
    u.print(b"hard fault at pc=");
    write_hex(&mut u, frame.pc());
    u.print(b"\n");
    semihosting::exit(1)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    Uart::new().print(b"serial_copy panic\n");
    semihosting::exit(1)
}
