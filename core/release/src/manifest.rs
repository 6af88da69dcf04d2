//! The release manifest: its checked view ([`Manifest`]), its entries ([`Entry`]), its encoding
//! ([`encode`], and [`ManifestBuilder`] with `std`), and the file-set digest ([`set_digest`]).

use rota_blob::Isa;
use rota_limits::NAME_MAX;
use sha2::{Digest, Sha256};

/// The manifest's magic.
pub const MAGIC: [u8; 4] = *b"RRM1";
/// Bytes before the first entry: magic, security version, ISA, entry count, ABI.
pub const HEADER_SIZE: usize = 12;
/// Most entries a manifest holds (rota-limits' `RELEASE_FILES_MAX`).
pub const MAX_ENTRIES: usize = rota_limits::RELEASE_FILES_MAX;
/// Bytes of an entry besides its name: the name's length, size, version and SHA-256.
pub const ENTRY_FIXED: usize = 1 + 4 + 4 + 32;
/// The longest entry: one whose name has [`NAME_MAX`] bytes.
pub const ENTRY_MAX: usize = ENTRY_FIXED + NAME_MAX;
/// The longest manifest: [`MAX_ENTRIES`] entries of the longest name (732 bytes).
pub const MANIFEST_MAX: usize = HEADER_SIZE + MAX_ENTRIES * ENTRY_MAX;
/// What [`set_digest`] hashes before the entries.
pub const SET_DOMAIN: &[u8] = b"rota-set1";

// The entry count is one byte.
const _: () = assert!(MAX_ENTRIES <= u8::MAX as usize);

/// Why bytes are not a manifest, or an entry cannot be encoded. Each names the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestError {
    /// Fewer bytes than the 12-byte header.
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// The first four bytes are not [`MAGIC`].
    BadMagic,
    /// The ISA byte names no ISA `rota_blob::Isa` knows.
    UnknownIsa(u8),
    /// More than [`MAX_ENTRIES`] entries.
    TooManyEntries(usize),
    /// Entry `index`'s name is empty or longer than [`NAME_MAX`].
    NameLength {
        /// The entry's index.
        index: usize,
        /// The name's length.
        len: usize,
    },
    /// Entry `index`'s name is not after the previous one's (bytewise): out of order, or a
    /// duplicate.
    NotSorted {
        /// The entry's index.
        index: usize,
    },
    /// The bytes end inside entry `index`.
    Truncated {
        /// The entry's index.
        index: usize,
    },
    /// Bytes after the last entry.
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// An ABI version that does not fit the manifest's 16-bit field (encoding only).
    AbiTooLarge(u32),
    /// A file of more than `u32::MAX` bytes (building only).
    FileTooLarge {
        /// The file's index, as added.
        index: usize,
    },
    /// The output buffer is too small (encoding only).
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
    },
}

impl ManifestError {
    /// A short description for consoles without `core::fmt`.
    pub fn describe(&self) -> &'static str {
        match self {
            ManifestError::TooShort { .. } => "manifest too short",
            ManifestError::BadMagic => "bad manifest magic",
            ManifestError::UnknownIsa(_) => "unknown isa",
            ManifestError::TooManyEntries(_) => "too many entries",
            ManifestError::NameLength { .. } => "bad name length",
            ManifestError::NotSorted { .. } => "entries not sorted",
            ManifestError::Truncated { .. } => "entry truncated",
            ManifestError::TrailingBytes { .. } => "trailing bytes",
            ManifestError::AbiTooLarge(_) => "abi version too large",
            ManifestError::FileTooLarge { .. } => "file too large",
            ManifestError::BufferTooSmall { .. } => "buffer too small",
        }
    }
}

impl core::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ManifestError::TooShort { len } => {
                write!(
                    f,
                    "manifest of {len} bytes, shorter than its {HEADER_SIZE}-byte header"
                )
            }
            ManifestError::UnknownIsa(v) => write!(f, "unknown isa {v}"),
            ManifestError::TooManyEntries(n) => {
                write!(f, "{n} entries, more than {MAX_ENTRIES}")
            }
            ManifestError::NameLength { index, len } => {
                write!(f, "entry {index}: name of {len} bytes (1..={NAME_MAX})")
            }
            ManifestError::NotSorted { index } => {
                write!(
                    f,
                    "entry {index}: name not after the previous one (order or duplicate)"
                )
            }
            ManifestError::Truncated { index } => write!(f, "entry {index}: truncated"),
            ManifestError::TrailingBytes { extra } => {
                write!(f, "{extra} bytes after the last entry")
            }
            ManifestError::AbiTooLarge(v) => write!(f, "abi version {v} does not fit 16 bits"),
            ManifestError::FileTooLarge { index } => {
                write!(f, "file {index} is larger than 4 GiB")
            }
            ManifestError::BufferTooSmall { need } => write!(f, "buffer too small: need {need}"),
            ManifestError::BadMagic => f.write_str(self.describe()),
        }
    }
}

/// One file of a release: its name, size, version and SHA-256 (of the file as the device stores it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The file name: 1..=[`NAME_MAX`] bytes.
    pub name: &'a [u8],
    /// Its size in bytes.
    pub size: u32,
    /// Its version ([`file_version`] of its digest, for a release the signer made).
    pub version: u32,
    /// Its SHA-256.
    pub digest: &'a [u8; 32],
}

impl Entry<'_> {
    /// Bytes of the canonical encoding: [`ENTRY_FIXED`] + the name's length.
    pub fn encoded_len(&self) -> usize {
        ENTRY_FIXED + self.name.len()
    }

    /// Writes the canonical encoding (`name_len u8, name, size u32 LE, version u32 LE, sha256`) at
    /// the start of `out`; returns its length. The name must be 1..=[`NAME_MAX`] bytes
    /// (`NameLength { index: 0, .. }` otherwise).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ManifestError> {
        let len = self.name.len();
        if len == 0 || len > NAME_MAX {
            return Err(ManifestError::NameLength { index: 0, len });
        }
        let need = self.encoded_len();
        let out = out
            .get_mut(..need)
            .ok_or(ManifestError::BufferTooSmall { need })?;
        let (head, rest) = out.split_at_mut(1 + len);
        head[0] = len as u8;
        head[1..].copy_from_slice(self.name);
        rest[0..4].copy_from_slice(&self.size.to_le_bytes());
        rest[4..8].copy_from_slice(&self.version.to_le_bytes());
        rest[8..40].copy_from_slice(self.digest);
        Ok(need)
    }

    /// Feeds the canonical encoding to `h` without a buffer. A name longer than 255 bytes (never a
    /// valid one) gets a saturated length byte.
    fn hash_into(&self, h: &mut Sha256) {
        h.update([self.name.len().min(255) as u8]);
        h.update(self.name);
        h.update(self.size.to_le_bytes());
        h.update(self.version.to_le_bytes());
        h.update(self.digest);
    }
}

/// The version a file is given: the first 4 bytes of its SHA-256, little endian, never 0 (the
/// derivation rota-wire's `config_version` uses for config records). Equal
/// contents get equal versions, so a copy or a checkout changes none. The server sends files with
/// it (protocol v2's `Begin`), the signer writes it into the manifest.
pub fn file_version(digest: &[u8; 32]) -> u32 {
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]).max(1)
}

/// The digest of a file set: SHA-256 over [`SET_DOMAIN`] followed by each entry's canonical
/// encoding ([`Entry::encode`]), in the order given, which must be name order (bytewise increasing,
/// a manifest's order) for two sides to agree. The device computes it over its installed files, the
/// server over a release: equal digests mean the same files (names, sizes, versions, contents).
pub fn set_digest<'a>(entries: impl IntoIterator<Item = Entry<'a>>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(SET_DOMAIN);
    for e in entries {
        e.hash_into(&mut h);
    }
    h.finalize().into()
}

/// Reads the entry at `at` of `bytes`: the entry and the offset after it, or `None` if the bytes
/// end inside it or its name length is 0 or over [`NAME_MAX`]. Never panics.
fn read_entry(bytes: &[u8], at: usize) -> Option<(Entry<'_>, usize)> {
    let len = usize::from(*bytes.get(at)?);
    if len == 0 || len > NAME_MAX {
        return None;
    }
    let name = bytes.get(at + 1..at + 1 + len)?;
    let fixed = bytes.get(at + 1 + len..at + ENTRY_FIXED + len)?;
    let (size, fixed) = fixed.split_first_chunk::<4>()?;
    let (version, digest) = fixed.split_first_chunk::<4>()?;
    let digest: &[u8; 32] = digest.try_into().ok()?;
    let entry = Entry {
        name,
        size: u32::from_le_bytes(*size),
        version: u32::from_le_bytes(*version),
        digest,
    };
    Some((entry, at + ENTRY_FIXED + len))
}

/// A checked manifest over its bytes: every field was validated by [`Manifest::parse`], so no
/// accessor fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Manifest<'a> {
    bytes: &'a [u8],
    isa: Isa,
}

impl<'a> Manifest<'a> {
    /// Checks `bytes` as one whole manifest (`docs/signing.md`). Never panics on any input.
    pub fn parse(bytes: &'a [u8]) -> Result<Manifest<'a>, ManifestError> {
        let Some(header) = bytes.first_chunk::<HEADER_SIZE>() else {
            return Err(ManifestError::TooShort { len: bytes.len() });
        };
        if header[0..4] != MAGIC {
            return Err(ManifestError::BadMagic);
        }
        let isa = Isa::from_u8(header[8]).ok_or(ManifestError::UnknownIsa(header[8]))?;
        let count = usize::from(header[9]);
        if count > MAX_ENTRIES {
            return Err(ManifestError::TooManyEntries(count));
        }
        let mut at = HEADER_SIZE;
        let mut previous: Option<&[u8]> = None;
        for index in 0..count {
            let Some(&len) = bytes.get(at) else {
                return Err(ManifestError::Truncated { index });
            };
            let len = usize::from(len);
            if len == 0 || len > NAME_MAX {
                return Err(ManifestError::NameLength { index, len });
            }
            let (entry, next) = read_entry(bytes, at).ok_or(ManifestError::Truncated { index })?;
            if previous.is_some_and(|p| p >= entry.name) {
                return Err(ManifestError::NotSorted { index });
            }
            previous = Some(entry.name);
            at = next;
        }
        if at != bytes.len() {
            return Err(ManifestError::TrailingBytes {
                extra: bytes.len() - at,
            });
        }
        Ok(Manifest { bytes, isa })
    }

    /// The manifest's bytes (what the signature covers).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The release's security version (anti-rollback: a device refuses one lower than it has had).
    pub fn security_version(&self) -> u32 {
        u32::from_le_bytes([self.bytes[4], self.bytes[5], self.bytes[6], self.bytes[7]])
    }

    /// The ISA every blob of the release is built for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The ABI version the release's overlays are built against (`rota_abi::ABI_VERSION`).
    pub fn abi(&self) -> u16 {
        u16::from_le_bytes([self.bytes[10], self.bytes[11]])
    }

    /// The number of entries (0..=[`MAX_ENTRIES`]).
    pub fn len(&self) -> usize {
        usize::from(self.bytes[9])
    }

    /// Whether the release names no file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries, in name order.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            bytes: self.bytes,
            at: HEADER_SIZE,
            left: self.len(),
        }
    }

    /// The entry named `name`, if any.
    pub fn find(&self, name: &[u8]) -> Option<Entry<'a>> {
        self.entries().find(|e| e.name == name)
    }

    /// [`set_digest`] of the release's entries.
    pub fn set_digest(&self) -> [u8; 32] {
        set_digest(self.entries())
    }
}

/// The entries of a [`Manifest`], in order.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    bytes: &'a [u8],
    at: usize,
    left: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        if self.left == 0 {
            return None;
        }
        // Checked by `Manifest::parse`; a `None` here would end the iteration, never panic.
        let (entry, next) = read_entry(self.bytes, self.at)?;
        self.at = next;
        self.left -= 1;
        Some(entry)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Encodes a manifest of `entries` (which must be in strictly increasing name order) into `out`;
/// returns its length. Refuses what [`Manifest::parse`] would refuse, and an `abi` over 16 bits.
pub fn encode(
    security_version: u32,
    isa: Isa,
    abi: u32,
    entries: &[Entry<'_>],
    out: &mut [u8],
) -> Result<usize, ManifestError> {
    if entries.len() > MAX_ENTRIES {
        return Err(ManifestError::TooManyEntries(entries.len()));
    }
    let abi = u16::try_from(abi).map_err(|_| ManifestError::AbiTooLarge(abi))?;
    let mut previous: Option<&[u8]> = None;
    let mut need = HEADER_SIZE;
    for (index, e) in entries.iter().enumerate() {
        if e.name.is_empty() || e.name.len() > NAME_MAX {
            return Err(ManifestError::NameLength {
                index,
                len: e.name.len(),
            });
        }
        if previous.is_some_and(|p| p >= e.name) {
            return Err(ManifestError::NotSorted { index });
        }
        previous = Some(e.name);
        need += e.encoded_len();
    }
    let out = out
        .get_mut(..need)
        .ok_or(ManifestError::BufferTooSmall { need })?;
    out[0..4].copy_from_slice(&MAGIC);
    out[4..8].copy_from_slice(&security_version.to_le_bytes());
    out[8] = isa as u8;
    out[9] = entries.len() as u8;
    out[10..12].copy_from_slice(&abi.to_le_bytes());
    let mut at = HEADER_SIZE;
    for e in entries {
        at += e.encode(&mut out[at..])?;
    }
    Ok(at)
}

/// Builds a manifest from whole files (host side): each file's SHA-256 and [`file_version`] are
/// computed, the entries sorted by name.
#[cfg(feature = "std")]
#[derive(Clone, Debug)]
pub struct ManifestBuilder {
    security_version: u32,
    isa: Isa,
    abi: u32,
    files: std::vec::Vec<(std::vec::Vec<u8>, u64, [u8; 32])>,
}

#[cfg(feature = "std")]
impl ManifestBuilder {
    /// A manifest with no files yet.
    pub fn new(security_version: u32, isa: Isa, abi: u32) -> Self {
        ManifestBuilder {
            security_version,
            isa,
            abi,
            files: std::vec::Vec::new(),
        }
    }

    /// Adds the file `name` with contents `data` (checked by [`ManifestBuilder::build`]).
    pub fn file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        let digest = rota_blob::sha256(data);
        self.files.push((name.to_vec(), data.len() as u64, digest));
        self
    }

    /// The manifest's bytes: entries in name order. Refuses duplicates (`NotSorted`, index in name
    /// order), bad name lengths, more than [`MAX_ENTRIES`] files, a file over `u32::MAX` bytes and
    /// an ABI over 16 bits.
    pub fn build(&self) -> Result<std::vec::Vec<u8>, ManifestError> {
        if self.files.len() > MAX_ENTRIES {
            return Err(ManifestError::TooManyEntries(self.files.len()));
        }
        if let Some(index) = self.files.iter().position(|f| f.1 > u64::from(u32::MAX)) {
            return Err(ManifestError::FileTooLarge { index });
        }
        let mut files: std::vec::Vec<_> = self.files.iter().collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let versions: std::vec::Vec<u32> = files.iter().map(|f| file_version(&f.2)).collect();
        let entries: std::vec::Vec<Entry<'_>> = files
            .iter()
            .zip(&versions)
            .map(|(f, &version)| Entry {
                name: &f.0,
                size: f.1 as u32,
                version,
                digest: &f.2,
            })
            .collect();
        let mut out = std::vec![0u8; MANIFEST_MAX];
        let n = encode(
            self.security_version,
            self.isa,
            self.abi,
            &entries,
            &mut out,
        )?;
        out.truncate(n);
        Ok(out)
    }
}
