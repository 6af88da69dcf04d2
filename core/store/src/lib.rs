//! Power-fail-safe store of named files and a double config record on NOR flash.
//!
//! The store works on any [`NorFlash`] region (offsets from 0 to `capacity()`, 4 KB sectors, writes of
//! at most 4 bytes' granularity, erase sets `0xFF`, writes only clear bits). It keeps no directory in
//! RAM: every call reads the config record and scans the extent headers again, so a [`Store`] is a
//! few bytes and can be created per call. `docs/flash-layout.md` describes the layout and the commit
//! scheme; in short:
//!
//! - sectors 0 and 1 hold two copies of the config record (sequence number, committed *generation*,
//!   boot count, an opaque payload); the valid copy with the higher sequence number is current, and a
//!   new record always overwrites the other copy;
//! - sectors 2.. hold file extents: a header (name, size, version, SHA-256, generation, state words)
//!   followed by the file's bytes, contiguous;
//! - an update stages files at generation `committed + 1` ([`Store::stage_begin`],
//!   [`Store::stage_write`], [`Store::stage_finish`], [`Store::stage_delete`], [`Store::stage_rename`])
//!   and [`Store::commit`] makes all of them live at once by writing one config record;
//! - a commit may leave the new generation on trial (`docs/trial-boot.md`): the last confirmed
//!   generation's files are kept until [`Store::confirm`], and [`Store::revert`] goes back to them
//!   with one record write; [`Store::bump_boot`] counts the trial boots, [`Store::mark_end`]
//!   records a trial boot's panic or fault;
//! - [`Store::gc`] erases what is no longer reachable, tail sector first.
//!
//! Every byte read from flash is untrusted: malformed headers are skipped, malformed config copies
//! ignored, and no flash content can make a call panic or index out of bounds.
//!
//! The code is split the same way: `layout` (the on-flash formats), `flash` (raw access and the
//! erase order), `config` (the record), `scan` (walking headers, liveness), `read`, `stage`
//! (allocation, writing, verifying), `hash` (SHA-256 over flash), `trial` (commit, confirm,
//! revert) and `collect` (gc); this file holds the public types.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod collect;
mod config;
mod error;
mod flash;
mod hash;
mod layout;
mod read;
mod scan;
mod stage;
mod trial;

use embedded_storage::nor_flash::NorFlash;
use layout::{Entry, SECTOR};

pub use error::{Access, Error, Failure};
pub use layout::{header_area, DATA_ALIGN};

/// Bytes of file data per progress word: the granularity of resuming an interrupted transfer.
pub const CHUNK: u32 = 1024;
/// Longest file name, in bytes.
pub use rota_limits::NAME_MAX;
/// Largest config payload, in bytes (the core's config record).
pub use rota_limits::RECORD_MAX as CONFIG_MAX;
/// Bytes per sector: the unit of erase and of extent allocation.
pub const SECTOR_SIZE: u32 = SECTOR;

/// Size of the stack buffers used to stream data through (reads, compares, hashing).
pub(crate) const BUF: usize = 64;

/// A file name: 1 to [`NAME_MAX`] bytes, no NUL byte (the ABI's type, so the core hands the store's
/// names to overlays as they are).
pub use rota_abi::Name;

/// What a commit carries besides the files: security version, trial boots, who may confirm (the
/// ABI's type, so the core passes an overlay's as it is).
pub use rota_abi::CommitParams;

/// Checks and copies `name`, saying which rule it breaks.
pub(crate) fn checked_name(name: &[u8]) -> Result<Name, Error> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    if name.contains(&0) {
        return Err(Error::BadName);
    }
    Name::new(name).ok_or(Error::BadName)
}

/// The current config record, as [`Store::config`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigInfo {
    /// Sequence number of the record (every record write increments it).
    pub seq: u32,
    /// Committed generation: files staged at a higher generation are not live.
    pub generation: u32,
    /// Boot count, as [`Store::bump_boot`] last persisted it.
    pub boot_count: u32,
    /// Full payload length (the caller's buffer may have received fewer bytes).
    pub len: usize,
    /// The last confirmed generation (at most `generation`; lower while that one is on trial).
    pub confirmed: u32,
    /// The highest security version committed (never decreases).
    pub security_version: u32,
    /// Boots counted on trial ([`Store::bump_boot`]); 0 when nothing is on trial.
    pub trials: u8,
    /// Boots the generation on trial may take without a confirm: the boot that counts one more
    /// reverts it.
    pub trial_limit: u8,
    /// Only the app may confirm the generation on trial.
    pub needs_app: bool,
    /// The last rollback, kept until the next commit ([`Rollback::NONE`] if none).
    pub rollback: Rollback,
    /// How the previous trial boot ended, as its panic or fault handler marked it
    /// ([`TrialEnd::NONE`]: without a mark, or not on trial).
    pub ended: TrialEnd,
}

impl ConfigInfo {
    /// Whether the committed generation is on trial.
    pub fn on_trial(&self) -> bool {
        self.generation > self.confirmed
    }

    /// Whether this boot (already counted by [`Store::bump_boot`]) is one more than the trial
    /// allows: the core reverts before loading anything. With a limit of N the boot counted N + 1
    /// reverts, so exactly N boots ran the generation on trial; a limit of 255 never reverts.
    pub fn revert_due(&self) -> bool {
        self.on_trial() && self.trials > self.trial_limit
    }
}

/// A rollback the store made ([`Store::revert`]): from which generation to which, why and in which
/// phase (the reason and phase numbers are the core's, `rota_abi::rollback`; the store keeps them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rollback {
    /// The generation rolled back (0: no rollback).
    pub from: u32,
    /// The generation rolled back to.
    pub to: u32,
    /// Why.
    pub reason: u8,
    /// In which phase the last trial boot ended.
    pub phase: u8,
}

impl Rollback {
    /// No rollback.
    pub const NONE: Rollback = Rollback {
        from: 0,
        to: 0,
        reason: 0,
        phase: 0,
    };
}

/// How a trial boot ended, as a panic or fault handler records it ([`Store::mark_end`]): a
/// reason (never 0) and a phase, numbered by the core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrialEnd {
    /// Why it ended (0: no record).
    pub reason: u8,
    /// The phase it ended in.
    pub phase: u8,
}

impl TrialEnd {
    /// No record.
    pub const NONE: TrialEnd = TrialEnd {
        reason: 0,
        phase: 0,
    };
}

/// A live file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct File {
    /// Its name.
    pub name: Name,
    /// Its size in bytes.
    pub size: u32,
    /// The version the server gave it.
    pub version: u32,
    /// SHA-256 of its contents.
    pub digest: [u8; 32],
    /// Offset of its first byte in the storage region; the bytes are contiguous.
    pub data_offset: u32,
    /// The generation that committed it.
    pub generation: u32,
}

/// A staged entry (written at generation committed + 1), as [`Store::next_staged`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staged {
    /// Its name.
    pub name: Name,
    /// A tombstone: commit deletes `name`.
    pub tombstone: bool,
    /// Announced size in bytes (0 for a tombstone).
    pub size: u32,
    /// Announced version.
    pub version: u32,
    /// Announced SHA-256.
    pub digest: [u8; 32],
    /// Bytes written and read back so far, from which a transfer resumes (`size` once verified).
    pub done: u32,
    /// The whole file was written and its digest checked: commit makes it live.
    pub verified: bool,
    /// Offset of its first byte in the storage region (the bytes are contiguous): where it will be
    /// read from once committed, as [`File::data_offset`] (0 for a tombstone).
    pub data_offset: u32,
}

/// Position of an iteration over the store ([`Store::next_file`], [`Store::next_staged`]); start
/// with `Cursor::default()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    sector: u32,
}

/// The staged file the last [`Store::stage_begin`] or [`Store::stage_write`] of a `Store` value
/// wrote, and where that write ended (RAM only). The next `stage_write` of that file takes its extent
/// from here instead of reading the config record and scanning the headers again, once flash confirms
/// it: the header at its sector still has the same checksum and is neither dead nor verified (an extent
/// dropped, erased or completed since is found again the usual way; one written again with the same
/// header starts with no progress, which the write position then does not match). Every other change a
/// `Store` value makes forgets it; a caller that creates a `Store` per call carries it from one to the
/// next ([`Store::staging`], [`Store::with_staging`]) and leaves it behind whenever the store changed
/// otherwise.
#[derive(Clone, Copy)]
pub struct Staging {
    entry: Entry,
    /// The header's checksum word.
    crc: u32,
    /// Where the last write ended.
    pos: u32,
}

/// The file store over a NOR flash region. Holds the flash and a few bytes; no heap, no directory.
pub struct Store<F> {
    flash: F,
    staging: Option<Staging>,
    failure: Option<Failure>,
}

impl<F: NorFlash> Store<F> {
    /// Wraps `flash` (the storage region). Nothing is read until a call needs it.
    pub fn new(flash: F) -> Self {
        const {
            assert!(
                (SECTOR as usize).is_multiple_of(F::ERASE_SIZE),
                "erase size must divide 4096"
            );
            assert!(
                4usize.is_multiple_of(F::WRITE_SIZE),
                "write size must divide 4"
            );
            assert!(
                4usize.is_multiple_of(F::READ_SIZE),
                "read size must divide 4"
            );
        }
        Store {
            flash,
            staging: None,
            failure: None,
        }
    }

    /// Wraps `flash` like [`Store::new`], knowing the file a previous `Store` value over the same
    /// flash was staging ([`Store::staging`]), provided nothing changed the store since.
    pub fn with_staging(flash: F, staging: Option<Staging>) -> Self {
        let mut store = Store::new(flash);
        store.staging = staging;
        store
    }

    /// The file this `Store` value is staging and where its last write ended, for the next `Store`
    /// value over the same flash ([`Store::with_staging`]).
    pub fn staging(&self) -> Option<Staging> {
        self.staging
    }

    /// The flash, e.g. for a loader that reads a file's data in place.
    pub fn flash(&mut self) -> &mut F {
        &mut self.flash
    }

    /// Gives the flash back.
    pub fn into_inner(self) -> F {
        self.flash
    }

    /// Where the most recent call through this `Store` value that returned [`Error::Flash`] or
    /// [`Error::Readback`] failed: which flash access, at which offset, and the driver's error kind.
    /// `None` if no call has failed so far; not cleared by later calls that succeed.
    pub fn failure(&self) -> Option<Failure> {
        self.failure
    }
}
