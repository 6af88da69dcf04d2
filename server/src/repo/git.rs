//! One git commit as the repository: the revision is resolved once, files are read with gix, and a
//! link entry on a file's path is refused.

use std::path::{Path, PathBuf};

use super::{leading, Found, Repo, RepoError, Source};

impl Repo {
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
}

/// Reads `name` (already validated) from `tree`, under the repository directory `prefix`.
pub(super) fn read(
    repo: &gix::ThreadSafeRepository,
    tree: gix::ObjectId,
    prefix: &Path,
    name: &str,
    limit: u64,
) -> Result<Found, RepoError> {
    let too_large = || RepoError::TooLarge {
        name: name.to_owned(),
        limit,
    };
    let git = |e: gix::Error| RepoError::Git(format!("reading `{name}`: {e}"));
    let repo = repo.to_thread_local();
    let tree = repo.find_tree(tree).map_err(git)?;
    // Component by component, so a link on the way is refused, not just not found.
    let mut path = prefix.to_path_buf();
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
