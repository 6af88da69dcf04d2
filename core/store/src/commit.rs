//! Commit: one config record write makes everything staged live at once.

use embedded_storage::nor_flash::NorFlash;

use crate::{Error, Store, CONFIG_MAX};

impl<F: NorFlash> Store<F> {
    /// Commits everything staged: writes one config record with generation + 1 (and `payload`, or
    /// the current one). From that write on, verified staged entries are live and replace older ones
    /// of their names; unverified ones are garbage. Returns the new generation.
    pub fn commit(&mut self, payload: Option<&[u8]>) -> Result<u32, Error> {
        if payload.is_some_and(|p| p.len() > CONFIG_MAX) {
            return Err(Error::PayloadTooLong);
        }
        let c = self.current()?;
        let g = c.generation.checked_add(1).ok_or(Error::Corrupt)?;
        self.staging = None;
        self.next_record(c, g, c.boot_count, payload)?;
        Ok(g)
    }
}
