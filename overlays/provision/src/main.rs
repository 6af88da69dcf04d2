//! `provision`: allocates heap buffers, writes a pattern to the scratch flash sector, reads it back,
//! compares, and frees everything (so the heap is left exactly as found). When the config record asks
//! for it (`reset=1`), it then resets the device, as an update's final `restart` does.
#![no_std]
#![no_main]

use rota_abi::{status, Context, Services};

rota_abi::overlay!(run);

/// Bytes written to the scratch sector.
const LEN: usize = 1024;

fn run(svc: &Services, ctx: &mut Context) -> i32 {
    let out = svc.alloc(LEN, 4);
    if out.is_null() {
        return status::ENOMEM;
    }
    let back = svc.alloc(LEN, 4);
    let rc = if back.is_null() {
        status::ENOMEM
    } else {
        // SAFETY: both blocks are LEN bytes, live, and distinct.
        let (out_s, back_s) = unsafe {
            (
                core::slice::from_raw_parts_mut(out, LEN),
                core::slice::from_raw_parts_mut(back, LEN),
            )
        };
        let rc = write_and_check(svc, ctx, out_s, back_s);
        // SAFETY: freeing exactly what was allocated, in reverse order.
        unsafe { svc.free(back, LEN, 4) };
        rc
    };
    // SAFETY: as above.
    unsafe { svc.free(out, LEN, 4) };
    if rc == status::OK && wants_reset(ctx) {
        svc.write(b"provision: reset requested\n");
        svc.reset();
    }
    rc
}

/// Whether the config payload holds the token `reset=1`.
fn wants_reset(ctx: &Context) -> bool {
    let config = &ctx.config[..(ctx.config_len as usize).min(ctx.config.len())];
    config
        .split(|&b| b == b' ')
        .any(|token| token == b"reset=1")
}

fn write_and_check(svc: &Services, ctx: &Context, out: &mut [u8], back: &mut [u8]) -> i32 {
    let seed = ctx.boot_count.wrapping_mul(31).wrapping_add(ctx.ticks) as u8;
    for (i, b) in out.iter_mut().enumerate() {
        *b = seed.wrapping_add(i as u8);
    }
    let at = ctx.flash.scratch_offset;
    if svc.flash_erase(at, at + ctx.flash.erase_size) != status::OK
        || svc.flash_write(at, out) != status::OK
    {
        svc.write(b"provision: flash write failed\n");
        return status::EIO;
    }
    if svc.flash_read(at, back) != status::OK {
        return status::EIO;
    }
    if out != back {
        svc.write(b"provision: read-back mismatch\n");
        return status::ECORRUPT;
    }
    svc.write(b"provision: wrote and verified ");
    svc.write_dec(LEN as u32);
    svc.write(b" bytes\n");
    status::OK
}
