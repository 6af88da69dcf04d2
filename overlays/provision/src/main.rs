//! `provision`: the command responder (luaOTA's `_provision`). It checks in with the server over the
//! connection `tick` opened and carries out the server's commands: files are staged in the store beside
//! the live ones, verified against their digests, and committed all at once; then the core reboots.
//!
//! Protocol v2 (`docs/protocol.md`) runs [`rota_wire::DeviceSession`]; a config with `protocol == 1`
//! speaks luaOTA's own protocol instead ([`v1`], `docs/luaota-device.md`).
//!
//! Deadlines: the server's first frame must arrive within 3 s of the connect; the whole session within
//! 30 s. Every buffer comes from the heap and goes back to it before returning.
#![no_std]
#![no_main]

mod io;
mod v1;

use core::mem::{align_of, size_of};
use io::{Link, SvcStore};
use rota_abi::report::{PhaseStat, ENTRY};
use rota_abi::{verdict, Context, Services};
use rota_wire::msg::{
    flags, kind, ConfigVersion, FileInfo, HeapSummary, Hello, PhasePeak, Rollback, StagedInfo,
    MAX_FILES, MAX_STAGED,
};
use rota_wire::{ConfigView, Device, DeviceSession, Poll, MAX_FRAME};

rota_abi::overlay!(run);

/// The instruction set this blob (and so the device's core) runs: what the server checks every blob
/// it would send against.
const ISA: u8 = if cfg!(target_arch = "arm") {
    rota_blob::Isa::Thumbv7m as u8
} else if cfg!(target_arch = "xtensa") {
    rota_blob::Isa::Lx106 as u8
} else {
    0
};

/// The ABI version of the core's services, as a check-in reports it.
const ABI: u8 = {
    assert!(rota_abi::ABI_VERSION <= u8::MAX as u32);
    rota_abi::ABI_VERSION as u8
};

/// What the session knows of this device: its config's secret, link, keys, app and trial boots, and
/// the security version its store holds.
fn device<'c>(cfg: &ConfigView<'c>, ctx: &Context) -> Device<'c> {
    Device {
        secret: cfg.secret,
        link: cfg.link,
        keys: cfg.keys,
        app: cfg.app,
        trials: cfg.trials,
        isa: ISA,
        abi: ABI,
        security_version: ctx.trial.security_version,
    }
}

/// A completed check-in that found nothing to do proves the overlays of a generation on trial: it
/// confirms it, unless the generation changed the app, which must confirm itself.
fn confirm_by_check_in(svc: &Services, ctx: &Context) {
    let trial = &ctx.trial;
    if !trial.on_trial() || trial.needs_app != 0 {
        return;
    }
    if svc.confirm() == rota_abi::status::OK {
        svc.write(b"provision: generation ");
        svc.write_dec(trial.generation);
        svc.write(b" confirmed by the check-in\n");
    } else {
        svc.write(b"provision: confirm failed\n");
    }
}

/// Everything a v2 session needs besides the stack, allocated from the heap for its duration.
struct Work<'s> {
    session: DeviceSession<'s>,
    out: [u8; MAX_FRAME],
}

fn run(svc: &Services, ctx: &mut Context) -> i32 {
    let Ok(cfg) = ConfigView::parse(ctx.config()) else {
        svc.write(b"provision: no valid device config\n");
        return verdict::APP;
    };
    svc.write(b"provision: version ");
    svc.write(match option_env!("ROTA_VERSION") {
        Some(v) => v.as_bytes(),
        None => b"1",
    });
    svc.write(b"\n");
    let link = Link::new(svc, ctx.connect_ms);
    if cfg.protocol == 1 {
        return v1::run(svc, &cfg, &link);
    }
    let p = svc.alloc(size_of::<Work>(), align_of::<Work>()) as *mut Work;
    if p.is_null() {
        svc.write(b"provision: out of memory\n");
        return verdict::APP;
    }
    // SAFETY: `p` is a fresh, aligned block of the right size. Each field is written in place (a
    // `Work` built on the stack first would double the RAM it takes), before use; the block is freed
    // exactly once, after its last use.
    unsafe {
        core::ptr::addr_of_mut!((*p).session).write(DeviceSession::for_device(device(&cfg, ctx)));
        core::ptr::addr_of_mut!((*p).out).write_bytes(0, 1);
        let v = session(svc, ctx, &cfg, &link, &mut *p);
        svc.free(p as *mut u8, size_of::<Work>(), align_of::<Work>());
        v
    }
}

#[inline(never)]
fn session(svc: &Services, ctx: &Context, cfg: &ConfigView, link: &Link, w: &mut Work) -> i32 {
    let n = match hello(svc, ctx, cfg, w) {
        Ok(n) => n,
        Err(e @ rota_wire::Error::Store { .. }) => return refused(svc, e),
        Err(_) => return fail(svc, b"check-in does not fit one frame"),
    };
    if !link.send_all(&w.out[..n]) {
        return fail(svc, b"server closed the connection");
    }
    let mut store = SvcStore(svc);
    // Where the current file's transfer started (its Ready), to report the rate of each file.
    let mut file_start = None;
    loop {
        // The signature's verification runs inside one poll: timed, for docs/sizes.md.
        let (verified, before) = (w.session.release_verified(), svc.time_ms());
        let polled = w.session.poll(&mut store, &mut w.out);
        if !verified && w.session.release_verified() {
            svc.write(b"provision: release signature verified in ");
            svc.write_dec(svc.time_ms().wrapping_sub(before));
            svc.write(b" ms\n");
        }
        match polled {
            Ok(Poll::Receive) => {
                let buf = w.session.rx_buffer();
                match link.recv(buf) {
                    Ok(n) => w.session.rx_commit(n),
                    Err(why) => return fail(svc, why),
                }
            }
            Ok(Poll::Send(n)) => {
                match w.out[1] {
                    kind::READY => file_start = Some(link.mark()),
                    kind::STAGED => link.report(b"file staged:", file_start.take()),
                    _ => {}
                }
                if !link.send_all(&w.out[..n]) {
                    return fail(svc, b"server closed the connection");
                }
            }
            Ok(Poll::NoUpdate) => {
                svc.write(b"provision: no update\n");
                confirm_by_check_in(svc, ctx);
                return verdict::APP;
            }
            Ok(Poll::Committed(generation)) => {
                link.report(b"session received", None);
                link.flush();
                svc.write(b"provision: update committed, generation ");
                svc.write_dec(generation);
                svc.write(b"\n");
                return verdict::RESTART;
            }
            Err(e) => return refused(svc, e),
        }
    }
}

/// Writes the check-in frame into `w.out`: the digest of the committed files, what is staged, the
/// last boot's heap peaks.
#[inline(never)]
fn hello(
    svc: &Services,
    ctx: &Context,
    cfg: &ConfigView,
    w: &mut Work,
) -> Result<usize, rota_wire::Error> {
    let mut live = [None; MAX_FILES];
    let mut staged = [None; MAX_STAGED];
    list(svc, false, &mut live)?;
    list(svc, true, &mut staged)?;
    let mut files: heapless::Vec<FileInfo, MAX_FILES> = heapless::Vec::new();
    for f in live.iter().flatten() {
        if let Some(name) = rota_wire::msg::Name::new(f.name.as_bytes()) {
            let _ = files.push(FileInfo {
                name,
                size: f.size,
                version: f.version,
                digest: f.digest,
            });
        }
    }
    let trial = &ctx.trial;
    let signed = if cfg.keys.is_empty() {
        0
    } else {
        flags::SIGNED
    };
    let on_trial = if trial.on_trial() { flags::TRIAL } else { 0 };
    let mut msg = Hello {
        device_id: cfg.device_id,
        nonce: ctx.boot_count,
        isa: ISA,
        abi: ABI,
        flags: signed | on_trial,
        config: ConfigVersion(rota_wire::config::config_version(ctx.config())),
        state: rota_wire::msg::state_digest(&mut files),
        security_version: trial.security_version,
        staged: Default::default(),
        rollback: (trial.rollback_reason != rota_abi::rollback::NONE).then_some(Rollback {
            from: trial.rollback_from,
            to: trial.rollback_to,
            reason: trial.rollback_reason,
            phase: trial.rollback_phase,
        }),
        heap: HeapSummary::default(),
    };
    for f in staged.iter().flatten() {
        let Some(name) = rota_wire::msg::Name::new(f.name.as_bytes()) else {
            continue;
        };
        let _ = msg.staged.push(StagedInfo {
            name,
            size: f.size,
            digest: f.digest,
            done: f.done,
        });
    }
    for entry in ctx.report().as_chunks::<ENTRY>().0 {
        let Some(s) = PhaseStat::decode(entry) else {
            continue;
        };
        if s.phase == rota_abi::report::Phase::Residue as u8 {
            msg.heap.residue = s.used;
        } else {
            let _ = msg.heap.phases.push(PhasePeak {
                heap: s.peak,
                stack: s.stack_peak,
            });
        }
    }
    w.session.hello(&msg, &mut w.out)
}

/// Fills `slots` with the first live or staged files. A store that cannot be read is said so, never
/// reported as holding fewer files.
#[inline(never)]
fn list(
    svc: &Services,
    staged: bool,
    slots: &mut [Option<rota_abi::FileInfo>],
) -> Result<(), rota_wire::Error> {
    for (i, slot) in slots.iter_mut().enumerate() {
        match svc.file_info(staged, i as u32) {
            Ok(None) => break,
            Ok(f) => *slot = f,
            Err(rc) => {
                return Err(rota_wire::Error::Store {
                    reason: rota_wire::msg::Reason::Read,
                    detail: rc.unsigned_abs().min(255) as u8,
                })
            }
        }
    }
    Ok(())
}

/// Reports a session that ended in `e` (reason and code: a store failure's code is its status's
/// magnitude, which the server's log names; a table of texts here would give provision relocations, and
/// it runs in place).
#[inline(never)]
fn refused(svc: &Services, e: rota_wire::Error) -> i32 {
    let (reason, detail) = e.reason();
    svc.write(b"provision: session refused (reason ");
    svc.write_dec(reason as u32);
    svc.write(b", code ");
    svc.write_dec(u32::from(detail));
    svc.write(b"); nothing committed\n");
    verdict::APP
}

#[inline(never)]
fn fail(svc: &Services, why: &[u8]) -> i32 {
    svc.write(b"provision: ");
    svc.write(why);
    svc.write(b"; nothing committed, starting app\n");
    verdict::APP
}
