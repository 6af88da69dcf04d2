//! The store's errors, and where a failed call went wrong.

use core::fmt;

use rota_abi::status;

use embedded_storage::nor_flash::NorFlashErrorKind;

/// Everything a store operation can report. Each variant's value is the core's service status code
/// for it (`rota_abi::status`), so the code an overlay, the core's log and the server see is the
/// error itself, and its text is declared once, there.
#[repr(i8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The flash driver failed a read, write or erase.
    Flash = status::EIO as i8,
    /// Neither config copy is valid: the store was never formatted (or both copies are damaged).
    NoConfig = status::ENOCONFIG as i8,
    /// A name longer than [`NAME_MAX`](crate::NAME_MAX) bytes.
    NameTooLong = status::ENAMETOOLONG as i8,
    /// An empty name, a name containing a NUL byte, or a rename onto itself.
    BadName = status::EBADNAME as i8,
    /// A file that could never fit in the region.
    TooLarge = status::EFBIG as i8,
    /// A config payload over [`CONFIG_MAX`](crate::CONFIG_MAX) bytes.
    PayloadTooLong = status::ETOOLONG as i8,
    /// No contiguous free room for the extent, even after garbage collection.
    NoSpace = status::ENOSPC as i8,
    /// No such (live or staged, as the call needs) file.
    NotFound = status::ENOENT as i8,
    /// A write at another offset than the staged file's current progress.
    OutOfOrder = status::EORDER as i8,
    /// `stage_finish` before all bytes of the file were written.
    Incomplete = status::EINCOMPLETE as i8,
    /// The data's SHA-256 is not the announced digest; the staged file was dropped.
    DigestMismatch = status::EDIGEST as i8,
    /// Data read back after writing differs from what was written; the staged file was dropped.
    Readback = status::EREADBACK as i8,
    /// Flash contents are inconsistent (e.g. a live file whose data no longer matches its digest).
    Corrupt = status::ECORRUPT as i8,
    /// A commit with a lower security version than the store holds (anti-rollback); nothing was
    /// written.
    Downgrade = status::EROLLBACK as i8,
}

impl Error {
    /// The service status code of this error (negative).
    pub fn status(self) -> i32 {
        i32::from(self as i8)
    }

    /// A short human-readable description.
    pub fn describe(&self) -> &'static str {
        status::describe(self.status())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The flash access a store call was making when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reading.
    Read,
    /// Programming (writing).
    Write,
    /// Erasing a sector.
    Erase,
    /// Reading back what was just written and comparing it.
    ReadBack,
}

impl Access {
    /// A short human-readable name.
    pub fn describe(&self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Erase => "erase",
            Access::ReadBack => "read-back",
        }
    }
}

/// Where a store call failed with [`Error::Flash`] or [`Error::Readback`], as
/// [`Store::failure`](crate::Store::failure) reports it: the error the call returned, the flash
/// access it was making, the offset in the region, and the driver's own error kind when the driver
/// failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The error the call returned.
    pub error: Error,
    /// What the store was doing.
    pub access: Access,
    /// Offset in the storage region of the access that failed (for a read-back, of the first byte
    /// that differed, or of the record or header that did not check).
    pub offset: u32,
    /// The driver's error kind, when the driver reported the failure (`None` for a read-back
    /// mismatch, or an offset past 4 GB).
    pub driver: Option<NorFlashErrorKind>,
}

impl Failure {
    /// A short human-readable description of the error (the access and offset are fields; the
    /// `Display` form has all of them).
    pub fn describe(&self) -> &'static str {
        self.error.describe()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: flash {} at {:#010x}",
            self.error.describe(),
            self.access.describe(),
            self.offset
        )?;
        match self.driver {
            Some(k) => write!(f, " ({k:?})"),
            None => Ok(()),
        }
    }
}
