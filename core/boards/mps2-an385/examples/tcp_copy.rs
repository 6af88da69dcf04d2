//! Plain TCP copy through the QEMU network path: the baseline for download throughput, and the check
//! that the LAN9118 driver and rota-net work under emulation.
//!
//! Brings the network up (static 10.0.2.15/24 via 10.0.2.2, or `ip=dhcp`), connects to
//! 10.0.2.100:`port` (default 8266; QEMU's guestfwd), receives `bytes=<n>` bytes (without it, the first
//! 4 bytes from the server give n, little-endian, and are not counted), and prints
//! `tcp_copy bytes=<n> ms=<t> fnv=<FNV-1a 32 of the bytes, hex> net_heap=<bytes> heap_peak=<bytes>`.
//! With `write`, the bytes also go to the storage region from offset 0 (erase + write through the
//! board's flash, so `storage=`/`cut=` apply: see the board's `storage` module). Ends the emulator with
//! 0 on success, 1 on an error or after 60 s.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use core::ptr::addr_of_mut;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use embedded_storage::nor_flash::NorFlash;
use rota_board_mps2_an385::{clock::Clock, nic, semihosting, storage, uart::Uart};
use rota_core::heap::AccountingHeap;
use rota_core::report::{write_dec, write_hex, Console};
use rota_net::{Net, NetConfig, TcpState};

#[global_allocator]
static HEAP: AccountingHeap = AccountingHeap::empty();

extern "C" {
    static mut _heap_start: u8;
    static mut _heap_end: u8;
}

const SERVER: [u8; 4] = [10, 0, 2, 100];
const LIMIT_MS: u32 = 60_000;
const SECTOR: u32 = 4096;

fn fail(u: &mut Uart, what: &str) -> ! {
    u.print(b"tcp_copy failed: ");
    u.print(what.as_bytes());
    u.print(b"\n");
    semihosting::exit(1)
}

/// Writes the byte stream to flash from offset 0, one staged chunk at a time.
struct Sink {
    at: u32,
    stage: [u8; 512],
    fill: usize,
}

impl Sink {
    fn push(&mut self, flash: &mut storage::Flash, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            let n = (self.stage.len() - self.fill).min(bytes.len());
            self.stage[self.fill..self.fill + n].copy_from_slice(&bytes[..n]);
            self.fill += n;
            bytes = &bytes[n..];
            if self.fill == self.stage.len() && !self.flush(flash) {
                return false;
            }
        }
        true
    }

    fn flush(&mut self, flash: &mut storage::Flash) -> bool {
        if self.fill == 0 {
            return true;
        }
        let len = self.fill.next_multiple_of(4);
        self.stage[self.fill..len].fill(0xFF);
        if self.at.is_multiple_of(SECTOR) && flash.erase(self.at, self.at + SECTOR).is_err() {
            return false;
        }
        if flash.write(self.at, &self.stage[..len]).is_err() {
            return false;
        }
        self.at += len as u32;
        self.fill = 0;
        true
    }
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
    let want = storage::arg(cmdline, "bytes").and_then(storage::number);
    let port = storage::arg(cmdline, "port")
        .and_then(storage::number)
        .unwrap_or(8266) as u16;
    let dhcp = storage::arg(cmdline, "ip") == Some(b"dhcp");
    let write = storage::flag(cmdline, "write");
    // SAFETY: called once.
    let (mut flash, _) = storage::open(unsafe { rota_board_mps2_an385::storage_region() }, cmdline);
    // SAFETY: called once.
    let Some((dev, mac)) = (unsafe { nic::take() }) else {
        fail(&mut u, "no LAN9118")
    };

    let before = HEAP.stats().used;
    let cfg = NetConfig {
        mac,
        ip: (!dhcp).then_some(([10, 0, 2, 15], 24)),
        gateway: [10, 0, 2, 2],
        rx_buffer: rota_net::RX_BUFFER,
        seed: 0,
    };
    let mut net = Box::new(Net::new(dev, &cfg, clock.now_ms()));
    let net_heap = HEAP.stats().used - before;
    let start = clock.now_ms();
    let mut poll = |net: &mut Net, clock: &mut Clock| {
        let now = clock.now_ms();
        net.poll(dev, now);
        now.wrapping_sub(start) > LIMIT_MS
    };

    while net.ip().is_none() {
        if poll(&mut net, &mut clock) {
            fail(&mut u, "no address from DHCP")
        }
    }
    if let Err(e) = net.connect(SERVER, port) {
        fail(&mut u, e.describe())
    }
    while net.state() == TcpState::Connecting {
        if poll(&mut net, &mut clock) {
            fail(&mut u, "connect timed out")
        }
    }
    let t0 = clock.now_ms();
    let mut want = want;
    let mut head = [0u8; 4];
    let mut head_fill = 0;
    let mut count = 0u32;
    let mut fnv = 0x811C_9DC5u32;
    let mut sink = Sink {
        at: 0,
        stage: [0; 512],
        fill: 0,
    };
    let mut buf = [0u8; 1024];
    loop {
        if want == Some(count) {
            break;
        }
        if poll(&mut net, &mut clock) {
            fail(&mut u, "timed out")
        }
        let n = match net.recv(&mut buf) {
            Ok(n) => n,
            Err(e) => fail(&mut u, e.describe()),
        };
        let mut data = &buf[..n];
        if want.is_none() {
            let k = (4 - head_fill).min(data.len());
            head[head_fill..head_fill + k].copy_from_slice(&data[..k]);
            head_fill += k;
            data = &data[k..];
            if head_fill == 4 {
                want = Some(u32::from_le_bytes(head));
            }
        }
        if let Some(w) = want {
            data = &data[..data.len().min((w - count) as usize)];
        }
        for &b in data {
            fnv = (fnv ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        count += data.len() as u32;
        if write && !sink.push(&mut flash, data) {
            fail(&mut u, "flash write")
        }
    }
    if write && !sink.flush(&mut flash) {
        fail(&mut u, "flash write")
    }
    let ms = clock.now_ms() - t0;
    // Tell the server we are done (it closes then; QEMU does not pass its FIN on), then close.
    let _ = net.send(b"OK");
    net.close();
    let end = clock.now_ms();
    while clock.now_ms().wrapping_sub(end) < 50 {
        poll(&mut net, &mut clock);
    }
    let peak = HEAP.stats().peak;
    drop(net);
    // The NIC's frame buffers go back to the heap too, as the core does at net_down.
    dev.release();
    u.print(b"tcp_copy bytes=");
    write_dec(&mut u, count);
    u.print(b" ms=");
    write_dec(&mut u, ms);
    u.print(b" fnv=");
    write_hex(&mut u, fnv);
    u.print(b" net_heap=");
    write_dec(&mut u, net_heap as u32);
    u.print(b" heap_peak=");
    write_dec(&mut u, peak as u32);
    u.print(b" heap_after=");
    write_dec(&mut u, (HEAP.stats().used - before) as u32);
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
    Uart::new().print(b"tcp_copy panic\n");
    semihosting::exit(1)
}
