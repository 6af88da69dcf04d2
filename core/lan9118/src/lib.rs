//! SMSC LAN9118 Ethernet controller driver as a smoltcp [`phy::Device`].
//!
//! Written against the part as `qemu-system-arm -M mps2-an385` emulates it (at 0x4020_0000 there). QEMU
//! aborts the whole emulator on an access to a register it does not implement, so the driver touches
//! only these: the RX/TX data FIFO ports, the RX/TX status FIFO ports, `ID_REV`, `IRQ_CFG`, `INT_STS`,
//! `INT_EN`, `BYTE_TEST`, `RX_CFG`, `TX_CFG`, `HW_CFG`, `RX_FIFO_INF`, `TX_FIFO_INF`, `PMT_CTRL`,
//! `MAC_CSR_CMD`/`MAC_CSR_DATA` (for the MAC registers `MAC_CR`, `ADDRH`, `ADDRL`, `MII_ACC`, `MII_DATA`)
//! and, through MII, the PHY's basic status register. It never uses `RX_DP_CTRL` (fast-forward):
//! frames to drop are read out word by word, which works the same on every implementation.
//!
//! Everything is polled; interrupts stay disabled. Register access goes through the small [`Regs`]
//! trait: [`Mmio`] on the board, a fake register file with FIFOs in the tests.
//!
//! RAM: one frame buffer of [`FRAME_BUFFER`] bytes, on the heap while the network is in use. smoltcp
//! hands out a receive and a transmit token at the same time and may build a response (an ACK, a
//! reset, an ARP reply) while it still reads the received frame, so that response goes into the
//! [`RESPONSE_ROOM`] bytes after the largest frame; everything else smoltcp sends (data, SYNs, DHCP)
//! comes from [`phy::Device::transmit`], when no received frame is held, and may use the whole buffer.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;

use alloc::alloc::{alloc_zeroed, Layout};
use alloc::boxed::Box;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Largest Ethernet frame handled, without the FCS: 14 bytes of header and an IP MTU of 1500.
pub const MTU: usize = 1514;
/// Room for a response smoltcp builds while it holds a received frame: Ethernet (14), IPv4 without
/// options (20) and the largest TCP header (60), which also covers an ARP reply (42). A longer one
/// (an ICMP reply quoting the frame) is not sent and counts as a transmit error.
pub const RESPONSE_ROOM: usize = 14 + 20 + 60;
/// The driver's one frame buffer: the largest frame and, after it, room for a response.
pub const FRAME_BUFFER: usize = MTU + RESPONSE_ROOM;

/// Register offsets from the controller's base address.
pub mod reg {
    /// Receive data FIFO port (reads pop one word; 0x00..0x1F alias it).
    pub const RX_DATA_FIFO: u32 = 0x00;
    /// Transmit data FIFO port (writes push one word; 0x20..0x3F alias it).
    pub const TX_DATA_FIFO: u32 = 0x20;
    /// Receive status FIFO port (reads pop one status word).
    pub const RX_STATUS_FIFO: u32 = 0x40;
    /// Transmit status FIFO port (reads pop one status word).
    pub const TX_STATUS_FIFO: u32 = 0x48;
    /// Chip ID (high half) and revision (low half).
    pub const ID_REV: u32 = 0x50;
    /// Interrupt pin configuration.
    pub const IRQ_CFG: u32 = 0x54;
    /// Interrupt status (write 1 to clear).
    pub const INT_STS: u32 = 0x58;
    /// Interrupt enables.
    pub const INT_EN: u32 = 0x5C;
    /// Reads as 0x8765_4321 when the bus works.
    pub const BYTE_TEST: u32 = 0x64;
    /// Receive configuration (end alignment, data offset, dump).
    pub const RX_CFG: u32 = 0x6C;
    /// Transmit configuration (TX_ON, dumps).
    pub const TX_CFG: u32 = 0x70;
    /// Hardware configuration (soft reset).
    pub const HW_CFG: u32 = 0x74;
    /// Receive FIFO information: status words used (23:16), data bytes used (15:0).
    pub const RX_FIFO_INF: u32 = 0x7C;
    /// Transmit FIFO information: status words used (23:16), data space free (15:0).
    pub const TX_FIFO_INF: u32 = 0x80;
    /// Power management control (bit 0: device ready).
    pub const PMT_CTRL: u32 = 0x84;
    /// MAC CSR command: busy (31), read (30), MAC register index (7:0).
    pub const MAC_CSR_CMD: u32 = 0xA4;
    /// MAC CSR data.
    pub const MAC_CSR_DATA: u32 = 0xA8;

    /// Every register the driver may touch, for test doubles that refuse the rest as QEMU does.
    pub const ALL: [u32; 17] = [
        RX_DATA_FIFO,
        TX_DATA_FIFO,
        RX_STATUS_FIFO,
        TX_STATUS_FIFO,
        ID_REV,
        IRQ_CFG,
        INT_STS,
        INT_EN,
        BYTE_TEST,
        RX_CFG,
        TX_CFG,
        HW_CFG,
        RX_FIFO_INF,
        TX_FIFO_INF,
        PMT_CTRL,
        MAC_CSR_CMD,
        MAC_CSR_DATA,
    ];
}

/// MAC registers, reached through `MAC_CSR_CMD`/`MAC_CSR_DATA`.
pub mod mac {
    /// MAC control.
    pub const MAC_CR: u32 = 1;
    /// MAC address bytes 4 and 5.
    pub const ADDRH: u32 = 2;
    /// MAC address bytes 0 to 3.
    pub const ADDRL: u32 = 3;
    /// MII access (PHY register index, write flag, busy).
    pub const MII_ACC: u32 = 6;
    /// MII data.
    pub const MII_DATA: u32 = 7;

    /// `MAC_CR`: receiver enable.
    pub const CR_RXEN: u32 = 1 << 2;
    /// `MAC_CR`: transmitter enable.
    pub const CR_TXEN: u32 = 1 << 3;
    /// `MAC_CR`: full duplex.
    pub const CR_FDPX: u32 = 1 << 20;
}

/// `HW_CFG` soft reset bit (self-clearing).
const HW_CFG_SRST: u32 = 1;
/// `PMT_CTRL` device-ready bit.
const PMT_READY: u32 = 1;
/// `TX_CFG` transmitter on.
const TX_CFG_TX_ON: u32 = 1 << 1;
/// `MAC_CSR_CMD` busy bit.
const CSR_BUSY: u32 = 1 << 31;
/// `MAC_CSR_CMD` read (not write) bit.
const CSR_READ: u32 = 1 << 30;
/// `MII_ACC` busy bit.
const MII_BUSY: u32 = 1;
/// Address of the internal PHY on the MII bus.
const PHY_ADDR: u32 = 1;
/// PHY basic status register and its link-up bit.
const PHY_BSR: u32 = 1;
const PHY_BSR_LINK: u32 = 1 << 2;

/// Receive status: filtering failed (the frame was not for us).
const RX_STS_FILTER_FAIL: u32 = 1 << 30;
/// Receive status: error summary (CRC, runt, too long, collision, ...).
const RX_STS_ERROR: u32 = 1 << 15;
/// Transmit status: error summary.
const TX_STS_ERROR: u32 = 1 << 15;

/// TX command word A: first segment.
pub const TX_CMD_A_FIRST: u32 = 1 << 13;
/// TX command word A: last segment.
pub const TX_CMD_A_LAST: u32 = 1 << 12;

/// Ethernet header plus FCS: nothing shorter is a frame.
const MIN_FRAME_WITH_FCS: usize = 14 + 4;
/// How often a busy bit is polled before giving up.
const SPIN_LIMIT: u32 = 100_000;

/// 32-bit register access at an offset from the controller's base.
pub trait Regs {
    /// Reads the register at `offset`.
    fn read(&mut self, offset: u32) -> u32;
    /// Writes `value` to the register at `offset`.
    fn write(&mut self, offset: u32, value: u32);
}

/// Memory-mapped registers at a fixed base address.
pub struct Mmio {
    base: usize,
}

impl Mmio {
    /// Registers at `base`.
    ///
    /// # Safety
    /// `base` must be the address of a LAN9118 register block that nothing else accesses.
    pub const unsafe fn new(base: usize) -> Self {
        Mmio { base }
    }
}

impl Regs for Mmio {
    fn read(&mut self, offset: u32) -> u32 {
        // SAFETY: `new`'s contract: a valid register block; offsets come from `reg`.
        unsafe { ((self.base + offset as usize) as *const u32).read_volatile() }
    }

    fn write(&mut self, offset: u32, value: u32) {
        // SAFETY: as in `read`.
        unsafe { ((self.base + offset as usize) as *mut u32).write_volatile(value) }
    }
}

/// Why the controller could not be brought up or a frame not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `ID_REV`/`BYTE_TEST` do not read as a LAN9118 (the value of `ID_REV` is given).
    NotFound(u32),
    /// A busy or reset bit did not clear.
    Timeout,
    /// The frame is longer than [`MTU`] or shorter than an Ethernet header.
    BadLength,
    /// The transmit FIFO has no room for the frame now.
    Busy,
}

/// Counters, for diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames received and handed to the stack.
    pub rx_frames: u32,
    /// Frames dropped: receive errors, filter failures, or lengths outside 14..=[`MTU`].
    pub rx_dropped: u32,
    /// Frames queued for transmission.
    pub tx_frames: u32,
    /// Transmit statuses that reported an error.
    pub tx_errors: u32,
}

/// The driver's frame buffer ([`FRAME_BUFFER`]): on the heap, and only while the network is in use
/// (taken at the first frame, given back by [`Lan9118::release`]), so a device that is not updating
/// spends no RAM on it.
struct Frames {
    buf: [u8; FRAME_BUFFER],
}

/// The driver: registers, the frame buffer while in use, counters.
pub struct Lan9118<R: Regs> {
    regs: R,
    frames: Option<Box<Frames>>,
    tag: u16,
    stats: Stats,
}

impl<R: Regs> Lan9118<R> {
    /// A driver over `regs`; call [`Lan9118::init`] before use.
    pub const fn new(regs: R) -> Self {
        Lan9118 {
            regs,
            frames: None,
            tag: 0,
            stats: Stats {
                rx_frames: 0,
                rx_dropped: 0,
                tx_frames: 0,
                tx_errors: 0,
            },
        }
    }

    /// Gives the frame buffer back to the heap (the next frame takes it again). The core calls it
    /// when it takes the network down.
    pub fn release(&mut self) {
        self.frames = None;
    }

    /// The frame buffer, taken from the heap if it is not held; `None` if the heap has no room (the
    /// frame then waits in the chip's FIFO).
    fn frames(&mut self) -> Option<&mut Frames> {
        if self.frames.is_none() {
            let layout = Layout::new::<Frames>();
            // SAFETY: `Frames` has a non-zero size.
            let p = unsafe { alloc_zeroed(layout) } as *mut Frames;
            if p.is_null() {
                return None;
            }
            // SAFETY: a fresh block of `Frames`' layout from the global allocator, all zero bytes (a
            // valid `Frames`), owned by the box from here on.
            self.frames = Some(unsafe { Box::from_raw(p) });
        }
        self.frames.as_deref_mut()
    }

    /// Checks the chip, soft-resets it, programs `mac_addr`, and enables the receiver and transmitter
    /// (full duplex, address filtering on: our address, broadcast; interrupts off).
    pub fn init(&mut self, mac_addr: [u8; 6]) -> Result<(), Error> {
        let id = self.regs.read(reg::ID_REV);
        if id >> 16 != 0x0118 || self.regs.read(reg::BYTE_TEST) != 0x8765_4321 {
            return Err(Error::NotFound(id));
        }
        self.regs.write(reg::HW_CFG, HW_CFG_SRST);
        self.spin(reg::HW_CFG, HW_CFG_SRST, 0)?;
        self.spin(reg::PMT_CTRL, PMT_READY, PMT_READY)?;
        self.regs.write(reg::IRQ_CFG, 0);
        self.regs.write(reg::INT_EN, 0);
        self.regs.write(reg::INT_STS, u32::MAX);
        let [a0, a1, a2, a3, a4, a5] = mac_addr;
        self.mac_write(mac::ADDRL, u32::from_le_bytes([a0, a1, a2, a3]))?;
        self.mac_write(mac::ADDRH, u32::from_le_bytes([a4, a5, 0, 0]))?;
        // RX: no data offset, 4-byte end alignment. TX: on.
        self.regs.write(reg::RX_CFG, 0);
        self.regs.write(reg::TX_CFG, TX_CFG_TX_ON);
        self.mac_write(mac::MAC_CR, mac::CR_TXEN | mac::CR_RXEN | mac::CR_FDPX)
    }

    /// The MAC address the chip holds now (after a reset, the one its EEPROM gives).
    pub fn mac_address(&mut self) -> Result<[u8; 6], Error> {
        let [a0, a1, a2, a3] = self.mac_read(mac::ADDRL)?.to_le_bytes();
        let [a4, a5, _, _] = self.mac_read(mac::ADDRH)?.to_le_bytes();
        Ok([a0, a1, a2, a3, a4, a5])
    }

    /// Whether the PHY reports the link up (PHY basic status through MII).
    pub fn link_up(&mut self) -> Result<bool, Error> {
        self.mii_spin()?;
        self.mac_write(mac::MII_ACC, (PHY_ADDR << 11) | (PHY_BSR << 6) | MII_BUSY)?;
        self.mii_spin()?;
        Ok(self.mac_read(mac::MII_DATA)? & PHY_BSR_LINK != 0)
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The register interface (tests inspect their fake through it).
    pub fn regs(&mut self) -> &mut R {
        &mut self.regs
    }

    /// Sends one frame (without FCS) at once: refuses lengths outside 14..=[`MTU`] and a full FIFO.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        if frame.len() > MTU || frame.len() < 14 {
            return Err(Error::BadLength);
        }
        if !tx_room(&mut self.regs, &mut self.stats) {
            return Err(Error::Busy);
        }
        self.tag = self.tag.wrapping_add(1);
        push_frame(&mut self.regs, self.tag, frame, &mut self.stats);
        Ok(())
    }

    /// Reads the next good frame into the receive buffer and returns its length; drops bad ones.
    fn receive_frame(&mut self) -> Option<usize> {
        // Without room for a frame it stays in the FIFO.
        self.frames()?;
        loop {
            if (self.regs.read(reg::RX_FIFO_INF) >> 16) & 0xFF == 0 {
                return None;
            }
            let status = self.regs.read(reg::RX_STATUS_FIFO);
            // Length including the 4-byte FCS, which the FIFO holds too.
            let len = ((status >> 16) & 0x3FFF) as usize;
            let words = len.div_ceil(4);
            let good = status & (RX_STS_ERROR | RX_STS_FILTER_FAIL) == 0
                && (MIN_FRAME_WITH_FCS..=MTU + 4).contains(&len);
            if !good {
                for _ in 0..words {
                    self.regs.read(reg::RX_DATA_FIFO);
                }
                self.stats.rx_dropped = self.stats.rx_dropped.wrapping_add(1);
                continue;
            }
            let frame_len = len - 4;
            let mut at = 0;
            for _ in 0..words {
                let word = self.regs.read(reg::RX_DATA_FIFO).to_le_bytes();
                let n = frame_len.saturating_sub(at).min(4);
                if let Some(f) = self.frames.as_deref_mut() {
                    f.buf[at..at + n].copy_from_slice(&word[..n]);
                }
                at += n;
            }
            self.stats.rx_frames = self.stats.rx_frames.wrapping_add(1);
            return Some(frame_len);
        }
    }

    fn spin(&mut self, offset: u32, mask: u32, want: u32) -> Result<(), Error> {
        for _ in 0..SPIN_LIMIT {
            if self.regs.read(offset) & mask == want {
                return Ok(());
            }
        }
        Err(Error::Timeout)
    }

    fn mii_spin(&mut self) -> Result<(), Error> {
        for _ in 0..SPIN_LIMIT {
            if self.mac_read(mac::MII_ACC)? & MII_BUSY == 0 {
                return Ok(());
            }
        }
        Err(Error::Timeout)
    }

    fn mac_write(&mut self, index: u32, value: u32) -> Result<(), Error> {
        self.spin(reg::MAC_CSR_CMD, CSR_BUSY, 0)?;
        self.regs.write(reg::MAC_CSR_DATA, value);
        self.regs.write(reg::MAC_CSR_CMD, CSR_BUSY | index);
        self.spin(reg::MAC_CSR_CMD, CSR_BUSY, 0)
    }

    fn mac_read(&mut self, index: u32) -> Result<u32, Error> {
        self.spin(reg::MAC_CSR_CMD, CSR_BUSY, 0)?;
        self.regs
            .write(reg::MAC_CSR_CMD, CSR_BUSY | CSR_READ | index);
        self.spin(reg::MAC_CSR_CMD, CSR_BUSY, 0)?;
        Ok(self.regs.read(reg::MAC_CSR_DATA))
    }
}

/// Pops pending transmit statuses (counting errors) and says whether a full frame fits the FIFO.
fn tx_room<R: Regs>(regs: &mut R, stats: &mut Stats) -> bool {
    let inf = regs.read(reg::TX_FIFO_INF);
    for _ in 0..(inf >> 16) & 0xFF {
        if regs.read(reg::TX_STATUS_FIFO) & TX_STS_ERROR != 0 {
            stats.tx_errors = stats.tx_errors.wrapping_add(1);
        }
    }
    // Free space in bytes on the chip (QEMU counts words there: the test is conservative).
    (inf & 0xFFFF) as usize >= MTU + 4 + 8
}

/// Writes one single-segment frame to the TX data FIFO: command words A and B, then the bytes as
/// little-endian words, the last one zero-padded.
fn push_frame<R: Regs>(regs: &mut R, tag: u16, frame: &[u8], stats: &mut Stats) {
    let len = frame.len() as u32;
    regs.write(reg::TX_DATA_FIFO, TX_CMD_A_FIRST | TX_CMD_A_LAST | len);
    regs.write(reg::TX_DATA_FIFO, (u32::from(tag) << 16) | len);
    let (words, rest) = frame.as_chunks::<4>();
    for w in words {
        regs.write(reg::TX_DATA_FIFO, u32::from_le_bytes(*w));
    }
    if !rest.is_empty() {
        let mut w = [0u8; 4];
        w[..rest.len()].copy_from_slice(rest);
        regs.write(reg::TX_DATA_FIFO, u32::from_le_bytes(w));
    }
    stats.tx_frames = stats.tx_frames.wrapping_add(1);
}

/// A received frame, already in the driver's receive buffer.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<T, F: FnOnce(&[u8]) -> T>(self, f: F) -> T {
        f(self.frame)
    }
}

/// Room for one frame in the transmit FIFO, and where to build it: the whole frame buffer, or the
/// [`RESPONSE_ROOM`] (at least) after a received frame that is still held.
pub struct TxToken<'a, R: Regs> {
    regs: &'a mut R,
    buf: &'a mut [u8],
    tag: &'a mut u16,
    stats: &'a mut Stats,
}

impl<R: Regs> phy::TxToken for TxToken<'_, R> {
    /// Lets `f` build the frame, then queues it. smoltcp never asks for more than the MTU the
    /// capabilities give, nor for a response longer than [`RESPONSE_ROOM`] but an ICMP one; a longer
    /// request is built truncated and then not sent (counted as an error).
    fn consume<T, F: FnOnce(&mut [u8]) -> T>(self, len: usize, f: F) -> T {
        let n = len.min(MTU).min(self.buf.len());
        let out = f(&mut self.buf[..n]);
        if len == n && len >= 14 {
            *self.tag = self.tag.wrapping_add(1);
            push_frame(self.regs, *self.tag, &self.buf[..n], self.stats);
        } else {
            self.stats.tx_errors = self.stats.tx_errors.wrapping_add(1);
        }
        out
    }
}

impl<R: Regs> phy::Device for Lan9118<R> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, R>
    where
        Self: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_, R>)> {
        let len = self.receive_frame()?;
        let (frame, room) = self.frames.as_deref_mut()?.buf.split_at_mut(len);
        Some((
            RxToken { frame },
            TxToken {
                regs: &mut self.regs,
                buf: room,
                tag: &mut self.tag,
                stats: &mut self.stats,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_, R>> {
        if !tx_room(&mut self.regs, &mut self.stats) {
            return None;
        }
        self.frames()?;
        Some(TxToken {
            regs: &mut self.regs,
            buf: &mut self.frames.as_deref_mut()?.buf[..MTU],
            tag: &mut self.tag,
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        // No burst limit: the RX FIFO holds about 10 KB, several full frames (smoltcp would clamp the
        // advertised TCP window to burst * MSS).
        caps
    }
}

#[cfg(test)]
mod tests;
