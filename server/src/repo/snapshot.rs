//! What sessions read without I/O: each device's [`Served`] as last built, with what it was built
//! from (the directory files it read, present or absent, and the git revisions it resolved). A
//! blocking thread checks those every [`REFRESH`] and drops an entry as soon as any of them
//! changed; the next check-in of that device builds it again, on a blocking thread
//! ([`Repo::served`]). So the async workers never touch the file system or git, and a no-update
//! check-in costs one hash-map lookup.
//!
//! A check-in never sees half an edit of one file: an entry is built again when a file it read
//! changed while it was being built, and one built from a file changed in the last
//! [`RACY_WINDOW`](super::RACY_WINDOW) is never kept (the next check-in reads it again).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use super::cache::Stamp;
use super::pins::PinError;
use super::{git, Inner, Inventory, Plan, Release, Repo, RepoError, Served, Tree};

/// How often the blocking thread checks what the snapshot was built from: an edit, a new commit or
/// a moved branch is seen by the check-ins that start after the next check, at most this long (or
/// [`REFRESH_SHARE`] times a long check's own time), plus the check's own time, after it happened.
pub const REFRESH: Duration = Duration::from_millis(500);

/// A refresh round of a large snapshot costs CPU (a stat per file): the thread then pauses this many
/// times the round's own time instead of [`REFRESH`], so the check takes at most a tenth of a core.
pub const REFRESH_SHARE: u32 = 10;

/// Most entries kept (devices times overrides times ISAs); when full, the snapshot starts again.
const SNAPSHOT_MAX: usize = 1 << 16;

/// What a [`Served`] was built from.
#[derive(Debug, Default)]
pub(super) struct Deps {
    /// Directory files read, with their stamp (`None`: absent).
    paths: Vec<(String, Option<Stamp>)>,
    /// Git revisions resolved, with their commit (`None`: did not resolve).
    refs: Vec<(String, Option<gix::ObjectId>)>,
    /// Not to be kept: built from a file changed too recently to trust its stamp.
    volatile: bool,
}

impl Deps {
    /// Notes a directory file read (or found absent).
    pub(super) fn path(&mut self, name: &str, stamp: Option<Stamp>) {
        if stamp.is_some_and(|s| s.is_racy(SystemTime::now())) {
            self.volatile = true;
        }
        self.paths.push((name.to_owned(), stamp));
    }

    /// Notes a git revision resolved.
    pub(super) fn git_ref(&mut self, rev: &str, commit: Option<gix::ObjectId>) {
        self.refs.push((rev.to_owned(), commit));
    }
}

/// Which device, release override and ISA an entry serves.
type Key = (u64, Option<String>, u8);

/// The entries: what each key was served, and what that was built from.
type Entries = HashMap<Key, (Arc<Served>, Arc<Deps>)>;

/// The entries, and whether the refresh thread runs.
#[derive(Default)]
pub(super) struct Snapshot {
    entries: Mutex<Entries>,
    refreshing: AtomicBool,
}

fn key(id: u64, override_rev: Option<&str>, isa: Option<rota_blob::Isa>) -> Key {
    (
        id,
        override_rev.map(str::to_owned),
        isa.map_or(0, |i| i as u8),
    )
}

impl Snapshot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Repo {
    /// What device `id` is served ([`Repo::for_device`]), for an async session: from the snapshot,
    /// without I/O, when nothing it was built from changed; else built on a blocking thread.
    pub async fn served(
        &self,
        id: u64,
        override_rev: Option<&str>,
        isa: Option<rota_blob::Isa>,
    ) -> Result<Arc<Served>, RepoError> {
        if let Some((served, _)) = self.inner.snapshot.lock().get(&key(id, override_rev, isa)) {
            return Ok(served.clone());
        }
        let repo = self.clone();
        let rev = override_rev.map(str::to_owned);
        tokio::task::spawn_blocking(move || repo.for_device(id, rev.as_deref(), isa))
            .await
            .map_err(|e| RepoError::Io {
                name: format!("the inventory of device {id}"),
                source: std::io::Error::other(e),
            })?
    }

    /// Builds what device `id` is served and keeps it in the snapshot when its sources are stable.
    pub(super) fn build(
        &self,
        id: u64,
        override_rev: Option<&str>,
        isa: Option<rota_blob::Isa>,
    ) -> Result<(Arc<Served>, Arc<Deps>), RepoError> {
        let mut attempt = 0;
        loop {
            let mut deps = Deps::default();
            let served = Arc::new(self.build_once(id, override_rev, isa, &mut deps)?);
            attempt += 1;
            // A file that changed while being read: read everything again (a few times at most;
            // then serve it, but do not keep it).
            let stable = self.unchanged(&deps, &mut Memo::default());
            if !stable && attempt < 3 {
                continue;
            }
            deps.volatile |= !stable;
            let deps = Arc::new(deps);
            if !deps.volatile {
                let mut entries = self.inner.snapshot.lock();
                if entries.len() >= SNAPSHOT_MAX {
                    entries.clear();
                }
                entries.insert(key(id, override_rev, isa), (served.clone(), deps.clone()));
                drop(entries);
                self.start_refreshing();
            }
            return Ok((served, deps));
        }
    }

    fn build_once(
        &self,
        id: u64,
        override_rev: Option<&str>,
        isa: Option<rota_blob::Isa>,
        deps: &mut Deps,
    ) -> Result<Served, RepoError> {
        let control = self.inner.control;
        let inventory = self.inventory_in(control, id, deps)?;
        let Some(pin) = self.pin(id, &inventory, override_rev, deps)? else {
            let plan = self.plan_in(control, &inventory, isa, deps)?;
            let signed = self.release_in(control, &inventory, deps)?;
            let release = match &self.inner.control_release {
                Some(release) => release.clone(),
                None => self.working_tree_release(&inventory, &plan, isa, deps),
            };
            return Ok(Served {
                inventory,
                plan,
                signed,
                release,
            });
        };
        let pin_error = |error| RepoError::Pin {
            device: id,
            field: pin.field.clone(),
            error,
        };
        let rev = pin.rev.as_str();
        let Some(git) = &self.inner.git else {
            return Err(pin_error(PinError::NotGit {
                rev: rev.to_owned(),
                dir: self.inner.dir.display().to_string(),
            }));
        };
        let resolved = git.resolve(rev);
        deps.git_ref(rev, resolved.as_ref().ok().map(|(commit, _)| *commit));
        let (commit, tree) = resolved.map_err(|why| {
            pin_error(PinError::UnknownRevision {
                rev: rev.to_owned(),
                why,
            })
        })?;
        let at = Tree::Commit { commit, tree };
        let there = |error: RepoError| {
            pin_error(PinError::Release {
                rev: rev.to_owned(),
                error: Box::new(error),
            })
        };
        let pinned = self
            .inventory_file(at, &inventory.file, deps)
            .map_err(there)?
            .ok_or_else(|| {
                pin_error(PinError::InventoryMissing {
                    file: inventory.file.clone(),
                    rev: rev.to_owned(),
                })
            })?;
        // The release's file list and config; the secret stays the control tree's.
        let pinned = Arc::new(Inventory {
            secret: inventory.secret.clone(),
            release: None,
            ..(*pinned).clone()
        });
        let plan = self.plan_in(at, &pinned, isa, deps).map_err(there)?;
        let signed = self.release_in(at, &pinned, deps).map_err(there)?;
        Ok(Served {
            inventory: pinned,
            plan,
            signed,
            release: Release {
                name: git.name(rev, commit),
                commit: Some(commit.to_string()),
            },
        })
    }

    /// The working tree's release: the short HEAD commit, `+dirty` when what is served differs from
    /// it (the inventory or a file's bytes as sent), or `dir` outside a git work tree.
    fn working_tree_release(
        &self,
        inventory: &Inventory,
        plan: &Plan,
        isa: Option<rota_blob::Isa>,
        deps: &mut Deps,
    ) -> Release {
        let dir = Release {
            name: "dir".into(),
            commit: None,
        };
        let Some(git) = &self.inner.git else {
            return dir;
        };
        let head = git.resolve("HEAD").ok();
        deps.git_ref("HEAD", head.map(|(commit, _)| commit));
        let Some((commit, tree)) = head else {
            return dir;
        };
        let at = Tree::Commit { commit, tree };
        let mut ignore = Deps::default();
        let clean = self
            .inventory_file(at, &inventory.file, &mut ignore)
            .ok()
            .flatten()
            .is_some_and(|committed| *committed == *inventory)
            && self
                .plan_in(at, inventory, isa, &mut ignore)
                .is_ok_and(|committed| committed == *plan);
        match clean {
            true => Release {
                name: git::short(commit),
                commit: Some(commit.to_string()),
            },
            false => Release {
                name: format!("{}+dirty", git::short(commit)),
                commit: None,
            },
        }
    }

    /// Whether everything `deps` notes is as it was.
    fn unchanged(&self, deps: &Deps, memo: &mut Memo) -> bool {
        let dir = &self.inner.dir;
        let paths = deps.paths.iter().all(|(name, stamp)| {
            let now = memo
                .paths
                .entry(name.clone())
                .or_insert_with(|| Repo::stamp(dir, name, u64::MAX).map_err(|_| ()));
            *now == Ok(*stamp)
        });
        paths
            && deps.refs.iter().all(|(rev, commit)| {
                let now = memo.refs.entry(rev.clone()).or_insert_with(|| {
                    let git = self.inner.git.as_ref();
                    git.and_then(|g| g.resolve(rev).ok()).map(|(c, _)| c)
                });
                now == commit
            })
    }

    /// Checks every entry of the snapshot now and drops those whose sources changed; returns how
    /// many it dropped. The refresh thread calls it every [`REFRESH`].
    pub fn refresh(&self) -> usize {
        let entries: Vec<(Key, Arc<Served>, Arc<Deps>)> = self
            .inner
            .snapshot
            .lock()
            .iter()
            .map(|(k, (s, d))| (k.clone(), s.clone(), d.clone()))
            .collect();
        let mut memo = Memo::default();
        let stale: Vec<(Key, Arc<Served>)> = entries
            .into_iter()
            .filter(|(_, _, deps)| !self.unchanged(deps, &mut memo))
            .map(|(k, s, _)| (k, s))
            .collect();
        let mut map = self.inner.snapshot.lock();
        let mut dropped = 0;
        for (key, served) in stale {
            // Only the entry judged: one built again meanwhile stays.
            if map.get(&key).is_some_and(|(s, _)| Arc::ptr_eq(s, &served)) {
                map.remove(&key);
                dropped += 1;
            }
        }
        dropped
    }

    /// Starts the refresh thread, once; it ends when the last handle of the repository is dropped.
    fn start_refreshing(&self) {
        if self.inner.snapshot.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("rota-repo-refresh".into())
            .spawn(move || {
                idle_priority();
                let mut pause = REFRESH;
                loop {
                    std::thread::sleep(pause);
                    let Some(inner) = weak.upgrade() else { return };
                    let began = Instant::now();
                    let dropped = Repo { inner }.refresh();
                    let took = began.elapsed();
                    tracing::debug!(
                        dropped,
                        took_us = took.as_micros() as u64,
                        "repository refresh round"
                    );
                    pause = REFRESH.max(took * REFRESH_SHARE);
                }
            });
        if let Err(error) = spawned {
            // Without the thread nothing could drop an entry: keep none.
            tracing::warn!(%error, "cannot start the repository refresh thread; serving without a snapshot");
            self.inner.snapshot.lock().clear();
            self.inner
                .snapshot
                .refreshing
                .store(false, Ordering::Release);
        }
    }
}

/// Puts the calling thread in Linux's idle scheduling class (SCHED_IDLE): it then runs only on a
/// core nothing else wants, so checking a large fleet's files never delays a session. Where that is
/// refused, the thread stays as it is ([`REFRESH_SHARE`] still bounds it).
fn idle_priority() {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
        ThreadSchedulePolicy,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(error) = set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        idle,
    ) {
        tracing::debug!(
            ?error,
            "the repository refresh thread keeps its scheduling class"
        );
    }
}

/// What one check found, so each file and revision is looked at once per check.
#[derive(Default)]
struct Memo {
    paths: HashMap<String, Result<Option<Stamp>, ()>>,
    refs: HashMap<String, Option<gix::ObjectId>>,
}
