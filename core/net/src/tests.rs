//! Host tests: a `Net` against a plain smoltcp peer (or a tiny DHCP server) over an in-memory wire.
extern crate std;

use super::*;
use alloc::boxed::Box;
use core::cell::{Cell, RefCell};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    DhcpMessageType, DhcpPacket, DhcpRepr, EthernetFrame, EthernetProtocol, EthernetRepr,
    IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::rc::Rc;

/// Counts the bytes live on this thread, so each test can measure what it allocates.
struct Counting;

std::thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + l.size() as isize));
        // SAFETY: the caller's layout, as GlobalAlloc requires, passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let _ = LIVE.try_with(|c| c.set(c.get() - l.size() as isize));
        // SAFETY: a block `System` allocated with this layout (GlobalAlloc's contract).
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

const A_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0A];
const B_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0B];
const A_IP: [u8; 4] = [10, 0, 0, 1];
const B_IP: [u8; 4] = [10, 0, 0, 2];
const PORT: u16 = 8266;

/// Frames in flight each way: `q[side]` holds what `side` will receive.
#[derive(Default)]
struct Wire {
    q: [VecDeque<Vec<u8>>; 2],
    /// Frames sent so far, both directions.
    sent: usize,
}

/// One end of the wire as a smoltcp device.
struct End {
    wire: Rc<RefCell<Wire>>,
    side: usize,
}

fn pair() -> (End, End) {
    let wire = Rc::new(RefCell::new(Wire::default()));
    (
        End {
            wire: wire.clone(),
            side: 0,
        },
        End { wire, side: 1 },
    )
}

struct Rx(Vec<u8>);
struct Tx {
    wire: Rc<RefCell<Wire>>,
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
        let mut w = self.wire.borrow_mut();
        w.sent += 1;
        w.q[self.to].push_back(buf);
        r
    }
}

impl Device for End {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx)> {
        let frame = self.wire.borrow_mut().q[self.side].pop_front()?;
        Some((
            Rx(frame),
            Tx {
                wire: self.wire.clone(),
                to: 1 - self.side,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx> {
        Some(Tx {
            wire: self.wire.clone(),
            to: 1 - self.side,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// A plain smoltcp host at 10.0.0.2, optionally listening on `PORT`.
struct Peer {
    iface: Interface,
    sockets: SocketSet<'static>,
    tcp: SocketHandle,
    dev: End,
}

impl Peer {
    fn new(mut dev: End, listen: bool) -> Peer {
        let cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(B_MAC)));
        let mut iface = Interface::new(cfg, &mut dev, Instant::from_millis(0));
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::Ipv4(Ipv4Cidr::new(Ipv4Address::from(B_IP), 24)))
                .unwrap();
        });
        let mut sockets = SocketSet::new(Vec::new());
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        if listen {
            s.listen(PORT).unwrap();
        }
        let tcp = sockets.add(s);
        Peer {
            iface,
            sockets,
            tcp,
            dev,
        }
    }

    fn poll(&mut self, now: u32) {
        self.iface.poll(
            Instant::from_millis(i64::from(now)),
            &mut self.dev,
            &mut self.sockets,
        );
    }

    fn sock(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut(self.tcp)
    }
}

fn static_cfg() -> NetConfig {
    NetConfig {
        mac: A_MAC,
        ip: Some((A_IP, 24)),
        gateway: [0; 4],
        rx_buffer: RX_BUFFER,
        seed: 1,
    }
}

/// Polls both sides every millisecond until `done` or `limit` ms; returns the time taken.
fn run(
    net: &mut Net,
    dev: &mut End,
    peer: &mut Peer,
    t: &mut u32,
    limit: u32,
    mut done: impl FnMut(&mut Net, &mut Peer) -> bool,
) -> bool {
    for _ in 0..limit {
        *t += 1;
        net.poll(dev, *t);
        peer.poll(*t);
        if done(net, peer) {
            return true;
        }
    }
    false
}

#[test]
fn bytes_flow_both_ways_then_the_peer_closes() {
    let (mut a, b) = pair();
    let mut peer = Peer::new(b, true);
    let mut t = 0;
    let mut net = Box::new(Net::new(&mut a, &static_cfg(), t));
    assert_eq!(net.ip(), Some(A_IP));
    assert_eq!(net.state(), TcpState::Closed);
    assert_eq!(net.recv(&mut [0; 4]), Err(NetError::Closed));
    net.connect(B_IP, PORT).unwrap();
    assert_eq!(net.connect(B_IP, PORT), Err(NetError::InUse));
    assert_eq!(net.state(), TcpState::Connecting);
    assert_eq!(net.send(b"early"), Ok(0));
    assert!(run(&mut net, &mut a, &mut peer, &mut t, 1000, |n, _| n
        .state()
        == TcpState::Established));

    // Device -> peer: more than the transmit buffer, so `send` must be called again as it drains.
    let up: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let mut sent = 0;
    let mut got = Vec::new();
    assert!(run(&mut net, &mut a, &mut peer, &mut t, 5000, |n, p| {
        sent += n.send(&up[sent..]).unwrap();
        let mut buf = [0; 700];
        if p.sock().can_recv() {
            let k = p.sock().recv_slice(&mut buf).unwrap();
            got.extend_from_slice(&buf[..k]);
        }
        got.len() == up.len()
    }));
    assert_eq!(got, up);

    // Peer -> device: 64 KB through the 4 KB window.
    let down: Vec<u8> = (0..65536u32).map(|i| (i * 13 % 256) as u8).collect();
    let mut fed = 0;
    let mut got = Vec::new();
    assert!(run(&mut net, &mut a, &mut peer, &mut t, 20000, |n, p| {
        if fed < down.len() {
            fed += p.sock().send_slice(&down[fed..]).unwrap();
        }
        let mut buf = [0; 1000];
        let k = n.recv(&mut buf).unwrap();
        got.extend_from_slice(&buf[..k]);
        got.len() == down.len()
    }));
    assert_eq!(got, down);

    // The peer sends a last few bytes and closes: they are still delivered, then Closed.
    peer.sock().send_slice(b"bye").unwrap();
    peer.sock().close();
    assert!(run(&mut net, &mut a, &mut peer, &mut t, 1000, |n, _| n
        .state()
        == TcpState::PeerClosed));
    let mut buf = [0; 8];
    assert_eq!(net.recv(&mut buf), Ok(3));
    assert_eq!(&buf[..3], b"bye");
    assert_eq!(net.recv(&mut buf), Err(NetError::Closed));
    assert_eq!(net.send(b"late"), Ok(4), "our side is still open");
    net.close();
    assert!(run(&mut net, &mut a, &mut peer, &mut t, 1000, |n, p| n
        .state()
        == TcpState::Closed
        && !p.sock().is_open()));
    assert_eq!(net.send(b"x"), Err(NetError::Closed));

    // And the socket can be used again.
    peer.sock().listen(PORT).unwrap();
    net.connect(B_IP, PORT).unwrap();
    assert!(run(&mut net, &mut a, &mut peer, &mut t, 1000, |n, _| n
        .state()
        == TcpState::Established));
}

#[test]
fn a_reset_answer_is_refused_and_silence_times_out() {
    let (mut a, b) = pair();
    let mut peer = Peer::new(b, false);
    let mut t = 0;
    let mut net = Net::new(&mut a, &static_cfg(), t);
    net.connect(B_IP, PORT).unwrap();
    assert!(run(&mut net, &mut a, &mut peer, &mut t, 1000, |n, _| n
        .state()
        == TcpState::Closed));
    assert_eq!(net.recv(&mut [0; 4]), Err(NetError::Refused));
    assert_eq!(net.send(b"x"), Err(NetError::Refused));

    // Nobody at 10.0.0.3: ARP goes unanswered, the attempt times out.
    net.connect([10, 0, 0, 3], PORT).unwrap();
    assert!(run(
        &mut net,
        &mut a,
        &mut peer,
        &mut t,
        TIMEOUT_MS as u32 + 2000,
        |n, _| n.state() == TcpState::Closed
    ));
    assert_eq!(net.recv(&mut [0; 4]), Err(NetError::TimedOut));
}

#[test]
fn bad_arguments_and_no_address_are_errors() {
    let (mut a, _b) = pair();
    let mut net = Net::new(&mut a, &static_cfg(), 0);
    assert_eq!(net.connect([0; 4], PORT), Err(NetError::Invalid));
    assert_eq!(net.connect(B_IP, 0), Err(NetError::Invalid));
    let mut dhcp = Net::new(
        &mut a,
        &NetConfig {
            ip: None,
            ..static_cfg()
        },
        0,
    );
    assert_eq!(dhcp.ip(), None);
    assert_eq!(dhcp.connect(B_IP, PORT), Err(NetError::NoIp));
    for e in [
        NetError::NoIp,
        NetError::Refused,
        NetError::TimedOut,
        NetError::Closed,
        NetError::InUse,
        NetError::Invalid,
    ] {
        assert!(!e.describe().is_empty());
    }
}

#[test]
fn close_while_connecting_abandons_the_attempt() {
    let (mut a, _b) = pair();
    let mut net = Net::new(&mut a, &static_cfg(), 0);
    net.connect(B_IP, PORT).unwrap();
    net.close();
    assert_eq!(net.state(), TcpState::Closed);
    assert_eq!(net.recv(&mut [0; 4]), Err(NetError::Closed));
    net.connect(B_IP, PORT).unwrap();
}

#[test]
fn heap_while_up_is_small_and_all_returned() {
    let (mut a, _b) = pair();
    let before = live();
    let net = Box::new(Net::new(&mut a, &static_cfg(), 0));
    let up = live() - before;
    let dhcp = Box::new(Net::new(
        &mut a,
        &NetConfig {
            ip: None,
            ..static_cfg()
        },
        0,
    ));
    let up_dhcp = live() - before - up;
    assert!(up < 8 * 1024, "static: {up}");
    assert!(up_dhcp < 8 * 1024, "dhcp: {up_dhcp}");
    drop(net);
    drop(dhcp);
    assert_eq!(live(), before, "everything is given back");
    std::println!(
        "heap while up: static {up} B, DHCP {up_dhcp} B (size_of Net {}, buffers {})",
        core::mem::size_of::<Net>(),
        RX_BUFFER + TX_BUFFER
    );
}

/// Answers DHCP DISCOVER with OFFER and REQUEST with ACK for 10.0.0.77/24, router 10.0.0.1.
fn dhcp_server(frame: &[u8]) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    if udp.dst_port() != 67 {
        return None;
    }
    let pkt = DhcpPacket::new_checked(udp.payload()).ok()?;
    let req = DhcpRepr::parse(&pkt).ok()?;
    let kind = match req.message_type {
        DhcpMessageType::Discover => DhcpMessageType::Offer,
        DhcpMessageType::Request => DhcpMessageType::Ack,
        _ => return None,
    };
    let server = Ipv4Address::new(10, 0, 0, 2);
    let reply = DhcpRepr {
        message_type: kind,
        transaction_id: req.transaction_id,
        secs: 0,
        client_hardware_address: req.client_hardware_address,
        client_ip: Ipv4Address::UNSPECIFIED,
        your_ip: Ipv4Address::new(10, 0, 0, 77),
        server_ip: server,
        router: Some(Ipv4Address::new(10, 0, 0, 1)),
        subnet_mask: Some(Ipv4Address::new(255, 255, 255, 0)),
        relay_agent_ip: Ipv4Address::UNSPECIFIED,
        broadcast: false,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(server),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: Some(3600),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let udp_repr = UdpRepr {
        src_port: 67,
        dst_port: 68,
    };
    let dhcp_len = reply.buffer_len();
    let ip_repr = Ipv4Repr {
        src_addr: server,
        dst_addr: Ipv4Address::BROADCAST,
        next_header: IpProtocol::Udp,
        payload_len: udp_repr.header_len() + dhcp_len,
        hop_limit: 64,
    };
    let eth_repr = EthernetRepr {
        src_addr: EthernetAddress(B_MAC),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut out = vec![0; eth_repr.buffer_len() + ip_repr.buffer_len() + ip_repr.payload_len];
    let caps = ChecksumCapabilities::default();
    let mut f = EthernetFrame::new_unchecked(&mut out[..]);
    eth_repr.emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip_repr.emit(&mut p, &caps);
    let mut u = UdpPacket::new_unchecked(p.payload_mut());
    udp_repr.emit(
        &mut u,
        &server.into(),
        &Ipv4Address::BROADCAST.into(),
        dhcp_len,
        |buf| reply.emit(&mut DhcpPacket::new_unchecked(buf)).unwrap(),
        &caps,
    );
    Some(out)
}

#[test]
fn dhcp_assigns_the_address_and_the_route() {
    let (mut a, b) = pair();
    let cfg = NetConfig {
        ip: None,
        ..static_cfg()
    };
    let mut net = Net::new(&mut a, &cfg, 0);
    let mut answered = 0;
    for t in 1..20_000u32 {
        net.poll(&mut a, t);
        let out: Vec<Vec<u8>> = b.wire.borrow_mut().q[1].drain(..).collect();
        for frame in out {
            if let Some(reply) = dhcp_server(&frame) {
                answered += 1;
                b.wire.borrow_mut().q[0].push_back(reply);
            }
        }
        if net.ip().is_some() {
            break;
        }
    }
    assert_eq!(net.ip(), Some([10, 0, 0, 77]));
    assert_eq!(answered, 2, "an offer and an ack");
    assert_eq!(
        net.iface
            .routes_mut()
            .remove_default_ipv4_route()
            .map(|r| r.via_router),
        Some(Ipv4Address::new(10, 0, 0, 1).into()),
        "default route via the router"
    );
    assert!(b.wire.borrow().sent > 0);
}

#[test]
fn no_nic_never_receives_or_transmits() {
    let mut nic = NoNic;
    assert!(nic.receive(Instant::from_millis(0)).is_none());
    assert!(nic.transmit(Instant::from_millis(0)).is_none());
    assert_eq!(nic.capabilities().max_transmission_unit, 1514);
    // A Net over it comes up and simply never gets anywhere.
    let mut net = Net::new(&mut nic, &static_cfg(), 0);
    net.connect(B_IP, PORT).unwrap();
    for t in 0..100 {
        net.poll(&mut nic, t);
    }
    assert_eq!(net.state(), TcpState::Connecting);
}

#[test]
fn each_boot_starts_from_another_local_port_even_at_the_same_millisecond() {
    // A reboot reconnects at the same time after boot; a peer (QEMU's user network) may still hold
    // the previous boot's connection, so the same local port would never connect.
    let ports: std::collections::BTreeSet<u16> = (1..=200u32)
        .map(|boot| {
            first_port(mix(
                &NetConfig {
                    seed: boot,
                    ..static_cfg()
                },
                9,
            ))
        })
        .collect();
    assert!(ports.len() >= 195, "only {} distinct ports", ports.len());
    let before = first_port(mix(
        &NetConfig {
            seed: 1,
            ..static_cfg()
        },
        9,
    ));
    let after = first_port(mix(
        &NetConfig {
            seed: 2,
            ..static_cfg()
        },
        9,
    ));
    assert_ne!(before, after);
}
