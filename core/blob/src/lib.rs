//! The rota overlay blob format (see `docs/overlay-format.md`).
//!
//! ```text
//! offset size  field
//!  0      4    magic "ROTB"
//!  4      2    format version (1)
//!  6      2    header size (48)
//!  8      4    total size: header + relocations + image + digest
//! 12      1    ISA (1 = thumbv7m, 2 = Xtensa LX106)
//! 13      1    flags (0)
//! 14      2    reserved (0)
//! 16      4    ABI version of the service table the overlay was built against
//! 20     16    name: ASCII [a-z0-9_-], NUL padded, at least one character
//! 36      4    image size (multiple of 4)
//! 40      4    entry offset inside the image
//! 44      4    relocation count
//! 48    4*n    relocations: offsets of 32-bit image words to which the load base is added,
//!              4-aligned, strictly increasing, each word inside the image
//!  ..  image   code and read-only data, linked at address 0
//!  ..     32   SHA-256 of every byte before it
//! ```
//! All integers are little-endian. Parsing follows smoltcp's contract: [`Header::new_checked`] checks the
//! length once, after which no accessor can panic, and [`HeaderRepr::parse`] turns every malformed field
//! into a typed [`Error`].
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod verify;

pub use verify::{relocate_word, unrelocate_word, Verifier};

use sha2::{Digest, Sha256};

/// The blob magic.
pub const MAGIC: [u8; 4] = *b"ROTB";
/// The format version this crate reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the fixed header.
pub const HEADER_SIZE: usize = 48;
/// Size of the trailing digest.
pub const DIGEST_SIZE: usize = 32;
/// Longest overlay name in a blob header (the overlay's own name, not the file name it is stored
/// under, which rota-limits' `NAME_MAX` bounds).
pub const OVERLAY_NAME_MAX: usize = 16;

/// Instruction set an overlay image is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Isa {
    /// ARMv7-M Thumb-2 (Cortex-M3); entry is called with the Thumb bit set.
    Thumbv7m = 1,
    /// Xtensa LX106 (ESP8266), CALL0 ABI.
    Lx106 = 2,
}

impl Isa {
    /// Decodes an ISA byte.
    pub fn from_u8(v: u8) -> Option<Isa> {
        match v {
            1 => Some(Isa::Thumbv7m),
            2 => Some(Isa::Lx106),
            _ => None,
        }
    }

    /// Short name used by tools and reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Thumbv7m => "thumbv7m",
            Isa::Lx106 => "lx106",
        }
    }
}

/// Why a blob was refused. Every variant is reachable from malformed bytes; none panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the format needs at this point.
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The first four bytes are not [`MAGIC`].
    BadMagic,
    /// A format version this crate does not read.
    UnsupportedFormat(u16),
    /// The header-size field is not [`HEADER_SIZE`].
    BadHeaderSize(u16),
    /// The ISA byte names no known ISA.
    UnknownIsa(u8),
    /// The blob is for another ISA than the loader's.
    WrongIsa {
        /// The loader's ISA.
        expected: Isa,
        /// The blob's ISA.
        found: Isa,
    },
    /// The blob was built against another service-table ABI.
    AbiMismatch {
        /// The core's ABI version.
        expected: u32,
        /// The blob's ABI version.
        found: u32,
    },
    /// Flags or reserved bytes are not zero.
    Reserved,
    /// The name is empty, not NUL padded, or has a byte outside `[a-z0-9_-]`.
    BadName,
    /// The image size is zero or not a multiple of 4.
    BadImageSize(u32),
    /// The image is larger than the place it would go.
    ImageTooLarge {
        /// Image size.
        size: u32,
        /// The limit (arena size).
        limit: u32,
    },
    /// The entry offset is outside the image or misaligned for the ISA.
    BadEntry(u32),
    /// The total-size field disagrees with the sizes it is made of.
    SizeMismatch {
        /// The total-size field.
        stated: u32,
        /// Header + relocations + image + digest.
        computed: u64,
    },
    /// Relocation `index` is misaligned, outside the image, or not after the previous one.
    BadRelocation {
        /// Index in the relocation table.
        index: u32,
        /// The offending offset.
        offset: u32,
    },
    /// The digest does not match the blob's bytes.
    DigestMismatch,
    /// Bytes fed to a [`Verifier`] after the blob ended, or a finish before it ended.
    Sequence,
}

impl Error {
    /// A short description for consoles without `core::fmt`.
    pub fn describe(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::BadMagic => "bad magic",
            Error::UnsupportedFormat(_) => "unsupported format version",
            Error::BadHeaderSize(_) => "bad header size",
            Error::UnknownIsa(_) => "unknown isa",
            Error::WrongIsa { .. } => "wrong isa",
            Error::AbiMismatch { .. } => "abi version mismatch",
            Error::Reserved => "reserved bits set",
            Error::BadName => "bad name",
            Error::BadImageSize(_) => "bad image size",
            Error::ImageTooLarge { .. } => "image too large",
            Error::BadEntry(_) => "entry outside image",
            Error::SizeMismatch { .. } => "total size mismatch",
            Error::BadRelocation { .. } => "bad relocation",
            Error::DigestMismatch => "digest mismatch",
            Error::Sequence => "blob length mismatch",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::Truncated { need, have } => {
                write!(f, "truncated: need {need} bytes, have {have}")
            }
            Error::UnsupportedFormat(v) => write!(f, "unsupported format version {v}"),
            Error::BadHeaderSize(v) => write!(f, "bad header size {v}"),
            Error::UnknownIsa(v) => write!(f, "unknown isa {v}"),
            Error::WrongIsa { expected, found } => {
                write!(
                    f,
                    "wrong isa: blob is {}, loader is {}",
                    found.name(),
                    expected.name()
                )
            }
            Error::AbiMismatch { expected, found } => {
                write!(f, "abi version mismatch: blob {found}, core {expected}")
            }
            Error::BadImageSize(v) => write!(f, "bad image size {v}"),
            Error::ImageTooLarge { size, limit } => {
                write!(f, "image of {size} bytes exceeds limit {limit}")
            }
            Error::BadEntry(v) => write!(f, "entry offset {v:#x} outside image or misaligned"),
            Error::SizeMismatch { stated, computed } => {
                write!(f, "total size {stated} but parts add up to {computed}")
            }
            Error::BadRelocation { index, offset } => {
                write!(f, "bad relocation #{index} at {offset:#x}")
            }
            other => f.write_str(other.describe()),
        }
    }
}

/// A checked view of a blob header over any byte buffer.
#[derive(Clone, Copy, Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const FORMAT: Range<usize> = 4..6;
    pub const HEADER_SIZE: Range<usize> = 6..8;
    pub const TOTAL_SIZE: Range<usize> = 8..12;
    pub const ISA: usize = 12;
    pub const FLAGS: usize = 13;
    pub const RESERVED: Range<usize> = 14..16;
    pub const ABI: Range<usize> = 16..20;
    pub const NAME: Range<usize> = 20..36;
    pub const IMAGE_SIZE: Range<usize> = 36..40;
    pub const ENTRY: Range<usize> = 40..44;
    pub const RELOC_COUNT: Range<usize> = 44..48;
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buffer` after checking that it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let have = buffer.as_ref().len();
        if have < HEADER_SIZE {
            return Err(Error::Truncated {
                need: HEADER_SIZE,
                have,
            });
        }
        Ok(Header { buffer })
    }

    fn b(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_SIZE]
    }

    /// The magic bytes.
    pub fn magic(&self) -> [u8; 4] {
        let b = &self.b()[field::MAGIC];
        [b[0], b[1], b[2], b[3]]
    }
    /// The format version field.
    pub fn format_version(&self) -> u16 {
        le16(&self.b()[field::FORMAT])
    }
    /// The header-size field.
    pub fn header_size(&self) -> u16 {
        le16(&self.b()[field::HEADER_SIZE])
    }
    /// The total-size field.
    pub fn total_size(&self) -> u32 {
        le32(&self.b()[field::TOTAL_SIZE])
    }
    /// The raw ISA byte.
    pub fn isa(&self) -> u8 {
        self.b()[field::ISA]
    }
    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.b()[field::FLAGS]
    }
    /// The reserved field.
    pub fn reserved(&self) -> u16 {
        le16(&self.b()[field::RESERVED])
    }
    /// The ABI-version field.
    pub fn abi_version(&self) -> u32 {
        le32(&self.b()[field::ABI])
    }
    /// The raw, NUL-padded name.
    pub fn name_raw(&self) -> &[u8] {
        &self.b()[field::NAME]
    }
    /// The image-size field.
    pub fn image_size(&self) -> u32 {
        le32(&self.b()[field::IMAGE_SIZE])
    }
    /// The entry-offset field.
    pub fn entry_offset(&self) -> u32 {
        le32(&self.b()[field::ENTRY])
    }
    /// The relocation-count field.
    pub fn reloc_count(&self) -> u32 {
        le32(&self.b()[field::RELOC_COUNT])
    }
}

/// An overlay name: 1 to 16 bytes of `[a-z0-9_-]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OverlayName {
    bytes: [u8; OVERLAY_NAME_MAX],
    len: u8,
}

impl OverlayName {
    /// Validates `s` as a name.
    pub fn new(s: &[u8]) -> Result<OverlayName, Error> {
        if s.is_empty() || s.len() > OVERLAY_NAME_MAX {
            return Err(Error::BadName);
        }
        if !s
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
        {
            return Err(Error::BadName);
        }
        let mut bytes = [0; OVERLAY_NAME_MAX];
        bytes[..s.len()].copy_from_slice(s);
        Ok(OverlayName {
            bytes,
            len: s.len() as u8,
        })
    }

    fn from_padded(raw: &[u8]) -> Result<OverlayName, Error> {
        let len = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        if raw[len..].iter().any(|&c| c != 0) {
            return Err(Error::BadName);
        }
        OverlayName::new(&raw[..len])
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The name as text (always valid ASCII).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("?")
    }
}

impl core::fmt::Debug for OverlayName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// The parsed, validated form of a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderRepr {
    /// ISA of the image.
    pub isa: Isa,
    /// ABI version the overlay was built against.
    pub abi_version: u32,
    /// Overlay name.
    pub name: OverlayName,
    /// Image size in bytes.
    pub image_size: u32,
    /// Entry offset inside the image.
    pub entry_offset: u32,
    /// Number of relocations.
    pub reloc_count: u32,
}

impl HeaderRepr {
    /// Parses and validates every header field (but not the ISA/ABI against a loader: see
    /// [`HeaderRepr::check_compatible`]).
    pub fn parse<T: AsRef<[u8]>>(h: &Header<T>) -> Result<HeaderRepr, Error> {
        if h.magic() != MAGIC {
            return Err(Error::BadMagic);
        }
        if h.format_version() != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat(h.format_version()));
        }
        if h.header_size() as usize != HEADER_SIZE {
            return Err(Error::BadHeaderSize(h.header_size()));
        }
        let isa = Isa::from_u8(h.isa()).ok_or(Error::UnknownIsa(h.isa()))?;
        if h.flags() != 0 || h.reserved() != 0 {
            return Err(Error::Reserved);
        }
        let name = OverlayName::from_padded(h.name_raw())?;
        let image_size = h.image_size();
        if image_size == 0 || image_size % 4 != 0 {
            return Err(Error::BadImageSize(image_size));
        }
        let entry_offset = h.entry_offset();
        let entry_align = match isa {
            Isa::Thumbv7m => 2,
            Isa::Lx106 => 4,
        };
        if entry_offset >= image_size || !entry_offset.is_multiple_of(entry_align) {
            return Err(Error::BadEntry(entry_offset));
        }
        let repr = HeaderRepr {
            isa,
            abi_version: h.abi_version(),
            name,
            image_size,
            entry_offset,
            reloc_count: h.reloc_count(),
        };
        let computed = repr.computed_total();
        if computed != u64::from(h.total_size()) {
            return Err(Error::SizeMismatch {
                stated: h.total_size(),
                computed,
            });
        }
        Ok(repr)
    }

    fn computed_total(&self) -> u64 {
        HEADER_SIZE as u64
            + 4 * u64::from(self.reloc_count)
            + u64::from(self.image_size)
            + DIGEST_SIZE as u64
    }

    /// Total blob size in bytes. Fits in `u32` for any parsed header.
    pub fn total_size(&self) -> u32 {
        self.computed_total() as u32
    }

    /// Offset of the relocation table in the blob.
    pub fn relocs_offset(&self) -> u32 {
        HEADER_SIZE as u32
    }

    /// Offset of the image in the blob.
    pub fn image_offset(&self) -> u32 {
        HEADER_SIZE as u32 + 4 * self.reloc_count
    }

    /// Offset of the digest in the blob.
    pub fn digest_offset(&self) -> u32 {
        self.image_offset() + self.image_size
    }

    /// Checks the blob against a loader: same ISA, same ABI, image fits in `limit` bytes.
    pub fn check_compatible(&self, isa: Isa, abi_version: u32, limit: u32) -> Result<(), Error> {
        if self.isa != isa {
            return Err(Error::WrongIsa {
                expected: isa,
                found: self.isa,
            });
        }
        if self.abi_version != abi_version {
            return Err(Error::AbiMismatch {
                expected: abi_version,
                found: self.abi_version,
            });
        }
        if self.image_size > limit {
            return Err(Error::ImageTooLarge {
                size: self.image_size,
                limit,
            });
        }
        Ok(())
    }

    /// Writes the header into `out` (at least [`HEADER_SIZE`] bytes).
    pub fn emit(&self, out: &mut [u8]) -> Result<(), Error> {
        if out.len() < HEADER_SIZE {
            return Err(Error::Truncated {
                need: HEADER_SIZE,
                have: out.len(),
            });
        }
        let out = &mut out[..HEADER_SIZE];
        out.fill(0);
        out[field::MAGIC].copy_from_slice(&MAGIC);
        out[field::FORMAT].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[field::HEADER_SIZE].copy_from_slice(&(HEADER_SIZE as u16).to_le_bytes());
        out[field::TOTAL_SIZE].copy_from_slice(&self.total_size().to_le_bytes());
        out[field::ISA] = self.isa as u8;
        out[field::ABI].copy_from_slice(&self.abi_version.to_le_bytes());
        out[field::NAME][..self.name.as_bytes().len()].copy_from_slice(self.name.as_bytes());
        out[field::IMAGE_SIZE].copy_from_slice(&self.image_size.to_le_bytes());
        out[field::ENTRY].copy_from_slice(&self.entry_offset.to_le_bytes());
        out[field::RELOC_COUNT].copy_from_slice(&self.reloc_count.to_le_bytes());
        Ok(())
    }
}

/// A whole blob held in memory, fully verified (header, every relocation, digest).
#[derive(Clone, Copy, Debug)]
pub struct Blob<'a> {
    /// The parsed header.
    pub header: HeaderRepr,
    bytes: &'a [u8],
}

impl<'a> Blob<'a> {
    /// Verifies `bytes` as one complete blob (trailing bytes are refused).
    pub fn parse(bytes: &'a [u8]) -> Result<Blob<'a>, Error> {
        let mut v = Verifier::new();
        v.feed(bytes)?;
        let header = v.finish()?;
        Ok(Blob { header, bytes })
    }

    /// The relocation offsets, in order.
    pub fn relocs(&self) -> impl Iterator<Item = u32> + 'a {
        let start = self.header.relocs_offset() as usize;
        let end = self.header.image_offset() as usize;
        self.bytes[start..end]
            .as_chunks::<4>()
            .0
            .iter()
            .map(|w| u32::from_le_bytes(*w))
    }

    /// The image as linked at address 0.
    pub fn image(&self) -> &'a [u8] {
        &self.bytes[self.header.image_offset() as usize..self.header.digest_offset() as usize]
    }

    /// Copies the image into `dest` and patches it for load address `base`.
    pub fn relocate_into(&self, dest: &mut [u8], base: u32) -> Result<(), Error> {
        let image = self.image();
        if dest.len() < image.len() {
            return Err(Error::ImageTooLarge {
                size: self.header.image_size,
                limit: dest.len() as u32,
            });
        }
        dest[..image.len()].copy_from_slice(image);
        for off in self.relocs() {
            let o = off as usize;
            let w = le32(&dest[o..o + 4]);
            dest[o..o + 4].copy_from_slice(&relocate_word(w, base).to_le_bytes());
        }
        Ok(())
    }
}

/// Relocates a whole blob held in `bytes` as it is stored to run in place at `base` (the address its
/// image will have in the flash mapping): every image word a relocation names becomes
/// `relocate_word(word, base)`; the header, the relocation table and the digest stay as built, so the
/// digest still describes the blob as built (`docs/overlay-format.md`, "Running in place"). The blob
/// is verified first and left unchanged if it is refused. What the resident core's store services
/// write while staging such a blob; for tools that write a storage image, and for tests.
pub fn relocate_stored(bytes: &mut [u8], base: u32) -> Result<HeaderRepr, Error> {
    let header = Blob::parse(bytes)?.header;
    let image = header.image_offset() as usize;
    for i in 0..header.reloc_count as usize {
        let at = header.relocs_offset() as usize + 4 * i;
        let o = image + le32(&bytes[at..at + 4]) as usize;
        let w = relocate_word(le32(&bytes[o..o + 4]), base);
        bytes[o..o + 4].copy_from_slice(&w.to_le_bytes());
    }
    Ok(header)
}

/// Builds a blob from an image linked at 0, its relocation offsets and entry offset.
#[cfg(feature = "alloc")]
pub fn emit_blob(
    isa: Isa,
    abi_version: u32,
    name: &str,
    image: &[u8],
    entry_offset: u32,
    relocs: &[u32],
) -> Result<alloc::vec::Vec<u8>, Error> {
    let mut relocs = alloc::vec::Vec::from(relocs);
    relocs.sort_unstable();
    relocs.dedup();
    let mut padded = alloc::vec::Vec::from(image);
    while padded.len() % 4 != 0 {
        padded.push(0);
    }
    let image_size = u32::try_from(padded.len()).map_err(|_| Error::BadImageSize(u32::MAX))?;
    let repr = HeaderRepr {
        isa,
        abi_version,
        name: OverlayName::new(name.as_bytes())?,
        image_size,
        entry_offset,
        reloc_count: u32::try_from(relocs.len()).map_err(|_| Error::Sequence)?,
    };
    let mut out = alloc::vec![0u8; HEADER_SIZE];
    repr.emit(&mut out)?;
    for r in &relocs {
        out.extend_from_slice(&r.to_le_bytes());
    }
    out.extend_from_slice(&padded);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    // Never hand out a blob the loader would refuse.
    Blob::parse(&out)?;
    Ok(out)
}

/// SHA-256 of `bytes` (used for blob digests; exported so tools share one implementation).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
