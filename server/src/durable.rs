//! Durable, atomic replacement of a file in a repository (rota-sign writes the signed release
//! files with it). The fleet's state is not kept in files any more but in a database
//! (docs/state.md).
//!
//! [`replace`] writes the new content to a temporary file of its own in the same directory, fsyncs
//! it, renames it over the file, then fsyncs the directory. A crash at any moment (the process
//! killed, the host's power cut) leaves the file with its old content or its new one, never a mix:
//! the rename is atomic, and the data is on disk before the name points at it. When `replace`
//! returns, the new content survives a power cut.
//!
//! Each call writes its own temporary file, `.<name>.<pid>.<n>.tmp` (`n` counts this process's
//! writes; the file is created exclusively, so a leftover of a crashed process with the same pid is
//! never reused), so concurrent writers, in one process or several, never share one. A crash can leave
//! a temporary file behind: its name starts with `.` and ends with `.tmp`, so no reader takes it for
//! the file it stood in for.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes of this process so far: part of each temporary file's name.
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Replaces `dir/name` with `bytes`, atomically and durably (see the module documentation). On an
/// error the file is left as it was, and the temporary file is removed.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    replace_steps(dir, name, bytes, |_| false)
}

/// The steps of [`replace`], after each of which a crash is simulated in the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Created,
    HalfWritten,
    Written,
    Synced,
    Renamed,
    DirSynced,
}

/// [`replace`], stopping dead (no clean-up, as a killed process would) after the first step for
/// which `crash` is true.
fn replace_steps(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    crash: impl Fn(Step) -> bool,
) -> io::Result<()> {
    let crashed = std::cell::Cell::new(false);
    let step = |s: Step| {
        if crash(s) {
            crashed.set(true);
            Err(io::Error::other(format!("simulated crash after {s:?}")))
        } else {
            Ok(())
        }
    };
    let target = dir.join(name);
    let (tmp, mut file) = loop {
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match File::options().write(true).create_new(true).open(&tmp) {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    step(Step::Created)?;
    let (first, second) = bytes.split_at(bytes.len() / 2);
    let written = file
        .write_all(first)
        .and_then(|()| step(Step::HalfWritten))
        .and_then(|()| file.write_all(second))
        .and_then(|()| step(Step::Written))
        .and_then(|()| file.sync_all())
        .and_then(|()| step(Step::Synced))
        .and_then(|()| {
            drop(file);
            fs::rename(&tmp, &target)
        });
    if let Err(e) = written {
        if !crashed.get() {
            let _ = fs::remove_file(&tmp);
        }
        return Err(e);
    }
    step(Step::Renamed)?;
    sync_dir(dir)?;
    step(Step::DirSynced)
}

/// Fsyncs a directory, making the renames and creations in it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name of the state file a temporary file of [`replace`] was for, if `file_name` is one
    /// (`.7.json.1234.0.tmp` is for `7.json`; so is `.7.json.tmp`, the name used before).
    fn temporary_target(file_name: &str) -> Option<&str> {
        let inner = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
        let target = match inner.rsplitn(3, '.').collect::<Vec<_>>()[..] {
            [n, pid, target]
                if [n, pid]
                    .iter()
                    .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())) =>
            {
                target
            }
            _ => inner,
        };
        (!target.is_empty()).then_some(target)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        replace(tmp.path(), "7.json", b"old").unwrap();
        assert_eq!(fs::read(tmp.path().join("7.json")).unwrap(), b"old");
        replace(tmp.path(), "7.json", b"new, and longer").unwrap();
        assert_eq!(
            fs::read(tmp.path().join("7.json")).unwrap(),
            b"new, and longer"
        );
        replace(tmp.path(), "7.json", b"").unwrap();
        assert_eq!(fs::read(tmp.path().join("7.json")).unwrap(), b"");
        assert_eq!(names(tmp.path()), ["7.json"]);
    }

    /// A crash after each step of `replace` (the process stopped dead, its temporary file left
    /// behind): the file holds its old content whole until the rename, the new content whole from
    /// then on; the leftover is recognised as a temporary file, and the next write works beside it.
    #[test]
    fn a_crash_after_any_step_leaves_old_or_new() {
        use Step::*;
        for crash_after in [Created, HalfWritten, Written, Synced, Renamed, DirSynced] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            replace(dir, "7.nonce", b"the old content").unwrap();
            let got = replace_steps(dir, "7.nonce", b"the new content, longer", |s| {
                s == crash_after
            });
            assert!(got.is_err(), "{crash_after:?}");
            let renamed = matches!(crash_after, Renamed | DirSynced);
            let expected: &[u8] = if renamed {
                b"the new content, longer"
            } else {
                b"the old content"
            };
            assert_eq!(
                fs::read(dir.join("7.nonce")).unwrap(),
                expected,
                "{crash_after:?}"
            );
            let leftovers: Vec<String> =
                names(dir).into_iter().filter(|n| n != "7.nonce").collect();
            assert_eq!(
                leftovers.len(),
                usize::from(!renamed),
                "{crash_after:?}: {leftovers:?}"
            );
            for leftover in &leftovers {
                assert_eq!(temporary_target(leftover), Some("7.nonce"), "{leftover}");
            }
            replace(dir, "7.nonce", b"newest").unwrap();
            assert_eq!(fs::read(dir.join("7.nonce")).unwrap(), b"newest");
        }
    }

    /// A leftover with the very name the next write would pick is neither reused nor truncated.
    #[test]
    fn a_leftover_temporary_file_is_never_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let n = WRITES.load(Ordering::Relaxed);
        let mut planted = Vec::new();
        for n in n..n + 3 {
            let next = dir.join(format!(".7.json.{}.{n}.tmp", std::process::id()));
            fs::write(&next, b"a crashed writer's").unwrap();
            planted.push(next);
        }
        replace(dir, "7.json", b"newest").unwrap();
        assert_eq!(fs::read(dir.join("7.json")).unwrap(), b"newest");
        for p in &planted {
            assert_eq!(fs::read(p).unwrap(), b"a crashed writer's");
        }
    }

    #[test]
    fn concurrent_writers_never_share_a_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let contents: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 4096]).collect();
        std::thread::scope(|s| {
            for content in &contents {
                let (dir, contents) = (&dir, &contents);
                s.spawn(move || {
                    for _ in 0..50 {
                        replace(dir, "7.json", content).unwrap();
                        let now = fs::read(dir.join("7.json")).unwrap();
                        assert!(contents.contains(&now), "a torn file");
                    }
                });
            }
        });
        assert_eq!(names(&dir), ["7.json"]);
    }

    #[test]
    fn temporary_names() {
        assert_eq!(temporary_target(".7.json.12.0.tmp"), Some("7.json"));
        assert_eq!(temporary_target(".7.json.tmp"), Some("7.json"));
        assert_eq!(
            temporary_target(".7.nonce.4294967295.18.tmp"),
            Some("7.nonce")
        );
        for not_one in [
            "7.json",
            "7.nonce",
            "7.lock",
            ".tmp",
            "..tmp",
            "7.json.1.2.tmp",
        ] {
            assert_eq!(temporary_target(not_one), None, "{not_one}");
        }
    }
}
