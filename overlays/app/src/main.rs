//! The demo application, shipped as a blob like the overlays: prints its version (set at build time by
//! `ROTA_VERSION`), the boot number and the last boot's heap report, uses the heap (what it
//! allocates, it frees), and confirms a generation on trial. The core prints its `heap phase=app`
//! line when it returns.
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
    // Started, and what it does worked (its console, the last report, the heap): the generation it
    // belongs to is good. Confirming here, once, at the end of its start rather than first thing,
    // means an app that dies on its way up is rolled back (`docs/trial-boot.md`); on a boot that is
    // not on trial it writes nothing.
    if ctx.trial.on_trial() {
        let rc = svc.confirm();
        if rc != status::OK {
            svc.write(b"app: confirm failed\n");
            return rc;
        }
        svc.write(b"app: generation ");
        svc.write_dec(ctx.trial.generation);
        svc.write(b" confirmed\n");
    }
    status::OK
}
