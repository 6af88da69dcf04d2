//! Plain TCP copy through the QEMU network path: the baseline for download throughput, and the check
//! that the LAN9118 driver and rota-net work under emulation.
//!
//! The copy itself is `rota-tcp-copy`'s, the code the LX106's example of the same name runs on QEMU's
//! xtfpga board: brings the network up (static 10.0.2.15/24 via 10.0.2.2, or `ip=dhcp`), connects to
//! 10.0.2.100:`port` (default 8266; QEMU's guestfwd), receives `bytes=<n>` bytes (without it, the first
//! 4 bytes from the server give n, little-endian, and are not counted), answers `OK` and prints
//! `tcp_copy bytes=<n> us=<microseconds> fnv=<FNV-1a 32 of the bytes, hex> net_heap=<bytes> heap_peak=<bytes>
//! heap_after=<bytes>`. With `write`, the bytes also go to the storage region from offset 0 (erase +
//! write through the board's flash, so `storage=`/`cut=` apply: see the board's `storage` module).
//! Ends the emulator with 0 on success, 1 on an error or after 60 s.
#![no_std]
#![no_main]

use core::ptr::addr_of_mut;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use rota_board_mps2_an385::{clock::Clock, nic, semihosting, storage, uart::Uart};
use rota_core::heap::AccountingHeap;
use rota_core::report::{write_hex, Console};

#[global_allocator]
static HEAP: AccountingHeap = AccountingHeap::empty();

extern "C" {
    static mut _heap_start: u8;
    static mut _heap_end: u8;
}

#[entry]
fn main() -> ! {
    // SAFETY: the linker script defines the heap region; nothing else uses it.
    unsafe {
        let start = addr_of_mut!(_heap_start);
        HEAP.init(start, addr_of_mut!(_heap_end) as usize - start as usize);
    }
    let mut clock = Clock::start();
    let mut u = Uart::new();
    let mut line = [0u8; 512];
    let cmdline = semihosting::cmdline(&mut line).unwrap_or(&[]);
    let args = rota_tcp_copy::Args::parse(cmdline);
    // SAFETY: called once.
    let (mut flash, _) = storage::open(unsafe { rota_board_mps2_an385::storage_region() }, cmdline);
    // SAFETY: called once.
    let outcome = match unsafe { nic::take() } {
        Some((dev, mac)) => rota_tcp_copy::run(
            dev,
            mac,
            &args,
            &mut flash,
            || HEAP.stats(),
            &mut || clock.now_us(),
            // The NIC's frame buffer goes back to the heap too, as the core does at net_down.
            |dev| dev.release(),
        ),
        None => Err("no LAN9118"),
    };
    semihosting::exit(rota_tcp_copy::finish(&mut u, outcome))
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
    Uart::new().print(b"tcp_copy panic\n");
    semihosting::exit(1)
}
