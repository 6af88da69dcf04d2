//! Milliseconds since boot from the CCOUNT cycle counter.
//!
//! CCOUNT is 32 bits wide: [`now_ms`] extends it to 64 bits, so it must be called at least once
//! per wrap (2^32 cycles: 53 s at 80 MHz). Interrupts are off, so plain atomics suffice.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::rt::ccount;

/// CCOUNT ticks per second.
///
/// `sim`: QEMU derives CCOUNT from its virtual clock at the lx106 core's configured clock
/// (measured: see docs/boards-esp8266.md). `chip`: the CPU clock the ROM leaves (assumed 80 MHz;
/// unverified without a chip).
#[cfg(feature = "sim")]
pub const CCOUNT_HZ: u32 = 40_000_000;
/// CCOUNT ticks per second (see the `sim` variant).
#[cfg(feature = "chip")]
pub const CCOUNT_HZ: u32 = 80_000_000;

static LAST: AtomicU32 = AtomicU32::new(0);
static WRAPS: AtomicU32 = AtomicU32::new(0);

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
    cycles() / u64::from(CCOUNT_HZ / 1000)
}
