//! The plain TCP copy that each board's `tcp_copy` example runs: the baseline of `make bench`'s
//! install throughput, and the check that a board's NIC driver and rota-net work under emulation.
//!
//! The protocol with the harness (`rota_emu::net::copy`): bring the network up (static
//! 10.0.2.15/24 via 10.0.2.2, or `ip=dhcp`), connect to 10.0.2.100:`port` (default 8266, QEMU's
//! guestfwd to `rota-bridge`), receive `bytes=<n>` bytes (without it, the first 4 bytes from the server
//! give n, little-endian, and are not counted), answer `OK`, close, and print
//! `tcp_copy bytes=<n> us=<t> fnv=0x<FNV-1a 32> net_heap=<B> heap_peak=<B> heap_after=<B>` (the copy's
//! time in microseconds: a 64 KB copy takes a few milliseconds under QEMU, too few to count in them).
//! With `write` the bytes also go to the board's storage region from offset 0 (erase, then write in
//! 512-byte chunks, so `storage=`/`cut=` apply as the board's `rota-hostflash` storage says).
//!
//! A board's example only takes its NIC, flash, clock and console, and calls [`run`] and [`finish`]:
//! the copy is the same code on every board.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;

use alloc::boxed::Box;
use embedded_storage::nor_flash::NorFlash;
use rota_core::heap::HeapStats;
use rota_core::report::{write_dec, write_hex, Console};
use rota_net::{Net, NetConfig, TcpState};
use smoltcp::phy::Device;

/// Where the guest connects: QEMU's guestfwd address.
pub const SERVER: [u8; 4] = [10, 0, 2, 100];
/// The port when the command line names none.
pub const DEFAULT_PORT: u16 = 8266;
/// The guest's static address and prefix length (QEMU's user network).
pub const STATIC_IP: ([u8; 4], u8) = ([10, 0, 2, 15], 24);
/// QEMU's user-network gateway.
pub const GATEWAY: [u8; 4] = [10, 0, 2, 2];
/// The whole copy (address, connection, bytes) must be done within this many milliseconds.
pub const LIMIT_MS: u32 = 60_000;
/// Bytes per flash write with `write`.
pub const CHUNK: usize = 512;
/// FNV-1a's offset basis (the checksum of nothing).
pub const FNV_BASIS: u32 = 0x811C_9DC5;
/// FNV-1a's prime.
const FNV_PRIME: u32 = 0x0100_0193;

/// What the semihosting command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Args {
    /// `bytes=<n>`: receive n bytes; `None`: the server's first 4 bytes (little-endian) give n.
    pub bytes: Option<u32>,
    /// `port=<p>`: the port on [`SERVER`] (default [`DEFAULT_PORT`]).
    pub port: u16,
    /// `ip=dhcp`: ask DHCPv4 instead of [`STATIC_IP`].
    pub dhcp: bool,
    /// `write`: also write the bytes to the storage region from offset 0.
    pub write: bool,
}

impl Args {
    /// Reads the words of `cmdline` (space-separated, as `rota-hostflash` reads `storage=`/`cut=`).
    /// A `port=` that is not a port number falls back to [`DEFAULT_PORT`].
    pub fn parse(cmdline: &[u8]) -> Args {
        let num = |key| rota_hostflash::arg(cmdline, key).and_then(rota_hostflash::number);
        Args {
            bytes: num("bytes"),
            port: num("port")
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0)
                .unwrap_or(DEFAULT_PORT),
            dhcp: rota_hostflash::arg(cmdline, "ip") == Some(b"dhcp"),
            write: rota_hostflash::flag(cmdline, "write"),
        }
    }
}

/// The received stream: the optional length header, then the counted bytes and their FNV-1a.
#[derive(Clone, Debug)]
pub struct Stream {
    want: Option<u32>,
    head: [u8; 4],
    head_fill: usize,
    count: u32,
    fnv: u32,
}

impl Stream {
    /// A stream of `want` bytes, or (`None`) of as many as its 4-byte little-endian header says.
    pub fn new(want: Option<u32>) -> Stream {
        Stream {
            want,
            head: [0; 4],
            head_fill: 0,
            count: 0,
            fnv: FNV_BASIS,
        }
    }

    /// Takes `data` as received: consumes what is left of the header, counts and hashes the bytes
    /// after it up to the length, and returns those (anything past the length is ignored).
    pub fn take<'a>(&mut self, mut data: &'a [u8]) -> &'a [u8] {
        if self.want.is_none() {
            let k = (4 - self.head_fill).min(data.len());
            self.head[self.head_fill..self.head_fill + k].copy_from_slice(&data[..k]);
            self.head_fill += k;
            data = &data[k..];
            if self.head_fill == 4 {
                self.want = Some(u32::from_le_bytes(self.head));
            }
        }
        let Some(want) = self.want else {
            return &[];
        };
        let data = &data[..data.len().min((want - self.count) as usize)];
        self.fnv = fnv1a(self.fnv, data);
        self.count += data.len() as u32;
        data
    }

    /// Whether every byte has arrived (the length is known and reached).
    pub fn done(&self) -> bool {
        self.want == Some(self.count)
    }

    /// Bytes counted so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// FNV-1a (32-bit) of the bytes counted so far.
    pub fn fnv(&self) -> u32 {
        self.fnv
    }
}

/// FNV-1a (32-bit) of `bytes`, continuing from `hash` ([`FNV_BASIS`] to start).
pub fn fnv1a(hash: u32, bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(hash, |h, &b| (h ^ u32::from(b)).wrapping_mul(FNV_PRIME))
}

/// Writes a byte stream to flash from offset 0 in [`CHUNK`]-byte writes, erasing each erase sector
/// just before the first write into it; the last chunk is padded with 0xFF to the write size.
pub struct Sink {
    at: u32,
    stage: [u8; CHUNK],
    fill: usize,
}

impl Default for Sink {
    fn default() -> Self {
        Sink::new()
    }
}

impl Sink {
    /// Starts at offset 0.
    pub fn new() -> Sink {
        Sink {
            at: 0,
            stage: [0; CHUNK],
            fill: 0,
        }
    }

    /// Stages `bytes`, writing every full chunk; false if the flash refused an erase or a write.
    pub fn push<F: NorFlash>(&mut self, flash: &mut F, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            let n = (CHUNK - self.fill).min(bytes.len());
            self.stage[self.fill..self.fill + n].copy_from_slice(&bytes[..n]);
            self.fill += n;
            bytes = &bytes[n..];
            if self.fill == CHUNK && !self.flush(flash) {
                return false;
            }
        }
        true
    }

    /// Writes what is staged (padded to the flash's write size); false if the flash refused.
    pub fn flush<F: NorFlash>(&mut self, flash: &mut F) -> bool {
        if self.fill == 0 {
            return true;
        }
        let len = self.fill.next_multiple_of(F::WRITE_SIZE.max(1)).min(CHUNK);
        self.stage[self.fill..len].fill(0xFF);
        let (start, end) = (self.at, self.at + len as u32);
        let sector = F::ERASE_SIZE as u32;
        // Every sector that starts inside this write is erased before it.
        let mut s = start.next_multiple_of(sector);
        while s < end {
            if flash.erase(s, s + sector).is_err() {
                return false;
            }
            s += sector;
        }
        if flash.write(start, &self.stage[..len]).is_err() {
            return false;
        }
        self.at = end;
        self.fill = 0;
        true
    }
}

/// What one copy measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Bytes received (the header not counted).
    pub bytes: u32,
    /// Microseconds from the connection being established to the last byte (and its flash write).
    pub us: u32,
    /// FNV-1a (32-bit) of the bytes.
    pub fnv: u32,
    /// Heap bytes [`Net::new`] took.
    pub net_heap: usize,
    /// The heap's peak use over the run.
    pub heap_peak: usize,
    /// Heap bytes still used once the network is dropped and the NIC released (0 expected).
    pub heap_after: usize,
}

impl Report {
    /// Prints the `tcp_copy bytes=.. us=.. fnv=0x.. net_heap=.. heap_peak=.. heap_after=..` line.
    pub fn print(&self, c: &mut impl Console) {
        c.print(b"tcp_copy bytes=");
        write_dec(c, self.bytes);
        c.print(b" us=");
        write_dec(c, self.us);
        c.print(b" fnv=");
        write_hex(c, self.fnv);
        for (key, value) in [
            (&b" net_heap="[..], self.net_heap),
            (b" heap_peak=", self.heap_peak),
            (b" heap_after=", self.heap_after),
        ] {
            c.print(key);
            write_dec(c, value as u32);
        }
        c.print(b"\n");
    }
}

/// Runs the copy over `dev` (a NIC with address `mac`) as `args` say, timing it with `now_us`
/// (microseconds since boot; the network gets them as milliseconds, which may wrap), writing to
/// `flash` with `write`; `heap` gives the global allocator's figures (a board's
/// `AccountingHeap::stats`).
/// `release` gets the NIC back once the network is dropped, for a driver whose buffers come from the
/// heap while in use (the LAN9118's; the core calls it at `net_down`). Errors say what failed.
pub fn run<D: Device, F: NorFlash>(
    dev: &mut D,
    mac: [u8; 6],
    args: &Args,
    flash: &mut F,
    heap: impl Fn() -> HeapStats,
    now_us: &mut impl FnMut() -> u64,
    release: impl FnOnce(&mut D),
) -> Result<Report, &'static str> {
    let before = heap().used;
    let cfg = NetConfig {
        mac,
        ip: (!args.dhcp).then_some(STATIC_IP),
        gateway: GATEWAY,
        rx_buffer: rota_net::RX_BUFFER,
        seed: 0,
    };
    let ms = |us: u64| (us / 1000) as u32;
    let mut net = Box::new(Net::new(dev, &cfg, ms(now_us())));
    let net_heap = heap().used - before;
    let start = ms(now_us());
    // Polls once; true when the whole run is over its time limit.
    let poll = |net: &mut Net, dev: &mut D, now_us: &mut dyn FnMut() -> u64| {
        let now = ms(now_us());
        net.poll(dev, now);
        now.wrapping_sub(start) > LIMIT_MS
    };

    while net.ip().is_none() {
        if poll(&mut net, dev, now_us) {
            return Err("no address from DHCP");
        }
    }
    net.connect(SERVER, args.port).map_err(|e| e.describe())?;
    while net.state() == TcpState::Connecting {
        if poll(&mut net, dev, now_us) {
            return Err("connect timed out");
        }
    }
    let t0 = now_us();
    let mut stream = Stream::new(args.bytes);
    let mut sink = Sink::new();
    let mut buf = [0u8; 1024];
    while !stream.done() {
        if poll(&mut net, dev, now_us) {
            return Err("timed out");
        }
        let n = net.recv(&mut buf).map_err(|e| e.describe())?;
        let data = stream.take(&buf[..n]);
        if args.write && !sink.push(flash, data) {
            return Err("flash write");
        }
    }
    if args.write && !sink.flush(flash) {
        return Err("flash write");
    }
    let us = now_us().wrapping_sub(t0) as u32;
    // Tell the server we are done (it closes then; QEMU does not pass its FIN on), then close.
    let _ = net.send(b"OK");
    net.close();
    let end = ms(now_us());
    while ms(now_us()).wrapping_sub(end) < 50 {
        poll(&mut net, dev, now_us);
    }
    let heap_peak = heap().peak;
    drop(net);
    release(dev);
    Ok(Report {
        bytes: stream.count(),
        us,
        fnv: stream.fnv(),
        net_heap,
        heap_peak,
        heap_after: heap().used - before,
    })
}

/// Prints the outcome of [`run`] (the report line, or `tcp_copy failed: <why>`) and returns the exit
/// status the emulator should end with: 0 on success, 1 on an error.
pub fn finish(c: &mut impl Console, outcome: Result<Report, &str>) -> u32 {
    match outcome {
        Ok(report) => {
            report.print(c);
            0
        }
        Err(why) => {
            c.print(b"tcp_copy failed: ");
            c.print(why.as_bytes());
            c.print(b"\n");
            1
        }
    }
}

#[cfg(test)]
mod tests;
