//! Running mps2-an385 firmware with the network and a persistent storage file, and the plain TCP
//! copy (`tcp_copy`, on mps2-an385 and on the xtfpga machine) against a server on 127.0.0.1.
//!
//! The guest reaches exactly one address, 10.0.2.100:8266, which QEMU's user-mode network forwards to
//! `rota-bridge <port>`, which connects to 127.0.0.1:`<port>` (`restrict=on`: nothing else is reachable,
//! and nothing but loopback is used on the host). The storage region lives in a host file named on the
//! semihosting command line (`storage=<path>`), so it survives guest resets and separate runs; `cut=<n>`
//! cuts power at flash operation `n` (the run then ends with [`POWER_CUT_EXIT`]). See docs/network.md.

use crate::xtfpga::XtfpgaRun;
use crate::Run;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

/// Exit status of a run ended by an injected power cut (the board's `POWER_CUT_EXIT`).
pub const POWER_CUT_EXIT: i32 = 86;
/// The address and port the guest connects to (forwarded to the bridge).
pub const GUEST_SERVER: ([u8; 4], u16) = ([10, 0, 2, 100], 8266);

/// The `rota-bridge` binary: `$ROTA_BRIDGE`, else next to the running test's target directory
/// (`cargo test` builds it), else `<build>/rota-bridge` (`make tcp-copy`).
pub fn bridge() -> PathBuf {
    if let Some(p) = std::env::var_os("ROTA_BRIDGE") {
        return PathBuf::from(p);
    }
    crate::beside_exe("rota-bridge")
        .or_else(|| Some(crate::build_dir().join("rota-bridge")).filter(|p| p.is_file()))
        .expect("rota-bridge is missing: run `cargo build -p rota-bridge` or `make tcp-copy`")
}

/// The `-nic` value of a guest on QEMU's restricted user network: NIC `model` (`None`: the board's
/// default), and with `server_port` the one forward 10.0.2.100:8266 -> `rota-bridge <port>` ->
/// 127.0.0.1:`<port>`. Never `restrict=off`: the guest reaches nothing but that forward.
pub fn user_nic(model: Option<&str>, server_port: Option<u16>) -> String {
    nic_value(model, server_port.map(|port| (bridge(), port)))
}

/// [`user_nic`] with the bridge program given.
pub(crate) fn nic_value(model: Option<&str>, forward: Option<(PathBuf, u16)>) -> String {
    let mut nic = String::from("user,restrict=on");
    if let Some(m) = model {
        nic.push_str(",model=");
        nic.push_str(m);
    }
    if let Some((bridge, port)) = forward {
        let b = bridge.display().to_string();
        assert!(!b.contains([',', ' ']), "bridge path unusable in -nic: {b}");
        let ([a, b0, c, d], guest_port) = GUEST_SERVER;
        nic.push_str(&format!(
            ",guestfwd=tcp:{a}.{b0}.{c}.{d}:{guest_port}-cmd:{b} {port}"
        ));
    }
    nic
}

/// How to run one mps2-an385 guest.
#[derive(Clone, Debug, Default)]
pub struct Mps2Run {
    /// The firmware ELF.
    pub elf: PathBuf,
    /// The storage file (created by the guest if missing); `None`: the region is plain memory.
    pub storage: Option<PathBuf>,
    /// Cut power at this flash operation (from 0).
    pub cut: Option<u32>,
    /// The host port on 127.0.0.1 that guest connections to 10.0.2.100:8266 reach; `None`: no forward
    /// (the NIC is still there, on a restricted user network).
    pub server_port: Option<u16>,
    /// Further words for the semihosting command line (no commas or spaces).
    pub args: Vec<String>,
    /// The console UART (CMSDK UART0) on this Unix socket, which QEMU creates and waits on until a
    /// client (`rota-bridge serial`) connects ([`crate::serial`]); `None`: on QEMU's stdio.
    pub line: Option<PathBuf>,
}

impl Mps2Run {
    /// A run of `elf` with no storage file, forward or arguments.
    pub fn new(elf: impl Into<PathBuf>) -> Self {
        Mps2Run {
            elf: elf.into(),
            ..Mps2Run::default()
        }
    }

    /// The QEMU command line.
    pub fn command(&self) -> Command {
        let semi = crate::semihosting_config(
            "enable=on,target=native",
            self.storage.as_deref(),
            self.cut,
            &self.args,
        );
        let nic = user_nic(None, self.server_port);
        let mut cmd = Command::new("qemu-system-arm");
        cmd.args(["-M", "mps2-an385", "-monitor", "none"]);
        match &self.line {
            Some(line) => cmd.args(crate::serial::chardev_args(line)),
            None => cmd.arg("-nographic"),
        };
        cmd.args(["-semihosting-config", &semi])
            .args(["-nic", &nic])
            .arg("-kernel")
            .arg(&self.elf);
        cmd
    }

    /// Runs the guest until it exits or `limit` passes.
    pub fn run(&self, limit: Duration) -> Run {
        crate::run_limited(&self.command(), limit)
    }
}

/// A one-connection TCP server on 127.0.0.1: sends `reply` at once, then collects what the peer sends
/// until it has `expect` bytes, the peer closes, or 30 s pass. Returns its port and the collector.
pub fn serve_once(reply: Vec<u8>, expect: usize) -> (u16, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local addr").port();
    let handle = std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return Vec::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let _ = s.write_all(&reply);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < expect {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        close(s);
        got
    });
    (port, handle)
}

/// A guest run whose 10.0.2.100:8266 can be forwarded to a port on 127.0.0.1: an mps2-an385
/// ([`Mps2Run`]) or an xtfpga ([`XtfpgaRun`]) guest, for [`copy`].
pub trait Forwarded {
    /// Forwards the guest's connections to 10.0.2.100:8266 to 127.0.0.1:`port`.
    fn forward_to(&mut self, port: u16);
    /// Runs the guest until it exits or `limit` passes.
    fn run_for(&self, limit: Duration) -> Run;
}

impl Forwarded for Mps2Run {
    fn forward_to(&mut self, port: u16) {
        self.server_port = Some(port);
    }

    fn run_for(&self, limit: Duration) -> Run {
        self.run(limit)
    }
}

impl Forwarded for XtfpgaRun {
    fn forward_to(&mut self, port: u16) {
        self.server_port = Some(port);
    }

    fn run_for(&self, limit: Duration) -> Run {
        self.run(limit)
    }
}

/// Serves `len` (4 bytes LE) then `payload` to `run` (a `tcp_copy` guest on either machine); returns
/// the run, its copy line and what the device sent back.
pub fn copy(mut run: impl Forwarded, payload: &[u8]) -> (Run, Option<CopyLine>, Vec<u8>) {
    let mut reply = (payload.len() as u32).to_le_bytes().to_vec();
    reply.extend_from_slice(payload);
    let (port, server) = serve_once(reply, 2);
    run.forward_to(port);
    let out = run.run_for(Duration::from_secs(60));
    let line = CopyLine::find(&out.console);
    // A server that never saw a connection would wait for one: connect to release it.
    let _ = TcpStream::connect(("127.0.0.1", port));
    let got = server.join().unwrap_or_default();
    (out, line, got)
}

fn close(s: TcpStream) {
    let _ = s.shutdown(std::net::Shutdown::Both);
}

/// FNV-1a (32-bit), the checksum `tcp_copy` prints.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811C_9DC5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The `tcp_copy bytes=.. us=.. fnv=0x.. net_heap=.. heap_peak=.. heap_after=..` line, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyLine {
    /// Bytes received.
    pub bytes: u64,
    /// Microseconds from connection to the last byte.
    pub us: u64,
    /// FNV-1a of the bytes.
    pub fnv: u32,
    /// Heap bytes the network took while up.
    pub net_heap: u64,
    /// Peak heap use.
    pub heap_peak: u64,
    /// Heap bytes still used after the network was dropped (0 expected).
    pub heap_after: u64,
}

impl CopyLine {
    /// Finds and parses the line in `console`.
    pub fn find(console: &str) -> Option<CopyLine> {
        let line = console.lines().find_map(|l| l.strip_prefix("tcp_copy "))?;
        let get = |key: &str| {
            line.split(' ')
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        };
        let num = |key: &str| get(key)?.parse::<u64>().ok();
        Some(CopyLine {
            bytes: num("bytes")?,
            us: num("us")?,
            fnv: u32::from_str_radix(get("fnv")?.strip_prefix("0x")?, 16).ok()?,
            net_heap: num("net_heap")?,
            heap_peak: num("heap_peak")?,
            heap_after: num("heap_after")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_line_parses() {
        let c = "x\ntcp_copy bytes=65536 us=12345 fnv=0x70909dc5 net_heap=6088 heap_peak=6100 heap_after=0\n";
        assert_eq!(
            CopyLine::find(c),
            Some(CopyLine {
                bytes: 65536,
                us: 12_345,
                fnv: 0x7090_9dc5,
                net_heap: 6088,
                heap_peak: 6100,
                heap_after: 0
            })
        );
        assert_eq!(CopyLine::find("tcp_copy bytes=1 us=2"), None);
    }

    #[test]
    fn fnv_matches_the_reference_values() {
        assert_eq!(fnv1a(b""), 0x811C_9DC5);
        assert_eq!(fnv1a(b"a"), 0xE40C_292C);
    }

    #[test]
    fn command_line_has_the_forward_storage_and_cut() {
        let mut r = Mps2Run::new("/fw.elf");
        r.storage = Some("/tmp/s.bin".into());
        r.cut = Some(7);
        r.args = vec!["write".into()];
        let cmd = r.command();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(
            &"enable=on,target=native,arg=rota,arg=storage=/tmp/s.bin,arg=cut=7,arg=write".into()
        ));
        assert!(args.contains(&"user,restrict=on".into()));
        assert!(args.contains(&"-nographic".into()));
        r.line = Some("/tmp/uart.sock".into());
        let args: Vec<String> = r
            .command()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(!args.contains(&"-nographic".into()));
        assert!(args.windows(2).any(|w| w == ["-serial", "chardev:line"]));
        assert!(args.windows(2).any(|w| w
            == [
                "-chardev",
                "socket,id=line,path=/tmp/uart.sock,server=on,wait=on"
            ]));
    }

    #[test]
    fn the_forward_goes_to_the_bridge_with_the_port_only() {
        assert_eq!(
            nic_value(Some("open_eth"), Some(("/b/rota-bridge".into(), 4321))),
            "user,restrict=on,model=open_eth,guestfwd=tcp:10.0.2.100:8266-cmd:/b/rota-bridge 4321"
        );
        assert_eq!(nic_value(None, None), "user,restrict=on");
    }
}
