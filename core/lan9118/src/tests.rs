//! Host tests against a fake register file that models the FIFOs the way QEMU's LAN9118 does.
extern crate std;

use super::*;
use smoltcp::phy::{Device, RxToken as _, TxToken as _};
use std::collections::{BTreeMap, VecDeque};
use std::vec::Vec;

/// A fake LAN9118: FIFOs, MAC CSRs, a log of register writes. Like QEMU, it refuses (panics on) any
/// register the driver is not supposed to touch.
#[derive(Default)]
struct Fake {
    rx_status: VecDeque<u32>,
    rx_data: VecDeque<u32>,
    tx_data: Vec<u32>,
    tx_status: VecDeque<u32>,
    mac: BTreeMap<u32, u32>,
    mac_data: u32,
    mac_cmd: u32,
    writes: Vec<(u32, u32)>,
    /// Reads of an empty RX data FIFO (an underflow: the driver read past a frame).
    underflows: u32,
    tx_free: u32,
    srst_reads_busy: u32,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            tx_free: 4608,
            ..Fake::default()
        }
    }

    /// Queues a received frame as QEMU does: payload words little-endian, then the FCS word(s), and
    /// a status word carrying length + 4 and `flags`.
    fn push_rx(&mut self, frame: &[u8], flags: u32) {
        let mut bytes = frame.to_vec();
        bytes.extend_from_slice(&[0xC1, 0xC2, 0xC3, 0xC4]);
        for c in bytes.chunks(4) {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            self.rx_data.push_back(u32::from_le_bytes(w));
        }
        self.rx_status
            .push_back((((frame.len() + 4) as u32) << 16) | flags);
    }
}

impl Regs for Fake {
    fn read(&mut self, offset: u32) -> u32 {
        match offset {
            reg::RX_DATA_FIFO => self.rx_data.pop_front().unwrap_or_else(|| {
                self.underflows += 1;
                0
            }),
            reg::RX_STATUS_FIFO => self.rx_status.pop_front().unwrap_or(0),
            reg::TX_STATUS_FIFO => self.tx_status.pop_front().unwrap_or(0),
            reg::ID_REV => 0x0118_0001,
            reg::BYTE_TEST => 0x8765_4321,
            reg::HW_CFG => {
                if self.srst_reads_busy > 0 {
                    self.srst_reads_busy -= 1;
                    0x0005_0005
                } else {
                    0x0005_0004
                }
            }
            reg::PMT_CTRL => 1,
            reg::RX_FIFO_INF => {
                ((self.rx_status.len() as u32) << 16) | ((self.rx_data.len() as u32 * 4) & 0xFFFF)
            }
            reg::TX_FIFO_INF => ((self.tx_status.len() as u32) << 16) | self.tx_free,
            reg::MAC_CSR_CMD => self.mac_cmd,
            reg::MAC_CSR_DATA => self.mac_data,
            reg::IRQ_CFG | reg::INT_STS | reg::INT_EN | reg::RX_CFG | reg::TX_CFG => 0,
            _ => panic!("read of a register QEMU does not implement: {offset:#x}"),
        }
    }

    fn write(&mut self, offset: u32, value: u32) {
        assert!(
            reg::ALL.contains(&offset) && offset != reg::ID_REV && offset != reg::BYTE_TEST,
            "write to {offset:#x}"
        );
        self.writes.push((offset, value));
        match offset {
            reg::TX_DATA_FIFO => self.tx_data.push(value),
            reg::HW_CFG if value & 1 != 0 => self.srst_reads_busy = 3,
            reg::MAC_CSR_DATA => self.mac_data = value,
            reg::MAC_CSR_CMD => {
                let index = value & 0xFF;
                assert!(
                    [
                        mac::MAC_CR,
                        mac::ADDRH,
                        mac::ADDRL,
                        mac::MII_ACC,
                        mac::MII_DATA
                    ]
                    .contains(&index),
                    "MAC register {index} is not implemented by QEMU"
                );
                if value & (1 << 30) != 0 {
                    self.mac_data = match index {
                        mac::MII_DATA => 0x782D,
                        mac::MII_ACC => 0,
                        _ => self.mac.get(&index).copied().unwrap_or(0),
                    };
                } else {
                    self.mac.insert(index, self.mac_data);
                }
                // Busy clears at once, as in QEMU.
                self.mac_cmd = value & !(1 << 31);
            }
            _ => {}
        }
    }
}

fn up() -> Lan9118<Fake> {
    let mut nic = Lan9118::new(Fake::new());
    nic.init([0x02, 0x00, 0x00, 0x12, 0x34, 0x56]).unwrap();
    nic.regs().writes.clear();
    nic
}

fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

fn now() -> Instant {
    Instant::from_millis(0)
}

#[test]
fn init_resets_programs_the_address_and_enables_rx_and_tx() {
    let mut nic = Lan9118::new(Fake::new());
    nic.init([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]).unwrap();
    let f = nic.regs();
    assert_eq!(f.writes[0], (reg::HW_CFG, 1), "soft reset first");
    assert_eq!(f.srst_reads_busy, 0, "waited for the reset to finish");
    assert_eq!(f.mac[&mac::ADDRL], 0x3322_1102);
    assert_eq!(f.mac[&mac::ADDRH], 0x5544);
    assert_eq!(
        f.mac[&mac::MAC_CR],
        mac::CR_RXEN | mac::CR_TXEN | mac::CR_FDPX
    );
    assert!(f.writes.contains(&(reg::TX_CFG, 1 << 1)), "TX_ON");
    assert!(f.writes.contains(&(reg::INT_EN, 0)), "interrupts off");
    assert!(nic.link_up().unwrap());
    assert_eq!(nic.mac_address(), Ok([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]));
}

#[test]
fn init_refuses_another_chip() {
    struct Other;
    impl Regs for Other {
        fn read(&mut self, _: u32) -> u32 {
            0x9220_0000
        }
        fn write(&mut self, _: u32, _: u32) {
            panic!("no write before the chip is recognised");
        }
    }
    assert_eq!(
        Lan9118::new(Other).init([0; 6]),
        Err(Error::NotFound(0x9220_0000))
    );
}

#[test]
fn transmit_writes_command_words_then_little_endian_padded_data() {
    let mut nic = up();
    let data = frame(61);
    let tok = nic.transmit(now()).unwrap();
    tok.consume(61, |buf| buf.copy_from_slice(&data));
    let tx = &nic.regs().tx_data;
    assert_eq!(tx.len(), 2 + 16);
    assert_eq!(tx[0], TX_CMD_A_FIRST | TX_CMD_A_LAST | 61, "command A");
    assert_eq!(tx[1] & 0xFFFF, 61, "command B: packet length");
    assert_eq!(tx[1] >> 16, 1, "command B: tag");
    assert_eq!(
        tx[2],
        u32::from_le_bytes([data[0], data[1], data[2], data[3]])
    );
    assert_eq!(tx[17], u32::from(data[60]), "last word zero-padded");
    assert_eq!(nic.stats().tx_frames, 1);
    // A second frame gets the next tag.
    nic.send(&frame(64)).unwrap();
    let tx = &nic.regs().tx_data;
    assert_eq!(tx[18 + 1] >> 16, 2);
    assert_eq!(tx.len(), 18 + 2 + 16);
}

#[test]
fn oversize_and_runt_frames_are_refused() {
    let mut nic = up();
    assert_eq!(nic.send(&frame(MTU + 1)), Err(Error::BadLength));
    assert_eq!(nic.send(&frame(13)), Err(Error::BadLength));
    nic.send(&frame(MTU)).unwrap();
    assert_eq!(nic.regs().tx_data.len(), 2 + MTU.div_ceil(4));
    // A token asked for more than the MTU builds into a truncated buffer and sends nothing.
    nic.regs().tx_data.clear();
    let tok = nic.transmit(now()).unwrap();
    let seen = tok.consume(2000, |buf| buf.len());
    assert_eq!(seen, MTU);
    assert!(nic.regs().tx_data.is_empty());
    assert_eq!(nic.stats().tx_errors, 1);
}

#[test]
fn transmit_waits_for_fifo_room_and_reaps_statuses() {
    let mut nic = up();
    nic.regs().tx_free = 100;
    assert!(nic.transmit(now()).is_none());
    assert_eq!(nic.send(&frame(60)), Err(Error::Busy));
    nic.regs().tx_free = 4608;
    nic.regs().tx_status.extend([0x0001_0000, 0x0002_8000]);
    assert!(nic.transmit(now()).is_some());
    assert!(nic.regs().tx_status.is_empty());
    assert_eq!(nic.stats().tx_errors, 1);
}

#[test]
fn receive_strips_fcs_and_rounds_to_words() {
    let mut nic = up();
    for len in [14, 60, 61, 62, 63, 64, MTU] {
        let data = frame(len);
        nic.regs().push_rx(&data, 0);
        let (rx, _tx) = nic.receive(now()).unwrap();
        rx.consume(|got| assert_eq!(got, &data[..], "len {len}"));
        assert!(nic.regs().rx_data.is_empty(), "all words of len {len} read");
    }
    assert!(nic.receive(now()).is_none());
    assert_eq!(nic.regs().underflows, 0);
    assert_eq!(nic.stats().rx_frames, 7);
}

#[test]
fn error_and_filtered_frames_are_dropped_and_the_next_one_delivered() {
    let mut nic = up();
    nic.regs().push_rx(&frame(100), 1 << 15 | 1 << 1); // CRC error
    nic.regs().push_rx(&frame(70), 1 << 30); // filter failed
    nic.regs().push_rx(&frame(10), 0); // runt
    let good = frame(42);
    nic.regs().push_rx(&good, 0);
    let (rx, _) = nic.receive(now()).unwrap();
    rx.consume(|got| assert_eq!(got, &good[..]));
    assert_eq!(nic.stats().rx_dropped, 3);
    assert!(nic.regs().rx_data.is_empty());
    assert_eq!(nic.regs().underflows, 0);
}

#[test]
fn a_2000_byte_frame_is_drained_without_overflowing() {
    let mut nic = up();
    nic.regs().push_rx(&frame(2000), 0);
    let good = frame(60);
    nic.regs().push_rx(&good, 0);
    let (rx, _) = nic.receive(now()).unwrap();
    rx.consume(|got| assert_eq!(got, &good[..]));
    assert_eq!(nic.stats().rx_dropped, 1);
    assert_eq!(nic.regs().underflows, 0);
}

#[test]
fn a_status_claiming_the_largest_length_reads_only_that_many_words() {
    let mut nic = up();
    // Status says 0x3FFF bytes, the data FIFO holds fewer: the driver reads 4096 words (underflowing
    // the fake, harmless) and never writes past its buffer.
    nic.regs().rx_status.push_back(0x3FFF << 16);
    assert!(nic.receive(now()).is_none());
    assert_eq!(nic.regs().underflows, 0x3FFF_u32.div_ceil(4));
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
fn frame_buffers_are_held_only_between_the_first_frame_and_release() {
    let mut nic = up();
    assert!(nic.frames.is_none(), "none before the network is used");
    let f = frame(60);
    nic.regs.push_rx(&f, 0);
    let (rx, _) = nic.receive(now()).expect("a frame");
    assert_eq!(rx.consume(|b| b.to_vec()), f);
    assert!(nic.frames.is_some());
    nic.release();
    assert!(nic.frames.is_none(), "given back");
    // The next frame takes them again and arrives whole.
    let g = frame(100);
    nic.regs.push_rx(&g, 0);
    let (rx, _) = nic.receive(now()).expect("a frame after release");
    assert_eq!(rx.consume(|b| b.to_vec()), g);
    let tx = nic.transmit(now()).expect("room");
    tx.consume(64, |b| b.fill(7));
    assert!(nic.frames.is_some());
}

/// The bytes a frame of `len` puts in the TX data FIFO after its two command words.
fn sent_bytes(tx: &[u32], len: usize) -> Vec<u8> {
    tx[2..]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .take(len)
        .collect()
}

#[test]
fn a_response_built_while_a_full_frame_is_held_goes_into_the_room_after_it() {
    let mut nic = up();
    let f = frame(MTU);
    nic.regs.push_rx(&f, 0);
    let (rx, tx) = nic.receive(now()).expect("a frame");
    // As smoltcp does: the response (the largest TCP header: an ACK with options) is built and sent
    // from inside the received frame's consume.
    let ack: Vec<u8> = (0..RESPONSE_ROOM as u8).map(|i| i ^ 0x5A).collect();
    let held = rx.consume(|frame| {
        tx.consume(ack.len(), |buf| buf.copy_from_slice(&ack));
        frame.to_vec()
    });
    assert_eq!(held, f, "the received frame is untouched by the response");
    let out = &nic.regs().tx_data;
    assert_eq!(out[0] & 0x7FF, RESPONSE_ROOM as u32, "command A: length");
    assert_eq!(sent_bytes(out, RESPONSE_ROOM), ack);
    assert_eq!(nic.stats().tx_frames, 1);
    assert_eq!(nic.stats().tx_errors, 0);
}

#[test]
fn a_response_longer_than_the_room_is_not_sent_and_counted() {
    let mut nic = up();
    nic.regs.push_rx(&frame(MTU), 0);
    let (rx, tx) = nic.receive(now()).expect("a frame");
    // An ICMP reply quoting the frame, say: longer than the room, so built truncated and dropped.
    let seen = rx.consume(|_| tx.consume(RESPONSE_ROOM + 1, |buf| buf.len()));
    assert_eq!(seen, RESPONSE_ROOM);
    assert!(nic.regs().tx_data.is_empty());
    assert_eq!(nic.stats().tx_errors, 1);
    // Behind a short frame the room is larger: the same response fits and is sent.
    let short = frame(60);
    nic.regs.push_rx(&short, 0);
    let (rx, tx) = nic.receive(now()).expect("a frame");
    rx.consume(|_| tx.consume(RESPONSE_ROOM + 1, |buf| buf.fill(1)));
    assert_eq!(nic.stats().tx_frames, 1);
}

#[test]
fn transmit_outside_a_receive_may_use_a_full_mtu_frame() {
    let mut nic = up();
    // A received frame first, so its bytes are in the buffer the transmit reuses.
    nic.regs.push_rx(&frame(MTU), 0);
    let (rx, _) = nic.receive(now()).expect("a frame");
    rx.consume(|_| ());
    let data: Vec<u8> = (0..MTU).map(|i| (i * 7) as u8).collect();
    let tok = nic.transmit(now()).expect("room");
    tok.consume(MTU, |buf| buf.copy_from_slice(&data));
    assert_eq!(sent_bytes(&nic.regs().tx_data, MTU), data);
    assert_eq!(nic.stats().tx_errors, 0);
}
