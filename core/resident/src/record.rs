//! The config record's payload as the core lays it out: the device config (opaque to the core, decoded
//! by the overlays) followed by the last boot's heap report.
//!
//! `payload := config_len (u16 LE) config report`, at most [`rota_store::CONFIG_MAX`] bytes.

use crate::report::Console;
use crate::Board;
use embedded_storage::nor_flash::NorFlash;
use rota_abi::report::{PhaseStat, ENTRY};
use rota_abi::{Context, CONFIG_MAX, REPORT_MAX};
use rota_store::{Cursor, Store};

/// Bytes of the payload's own header.
const HEADER: usize = 2;
/// Largest payload the core writes.
pub use rota_limits::RECORD_MAX as PAYLOAD_MAX;
const _: () = assert!(PAYLOAD_MAX == HEADER + CONFIG_MAX + REPORT_MAX);

/// Splits a payload into config and report; `None` if the lengths do not fit.
pub fn split(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u16::from_le_bytes([*payload.first()?, *payload.get(1)?]) as usize;
    let config = payload.get(HEADER..HEADER + len)?;
    let report = &payload[HEADER + len..];
    (len <= CONFIG_MAX && report.len() <= REPORT_MAX).then_some((config, report))
}

/// Builds a payload from `config` and `report` into `out`; returns its length, or `None` if too long.
pub fn join(config: &[u8], report: &[u8], out: &mut [u8; PAYLOAD_MAX]) -> Option<usize> {
    if config.len() > CONFIG_MAX || report.len() > REPORT_MAX {
        return None;
    }
    out[..HEADER].copy_from_slice(&(config.len() as u16).to_le_bytes());
    out[HEADER..HEADER + config.len()].copy_from_slice(config);
    let end = HEADER + config.len() + report.len();
    out[HEADER + config.len()..end].copy_from_slice(report);
    Some(end)
}

/// Persists a new boot number (before anything can use it as a nonce; on trial the same write
/// counts the trial boot), reverts a generation whose trial is over
/// (`docs/trial-boot.md`), and loads the config, the last boot's report and the trial state into
/// `ctx`. Out of line, so that its config buffer is not part of `run`'s frame under every phase.
#[inline(never)]
pub fn start_boot<B: Board>(board: &mut B, ctx: &mut Context) -> Result<(), rota_store::Error> {
    ctx.boot_count = Store::new(&mut *board.flash()).bump_boot()?;
    board.print(b"boot ");
    crate::report::write_dec(board, ctx.boot_count);
    board.print(b"\n");
    crate::trial::check(board)?;
    let mut store = Store::new(&mut *board.flash());
    tidy_staged(&mut store)?;
    let mut payload = [0u8; PAYLOAD_MAX];
    let info = store.config(&mut payload)?;
    ctx.trial = crate::trial::state(&info);
    let payload = &payload[..info.len.min(PAYLOAD_MAX)];
    match split(payload) {
        Some((config, report)) => {
            ctx.config[..config.len()].copy_from_slice(config);
            ctx.config_len = config.len() as u32;
            ctx.report[..report.len()].copy_from_slice(report);
            ctx.report_len = report.len() as u32;
        }
        None => board.print(b"store: config payload malformed; ignored\n"),
    }
    if ctx.trial.on_trial() {
        crate::trial::print_trial(board, &info);
    }
    Ok(())
}

/// Staged files kept across a reboot for resuming: as many as one check-in reports (rota-wire's
/// `MAX_STAGED`).
pub const KEPT_STAGED: usize = 2;

/// Drops staged deletions and renames, and staged files beyond [`KEPT_STAGED`]: a check-in reports
/// only that many staged files, and nothing the server was not told about may ever be committed.
fn tidy_staged<F: NorFlash>(store: &mut Store<F>) -> Result<(), rota_store::Error> {
    loop {
        let mut cursor = Cursor::default();
        let mut kept = 0;
        let mut victim = None;
        while let Some(s) = store.next_staged(&mut cursor)? {
            if s.tombstone || kept == KEPT_STAGED {
                victim = Some(s.name);
                break;
            }
            kept += 1;
        }
        match victim {
            // Each pass drops at least one entry, so this ends.
            Some(name) => store.stage_drop(name.as_bytes())?,
            None => return Ok(()),
        }
    }
}

/// Persists this boot's heap report beside the config the store holds NOW (a commit during this boot
/// may have replaced the one the boot started with: that new config must survive), when the report
/// differs from the stored one (a flash write only on change).
pub fn save_report<B: Board>(board: &mut B, stats: &[Option<PhaseStat>]) {
    let mut report = [0u8; REPORT_MAX];
    let mut len = 0;
    for s in stats.iter().flatten() {
        if len + ENTRY > REPORT_MAX {
            break;
        }
        s.encode(&mut report[len..len + ENTRY]);
        len += ENTRY;
    }
    let mut store = Store::new(&mut *board.flash());
    // The payload is rebuilt in place: the stored config stays where it is, the report follows it.
    let mut payload = [0u8; PAYLOAD_MAX];
    let saved = store.config(&mut payload).ok().and_then(|info| {
        let (config, stored) = split(payload.get(..info.len)?)?;
        if stored == &report[..len] {
            return Some(true);
        }
        let end = HEADER + config.len();
        payload
            .get_mut(end..end + len)?
            .copy_from_slice(&report[..len]);
        Some(store.write_config(&payload[..end + len]).is_ok())
    });
    if saved != Some(true) {
        board.print(b"store: heap report not saved\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_refuses_lengths_that_do_not_fit() {
        let mut out = [0u8; PAYLOAD_MAX];
        let n = join(b"cfg", b"rep", &mut out).unwrap();
        assert_eq!(split(&out[..n]), Some((&b"cfg"[..], &b"rep"[..])));
        assert_eq!(split(&[]), None);
        assert_eq!(split(&[5, 0, 1]), None);
        assert!(join(&[0; CONFIG_MAX + 1], b"", &mut out).is_none());
        let mut long = [0u8; 300];
        long[..2].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(
            split(&long),
            None,
            "a report longer than REPORT_MAX is refused"
        );
    }
}
