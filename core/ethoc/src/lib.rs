//! OpenCores 10/100 Ethernet MAC ("ethoc") driver as a smoltcp [`phy::Device`].
//!
//! Written against the MAC as QEMU emulates it on the xtfpga boards (`qemu-system-xtensa -M lx60-nommu
//! -cpu lx106 -nic ...,model=open_eth`): registers at [`XTFPGA_REGS`], 128 buffer descriptors of two
//! words at `XTFPGA_REGS + 0x400`, and 16 KB of packet RAM at [`XTFPGA_RAM`] that holds the frame
//! buffers. QEMU's `hw/net/opencores_eth.c` is the reference for offsets, bits and behaviour.
//!
//! Layout in the packet RAM: [`TX_BUFFERS`] transmit buffers, then [`RX_BUFFERS`] receive buffers, each
//! [`BUFFER_SIZE`] bytes (10 × 1536 = 15,360 of the 16,384 bytes). Descriptor `i` owns buffer `i`: the
//! first `TX_BD_NUM` = [`TX_BUFFERS`] descriptors are the transmit ring, the next [`RX_BUFFERS`] the
//! receive ring, and the last of each ring carries the wrap bit. The driver struct itself holds only
//! two ring indices and counters: frames are handed to smoltcp in place (no copy, no driver RAM).
//!
//! Ownership of a buffer passes through its descriptor: the MAC owns an RX buffer while `E` is set and a
//! TX buffer while `RD` is set; the driver reads or writes a buffer only while it owns it, with a fence
//! between the descriptor access and the buffer access.
//!
//! Everything is polled; interrupts stay masked. Register and descriptor access goes through the small
//! [`Regs`] trait (32-bit aligned words only) and the packet RAM through [`Bus`]: [`Mmio`] on the board,
//! a fake MAC in the tests.
#![no_std]
#![deny(missing_docs)]

use core::sync::atomic::{fence, Ordering};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Largest Ethernet frame handled, without the FCS: 14 bytes of header and an IP MTU of 1500.
pub const MTU: usize = 1514;
/// Shortest frame handled: an Ethernet header.
pub const MIN_FRAME: usize = 14;
/// The frame check sequence the MAC appends to every received frame (QEMU writes zeros there).
pub const FCS: usize = 4;

/// The register window on QEMU's xtfpga boards (uncached IO region); the descriptors follow at +0x400.
pub const XTFPGA_REGS: usize = 0x9d03_0000;
/// The packet RAM on QEMU's xtfpga boards.
pub const XTFPGA_RAM: usize = 0x9d80_0000;
/// Size of the packet RAM.
pub const RAM_SIZE: usize = 16 * 1024;

/// Size of each frame buffer: the MAC's maximum frame length (`PACKETLEN.MAXFL`, its reset value),
/// which the driver programs explicitly so that the MAC never writes past a buffer.
pub const BUFFER_SIZE: usize = 1536;
/// Transmit buffers (and descriptors, `TX_BD_NUM`). QEMU sends a frame as soon as its descriptor is
/// written, so two are plenty there; a real MAC drains them at wire speed.
pub const TX_BUFFERS: usize = 2;
/// Receive buffers (and descriptors). A frame that arrives with none empty is lost (`INT_SOURCE.BUSY`):
/// eight hold rota-net's whole 4 KB TCP window (three full segments) plus ARP and ACK traffic between
/// two polls.
pub const RX_BUFFERS: usize = 8;
/// Minimum frame length programmed in `PACKETLEN.MINFL` (its reset value): shorter frames are padded.
pub const MIN_FRAME_PADDED: u32 = 64;

const _: () = assert!((TX_BUFFERS + RX_BUFFERS) * BUFFER_SIZE <= RAM_SIZE);
const _: () =
    assert!(TX_BUFFERS >= 1 && RX_BUFFERS >= 1 && TX_BUFFERS + RX_BUFFERS <= reg::DESC_COUNT);
const _: () = assert!(BUFFER_SIZE >= MTU + FCS && BUFFER_SIZE % 4 == 0);

/// Register offsets from the MAC's base address (each a 32-bit word).
pub mod reg {
    /// Mode: enables, filtering, padding, CRC, reset.
    pub const MODER: u32 = 0x00;
    /// Interrupt sources (write 1 to clear).
    pub const INT_SOURCE: u32 = 0x04;
    /// Interrupt mask (0: all masked).
    pub const INT_MASK: u32 = 0x08;
    /// Back-to-back inter-packet gap.
    pub const IPGT: u32 = 0x0C;
    /// Non-back-to-back inter-packet gap 1.
    pub const IPGR1: u32 = 0x10;
    /// Non-back-to-back inter-packet gap 2.
    pub const IPGR2: u32 = 0x14;
    /// Minimum (31..16) and maximum (15..0) frame length.
    pub const PACKETLEN: u32 = 0x18;
    /// Collision and retry configuration.
    pub const COLLCONF: u32 = 0x1C;
    /// Number of transmit descriptors; the receive descriptors follow them.
    pub const TX_BD_NUM: u32 = 0x20;
    /// Control-frame (PAUSE) mode.
    pub const CTRLMODER: u32 = 0x24;
    /// MII mode (clock divider, preamble).
    pub const MIIMODER: u32 = 0x28;
    /// MII command: scan status, read status, write control data.
    pub const MIICOMMAND: u32 = 0x2C;
    /// MII address: PHY register (12..8) and PHY address (4..0).
    pub const MIIADDRESS: u32 = 0x30;
    /// MII data to write.
    pub const MIITX_DATA: u32 = 0x34;
    /// MII data read.
    pub const MIIRX_DATA: u32 = 0x38;
    /// MII status: link fail, busy, not valid.
    pub const MIISTATUS: u32 = 0x3C;
    /// MAC address bytes 2 (31..24), 3, 4, 5 (7..0).
    pub const MAC_ADDR0: u32 = 0x40;
    /// MAC address bytes 0 (15..8) and 1 (7..0).
    pub const MAC_ADDR1: u32 = 0x44;
    /// Multicast hash table, low word.
    pub const HASH0: u32 = 0x48;
    /// Multicast hash table, high word.
    pub const HASH1: u32 = 0x4C;
    /// Transmit control (PAUSE frames).
    pub const TXCTRL: u32 = 0x50;
    /// End of the register block.
    pub const END: u32 = 0x54;
    /// The buffer descriptors: `DESC_COUNT` of two words each (length and flags, buffer address).
    pub const DESC: u32 = 0x400;
    /// Number of buffer descriptors (transmit and receive together).
    pub const DESC_COUNT: usize = 128;

    /// Offset of descriptor `index`'s first word (length and flags); the buffer address is at +4.
    pub const fn desc(index: usize) -> u32 {
        DESC + 8 * index as u32
    }
}

/// `MODER` bits.
pub mod moder {
    /// Receiver enable.
    pub const RXEN: u32 = 1 << 0;
    /// Transmitter enable.
    pub const TXEN: u32 = 1 << 1;
    /// Reject broadcast frames (must stay clear: ARP requests are broadcast).
    pub const BRO: u32 = 1 << 3;
    /// Filter unicast through the hash table too.
    pub const IAM: u32 = 1 << 4;
    /// Promiscuous: receive every frame.
    pub const PRO: u32 = 1 << 5;
    /// Loopback.
    pub const LOOPBCK: u32 = 1 << 7;
    /// Full duplex.
    pub const FULLD: u32 = 1 << 10;
    /// Reset (held while set).
    pub const RST: u32 = 1 << 11;
    /// Append the CRC to transmitted frames.
    pub const CRCEN: u32 = 1 << 13;
    /// Accept frames longer than `MAXFL`.
    pub const HUGEN: u32 = 1 << 14;
    /// Pad short frames to `MINFL`.
    pub const PAD: u32 = 1 << 15;
    /// Receive frames shorter than `MINFL`.
    pub const RECSMALL: u32 = 1 << 16;
}

/// `INT_SOURCE` and `INT_MASK` bits.
pub mod int {
    /// A frame was transmitted (from a descriptor with IRQ).
    pub const TXB: u32 = 1 << 0;
    /// Transmit error.
    pub const TXE: u32 = 1 << 1;
    /// A frame was received (into a descriptor with IRQ).
    pub const RXB: u32 = 1 << 2;
    /// Receive error.
    pub const RXE: u32 = 1 << 3;
    /// A frame arrived with no empty receive descriptor and was lost.
    pub const BUSY: u32 = 1 << 4;
    /// Control frame transmitted.
    pub const TXC: u32 = 1 << 5;
    /// Control frame received.
    pub const RXC: u32 = 1 << 6;
    /// Every source.
    pub const ALL: u32 = 0x7F;
}

/// MII management bits, and the PHY registers used.
pub mod mii {
    /// `MIICOMMAND`: read the PHY register `MIIADDRESS` names into `MIIRX_DATA`.
    pub const RSTAT: u32 = 1 << 1;
    /// `MIISTATUS`: the link failed.
    pub const LINKFAIL: u32 = 1 << 0;
    /// `MIISTATUS`: an MII operation is in progress.
    pub const BUSY: u32 = 1 << 1;
    /// PHY address of QEMU's emulated PHY (a DP83848C subset).
    pub const PHY_ADDR: u32 = 1;
    /// PHY basic status register.
    pub const BMSR: u32 = 1;
    /// `BMSR`: link up.
    pub const BMSR_LINK: u32 = 1 << 2;
}

/// Transmit descriptor word 0: length in 31..16, flags and status in 15..0.
pub mod txd {
    /// Ready: the MAC owns the descriptor until it has sent the frame.
    pub const RD: u32 = 1 << 15;
    /// Raise `INT_SOURCE.TXB` when sent.
    pub const IRQ: u32 = 1 << 14;
    /// Wrap: the last descriptor of the transmit ring.
    pub const WR: u32 = 1 << 13;
    /// Pad the frame to `MINFL`.
    pub const PAD: u32 = 1 << 12;
    /// Append the CRC.
    pub const CRC: u32 = 1 << 11;
    /// Status: underrun.
    pub const UR: u32 = 1 << 8;
    /// Status: retry count (7..4).
    pub const RTRY: u32 = 0xF << 4;
    /// Status: retransmission limit reached.
    pub const RL: u32 = 1 << 3;
    /// Status: late collision.
    pub const LC: u32 = 1 << 2;
    /// Status: deferred (not an error).
    pub const DF: u32 = 1 << 1;
    /// Status: carrier sense lost.
    pub const CS: u32 = 1 << 0;
    /// The status bits that mean the frame was not sent properly.
    pub const ERRORS: u32 = UR | RL | LC | CS;
}

/// Receive descriptor word 0: length in 31..16, flags and status in 15..0.
pub mod rxd {
    /// Empty: the MAC owns the descriptor until it has stored a frame.
    pub const E: u32 = 1 << 15;
    /// Raise `INT_SOURCE.RXB` when filled.
    pub const IRQ: u32 = 1 << 14;
    /// Wrap: the last descriptor of the receive ring.
    pub const WR: u32 = 1 << 13;
    /// Status: control frame.
    pub const CF: u32 = 1 << 8;
    /// Status: miss (accepted only because of promiscuous mode).
    pub const M: u32 = 1 << 7;
    /// Status: overrun.
    pub const OR: u32 = 1 << 6;
    /// Status: invalid symbol.
    pub const IS: u32 = 1 << 5;
    /// Status: dribble nibble.
    pub const DN: u32 = 1 << 4;
    /// Status: too long.
    pub const TL: u32 = 1 << 3;
    /// Status: short frame.
    pub const SF: u32 = 1 << 2;
    /// Status: CRC error.
    pub const CRC: u32 = 1 << 1;
    /// Status: late collision.
    pub const LC: u32 = 1 << 0;
    /// Every status bit: a frame with any of them is dropped, never handed to the stack.
    pub const ERRORS: u32 = CF | M | OR | IS | DN | TL | SF | CRC | LC;
}

/// 32-bit word access to the register window: registers at 0..[`reg::END`], descriptors from
/// [`reg::DESC`]. Offsets are always multiples of 4.
///
/// The methods take `&self` because smoltcp holds a receive and a transmit token at once and both
/// write descriptors; an MMIO window needs no exclusive borrow for that.
pub trait Regs {
    /// Reads the word at `offset`.
    fn read32(&self, offset: u32) -> u32;
    /// Writes `value` to the word at `offset`.
    fn write32(&self, offset: u32, value: u32);
}

/// The MAC as the driver sees it: its register window and its packet RAM.
pub trait Bus {
    /// The register window.
    type Regs: Regs;
    /// The register window and the packet RAM, borrowed together (frames are built and read in place).
    fn split(&mut self) -> (&Self::Regs, &mut [u8; RAM_SIZE]);
    /// The address the MAC uses for the first byte of the packet RAM (buffer pointers in descriptors).
    fn ram_address(&self) -> u32;
}

/// The register window at a fixed base address.
pub struct MmioRegs {
    base: usize,
}

impl Regs for MmioRegs {
    fn read32(&self, offset: u32) -> u32 {
        // SAFETY: `Mmio::new`'s contract: an OpenCores MAC's register window at `base`; the driver's
        // offsets are word-aligned and inside it (registers and the 128 descriptors).
        unsafe { ((self.base + offset as usize) as *const u32).read_volatile() }
    }

    fn write32(&self, offset: u32, value: u32) {
        // SAFETY: as in `read32`.
        unsafe { ((self.base + offset as usize) as *mut u32).write_volatile(value) }
    }
}

/// The MAC memory-mapped: its register window and its packet RAM.
pub struct Mmio {
    regs: MmioRegs,
    ram: usize,
}

impl Mmio {
    /// The MAC with registers at `regs` and [`RAM_SIZE`] bytes of packet RAM at `ram`.
    ///
    /// # Safety
    /// `regs` must be the address of an OpenCores Ethernet MAC's register window (descriptors at
    /// `regs + 0x400`) and `ram` that of [`RAM_SIZE`] bytes of memory, 4-byte aligned, which the MAC
    /// reaches at the same address (no MMU, no cache in between) and which nothing but this driver
    /// and the MAC access. Only one `Mmio` may exist for them.
    pub const unsafe fn new(regs: usize, ram: usize) -> Self {
        Mmio {
            regs: MmioRegs { base: regs },
            ram,
        }
    }

    /// The MAC of QEMU's xtfpga boards ([`XTFPGA_REGS`], [`XTFPGA_RAM`]).
    ///
    /// # Safety
    /// The board must have the MAC (QEMU adds it only with a `-nic ...,model=open_eth`), and only one
    /// `Mmio` may exist for it (as for [`Mmio::new`]).
    pub const unsafe fn xtfpga() -> Self {
        // SAFETY: the caller's contract; these are the board's addresses.
        unsafe { Mmio::new(XTFPGA_REGS, XTFPGA_RAM) }
    }
}

impl Bus for Mmio {
    type Regs = MmioRegs;

    fn split(&mut self) -> (&MmioRegs, &mut [u8; RAM_SIZE]) {
        // SAFETY: `new`'s contract: `ram` is RAM_SIZE bytes of aligned memory that only this `Mmio`
        // (borrowed exclusively here) and the MAC touch. The MAC writes only RX buffers whose
        // descriptor it owns (E set) and reads only TX buffers whose descriptor it owns (RD set); the
        // driver touches a buffer only while it owns the descriptor, fenced against the descriptor
        // access, so the MAC's accesses never overlap the driver's.
        let ram = unsafe { &mut *(self.ram as *mut [u8; RAM_SIZE]) };
        (&self.regs, ram)
    }

    fn ram_address(&self) -> u32 {
        self.ram as u32
    }
}

/// Why an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The MII stayed busy.
    Timeout,
}

/// Counters, for diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames received and handed to the stack.
    pub rx_frames: u32,
    /// Frames dropped: an error status bit, or a length outside 14..=[`MTU`] (plus the FCS).
    pub rx_dropped: u32,
    /// Frames handed to the MAC for transmission.
    pub tx_frames: u32,
    /// Transmissions the MAC reported failed (counted when their descriptor is next used) and frames
    /// not sent because smoltcp built them shorter than 14 or longer than [`MTU`] bytes.
    pub tx_errors: u32,
}

/// How often a busy bit is polled before giving up.
const SPIN_LIMIT: u32 = 100_000;

/// The receive descriptor word that hands RX descriptor `index` (0-based in the ring) to the MAC.
const fn rx_armed(index: usize) -> u32 {
    let wrap = if index == RX_BUFFERS - 1 { rxd::WR } else { 0 };
    rxd::E | rxd::IRQ | wrap
}

/// The wrap bit of TX descriptor `index`.
const fn tx_wrap(index: usize) -> u32 {
    if index == TX_BUFFERS - 1 {
        txd::WR
    } else {
        0
    }
}

/// Offset of RX descriptor `index` (0-based in the receive ring).
const fn rx_desc(index: usize) -> u32 {
    reg::desc(TX_BUFFERS + index)
}

/// The driver: the bus, the next descriptor of each ring, counters.
pub struct Ethoc<B: Bus> {
    bus: B,
    tx_next: usize,
    rx_next: usize,
    stats: Stats,
}

impl<B: Bus> Ethoc<B> {
    /// Resets the MAC, programs `mac` and the frame lengths, lays out both descriptor rings in the
    /// packet RAM and enables the receiver and transmitter (`MODER` = RXEN | TXEN | PAD | CRCEN:
    /// broadcast accepted, no promiscuous mode, half duplex; interrupts masked).
    pub fn new(mut bus: B, mac: [u8; 6]) -> Self {
        let ram = bus.ram_address();
        let (regs, _) = bus.split();
        // Stop, then reset (QEMU resets on the rising edge of RST; the MAC holds reset while it is set).
        regs.write32(reg::MODER, 0);
        regs.write32(reg::MODER, moder::RST);
        regs.write32(reg::MODER, 0);
        regs.write32(reg::INT_MASK, 0);
        regs.write32(reg::INT_SOURCE, int::ALL);
        regs.write32(
            reg::PACKETLEN,
            (MIN_FRAME_PADDED << 16) | BUFFER_SIZE as u32,
        );
        let [m0, m1, m2, m3, m4, m5] = mac;
        regs.write32(reg::MAC_ADDR0, u32::from_be_bytes([m2, m3, m4, m5]));
        regs.write32(reg::MAC_ADDR1, u32::from_be_bytes([0, 0, m0, m1]));
        // Before RXEN: the MAC starts receiving at descriptor TX_BD_NUM.
        regs.write32(reg::TX_BD_NUM, TX_BUFFERS as u32);
        for i in 0..TX_BUFFERS + RX_BUFFERS {
            // The buffer address first: a descriptor write may start a transmission.
            regs.write32(reg::desc(i) + 4, ram + (i * BUFFER_SIZE) as u32);
            let word = if i < TX_BUFFERS {
                tx_wrap(i)
            } else {
                rx_armed(i - TX_BUFFERS)
            };
            regs.write32(reg::desc(i), word);
        }
        regs.write32(
            reg::MODER,
            moder::RXEN | moder::TXEN | moder::PAD | moder::CRCEN,
        );
        Ethoc {
            bus,
            tx_next: 0,
            rx_next: 0,
            stats: Stats::default(),
        }
    }

    /// The MAC address the MAC holds.
    pub fn mac_address(&mut self) -> [u8; 6] {
        let (regs, _) = self.bus.split();
        let [m2, m3, m4, m5] = regs.read32(reg::MAC_ADDR0).to_be_bytes();
        let [_, _, m0, m1] = regs.read32(reg::MAC_ADDR1).to_be_bytes();
        [m0, m1, m2, m3, m4, m5]
    }

    /// Whether the PHY reports the link up (its basic status register, read through the MII).
    pub fn link_up(&mut self) -> Result<bool, Error> {
        let (regs, _) = self.bus.split();
        regs.write32(reg::MIIADDRESS, (mii::BMSR << 8) | mii::PHY_ADDR);
        regs.write32(reg::MIICOMMAND, mii::RSTAT);
        let mut idle = false;
        for _ in 0..SPIN_LIMIT {
            if regs.read32(reg::MIISTATUS) & mii::BUSY == 0 {
                idle = true;
                break;
            }
        }
        let status = regs.read32(reg::MIIRX_DATA);
        regs.write32(reg::MIICOMMAND, 0);
        if !idle {
            return Err(Error::Timeout);
        }
        Ok(status & mii::BMSR_LINK != 0)
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The bus (tests drive their fake MAC through it).
    pub fn bus(&mut self) -> &mut B {
        &mut self.bus
    }
}

/// A received frame, in place in its RX buffer. Dropping the token (after `consume` or without it)
/// hands the descriptor back to the MAC.
pub struct RxToken<'a, R: Regs> {
    regs: &'a R,
    frame: &'a [u8],
    index: usize,
}

impl<R: Regs> phy::RxToken for RxToken<'_, R> {
    fn consume<T, F: FnOnce(&[u8]) -> T>(self, f: F) -> T {
        f(self.frame)
        // `self` drops here: the descriptor is re-armed.
    }
}

impl<R: Regs> Drop for RxToken<'_, R> {
    fn drop(&mut self) {
        // Our reads of the buffer happen before the MAC may write it again.
        fence(Ordering::Release);
        self.regs.write32(rx_desc(self.index), rx_armed(self.index));
    }
}

/// A free TX descriptor and its buffer.
pub struct TxToken<'a, R: Regs> {
    regs: &'a R,
    buf: &'a mut [u8],
    /// The descriptor word as the MAC left it (its status bits report the previous transmission).
    last: u32,
    next: &'a mut usize,
    stats: &'a mut Stats,
}

impl<R: Regs> phy::TxToken for TxToken<'_, R> {
    /// Lets `f` build the frame in the TX buffer, then hands the descriptor to the MAC (length | RD |
    /// CRC | PAD, WR on the last). smoltcp never asks for more than the MTU the capabilities give; a
    /// longer (or a runt) request is built truncated and then not sent (counted as an error).
    fn consume<T, F: FnOnce(&mut [u8]) -> T>(self, len: usize, f: F) -> T {
        let n = len.min(MTU);
        let out = f(&mut self.buf[..n]);
        if (MIN_FRAME..=MTU).contains(&len) {
            if self.last & txd::ERRORS != 0 {
                self.stats.tx_errors = self.stats.tx_errors.wrapping_add(1);
            }
            let index = *self.next;
            // The frame is in the buffer before the MAC may read it.
            fence(Ordering::Release);
            self.regs.write32(
                reg::desc(index),
                ((len as u32) << 16) | txd::RD | txd::CRC | txd::PAD | tx_wrap(index),
            );
            *self.next = (index + 1) % TX_BUFFERS;
            self.stats.tx_frames = self.stats.tx_frames.wrapping_add(1);
        } else {
            self.stats.tx_errors = self.stats.tx_errors.wrapping_add(1);
        }
        out
    }
}

/// The TX buffer of descriptor `index` within the transmit part of the packet RAM.
fn tx_buffer(tx_area: &mut [u8], index: usize) -> &mut [u8] {
    &mut tx_area[index * BUFFER_SIZE..(index + 1) * BUFFER_SIZE]
}

/// Reads the next TX descriptor: its word if the driver owns it (RD clear), `None` if the ring is full.
fn tx_free<R: Regs>(regs: &R, next: usize) -> Option<u32> {
    let word = regs.read32(reg::desc(next));
    if word & txd::RD != 0 {
        return None;
    }
    // The MAC has finished reading the buffer before we write it.
    fence(Ordering::Acquire);
    Some(word)
}

impl<B: Bus> phy::Device for Ethoc<B> {
    type RxToken<'a>
        = RxToken<'a, B::Regs>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, B::Regs>
    where
        Self: 'a;

    /// The next good received frame, with a token to answer it. Frames with an error status or a bad
    /// length are dropped on the way and their descriptors re-armed. Returns `None` while the TX ring
    /// is full too: the pair's transmit token must be able to send.
    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (regs, ram) = self.bus.split();
        let last = tx_free(regs, self.tx_next)?;
        let mut found = None;
        for _ in 0..RX_BUFFERS {
            let index = self.rx_next;
            let word = regs.read32(rx_desc(index));
            if word & rxd::E != 0 {
                break;
            }
            self.rx_next = (index + 1) % RX_BUFFERS;
            let len = (word >> 16) as usize;
            if word & rxd::ERRORS == 0 && (MIN_FRAME + FCS..=MTU + FCS).contains(&len) {
                found = Some((index, len - FCS));
                break;
            }
            self.stats.rx_dropped = self.stats.rx_dropped.wrapping_add(1);
            regs.write32(rx_desc(index), rx_armed(index));
        }
        let (index, len) = found?;
        // The MAC's writes to the buffer are complete before we read it.
        fence(Ordering::Acquire);
        self.stats.rx_frames = self.stats.rx_frames.wrapping_add(1);
        let (tx_area, rx_area) = ram.split_at_mut(TX_BUFFERS * BUFFER_SIZE);
        let start = index * BUFFER_SIZE;
        Some((
            RxToken {
                regs,
                frame: &rx_area[start..start + len],
                index,
            },
            TxToken {
                regs,
                buf: tx_buffer(tx_area, self.tx_next),
                last,
                next: &mut self.tx_next,
                stats: &mut self.stats,
            },
        ))
    }

    /// A token when the next TX descriptor is free; `None` while the ring is full (never blocks).
    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        let (regs, ram) = self.bus.split();
        let last = tx_free(regs, self.tx_next)?;
        Some(TxToken {
            regs,
            buf: tx_buffer(&mut ram[..TX_BUFFERS * BUFFER_SIZE], self.tx_next),
            last,
            next: &mut self.tx_next,
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        // No burst limit: smoltcp would clamp the advertised TCP window to burst * MSS (as found with
        // the LAN9118); the RX ring holds eight frames.
        caps
    }
}

#[cfg(test)]
mod tests;
