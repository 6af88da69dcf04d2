//! rota's link to the server over a serial line that it shares with the console (UART0 on the
//! ESP8266, whose USB-serial adapter is the only way to a chip without its SDK's WiFi).
//!
//! Two halves over one [`frame`] codec: the device's [`SerialLink`], which the resident core puts
//! behind the same services as its TCP connection (the overlays cannot tell them apart), and the host's
//! `rota-bridge serial`, which joins the line to a server on 127.0.0.1 and prints the console.
//!
//! Flow control is by credit and strictly one frame at a time towards the device: the device asks for
//! at most [`frame::MAX_PAYLOAD`] bytes ([`frame::Kind::Credit`]) only when it has consumed the last
//! frame and is about to wait for the next, and the host answers with one `Data` frame. So no byte is
//! ever in flight while the device writes flash with its CPU away from the UART (the ESP8266's
//! receive FIFO holds 128 bytes), whatever the baud rate. The device sends whenever it likes: the host
//! always keeps up.
//!
//! Nothing is repaired: a frame that fails its CRC, a gap in the sequence numbers or a frame the
//! protocol does not expect closes the connection on both sides, and the session on top (which never
//! commits a partial update) resumes at the next check-in from what the store has staged.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod frame;

use frame::{Close, Decoder, FrameError, Kind, Token, MAX_PAYLOAD};

/// Most payload bytes of one frame the device sends (its transmit buffer; a longer send is split).
pub const TX_PAYLOAD: usize = 256;
/// Console bytes kept while the link reads the line (a key typed during a session); more are dropped.
const CONSOLE_QUEUE: usize = 8;

/// The device's serial line: the console UART.
pub trait Port {
    /// Writes all of `bytes` (blocking until the UART took them).
    fn write(&mut self, bytes: &[u8]);
    /// A received byte, if one is there (never blocks).
    fn read(&mut self) -> Option<u8>;
}

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No connection asked for.
    Idle,
    /// `Connect` sent, no answer yet.
    Connecting,
    /// The host accepted: data flows.
    Established,
    /// Over (see [`Ended`]).
    Closed(Ended),
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The host closed it, for this reason.
    Peer(Close),
    /// A frame from the host failed its checks (the device told the host).
    Line(FrameError),
    /// The host sent a frame the protocol does not allow now (a `Data` beyond the credit, or an
    /// `Accept` while connected), and the device told the host.
    Protocol(Kind),
    /// The device closed it.
    Local,
}

/// Why a link call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// A connection is already open or being opened.
    InUse,
    /// No connection is open (never opened, or ended: [`SerialLink::state`] says how).
    Closed,
}

/// The device's half: one connection at a time over the line, and the console bytes found between
/// frames. About 1.4 KB: the resident core allocates it from the heap only while the link is up.
pub struct SerialLink {
    decoder: Decoder,
    tx: [u8; frame::line_len(TX_PAYLOAD)],
    state: State,
    /// Sequence number of the next frame sent, and of the next one expected.
    seq_out: u8,
    seq_in: u8,
    /// A `Credit` is out and its `Data` not yet here.
    credit: bool,
    /// Payload bytes of the last `Data` frame (in the decoder) already handed out, and whether any
    /// are left: while some are, the line is not read (the decoder holds them).
    taken: usize,
    pending: bool,
    console: [u8; CONSOLE_QUEUE],
    console_len: usize,
}

impl Default for SerialLink {
    fn default() -> Self {
        Self::new()
    }
}

impl SerialLink {
    /// A link with no connection.
    pub const fn new() -> SerialLink {
        SerialLink {
            decoder: Decoder::new(),
            tx: [0; frame::line_len(TX_PAYLOAD)],
            state: State::Idle,
            seq_out: 0,
            seq_in: 0,
            credit: false,
            taken: 0,
            pending: false,
            console: [0; CONSOLE_QUEUE],
            console_len: 0,
        }
    }

    /// Where the connection is.
    pub fn state(&self) -> State {
        self.state
    }

    /// Asks the host for a connection to `ip:port` (the bridge decides where it really connects).
    pub fn connect(
        &mut self,
        port: &mut impl Port,
        ip: [u8; 4],
        tcp_port: u16,
    ) -> Result<(), LinkError> {
        if matches!(self.state, State::Connecting | State::Established) {
            return Err(LinkError::InUse);
        }
        self.seq_out = 0;
        self.seq_in = 0;
        self.credit = false;
        self.pending = false;
        let p = tcp_port.to_le_bytes();
        self.send_frame(
            port,
            Kind::Connect,
            &[ip[0], ip[1], ip[2], ip[3], p[0], p[1]],
        );
        self.state = State::Connecting;
        Ok(())
    }

    /// Reads what the line holds (unless received data is still waiting to be taken) and acts on it.
    pub fn poll(&mut self, port: &mut impl Port) {
        while !self.pending {
            let Some(b) = port.read() else { return };
            match self.decoder.push(b) {
                Ok(Token::Console(c)) => {
                    if self.console_len < CONSOLE_QUEUE {
                        self.console[self.console_len] = c;
                        self.console_len += 1;
                    }
                }
                Ok(Token::Pending) => {}
                Ok(Token::Frame) => self.on_frame(port),
                Err(e) => {
                    if matches!(self.state, State::Connecting | State::Established) {
                        self.end(port, Ended::Line(e), Close::LineError);
                    }
                }
            }
        }
    }

    fn on_frame(&mut self, port: &mut impl Port) {
        let f = self.decoder.frame();
        let (kind, seq) = (f.kind, f.seq);
        let live = matches!(self.state, State::Connecting | State::Established);
        if !live {
            // A frame for a connection that is over (the host's answer to our close): ignored.
            return;
        }
        if seq != self.seq_in {
            let e = FrameError::Seq(self.seq_in, seq);
            return self.end(port, Ended::Line(e), Close::LineError);
        }
        self.seq_in = self.seq_in.wrapping_add(1);
        match (kind, self.state) {
            (Kind::Accept, State::Connecting) => self.state = State::Established,
            (Kind::Data, State::Established) if self.credit => {
                self.credit = false;
                self.taken = 0;
                self.pending = true;
            }
            (Kind::Close, _) => {
                self.state = State::Closed(Ended::Peer(Close::from_payload(f.payload)));
            }
            (k, _) => self.end(port, Ended::Protocol(k), Close::LineError),
        }
    }

    /// Ends the connection for `why`, telling the host `reason`.
    fn end(&mut self, port: &mut impl Port, why: Ended, reason: Close) {
        self.send_frame(port, Kind::Close, &[reason as u8]);
        self.state = State::Closed(why);
        self.pending = false;
        self.credit = false;
    }

    fn send_frame(&mut self, port: &mut impl Port, kind: Kind, payload: &[u8]) {
        if let Some(n) = frame::encode(kind, self.seq_out, payload, &mut self.tx) {
            self.seq_out = self.seq_out.wrapping_add(1);
            port.write(&self.tx[..n]);
        }
    }

    /// Sends up to [`TX_PAYLOAD`] bytes of `bytes`; returns how many went.
    pub fn send(&mut self, port: &mut impl Port, bytes: &[u8]) -> Result<usize, LinkError> {
        self.poll(port);
        if self.state != State::Established {
            return Err(LinkError::Closed);
        }
        let n = bytes.len().min(TX_PAYLOAD);
        if n > 0 {
            self.send_frame(port, Kind::Data, &bytes[..n]);
        }
        Ok(n)
    }

    /// Takes received bytes into `buf`: their count, 0 if none are here yet (then the host has a
    /// credit for the next frame), or [`LinkError::Closed`] once the connection is over and every
    /// byte received was taken.
    pub fn recv(&mut self, port: &mut impl Port, buf: &mut [u8]) -> Result<usize, LinkError> {
        self.poll(port);
        if self.pending {
            let data = self.decoder.frame().payload;
            let n = buf.len().min(data.len() - self.taken);
            buf[..n].copy_from_slice(&data[self.taken..self.taken + n]);
            self.taken += n;
            if self.taken == data.len() {
                self.pending = false;
            }
            return Ok(n);
        }
        match self.state {
            State::Established => {
                if !self.credit {
                    self.credit = true;
                    let c = (MAX_PAYLOAD as u16).to_le_bytes();
                    self.send_frame(port, Kind::Credit, &c);
                }
                Ok(0)
            }
            State::Connecting => Ok(0),
            State::Idle | State::Closed(_) => Err(LinkError::Closed),
        }
    }

    /// Closes the connection (telling the host, if it is open); the link is idle again.
    pub fn close(&mut self, port: &mut impl Port) {
        if matches!(self.state, State::Connecting | State::Established) {
            self.end(port, Ended::Local, Close::Normal);
        }
        self.state = State::Idle;
    }

    /// A console byte that arrived between frames (oldest first), if any.
    pub fn console_byte(&mut self, port: &mut impl Port) -> Option<u8> {
        self.poll(port);
        if self.console_len == 0 {
            return None;
        }
        let b = self.console[0];
        self.console.copy_within(1..self.console_len, 0);
        self.console_len -= 1;
        Some(b)
    }
}

#[cfg(test)]
mod tests;
