//! Joins a device to a rota-server on 127.0.0.1, in one of two modes.
//!
//! `rota-bridge <port>` is QEMU's guestfwd command: QEMU's user-mode network runs it once per guest
//! connection to the forwarded address
//! (`-nic user,restrict=on,guestfwd=tcp:10.0.2.100:8266-cmd:rota-bridge <port>`), with the guest's
//! byte stream on the bridge's stdin and stdout. The bridge connects to `127.0.0.1:<port>` (never
//! anywhere else: the argument is a port number, nothing more) and copies both ways. It exits when the
//! server closes its side or the guest side (stdin) ends. QEMU does not pass a server's close to the
//! guest as a FIN, so the protocol on top must mark its own end.
//!
//! `rota-bridge serial --line <path> [--baud <n>] --server-port <port>` joins a device's serial line
//! (a tty such as `/dev/ttyUSB0`, or the Unix socket of QEMU's `-chardev socket,server=on`) to
//! `127.0.0.1:<port>`: the device's console on stdout, keys from stdin to the device, and its
//! `rota-serial-link` connections to the server ([`serial`]). It exits when the line closes.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

mod line;
mod serial;

/// How long `serial` waits for its line to appear (QEMU creates its socket as it starts).
const LINE_WAIT: Duration = Duration::from_secs(10);
/// The baud rate of `serial` on a tty unless `--baud` says otherwise (the ESP8266 SDK's console).
const DEFAULT_BAUD: u32 = 115_200;
const SERIAL_USAGE: &str = "usage: rota-bridge serial --line <tty or socket path> [--baud <n>] \
     --server-port <port>  (connects to 127.0.0.1:<port> only)";

/// Parses the only argument, a TCP port (1..=65535).
fn port(args: &[String]) -> Result<u16, String> {
    match args {
        [p] => port_number(p),
        _ => Err("usage: rota-bridge <port>  (connects to 127.0.0.1:<port> only)".into()),
    }
}

/// A TCP port number (1..=65535), nothing else.
fn port_number(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("not a port number: {p:?}")),
        Ok(n) => Ok(n),
    }
}

/// What `rota-bridge serial` was asked for.
#[derive(Debug, PartialEq, Eq)]
struct SerialArgs {
    line: PathBuf,
    baud: u32,
    server_port: u16,
}

/// Parses the arguments after `serial`.
fn serial_args(args: &[String]) -> Result<SerialArgs, String> {
    let (mut line, mut baud, mut server_port) = (None, DEFAULT_BAUD, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{SERIAL_USAGE}"))?;
        match flag.as_str() {
            "--line" => line = Some(PathBuf::from(value)),
            "--baud" => {
                baud = match value.parse::<u32>() {
                    Ok(0) | Err(_) => return Err(format!("not a baud rate: {value:?}")),
                    Ok(b) => b,
                }
            }
            "--server-port" => server_port = Some(port_number(value)?),
            _ => return Err(format!("unknown argument {flag:?}\n{SERIAL_USAGE}")),
        }
    }
    match (line, server_port) {
        (Some(line), Some(server_port)) => Ok(SerialArgs {
            line,
            baud,
            server_port,
        }),
        _ => Err(SERIAL_USAGE.into()),
    }
}

/// `rota-bridge serial`: opens the line, then bridges it until it closes.
fn serial_main(args: &[String]) -> ExitCode {
    let a = match serial_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rota-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    let line = match line::open(&a.line, a.baud, LINE_WAIT) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rota-bridge: line {}: {e}", a.line.display());
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "rota-bridge: line {} ({}) open; server 127.0.0.1:{}",
        a.line.display(),
        line.what,
        a.server_port
    );
    match serial::run(
        line.input,
        line.output,
        Some(Box::new(io::stdin())),
        io::stdout(),
        a.server_port,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rota-bridge: line {}: {e}", a.line.display());
            ExitCode::from(1)
        }
    }
}

/// Turns Nagle's algorithm off on `fd` if it is a TCP socket; anything else (a pipe, a terminal) is
/// left as it is. A copy of the descriptor is enough: the option belongs to the socket.
#[cfg(unix)]
fn nodelay(fd: std::os::fd::BorrowedFd<'_>) {
    if let Ok(fd) = fd.try_clone_to_owned() {
        let _ = TcpStream::from(fd).set_nodelay(true);
    }
}

/// Turns Nagle's algorithm off on the bridge's stdin and stdout, which under QEMU are one TCP socket
/// (libslirp makes a TCP connection on 127.0.0.1 for a `cmd:` forward and hands it over as fds 0 and
/// 1). With Nagle on, a write towards the guest smaller than a segment waits for the previous one's
/// ACK, which the kernel delays by up to 40 ms: files of a few KB were staged 44 to 50 ms after
/// `Ready` (docs/network.md), 3 to 6 ms without it.
fn stdio_nodelay() {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        nodelay(io::stdout().as_fd());
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
    if args.first().is_some_and(|a| a == "serial") {
        return serial_main(&args[1..]);
    }
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
    stdio_nodelay();
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

    #[cfg(unix)]
    #[test]
    fn nagle_goes_off_on_a_socket_and_nothing_else_is_touched() {
        use std::os::fd::AsFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(!sock.nodelay().unwrap());
        nodelay(sock.as_fd());
        assert!(sock.nodelay().unwrap());
        // Not a socket: no error, no change.
        let file = std::fs::File::open("/dev/null").unwrap();
        nodelay(file.as_fd());
    }

    #[test]
    fn serial_takes_a_line_a_port_and_an_optional_baud_rate() {
        assert_eq!(
            serial_args(&args(&["--line", "/dev/ttyUSB0", "--server-port", "8266"])),
            Ok(SerialArgs {
                line: "/dev/ttyUSB0".into(),
                baud: 115_200,
                server_port: 8266
            })
        );
        assert_eq!(
            serial_args(&args(&[
                "--server-port",
                "1",
                "--baud",
                "921600",
                "--line",
                "/tmp/s"
            ]))
            .map(|a| a.baud),
            Ok(921_600)
        );
        for bad in [
            &["--line", "/tmp/s"][..],
            &["--server-port", "8266"],
            &["--line", "/tmp/s", "--server-port", "127.0.0.1:8266"],
            &["--line", "/tmp/s", "--server-port", "0"],
            &["--line", "/tmp/s", "--server-port", "1", "--baud", "0"],
            &["--line", "/tmp/s", "--server-port", "1", "--host", "x"],
            &["--line", "/tmp/s", "--server-port"],
        ] {
            assert!(serial_args(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pump_copies_everything() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        assert_eq!(pump(&data[..], &mut out).unwrap(), data.len() as u64);
        assert_eq!(out, data);
    }
}
