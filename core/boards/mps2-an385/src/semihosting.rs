//! The few semihosting calls the board uses: the command line, host files, and exit with a code.
//!
//! QEMU runs them on the host (`-semihosting-config enable=on,target=native`). Paths and the command
//! line are plain bytes; the command line is QEMU's `arg=` values joined by spaces.

use cortex_m_semihosting::{nr, syscall, syscall1};

/// `SYS_EXIT_EXTENDED`: exit with a reason and a sub-code (QEMU's exit status is the sub-code).
const EXIT_EXTENDED: usize = 0x20;
/// Reason code "application exit".
const ADP_STOPPED_APPLICATION_EXIT: usize = 0x2_0026;

/// Opening modes (ISO C `fopen` modes as semihosting numbers them).
pub mod mode {
    /// `"r+b"`: read and write an existing file.
    pub const READ_WRITE: usize = 3;
    /// `"w+b"`: create or truncate, read and write.
    pub const CREATE: usize = 7;
}

/// Copies the command line into `buf`; returns it, or `None` when there is none or it does not fit.
pub fn cmdline(buf: &mut [u8]) -> Option<&[u8]> {
    let mut block = [buf.as_mut_ptr() as usize, buf.len()];
    // SAFETY: the block names a writable buffer of the given length; the host writes at most that,
    // and the used length back into the block (hence the pointer from a unique borrow).
    let r = unsafe { syscall1(nr::GET_CMDLINE, block.as_mut_ptr() as usize) };
    (r == 0).then(|| &buf[..block[1].min(buf.len())])
}

/// A host file opened through semihosting.
pub struct File(usize);

impl File {
    /// Opens `path` with `mode` (see [`mode`]).
    pub fn open(path: &[u8], mode: usize) -> Option<File> {
        let block = [path.as_ptr() as usize, mode, path.len()];
        // SAFETY: the block names a readable buffer of the given length.
        let fd = unsafe { syscall(nr::OPEN, &block) };
        (fd as isize != -1).then_some(File(fd))
    }

    /// The file's length in bytes.
    pub fn length(&self) -> Option<usize> {
        let block = [self.0];
        // SAFETY: a plain handle argument.
        let n = unsafe { syscall(nr::FLEN, &block) };
        (n as isize >= 0).then_some(n)
    }

    /// Reads into `buf` from absolute position `pos`; returns the number of bytes read.
    pub fn read_at(&mut self, pos: usize, buf: &mut [u8]) -> usize {
        let seek = [self.0, pos];
        // SAFETY: plain arguments.
        if unsafe { syscall(nr::SEEK, &seek) } != 0 {
            return 0;
        }
        let block = [self.0, buf.as_mut_ptr() as usize, buf.len()];
        // SAFETY: the block names a writable buffer of the given length. The call returns how many
        // bytes were NOT read.
        let left = unsafe { syscall(nr::READ, &block) };
        buf.len().saturating_sub(left)
    }

    /// Writes all of `bytes` at absolute position `pos`.
    pub fn write_at(&mut self, pos: usize, bytes: &[u8]) -> bool {
        let seek = [self.0, pos];
        // SAFETY: plain arguments.
        if unsafe { syscall(nr::SEEK, &seek) } != 0 {
            return false;
        }
        let block = [self.0, bytes.as_ptr() as usize, bytes.len()];
        // SAFETY: the block names a readable buffer of the given length; returns bytes NOT written.
        unsafe { syscall(nr::WRITE, &block) == 0 }
    }
}

/// Ends the emulator with exit status `code` (QEMU supports `SYS_EXIT_EXTENDED`).
pub fn exit(code: u32) -> ! {
    let block = [ADP_STOPPED_APPLICATION_EXIT, code as usize];
    // SAFETY: plain arguments; QEMU does not return from this call.
    unsafe { syscall(EXIT_EXTENDED, &block) };
    loop {
        cortex_m::asm::wfi();
    }
}
