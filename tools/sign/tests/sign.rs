//! rota-sign end to end, through the binary: keygen, release, show; releases refused naming the
//! file (a corrupt blob, a blob for the other ISA, for another ABI, a missing file, too many files),
//! a release that does not verify under another key, and the bytes signed being those the server
//! serves. Blobs are synthesized with rota-blob (no firmware build needed).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rota_blob::Isa;
use rota_release::{split_release, Manifest};

const ABI: u32 = rota_abi::ABI_VERSION;

fn rota_sign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rota-sign"))
        .args(args)
        .output()
        .expect("run rota-sign")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A valid blob named `name` for `isa` and `abi`, with a few relocations.
fn blob(isa: Isa, abi: u32, name: &str, len: usize) -> Vec<u8> {
    let image: Vec<u8> = (0..len).map(|i| (i * 31 + name.len()) as u8).collect();
    rota_blob::emit_blob(isa, abi, name, &image, 4, &[0, 8, 64]).unwrap()
}

struct Repo {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Repo {
    /// A repository whose device 7 holds `files` (in that inventory order), each written with its
    /// bytes, and `config` if given.
    fn new(files: &[(&str, Vec<u8>)], config: Option<&str>) -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        std::fs::create_dir(&dir).unwrap();
        let repo = Repo { _tmp: tmp, dir };
        for (name, data) in files {
            repo.write(name, data);
        }
        let names: Vec<String> = files.iter().map(|(n, _)| format!("{n:?}")).collect();
        let config = config.map_or(String::new(), |c| format!(r#","config":{c}"#));
        repo.write(
            "ESP-7.json",
            format!(r#"{{"files":[{}],"secret":"s7"{config}}}"#, names.join(",")).as_bytes(),
        );
        repo
    }

    fn write(&self, name: &str, data: &[u8]) {
        std::fs::write(self.dir.join(name), data).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn dir(&self) -> &str {
        self.dir.to_str().unwrap()
    }
}

/// A key pair in `dir` named `name`: (key path, pub path).
fn keys(dir: &Path, name: &str) -> (String, String) {
    let out = dir.join(name);
    let o = rota_sign(&["keygen", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    (
        format!("{}.key", out.display()),
        format!("{}.pub", out.display()),
    )
}

fn sign(repo: &Repo, key: &str, isa: &str, device: &str) -> Output {
    rota_sign(&[
        "release",
        "--repo",
        repo.dir(),
        "--device",
        device,
        "--key",
        key,
        "--security-version",
        "3",
        "--isa",
        isa,
    ])
}

fn lx106_release() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("init", blob(Isa::Lx106, ABI, "init", 400)),
        ("tick", blob(Isa::Lx106, ABI, "tick", 300)),
        ("provision", blob(Isa::Lx106, ABI, "provision", 20_000)),
        ("app", blob(Isa::Lx106, ABI, "app", 120)),
        ("notes.txt", b"not a blob".to_vec()),
    ]
}

#[test]
fn keygen_release_show_round_trip() {
    let repo = Repo::new(&lx106_release(), None);
    let keydir = tempfile::tempdir().unwrap();
    let (key, public) = keys(keydir.path(), "k");
    // The secret is the owner's alone, and never overwritten.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = rota_sign(&["keygen", "--out", keydir.path().join("k").to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"), "{}", text(&again));

    let o = sign(&repo, &key, "lx106", "7");
    assert!(o.status.success(), "{}", text(&o));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(
        summary.contains("ESP-7.release: 5 files (4 blobs checked"),
        "{summary}"
    );

    let bytes = std::fs::read(repo.path("ESP-7.release")).unwrap();
    let (m, sig) = split_release(&bytes).unwrap();
    assert_eq!(
        (m.security_version(), m.isa(), u32::from(m.abi())),
        (3, Isa::Lx106, ABI)
    );
    let names: Vec<&[u8]> = m.entries().map(|e| e.name).collect();
    assert_eq!(
        names,
        [&b"app"[..], b"init", b"notes.txt", b"provision", b"tick"]
    );
    for (name, data) in lx106_release() {
        let e = m.find(name.as_bytes()).unwrap();
        assert_eq!(e.size as usize, data.len());
        assert_eq!(e.digest, &rota_blob::sha256(&data));
        assert_eq!(e.version, rota_release::file_version(e.digest));
    }
    let pk = rota_sign::read_public(Path::new(&public)).unwrap();
    assert_eq!(rota_release::verify(m.as_bytes(), sig, &[pk]), Ok(0));

    let shown = rota_sign(&[
        "show",
        repo.path("ESP-7.release").to_str().unwrap(),
        "--pub",
        &public,
    ]);
    assert!(shown.status.success(), "{}", text(&shown));
    let shown = text(&shown);
    assert!(shown.contains("security version 3, isa lx106"), "{shown}");
    assert!(shown.contains("signature: verifies under"), "{shown}");
    assert!(shown.contains("provision"), "{shown}");
    // Nothing else left in the repository (the temporary file was renamed).
    let mut left: Vec<String> = std::fs::read_dir(&repo.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "ESP-7.json",
            "ESP-7.release",
            "app",
            "init",
            "notes.txt",
            "provision",
            "tick"
        ]
    );
}

#[test]
fn another_key_does_not_verify_and_a_second_key_does() {
    let repo = Repo::new(&lx106_release(), None);
    let keydir = tempfile::tempdir().unwrap();
    let (key, public) = keys(keydir.path(), "signer");
    let (_, other) = keys(keydir.path(), "other");
    assert!(sign(&repo, &key, "lx106", "7").status.success());
    let release = repo.path("ESP-7.release");
    let o = rota_sign(&["show", release.to_str().unwrap(), "--pub", &other]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("signature: does not verify (bad signature)"),
        "{}",
        text(&o)
    );
    // Rotation: the old key first, the signer second.
    let o = rota_sign(&[
        "show",
        release.to_str().unwrap(),
        "--pub",
        &other,
        "--pub",
        &public,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // Any byte of the file changed: refused by the parser or by the signature.
    let bytes = std::fs::read(&release).unwrap();
    let pk = rota_sign::read_public(Path::new(&public)).unwrap();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        let accepted = split_release(&bad)
            .is_ok_and(|(m, s)| rota_release::verify(m.as_bytes(), s, &[pk]).is_ok());
        assert!(!accepted, "byte {i}");
    }
}

/// Signs `files` for `isa` and expects a refusal whose message names `file` and says `reason`.
fn refused(files: Vec<(&str, Vec<u8>)>, config: Option<&str>, isa: &str, file: &str, reason: &str) {
    let repo = Repo::new(&files, config);
    let keydir = tempfile::tempdir().unwrap();
    let (key, _) = keys(keydir.path(), "k");
    let o = sign(&repo, &key, isa, "7");
    let msg = text(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(msg.contains(file), "{file}: {msg}");
    assert!(msg.contains(reason), "{reason}: {msg}");
    assert!(
        !repo.path("ESP-7.release").exists(),
        "nothing written: {msg}"
    );
}

#[test]
fn a_corrupt_blob_is_refused_naming_the_file() {
    let mut files = lx106_release();
    files[1].1[200] ^= 0x10; // tick's image
    refused(
        files,
        None,
        "lx106",
        "tick: digest mismatch",
        "lx106 blob for ABI",
    );
    let mut files = lx106_release();
    files[0].1.truncate(100); // init
    refused(files, None, "lx106", "init: truncated", "");
}

#[test]
fn a_blob_for_the_other_isa_is_refused() {
    let mut files = lx106_release();
    files[2].1 = blob(Isa::Thumbv7m, ABI, "provision", 20_000);
    refused(
        files,
        None,
        "lx106",
        "provision: wrong isa: blob is thumbv7m, loader is lx106",
        "",
    );
}

#[test]
fn a_blob_for_another_abi_is_refused() {
    let mut files = lx106_release();
    files[3].1 = blob(Isa::Lx106, ABI + 1, "app", 120);
    refused(
        files,
        None,
        "lx106",
        &format!("app: abi version mismatch: blob {}, core {ABI}", ABI + 1),
        "",
    );
}

#[test]
fn the_configs_application_is_a_blob_and_app_then_is_data() {
    let config = r#"{"server":"10.0.2.2","app":"main"}"#;
    let mut files = lx106_release();
    files[3].1 = b"app is data for this device".to_vec();
    files.push(("main", blob(Isa::Lx106, ABI, "main", 96)));
    let repo = Repo::new(&files, Some(config));
    let keydir = tempfile::tempdir().unwrap();
    let (key, _) = keys(keydir.path(), "k");
    let o = sign(&repo, &key, "lx106", "7");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("blobs checked: init main provision tick"),
        "{}",
        text(&o)
    );
    // And a bad `main` is refused.
    let last = files.len() - 1;
    files[last].1[60] ^= 1;
    refused(files, Some(config), "lx106", "main: digest mismatch", "");
}

#[test]
fn missing_files_and_too_many_files_are_refused() {
    let repo = Repo::new(&lx106_release(), None);
    std::fs::remove_file(repo.path("tick")).unwrap();
    let keydir = tempfile::tempdir().unwrap();
    let (key, _) = keys(keydir.path(), "k");
    let o = sign(&repo, &key, "lx106", "7");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("`tick`, named by the inventory, is missing"),
        "{}",
        text(&o)
    );

    let mut files = lx106_release();
    for i in 0..6 {
        files.push((["d0", "d1", "d2", "d3", "d4", "d5"][i], vec![i as u8]));
    }
    refused(
        files,
        None,
        "lx106",
        "ESP-7.json names 11 files; a release holds at most 10",
        "",
    );
}

#[test]
fn default_inventory_and_the_bytes_the_server_serves() {
    // A `--SAFETRIM` Lua file is signed as the server sends it: trimmed.
    let repo = Repo::new(&[], None);
    repo.write("default.json", br#"{"files":["init.lua"],"secret":"d"}"#);
    repo.write("init.lua", b"--SAFETRIM\n  x = 1 -- comment\n");
    let keydir = tempfile::tempdir().unwrap();
    let (key, _) = keys(keydir.path(), "k");
    let o = sign(&repo, &key, "thumbv7m", "default");
    assert!(o.status.success(), "{}", text(&o));
    let bytes = std::fs::read(repo.path("default.release")).unwrap();
    let (m, _) = split_release(&bytes).unwrap();
    let served = rota_server::repo::Repo::open_dir(&repo.dir).unwrap();
    let plan = served.plan(&served.inventory(1).unwrap()).unwrap();
    assert_eq!(m.find(b"init.lua").unwrap().digest, &plan.files[0].digest);
    assert_ne!(
        plan.files[0].digest,
        rota_blob::sha256(b"--SAFETRIM\n  x = 1 -- comment\n")
    );
    // Device 8 has no inventory of its own: the server serves it default.json, so its release is
    // default.release.
    let o = sign(&repo, &key, "thumbv7m", "8");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("default.release"), "{}", text(&o));
    let o = sign(&repo, &key, "thumbv7m", "seven");
    assert!(!o.status.success());
    assert!(text(&o).contains("--device seven"), "{}", text(&o));
    let _ = Manifest::parse(m.as_bytes()).unwrap();
}
