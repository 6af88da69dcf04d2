//! Plain TCP copy through the xtfpga machine's network (the OpenCores MAC, `rota-ethoc`, QEMU's user
//! network, guestfwd, `rota-bridge`): the baseline of `make bench`'s install throughput on the LX106,
//! and the check that the MAC's driver and rota-net work under emulation. The copy itself is
//! `rota-tcp-copy`'s, the code mps2-an385's example of the same name runs (protocol, arguments and
//! the `tcp_copy ...` line: see that crate).
//!
//! The board is the firmware's own ([`Esp8266::take`]: UART, CCOUNT's rate, the storage the command
//! line names with `storage=`/`cut=`, the MAC brought up with its address); build it with
//! `--features xtfpga,power-cut` for `cut=` (`make tcp-copy`: build/esp8266/tcp_copy-xtfpga.elf).
//! Ends the emulator with 0 on success, 1 on an error or after 60 s.
#![no_std]
#![no_main]

use rota_board_esp8266::board::Esp8266;
use rota_board_esp8266::{console, exit, semihosting, time};
use rota_core::heap::AccountingHeap;
use rota_core::report::Console;
use rota_core::Board;

#[global_allocator]
static HEAP: AccountingHeap = AccountingHeap::empty();

rota_board_esp8266::entry!(main);

fn main() -> ! {
    let mut board = Esp8266::take();
    let (heap_start, heap_size) = board.heap();
    // SAFETY: the linker reserves the heap region; this runs once.
    unsafe { HEAP.init(heap_start, heap_size) };
    let mut line = [0u8; 320];
    let args = rota_tcp_copy::Args::parse(semihosting::cmdline(&mut line).unwrap_or(&[]));
    let mac = board.mac();
    let outcome = match board.flash_and_nic() {
        (flash, Some(nic)) => rota_tcp_copy::run(
            nic,
            mac,
            &args,
            flash,
            || HEAP.stats(),
            &mut time::now_us,
            // The MAC's frames live in its packet RAM: nothing to give back.
            |_| {},
        ),
        (_, None) => Err("no network interface (-nic ...,model=open_eth)"),
    };
    exit(rota_tcp_copy::finish(&mut console::Console, outcome))
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    console::Console.print(b"tcp_copy panic\n");
    exit(1)
}
