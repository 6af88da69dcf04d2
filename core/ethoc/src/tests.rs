//! Host tests against a fake MAC that models QEMU's `open_eth` (hw/net/opencores_eth.c): its
//! registers, its 128 descriptors and its packet RAM, receiving and sending as QEMU does. Two things
//! differ on purpose: the fake sends only when a test says so (QEMU sends as soon as a descriptor is
//! written; a real MAC some time later), and it refuses (panics on) what the driver must never do:
//! an unaligned access or one outside the window, a buffer pointer outside the packet RAM, a transmit
//! ring that runs past `TX_BD_NUM` without the wrap bit.
extern crate std;

use super::*;
use core::cell::RefCell;
use smoltcp::phy::{Device, RxToken as _, TxToken as _};
use std::boxed::Box;
use std::vec;
use std::vec::Vec;

const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x12, 0x34, 0x56];
const RAM_ADDR: u32 = XTFPGA_RAM as u32;
const BROADCAST: [u8; 6] = [0xFF; 6];

/// QEMU's register numbering: word index = offset / 4.
const NREGS: usize = (reg::END / 4) as usize;

struct State {
    regs: [u32; NREGS],
    desc: [u32; 2 * reg::DESC_COUNT],
    /// The MAC's own ring positions (absolute descriptor indices, as in QEMU).
    tx_desc: usize,
    rx_desc: usize,
    /// Every register and descriptor write, in order.
    writes: Vec<(u32, u32)>,
    link: bool,
}

struct FakeRegs(RefCell<State>);

struct Fake {
    regs: FakeRegs,
    ram: Box<[u8; RAM_SIZE]>,
    /// Frames the MAC lost for want of an empty RX descriptor.
    busy: u32,
    /// Status bits the MAC reports for the next frame it sends.
    tx_status: u32,
}

/// What the fake MAC did with an incoming frame.
#[derive(Debug, PartialEq, Eq)]
enum Rx {
    Stored,
    /// No empty descriptor: lost (`INT_SOURCE.BUSY`).
    Busy,
    /// Not for us (address filter).
    Filtered,
    /// Receiver off.
    Off,
}

impl State {
    fn reset(&mut self) {
        self.regs = [0; NREGS];
        self.regs[0] = 0xA000;
        self.regs[(reg::IPGT / 4) as usize] = 0x12;
        self.regs[(reg::IPGR1 / 4) as usize] = 0xC;
        self.regs[(reg::IPGR2 / 4) as usize] = 0x12;
        self.regs[(reg::PACKETLEN / 4) as usize] = 0x0040_0600;
        self.regs[(reg::COLLCONF / 4) as usize] = 0x000F_003F;
        self.regs[(reg::TX_BD_NUM / 4) as usize] = 0x40;
        self.regs[(reg::MIIMODER / 4) as usize] = 0x64;
        self.tx_desc = 0;
        self.rx_desc = 0x40;
        // Like QEMU, a reset leaves the descriptors alone.
    }

    fn reg(&self, offset: u32) -> u32 {
        self.regs[(offset / 4) as usize]
    }

    fn set(&mut self, offset: u32, value: u32) {
        self.regs[(offset / 4) as usize] = value;
    }

    fn bmsr(&self) -> u32 {
        // QEMU's reset value: 10/100 half and full duplex, preamble suppression, autonegotiation
        // complete and able; link bit from the link state.
        0x7868 | if self.link { mii::BMSR_LINK } else { 0 }
    }
}

impl Regs for FakeRegs {
    fn read32(&self, offset: u32) -> u32 {
        assert_eq!(offset % 4, 0, "unaligned read at {offset:#x}");
        let st = self.0.borrow();
        if offset < reg::END {
            st.reg(offset)
        } else if (reg::DESC..reg::DESC + 0x400).contains(&offset) {
            st.desc[((offset - reg::DESC) / 4) as usize]
        } else {
            panic!("read outside the MAC's window: {offset:#x}")
        }
    }

    fn write32(&self, offset: u32, value: u32) {
        assert_eq!(offset % 4, 0, "unaligned write at {offset:#x}");
        let mut st = self.0.borrow_mut();
        st.writes.push((offset, value));
        if (reg::DESC..reg::DESC + 0x400).contains(&offset) {
            st.desc[((offset - reg::DESC) / 4) as usize] = value;
            return;
        }
        assert!(
            offset < reg::END,
            "write outside the MAC's window: {offset:#x}"
        );
        match offset {
            reg::MODER => {
                let set = value & !st.reg(reg::MODER);
                if set & moder::RST != 0 {
                    st.reset();
                }
                st.set(reg::MODER, value);
                if set & moder::RXEN != 0 {
                    st.rx_desc = st.reg(reg::TX_BD_NUM) as usize;
                }
                if set & moder::TXEN != 0 {
                    st.tx_desc = 0;
                }
            }
            reg::INT_SOURCE => {
                let v = st.reg(reg::INT_SOURCE) & !value;
                st.set(reg::INT_SOURCE, v);
            }
            reg::TX_BD_NUM => {
                if value < 0x80 {
                    st.set(reg::TX_BD_NUM, value);
                }
            }
            reg::MIICOMMAND => {
                if value & mii::RSTAT != 0 {
                    let addr = st.reg(reg::MIIADDRESS);
                    let data = if addr & 0x1F == mii::PHY_ADDR {
                        match (addr >> 8) & 0x1F {
                            1 => st.bmsr(),
                            _ => 0,
                        }
                    } else {
                        0xFFFF
                    };
                    st.set(reg::MIIRX_DATA, data);
                    let fail = u32::from(!st.link);
                    st.set(reg::MIISTATUS, fail);
                }
            }
            reg::MIISTATUS => {}
            _ => st.set(offset, value),
        }
    }
}

impl Bus for Fake {
    type Regs = FakeRegs;

    fn split(&mut self) -> (&FakeRegs, &mut [u8; RAM_SIZE]) {
        (&self.regs, &mut self.ram)
    }

    fn ram_address(&self) -> u32 {
        RAM_ADDR
    }
}

/// The packet RAM range a DMA access of `len` bytes at bus address `ptr` covers; panics outside it.
fn ram_range(ptr: u32, len: usize) -> core::ops::Range<usize> {
    assert!(
        ptr >= RAM_ADDR,
        "buffer pointer {ptr:#x} below the packet RAM"
    );
    let start = (ptr - RAM_ADDR) as usize;
    assert!(
        start + len <= RAM_SIZE,
        "DMA of {len} bytes at {ptr:#x} past the packet RAM"
    );
    start..start + len
}

impl Fake {
    fn new() -> Fake {
        let mut st = State {
            regs: [0; NREGS],
            // Garbage, as after a warm restart: the driver must set up every descriptor it uses.
            desc: [0xFFFF_FFFF; 2 * reg::DESC_COUNT],
            tx_desc: 0,
            rx_desc: 0,
            writes: Vec::new(),
            link: true,
        };
        st.reset();
        Fake {
            regs: FakeRegs(RefCell::new(st)),
            ram: Box::new([0xEE; RAM_SIZE]),
            busy: 0,
            tx_status: 0,
        }
    }

    fn st(&mut self) -> &mut State {
        self.regs.0.get_mut()
    }

    /// A frame arrives from the wire, handled as QEMU's `open_eth_receive` does (HUGEN and RECSMALL
    /// off); `status` adds error bits a real MAC would report.
    fn deliver(&mut self, frame: &[u8], status: u32) -> Rx {
        let st = self.regs.0.get_mut();
        let moder = st.reg(reg::MODER);
        if moder & moder::RXEN == 0 || st.reg(reg::TX_BD_NUM) >= 0x80 {
            return Rx::Off;
        }
        let miss = if frame[..6] == BROADCAST {
            moder & moder::BRO != 0
        } else if frame[0] & 1 != 0 || moder & moder::IAM != 0 {
            // The fake's hash table matches nothing (the driver leaves HASH0/1 at 0).
            true
        } else {
            let a0 = st.reg(reg::MAC_ADDR0).to_be_bytes();
            let a1 = st.reg(reg::MAC_ADDR1).to_be_bytes();
            frame[..6] != [a1[2], a1[3], a0[0], a0[1], a0[2], a0[3]]
        };
        if miss && moder & moder::PRO == 0 {
            return Rx::Filtered;
        }
        let d = st.rx_desc;
        let mut word = st.desc[2 * d];
        if word & rxd::E == 0 {
            let v = st.reg(reg::INT_SOURCE) | int::BUSY;
            st.set(reg::INT_SOURCE, v);
            self.busy += 1;
            return Rx::Busy;
        }
        word &= !rxd::ERRORS;
        let packetlen = st.reg(reg::PACKETLEN);
        let (minfl, maxfl) = ((packetlen >> 16) as usize, (packetlen & 0xFFFF) as usize);
        let mut fcs = FCS;
        let mut copy = maxfl;
        if copy > frame.len() {
            copy = frame.len();
        } else {
            fcs = 0; // cut at MAXFL: no FCS
        }
        if miss {
            word |= rxd::M;
        }
        let ptr = st.desc[2 * d + 1];
        let mut stored = frame[..copy].to_vec();
        if moder & moder::PAD != 0 && copy < minfl {
            fcs = fcs.saturating_sub(minfl - copy);
            stored.resize(minfl, 0);
        }
        stored.resize(stored.len() + fcs, 0);
        let range = ram_range(ptr, stored.len());
        self.ram[range].copy_from_slice(&stored);
        word = (word & 0xFFFF) | ((stored.len() as u32) << 16);
        st.rx_desc = if word & rxd::WR != 0 || d == 0x7F {
            st.reg(reg::TX_BD_NUM) as usize
        } else {
            d + 1
        };
        word &= !rxd::E;
        word |= status;
        st.desc[2 * d] = word;
        if word & rxd::IRQ != 0 {
            let v = st.reg(reg::INT_SOURCE) | int::RXB;
            st.set(reg::INT_SOURCE, v);
        }
        Rx::Stored
    }

    /// The MAC sends the frame of its current TX descriptor if that is ready, as QEMU's
    /// `open_eth_check_start_xmit`/`open_eth_start_xmit` do.
    fn send_one(&mut self) -> Option<Vec<u8>> {
        let status = self.tx_status;
        let st = self.regs.0.get_mut();
        let num = st.reg(reg::TX_BD_NUM) as usize;
        let d = st.tx_desc;
        let word = st.desc[2 * d];
        let len = (word >> 16) as usize;
        if st.reg(reg::MODER) & moder::TXEN == 0 || num == 0 || word & txd::RD == 0 || len <= 4 {
            return None;
        }
        let packetlen = st.reg(reg::PACKETLEN);
        let (minfl, maxfl) = ((packetlen >> 16) as usize, (packetlen & 0xFFFF) as usize);
        let mut tx_len = len;
        if word & txd::PAD != 0 && tx_len < minfl {
            tx_len = minfl;
        }
        tx_len = tx_len.min(maxfl);
        let range = ram_range(st.desc[2 * d + 1], len.min(tx_len));
        let mut frame = self.ram[range].to_vec();
        frame.resize(tx_len, 0);
        st.tx_desc = if word & txd::WR != 0 {
            0
        } else {
            // QEMU wraps here anyway; a ring without its wrap bit is a driver bug.
            assert!(d + 1 < num, "TX ring ran past TX_BD_NUM without WR");
            d + 1
        };
        st.desc[2 * d] = (word
            & !(txd::RD | txd::UR | txd::RTRY | txd::RL | txd::LC | txd::DF | txd::CS))
            | status;
        if word & txd::IRQ != 0 {
            let v = st.reg(reg::INT_SOURCE) | int::TXB;
            st.set(reg::INT_SOURCE, v);
        }
        self.tx_status = 0;
        Some(frame)
    }

    fn send_all(&mut self) -> Vec<Vec<u8>> {
        core::iter::from_fn(|| self.send_one()).collect()
    }

    fn desc_word(&mut self, index: usize) -> u32 {
        self.st().desc[2 * index]
    }
}

fn up() -> Ethoc<Fake> {
    let mut nic = Ethoc::new(Fake::new(), MAC);
    nic.bus().st().writes.clear();
    nic
}

fn now() -> Instant {
    Instant::from_millis(0)
}

/// A frame to us (or to `dst`) whose payload bytes depend on `seed`.
fn frame_to(dst: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect();
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[0x52, 0x55, 0x0A, 0x00, 0x02, 0x02]);
    f
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    frame_to(MAC, len, seed)
}

/// Receives one frame and returns it (`None` if there is none).
fn recv(nic: &mut Ethoc<Fake>) -> Option<Vec<u8>> {
    let (rx, _tx) = nic.receive(now())?;
    Some(rx.consume(|f| f.to_vec()))
}

/// Queues one frame for transmission; false if no token.
fn send(nic: &mut Ethoc<Fake>, data: &[u8]) -> bool {
    match nic.transmit(now()) {
        Some(tok) => {
            tok.consume(data.len(), |buf| buf.copy_from_slice(data));
            true
        }
        None => false,
    }
}

#[test]
fn init_resets_then_programs_address_lengths_rings_and_moder() {
    let mut nic = Ethoc::new(Fake::new(), [0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    let f = nic.bus();
    let writes = f.st().writes.clone();
    let pos = |w: (u32, u32)| writes.iter().position(|&x| x == w);
    let rst = pos((reg::MODER, moder::RST)).expect("MODER.RST written");
    assert!(
        writes[..rst].iter().all(|&(o, _)| o == reg::MODER),
        "reset comes first"
    );
    let want = moder::RXEN | moder::TXEN | moder::PAD | moder::CRCEN;
    assert_eq!(*writes.last().unwrap(), (reg::MODER, want), "enabled last");
    let st = f.st();
    assert_eq!(st.reg(reg::MODER), want);
    assert_eq!(want & (moder::BRO | moder::PRO | moder::RST), 0);
    assert_eq!(st.reg(reg::MAC_ADDR0), 0x2233_4455);
    assert_eq!(st.reg(reg::MAC_ADDR1), 0x0211);
    assert_eq!(st.reg(reg::TX_BD_NUM), TX_BUFFERS as u32);
    assert!(
        pos((reg::TX_BD_NUM, TX_BUFFERS as u32)).unwrap() < writes.len() - 1,
        "TX_BD_NUM before RXEN (the MAC starts receiving at descriptor TX_BD_NUM)"
    );
    assert_eq!(st.rx_desc, TX_BUFFERS, "the MAC's receive position");
    assert_eq!(st.reg(reg::INT_MASK), 0, "interrupts masked");
    assert_eq!(st.reg(reg::PACKETLEN), (64 << 16) | BUFFER_SIZE as u32);
    assert!(
        pos((reg::PACKETLEN, (64 << 16) | BUFFER_SIZE as u32)).is_some(),
        "MAXFL = buffer size written, not left to the reset value"
    );
    // Descriptors: TX idle with WR on the last, RX empty with IRQ and WR on the last; buffer i at
    // i * 1536 in the packet RAM.
    for i in 0..TX_BUFFERS + RX_BUFFERS {
        let (w0, w1) = (st.desc[2 * i], st.desc[2 * i + 1]);
        assert_eq!(
            w1,
            RAM_ADDR + (i * BUFFER_SIZE) as u32,
            "buffer of descriptor {i}"
        );
        let want = match i {
            i if i < TX_BUFFERS - 1 => 0,
            i if i == TX_BUFFERS - 1 => txd::WR,
            i if i < TX_BUFFERS + RX_BUFFERS - 1 => rxd::E | rxd::IRQ,
            _ => rxd::E | rxd::IRQ | rxd::WR,
        };
        assert_eq!(w0, want, "descriptor {i}");
    }
    assert_eq!(
        (TX_BUFFERS + RX_BUFFERS) * BUFFER_SIZE,
        15_360,
        "fits the 16 KB packet RAM"
    );
    assert_eq!(nic.mac_address(), [0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    assert_eq!(nic.link_up(), Ok(true));
    nic.bus().st().link = false;
    assert_eq!(nic.link_up(), Ok(false));
}

#[test]
fn init_resets_a_running_mac() {
    // A warm restart: the previous run left the MAC receiving at descriptor 5 with another TX_BD_NUM.
    let mut fake = Fake::new();
    fake.regs.write32(reg::TX_BD_NUM, 0x10);
    fake.regs.write32(reg::MODER, moder::RXEN | moder::TXEN);
    fake.st().rx_desc = 0x15;
    fake.st().tx_desc = 3;
    let mut nic = Ethoc::new(fake, MAC);
    let st = nic.bus().st();
    assert_eq!((st.tx_desc, st.rx_desc), (0, TX_BUFFERS));
    let data = frame(100, 1);
    assert_eq!(nic.bus().deliver(&data, 0), Rx::Stored);
    assert_eq!(recv(&mut nic), Some(data));
}

#[test]
fn broadcast_and_own_unicast_are_received_other_unicast_is_filtered() {
    let mut nic = up();
    let arp = frame_to(BROADCAST, 60, 9);
    assert_eq!(nic.bus().deliver(&arp, 0), Rx::Stored, "broadcast (ARP)");
    let other = frame_to([0x02, 0, 0, 0x12, 0x34, 0x57], 60, 3);
    assert_eq!(nic.bus().deliver(&other, 0), Rx::Filtered);
    let mine = frame(60, 4);
    assert_eq!(nic.bus().deliver(&mine, 0), Rx::Stored);
    assert_eq!(recv(&mut nic), Some(arp));
    assert_eq!(recv(&mut nic), Some(mine));
    assert_eq!(recv(&mut nic), None);
}

#[test]
fn back_to_back_frames_are_delivered_in_order_without_the_fcs() {
    let mut nic = up();
    let lens = [60, 61, 62, 63, 64, 1000, 1513, MTU];
    let frames: Vec<Vec<u8>> = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| frame(len, i as u8))
        .collect();
    for f in &frames {
        assert_eq!(nic.bus().deliver(f, 0), Rx::Stored);
    }
    // The length the MAC wrote includes the FCS.
    assert_eq!(nic.bus().desc_word(TX_BUFFERS) >> 16, 64);
    for (f, &len) in frames.iter().zip(&lens) {
        assert_eq!(recv(&mut nic).as_ref(), Some(f), "frame of {len}");
    }
    assert_eq!(recv(&mut nic), None);
    assert_eq!(nic.stats().rx_frames, lens.len() as u32);
    assert_eq!(nic.stats().rx_dropped, 0);
}

#[test]
fn a_short_frame_comes_padded_to_60_bytes() {
    // QEMU pads to MINFL (64, FCS included) when MODER.PAD is set: a 42-byte ARP reply arrives as 60.
    let mut nic = up();
    let arp = frame(42, 5);
    nic.bus().deliver(&arp, 0);
    let got = recv(&mut nic).unwrap();
    assert_eq!(got.len(), 60);
    assert_eq!(&got[..42], &arp[..]);
    assert!(got[42..].iter().all(|&b| b == 0));
}

#[test]
fn rx_ring_wraps_on_wr_and_keeps_order_across_many_laps() {
    let mut nic = up();
    let mut seed = 0u8;
    let mut expect = Vec::new();
    // Uneven batches so that the wrap falls in every position of a batch.
    for batch in [3, 5, 1, 8, 7, 2, 8, 6] {
        for _ in 0..batch {
            let f = frame(60 + seed as usize, seed);
            assert_eq!(nic.bus().deliver(&f, 0), Rx::Stored, "frame {seed}");
            expect.push(f);
            seed += 1;
        }
        for f in expect.drain(..) {
            assert_eq!(recv(&mut nic), Some(f));
        }
        assert_eq!(recv(&mut nic), None);
    }
    assert!(seed as usize > 4 * RX_BUFFERS);
    assert_eq!(nic.stats().rx_frames, seed as u32);
    // The MAC's position went round with the driver's.
    let pos = nic.bus().st().rx_desc;
    assert_eq!(pos, TX_BUFFERS + seed as usize % RX_BUFFERS);
}

#[test]
fn a_full_rx_ring_loses_the_extra_frame_and_recovers() {
    let mut nic = up();
    let frames: Vec<Vec<u8>> = (0..RX_BUFFERS as u8).map(|i| frame(80, i)).collect();
    for f in &frames {
        assert_eq!(nic.bus().deliver(f, 0), Rx::Stored);
    }
    assert_eq!(nic.bus().deliver(&frame(80, 99), 0), Rx::Busy);
    for f in &frames {
        assert_eq!(recv(&mut nic).as_ref(), Some(f));
    }
    let next = frame(90, 100);
    assert_eq!(nic.bus().deliver(&next, 0), Rx::Stored);
    assert_eq!(recv(&mut nic), Some(next));
    assert_eq!(nic.bus().busy, 1);
}

#[test]
fn tx_ring_wraps_on_wr_and_keeps_order() {
    let mut nic = up();
    let mut sent = Vec::new();
    let mut expect = Vec::new();
    for i in 0..(3 * TX_BUFFERS + 1) as u8 {
        let data = frame_to(BROADCAST, 100 + i as usize, i);
        assert!(send(&mut nic, &data), "token {i}");
        let index = i as usize % TX_BUFFERS;
        let word = nic.bus().desc_word(index);
        let wrap = if index == TX_BUFFERS - 1 { txd::WR } else { 0 };
        assert_eq!(
            word,
            ((data.len() as u32) << 16) | txd::RD | txd::CRC | txd::PAD | wrap,
            "descriptor of frame {i}"
        );
        expect.push(data);
        sent.extend(nic.bus().send_all());
    }
    assert_eq!(sent, expect);
    assert_eq!(nic.stats().tx_frames, (3 * TX_BUFFERS + 1) as u32);
    assert_eq!(nic.stats().tx_errors, 0);
}

#[test]
fn short_frames_go_out_padded_by_the_mac() {
    let mut nic = up();
    let arp = frame_to(BROADCAST, 42, 1);
    assert!(send(&mut nic, &arp));
    let out = nic.bus().send_all();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 64, "PAD to MINFL");
    assert_eq!(&out[0][..42], &arp[..]);
}

#[test]
fn a_full_tx_ring_gives_no_token_until_the_mac_sends_one() {
    let mut nic = up();
    for i in 0..TX_BUFFERS as u8 {
        assert!(send(&mut nic, &frame_to(BROADCAST, 64, i)));
    }
    assert!(nic.transmit(now()).is_none(), "ring full");
    assert!(nic.transmit(now()).is_none(), "still full, no panic");
    // A received frame waits too: its pair's TX token could not send.
    let data = frame(70, 7);
    nic.bus().deliver(&data, 0);
    assert!(nic.receive(now()).is_none());
    let one = nic.bus().send_one().expect("the MAC sends the first");
    assert_eq!(one, frame_to(BROADCAST, 64, 0));
    assert!(nic.transmit(now()).is_some(), "a token again");
    // The pair's TX token sends into the freed descriptor.
    let (rx, tx) = nic.receive(now()).unwrap();
    let reply = rx.consume(|f| {
        assert_eq!(f, &data[..]);
        let mut r = f.to_vec();
        r[..6].copy_from_slice(&BROADCAST);
        r
    });
    tx.consume(reply.len(), |buf| buf.copy_from_slice(&reply));
    assert!(nic.transmit(now()).is_none(), "full again");
    let out = nic.bus().send_all();
    assert_eq!(out, vec![frame_to(BROADCAST, 64, 1), reply]);
    assert!(nic.transmit(now()).is_some());
}

#[test]
fn an_answer_through_the_receive_pair_goes_out_in_ring_order() {
    let mut nic = up();
    let first = frame_to(BROADCAST, 64, 1);
    assert!(send(&mut nic, &first));
    assert_eq!(nic.bus().send_all(), vec![first]);
    for i in 0..3 * TX_BUFFERS as u8 {
        let ping = frame(80 + i as usize, i);
        nic.bus().deliver(&ping, 0);
        let (rx, tx) = nic.receive(now()).unwrap();
        let answer = rx.consume(|f| {
            let mut a: Vec<u8> = f.iter().rev().copied().collect();
            a[..6].copy_from_slice(&BROADCAST);
            a
        });
        tx.consume(answer.len(), |buf| buf.copy_from_slice(&answer));
        assert_eq!(nic.bus().send_all(), vec![answer], "answer {i}");
    }
    assert_eq!(nic.stats().tx_frames, 1 + 3 * TX_BUFFERS as u32);
}

#[test]
fn oversize_frames_are_dropped_and_the_ring_keeps_working() {
    let mut nic = up();
    // 2000 bytes: QEMU cuts it at MAXFL (1536, the buffer size) without an FCS and no status bit.
    assert_eq!(nic.bus().deliver(&frame(2000, 1), 0), Rx::Stored);
    assert_eq!(nic.bus().desc_word(TX_BUFFERS) >> 16, BUFFER_SIZE as u32);
    // One byte over the MTU: length 1519 with the FCS.
    assert_eq!(nic.bus().deliver(&frame(MTU + 1, 2), 0), Rx::Stored);
    // A real MAC's too-long report.
    assert_eq!(nic.bus().deliver(&frame(1200, 3), rxd::TL), Rx::Stored);
    let good = frame(MTU, 4);
    nic.bus().deliver(&good, 0);
    assert_eq!(recv(&mut nic), Some(good));
    assert_eq!(nic.stats().rx_dropped, 3);
    // The dropped frames' descriptors are the MAC's again: a full lap of frames fits.
    for lap in 0..2 {
        let frames: Vec<Vec<u8>> = (0..RX_BUFFERS as u8)
            .map(|i| frame(200, i + lap * 10))
            .collect();
        for f in &frames {
            assert_eq!(nic.bus().deliver(f, 0), Rx::Stored);
        }
        for f in &frames {
            assert_eq!(recv(&mut nic).as_ref(), Some(f));
        }
    }
    // The 2000-byte frame did not spill into the next buffer: the MAC wrote 1536 bytes at most.
    let f = nic.bus();
    assert_eq!(f.st().reg(reg::PACKETLEN) & 0xFFFF, BUFFER_SIZE as u32);
}

#[test]
fn frames_with_an_error_status_are_dropped_and_their_descriptors_rearmed() {
    let mut nic = up();
    let bits = [
        rxd::CF,
        rxd::M,
        rxd::OR,
        rxd::IS,
        rxd::DN,
        rxd::TL,
        rxd::SF,
        rxd::CRC,
        rxd::LC,
    ];
    assert!(
        bits.len() > RX_BUFFERS,
        "more than a lap: only re-armed descriptors take them all"
    );
    for (i, &bit) in bits.iter().enumerate() {
        let slot = TX_BUFFERS + i % RX_BUFFERS;
        assert_eq!(
            nic.bus().deliver(&frame(100, i as u8), bit),
            Rx::Stored,
            "bit {bit:#x}"
        );
        assert!(nic.receive(now()).is_none(), "bit {bit:#x} dropped");
        let word = nic.bus().desc_word(slot);
        assert_eq!(word, rx_armed(i % RX_BUFFERS), "descriptor {slot} re-armed");
    }
    assert_eq!(nic.stats().rx_dropped, bits.len() as u32);
    assert_eq!(nic.stats().rx_frames, 0);
    // Error frames between good ones: only the good ones arrive.
    let (a, b) = (frame(64, 50), frame(65, 51));
    nic.bus().deliver(&a, 0);
    nic.bus().deliver(&frame(66, 52), rxd::CRC);
    nic.bus().deliver(&frame(66, 53), rxd::OR | rxd::DN);
    nic.bus().deliver(&b, 0);
    assert_eq!(recv(&mut nic), Some(a));
    assert_eq!(recv(&mut nic), Some(b));
    assert_eq!(recv(&mut nic), None);
    assert_eq!(nic.bus().busy, 0);
}

#[test]
fn runts_are_dropped() {
    let mut nic = up();
    // With MODER.PAD the MAC pads everything to 64; without a minimum length, a 10-byte frame
    // would come with length 14, less than a header plus FCS.
    nic.bus().regs.write32(reg::PACKETLEN, BUFFER_SIZE as u32);
    nic.bus().deliver(&frame(13, 1), 0);
    let good = frame(14, 2);
    nic.bus().deliver(&good, 0);
    assert_eq!(recv(&mut nic), Some(good));
    assert_eq!(nic.stats().rx_dropped, 1);
}

#[test]
fn a_descriptor_goes_back_to_the_mac_only_when_its_token_is_gone() {
    let mut nic = up();
    nic.bus().deliver(&frame(60, 1), 0);
    nic.bus().deliver(&frame(60, 2), 0);
    {
        let (rx, _tx) = nic.receive(now()).unwrap();
        // While the token lives, the buffer is the driver's (E clear).
        rx.consume(|f| assert_eq!(f[6 + 6 + 1], frame(60, 1)[13]));
    }
    assert_eq!(
        nic.bus().desc_word(TX_BUFFERS),
        rx_armed(0),
        "re-armed after consume"
    );
    // Dropped unconsumed (smoltcp may do so): re-armed as well, the frame is gone.
    let tokens = nic.receive(now()).unwrap();
    drop(tokens);
    assert_eq!(nic.bus().desc_word(TX_BUFFERS + 1), rx_armed(1));
    assert_eq!(recv(&mut nic), None);
    let held = frame(61, 3);
    nic.bus().deliver(&held, 0);
    let (rx, _tx) = nic.receive(now()).unwrap();
    // The token borrows the driver, so the fake cannot be reached here; check the word after.
    let got = rx.consume(|f| f.to_vec());
    assert_eq!(got, held);
    assert_eq!(nic.bus().desc_word(TX_BUFFERS + 2), rx_armed(2));
}

#[test]
fn tx_errors_reported_by_the_mac_and_bad_lengths_are_counted() {
    let mut nic = up();
    nic.bus().tx_status = txd::UR;
    assert!(send(&mut nic, &frame(60, 1)));
    assert_eq!(nic.bus().send_all().len(), 1);
    assert!(send(&mut nic, &frame(60, 2)));
    nic.bus().tx_status = txd::DF | (3 << 4); // deferred, 3 retries: not errors
    assert_eq!(nic.bus().send_all().len(), 1);
    assert_eq!(
        nic.stats().tx_errors,
        0,
        "seen when the descriptor is reused"
    );
    assert!(send(&mut nic, &frame(60, 3)));
    assert_eq!(nic.stats().tx_errors, 1, "descriptor 0's underrun");
    assert!(send(&mut nic, &frame(60, 4)));
    assert_eq!(nic.stats().tx_errors, 1, "descriptor 1 was fine");
    nic.bus().send_all();
    // A token asked for more than the MTU, or for less than a header: built, not sent.
    let tok = nic.transmit(now()).unwrap();
    assert_eq!(tok.consume(2000, |buf| buf.len()), MTU);
    let tok = nic.transmit(now()).unwrap();
    assert_eq!(tok.consume(13, |buf| buf.len()), 13);
    assert_eq!(nic.bus().send_all(), Vec::<Vec<u8>>::new());
    assert_eq!(nic.stats().tx_errors, 3);
    assert_eq!(nic.stats().tx_frames, 4);
    // The ring position did not move: the next frame goes to the next descriptor in turn.
    let data = frame(64, 5);
    assert!(send(&mut nic, &data));
    assert_eq!(nic.bus().send_all(), vec![data]);
}

#[test]
fn capabilities_are_ethernet_with_mtu_1514() {
    let nic = up();
    let caps = nic.capabilities();
    assert_eq!(caps.medium, Medium::Ethernet);
    assert_eq!(caps.max_transmission_unit, 1514);
    assert_eq!(
        caps.max_burst_size, None,
        "a burst limit would clamp the TCP window"
    );
}

#[test]
fn smoltcp_resolves_the_server_over_the_fake_and_sends_a_syn() {
    use smoltcp::iface::{Config, Interface, SocketSet};
    use smoltcp::socket::tcp;
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

    let mut nic = up();
    let mut iface = Interface::new(
        Config::new(HardwareAddress::Ethernet(EthernetAddress(MAC))),
        &mut nic,
        now(),
    );
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(10, 0, 2, 15), 24))
            .unwrap();
    });
    let gw = Ipv4Address::new(10, 0, 2, 2);
    iface.routes_mut().add_default_ipv4_route(gw).unwrap();
    let mut sockets = SocketSet::new(vec![]);
    let socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 1024]),
        tcp::SocketBuffer::new(vec![0; 1024]),
    );
    let handle = sockets.add(socket);
    let server = IpAddress::v4(10, 0, 2, 100);
    sockets
        .get_mut::<tcp::Socket>(handle)
        .connect(iface.context(), (server, 8266), 49152)
        .unwrap();

    iface.poll(now(), &mut nic, &mut sockets);
    let out = nic.bus().send_all();
    assert_eq!(out.len(), 1, "one ARP request");
    let arp = &out[0];
    assert_eq!(arp.len(), 64, "42 bytes, padded by the MAC");
    assert_eq!(&arp[..6], &BROADCAST, "to broadcast");
    assert_eq!(&arp[6..12], &MAC, "from us");
    assert_eq!(&arp[12..14], &[0x08, 0x06], "ARP");
    assert_eq!(&arp[20..22], &[0, 1], "request");
    assert_eq!(&arp[28..32], &[10, 0, 2, 15], "sender IP");
    assert_eq!(
        &arp[38..42],
        &[10, 0, 2, 100],
        "who has the server (on-link)"
    );

    // QEMU's slirp answers for its addresses; the SYN then goes to the MAC address in the reply.
    let server_mac = [0x52, 0x55, 0x0A, 0x00, 0x02, 0x64];
    let mut reply = Vec::new();
    reply.extend_from_slice(&MAC);
    reply.extend_from_slice(&server_mac);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    reply.extend_from_slice(&server_mac);
    reply.extend_from_slice(&[10, 0, 2, 100]);
    reply.extend_from_slice(&MAC);
    reply.extend_from_slice(&[10, 0, 2, 15]);
    assert_eq!(nic.bus().deliver(&reply, 0), Rx::Stored);
    iface.poll(Instant::from_millis(1), &mut nic, &mut sockets);
    let out = nic.bus().send_all();
    assert_eq!(out.len(), 1, "one SYN");
    let syn = &out[0];
    assert_eq!(&syn[..6], &server_mac);
    assert_eq!(&syn[12..14], &[0x08, 0x00], "IPv4");
    assert_eq!(syn[14 + 9], 6, "TCP");
    assert_eq!(&syn[14 + 16..14 + 20], &[10, 0, 2, 100]);
    assert_eq!(&syn[34 + 2..34 + 4], &8266u16.to_be_bytes());
    assert_eq!(syn[34 + 13] & 0x12, 0x02, "SYN, no ACK");
    assert_eq!(nic.stats().rx_frames, 1);
    assert_eq!(nic.stats().tx_frames, 2);
}
