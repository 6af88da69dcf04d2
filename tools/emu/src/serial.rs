//! Running a machine with its console UART on a QEMU chardev socket, joined by `rota-bridge serial`
//! to a server on 127.0.0.1: the link to the server over the serial line (a device config with
//! `link = Serial`), as a real ESP8266 reaches it over its USB-serial adapter.
//!
//! QEMU serves the socket (`-chardev socket,id=line,path=<tmp>,server=on,wait=on`) and starts the
//! guest only once a client is connected, so nothing the guest prints is lost. The client is the
//! bridge, or a [`crate::line`] proxy in front of it that can damage a byte. The console is what the
//! bridge prints on its stdout; keys are typed into its stdin. The guest's NIC, if it has one, stays
//! on QEMU's restricted user network with no forward: the serial line is the only way out.

use crate::line::{self, Tap};
use crate::Run;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The chardev's id on QEMU's command line.
pub const CHARDEV_ID: &str = "line";

/// The `-chardev` value: a Unix socket at `path` that QEMU creates and waits on.
pub fn chardev_value(path: &Path) -> String {
    let p = path.display().to_string();
    assert!(!p.contains(','), "socket path unusable in -chardev: {p}");
    format!("socket,id={CHARDEV_ID},path={p},server=on,wait=on")
}

/// The arguments that put a machine's first serial port on the socket at `path` (no display, no
/// console on stdio): for mps2-an385, whose `-nographic` would put it on stdio.
pub fn chardev_args(path: &Path) -> Vec<String> {
    [
        "-display".to_string(),
        "none".into(),
        "-serial".into(),
        format!("chardev:{CHARDEV_ID}"),
        "-chardev".into(),
        chardev_value(path),
    ]
    .into()
}

/// One boot over the serial line.
pub struct SerialBoot<'a> {
    /// The port on 127.0.0.1 the bridge connects to (`None`: one where nothing listens, so each
    /// connection is refused).
    pub server: Option<u16>,
    /// Typed into the bridge's stdin at each "press a key" prompt.
    pub keys: &'a [u8],
    /// A proxy between QEMU and the bridge, if any.
    pub tap: Option<&'a Tap>,
    /// QEMU is killed after this long.
    pub limit: Duration,
}

/// Boots the QEMU command `qemu(socket)` makes (its console UART on the chardev socket it is given,
/// by [`crate::net::Mps2Run::line`] or [`crate::xtfpga::XtfpgaRun::line`]) with `rota-bridge
/// serial` on that line. The run's console is what the bridge printed, then QEMU's own output; its
/// log is the bridge's.
pub fn boot(qemu: impl FnOnce(&Path) -> Command, b: &SerialBoot<'_>) -> Run {
    let dir = tempfile::tempdir().expect("socket dir");
    let socket = dir.path().join("uart.sock");
    let cmd = qemu(&socket);
    let emulator = crate::under_timeout(&cmd, b.limit)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run qemu (make setup installs it)");
    let bridge_line = match b.tap {
        Some(tap) => {
            let p = dir.path().join("bridge.sock");
            line::proxy(socket, &p, tap.clone());
            p
        }
        None => socket,
    };
    let port = b.server.unwrap_or_else(crate::system::free_port);
    let mut bridge = Command::new(crate::net::bridge())
        .args(["serial", "--line"])
        .arg(&bridge_line)
        .args(["--server-port", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rota-bridge serial");
    let keys = b.keys.to_vec();
    let (stdout, stdin) = (bridge.stdout.take(), bridge.stdin.take());
    let console = std::thread::spawn(move || {
        crate::system::console_typing(stdout.expect("stdout"), stdin.expect("stdin"), &keys)
    });
    let mut stderr = bridge.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let out = emulator.wait_with_output().expect("qemu output");
    // QEMU is gone and its socket with it: the bridge ends by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    while bridge.try_wait().expect("bridge status").is_none() {
        if Instant::now() > deadline {
            let _ = bridge.kill();
            let _ = bridge.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut text = String::from_utf8_lossy(&console.join().expect("console")).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Run {
        console: text,
        status: out.status.code().filter(|&c| c != 124),
        log: log.join().expect("bridge log"),
    }
}

/// The `serial_copy bytes=<n> ms=<t> fnv=0x<hex>` line of a raw copy over the console UART (the
/// boards' `serial_copy` examples).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialCopy {
    /// Bytes received.
    pub bytes: u64,
    /// Milliseconds from the first of them to the last.
    pub ms: u64,
    /// Their FNV-1a.
    pub fnv: u32,
}

impl SerialCopy {
    /// Finds and parses the line in `console`.
    pub fn find(console: &str) -> Option<SerialCopy> {
        let line = console
            .lines()
            .find(|l| l.starts_with("serial_copy bytes="))?
            .strip_prefix("serial_copy ")?;
        let get = |key: &str| {
            line.split(' ')
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        };
        Some(SerialCopy {
            bytes: get("bytes")?.parse().ok()?,
            ms: get("ms")?.parse().ok()?,
            fnv: u32::from_str_radix(get("fnv")?.strip_prefix("0x")?, 16).ok()?,
        })
    }
}

/// The line a `serial_copy` guest prints once its UART takes bytes.
pub const SERIAL_COPY_READY: &str = "serial_copy ready\n";

/// A raw copy over the line: boots the QEMU command `qemu(socket)` makes (a `serial_copy` guest
/// with its console UART on that chardev socket), and once it says it is ready writes `data`'s
/// length (4 bytes, little-endian) and `data` straight into the socket (no framing, no bridge);
/// reads the console until QEMU exits or `limit` passes.
pub fn raw_copy(
    qemu: impl FnOnce(&Path) -> Command,
    data: &[u8],
    limit: Duration,
) -> (Run, Option<SerialCopy>) {
    let dir = tempfile::tempdir().expect("socket dir");
    let socket = dir.path().join("uart.sock");
    let cmd = qemu(&socket);
    let emulator = crate::under_timeout(&cmd, limit)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run qemu (make setup installs it)");
    let mut line =
        line::connect_when_there(&socket, Duration::from_secs(10)).expect("QEMU's socket");
    let mut console = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut writer = None;
    while let Ok(n @ 1..) = line.read(&mut chunk) {
        console.extend_from_slice(&chunk[..n]);
        if writer.is_none() && String::from_utf8_lossy(&console).contains(SERIAL_COPY_READY) {
            let mut input = line.try_clone().expect("clone");
            let mut bytes = (data.len() as u32).to_le_bytes().to_vec();
            bytes.extend_from_slice(data);
            writer = Some(std::thread::spawn(move || {
                let _ = input.write_all(&bytes);
            }));
        }
    }
    if let Some(w) = writer {
        let _ = w.join();
    }
    let out = emulator.wait_with_output().expect("qemu output");
    let mut text = String::from_utf8_lossy(&console).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let copy = SerialCopy::find(&text);
    (
        Run {
            console: text,
            status: out.status.code().filter(|&c| c != 124),
            log: String::new(),
        },
        copy,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serial_copy_line_parses() {
        assert_eq!(
            SerialCopy::find("serial_copy ready\nserial_copy bytes=65536 ms=5012 fnv=0x70909dc5\n"),
            Some(SerialCopy {
                bytes: 65536,
                ms: 5012,
                fnv: 0x7090_9dc5
            })
        );
        assert_eq!(SerialCopy::find("serial_copy bytes=1 ms=x fnv=0x1"), None);
    }

    #[test]
    fn the_chardev_is_a_unix_socket_qemu_serves_and_waits_on() {
        assert_eq!(
            chardev_args(Path::new("/tmp/u.sock")),
            [
                "-display",
                "none",
                "-serial",
                "chardev:line",
                "-chardev",
                "socket,id=line,path=/tmp/u.sock,server=on,wait=on"
            ]
        );
    }
}
