//! QEMU's Xtensa semihosting (`-semihosting`), as implemented in QEMU 7.2 `target/xtensa/xtensa-semi.c`.
//!
//! `simcall` (encoded as the bytes 00 51 00) with a2 = call number and a3, a4, a5 = arguments;
//! the result comes back in a2 and the guest errno in a3. Calls used here: 1 = exit(code),
//! 4 = write(fd, buf, len); fd 1 and 2 go to the QEMU console (stdio with `-nographic`).

/// SYS_exit.
pub const SYS_EXIT: u32 = 1;
/// SYS_write.
pub const SYS_WRITE: u32 = 4;

/// Issues `simcall`; returns (a2, a3) = (result, errno).
///
/// # Safety
/// The arguments must be valid for the call (e.g. a readable buffer for write).
#[inline(always)]
pub unsafe fn simcall(nr: u32, a: u32, b: u32, c: u32) -> (u32, u32) {
    let r: u32;
    let errno: u32;
    // SAFETY: per the caller; simcall touches only a2..a5 and the memory named by the arguments.
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

/// write(fd, buf): bytes written, or the guest errno.
pub fn write(fd: u32, buf: &[u8]) -> Result<usize, u32> {
    // SAFETY: `buf` is readable for its length.
    let (r, errno) = unsafe { simcall(SYS_WRITE, fd, buf.as_ptr() as u32, buf.len() as u32) };
    if r as i32 == -1 {
        Err(errno)
    } else {
        Ok(r as usize)
    }
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
