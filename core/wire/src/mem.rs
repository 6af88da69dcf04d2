//! An in-memory [`FileStore`] with the staging semantics of `rota-store`, for tests and simulated
//! devices (feature `std`): committed files survive; staged data survives a reboot (it is on flash);
//! pending deletions and renames do not (a new session sends them again); nothing staged is visible
//! before [`FileStore::commit`].

use std::collections::BTreeMap;
use std::vec::Vec;

use crate::msg::{state_digest, ConfigVersion, FileInfo, Hello, Name, StagedInfo};
use crate::{sha256, CommitInfo, Digest, FileStore, StoredFile, MAX_NAME};

/// A file being staged: what `stage_begin` announced and what was written so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// Announced size.
    pub size: u32,
    /// Announced digest.
    pub digest: Digest,
    /// Announced version.
    pub version: u32,
    /// Bytes written so far.
    pub data: Vec<u8>,
    /// Whether `stage_finish` checked it.
    pub finished: bool,
}

/// Errors of [`MemStore`], each with its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    /// No such file.
    NotFound = 1,
    /// A write not at the end of the staged data.
    Offset = 2,
    /// The content does not have the announced digest.
    Digest = 3,
    /// More data than announced.
    Size = 4,
    /// Commit with a file still being staged.
    Unfinished = 5,
    /// Commit of a security version below the store's.
    Rollback = 6,
}

/// An in-memory file store with staging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStore {
    /// Committed files: content and version.
    pub files: BTreeMap<Vec<u8>, (Vec<u8>, u32)>,
    /// Staged files (kept across sessions, as on flash).
    pub staged: BTreeMap<Vec<u8>, Staged>,
    /// Deletions pending commit (forgotten at the next boot).
    pub deletes: Vec<Vec<u8>>,
    /// Renames pending commit (forgotten at the next boot).
    pub renames: Vec<(Vec<u8>, Vec<u8>)>,
    /// The committed config record.
    pub config: Option<Vec<u8>>,
    /// Commits so far.
    pub generation: u32,
    /// Boots so far: the device nonce of the latest check-in.
    pub boots: u32,
    /// The highest security version committed.
    pub security_version: u32,
    /// How the last commit was to be kept.
    pub last_commit: Option<CommitInfo>,
}

impl MemStore {
    /// A new boot: pending deletions and renames are gone, the boot counter moves; returns it.
    pub fn reboot(&mut self) -> u32 {
        self.deletes.clear();
        self.renames.clear();
        self.boots += 1;
        self.boots
    }

    /// The committed files, as a Hello's digest and a `Files` answer list them.
    pub fn file_list(&self) -> Vec<FileInfo<'_>> {
        self.files
            .iter()
            .filter_map(|(name, (data, version))| {
                Some(FileInfo {
                    name: Name::new(name)?,
                    size: data.len() as u32,
                    version: *version,
                    digest: sha256(data),
                })
            })
            .collect()
    }

    /// The check-in this content makes (no heap report, ISA and ABI 0, no flags): the digest of the
    /// committed files, the staged files, as many as a Hello holds, and the version of the
    /// committed config.
    pub fn check_in(&self, device_id: u32, nonce: u32) -> Hello<'_> {
        let mut hello = Hello {
            device_id,
            nonce,
            isa: 0,
            abi: 0,
            flags: 0,
            config: ConfigVersion(
                self.config
                    .as_deref()
                    .map_or(0, crate::config::config_version),
            ),
            state: state_digest(&mut self.file_list()),
            security_version: self.security_version,
            staged: Default::default(),
            rollback: None,
            heap: Default::default(),
        };
        for (name, s) in &self.staged {
            let Some(name) = Name::new(name) else {
                continue;
            };
            let info = StagedInfo {
                name,
                size: s.size,
                digest: s.digest,
                done: s.data.len() as u32,
            };
            if hello.staged.push(info).is_err() {
                break;
            }
        }
        hello
    }
}

impl FileStore for MemStore {
    type Error = MemError;

    fn stage_begin(
        &mut self,
        name: &[u8],
        size: u32,
        digest: &Digest,
        version: u32,
    ) -> Result<u32, MemError> {
        if let Some(s) = self.staged.get(name) {
            if s.size == size && s.digest == *digest {
                return Ok(s.data.len() as u32);
            }
        }
        let fresh = Staged {
            size,
            digest: *digest,
            version,
            data: Vec::new(),
            finished: false,
        };
        self.staged.insert(name.to_vec(), fresh);
        Ok(0)
    }

    fn stage_write(&mut self, name: &[u8], offset: u32, data: &[u8]) -> Result<(), MemError> {
        let s = self.staged.get_mut(name).ok_or(MemError::NotFound)?;
        if offset as usize != s.data.len() {
            return Err(MemError::Offset);
        }
        if s.data.len() + data.len() > s.size as usize {
            return Err(MemError::Size);
        }
        s.data.extend_from_slice(data);
        Ok(())
    }

    fn stage_finish(&mut self, name: &[u8]) -> Result<(), MemError> {
        let s = self.staged.get_mut(name).ok_or(MemError::NotFound)?;
        if s.data.len() != s.size as usize || sha256(&s.data) != s.digest {
            return Err(MemError::Digest);
        }
        s.finished = true;
        Ok(())
    }

    fn stage_drop(&mut self, name: &[u8]) -> Result<(), MemError> {
        self.staged.remove(name).map(drop).ok_or(MemError::NotFound)
    }

    fn stage_delete(&mut self, name: &[u8]) -> Result<(), MemError> {
        if !self.files.contains_key(name) {
            return Err(MemError::NotFound);
        }
        self.deletes.push(name.to_vec());
        Ok(())
    }

    fn stage_rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), MemError> {
        if !self.files.contains_key(from) {
            return Err(MemError::NotFound);
        }
        self.renames.push((from.to_vec(), to.to_vec()));
        Ok(())
    }

    fn read(&mut self, name: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, MemError> {
        let (data, _) = self.files.get(name).ok_or(MemError::NotFound)?;
        let rest = data.get(offset as usize..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn file(&mut self, index: u32) -> Result<Option<StoredFile>, MemError> {
        let Some((name, (data, version))) = self.files.iter().nth(index as usize) else {
            return Ok(None);
        };
        let mut f = StoredFile {
            name_len: name.len().min(MAX_NAME) as u8,
            name: [0; MAX_NAME],
            size: data.len() as u32,
            version: *version,
            digest: sha256(data),
        };
        f.name[..usize::from(f.name_len)].copy_from_slice(&name[..usize::from(f.name_len)]);
        Ok(Some(f))
    }

    fn commit(&mut self, config: Option<&[u8]>, info: &CommitInfo) -> Result<u32, MemError> {
        if self.staged.values().any(|s| !s.finished) {
            return Err(MemError::Unfinished);
        }
        if info.security_version < self.security_version {
            return Err(MemError::Rollback);
        }
        self.security_version = info.security_version;
        self.last_commit = Some(*info);
        for name in std::mem::take(&mut self.deletes) {
            self.files.remove(&name);
        }
        for (from, to) in std::mem::take(&mut self.renames) {
            if let Some(f) = self.files.remove(&from) {
                self.files.insert(to, f);
            }
        }
        for (name, s) in std::mem::take(&mut self.staged) {
            self.files.insert(name, (s.data, s.version));
        }
        if let Some(c) = config {
            self.config = Some(c.to_vec());
        }
        self.generation += 1;
        Ok(self.generation)
    }

    fn error_code(error: &MemError) -> u8 {
        use rota_abi::status;
        // The codes the core's store services give for the same failures.
        let code = match error {
            MemError::NotFound => status::ENOENT,
            MemError::Offset => status::EORDER,
            MemError::Digest => status::EDIGEST,
            MemError::Size => status::EINVAL,
            MemError::Unfinished => status::EINCOMPLETE,
            MemError::Rollback => status::EINVAL,
        };
        code.unsigned_abs() as u8
    }
}
