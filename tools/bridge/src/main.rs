//! The QEMU guestfwd command: joins its stdin/stdout to a TCP server on 127.0.0.1.
//!
//! QEMU's user-mode network runs `rota-bridge <port>` once per guest connection to the forwarded address
//! (`-nic user,restrict=on,guestfwd=tcp:10.0.2.100:8266-cmd:rota-bridge <port>`), with the guest's
//! byte stream on the bridge's stdin and stdout. The bridge connects to `127.0.0.1:<port>` (never
//! anywhere else: the argument is a port number, nothing more) and copies both ways. It exits when the
//! server closes its side or the guest side (stdin) ends. QEMU does not pass a server's close to the
//! guest as a FIN, so the protocol on top must mark its own end.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpStream};
use std::process::ExitCode;
use std::thread;

/// Parses the only argument, a TCP port (1..=65535).
fn port(args: &[String]) -> Result<u16, String> {
    match args {
        [p] => match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("not a port number: {p:?}")),
            Ok(n) => Ok(n),
        },
        _ => Err("usage: rota-bridge <port>  (connects to 127.0.0.1:<port> only)".into()),
    }
}

/// Copies `from` to `to` until `from` ends or `to` fails; flushes after every read.
fn pump(mut from: impl Read, mut to: impl Write) -> io::Result<u64> {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
        total += n as u64;
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = match port(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rota-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let sock = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rota-bridge: connect {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let _ = sock.set_nodelay(true);
    let up = match sock.try_clone() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rota-bridge: {e}");
            return ExitCode::from(1);
        }
    };
    // Guest -> server on its own thread; when the guest side ends, half-close towards the server.
    thread::spawn(move || {
        let _ = pump(io::stdin().lock(), &up);
        let _ = up.shutdown(Shutdown::Write);
        // Nothing more will come from the guest; QEMU ends the connection by closing our stdin.
        std::process::exit(0);
    });
    // Server -> guest here; when the server ends, exit at once (that ends the guest thread too).
    let _ = pump(&sock, io::stdout().lock());
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_a_port_number_is_accepted() {
        assert_eq!(port(&args(&["8266"])), Ok(8266));
        assert!(port(&args(&["0"])).is_err());
        assert!(port(&args(&["65536"])).is_err());
        assert!(port(&args(&["10.0.0.1:80"])).is_err());
        assert!(port(&args(&["example.com"])).is_err());
        assert!(port(&args(&[])).is_err());
        assert!(port(&args(&["1", "2"])).is_err());
    }

    #[test]
    fn pump_copies_everything() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        assert_eq!(pump(&data[..], &mut out).unwrap(), data.len() as u64);
        assert_eq!(out, data);
    }
}
