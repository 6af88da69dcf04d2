//! The repository, exactly as luaOTA defines it, read from a directory or from one git commit, and
//! the releases it serves: the control tree, or a git revision a device is pinned to.
//!
//! ```text
//! <repo>/ESP-<chipid>.json   per-device inventory, chip id in plain decimal
//! <repo>/default.json        fallback inventory
//! <repo>/groups.json         optional: groups of devices pinned to one release
//! <repo>/<files...>          the files the inventories name, relative paths ("/" allowed)
//! ```
//! An inventory is `{"files": ["main.lua", "lib/util.lc"], "secret": "..."}`; order matters. It may
//! pin its device to a git revision (`"release": "v2"`); `groups.json` pins groups of devices
//! (`{"groups": {"canary": {"devices": [1, 2], "release": "v2"}}}`). The tree given (`--repo`, or
//! `--rev` of it) is the *control* tree: inventories, groups and secrets are read there; a pinned
//! device gets the files, file list and config as committed at its revision (see [`Repo::for_device`]
//! and `docs/releases.md`).
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
//! Here: the repository and its errors, and what it serves to a device ([`Served`]); in submodules:
//! `inventory` (parsing and checking inventories), `plan` (each file as the device receives it:
//! `--SAFETRIM`, digest, number; the send rule), `numbering` (v1's file numbers and fingerprint),
//! `cache` (what is kept while a file is unchanged), `dir` (the working tree, without following
//! links), `git` (commits read with gix, release names), `pins` (groups and pins), `elf` (overlay
//! ELF files packed into blobs) and `snapshot` (what sessions read without I/O, kept fresh by a
//! blocking thread).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

mod cache;
mod dir;
mod elf;
mod git;
mod inventory;
mod numbering;
mod pins;
mod plan;
mod snapshot;

use cache::{Cache, Stamp};
use plan::prepare;

pub use cache::{CacheStats, RACY_WINDOW};
pub use elf::{ElfError, MAX_ELF, PACKED_MAX};
pub use inventory::{Inventory, InventoryError};
pub use numbering::{content_number, fingerprint};
pub use pins::{GroupsError, PinError, GROUPS};
pub use plan::{Action, Plan, PlannedFile};
pub use snapshot::REFRESH;

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
    /// `groups.json` is malformed.
    #[error("{GROUPS}: {0}")]
    Groups(GroupsError),
    /// A device's pin (its inventory's `release`, its group's, or the caller's override) cannot be
    /// served; nothing is sent.
    #[error("device {device}: {field}: {error}")]
    Pin {
        /// The device.
        device: u64,
        /// Where the pin was given: `ESP-7.json: release`, `groups.json: groups.canary.release`,
        /// `override`.
        field: String,
        /// Why it cannot be served.
        error: PinError,
    },
    /// An overlay or application ELF file that cannot be packed for the device.
    #[error("`{file}`: {error}")]
    Elf {
        /// The ELF file (`tick.thumbv7m.elf`).
        file: String,
        /// Why.
        error: ElfError,
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

/// A tree files are read from: the directory as it is now, or one committed tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    /// The directory as it is now.
    Dir,
    /// One commit's tree: what devices receive is exactly that commit.
    Commit {
        commit: gix::ObjectId,
        tree: gix::ObjectId,
    },
}

/// A release: what a device is served, named for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Its name: the tag or branch given, else a tag of the commit, else the short commit (7 hex);
    /// for the working tree the short HEAD commit, with `+dirty` when the served files differ from
    /// it, or `dir` outside a git work tree.
    pub name: String,
    /// The commit (full hex), unless it is the working tree.
    pub commit: Option<String>,
}

/// Everything one device is served at one check-in: its inventory (the file list and config of its
/// release, the secret of the control tree), the plan, the signed release file beside the inventory,
/// if any, and which release it all is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The inventory: files and config as at the release; the secret always the control tree's.
    pub inventory: Arc<Inventory>,
    /// Every file of the inventory as the device receives it (all of them from [`Served::release`]).
    pub plan: Plan,
    /// The signed release (`ESP-<id>.release`, `default.release`) at the same release, if any.
    pub signed: Option<Arc<Vec<u8>>>,
    /// The release served.
    pub release: Release,
}

impl Served {
    /// How a person reads a planned file: `name@release` (the release it is served from), e.g.
    /// `tick@v2`; its own version is the protocol's (`plan_v2::file_version`, v1's number).
    pub fn label(&self, file: &PlannedFile) -> String {
        format!("{}@{}", file.name, self.release.name)
    }
}

/// The state all handles of one repository share.
struct Inner {
    /// The repository directory (for a git revision: the directory given, in the work tree).
    dir: PathBuf,
    /// The control tree: inventories, groups and secrets are read there.
    control: Tree,
    /// The git repository the directory is in, if any: pins are resolved in it.
    git: Option<git::GitRepo>,
    /// The control tree's release, when it is a commit (`--rev`): named once, at start.
    control_release: Option<Release>,
    inventories: Cache<Arc<Inventory>>,
    files: Cache<Arc<PlannedFile>>,
    releases: Cache<Arc<Vec<u8>>>,
    groups: Cache<Arc<pins::Groups>>,
    /// Blobs packed from ELF files, by ELF file.
    elves: Cache<Arc<PlannedFile>>,
    packer: elf::Packer,
    snapshot: snapshot::Snapshot,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A luaOTA repository (a cheap handle: clones share everything).
///
/// Parsed inventories and prepared files are cached while their file is unchanged, and what each
/// device was served is kept in a snapshot that sessions read without any I/O ([`Repo::served`]),
/// dropped by a blocking thread as soon as a file, a ref or `HEAD` it came from changes (checked
/// every [`REFRESH`]). A file is read again as soon as its device, inode, size, mtime or ctime
/// (nanoseconds) differ, and a file changed less than [`RACY_WINDOW`] before it was read is never
/// cached (git's "racy timestamp" rule), so an edit that keeps size and mtime is still seen, even on
/// file systems with coarse timestamps. Files of a git commit never change and are cached for good.
#[derive(Clone)]
pub struct Repo {
    inner: Arc<Inner>,
}

impl Repo {
    fn with(
        dir: PathBuf,
        control: Tree,
        git: Option<git::GitRepo>,
        control_release: Option<Release>,
    ) -> Self {
        Repo {
            inner: Arc::new(Inner {
                dir,
                control,
                git,
                control_release,
                inventories: Cache::default(),
                files: Cache::default(),
                releases: Cache::default(),
                groups: Cache::default(),
                elves: Cache::default(),
                packer: elf::Packer::default(),
                snapshot: snapshot::Snapshot::default(),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            }),
        }
    }

    /// Serves the directory `dir` as it is on disk (pins are resolved in the git repository it is
    /// in, if any).
    pub fn open_dir(dir: impl Into<PathBuf>) -> Result<Self, RepoError> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(RepoError::NotADirectory(dir));
        }
        let git = git::GitRepo::discover(&dir).ok();
        Ok(Repo::with(dir, Tree::Dir, git, None))
    }

    /// Serves `dir` as committed at git revision `rev` (anything `git rev-parse` takes); `dir` may be the
    /// work tree or a directory inside it. The revision is resolved once, here.
    pub fn open_rev(dir: impl Into<PathBuf>, rev: &str) -> Result<Self, RepoError> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(RepoError::NotADirectory(dir));
        }
        let git = git::GitRepo::discover(&dir)?;
        let (commit, tree) = git.resolve(rev).map_err(RepoError::Git)?;
        let release = Release {
            name: git.name(rev, commit),
            commit: Some(commit.to_string()),
        };
        Ok(Repo::with(
            dir,
            Tree::Commit { commit, tree },
            Some(git),
            Some(release),
        ))
    }

    /// The repository directory (for a git revision: the directory given, in the work tree).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// What is served, for logs: the directory, or the commit and directory.
    pub fn describe(&self) -> String {
        match self.inner.control {
            Tree::Dir => format!("directory {}", self.inner.dir.display()),
            Tree::Commit { commit, .. } => {
                format!("commit {commit} of {}", self.inner.dir.display())
            }
        }
    }

    /// Reads `name` (already validated) from `tree`. In a directory, the file opened must be the one
    /// `checked` (same device and inode): one swapped in since (a link, say) is [`Found::Replaced`].
    fn read(
        &self,
        tree: Tree,
        name: &str,
        limit: u64,
        checked: Option<&Stamp>,
    ) -> Result<Found, RepoError> {
        match (tree, &self.inner.git) {
            (Tree::Dir, _) => dir::read(&self.inner.dir, name, limit, checked),
            (Tree::Commit { tree, .. }, Some(git)) => git.read(tree, name, limit),
            (Tree::Commit { .. }, None) => Err(RepoError::Git("no git repository".into())),
        }
    }

    /// The control tree's inventory of device `id`: `ESP-<id>.json`, else `default.json`.
    pub fn inventory(&self, id: u64) -> Result<Arc<Inventory>, RepoError> {
        self.inventory_in(self.inner.control, id, &mut snapshot::Deps::default())
    }

    fn inventory_in(
        &self,
        tree: Tree,
        id: u64,
        deps: &mut snapshot::Deps,
    ) -> Result<Arc<Inventory>, RepoError> {
        for file in [format!("ESP-{id}.json"), "default.json".to_owned()] {
            if let Some(inventory) = self.inventory_file(tree, &file, deps)? {
                return Ok(inventory);
            }
        }
        Err(RepoError::UnknownDevice(id))
    }

    /// The inventory file `file` of `tree`, if it exists.
    fn inventory_file(
        &self,
        tree: Tree,
        file: &str,
        deps: &mut snapshot::Deps,
    ) -> Result<Option<Arc<Inventory>>, RepoError> {
        let parse = |bytes: Vec<u8>| Inventory::parse(file, &bytes).map(Arc::new);
        self.load(
            &self.inner.inventories,
            tree,
            file,
            MAX_INVENTORY,
            deps,
            parse,
        )
    }

    /// The signed release beside `inventory` (`ESP-<id>.release` or `default.release`, written by
    /// `rota-sign release`: the manifest, then its 64-byte Ed25519 signature), if there is one.
    pub fn release(&self, inventory: &Inventory) -> Result<Option<Arc<Vec<u8>>>, RepoError> {
        self.release_in(
            self.inner.control,
            inventory,
            &mut snapshot::Deps::default(),
        )
    }

    fn release_in(
        &self,
        tree: Tree,
        inventory: &Inventory,
        deps: &mut snapshot::Deps,
    ) -> Result<Option<Arc<Vec<u8>>>, RepoError> {
        let stem = inventory
            .file
            .strip_suffix(".json")
            .unwrap_or(&inventory.file);
        let name = format!("{stem}.release");
        let limit = (rota_release::MANIFEST_MAX + 64) as u64;
        self.load(&self.inner.releases, tree, &name, limit, deps, |bytes| {
            Ok(Arc::new(bytes))
        })
    }

    /// Every file of `inventory` in the control tree as the device will receive it (trimmed if asked,
    /// numbered), and the fingerprint of the set. No ELF file is packed (no ISA is known).
    pub fn plan(&self, inventory: &Inventory) -> Result<Plan, RepoError> {
        self.plan_in(
            self.inner.control,
            inventory,
            None,
            &mut snapshot::Deps::default(),
        )
    }

    /// [`Repo::plan`] in `tree`; for a device of `isa`, an overlay or application missing from the
    /// tree is packed from its `<name>.<isa>.elf`.
    fn plan_in(
        &self,
        tree: Tree,
        inventory: &Inventory,
        isa: Option<rota_blob::Isa>,
        deps: &mut snapshot::Deps,
    ) -> Result<Plan, RepoError> {
        let blobs = elf::blob_names(inventory);
        let mut files = Vec::with_capacity(inventory.files.len());
        for name in &inventory.files {
            let prepare = |raw: Vec<u8>| Ok(Arc::new(prepare(name, raw)));
            let file = match self.load(&self.inner.files, tree, name, MAX_FILE, deps, prepare)? {
                Some(file) => file,
                None => match isa.filter(|_| blobs.iter().any(|b| b == name)) {
                    Some(isa) => self
                        .packed(tree, name, isa, deps)?
                        .ok_or_else(|| RepoError::MissingFile(name.clone()))?,
                    None => return Err(RepoError::MissingFile(name.clone())),
                },
            };
            files.push(file);
        }
        let chk = fingerprint(files.iter().map(|f| (f.name.as_str(), f.number)));
        Ok(Plan { files, chk })
    }

    /// The release revision `rev` names now (blocking): its commit, and the name a device served
    /// that commit is given (`Release::name` of the commit's full hex: a tag on it, else its short
    /// id). A rollout pins this commit, so a branch moving later does not change what it gives.
    pub fn resolve_release(&self, rev: &str) -> Result<Release, RepoError> {
        let git = self.inner.git.as_ref().ok_or_else(|| {
            RepoError::Git(format!(
                "revision `{rev}` asked for, but {} is not in a git repository",
                self.inner.dir.display()
            ))
        })?;
        let (commit, _) = git
            .resolve(rev)
            .map_err(|why| RepoError::Git(format!("revision `{rev}`: {why}")))?;
        let hex = commit.to_string();
        Ok(Release {
            name: git.name(&hex, commit),
            commit: Some(hex),
        })
    }

    /// What device `id` is served now, read (blocking) from the repository: its release (the
    /// caller's `override_rev`, else its inventory's `release`, else its group's, else the control
    /// tree), that release's inventory (same file name) and files, and the signed release beside it.
    /// For a device of `isa` (a v2 Hello's; `None` for v1 and simulators), an overlay or application
    /// missing from the release is packed from its `<name>.<isa>.elf`. A bad pin, a bad ELF file or a
    /// missing file is an error, so nothing is sent.
    ///
    /// Sessions call [`Repo::served`], which answers from the snapshot without I/O when it can.
    pub fn for_device(
        &self,
        id: u64,
        override_rev: Option<&str>,
        isa: Option<rota_blob::Isa>,
    ) -> Result<Arc<Served>, RepoError> {
        self.build(id, override_rev, isa).map(|(served, _)| served)
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
            repo.read(Tree::Dir, "a.txt", MAX_FILE, Some(&checked)),
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
