//! Opening the serial line of `rota-bridge serial`: a tty (a USB-serial adapter, set to raw mode at
//! the baud rate asked for) or a Unix socket (QEMU's `-chardev socket,path=...,server=on`, which may
//! not exist yet when the bridge starts).

use rustix::fs::{Mode, OFlags};
use rustix::termios::{self, ControlModes, OptionalActions, QueueSelector};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A line opened: its two directions, and what it is (for the log).
pub struct Line {
    /// What the device sends.
    pub input: Box<dyn Read + Send>,
    /// What goes to the device.
    pub output: Box<dyn Write + Send>,
    /// "tty at <baud> baud" or "socket".
    pub what: String,
}

/// Opens `path`: a tty is set to raw 8N1 at `baud` (and what it had received before is dropped); a
/// Unix socket is connected. A path that does not exist yet, or a socket nobody listens on yet, is
/// tried again until `wait` has passed.
pub fn open(path: &Path, baud: u32, wait: Duration) -> io::Result<Line> {
    let deadline = Instant::now() + wait;
    loop {
        let retry = match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(s) => {
                    return Ok(Line {
                        input: Box::new(s.try_clone()?),
                        output: Box::new(s),
                        what: "socket".into(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => e,
                Err(e) => return Err(e),
            },
            Ok(m) if m.file_type().is_char_device() => return tty(path, baud),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "neither a tty nor a Unix socket",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => e,
            Err(e) => return Err(e),
        };
        if Instant::now() >= deadline {
            return Err(retry);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens the tty at `path` (never as the process's controlling terminal) in raw mode: 8 data bits,
/// no parity, no flow control, no echo or line editing, no translation of any byte (a frame's
/// bytes, and console text, pass unchanged), modem lines ignored, reads returning each byte as it
/// comes; then `baud` both ways, checked by reading the settings back.
fn tty(path: &Path, baud: u32) -> io::Result<Line> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut t = termios::tcgetattr(&fd)?;
    t.make_raw();
    t.control_modes |= ControlModes::CLOCAL | ControlModes::CREAD;
    t.control_modes -= ControlModes::CSTOPB | ControlModes::CRTSCTS;
    t.set_speed(baud)?;
    termios::tcsetattr(&fd, OptionalActions::Now, &t)?;
    let set = termios::tcgetattr(&fd)?;
    if set.output_speed() != baud || set.input_speed() != baud {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the tty does not take {baud} baud"),
        ));
    }
    termios::tcflush(&fd, QueueSelector::IFlush)?;
    let file = File::from(fd);
    Ok(Line {
        input: Box::new(file.try_clone()?),
        output: Box::new(file),
        what: format!("tty at {baud} baud"),
    })
}
