//! Symbolic links in the repository are never followed: a link to a file or to a directory outside the
//! repository would serve that file. Refused the same way in working-tree and `--rev` mode, for v1 and
//! v2 devices, before anything is sent.

use std::os::unix::fs::symlink;

use rota_devices::nodemcu::{AppReason, Device, Outcome};
use rota_devices::rota::{RotaDevice, V2Outcome};
use rota_server::repo::{Repo, RepoError};
use rota_server::session::{Limits, SessionError};
use tempfile::TempDir;

use crate::common::{data_txt, git, start, Fixture};

/// What the files outside the repository hold: never to reach a device.
const OUTSIDE: &[u8] = b"a file outside the repository";

/// A repository with `leak.txt`, a link to a file outside it, and `ext`, a link to a directory
/// outside it; v1 devices 1 (file link) and 2 (directory link), v2 devices 42 and 43 likewise, each
/// inventory also naming `data.txt`. Returns the outside directory too (kept alive).
fn linked() -> (Fixture, TempDir) {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), OUTSIDE).unwrap();
    let fx = Fixture::standard();
    symlink(
        outside.path().join("secret.txt"),
        fx.path().join("leak.txt"),
    )
    .unwrap();
    symlink(outside.path(), fx.path().join("ext")).unwrap();
    for (id, file, secret) in [
        (1, "leak.txt", "one"),
        (2, "ext/secret.txt", "two"),
        (42, "leak.txt", "rota"),
        (43, "ext/secret.txt", "rota"),
    ] {
        fx.inventory(&format!("ESP-{id}.json"), &["data.txt", file], secret);
    }
    (fx, outside)
}

/// Checks in the four devices and returns each session's error, as text, after checking that nothing
/// at all was sent to any of them.
async fn refused(repo: Repo) -> Vec<String> {
    let mut server = start(repo, Limits::default()).await;
    let mut errors = Vec::new();
    for (id, secret, name) in [(1, "one", "leak.txt"), (2, "two", "ext/secret.txt")] {
        let mut device = Device::new(id, secret, "127.0.0.1", 8266);
        let before = device.fs.clone();
        let check = device.check_in_tcp(server.addr).await.unwrap();
        assert_eq!(check.outcome, Outcome::AppStarted(AppReason::ClosedEarly));
        assert_eq!(check.bytes_received, 0, "v1 device {id}: nothing sent");
        assert_eq!(device.fs, before, "v1 device {id}: nothing written");
        let err = server.report().await.outcome.unwrap_err();
        assert!(
            matches!(&err, SessionError::Repo(RepoError::Symlink { name: n, .. }) if n == name),
            "{err:?}"
        );
        errors.push(err.to_string());
    }
    for (id, name) in [(42, "leak.txt"), (43, "ext/secret.txt")] {
        let mut device = RotaDevice::new(id, b"rota");
        let check = device.check_in_tcp(server.addr).await.unwrap();
        assert_eq!(check.outcome, V2Outcome::Closed);
        assert_eq!(check.bytes_received, 0, "v2 device {id}: nothing sent");
        assert_eq!(device.file(name), None);
        assert_eq!(device.file("data.txt"), None);
        assert!(
            device.store.files.values().all(|(d, _)| d != OUTSIDE),
            "v2 device {id}"
        );
        let err = server.report().await.outcome.unwrap_err();
        assert!(
            matches!(&err, SessionError::Repo(RepoError::Symlink { name: n, .. }) if n == name),
            "{err:?}"
        );
        errors.push(err.to_string());
    }
    // The link is refused, not the repository: a device whose inventory names no link is served.
    let mut device = Device::new(7, "supersekrit", "127.0.0.1", 8266);
    assert_eq!(
        device.check_in_tcp(server.addr).await.unwrap().outcome,
        Outcome::Restarted
    );
    assert_eq!(device.fs["data.txt"], data_txt());
    assert!(server.report().await.outcome.is_ok());
    errors
}

#[tokio::test]
async fn links_to_files_and_directories_are_refused_in_both_modes() {
    let (fx, _outside) = linked();
    let working_tree = refused(Repo::open_dir(fx.path()).unwrap()).await;
    git(fx.path(), &["init", "-q"]);
    git(fx.path(), &["add", "."]);
    git(fx.path(), &["commit", "-qm", "links"]);
    let committed = refused(Repo::open_rev(fx.path(), "HEAD").unwrap()).await;
    assert_eq!(working_tree, committed, "the same refusal in both modes");
    assert!(
        working_tree[1].contains("ext/secret.txt") && working_tree[1].contains("`ext`"),
        "{}",
        working_tree[1]
    );
}
