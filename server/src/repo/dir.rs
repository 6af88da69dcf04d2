//! The working tree as the repository: each path is checked component by component without following
//! a symbolic link, and the file then opened must be the one just checked.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{leading, Found, Repo, RepoError, Stamp};

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

/// Reads `name` (already validated) in `dir`: the file opened must be the one `checked` (same device
/// and inode); one swapped in since (a link, say) is [`Found::Replaced`].
pub(super) fn read(
    dir: &Path,
    name: &str,
    limit: u64,
    checked: Option<&Stamp>,
) -> Result<Found, RepoError> {
    let io = |source| RepoError::Io {
        name: name.to_owned(),
        source,
    };
    let too_large = || RepoError::TooLarge {
        name: name.to_owned(),
        limit,
    };
    let file = match std::fs::File::open(dir.join(name)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
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

impl Repo {
    /// The stamp of `name` in a directory source (checked to be a file within `limit`, reached through
    /// no symbolic link); `Ok(None)` when it does not exist.
    pub(super) fn stamp(dir: &Path, name: &str, limit: u64) -> Result<Option<Stamp>, RepoError> {
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
}
