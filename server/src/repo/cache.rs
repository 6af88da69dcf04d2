//! What the repository keeps while a file is unchanged: parsed inventories and prepared files, keyed by
//! the file's stamp (device, inode, size, mtime and ctime), never for a file changed within
//! [`RACY_WINDOW`].

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::snapshot::Deps;
use super::{Found, Repo, RepoError, Tree};

/// A file changed this recently is not cached: a further change could keep its timestamps.
pub const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// Most entries one cache keeps; when full it starts again (files of every commit ever served are
/// otherwise kept for good, and a branch that keeps moving would grow it without end).
const CACHE_MAX: usize = 1 << 16;

/// Cache effectiveness, for tests and tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that read the file.
    pub misses: u64,
}

/// What identifies a file's content on disk; `None` for a git revision, which never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) dev: u64,
    pub(super) ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    pub(super) fn of(meta: &std::fs::Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the file changed within [`RACY_WINDOW`] of `now`.
    pub(super) fn is_racy(&self, now: SystemTime) -> bool {
        let now_ns = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        self.mtime_ns.max(self.ctime_ns) + RACY_WINDOW.as_nanos() as i128 > now_ns
    }
}

pub(super) type Cache<T> = Mutex<HashMap<String, (Option<Stamp>, T)>>;

impl Repo {
    /// How often the cache answered.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
        }
    }

    /// `name` of `tree` parsed by `parse`, from the cache while the file is unchanged; `Ok(None)` when
    /// it does not exist. What was read from the directory (present or not) is noted in `deps`.
    pub(super) fn load<T: Clone>(
        &self,
        cache: &Cache<T>,
        tree: Tree,
        name: &str,
        limit: u64,
        deps: &mut Deps,
        parse: impl FnOnce(Vec<u8>) -> Result<T, RepoError>,
    ) -> Result<Option<T>, RepoError> {
        // A commit's files never change: keyed by tree, cached for good.
        let key = match tree {
            Tree::Dir => std::borrow::Cow::Borrowed(name),
            Tree::Commit { tree, .. } => std::borrow::Cow::Owned(format!("{tree}:{name}")),
        };
        let lock = || {
            cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        // A file replaced between its check and its opening is checked again; a few times at most.
        for _ in 0..3 {
            // The stamp is taken BEFORE reading: a change during the read only causes one more read
            // later.
            let stamp = match tree {
                Tree::Dir => {
                    let stamp = Self::stamp(&self.inner.dir, name, limit)?;
                    deps.path(name, stamp);
                    match stamp {
                        Some(stamp) => Some(stamp),
                        None => return Ok(None),
                    }
                }
                Tree::Commit { .. } => None,
            };
            if let Some((cached, value)) = lock().get(key.as_ref()) {
                if *cached == stamp {
                    self.inner.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(value.clone()));
                }
            }
            let bytes = match self.read(tree, name, limit, stamp.as_ref())? {
                Found::Bytes(bytes) => bytes,
                Found::Missing => return Ok(None),
                Found::Replaced => continue,
            };
            self.inner.misses.fetch_add(1, Ordering::Relaxed);
            let value = parse(bytes)?;
            if stamp.is_none_or(|s| !s.is_racy(SystemTime::now())) {
                let mut cache = lock();
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(key.into_owned(), (stamp, value.clone()));
            }
            return Ok(Some(value));
        }
        Err(RepoError::Io {
            name: name.to_owned(),
            source: std::io::Error::other("replaced while being read, three times in a row"),
        })
    }
}
