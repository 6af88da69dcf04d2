//! Git commits as trees of the repository, read with gix: revisions resolved (again whenever asked:
//! a branch that moves is seen), files read with a link entry on their path refused, and releases
//! named for people (a tag or branch, else the short commit).

use std::path::{Path, PathBuf};

use super::{leading, Found, RepoError};

/// The git repository the served directory is in.
pub(super) struct GitRepo {
    repo: gix::ThreadSafeRepository,
    /// The repository directory relative to the git work tree.
    prefix: PathBuf,
}

/// Length of a short commit name.
const SHORT: usize = 7;

impl GitRepo {
    /// The git repository `dir` is in; `dir` may be the work tree or a directory inside it.
    pub(super) fn discover(dir: &Path) -> Result<Self, RepoError> {
        let git = |e: gix::Error| RepoError::Git(e.to_string());
        let repo = gix::discover(dir).map_err(git)?;
        let prefix = match repo.workdir() {
            Some(workdir) => {
                let canon = |p: &Path| {
                    p.canonicalize().map_err(|source| RepoError::Io {
                        name: p.display().to_string(),
                        source,
                    })
                };
                let (d, w) = (canon(dir)?, canon(workdir)?);
                d.strip_prefix(&w).map(Path::to_path_buf).map_err(|_| {
                    RepoError::Git(format!("{} is outside the work tree", d.display()))
                })?
            }
            None => PathBuf::new(),
        };
        Ok(GitRepo {
            repo: repo.into_sync(),
            prefix,
        })
    }

    /// The commit and tree revision `rev` names now (anything `git rev-parse` takes); the error says
    /// why not.
    pub(super) fn resolve(&self, rev: &str) -> Result<(gix::ObjectId, gix::ObjectId), String> {
        let repo = self.repo.to_thread_local();
        let commit = repo
            .rev_parse_single(rev)
            .map_err(|e| e.to_string())?
            .object()
            .map_err(|e| e.to_string())?
            .peel_to_commit()
            .map_err(|e| e.to_string())?;
        let tree = commit.tree_id().map_err(|e| e.to_string())?.detach();
        Ok((commit.id, tree))
    }

    /// A person's name for `commit`, given as `rev`: `rev` itself when it is a tag or a branch, else
    /// a tag pointing at the commit (the first by name), else its short id (7 hex digits).
    pub(super) fn name(&self, rev: &str, commit: gix::ObjectId) -> String {
        let repo = self.repo.to_thread_local();
        let named = ["refs/tags/", "refs/heads/"]
            .iter()
            .any(|kind| repo.find_reference(&format!("{kind}{rev}")).is_ok());
        if named {
            return rev.to_owned();
        }
        let mut tags: Vec<String> = Vec::new();
        if let Ok(refs) = repo.references() {
            if let Ok(iter) = refs.tags() {
                for mut tag in iter.flatten() {
                    let points_here = tag.peel_to_commit().is_ok_and(|c| c.id == commit);
                    if points_here {
                        tags.push(tag.name().shorten().to_string());
                    }
                }
            }
        }
        tags.sort();
        tags.into_iter().next().unwrap_or_else(|| short(commit))
    }

    /// Reads `name` (already validated) from `tree`, under the repository directory.
    pub(super) fn read(
        &self,
        tree: gix::ObjectId,
        name: &str,
        limit: u64,
    ) -> Result<Found, RepoError> {
        let too_large = || RepoError::TooLarge {
            name: name.to_owned(),
            limit,
        };
        let git = |e: gix::Error| RepoError::Git(format!("reading `{name}`: {e}"));
        let repo = self.repo.to_thread_local();
        let tree = repo.find_tree(tree).map_err(git)?;
        // Component by component, so a link on the way is refused, not just not found.
        let mut path = self.prefix.clone();
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

/// The short name of `commit`: its first 7 hex digits.
pub(super) fn short(commit: gix::ObjectId) -> String {
    commit.to_hex_with_len(SHORT).to_string()
}
