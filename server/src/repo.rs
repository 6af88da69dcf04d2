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
//!
//! Here: the repository and its errors, and what it serves to a device (an inventory, a plan); in
//! submodules: `inventory` (parsing and checking inventories), `plan` (each file as the device
//! receives it: `--SAFETRIM`, digest, number; the send rule), `numbering` (v1's file numbers and
//! fingerprint), `cache` (what is kept while a file is unchanged), `dir` (the working tree, without
//! following links) and `git` (one commit, read with gix).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

mod cache;
mod dir;
mod git;
mod inventory;
mod numbering;
mod plan;

use cache::{Cache, Stamp};
use plan::prepare;

pub use cache::{CacheStats, RACY_WINDOW};
pub use inventory::{Inventory, InventoryError};
pub use numbering::{content_number, fingerprint};
pub use plan::{Action, Plan, PlannedFile};

/// Largest inventory file read.
pub const MAX_INVENTORY: u64 = 64 * 1024;
/// Largest repository file served (the client buffers a whole file in RAM; this only bounds the server).
pub const MAX_FILE: u64 = 1024 * 1024;

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
    releases: Cache<Arc<Vec<u8>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Repo {
    fn with_source(source: Source) -> Self {
        Repo {
            source,
            inventories: Cache::default(),
            files: Cache::default(),
            releases: Cache::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
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
        match &self.source {
            Source::Dir(dir) => dir::read(dir, name, limit, checked),
            Source::Git {
                repo, tree, prefix, ..
            } => git::read(repo, *tree, prefix, name, limit),
        }
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

    /// The signed release beside `inventory` (`ESP-<id>.release` or `default.release`, written by
    /// `rota-sign release`: the manifest, then its 64-byte Ed25519 signature), if there is one.
    pub fn release(&self, inventory: &Inventory) -> Result<Option<Arc<Vec<u8>>>, RepoError> {
        let stem = inventory
            .file
            .strip_suffix(".json")
            .unwrap_or(&inventory.file);
        let name = format!("{stem}.release");
        let limit = (rota_release::MANIFEST_MAX + 64) as u64;
        self.load(&self.releases, &name, limit, |bytes| Ok(Arc::new(bytes)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, data: &[u8]) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
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
