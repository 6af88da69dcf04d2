//! Garbage collection: erasing what can no longer matter, never a live or staged entry.

use embedded_storage::nor_flash::NorFlash;

use crate::layout::Entry;
use crate::scan::{candidate, staged};
use crate::{Error, Store};

impl<F: NorFlash> Store<F> {
    /// Erases every extent that can no longer matter: dropped, abandoned or superseded entries, and
    /// tombstones with nothing left to hide. Live and staged entries are never touched, nor, while a
    /// generation is on trial, any entry live under the last confirmed one (a revert brings those
    /// back). Each extent is erased from its last sector to its first.
    pub fn gc(&mut self) -> Result<(), Error> {
        self.collect()
    }

    pub(crate) fn collect(&mut self) -> Result<(), Error> {
        let r = self.current()?.rec;
        let (g, confirmed) = (r.generation, r.confirmed);
        self.staging = None;
        // Pass 1: all but winning candidates (at the committed generation, and at the confirmed one
        // while it is older) and staged entries.
        let mut s = 0;
        let mut e = Entry::EMPTY;
        while self.next_entry(s, &mut e)? {
            s = e.end();
            let erase = if staged(&e, g) {
                false
            } else if candidate(&e, g) {
                !self.wins(&e, g)?
                    && !(confirmed < g && candidate(&e, confirmed) && self.wins(&e, confirmed)?)
            } else {
                true
            };
            if erase {
                self.erase_back(e.sector, e.end())?;
            }
        }
        // Pass 2: winning tombstones once no older candidate of their name is left (erasing one
        // earlier could bring such a candidate back). The candidates at the confirmed generation are
        // among those at the committed one, so a tombstone erased here hides nothing there either.
        let mut s = 0;
        let mut e = Entry::EMPTY;
        while self.next_entry(s, &mut e)? {
            s = e.end();
            if e.tombstone && candidate(&e, g) {
                let mut alone = true;
                let mut t = 0;
                let mut x = Entry::EMPTY;
                while self.next_entry(t, &mut x)? {
                    t = x.end();
                    if x.sector != e.sector && candidate(&x, g) && x.name == e.name {
                        alone = false;
                        break;
                    }
                }
                if alone {
                    self.erase_back(e.sector, e.end())?;
                }
            }
        }
        Ok(())
    }
}
