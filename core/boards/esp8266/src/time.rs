//! Milliseconds since boot from the CCOUNT cycle counter.
//!
//! CCOUNT is 32 bits wide: [`now_ms`] extends it to 64 bits, so it must be called at least once
//! per wrap (2^32 cycles: 53 s at 80 MHz). Interrupts are off, so plain atomics suffice.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::rt::ccount;

/// CCOUNT ticks per second.
///
/// `sim`: QEMU derives CCOUNT from its virtual clock at the lx106 core's configured clock
/// (measured: see docs/boards-esp8266.md). `xtfpga`: the same core and rate; the board reads it from
/// the FPGA at boot. `chip`: the CPU clock the ROM leaves (assumed 80 MHz; unverified without a chip).
#[cfg(feature = "sim")]
pub const CCOUNT_HZ: u32 = 40_000_000;
/// CCOUNT ticks per second (see the `sim` variant).
#[cfg(feature = "chip")]
pub const CCOUNT_HZ: u32 = 80_000_000;
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

/// Milliseconds since [`cycles`] was first called (roughly since boot).
pub fn now_ms() -> u64 {
    cycles() / u64::from(ticks_per_ms())
}
