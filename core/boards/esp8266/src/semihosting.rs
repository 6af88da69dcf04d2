//! QEMU's Xtensa semihosting (`-semihosting`), as implemented in QEMU 7.2 `target/xtensa/xtensa-semi.c`.
//!
//! `simcall` (encoded as the bytes 00 51 00) with a2 = call number and a3, a4, a5 = arguments;
//! the result comes back in a2 and the guest errno in a3. The sim machine uses 1 = exit(code) and
//! 4 = write(fd, buf, len) (fd 1 and 2 go to the QEMU console: stdio with `-nographic`); the xtfpga
//! machine uses exit, the command line (1000..1002) and host files (3, 4, 5, 6, 19) for its storage.
//!
//! Open flags (checked here with Debian's QEMU 7.2): QEMU hands a3..a5 of open to the host's `open(2)`
//! unchanged, so the flags are the host's (Linux: `O_RDWR` 2, `O_CREAT` 0x40, `O_TRUNC` 0x200; with
//! GDB's numbering, 0x202 did not create a missing file). Later QEMU versions route the call through
//! their common layer (`semihosting/syscalls.c`), which takes GDB File-I/O flags (`O_CREAT` 0x200,
//! `O_TRUNC` 0x400) and ignores bits it does not know. [`open_flags`] is chosen to mean the same on
//! both. lseek's `whence` values are the same everywhere ([`seek`]).

/// SYS_exit.
pub const SYS_EXIT: u32 = 1;
/// SYS_read.
#[cfg(feature = "xtfpga")]
pub const SYS_READ: u32 = 3;
/// SYS_write.
pub const SYS_WRITE: u32 = 4;
/// SYS_open(path, flags, mode): a host file descriptor.
#[cfg(feature = "xtfpga")]
pub const SYS_OPEN: u32 = 5;
/// SYS_close(fd).
#[cfg(feature = "xtfpga")]
pub const SYS_CLOSE: u32 = 6;
/// SYS_lseek(fd, offset, whence): the new position.
#[cfg(feature = "xtfpga")]
pub const SYS_LSEEK: u32 = 19;
/// The number of command-line words (QEMU's `-semihosting-config arg=` values).
#[cfg(feature = "xtfpga")]
pub const SYS_ARGC: u32 = 1000;
/// Bytes the argv block takes: (argc + 1) pointers, then the NUL-terminated words.
#[cfg(feature = "xtfpga")]
pub const SYS_ARGV_SZ: u32 = 1001;
/// Writes the argv block to the buffer in a3.
#[cfg(feature = "xtfpga")]
pub const SYS_ARGV: u32 = 1002;

/// Open flags that mean the same to QEMU 7.2 (the host's flags, Linux) and to later QEMU (GDB File-I/O
/// flags; see the module docs).
#[cfg(feature = "xtfpga")]
pub mod open_flags {
    /// Read and write (2 in both numberings).
    pub const RDWR: u32 = 0x2;
    /// Create the file if it does not exist: Linux's `O_CREAT` (0x40) and, for the GDB numbering,
    /// its `O_CREAT` (0x200, which Linux reads as `O_TRUNC`: harmless, this is only used on a missing
    /// file). Each numbering ignores or accepts the other bit.
    pub const CREATE: u32 = 0x40 | 0x200;
}

/// `whence` values of lseek (the same on the host and in GDB File-I/O).
#[cfg(feature = "xtfpga")]
pub mod seek {
    /// From the start of the file.
    pub const SET: u32 = 0;
    /// From its end.
    pub const END: u32 = 2;
}

/// Issues `simcall`; returns (a2, a3) = (result, errno).
///
/// # Safety
/// The arguments must be valid for the call (e.g. a readable buffer for write, a writable one for
/// read).
#[inline(always)]
pub unsafe fn simcall(nr: u32, a: u32, b: u32, c: u32) -> (u32, u32) {
    let r: u32;
    let errno: u32;
    // SAFETY: per the caller; simcall touches only a2..a5 and the memory named by the arguments
    // (the asm is not `nomem`, so the compiler assumes that memory may be read and written).
    unsafe {
        core::arch::asm!(
            ".byte 0x00, 0x51, 0x00",
            inout("a2") nr => r,
            inout("a3") a => errno,
            in("a4") b,
            in("a5") c,
            options(nostack)
        );
    }
    (r, errno)
}

/// A result of -1 is an error with the guest errno.
fn check((r, errno): (u32, u32)) -> Result<u32, u32> {
    if r as i32 == -1 {
        Err(errno)
    } else {
        Ok(r)
    }
}

/// write(fd, buf): bytes written, or the guest errno.
pub fn write(fd: u32, buf: &[u8]) -> Result<usize, u32> {
    // SAFETY: `buf` is readable for its length.
    check(unsafe { simcall(SYS_WRITE, fd, buf.as_ptr() as u32, buf.len() as u32) })
        .map(|n| n as usize)
}

/// read(fd, buf): bytes read (0 at the end of the file), or the guest errno.
#[cfg(feature = "xtfpga")]
pub fn read(fd: u32, buf: &mut [u8]) -> Result<usize, u32> {
    // SAFETY: `buf` is writable for its length.
    check(unsafe { simcall(SYS_READ, fd, buf.as_mut_ptr() as u32, buf.len() as u32) })
        .map(|n| n as usize)
}

/// open(path, flags, mode): a host file descriptor, or the guest errno. `path_nul` must end with
/// a NUL byte (QEMU reads the name up to it); otherwise the call is not made (errno 22, EINVAL).
#[cfg(feature = "xtfpga")]
pub fn open(path_nul: &[u8], flags: u32, mode: u32) -> Result<u32, u32> {
    if path_nul.last() != Some(&0) {
        return Err(22);
    }
    // SAFETY: `path_nul` is readable up to and including its NUL.
    check(unsafe { simcall(SYS_OPEN, path_nul.as_ptr() as u32, flags, mode) })
}

/// close(fd).
#[cfg(feature = "xtfpga")]
pub fn close(fd: u32) -> Result<(), u32> {
    // SAFETY: no memory argument.
    check(unsafe { simcall(SYS_CLOSE, fd, 0, 0) }).map(drop)
}

/// lseek(fd, offset, whence): the new position, or the guest errno.
#[cfg(feature = "xtfpga")]
pub fn lseek(fd: u32, offset: u32, whence: u32) -> Result<u32, u32> {
    // SAFETY: no memory argument.
    check(unsafe { simcall(SYS_LSEEK, fd, offset, whence) })
}

/// The command line: QEMU's `arg=` words joined by single spaces, built in `buf` (the argv block
/// is written there first). `None` when it does not fit.
#[cfg(feature = "xtfpga")]
pub fn cmdline(buf: &mut [u8]) -> Option<&[u8]> {
    // SAFETY: no memory argument.
    let argc = unsafe { simcall(SYS_ARGC, 0, 0, 0) }.0 as usize;
    // SAFETY: no memory argument.
    let size = unsafe { simcall(SYS_ARGV_SZ, 0, 0, 0) }.0 as usize;
    let strings = argc.checked_add(1)?.checked_mul(4)?;
    if argc == 0 || size > buf.len() || size <= strings {
        return None;
    }
    // SAFETY: `buf` is writable for `size` bytes, what the block needs (QEMU writes no more).
    unsafe { simcall(SYS_ARGV, buf.as_mut_ptr() as u32, 0, 0) };
    // The words follow the pointers, each ending with a NUL: join them with spaces.
    let words = &mut buf[strings..size];
    let last = words.len() - 1;
    for b in &mut words[..last] {
        if *b == 0 {
            *b = b' ';
        }
    }
    Some(&words[..last])
}

/// Ends QEMU with `code` as its exit status.
pub fn exit(code: u32) -> ! {
    // SAFETY: exit takes no memory argument.
    unsafe {
        simcall(SYS_EXIT, code, 0, 0);
    }
    // Only reached without -semihosting (then simcall does not exit).
    loop {
        core::hint::spin_loop();
    }
}
