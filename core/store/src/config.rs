//! The double config record in sectors 0 and 1: loading and choosing the current copy, writing a
//! successor into the other copy, the trial-boot mark after a record, and the public calls built on
//! them (`trial.rs` has commit's, confirm's and revert's).

use embedded_storage::nor_flash::NorFlash;

use crate::layout::{
    crc32, le32, put32, CONFIG_HEADER, CONFIG_HEADER_V2, CONFIG_MAGIC, CONFIG_MAGIC_V2,
    CONFIG_SECTORS, C_CONFIRMED, C_ENDED_PHASE, C_ENDED_REASON, C_FLAGS, C_LIMIT, C_RB_FROM,
    C_RB_PHASE, C_RB_REASON, C_RB_TO, C_SECURITY, C_TRIALS, C_ZERO, FLAG_NEEDS_APP, SECTOR,
};
use crate::{ConfigInfo, Error, Rollback, Store, TrialEnd, BUF, CONFIG_MAX};

/// What a config record says besides its payload (everything its header holds but the length).
#[derive(Clone, Copy)]
pub(crate) struct Rec {
    pub(crate) seq: u32,
    pub(crate) generation: u32,
    pub(crate) boot_count: u32,
    pub(crate) confirmed: u32,
    pub(crate) security_version: u32,
    pub(crate) rollback: Rollback,
    pub(crate) trials: u8,
    pub(crate) trial_limit: u8,
    pub(crate) needs_app: bool,
    pub(crate) ended: TrialEnd,
}

impl Rec {
    /// Whether the committed generation is on trial (newer than the last confirmed one).
    pub(crate) fn on_trial(&self) -> bool {
        self.generation > self.confirmed
    }
}

/// The current config record copy.
#[derive(Clone, Copy)]
pub(crate) struct Cfg {
    pub(crate) slot: u32,
    /// Where its payload starts in its sector (the header's size, which depends on the format).
    pub(crate) header: u32,
    pub(crate) len: u32,
    pub(crate) rec: Rec,
}

impl Cfg {
    /// Offset of the word after the record's checksum: the trial-boot mark ([`Store::mark_end`]).
    pub(crate) fn mark_offset(&self) -> u32 {
        self.slot * SECTOR + (self.header + self.len).next_multiple_of(4) + 4
    }
}

/// Where a config record's payload comes from.
pub(crate) enum Payload<'a> {
    Bytes(&'a [u8]),
    /// Copied from the other slot's current record.
    Keep(Cfg),
}

/// The trial-boot mark word for `end`: reason, phase and both complemented, so that a write cut
/// short (which clears only some of the bits it should) never reads as a mark.
fn mark_word(end: TrialEnd) -> [u8; 4] {
    [end.reason, end.phase, !end.reason, !end.phase]
}

/// The mark a word holds: `None` for an erased word, a torn write or any other content.
fn parse_mark(w: [u8; 4]) -> Option<TrialEnd> {
    let end = TrialEnd {
        reason: w[0],
        phase: w[1],
    };
    (end.reason != 0 && w == mark_word(end)).then_some(end)
}

impl<F: NorFlash> Store<F> {
    /// The record in `slot` if it is intact.
    #[inline(never)]
    pub(crate) fn load_slot(&mut self, slot: u32) -> Result<Option<Cfg>, Error> {
        let base = slot * SECTOR;
        let mut h = [0u8; CONFIG_HEADER as usize];
        self.rd(base, &mut h)?;
        let header = if h[..4] == CONFIG_MAGIC {
            CONFIG_HEADER
        } else if h[..4] == CONFIG_MAGIC_V2 {
            CONFIG_HEADER_V2
        } else {
            return Ok(None);
        };
        let len = u32::from(u16::from_le_bytes([h[16], h[17]]));
        if len as usize > CONFIG_MAX || h[18..20] != [0, 0] {
            return Ok(None);
        }
        // The bytes of a format-2 header's size on are its payload: read again below.
        let h = &h[..header as usize];
        let mut crc = crc32(!0, h);
        let mut b = [0u8; BUF];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(BUF as u32) as usize;
            self.rd(base + header + at, &mut b[..n])?;
            crc = crc32(crc, &b[..n]);
            at += n as u32;
        }
        let mut c = [0u8; 4];
        self.rd(base + (header + len).next_multiple_of(4), &mut c)?;
        if u32::from_le_bytes(c) != !crc {
            return Ok(None);
        }
        let generation = le32(h, 8);
        let mut rec = Rec {
            seq: le32(h, 4),
            generation,
            boot_count: le32(h, 12),
            confirmed: generation,
            security_version: 0,
            rollback: Rollback::NONE,
            trials: 0,
            trial_limit: 0,
            needs_app: false,
            ended: TrialEnd::NONE,
        };
        if header == CONFIG_HEADER {
            // Written by this store, checksum and all: a field no write makes is corruption.
            let confirmed = le32(h, C_CONFIRMED);
            if confirmed > generation || h[C_FLAGS] & !FLAG_NEEDS_APP != 0 || h[C_ZERO] != 0 {
                return Ok(None);
            }
            rec.confirmed = confirmed;
            rec.security_version = le32(h, C_SECURITY);
            rec.rollback = Rollback {
                from: le32(h, C_RB_FROM),
                to: le32(h, C_RB_TO),
                reason: h[C_RB_REASON],
                phase: h[C_RB_PHASE],
            };
            rec.trials = h[C_TRIALS];
            rec.trial_limit = h[C_LIMIT];
            rec.needs_app = h[C_FLAGS] & FLAG_NEEDS_APP != 0;
            rec.ended = TrialEnd {
                reason: h[C_ENDED_REASON],
                phase: h[C_ENDED_PHASE],
            };
        }
        Ok(Some(Cfg {
            slot,
            header,
            len,
            rec,
        }))
    }

    /// The current record: the intact copy with the higher sequence number (serial arithmetic).
    pub(crate) fn current(&mut self) -> Result<Cfg, Error> {
        if self.total() <= CONFIG_SECTORS {
            return Err(Error::NoConfig);
        }
        match (self.load_slot(0)?, self.load_slot(1)?) {
            (Some(a), Some(b)) if (b.rec.seq.wrapping_sub(a.rec.seq) as i32) > 0 => Ok(b),
            (Some(a), _) => Ok(a),
            (None, Some(b)) => Ok(b),
            (None, None) => Err(Error::NoConfig),
        }
    }

    pub(crate) fn generation(&mut self) -> Result<u32, Error> {
        Ok(self.current()?.rec.generation)
    }

    /// The trial-boot mark after record `c`, if a whole one was written there.
    pub(crate) fn mark_of(&mut self, c: &Cfg) -> Result<Option<TrialEnd>, Error> {
        let mut w = [0u8; 4];
        self.rd(c.mark_offset(), &mut w)?;
        Ok(parse_mark(w))
    }

    /// Writes a whole record `r` into `slot` (erase, header, payload, checksum last), then checks
    /// it. Always in the current format.
    pub(crate) fn write_record(
        &mut self,
        slot: u32,
        r: &Rec,
        payload: Payload<'_>,
    ) -> Result<(), Error> {
        let len = match payload {
            Payload::Bytes(p) if p.len() > CONFIG_MAX => return Err(Error::PayloadTooLong),
            Payload::Bytes(p) => p.len() as u32,
            Payload::Keep(c) => c.len,
        };
        let base = slot * SECTOR;
        let mut h = [0u8; CONFIG_HEADER as usize];
        h[..4].copy_from_slice(&CONFIG_MAGIC);
        put32(&mut h, 4, r.seq);
        put32(&mut h, 8, r.generation);
        put32(&mut h, 12, r.boot_count);
        h[16..18].copy_from_slice(&(len as u16).to_le_bytes());
        put32(&mut h, C_CONFIRMED, r.confirmed);
        put32(&mut h, C_SECURITY, r.security_version);
        put32(&mut h, C_RB_FROM, r.rollback.from);
        put32(&mut h, C_RB_TO, r.rollback.to);
        h[C_RB_REASON] = r.rollback.reason;
        h[C_RB_PHASE] = r.rollback.phase;
        h[C_TRIALS] = r.trials;
        h[C_LIMIT] = r.trial_limit;
        h[C_FLAGS] = if r.needs_app { FLAG_NEEDS_APP } else { 0 };
        h[C_ENDED_REASON] = r.ended.reason;
        h[C_ENDED_PHASE] = r.ended.phase;
        self.erase_back(slot, slot + 1)?;
        self.program(base, &h)?;
        let mut crc = crc32(!0, &h);
        match payload {
            Payload::Bytes(p) => {
                self.program(base + CONFIG_HEADER, p)?;
                crc = crc32(crc, p);
            }
            Payload::Keep(c) => {
                let mut b = [0u8; BUF];
                let mut at = 0;
                while at < len {
                    let n = (len - at).min(BUF as u32) as usize;
                    self.rd(c.slot * SECTOR + c.header + at, &mut b[..n])?;
                    self.program(base + CONFIG_HEADER + at, &b[..n])?;
                    crc = crc32(crc, &b[..n]);
                    at += n as u32;
                }
            }
        }
        self.program(
            base + (CONFIG_HEADER + len).next_multiple_of(4),
            &(!crc).to_le_bytes(),
        )?;
        match self.load_slot(slot)? {
            Some(c) if c.rec.seq == r.seq => Ok(()),
            _ => Err(self.mismatch(base)),
        }
    }

    /// Writes the successor `r` of the current record `c` (its sequence number taken care of)
    /// into the other slot, with `payload` or `c`'s.
    pub(crate) fn next_record(
        &mut self,
        c: Cfg,
        mut r: Rec,
        payload: Option<&[u8]>,
    ) -> Result<(), Error> {
        let p = payload.map_or(Payload::Keep(c), Payload::Bytes);
        r.seq = c.rec.seq.wrapping_add(1);
        self.write_record(1 - c.slot, &r, p)
    }

    /// Erases the whole region and writes a config record with generation 0 (confirmed), sequence
    /// 1, boot count 0, security version 0 and `payload`. Every file is gone.
    pub fn format(&mut self, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > CONFIG_MAX {
            return Err(Error::PayloadTooLong);
        }
        let total = self.total();
        if total <= CONFIG_SECTORS {
            return Err(Error::NoSpace);
        }
        self.staging = None;
        self.erase_back(1, total)?;
        let r = Rec {
            seq: 1,
            generation: 0,
            boot_count: 0,
            confirmed: 0,
            security_version: 0,
            rollback: Rollback::NONE,
            trials: 0,
            trial_limit: 0,
            needs_app: false,
            ended: TrialEnd::NONE,
        };
        self.write_record(0, &r, Payload::Bytes(payload))
    }

    /// Copies the current config payload into `buf` (as much as fits) and describes the record.
    /// [`Error::NoConfig`] if neither copy is intact.
    pub fn config(&mut self, buf: &mut [u8]) -> Result<ConfigInfo, Error> {
        let c = self.current()?;
        let n = buf.len().min(c.len as usize);
        self.rd(c.slot * SECTOR + c.header, &mut buf[..n])?;
        let r = c.rec;
        Ok(ConfigInfo {
            seq: r.seq,
            generation: r.generation,
            boot_count: r.boot_count,
            len: c.len as usize,
            confirmed: r.confirmed,
            security_version: r.security_version,
            trials: r.trials,
            trial_limit: r.trial_limit,
            needs_app: r.needs_app,
            rollback: r.rollback,
            ended: r.ended,
        })
    }

    /// Persists boot count + 1 (same generation and payload) and returns it once it is on flash.
    ///
    /// On trial (generation newer than the confirmed one) the same write also counts the boot
    /// (`trials` + 1, saturating at 255) and takes over how the previous boot ended: the mark a
    /// panic or fault handler left after the current record ([`Store::mark_end`]), or none. A
    /// previous boot already past its trial limit ran nothing of the trial (the core reverts
    /// before loading any overlay, and its revert was cut short), so its end is kept instead.
    // Out of line: inlined into the core's boot (whose frame holds a whole payload) it made a frame
    // the LX106's LLVM backend could not address ("Cannot scavenge register without an emergency
    // spill slot").
    #[inline(never)]
    pub fn bump_boot(&mut self) -> Result<u32, Error> {
        let c = self.current()?;
        let mut r = c.rec;
        r.boot_count = r.boot_count.wrapping_add(1);
        if r.on_trial() {
            let mark = self.mark_of(&c)?;
            let past = r.trials > r.trial_limit;
            r.ended = mark.unwrap_or(if past { r.ended } else { TrialEnd::NONE });
            r.trials = r.trials.saturating_add(1);
        }
        self.next_record(c, r, None)?;
        Ok(r.boot_count)
    }

    /// Replaces the config payload, keeping the generation, boot count and trial state.
    pub fn write_config(&mut self, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > CONFIG_MAX {
            return Err(Error::PayloadTooLong);
        }
        let c = self.current()?;
        self.next_record(c, c.rec, Some(payload))
    }

    /// Records how this trial boot ended (`end`: a panic or a fault, and the phase it happened
    /// in), for a panic or fault handler: one 4-byte flash write into the word after the current
    /// record's checksum, which no checksum covers and every record write erases. Writes nothing
    /// when nothing is on trial, when the record already has a mark, or for a reason of 0. The
    /// next [`Store::bump_boot`] takes it over into its record; a write cut short leaves a word
    /// that does not read as a mark (the boot then counts as one that ended without a record).
    pub fn mark_end(&mut self, end: TrialEnd) -> Result<(), Error> {
        let c = self.current()?;
        let mut w = [0u8; 4];
        self.rd(c.mark_offset(), &mut w)?;
        if !c.rec.on_trial() || end.reason == 0 || w != [0xFF; 4] {
            return Ok(());
        }
        self.program(c.mark_offset(), &mark_word(end))
    }
}
