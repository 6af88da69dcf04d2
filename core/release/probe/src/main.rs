//! One Ed25519 verification with the candidate crate the build selects (`--features dalek`,
//! `dalek-fast`, `compact`, `compact-small`, `salty`; `release`: rota-release's own `verify` and
//! `Manifest::parse`, what a device links; none: the baseline, the same program with a verification
//! that does nothing), measured on the device itself under QEMU:
//! - instructions: a clock that QEMU's `-icount shift=5` advances by 32 ns of virtual time per
//!   executed instruction, read before and after the call (mps2-an385: CMSDK TIMER0 at 25 MHz,
//!   0.8 ticks per instruction; the LX106: CCOUNT at 40 MHz, 1.28 ticks per instruction);
//! - stack: everything below the caller's frame painted before the call, the deepest changed word
//!   after it, counted from the caller's stack pointer at the call (the verification's own frames;
//!   the 64 bytes below a painter's frame are never painted, so less than about 100 B reads as that);
//! - the result: the signature must verify, and not once one bit of it is flipped.
//!
//! Prints `probe: candidate=<name> ok=<0|1> bad=<0|1> ticks=<n> stack=<bytes>` and exits 0 when the
//! results are right. Flash is measured on the ELF against the baseline's (docs/signing.md).
#![no_std]
#![no_main]
#![cfg_attr(target_arch = "xtensa", feature(asm_experimental_arch))]

#[cfg(any(
    all(feature = "dalek", feature = "compact"),
    all(feature = "dalek", feature = "salty"),
    all(feature = "compact", feature = "salty"),
    all(
        feature = "release",
        any(feature = "dalek", feature = "compact", feature = "salty")
    )
))]
compile_error!("one candidate per build");

use core::hint::black_box;
use core::ptr::{addr_of, addr_of_mut};

/// RFC 8032 Ed25519 public key of the seed 00 01 02 .. 1f.
const KEY: [u8; 32] = hex32("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8");
/// Its signature over [`message`] (made on the host with Python's `cryptography`).
const SIG: [u8; 64] = {
    let r = hex32("ce30bba5b542da08b11ee6777c0eedcc12b2a7890a70c1e7b11288148d9fdfa2");
    let s = hex32("1b7ef7e49b014fe58e255663dd175de36f98d0624f53cfd6886e5a97ff6e0d0f");
    let mut out = [0u8; 64];
    let mut i = 0;
    while i < 32 {
        out[i] = r[i];
        out[32 + i] = s[i];
        i += 1;
    }
    out
};
/// The signed message's length: the largest release manifest (rota-release's `MANIFEST_MAX`).
const MSG_LEN: usize = 732;

const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            _ => c - b'a' + 10,
        }
    }
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// The candidate's name.
const CANDIDATE: &str = if cfg!(feature = "dalek-fast") {
    "ed25519-dalek+fast"
} else if cfg!(feature = "dalek") {
    "ed25519-dalek"
} else if cfg!(feature = "compact-small") {
    "ed25519-compact+opt_size"
} else if cfg!(feature = "compact") {
    "ed25519-compact"
} else if cfg!(feature = "salty") {
    "salty"
} else if cfg!(feature = "release") {
    "rota-release"
} else {
    "none"
};

/// One verification: whether `sig` is `key`'s signature over `msg`.
#[inline(never)]
fn verify(msg: &[u8], sig: &[u8; 64], key: &[u8; 32]) -> bool {
    #[cfg(feature = "dalek")]
    {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(key) else {
            return false;
        };
        key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok()
    }
    #[cfg(feature = "compact")]
    {
        let key = ed25519_compact::PublicKey::new(*key);
        let sig = ed25519_compact::Signature::new(*sig);
        key.verify(msg, &sig).is_ok()
    }
    #[cfg(feature = "salty")]
    {
        let Ok(key) = salty::PublicKey::try_from(key) else {
            return false;
        };
        key.verify(msg, &salty::Signature::from(sig)).is_ok()
    }
    #[cfg(feature = "release")]
    {
        // The manifest check a device makes before it verifies (the probe's message is not a
        // manifest, so only its cost counts), then the signature under the one key.
        black_box(rota_release::Manifest::parse(msg).is_ok());
        rota_release::verify(msg, sig, &[*key]).is_ok()
    }
    #[cfg(not(any(
        feature = "dalek",
        feature = "compact",
        feature = "salty",
        feature = "release"
    )))]
    {
        black_box((msg, sig, key));
        black_box(true)
    }
}

// The heap lies right below the stack on both boards (`_heap_end` = `_stack_end`) and the probe
// allocates nothing: painting from the heap's start sees a verification deeper than the 10 KB stack.
extern "C" {
    static mut _heap_start: u32;
    static mut _stack_start: u32;
}

const PAINT: u32 = 0x5AC3_5AC3;

/// Paints the heap and the stack, from the heap's start to 64 bytes below this function's frame.
#[inline(never)]
fn paint() {
    let marker = 0u32;
    let limit = (addr_of!(marker) as usize - 64) & !3;
    let mut p = addr_of_mut!(_heap_start) as usize;
    while p < limit {
        // SAFETY: `_heap_start..limit` is the unused heap (nothing allocates) and the unused part
        // of this CPU's stack (below the current frame and a margin): nothing live is there.
        unsafe { (p as *mut u32).write_volatile(PAINT) };
        p += 4;
    }
}

/// The stack pointer.
#[inline(always)]
fn sp() -> usize {
    let sp: usize;
    // SAFETY: copies the stack pointer register into another; nothing else changes.
    unsafe {
        #[cfg(target_arch = "arm")]
        core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags));
        #[cfg(target_arch = "xtensa")]
        core::arch::asm!("mov {}, a1", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    sp
}

/// The lowest address of the stack written since [`paint`].
fn deepest() -> usize {
    let top = addr_of!(_stack_start) as usize;
    let mut p = addr_of!(_heap_start) as usize;
    // SAFETY: reads stay inside the heap and stack regions.
    while p < top && unsafe { (p as *const u32).read_volatile() } == PAINT {
        p += 4;
    }
    p
}

fn write_dec(out: &mut impl FnMut(&[u8]), mut n: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out(&buf[i..]);
}

fn run() -> u32 {
    let mut msg = [0u8; MSG_LEN];
    for (i, b) in msg.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    let key = black_box(KEY);
    let mut sig = black_box(SIG);
    paint();
    let frame = sp();
    let t0 = clock::now();
    let ok = verify(black_box(&msg), &sig, &key);
    let t1 = clock::now();
    let stack = frame.saturating_sub(deepest()) as u32;

    sig[10] ^= 1;
    let bad = verify(black_box(&msg), &sig, &key);

    let out = &mut |b: &[u8]| console::write(b);
    out(b"probe: candidate=");
    out(CANDIDATE.as_bytes());
    out(b" ok=");
    write_dec(out, ok as u32);
    out(b" bad=");
    write_dec(out, bad as u32);
    out(b" ticks=");
    write_dec(out, clock::elapsed(t0, t1));
    out(b" stack=");
    write_dec(out, stack);
    out(b"\n");
    let baseline = CANDIDATE == "none";
    u32::from(!(baseline || (ok && !bad)))
}

#[cfg(target_arch = "arm")]
mod clock {
    const TIMER0_CTRL: *mut u32 = 0x4000_0000 as *mut u32;
    const TIMER0_VALUE: *mut u32 = 0x4000_0004 as *mut u32;
    const TIMER0_RELOAD: *mut u32 = 0x4000_0008 as *mut u32;

    /// TIMER0's value (counting down at 25 MHz), started on first use.
    pub fn now() -> u32 {
        // SAFETY: CMSDK TIMER0's registers on mps2-an385; nothing else uses the timer.
        unsafe {
            if TIMER0_CTRL.read_volatile() & 1 == 0 {
                TIMER0_RELOAD.write_volatile(u32::MAX);
                TIMER0_VALUE.write_volatile(u32::MAX);
                TIMER0_CTRL.write_volatile(1);
            }
            TIMER0_VALUE.read_volatile()
        }
    }

    /// Ticks from `t0` to `t1` (a down-counter).
    pub fn elapsed(t0: u32, t1: u32) -> u32 {
        t0.wrapping_sub(t1)
    }
}

#[cfg(target_arch = "arm")]
mod console {
    /// Writes to the host's stdout through semihosting.
    pub fn write(bytes: &[u8]) {
        if let Ok(mut out) = cortex_m_semihosting::hio::hstdout() {
            let _ = out.write_all(bytes);
        }
    }
}

#[cfg(target_arch = "arm")]
#[cortex_m_rt::entry]
fn main() -> ! {
    let code = run();
    let block = [0x2_0026usize, code as usize];
    // SAFETY: SYS_EXIT_EXTENDED with a readable two-word block: QEMU exits with `code`.
    unsafe { cortex_m_semihosting::syscall(0x20, &block) };
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(target_arch = "xtensa")]
mod clock {
    /// CCOUNT.
    pub fn now() -> u32 {
        rota_board_esp8266::rt::ccount()
    }

    /// Ticks from `t0` to `t1` (an up-counter).
    pub fn elapsed(t0: u32, t1: u32) -> u32 {
        t1.wrapping_sub(t0)
    }
}

#[cfg(target_arch = "xtensa")]
mod console {
    /// Writes to the console (semihosting on the sim machine).
    pub fn write(bytes: &[u8]) {
        rota_board_esp8266::console::write(bytes)
    }
}

#[cfg(target_arch = "xtensa")]
#[global_allocator]
static HEAP: rota_core::heap::AccountingHeap = rota_core::heap::AccountingHeap::empty();

#[cfg(target_arch = "xtensa")]
rota_board_esp8266::entry!(xtensa_main);

#[cfg(target_arch = "xtensa")]
fn xtensa_main() -> ! {
    rota_board_esp8266::exit(run())
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    console::write(b"probe: panic\n");
    loop {
        core::hint::spin_loop();
    }
}
