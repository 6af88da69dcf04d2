//! Commit, confirm and revert: the generation switches, each one config record write
//! (`docs/trial-boot.md`).
//!
//! A commit makes everything staged live at once as generation G + 1. With a trial limit it stays
//! on trial: the last confirmed generation C is kept, and every entry live under C with it (gc
//! keeps them, allocation never reuses them), until [`Store::confirm`] makes C = G, or
//! [`Store::revert`] switches G back to C and drops everything newer.

use embedded_storage::nor_flash::NorFlash;

use crate::layout::Entry;
use crate::{CommitParams, Error, Rollback, Store, TrialEnd, CONFIG_MAX};

impl<F: NorFlash> Store<F> {
    /// Commits everything staged: writes one config record with generation + 1 (and `payload`, or
    /// the current one). From that write on, verified staged entries are live and replace older ones
    /// of their names; unverified ones are garbage. Returns the new generation.
    ///
    /// `params`: a `security_version` lower than the one the store holds is refused with
    /// [`Error::Downgrade`] before anything is written; otherwise it becomes the store's (it never
    /// decreases). `trial_limit` 0 confirms the new generation at once; otherwise it is on trial
    /// for that many boots and the last confirmed generation stays as it is (a commit while on
    /// trial keeps it too, and `needs_app` then adds to the one already asked for). The last
    /// rollback record is cleared.
    pub fn commit(&mut self, payload: Option<&[u8]>, params: &CommitParams) -> Result<u32, Error> {
        if payload.is_some_and(|p| p.len() > CONFIG_MAX) {
            return Err(Error::PayloadTooLong);
        }
        let c = self.current()?;
        let mut r = c.rec;
        if params.security_version < r.security_version {
            return Err(Error::Downgrade);
        }
        let g = r.generation.checked_add(1).ok_or(Error::Corrupt)?;
        let needs_app = params.needs_app != 0 || (r.on_trial() && r.needs_app);
        r.generation = g;
        r.security_version = params.security_version;
        r.trials = 0;
        r.trial_limit = params.trial_limit;
        r.ended = TrialEnd::NONE;
        r.rollback = Rollback::NONE;
        if params.trial_limit == 0 {
            r.confirmed = g;
            r.needs_app = false;
        } else {
            r.needs_app = needs_app;
        }
        self.staging = None;
        self.next_record(c, r, payload)?;
        Ok(g)
    }

    /// Confirms the generation on trial: one record write with confirmed = generation and the
    /// trial count cleared (the last rollback record stays until the next commit). Returns whether
    /// it wrote (`false`: nothing was on trial). A power cut leaves it on trial or confirmed.
    /// Entries only the old confirmed generation used are garbage from then on ([`Store::gc`]).
    pub fn confirm(&mut self) -> Result<bool, Error> {
        let c = self.current()?;
        let mut r = c.rec;
        if !r.on_trial() {
            return Ok(false);
        }
        r.confirmed = r.generation;
        r.trials = 0;
        r.trial_limit = 0;
        r.needs_app = false;
        r.ended = TrialEnd::NONE;
        self.next_record(c, r, None)?;
        Ok(true)
    }

    /// Rolls the generation on trial back to the last confirmed one: [`Store::revert_record`], then
    /// [`Store::drop_reverted`]. Returns the rollback, or `None` (nothing written) when nothing is on
    /// trial.
    pub fn revert(&mut self, reason: u8, phase: u8) -> Result<Option<Rollback>, Error> {
        let r = self.revert_record(reason, phase)?;
        if r.is_some() {
            self.drop_reverted()?;
        }
        Ok(r)
    }

    /// The switch of a revert: one record write setting the generation back to the confirmed one,
    /// clearing the trial and recording `{from, to, reason, phase}`. Returns the rollback, or `None`
    /// (nothing written) when nothing is on trial. [`Store::drop_reverted`] is what follows (a caller
    /// may do something between the two: the core prints its rollback line).
    ///
    /// A power cut before this write completes leaves the trial generation (the next boot reverts
    /// again); once it has, the confirmed generation's files, which the store kept, are live again.
    pub fn revert_record(&mut self, reason: u8, phase: u8) -> Result<Option<Rollback>, Error> {
        let c = self.current()?;
        let mut r = c.rec;
        if !r.on_trial() {
            return Ok(None);
        }
        let rollback = Rollback {
            from: r.generation,
            to: r.confirmed,
            reason,
            phase,
        };
        r.generation = r.confirmed;
        r.trials = 0;
        r.trial_limit = 0;
        r.needs_app = false;
        r.ended = TrialEnd::NONE;
        r.rollback = rollback;
        self.staging = None;
        self.next_record(c, r, None)?;
        Ok(Some(rollback))
    }

    /// Kills (drops) every entry of a generation above the committed one: after
    /// [`Store::revert_record`], the rolled-back generations' entries and anything staged on them.
    /// Called at any other time it would drop what is staged. Entries a power cut leaves unkilled
    /// are staged leftovers (generation + 1: the core tidies them at boot, the server drops them) or
    /// garbage (newer still).
    pub fn drop_reverted(&mut self) -> Result<(), Error> {
        let g = self.generation()?;
        self.staging = None;
        let mut s = 0;
        let mut e = Entry::EMPTY;
        while self.next_entry(s, &mut e)? {
            s = e.end();
            if !e.dead && e.generation > g {
                self.kill(&e)?;
            }
        }
        Ok(())
    }
}
