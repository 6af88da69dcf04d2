//! Host tests: the command line, the stream and its header, the flash sink over `rota-memflash`, the
//! report line, and [`run`] end to end against a plain smoltcp server over an in-memory wire.
extern crate std;

use super::*;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use rota_memflash::MemFlash;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;

/// Counts the bytes live on this thread, so a test can check what [`run`] leaves allocated.
struct Counting;

std::thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|c| {
            c.set(c.get() + l.size());
            let _ = PEAK.try_with(|p| p.set(p.get().max(c.get())));
        });
        // SAFETY: the caller's layout, as GlobalAlloc requires, passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let _ = LIVE.try_with(|c| c.set(c.get().saturating_sub(l.size())));
        // SAFETY: a block `System` allocated with this layout (GlobalAlloc's contract).
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn heap() -> HeapStats {
    HeapStats {
        used: LIVE.with(Cell::get),
        free: 0,
        peak: PEAK.with(Cell::get),
    }
}

/// Collects what is printed.
#[derive(Default)]
struct Out(Vec<u8>);

impl Console for Out {
    fn print(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

impl Out {
    fn text(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap()
    }
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 + 7) as u8).collect()
}

/// The reference FNV-1a of `bytes`, byte by byte as the harness computes it.
fn reference_fnv(bytes: &[u8]) -> u32 {
    let mut h = 0x811C_9DC5u32;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(16_777_619);
    }
    h
}

#[test]
fn args_are_read_from_the_command_line() {
    assert_eq!(
        Args::parse(b"rota storage=/tmp/s.bin"),
        Args {
            bytes: None,
            port: 8266,
            dhcp: false,
            write: false
        }
    );
    assert_eq!(
        Args::parse(b"rota bytes=1000 port=4321 ip=dhcp write cut=5"),
        Args {
            bytes: Some(1000),
            port: 4321,
            dhcp: true,
            write: true
        }
    );
    // Not a port, not DHCP, not the flag alone.
    let odd = Args::parse(b"rota port=70000 ip=static writes bytes=x");
    assert_eq!(
        (odd.port, odd.dhcp, odd.write, odd.bytes),
        (8266, false, false, None)
    );
    assert_eq!(Args::parse(b"rota port=0").port, 8266);
}

#[test]
fn fnv_matches_the_reference_values() {
    assert_eq!(fnv1a(FNV_BASIS, b""), 0x811C_9DC5);
    assert_eq!(fnv1a(FNV_BASIS, b"a"), 0xE40C_292C);
    assert_eq!(fnv1a(FNV_BASIS, b"foobar"), 0xBF9C_F968);
    let d = data(1000);
    assert_eq!(
        fnv1a(fnv1a(FNV_BASIS, &d[..333]), &d[333..]),
        reference_fnv(&d)
    );
}

#[test]
fn the_header_may_arrive_in_pieces_and_bytes_past_the_length_are_ignored() {
    let payload = data(10);
    let mut wire = 10u32.to_le_bytes().to_vec();
    wire.extend_from_slice(&payload);
    wire.extend_from_slice(b"extra");
    let mut s = Stream::new(None);
    let mut got = Vec::new();
    for piece in [&wire[..1], &wire[1..3], &wire[3..6], &wire[6..]] {
        assert!(!s.done());
        got.extend_from_slice(s.take(piece));
    }
    assert!(s.done());
    assert_eq!(
        got, payload,
        "the header is not counted, the extra bytes are not either"
    );
    assert_eq!((s.count(), s.fnv()), (10, reference_fnv(&payload)));
    assert_eq!(s.take(b"more"), b"", "nothing after the end");

    // With bytes=<n> there is no header: the first bytes count.
    let mut s = Stream::new(Some(3));
    assert_eq!(s.take(b"abcd"), b"abc");
    assert!(s.done());
    // A zero-length copy is done at once.
    let mut s = Stream::new(None);
    assert!(s.take(&[0, 0, 0, 0, 1, 2]).is_empty());
    assert!(s.done() && s.count() == 0);
}

#[test]
fn the_sink_erases_each_sector_before_writing_into_it_and_pads_the_tail() {
    let mut flash = MemFlash::new(vec![0u8; 3 * 4096]);
    let payload = data(4096 + 1030);
    let mut sink = Sink::new();
    // Odd pieces: chunks are cut at 512 bytes whatever arrives.
    for piece in payload.chunks(700) {
        assert!(sink.push(&mut flash, piece));
    }
    assert!(sink.flush(&mut flash));
    assert!(sink.flush(&mut flash), "nothing left to write");
    let c = flash.contents();
    assert_eq!(&c[..payload.len()], &payload[..]);
    // The tail (1030 = 2 * 512 + 6 bytes) is padded to the word with 0xFF; sector 1 was erased.
    assert_eq!(&c[payload.len()..payload.len() + 2], &[0xFF, 0xFF]);
    assert!(c[payload.len() + 2..2 * 4096].iter().all(|&b| b == 0xFF));
    assert!(c[2 * 4096..].iter().all(|&b| b == 0), "sector 2 untouched");
    // Operations: erase 0, 8 writes, erase 1, 2 full writes and the tail.
    assert_eq!(flash.ops(), 1 + 8 + 1 + 3);
}

#[test]
fn the_sink_reports_a_refused_write() {
    let mut flash = MemFlash::new(vec![0u8; 4096]);
    flash.fail_op(2);
    let mut sink = Sink::new();
    assert!(sink.push(&mut flash, &data(512)), "erase and first write");
    assert!(!sink.push(&mut flash, &data(512)), "the second write fails");
    // Past the end of the region.
    let mut flash = MemFlash::new(vec![0u8; 4096]);
    let mut sink = Sink::new();
    assert!(!sink.push(&mut flash, &data(4096 + 512)));
}

#[test]
fn the_report_line_is_what_the_harness_parses() {
    let r = Report {
        bytes: 65536,
        us: 12_345,
        fnv: 0x7090_9dc5,
        net_heap: 6088,
        heap_peak: 6100,
        heap_after: 0,
    };
    let mut out = Out::default();
    assert_eq!(finish(&mut out, Ok(r)), 0);
    assert_eq!(
        out.text(),
        "tcp_copy bytes=65536 us=12345 fnv=0x70909dc5 net_heap=6088 heap_peak=6100 heap_after=0\n"
    );
    let mut out = Out::default();
    assert_eq!(finish(&mut out, Err("timed out")), 1);
    assert_eq!(out.text(), "tcp_copy failed: timed out\n");
}

// ---- run() against a plain smoltcp server at 10.0.2.100 ----

const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x64];
const DEVICE_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// Frames in flight: `q[0]` to the device, `q[1]` to the server.
type Wire = Rc<RefCell<[VecDeque<Vec<u8>>; 2]>>;

/// One end of the wire as a smoltcp device.
struct End {
    wire: Wire,
    side: usize,
}

struct Rx(Vec<u8>);
struct Tx {
    wire: Wire,
    to: usize,
}

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.wire.borrow_mut()[self.to].push_back(buf);
        r
    }
}

impl Device for End {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx)> {
        let frame = self.wire.borrow_mut()[self.side].pop_front()?;
        let to = 1 - self.side;
        Some((Rx(frame), self.tx(to)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx> {
        Some(self.tx(1 - self.side))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

impl End {
    fn tx(&self, to: usize) -> Tx {
        Tx {
            wire: self.wire.clone(),
            to,
        }
    }
}

/// The harness's server: listens on 10.0.2.100:`port`, sends `reply` once connected and collects
/// what comes back.
struct Server {
    iface: Interface,
    sockets: SocketSet<'static>,
    tcp: SocketHandle,
    dev: End,
    reply: Vec<u8>,
    sent: usize,
    got: Vec<u8>,
    now: i64,
}

/// The device's NIC: the device end of the wire; every call first lets the server run a step.
struct Link {
    dev: End,
    server: Server,
}

impl Server {
    fn step(&mut self) {
        self.now += 1;
        let now = Instant::from_millis(self.now);
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        let s = self.sockets.get_mut::<tcp::Socket>(self.tcp);
        if s.may_send() && self.sent < self.reply.len() {
            self.sent += s.send_slice(&self.reply[self.sent..]).unwrap();
        }
        if s.can_recv() {
            s.recv(|b| {
                self.got.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
    }
}

impl Device for Link {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, t: Instant) -> Option<(Rx, Tx)> {
        self.server.step();
        self.dev.receive(t)
    }

    fn transmit(&mut self, t: Instant) -> Option<Tx> {
        self.dev.transmit(t)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.dev.capabilities()
    }
}

fn link(port: u16, reply: Vec<u8>) -> Link {
    // Room for every frame in flight from the start: the queues never grow while the device runs,
    // so what they hold is not counted as the device's heap.
    let wire: Wire = Rc::new(RefCell::new([
        VecDeque::with_capacity(256),
        VecDeque::with_capacity(256),
    ]));
    let mut dev = End {
        wire: wire.clone(),
        side: 1,
    };
    let cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(SERVER_MAC)));
    let mut iface = Interface::new(cfg, &mut dev, Instant::from_millis(0));
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::Ipv4(Ipv4Cidr::new(Ipv4Address::from(SERVER), 24)))
            .unwrap();
    });
    let mut sockets = SocketSet::new(Vec::new());
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 16384]),
        tcp::SocketBuffer::new(vec![0; 16384]),
    );
    s.listen(port).unwrap();
    let tcp = sockets.add(s);
    Link {
        dev: End { wire, side: 0 },
        server: Server {
            iface,
            sockets,
            tcp,
            dev,
            reply,
            sent: 0,
            got: Vec::with_capacity(64),
            now: 0,
        },
    }
}

/// A clock in microseconds that advances 1 ms at every reading.
fn clock() -> impl FnMut() -> u64 {
    let mut t = 0u64;
    move || {
        t += 1000;
        t
    }
}

#[test]
fn run_receives_the_announced_bytes_answers_ok_and_gives_the_heap_back() {
    let payload = data(20_000);
    let mut reply = (payload.len() as u32).to_le_bytes().to_vec();
    reply.extend_from_slice(&payload);
    reply.extend_from_slice(b"not counted");
    let mut nic = link(8266, reply);
    let mut flash = MemFlash::new(vec![0u8; 4096]);
    let released = Cell::new(false);
    let args = Args::parse(b"rota");
    let r = run(
        &mut nic,
        DEVICE_MAC,
        &args,
        &mut flash,
        heap,
        &mut clock(),
        |_| released.set(true),
    )
    .expect("the copy");
    assert_eq!(r.bytes, payload.len() as u32);
    assert_eq!(r.fnv, reference_fnv(&payload));
    assert!(r.us > 0 && r.us < LIMIT_MS * 1000, "{r:?}");
    assert_eq!(r.us % 1000, 0, "timed in the clock's microseconds: {r:?}");
    assert!(released.get(), "the NIC is released");
    assert_eq!(nic.server.got, b"OK", "the device acknowledges the end");
    // The network's buffers (4 KB receive window, 1 KB transmit, the interface) while up, none after.
    assert!(
        r.net_heap > rota_net::RX_BUFFER && r.net_heap < 10 * 1024,
        "{r:?}"
    );
    assert!(r.heap_peak >= r.net_heap, "{r:?}");
    assert_eq!(r.heap_after, 0, "{r:?}");
    assert_eq!(flash.ops(), 0, "nothing written without `write`");
}

#[test]
fn run_writes_the_bytes_to_flash_with_write_and_takes_the_length_from_bytes() {
    let payload = data(5_000);
    let mut nic = link(4321, payload.clone());
    let mut flash = MemFlash::new(vec![0u8; 3 * 4096]);
    let args = Args::parse(b"rota write port=4321 bytes=5000");
    let r = run(
        &mut nic,
        DEVICE_MAC,
        &args,
        &mut flash,
        heap,
        &mut clock(),
        |_| {},
    )
    .expect("the copy");
    assert_eq!((r.bytes, r.fnv), (5000, reference_fnv(&payload)));
    assert_eq!(&flash.contents()[..5000], &payload[..]);
    assert_eq!(nic.server.got, b"OK");
}

#[test]
fn run_says_why_it_failed() {
    // Nobody listens on the port: the server resets the connection.
    let mut nic = link(1, Vec::new());
    let mut flash = MemFlash::new(vec![0u8; 4096]);
    let args = Args::parse(b"rota port=4321");
    let e = run(
        &mut nic,
        DEVICE_MAC,
        &args,
        &mut flash,
        heap,
        &mut clock(),
        |_| {},
    );
    assert_eq!(e, Err("connection refused"));

    // The flash cannot hold the bytes.
    let mut nic = link(8266, data(8192));
    let args = Args::parse(b"rota write bytes=8192");
    let e = run(
        &mut nic,
        DEVICE_MAC,
        &args,
        &mut flash,
        heap,
        &mut clock(),
        |_| {},
    );
    assert_eq!(e, Err("flash write"));

    // The server sends too little and then nothing: rota-net aborts a connection whose peer is
    // silent for its timeout (10 s), well before the copy's own limit.
    let mut nic = link(8266, data(100));
    let args = Args::parse(b"rota bytes=200");
    let mut c = clock();
    let mut t = 0;
    let mut now = || {
        t = c();
        t
    };
    let e = run(
        &mut nic,
        DEVICE_MAC,
        &args,
        &mut flash,
        heap,
        &mut now,
        |_| {},
    );
    assert_eq!(e, Err("connection closed"));
    assert!(
        (10_000..u64::from(LIMIT_MS)).contains(&(t / 1000)),
        "gave up at {t} us"
    );

    // DHCP with no DHCP server: no address within the copy's limit.
    let mut nic = link(8266, data(100));
    let args = Args::parse(b"rota ip=dhcp");
    let mut c = clock();
    let mut t = 0;
    let mut now = || {
        t = c();
        t
    };
    let e = run(
        &mut nic,
        DEVICE_MAC,
        &args,
        &mut flash,
        heap,
        &mut now,
        |_| {},
    );
    assert_eq!(e, Err("no address from DHCP"));
    assert!(t / 1000 > u64::from(LIMIT_MS), "gave up at {t} us");
}
