//! `tick`: counts timer ticks through the time service (the timer-driven state machine's skeleton).
#![no_std]
#![no_main]

use rota_abi::{status, Context, Services};

rota_abi::overlay!(run);

/// Tick period in milliseconds.
const PERIOD_MS: u32 = 10;
/// Ticks to count.
const TICKS: u32 = 5;
/// Give up if the clock does not advance this far.
const LIMIT_MS: u32 = 1000;

fn run(svc: &Services, ctx: &mut Context) -> i32 {
    let start = svc.time_ms();
    let mut next = start.wrapping_add(PERIOD_MS);
    while ctx.ticks < TICKS {
        let now = svc.time_ms();
        if now.wrapping_sub(start) > LIMIT_MS {
            svc.write(b"tick: clock too slow\n");
            return status::EIO;
        }
        // Wrapping-safe "now >= next".
        if now.wrapping_sub(next) < u32::MAX / 2 {
            ctx.ticks += 1;
            next = next.wrapping_add(PERIOD_MS);
        }
    }
    svc.write(b"tick: ");
    svc.write_dec(ctx.ticks);
    svc.write(b" ticks in ");
    svc.write_dec(svc.time_ms().wrapping_sub(start));
    svc.write(b" ms\n");
    status::OK
}
