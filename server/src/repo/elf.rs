//! Overlay and application ELF files packed into blobs by the server: when an inventory names a blob
//! (`init`, `tick`, `provision`, the config's `app`) that its release does not hold, but the release
//! holds `<name>.<isa>.elf` for the device's instruction set, rota-pack's library packs it.
//!
//! Packing is cached by content: the key is the SHA-256 of the ELF bytes and the blob's name, so the
//! same ELF file is packed once per server however many devices (and commits) serve it. The cache is
//! in memory and bounded ([`PACKED_CACHE`] blobs, the oldest dropped first).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rota_blob::Isa;

use super::plan::prepare;
use super::snapshot::Deps;
use super::{Inventory, PlannedFile, Repo, RepoError, Tree, MAX_FILE};

/// Largest ELF file read (symbols and debug sections make ELF files far bigger than their blobs).
pub const MAX_ELF: u64 = 16 * MAX_FILE;
/// Largest image packed: a packed blob is served like any repository file, so it is bounded by
/// [`MAX_FILE`]; what the device can load is then checked like any blob's (`plan_v2::check_release`).
pub const PACKED_MAX: u64 = MAX_FILE;
/// Most packed blobs kept in memory.
const PACKED_CACHE: usize = 256;

/// Why an ELF file cannot be served as a blob.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// rota-pack refused it.
    #[error("cannot be packed: {0}")]
    Pack(#[from] rota_pack::PackError),
    /// It is for another instruction set than its name and the device say.
    #[error("is named for {want} but its code is {found}")]
    Isa {
        /// The ISA of its name (the device's).
        want: &'static str,
        /// The ISA of its code.
        found: &'static str,
    },
}

/// The names of the blobs an inventory's devices run: the overlays and the config's app.
pub(super) fn blob_names(inventory: &Inventory) -> Vec<String> {
    let app = crate::plan_v2::app_name(inventory);
    rota_release::blob_names(app.as_bytes())
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

/// What a packed blob is cached by: the SHA-256 of the ELF file and the blob's name.
type PackKey = ([u8; 32], String);

/// The packed blobs, and their keys oldest first (the first dropped when the cache is full).
type Packed = (HashMap<PackKey, Arc<PlannedFile>>, VecDeque<PackKey>);

/// The packed-blob cache: (SHA-256 of the ELF, name) to the blob.
#[derive(Default)]
pub(super) struct Packer {
    blobs: Mutex<Packed>,
    packs: AtomicU64,
}

impl Repo {
    /// How many ELF files this server has packed (each content and name once while cached).
    pub fn packs(&self) -> u64 {
        self.inner.packer.packs.load(Ordering::Relaxed)
    }

    /// `name` as a blob packed from `<name>.<isa>.elf` of `tree`; `Ok(None)` when there is no such
    /// file.
    pub(super) fn packed(
        &self,
        tree: Tree,
        name: &str,
        isa: Isa,
        deps: &mut Deps,
    ) -> Result<Option<Arc<PlannedFile>>, RepoError> {
        let file = format!("{name}.{}.elf", isa.name());
        // The packed blob is kept while the ELF file is unchanged (and for good at a commit); the
        // ELF bytes are not kept.
        let pack = |elf: Vec<u8>| self.pack(&file, name, isa, &elf);
        self.load(&self.inner.elves, tree, &file, MAX_ELF, deps, pack)
    }

    /// The ELF file `file`'s bytes packed as blob `name` for `isa`, from the content cache when this
    /// ELF was packed before under that name.
    fn pack(
        &self,
        file: &str,
        name: &str,
        isa: Isa,
        elf: &[u8],
    ) -> Result<Arc<PlannedFile>, RepoError> {
        let key = (rota_wire::sha256(elf), name.to_owned());
        let packer = &self.inner.packer;
        let lock = || packer.blobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(blob) = lock().0.get(&key) {
            return Ok(blob.clone());
        }
        let error = |error| RepoError::Elf {
            file: file.to_owned(),
            error,
        };
        let packed = rota_pack::pack(elf, PACKED_MAX).map_err(|e| error(ElfError::Pack(e)))?;
        if packed.isa != isa {
            return Err(error(ElfError::Isa {
                want: isa.name(),
                found: packed.isa.name(),
            }));
        }
        let blob = packed.blob(name).map_err(|e| error(ElfError::Pack(e)))?;
        packer.packs.fetch_add(1, Ordering::Relaxed);
        let blob = Arc::new(prepare(name, blob));
        let mut cache = lock();
        let (map, order) = &mut *cache;
        if map.insert(key.clone(), blob.clone()).is_none() {
            order.push_back(key);
            while order.len() > PACKED_CACHE {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        Ok(blob)
    }
}
