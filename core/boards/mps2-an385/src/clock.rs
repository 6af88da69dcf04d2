//! Time since boot from CMSDK TIMER0 (25 MHz, counting down from `u32::MAX`, extended in software).

const TIMER0_CTRL: *mut u32 = 0x4000_0000 as *mut u32;
const TIMER0_VALUE: *mut u32 = 0x4000_0004 as *mut u32;
const TIMER0_RELOAD: *mut u32 = 0x4000_0008 as *mut u32;
const TIMER1_CTRL: *mut u32 = 0x4000_1000 as *mut u32;
const TIMER1_VALUE: *mut u32 = 0x4000_1004 as *mut u32;
const TIMER1_RELOAD: *mut u32 = 0x4000_1008 as *mut u32;
/// TIMER1's period: 2 ms.
const WAKE_TICKS: u32 = 2 * 25_000;
/// Timer ticks per microsecond (25 MHz system clock).
const TICKS_PER_US: u64 = 25;

/// The board clock; read it ([`Clock::now_ms`], [`Clock::now_us`]) at least every 170 s (one timer
/// wrap).
pub struct Clock {
    last: u32,
    ticks: u64,
}

impl Clock {
    /// Starts TIMER0.
    pub fn start() -> Clock {
        // SAFETY: valid MMIO registers of this board.
        unsafe {
            TIMER0_RELOAD.write_volatile(u32::MAX);
            TIMER0_VALUE.write_volatile(u32::MAX);
            TIMER0_CTRL.write_volatile(1);
            // TIMER1 runs with a short period and no interrupt, only so that QEMU's main loop wakes up
            // at least that often: it polls the user-mode network's host sockets only when it wakes,
            // and otherwise sleeps up to a second after a new guestfwd connection before reading from it.
            TIMER1_RELOAD.write_volatile(WAKE_TICKS);
            TIMER1_VALUE.write_volatile(WAKE_TICKS);
            TIMER1_CTRL.write_volatile(1);
        }
        Clock {
            last: u32::MAX,
            ticks: 0,
        }
    }

    /// Milliseconds since [`Clock::start`].
    pub fn now_ms(&mut self) -> u32 {
        (self.advance() / (TICKS_PER_US * 1000)) as u32
    }

    /// Microseconds since [`Clock::start`].
    pub fn now_us(&mut self) -> u64 {
        self.advance() / TICKS_PER_US
    }

    /// Brings the tick count up to now: timer ticks since [`Clock::start`].
    fn advance(&mut self) -> u64 {
        // SAFETY: as above.
        let now = unsafe { TIMER0_VALUE.read_volatile() };
        // Down-counter: elapsed = last - now (wrapping).
        self.ticks += u64::from(self.last.wrapping_sub(now));
        self.last = now;
        self.ticks
    }
}
