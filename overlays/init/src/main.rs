//! `init`: reads the config record from flash into the context.
//!
//! Record layout (at `ctx.flash.config_offset`): magic `RCFG`, boot count (u32), payload length (u16),
//! payload checksum (u16, sum of payload bytes), payload. A missing or corrupt record is reported and
//! leaves the context empty.
#![no_std]
#![no_main]

use rota_abi::{status, Context, Services, CONFIG_MAX};

rota_abi::overlay!(run);

/// Why the record was not accepted; indexes [`FAILURES`].
#[derive(Clone, Copy)]
enum Failure {
    Read = 0,
    Missing = 1,
    Checksum = 2,
}

/// Message and status per failure. A table of pointers: the loader relocates these words.
static FAILURES: [(&[u8], i32); 3] = [
    (b"init: config read failed\n", status::EIO),
    (b"init: no valid config record\n", status::ECORRUPT),
    (b"init: config checksum mismatch\n", status::ECORRUPT),
];

#[inline(never)]
fn fail(svc: &Services, why: Failure) -> i32 {
    let (message, code) = FAILURES[why as usize];
    svc.write(message);
    code
}

fn run(svc: &Services, ctx: &mut Context) -> i32 {
    let mut head = [0u8; 12];
    if svc.flash_read(ctx.flash.config_offset, &mut head) != status::OK {
        return fail(svc, Failure::Read);
    }
    let len = u16::from_le_bytes([head[8], head[9]]) as usize;
    if head[..4] != *b"RCFG" || len > CONFIG_MAX {
        return fail(svc, Failure::Missing);
    }
    let payload = &mut ctx.config[..len];
    if svc.flash_read(ctx.flash.config_offset + 12, payload) != status::OK {
        return fail(svc, Failure::Read);
    }
    let sum = payload
        .iter()
        .fold(0u16, |a, &b| a.wrapping_add(u16::from(b)));
    if sum != u16::from_le_bytes([head[10], head[11]]) {
        return fail(svc, Failure::Checksum);
    }
    ctx.config_len = len as u32;
    ctx.boot_count = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    svc.write(b"init: config ");
    svc.write_dec(len as u32);
    svc.write(b" bytes, boot ");
    svc.write_dec(ctx.boot_count);
    svc.write(b"\n");
    status::OK
}
