//! Storage for emulated boards: the storage region is RAM driven as NOR flash ([`MemFlash`]) and,
//! when the command line names a host file, kept in that file across guest resets and emulator runs.
//!
//! QEMU restores `-device loader` images at every guest reset and keeps nothing across runs, so a board
//! that reaches host files (semihosting) keeps its region in a file named on its command line (the
//! words of QEMU's `-semihosting-config ...,arg=rota,arg=storage=<path>,arg=cut=<n>`, joined by
//! spaces):
//! - `storage=<path>`: at boot the file is opened read/write and read over the region; a file shorter
//!   than the region is extended with what the region held (the `-device loader` image, if any); a
//!   missing file is created from the region. From then on every write and erase is written through
//!   ([`PersistentFlash`]). Without `storage=` the region is plain memory.
//! - `cut=<n>`: flash operation `n` (from 0) is cut short as [`persist`] describes, and the run ends
//!   with [`POWER_CUT_EXIT`]. Only with the cargo feature `power-cut`; without it, [`open`] reports
//!   [`Origin::CutUnsupported`] so that the board refuses to start rather than run without the cut a
//!   test asked for.
//!
//! The board supplies the region and the file access ([`HostFile`]: Arm semihosting on mps2-an385, the
//! Xtensa `simcall` on the ESP8266's xtfpga machine); the rest is here, tested on the host.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod persist;

pub use persist::{Backing, PersistError, PersistentFlash};
use rota_memflash::MemFlash;

/// Exit status of a run ended by an injected power cut (`cut=<n>`); a board's
/// [`Backing::power_cut`] ends the emulator with it.
pub const POWER_CUT_EXIT: u32 = 86;

/// Longest `storage=` path, in bytes.
pub const PATH_MAX: usize = 255;

/// A host file as a board reaches it. [`Backing::store`] writes at an absolute position.
pub trait HostFile: Backing + Sized {
    /// Opens the existing file for reading and writing. `path_nul` is the path followed by one NUL
    /// byte (its last), for hosts that want NUL-terminated names.
    fn open(path_nul: &[u8]) -> Option<Self>;
    /// Creates the file (truncating an existing one), for reading and writing.
    fn create(path_nul: &[u8]) -> Option<Self>;
    /// The file's length in bytes.
    fn length(&mut self) -> Option<usize>;
    /// Reads `buf.len()` bytes at position `pos`; `false` unless all of them were read.
    fn read_at(&mut self, pos: usize, buf: &mut [u8]) -> bool;
}

/// The storage region of a board: RAM flash written through to a host file, if there is one.
pub type Flash<S, F> = PersistentFlash<S, Option<F>>;

/// Where the region's contents came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// No `storage=`: the region as loaded into memory (not persistent).
    Memory,
    /// Read from the storage file (this many bytes; the rest, if any, written to it from memory).
    File(usize),
    /// The file was missing and has been created from the region's contents.
    Created,
    /// `storage=` was given but the file could not be opened, read or created, or its path is too
    /// long (the region is then plain memory).
    Failed,
    /// `cut=` was given to a build without the `power-cut` feature (nothing was opened).
    CutUnsupported,
}

/// The value of the first `key=value` word of `cmdline` (words are separated by spaces).
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

/// A decimal number of at most 9 digits.
pub fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0u32, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

/// Builds the flash over `region` as `cmdline` says (see the crate docs); also returns where its
/// contents came from.
pub fn open<S, F>(mut region: S, cmdline: &[u8]) -> (Flash<S, F>, Origin)
where
    S: AsRef<[u8]> + AsMut<[u8]>,
    F: HostFile,
{
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
        Some(path) => match load::<F>(region.as_mut(), path) {
            Some((file, origin)) => (Some(file), origin),
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

/// Opens (or creates) the file at `path` and makes it and `region` hold the same bytes.
fn load<F: HostFile>(region: &mut [u8], path: &[u8]) -> Option<(F, Origin)> {
    let mut name = [0u8; PATH_MAX + 1];
    if path.is_empty() || path.len() > PATH_MAX || path.contains(&0) {
        return None;
    }
    name[..path.len()].copy_from_slice(path);
    let name = &name[..=path.len()];
    if let Some(mut file) = F::open(name) {
        let len = file.length()?.min(region.len());
        if !file.read_at(0, &mut region[..len]) {
            return None;
        }
        if len < region.len() && !file.store(len as u32, &region[len..]) {
            return None;
        }
        return Some((file, Origin::File(len)));
    }
    let mut file = F::create(name)?;
    file.store(0, region).then_some((file, Origin::Created))
}

#[cfg(test)]
mod tests;
