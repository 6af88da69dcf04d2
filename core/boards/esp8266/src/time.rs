//! Time since boot from the CCOUNT cycle counter.
//!
//! CCOUNT is 32 bits wide: [`now_ms`] and [`now_us`] extend it to 64 bits, so one of them must be
//! called at least once per wrap (2^32 cycles: 107 s at 40 MHz under QEMU, 82 s at the chip's
//! 52 MHz). Interrupts are off, so plain atomics suffice.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::rt::ccount;

/// CCOUNT ticks per second.
///
/// `sim`: QEMU derives CCOUNT from its virtual clock at the lx106 core's configured clock
/// (measured: see docs/boards-esp8266.md). `xtfpga`: the same core and rate; the board reads it from
/// the FPGA at boot. `chip`: the CPU clock the ROM leaves, twice the crystal ([`crate::chip::CLOCK_HZ`]:
/// 52 MHz with the 26 MHz crystal assumed; unverified without a chip).
#[cfg(feature = "sim")]
pub const CCOUNT_HZ: u32 = 40_000_000;
/// CCOUNT ticks per second (see the `sim` variant).
#[cfg(feature = "chip")]
pub const CCOUNT_HZ: u32 = crate::chip::CLOCK_HZ;
/// CCOUNT ticks per second when the FPGA's clock register reads 0 (see [`set_ccount_hz`]): QEMU's
/// lx106 core runs at 40 MHz, as on the sim machine.
#[cfg(feature = "xtfpga")]
pub const CCOUNT_HZ: u32 = 40_000_000;

static LAST: AtomicU32 = AtomicU32::new(0);
static WRAPS: AtomicU32 = AtomicU32::new(0);
/// CCOUNT ticks per millisecond as the board read them (0 until [`set_ccount_hz`]).
#[cfg(feature = "xtfpga")]
static TICKS_PER_MS: AtomicU32 = AtomicU32::new(0);

/// Sets CCOUNT's rate (xtfpga: the CPU clock the FPGA register reports). Rates under 1 kHz are
/// ignored.
#[cfg(feature = "xtfpga")]
pub fn set_ccount_hz(hz: u32) {
    if hz >= 1000 {
        TICKS_PER_MS.store(hz / 1000, Ordering::Relaxed);
    }
}

/// CCOUNT ticks per millisecond.
fn ticks_per_ms() -> u32 {
    #[cfg(feature = "xtfpga")]
    match TICKS_PER_MS.load(Ordering::Relaxed) {
        0 => CCOUNT_HZ / 1000,
        n => n,
    }
    #[cfg(not(feature = "xtfpga"))]
    {
        CCOUNT_HZ / 1000
    }
}

/// CCOUNT extended to 64 bits.
pub fn cycles() -> u64 {
    let now = ccount();
    let last = LAST.load(Ordering::Relaxed);
    let mut wraps = WRAPS.load(Ordering::Relaxed);
    if now < last {
        wraps = wraps.wrapping_add(1);
        WRAPS.store(wraps, Ordering::Relaxed);
    }
    LAST.store(now, Ordering::Relaxed);
    (u64::from(wraps) << 32) | u64::from(now)
}

/// Milliseconds since [`cycles`] was first called (roughly since boot). On xtfpga also keeps QEMU's
/// main loop awake ([`keep_qemu_awake`]).
pub fn now_ms() -> u64 {
    read() / u64::from(ticks_per_ms())
}

/// Microseconds since [`cycles`] was first called, as [`now_ms`] (whose milliseconds are these
/// divided by 1000).
pub fn now_us() -> u64 {
    read() * 1000 / u64::from(ticks_per_ms())
}

/// [`cycles`], and on xtfpga the wake-up timer kept armed ([`keep_qemu_awake`]).
fn read() -> u64 {
    let c = cycles();
    #[cfg(feature = "xtfpga")]
    keep_qemu_awake(c as u32);
    c
}

/// How far ahead CCOMPARE0 is kept, in milliseconds.
#[cfg(feature = "xtfpga")]
pub const WAKE_MS: u32 = 2;

/// CCOUNT value CCOMPARE0 was last set to.
#[cfg(feature = "xtfpga")]
static WAKE_AT: AtomicU32 = AtomicU32::new(0);

/// xtfpga: keeps a timer due at most [`WAKE_MS`] ahead, as mps2-an385's TIMER1 does, so that QEMU's
/// main loop wakes at least that often. It reads the user network's host sockets (the guestfwd to
/// `rota-bridge`) only when it wakes, and with no timer due it slept up to a second: a 64 KB plain
/// TCP copy took 0.5 to 1 s instead of a few ms (measured with `tcp_copy`). The timer is CCOMPARE0,
/// re-armed by every clock reading once CCOUNT (`now`) has passed it; its interrupt is never taken
/// (INTENABLE is 0).
#[cfg(feature = "xtfpga")]
pub fn keep_qemu_awake(now: u32) {
    let due = WAKE_AT.load(Ordering::Relaxed);
    // Passed, or further ahead than this ever sets it (not armed yet): arm it again.
    if now.wrapping_sub(due) < 1 << 31 || due.wrapping_sub(now) > WAKE_MS * ticks_per_ms() {
        let next = now.wrapping_add(WAKE_MS * ticks_per_ms());
        crate::rt::set_ccompare0(next);
        WAKE_AT.store(next, Ordering::Relaxed);
    }
}
