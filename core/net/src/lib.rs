//! The resident core's network glue: one smoltcp interface and TCP socket, allocated only while in use.
//!
//! A [`Net`] owns everything the network needs while an update runs: the smoltcp [`Interface`]
//! (neighbour cache of 4, one address, one route), a socket set with one TCP socket and, without a
//! static address, one DHCPv4 socket. The caller boxes it; dropping the box gives every byte back, so
//! the application later finds the heap as if the network had never been up. The NIC itself (any smoltcp
//! [`Device`]) stays with the board and is passed to [`Net::new`] and [`Net::poll`].
//!
//! Buffers (see `docs/network.md`): the TCP receive buffer is [`RX_BUFFER`] bytes, which is also the
//! window the server may have in flight, so it sets the download speed; the transmit buffer is
//! [`TX_BUFFER`] bytes: the device mostly receives.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

/// Default TCP receive buffer (and so the advertised window) in bytes.
pub const RX_BUFFER: usize = 4096;
/// Smallest receive buffer [`Net::new`] makes (a smaller request is raised to it).
pub const MIN_RX_BUFFER: usize = 1024;
/// TCP transmit buffer in bytes.
pub const TX_BUFFER: usize = 1024;
/// A connection attempt or unacknowledged data older than this aborts the connection.
pub const TIMEOUT_MS: u64 = 10_000;
/// First local port; each connection takes the next one.
const EPHEMERAL_BASE: u16 = 49152;

/// How the interface gets its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// The interface's MAC address.
    pub mac: [u8; 6],
    /// A static address and prefix length; `None` asks DHCPv4.
    pub ip: Option<([u8; 4], u8)>,
    /// The default gateway for a static address (`0.0.0.0`: none, only the local subnet is reached).
    pub gateway: [u8; 4],
    /// TCP receive buffer in bytes ([`RX_BUFFER`] streams well; a strictly ping-pong protocol such
    /// as luaOTA's needs only its largest record).
    pub rx_buffer: usize,
    /// Differs on every boot (the persisted boot number): it picks the local port and smoltcp's
    /// initial sequence numbers, so a connection after a reboot never looks like the previous boot's
    /// to a peer that still holds that one open.
    pub seed: u32,
}

/// Why a network call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// The interface has no address yet (DHCP not done).
    NoIp,
    /// The peer refused the connection (reset before it was established).
    Refused,
    /// No answer to the connection attempt within [`TIMEOUT_MS`].
    TimedOut,
    /// The connection is closed (by either side, or reset after it was established), or was never opened.
    Closed,
    /// A connection is already open or being opened: close it first.
    InUse,
    /// A bad argument: address `0.0.0.0`, port 0, or a prefix longer than 32.
    Invalid,
}

impl NetError {
    /// A short description for the console.
    pub fn describe(self) -> &'static str {
        match self {
            NetError::NoIp => "no IP address yet",
            NetError::Refused => "connection refused",
            NetError::TimedOut => "connection timed out",
            NetError::Closed => "connection closed",
            NetError::InUse => "a connection is already open",
            NetError::Invalid => "invalid address or port",
        }
    }
}

/// The TCP connection's state as the core sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// No connection (never opened, closed, refused, timed out, reset).
    Closed,
    /// SYN sent, not yet established.
    Connecting,
    /// Open both ways.
    Established,
    /// The peer has closed its side; buffered bytes can still be read and bytes still sent.
    PeerClosed,
}

/// What happened to the current connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conn {
    /// No connection was attempted.
    Idle,
    /// Connection attempted at this time (ms), not established yet.
    Connecting(i64),
    /// It was established at least once.
    Established,
}

/// The per-boot seed, the clock and the MAC mixed into 64 bits (FNV-style: each step carries low bits
/// upwards, so only the high bits depend on everything).
fn mix(cfg: &NetConfig, now_ms: u32) -> u64 {
    cfg.mac.iter().fold(
        (u64::from(cfg.seed) << 32 | u64::from(now_ms)) ^ 0x9E37_79B9_7F4A_7C15,
        |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3),
    )
}

/// The first local port, from the high bits of [`mix`] (its low bits ignore the boot seed).
fn first_port(mixed: u64) -> u16 {
    EPHEMERAL_BASE + (mixed >> 50) as u16
}

/// The network while it is up. Box it: it is a few hundred bytes and its buffers are on the heap.
pub struct Net {
    iface: Interface,
    sockets: SocketSet<'static>,
    tcp: SocketHandle,
    dhcp: Option<SocketHandle>,
    conn: Conn,
    next_port: u16,
    last_ms: u32,
    clock_ms: i64,
}

impl Net {
    /// Brings the interface up on `dev` with `cfg` (a static address, or DHCPv4 when `cfg.ip` is `None`).
    pub fn new<D: Device>(dev: &mut D, cfg: &NetConfig, now_ms: u32) -> Net {
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(cfg.mac)));
        let seed = mix(cfg, now_ms);
        config.random_seed = seed;
        let clock_ms = i64::from(now_ms);
        let mut iface = Interface::new(config, dev, Instant::from_millis(clock_ms));
        let mut sockets = SocketSet::new(Vec::with_capacity(2));
        let mut tcp = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; cfg.rx_buffer.max(MIN_RX_BUFFER)]),
            tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
        );
        tcp.set_timeout(Some(Duration::from_millis(TIMEOUT_MS)));
        // Protocol frames are small and answered at once: no Nagle delay.
        tcp.set_nagle_enabled(false);
        tcp.set_ack_delay(None);
        let tcp = sockets.add(tcp);
        let dhcp = match cfg.ip {
            Some((ip, prefix)) => {
                let ip = Ipv4Address::from(ip);
                iface.update_ip_addrs(|addrs| {
                    let _ = addrs.push(IpCidr::Ipv4(Ipv4Cidr::new(ip, prefix.min(32))));
                });
                if cfg.gateway != [0; 4] {
                    let _ = iface
                        .routes_mut()
                        .add_default_ipv4_route(Ipv4Address::from(cfg.gateway));
                }
                None
            }
            None => Some(sockets.add(dhcpv4::Socket::new())),
        };
        Net {
            iface,
            sockets,
            tcp,
            dhcp,
            conn: Conn::Idle,
            next_port: first_port(seed),
            last_ms: now_ms,
            clock_ms,
        }
    }

    /// Sends and receives what is due: DHCP, TCP (handshake, data, acknowledgements, retransmissions).
    pub fn poll<D: Device>(&mut self, dev: &mut D, now_ms: u32) {
        self.clock_ms += i64::from(now_ms.wrapping_sub(self.last_ms));
        self.last_ms = now_ms;
        let now = Instant::from_millis(self.clock_ms);
        self.iface.poll(now, dev, &mut self.sockets);
        if let Some(h) = self.dhcp {
            match self.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
                Some(dhcpv4::Event::Configured(c)) => {
                    self.iface.update_ip_addrs(|addrs| {
                        addrs.clear();
                        let _ = addrs.push(IpCidr::Ipv4(c.address));
                    });
                    self.iface.routes_mut().remove_default_ipv4_route();
                    if let Some(router) = c.router {
                        let _ = self.iface.routes_mut().add_default_ipv4_route(router);
                    }
                }
                Some(dhcpv4::Event::Deconfigured) => {
                    self.iface.update_ip_addrs(|addrs| addrs.clear());
                    self.iface.routes_mut().remove_default_ipv4_route();
                }
                None => {}
            }
        }
        if self.socket().state() == tcp::State::Established {
            self.conn = Conn::Established;
        }
    }

    /// The interface's IPv4 address, once it has one.
    pub fn ip(&self) -> Option<[u8; 4]> {
        self.iface.ipv4_addr().map(|a| a.octets())
    }

    /// Starts a connection to `remote`:`port` (finish it by polling; see [`Net::state`]).
    pub fn connect(&mut self, remote: [u8; 4], port: u16) -> Result<(), NetError> {
        if remote == [0; 4] || port == 0 {
            return Err(NetError::Invalid);
        }
        if self.ip().is_none() {
            return Err(NetError::NoIp);
        }
        if self.socket().state() != tcp::State::Closed {
            return Err(NetError::InUse);
        }
        let local = self.next_port;
        self.next_port = if local == u16::MAX {
            EPHEMERAL_BASE
        } else {
            local + 1
        };
        let Net {
            iface,
            sockets,
            tcp,
            ..
        } = self;
        sockets
            .get_mut::<tcp::Socket>(*tcp)
            .connect(iface.context(), (Ipv4Address::from(remote), port), local)
            .map_err(|_| NetError::Invalid)?;
        self.conn = Conn::Connecting(self.clock_ms);
        Ok(())
    }

    /// The connection's state.
    pub fn state(&self) -> TcpState {
        use tcp::State as S;
        match self.socket().state() {
            S::SynSent | S::SynReceived => TcpState::Connecting,
            S::Established => TcpState::Established,
            S::CloseWait | S::LastAck => TcpState::PeerClosed,
            S::Closed | S::Listen | S::FinWait1 | S::FinWait2 | S::Closing | S::TimeWait => {
                TcpState::Closed
            }
        }
    }

    /// Queues bytes to send; returns how many were taken (0 while the buffer is full or the connection
    /// is still being opened).
    pub fn send(&mut self, data: &[u8]) -> Result<usize, NetError> {
        match self.state() {
            TcpState::Connecting => Ok(0),
            TcpState::Established | TcpState::PeerClosed => self
                .sockets
                .get_mut::<tcp::Socket>(self.tcp)
                .send_slice(data)
                .map_err(|_| NetError::Closed),
            TcpState::Closed => Err(self.end()),
        }
    }

    /// Takes received bytes into `buf`; `Ok(0)` when nothing has arrived yet, an error once the connection
    /// has ended and every byte was read.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        let end = self.end();
        let s = self.sockets.get_mut::<tcp::Socket>(self.tcp);
        if s.can_recv() {
            return s.recv_slice(buf).map_err(|_| end);
        }
        match self.state() {
            TcpState::Connecting | TcpState::Established => Ok(0),
            TcpState::PeerClosed | TcpState::Closed => Err(end),
        }
    }

    /// Closes the connection: a FIN once the queued bytes are sent (poll to get it out); an attempt
    /// still being opened is abandoned at once.
    pub fn close(&mut self) {
        let s = self.sockets.get_mut::<tcp::Socket>(self.tcp);
        match s.state() {
            tcp::State::SynSent | tcp::State::SynReceived => {
                s.abort();
                self.conn = Conn::Idle;
            }
            _ => s.close(),
        }
    }

    fn socket(&self) -> &tcp::Socket<'static> {
        self.sockets.get::<tcp::Socket>(self.tcp)
    }

    /// Why there is no connection (given that there is none).
    fn end(&self) -> NetError {
        match self.conn {
            Conn::Idle | Conn::Established => NetError::Closed,
            Conn::Connecting(since) if self.clock_ms - since >= TIMEOUT_MS as i64 => {
                NetError::TimedOut
            }
            Conn::Connecting(_) => NetError::Refused,
        }
    }
}

/// The network interface of a board that has none: never receives, never offers to transmit.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNic;

/// No token is ever made: this type has no values.
pub enum Never {}

impl phy::RxToken for Never {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, _: F) -> R {
        match self {}
    }
}

impl phy::TxToken for Never {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, _: usize, _: F) -> R {
        match self {}
    }
}

impl Device for NoNic {
    type RxToken<'a> = Never;
    type TxToken<'a> = Never;

    fn receive(&mut self, _: Instant) -> Option<(Never, Never)> {
        None
    }

    fn transmit(&mut self, _: Instant) -> Option<Never> {
        None
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

#[cfg(test)]
mod tests;
