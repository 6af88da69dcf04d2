//! The storage region at boot: plain RAM, or loaded from and written through to a host file.
//!
//! Semihosting command line (QEMU's `-semihosting-config ...,arg=rota,arg=storage=<path>,arg=cut=<n>`,
//! words separated by spaces), as `rota-hostflash` reads it:
//! - `storage=<path>`: the region's contents live in this host file. At boot the file is opened
//!   (created if missing) and read over the region; a shorter file is extended with what the region
//!   held (the `-device loader` image, if any). Every later write and erase is written through.
//! - `cut=<n>`: flash operation `n` (from 0) is cut short as `rota_hostflash::persist` describes, and
//!   the emulator exits with [`crate::POWER_CUT_EXIT`]. Only in a build with the `power-cut` feature;
//!   any other build refuses to start with `cut=` rather than run without the cut a test asked for.
//!
//! This module is the board's part: the file over Arm semihosting ([`HostFile`]).

use crate::semihosting::{self, mode, File};
use rota_hostflash::Backing;
pub use rota_hostflash::{arg, flag, number, Origin};

/// The board's flash type.
pub type Flash = rota_hostflash::Flash<&'static mut [u8], HostFile>;

/// The storage file, written through by `rota_hostflash::PersistentFlash`.
pub struct HostFile(File);

impl Backing for HostFile {
    fn store(&mut self, offset: u32, bytes: &[u8]) -> bool {
        self.0.write_at(offset as usize, bytes)
    }

    fn power_cut(&mut self) {
        semihosting::exit(crate::POWER_CUT_EXIT)
    }
}

impl rota_hostflash::HostFile for HostFile {
    fn open(path_nul: &[u8]) -> Option<Self> {
        File::open(name_arg(path_nul), mode::READ_WRITE).map(HostFile)
    }

    fn create(path_nul: &[u8]) -> Option<Self> {
        File::open(name_arg(path_nul), mode::CREATE).map(HostFile)
    }

    fn length(&mut self) -> Option<usize> {
        self.0.length()
    }

    fn read_at(&mut self, pos: usize, buf: &mut [u8]) -> bool {
        self.0.read_at(pos, buf) == buf.len()
    }
}

/// Builds the flash over `region` as the command line says; also returns where its contents came from.
pub fn open(region: &'static mut [u8], cmdline: &[u8]) -> (Flash, Origin) {
    rota_hostflash::open(region, cmdline)
}

/// The path without its NUL (semihosting takes the length without it; the NUL must follow in memory).
fn name_arg(nul_terminated: &[u8]) -> &[u8] {
    &nul_terminated[..nul_terminated.len() - 1]
}
