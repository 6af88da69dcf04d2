//! The demo application, shipped as a blob like the overlays: prints its version (set at build time by
//! `ROTA_VERSION`), the boot number and the last boot's heap report, and uses the heap (what it
//! allocates, it frees). The core prints its `heap phase=app` line when it returns.
#![no_std]
#![no_main]

use rota_abi::report::{PhaseStat, ENTRY, PHASES};
use rota_abi::{status, Context, Services};

rota_abi::overlay!(run);

/// This build's version.
const VERSION: &[u8] = match option_env!("ROTA_VERSION") {
    Some(v) => v.as_bytes(),
    None => b"1",
};

fn run(svc: &Services, ctx: &mut Context) -> i32 {
    svc.write(b"app: version ");
    svc.write(VERSION);
    svc.write(b" running, boot ");
    svc.write_dec(ctx.boot_count);
    svc.write(b"\n");
    for entry in ctx.report().as_chunks::<ENTRY>().0 {
        let Some(s) = PhaseStat::decode(entry) else {
            continue;
        };
        svc.write(b"app: last boot ");
        svc.write(
            PHASES
                .get(usize::from(s.phase))
                .map_or(&b"?"[..], |p| p.as_bytes()),
        );
        svc.write(b" heap peak=");
        svc.write_dec(s.peak);
        svc.write(b" stack_peak=");
        svc.write_dec(s.stack_peak);
        svc.write(b"\n");
    }
    let p = svc.alloc(256, 4);
    if p.is_null() {
        return status::ENOMEM;
    }
    // SAFETY: freeing exactly what was allocated.
    unsafe { svc.free(p, 256, 4) };
    status::OK
}
