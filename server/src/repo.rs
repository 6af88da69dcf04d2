//! The repository, exactly as luaOTA defines it, read from a directory or from one git commit.
//!
//! ```text
//! <repo>/ESP-<chipid>.json   per-device inventory, chip id in plain decimal
//! <repo>/default.json        fallback inventory
//! <repo>/<files...>          the files the inventories name, relative paths ("/" allowed)
//! ```
//! An inventory is `{"files": ["main.lua", "lib/util.lc"], "secret": "..."}`; order matters.
//!
//! What a device should hold is a [`Plan`]: every inventory file as the device receives it, with its
//! SHA-256, and [`Plan::to_send`], the one rule both protocols decide by. For protocol v1 each file also
//! gets a number derived from the bytes the device receives (see [`content_number`]) and the inventory a
//! fingerprint `chk = md5_hex("name1:n1:name2:n2:...")`, so a checkout or a copy does not force re-sends
//! and a same-second edit is never missed; protocol v2 never uses either (it compares SHA-256 digests,
//! and its versions are its own: `plan_v2::file_version`).
//!
//! Symbolic links inside the repository are never followed, in either mode: a file that is a link, or
//! whose path goes through one, is refused ([`RepoError::Symlink`]), as it could lead outside the
//! repository. (The repository directory itself may be reached through links.)

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::{trim, v1};

/// Largest inventory file read.
pub const MAX_INVENTORY: u64 = 64 * 1024;
/// Largest repository file served (the client buffers a whole file in RAM; this only bounds the server).
pub const MAX_FILE: u64 = 1024 * 1024;

/// Why an inventory is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// Not JSON, or not an object.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// No `files` array.
    #[error("`files` must be an array of file names")]
    Files,
    /// A `files` entry that is not a safe relative path.
    #[error("`{0}` is not a relative path inside the repository")]
    BadName(String),
    /// A file named twice.
    #[error("`{0}` is named twice")]
    Duplicate(String),
    /// No `secret` string.
    #[error("`secret` must be a string")]
    Secret,
    /// A `config` that is not an object.
    #[error("`config` must be an object")]
    Config,
}

/// A repository that cannot serve a device.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// `--repo` is not a directory.
    #[error("repository {0} is not a directory")]
    NotADirectory(PathBuf),
    /// Git could not open the repository or resolve the revision.
    #[error("git: {0}")]
    Git(String),
    /// Neither `ESP-<id>.json` nor `default.json` exists.
    #[error("unknown device {0}: neither ESP-{0}.json nor default.json exists")]
    UnknownDevice(u64),
    /// An inventory file is malformed.
    #[error("inventory {file}: {error}")]
    Inventory {
        /// The inventory file.
        file: String,
        /// What is wrong with it.
        error: InventoryError,
    },
    /// A file named by the inventory does not exist.
    #[error("`{0}`, named by the inventory, is missing from the repository")]
    MissingFile(String),
    /// A path that exists but is not a regular file.
    #[error("`{0}` is not a regular file")]
    NotAFile(String),
    /// A name that is, or goes through, a symbolic link: links are never followed (they could lead
    /// outside the repository), in a directory or a git revision alike.
    #[error("`{name}` is not served: `{link}` is a symbolic link, and links in the repository are never followed (they could lead outside it)")]
    Symlink {
        /// The name asked for (an inventory's, or an inventory file).
        name: String,
        /// The part of it that is a link (the name itself, or one of its directories).
        link: String,
    },
    /// A file over the size limit.
    #[error("`{name}` is over the {limit}-byte limit")]
    TooLarge {
        /// The file.
        name: String,
        /// The limit.
        limit: u64,
    },
    /// Reading a file failed.
    #[error("reading `{name}`: {source}")]
    Io {
        /// The file.
        name: String,
        /// The error.
        source: std::io::Error,
    },
}

/// What reading a file found.
enum Found {
    /// Its bytes.
    Bytes(Vec<u8>),
    /// Nothing by that name.
    Missing,
    /// Another file than the one just checked (replaced in between): check again.
    Replaced,
}

/// The part of `name` made of its first `n` components.
fn leading(name: &str, n: usize) -> String {
    name.split('/').take(n).collect::<Vec<_>>().join("/")
}

/// The metadata of `name` in `dir`, checked component by component without following any symbolic
/// link; `Ok(None)` when it does not exist (or a directory on its way is not one).
fn lstat_no_links(dir: &Path, name: &str) -> Result<Option<std::fs::Metadata>, RepoError> {
    let parts = name.split('/').count();
    let mut path = dir.to_path_buf();
    for (i, component) in name.split('/').enumerate() {
        path.push(component);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RepoError::Io {
                    name: name.to_owned(),
                    source,
                })
            }
        };
        if meta.file_type().is_symlink() {
            return Err(RepoError::Symlink {
                name: name.to_owned(),
                link: leading(name, i + 1),
            });
        }
        if i + 1 == parts {
            return Ok(Some(meta));
        }
        if !meta.is_dir() {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Where files come from.
enum Source {
    /// The directory as it is now.
    Dir(PathBuf),
    /// One committed tree: what devices receive is exactly that commit.
    Git {
        repo: Box<gix::ThreadSafeRepository>,
        tree: gix::ObjectId,
        commit: gix::ObjectId,
        /// The repository directory relative to the git work tree.
        prefix: PathBuf,
        dir: PathBuf,
    },
}

/// A luaOTA repository.
///
/// Parsed inventories and prepared files are cached while their file is unchanged: a no-update check-in
/// then costs one `lstat` per path component instead of reading, trimming and hashing it. A file is read again as
/// soon as its device, inode, size, mtime or ctime (nanoseconds) differ, and a file changed less than
/// [`RACY_WINDOW`] before it was read is never cached (git's "racy timestamp" rule), so an edit that
/// keeps size and mtime is still seen, even on file systems with coarse timestamps. Files of a git
/// revision never change and are cached for good.
pub struct Repo {
    source: Source,
    inventories: Cache<Arc<Inventory>>,
    files: Cache<Arc<PlannedFile>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A file changed this recently is not cached: a further change could keep its timestamps.
pub const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

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
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
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
    fn is_racy(&self, now: SystemTime) -> bool {
        let now_ns = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        self.mtime_ns.max(self.ctime_ns) + RACY_WINDOW.as_nanos() as i128 > now_ns
    }
}

type Cache<T> = Mutex<HashMap<String, (Option<Stamp>, T)>>;

/// One device's inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The inventory file it came from (`ESP-<id>.json` or `default.json`).
    pub file: String,
    /// The files, in order.
    pub files: Vec<String>,
    /// The device's HMAC key.
    pub secret: Vec<u8>,
    /// The optional `config` object: a new device config for protocol v2 devices.
    pub config: Option<Map<String, Value>>,
}

/// How a file is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `dl`: stored as is.
    Download,
    /// `cm`: a `.lua` source the device compiles to `.lc`.
    Compile,
}

/// One file as the device will receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Its name (relative path).
    pub name: String,
    /// Its v1 file number ([`content_number`] of `data`): what luaOTA's `files` map and `chk` hold.
    /// Protocol v2 does not use it.
    pub number: u32,
    /// The bytes sent (after `--SAFETRIM`, if asked for).
    pub data: Vec<u8>,
    /// `dl` or `cm`.
    pub action: Action,
    /// Whether `--SAFETRIM` was applied.
    pub trimmed: bool,
    /// SHA-256 of `data` (protocol v2 compares and checks files by it).
    pub digest: [u8; 32],
}

/// What a device should hold: every inventory file, numbered, and the (v1) fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The files in inventory order.
    pub files: Vec<Arc<PlannedFile>>,
    /// The v1 fingerprint, `md5_hex("name1:n1:name2:n2:...")`.
    pub chk: String,
}

impl Plan {
    /// The files the device must be sent, in inventory order: each one unless `holds(file)` says the
    /// device already has exactly that file. Both protocols decide by this one rule; each says what
    /// "exactly" means (v1: the device echoes the file's number; v2: it holds a file of that name with
    /// the same SHA-256).
    pub fn to_send<'p>(
        &'p self,
        holds: impl Fn(&PlannedFile) -> bool + 'p,
    ) -> impl Iterator<Item = &'p Arc<PlannedFile>> + 'p {
        self.files.iter().filter(move |f| !holds(f))
    }

    /// The first file whose name is over `limit` bytes, if any (neither protocol's devices can hold it).
    pub fn name_over(&self, limit: usize) -> Option<&PlannedFile> {
        self.files
            .iter()
            .map(Arc::as_ref)
            .find(|f| f.name.len() > limit)
    }

    /// The `files` object of the `restart` record: exactly the inventory (pruned of anything else).
    pub fn file_numbers(&self) -> Map<String, Value> {
        self.files
            .iter()
            .map(|f| (f.name.clone(), Value::from(f.number)))
            .collect()
    }
}

/// The number of a file: the first 4 bytes of the MD5 of the bytes sent, big-endian, top bit cleared.
///
/// It is a JSON integer below 2^31, so NodeMCU integer builds store and echo it exactly.
pub fn content_number(data: &[u8]) -> u32 {
    let d = rota_luaota::md5(data);
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) & 0x7fff_ffff
}

/// The fingerprint of an inventory: `md5_hex("name1:n1:name2:n2:...")` in inventory order.
pub fn fingerprint<'a>(files: impl IntoIterator<Item = (&'a str, u32)>) -> String {
    let joined: Vec<String> = files
        .into_iter()
        .map(|(name, n)| format!("{name}:{n}"))
        .collect();
    hex(&rota_luaota::md5(joined.join(":").as_bytes()))
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `name` is a safe relative path: non-empty `/`-separated components, none `.`, `..` or empty,
/// no backslash and no control character.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && !name.chars().any(char::is_control)
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Inventory {
    /// Parses an inventory file's bytes; `file` names it in errors.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Self, RepoError> {
        let error = |error| RepoError::Inventory {
            file: file.to_owned(),
            error,
        };
        let obj =
            v1::parse_object(bytes).map_err(|e| error(InventoryError::Json(e.to_string())))?;
        let names = obj
            .get("files")
            .and_then(Value::as_array)
            .ok_or(error(InventoryError::Files))?;
        let mut files = Vec::with_capacity(names.len());
        let mut seen = HashSet::new();
        for name in names {
            let name = name.as_str().ok_or(error(InventoryError::Files))?;
            if !valid_name(name) {
                return Err(error(InventoryError::BadName(name.to_owned())));
            }
            if !seen.insert(name) {
                return Err(error(InventoryError::Duplicate(name.to_owned())));
            }
            files.push(name.to_owned());
        }
        let secret = obj
            .get("secret")
            .and_then(Value::as_str)
            .ok_or(error(InventoryError::Secret))?;
        let config = match obj.get("config") {
            None | Some(Value::Null) => None,
            Some(Value::Object(config)) => Some(config.clone()),
            Some(_) => return Err(error(InventoryError::Config)),
        };
        Ok(Inventory {
            file: file.to_owned(),
            files,
            secret: secret.as_bytes().to_vec(),
            config,
        })
    }
}

impl Repo {
    fn with_source(source: Source) -> Self {
        Repo {
            source,
            inventories: Cache::default(),
            files: Cache::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// How often the cache answered.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Serves the directory `dir` as it is on disk.
    pub fn open_dir(dir: impl Into<PathBuf>) -> Result<Self, RepoError> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(RepoError::NotADirectory(dir));
        }
        Ok(Repo::with_source(Source::Dir(dir)))
    }

    /// Serves `dir` as committed at git revision `rev` (anything `git rev-parse` takes); `dir` may be the
    /// work tree or a directory inside it. The revision is resolved once, here.
    pub fn open_rev(dir: impl Into<PathBuf>, rev: &str) -> Result<Self, RepoError> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(RepoError::NotADirectory(dir));
        }
        let git = |e: gix::Error| RepoError::Git(e.to_string());
        let repo = gix::discover(&dir).map_err(git)?;
        let prefix = match repo.workdir() {
            Some(workdir) => {
                let canon = |p: &Path| {
                    p.canonicalize().map_err(|source| RepoError::Io {
                        name: p.display().to_string(),
                        source,
                    })
                };
                let (d, w) = (canon(&dir)?, canon(workdir)?);
                d.strip_prefix(&w).map(Path::to_path_buf).map_err(|_| {
                    RepoError::Git(format!("{} is outside the work tree", d.display()))
                })?
            }
            None => PathBuf::new(),
        };
        let (commit, tree) = {
            let commit = repo
                .rev_parse_single(rev)
                .map_err(git)?
                .object()
                .map_err(git)?
                .peel_to_commit()
                .map_err(git)?;
            (commit.id, commit.tree_id().map_err(git)?.detach())
        };
        Ok(Repo::with_source(Source::Git {
            repo: Box::new(repo.into_sync()),
            tree,
            commit,
            prefix,
            dir,
        }))
    }

    /// The repository directory (for a git revision: the directory given, in the work tree).
    pub fn dir(&self) -> &Path {
        match &self.source {
            Source::Dir(dir) | Source::Git { dir, .. } => dir,
        }
    }

    /// What is served, for logs: the directory, or the commit and directory.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Dir(dir) => format!("directory {}", dir.display()),
            Source::Git { commit, dir, .. } => {
                format!("commit {commit} of {}", dir.display())
            }
        }
    }

    /// Reads `name` (already validated). In a directory, the file opened must be the one `checked`
    /// (same device and inode): one swapped in since (a link, say) is [`Found::Replaced`].
    fn read(&self, name: &str, limit: u64, checked: Option<&Stamp>) -> Result<Found, RepoError> {
        let io = |source| RepoError::Io {
            name: name.to_owned(),
            source,
        };
        let too_large = || RepoError::TooLarge {
            name: name.to_owned(),
            limit,
        };
        match &self.source {
            Source::Dir(dir) => {
                let file = match std::fs::File::open(dir.join(name)) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Ok(Found::Missing)
                    }
                    Err(e) => return Err(io(e)),
                };
                let meta = file.metadata().map_err(io)?;
                if checked.is_some_and(|s| (s.dev, s.ino) != (meta.dev(), meta.ino())) {
                    return Ok(Found::Replaced);
                }
                if !meta.is_file() {
                    return Err(RepoError::NotAFile(name.to_owned()));
                }
                let mut data = Vec::new();
                file.take(limit + 1).read_to_end(&mut data).map_err(io)?;
                if data.len() as u64 > limit {
                    return Err(too_large());
                }
                Ok(Found::Bytes(data))
            }
            Source::Git {
                repo, tree, prefix, ..
            } => {
                let git = |e: gix::Error| RepoError::Git(format!("reading `{name}`: {e}"));
                let repo = repo.to_thread_local();
                let tree = repo.find_tree(*tree).map_err(git)?;
                // Component by component, so a link on the way is refused, not just not found.
                let mut path = prefix.clone();
                let mut found = None;
                for (i, component) in name.split('/').enumerate() {
                    path.push(component);
                    let Some(entry) = tree.lookup_entry_by_path(&path).map_err(git)? else {
                        return Ok(Found::Missing);
                    };
                    if entry.mode().is_link() {
                        return Err(RepoError::Symlink {
                            name: name.to_owned(),
                            link: leading(name, i + 1),
                        });
                    }
                    found = Some(entry);
                }
                let Some(entry) = found else {
                    return Ok(Found::Missing);
                };
                if !entry.mode().is_blob() {
                    return Err(RepoError::NotAFile(name.to_owned()));
                }
                let blob = entry.object().map_err(git)?;
                if blob.data.len() as u64 > limit {
                    return Err(too_large());
                }
                Ok(Found::Bytes(blob.detach().data))
            }
        }
    }

    /// The stamp of `name` in a directory source (checked to be a file within `limit`, reached through
    /// no symbolic link); `Ok(None)` when it does not exist.
    fn stamp(dir: &Path, name: &str, limit: u64) -> Result<Option<Stamp>, RepoError> {
        let Some(meta) = lstat_no_links(dir, name)? else {
            return Ok(None);
        };
        if !meta.is_file() {
            return Err(RepoError::NotAFile(name.to_owned()));
        }
        if meta.len() > limit {
            return Err(RepoError::TooLarge {
                name: name.to_owned(),
                limit,
            });
        }
        Ok(Some(Stamp::of(&meta)))
    }

    /// `name` parsed by `parse`, from the cache while the file is unchanged; `Ok(None)` when it does not
    /// exist.
    fn load<T: Clone>(
        &self,
        cache: &Cache<T>,
        name: &str,
        limit: u64,
        parse: impl FnOnce(Vec<u8>) -> Result<T, RepoError>,
    ) -> Result<Option<T>, RepoError> {
        let lock = || {
            cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        // A file replaced between its check and its opening is checked again; a few times at most.
        for _ in 0..3 {
            // The stamp is taken BEFORE reading: a change during the read only causes one more read
            // later.
            let stamp = match &self.source {
                Source::Dir(dir) => match Self::stamp(dir, name, limit)? {
                    Some(stamp) => Some(stamp),
                    None => return Ok(None),
                },
                Source::Git { .. } => None,
            };
            if let Some((cached, value)) = lock().get(name) {
                if *cached == stamp {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(value.clone()));
                }
            }
            let bytes = match self.read(name, limit, stamp.as_ref())? {
                Found::Bytes(bytes) => bytes,
                Found::Missing => return Ok(None),
                Found::Replaced => continue,
            };
            self.misses.fetch_add(1, Ordering::Relaxed);
            let value = parse(bytes)?;
            if stamp.is_none_or(|s| !s.is_racy(SystemTime::now())) {
                lock().insert(name.to_owned(), (stamp, value.clone()));
            }
            return Ok(Some(value));
        }
        Err(RepoError::Io {
            name: name.to_owned(),
            source: std::io::Error::other("replaced while being read, three times in a row"),
        })
    }

    /// The inventory of device `id`: `ESP-<id>.json`, else `default.json`.
    pub fn inventory(&self, id: u64) -> Result<Arc<Inventory>, RepoError> {
        for file in [format!("ESP-{id}.json"), "default.json".to_owned()] {
            let parse = |bytes: Vec<u8>| Inventory::parse(&file, &bytes).map(Arc::new);
            if let Some(inventory) = self.load(&self.inventories, &file, MAX_INVENTORY, parse)? {
                return Ok(inventory);
            }
        }
        Err(RepoError::UnknownDevice(id))
    }

    /// Every file of `inventory` as the device will receive it (trimmed if asked, numbered), and the
    /// fingerprint of the set.
    pub fn plan(&self, inventory: &Inventory) -> Result<Plan, RepoError> {
        let mut files = Vec::with_capacity(inventory.files.len());
        for name in &inventory.files {
            let prepare = |raw: Vec<u8>| Ok(Arc::new(prepare(name, raw)));
            let file = self
                .load(&self.files, name, MAX_FILE, prepare)?
                .ok_or_else(|| RepoError::MissingFile(name.clone()))?;
            files.push(file);
        }
        let chk = fingerprint(files.iter().map(|f| (f.name.as_str(), f.number)));
        Ok(Plan { files, chk })
    }
}

/// A repository file as the device receives it.
fn prepare(name: &str, raw: Vec<u8>) -> PlannedFile {
    let is_lua = name.ends_with(".lua");
    let trimmed = is_lua && trim::wants_trim(&raw);
    let data = if trimmed { trim::safetrim(&raw) } else { raw };
    PlannedFile {
        name: name.to_owned(),
        number: content_number(&data),
        digest: rota_wire::sha256(&data),
        data,
        action: if is_lua {
            Action::Compile
        } else {
            Action::Download
        },
        trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, data: &[u8]) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }

    #[test]
    fn fingerprint_follows_the_doc() {
        let expected = hex(&rota_luaota::md5(b"main.lua:12:data.txt:7"));
        assert_eq!(fingerprint([("main.lua", 12), ("data.txt", 7)]), expected);
        assert_ne!(fingerprint([("data.txt", 7), ("main.lua", 12)]), expected);
    }

    #[test]
    fn numbers_are_content_derived_31_bit() {
        assert_eq!(content_number(b"abc"), content_number(b"abc"));
        assert_ne!(content_number(b"abc"), content_number(b"abd"));
        // md5("") = d41d8cd9...; top bit of 0xd4 cleared.
        assert_eq!(content_number(b""), 0x541d_8cd9);
    }

    #[test]
    fn inventory_errors_are_typed() {
        let err = |json: &str| match Inventory::parse("x.json", json.as_bytes()) {
            Err(RepoError::Inventory { error, .. }) => error,
            other => panic!("{other:?}"),
        };
        assert!(matches!(err("[1]"), InventoryError::Json(_)));
        assert_eq!(err(r#"{"secret":"s"}"#), InventoryError::Files);
        assert_eq!(err(r#"{"files":[1],"secret":"s"}"#), InventoryError::Files);
        assert_eq!(err(r#"{"files":["a"]}"#), InventoryError::Secret);
        for bad in ["../etc/passwd", "/abs", "a//b", "a/./b", "", "a\\b", "a\nb"] {
            let json = Value::from(vec![bad]);
            assert_eq!(
                err(&format!(r#"{{"files":{json},"secret":"s"}}"#)),
                InventoryError::BadName(bad.into()),
                "{bad:?}"
            );
        }
        assert_eq!(
            err(r#"{"files":["a","b","a"],"secret":"s"}"#),
            InventoryError::Duplicate("a".into())
        );
        let ok =
            Inventory::parse("x.json", br#"{"files":["lib/a.lua","b"],"secret":"s"}"#).unwrap();
        assert_eq!(ok.files, ["lib/a.lua", "b"]);
    }

    #[test]
    fn device_file_then_default_then_unknown() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::open_dir(tmp.path()).unwrap();
        assert!(matches!(
            repo.inventory(5),
            Err(RepoError::UnknownDevice(5))
        ));
        write(tmp.path(), "default.json", br#"{"files":[],"secret":"d"}"#);
        write(tmp.path(), "ESP-5.json", br#"{"files":[],"secret":"five"}"#);
        assert_eq!(repo.inventory(5).unwrap().secret, b"five");
        assert_eq!(repo.inventory(6).unwrap().file, "default.json");
    }

    #[test]
    fn plan_trims_numbers_and_chooses_cm() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "a.lua", b"--SAFETRIM\n  x = 1 -- c\n");
        write(tmp.path(), "lib/b.lc", b"\x1bLua");
        write(tmp.path(), "c.lua", b"  y = 2 -- kept\n");
        let repo = Repo::open_dir(tmp.path()).unwrap();
        let inv = Inventory::parse(
            "i",
            br#"{"files":["a.lua","lib/b.lc","c.lua"],"secret":"s"}"#,
        )
        .unwrap();
        let plan = repo.plan(&inv).unwrap();
        let a = &plan.files[0];
        assert_eq!(
            (a.action, a.trimmed, a.data.as_slice()),
            (Action::Compile, true, &b"\nx = 1\n"[..])
        );
        assert_eq!(a.number, content_number(b"\nx = 1\n"));
        assert_eq!(plan.files[1].action, Action::Download);
        assert_eq!(plan.files[2].data, b"  y = 2 -- kept\n");
        assert_eq!(
            plan.chk,
            fingerprint(plan.files.iter().map(|f| (f.name.as_str(), f.number)))
        );
        let missing = Inventory::parse("i", br#"{"files":["nope"],"secret":"s"}"#).unwrap();
        assert!(matches!(repo.plan(&missing), Err(RepoError::MissingFile(n)) if n == "nope"));
        let dir = Inventory::parse("i", br#"{"files":["lib"],"secret":"s"}"#).unwrap();
        assert!(matches!(repo.plan(&dir), Err(RepoError::NotAFile(_))));
    }

    #[test]
    fn to_send_keeps_inventory_order_and_skips_what_the_device_holds() {
        let file = |name: &str| Arc::new(prepare(name, name.as_bytes().to_vec()));
        let plan = Plan {
            files: vec![file("a"), file("b.lua"), file("c"), file("lib/d")],
            chk: String::new(),
        };
        let names = |holds: &dyn Fn(&PlannedFile) -> bool| -> Vec<String> {
            plan.to_send(holds).map(|f| f.name.clone()).collect()
        };
        assert_eq!(names(&|_| false), ["a", "b.lua", "c", "lib/d"]);
        assert_eq!(names(&|f| f.name != "c" && f.name != "a"), ["a", "c"]);
        assert!(names(&|_| true).is_empty());
        assert_eq!(plan.name_over(4).map(|f| f.name.as_str()), Some("b.lua"));
        assert_eq!(plan.name_over(5), None);
    }

    #[test]
    fn cache_never_hides_an_edit() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "ESP-1.json",
            br#"{"files":["a.txt"],"secret":"s"}"#,
        );
        write(tmp.path(), "a.txt", b"version 1");
        let repo = Repo::open_dir(tmp.path()).unwrap();
        let plan = |repo: &Repo| repo.plan(&repo.inventory(1).unwrap()).unwrap();
        // Just written: racy, so never cached.
        let first = plan(&repo);
        assert_eq!(plan(&repo), first);
        assert_eq!(repo.cache_stats(), CacheStats { hits: 0, misses: 4 });

        std::thread::sleep(RACY_WINDOW + std::time::Duration::from_millis(100));
        plan(&repo);
        assert_eq!(plan(&repo), first);
        assert_eq!(repo.cache_stats(), CacheStats { hits: 2, misses: 6 });

        // Same size, mtime put back: ctime still moves, so the edit is seen.
        let path = tmp.path().join("a.txt");
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        write(tmp.path(), "a.txt", b"version 2");
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(mtime).unwrap();
        let second = plan(&repo);
        assert_eq!(second.files[0].data, b"version 2");
        assert_ne!(second.chk, first.chk);
    }

    #[test]
    fn a_file_swapped_for_a_link_after_its_check_is_never_read() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret", b"outside");
        write(tmp.path(), "a.txt", b"inside");
        let repo = Repo::open_dir(tmp.path()).unwrap();
        let checked = Repo::stamp(tmp.path(), "a.txt", MAX_FILE).unwrap().unwrap();
        // The race: a.txt becomes a link between its check and its opening.
        std::fs::remove_file(tmp.path().join("a.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), tmp.path().join("a.txt"))
            .unwrap();
        assert!(matches!(
            repo.read("a.txt", MAX_FILE, Some(&checked)),
            Ok(Found::Replaced)
        ));
        let inv = Inventory::parse("i", br#"{"files":["a.txt"],"secret":"s"}"#).unwrap();
        assert!(matches!(
            repo.plan(&inv),
            Err(RepoError::Symlink { name, link }) if name == "a.txt" && link == "a.txt"
        ));
    }

    #[test]
    fn oversized_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "ESP-1.json",
            &vec![b' '; MAX_INVENTORY as usize + 1],
        );
        let repo = Repo::open_dir(tmp.path()).unwrap();
        assert!(matches!(repo.inventory(1), Err(RepoError::TooLarge { .. })));
    }
}
