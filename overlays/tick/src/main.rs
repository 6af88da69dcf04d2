//! `tick`: the timer-driven state machine between `init` and `provision`, called by the core once per
//! 10 ms period (luaOTA's `_doTick`).
//!
//! - A key pressed on the console during the first second of boot skips the update (luaOTA's `stopOTA()`).
//! - No IP address 10 s after the interface came up: start the application.
//! - With an address: connect to the configured server once.
//! - Connected, and the abort window is over: run `provision`, which allows the server 3 s from the
//!   connect to answer.
//! - Connection refused or closed, or not connected 3 s after the connect: start the application.
#![no_std]
#![no_main]

use rota_abi::{net, verdict, Context, Services};
use rota_wire::ConfigView;

rota_abi::overlay!(run);

/// A key pressed within this long after boot skips the update.
const ABORT_WINDOW_MS: u32 = 1000;
/// Longest wait for an IP address.
const IP_DEADLINE_MS: u32 = 10_000;
/// Longest wait for the server, from the connect.
const SERVER_DEADLINE_MS: u32 = 3000;

fn run(svc: &Services, ctx: &mut Context) -> i32 {
    let now = svc.time_ms();
    let since_boot = now.wrapping_sub(ctx.boot_ms);
    ctx.ticks += 1;
    if ctx.ticks == 1 {
        svc.write(b"tick: ");
        svc.write(match option_env!("ROTA_VERSION") {
            Some(v) => v.as_bytes(),
            None => b"1",
        });
        svc.write(b" at ");
        svc.write_dec(since_boot);
        svc.write(b" ms; press a key within 1 s to skip the update\n");
    }
    // A key that arrived before the first tick was typed during boot too.
    if (ctx.ticks == 1 || since_boot < ABORT_WINDOW_MS) && svc.read_key().is_some() {
        return give_up(svc, b"key pressed: update skipped");
    }
    let bits = svc.net_poll();
    if bits < 0 {
        return give_up(svc, b"network down");
    }
    if bits & net::HAS_IP == 0 {
        if now.wrapping_sub(ctx.net_up_ms) > IP_DEADLINE_MS {
            return give_up(svc, b"no IP address in 10 s");
        }
        return verdict::CONTINUE;
    }
    if ctx.connect_ms == 0 {
        let Ok(cfg) = ConfigView::parse(ctx.config()) else {
            return give_up(svc, b"config unreadable");
        };
        if svc.net_connect(&cfg.server, cfg.port) < 0 {
            return give_up(svc, b"connect failed");
        }
        // 0 means "not yet": a connect in the very first millisecond is recorded as 1.
        ctx.connect_ms = now.max(1);
        return verdict::CONTINUE;
    }
    if bits & net::CLOSED != 0 {
        return give_up(svc, b"server refused the connection");
    }
    if bits & net::CONNECTED != 0 {
        if since_boot < ABORT_WINDOW_MS {
            return verdict::CONTINUE;
        }
        return verdict::PROVISION;
    }
    if now.wrapping_sub(ctx.connect_ms) > SERVER_DEADLINE_MS {
        return give_up(svc, b"no server answer in 3 s");
    }
    verdict::CONTINUE
}

#[inline(never)]
fn give_up(svc: &Services, why: &[u8]) -> i32 {
    svc.write(b"tick: ");
    svc.write(why);
    svc.write(b"; starting app\n");
    verdict::APP
}
