//! The storage region at boot: plain RAM, or loaded from and written through to a host file.
//!
//! Semihosting command line (QEMU's `-semihosting-config ...,arg=rota,arg=storage=<path>,arg=cut=<n>`,
//! words separated by spaces):
//! - `storage=<path>`: the region's contents live in this host file. At boot the file is opened
//!   (created if missing) and read over the region; a shorter file is extended with what the region
//!   held (the `-device loader` image, if any). Every later write and erase is written through.
//! - `cut=<n>`: flash operation `n` (from 0) is cut short as `persist` describes, and the emulator
//!   exits with [`crate::POWER_CUT_EXIT`]. Only in a build with the `power-cut` feature; any other
//!   build refuses to start with `cut=` rather than run without the cut a test asked for.

use crate::persist::{Backing, PersistentFlash};
use crate::semihosting::{self, mode, File};
use rota_memflash::MemFlash;

/// The board's flash type.
pub type Flash = PersistentFlash<&'static mut [u8], Option<HostFile>>;

/// The value of the first `key=value` word of `cmdline`.
pub fn arg<'a>(cmdline: &'a [u8], key: &str) -> Option<&'a [u8]> {
    cmdline.split(|&b| b == b' ').find_map(|w| {
        w.strip_prefix(key.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
    })
}

/// Whether `word` appears alone on the command line.
pub fn flag(cmdline: &[u8], word: &str) -> bool {
    cmdline.split(|&b| b == b' ').any(|w| w == word.as_bytes())
}

/// A decimal number.
pub fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0u32, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

/// The storage file, written through by [`PersistentFlash`].
pub struct HostFile(File);

impl Backing for HostFile {
    fn store(&mut self, offset: u32, bytes: &[u8]) -> bool {
        self.0.write_at(offset as usize, bytes)
    }

    fn power_cut(&mut self) {
        semihosting::exit(crate::POWER_CUT_EXIT)
    }
}

/// Where the region's contents came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// No `storage=`: the region as loaded into memory (not persistent).
    Memory,
    /// Read from the storage file (this many bytes; the rest, if any, written to it from memory).
    File(usize),
    /// The file was missing and has been created from the region's contents.
    Created,
    /// `storage=` was given but the file could not be opened or created, or its path is too long.
    Failed,
    /// `cut=` was given to a build without the `power-cut` feature (nothing was opened).
    CutUnsupported,
}

/// Builds the flash over `region` as the command line says; also returns where its contents came from.
pub fn open(region: &'static mut [u8], cmdline: &[u8]) -> (Flash, Origin) {
    #[cfg(feature = "power-cut")]
    let cut = arg(cmdline, "cut").and_then(number);
    #[cfg(not(feature = "power-cut"))]
    if arg(cmdline, "cut").is_some() {
        return (
            PersistentFlash::new(MemFlash::new(region), None),
            Origin::CutUnsupported,
        );
    }
    let (backing, origin) = match arg(cmdline, "storage") {
        None => (None, Origin::Memory),
        Some(path) => match load(region, path) {
            Some((file, origin)) => (Some(HostFile(file)), origin),
            None => (None, Origin::Failed),
        },
    };
    #[cfg_attr(not(feature = "power-cut"), allow(unused_mut))]
    let mut flash = PersistentFlash::new(MemFlash::new(region), backing);
    #[cfg(feature = "power-cut")]
    if let Some(op) = cut {
        flash.cut_power_at(op);
    }
    (flash, origin)
}

fn load(region: &mut [u8], path: &[u8]) -> Option<(File, Origin)> {
    // Semihosting wants a NUL-terminated path.
    let mut name = [0u8; 256];
    if path.is_empty() || path.len() >= name.len() {
        return None;
    }
    name[..path.len()].copy_from_slice(path);
    let name = &name[..=path.len()];
    if let Some(mut file) = File::open(name_arg(name), mode::READ_WRITE) {
        let len = file.length()?.min(region.len());
        if file.read(&mut region[..len]) != len {
            return None;
        }
        if len < region.len() && !file.write_at(len, &region[len..]) {
            return None;
        }
        return Some((file, Origin::File(len)));
    }
    let mut file = File::open(name_arg(name), mode::CREATE)?;
    file.write_at(0, region).then_some((file, Origin::Created))
}

/// The path without its NUL (semihosting takes the length without it; the NUL must follow in memory).
fn name_arg(nul_terminated: &[u8]) -> &[u8] {
    &nul_terminated[..nul_terminated.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_words() {
        let c = b"rota storage=/tmp/a b.bin cut=12 write bytes=65536";
        assert_eq!(arg(c, "storage"), Some(&b"/tmp/a"[..]));
        assert_eq!(arg(c, "cut").and_then(number), Some(12));
        assert_eq!(arg(c, "bytes").and_then(number), Some(65536));
        assert_eq!(arg(c, "cu"), None);
        assert!(flag(c, "write"));
        assert!(!flag(c, "writ"));
        assert_eq!(number(b"12x"), None);
        assert_eq!(number(b""), None);
        assert_eq!(number(b"9999999999"), None);
    }
}
