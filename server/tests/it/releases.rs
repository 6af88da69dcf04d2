//! Releases by git revision (`docs/releases.md`), against the real server over TCP with real git
//! repositories made here: devices pinned by their inventory, by a group or by the caller's
//! override get the files, file list and config of their revision (the secret of the control
//! tree); a moved branch is seen; releases have people's names (in the session report); overlay ELF
//! files are packed by the server, once per content; and every bad pin is a typed error naming the
//! device, the field and why, with nothing sent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rota_blob::Isa;
use rota_devices::nodemcu;
use rota_devices::rota::{RotaDevice, V2Outcome};
use rota_server::repo::{ElfError, PinError, Repo, RepoError, RACY_WINDOW, REFRESH};
use rota_server::session::{Limits, Outcome, SessionError, SessionReport};

use crate::common::{git, start, Fixture, Running};

const SECRET: &str = "control secret";

/// Writes device `id`'s inventory naming `files`, with `extra` fields (a `release`, say).
fn inventory(fx: &Fixture, id: u64, files: &[&str], extra: serde_json::Value) {
    let mut json = serde_json::json!({ "files": files, "secret": SECRET });
    if let (Some(obj), Some(more)) = (json.as_object_mut(), extra.as_object()) {
        obj.extend(more.clone());
    }
    fx.write(&format!("ESP-{id}.json"), json.to_string().as_bytes());
}

/// A git repository with two tagged releases: `v1` and `v2` (HEAD), each holding `data.txt` and
/// `notes.txt` with its own content, and inventories for devices 1 to 9 naming both; branch
/// `stable` at `v1`. At v1 the inventories carry a wrong secret: a pinned device's secret must come
/// from the control tree.
fn releases() -> Fixture {
    let fx = Fixture::empty();
    git(fx.path(), &["init", "-q", "-b", "main"]);
    for (tag, secret) in [("v1", "old secret"), ("v2", SECRET)] {
        fx.write("data.txt", format!("data of {tag}").as_bytes());
        fx.write("notes.txt", format!("notes of {tag}").as_bytes());
        for id in 1..10 {
            let json = serde_json::json!({ "files": ["data.txt", "notes.txt"], "secret": secret });
            fx.write(&format!("ESP-{id}.json"), json.to_string().as_bytes());
        }
        git(fx.path(), &["add", "-A"]);
        git(fx.path(), &["commit", "-q", "-m", tag]);
        git(fx.path(), &["tag", tag]);
    }
    git(fx.path(), &["branch", "stable", "v1"]);
    fx
}

/// The commit `rev` names, as git says.
fn rev_parse(dir: &Path, rev: &str) -> String {
    let out = Command::new("git")
        .args(["rev-parse", rev])
        .current_dir(dir)
        .output()
        .expect("git runs");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A rota device of the control tree's secret, checked in once; its report.
async fn check_in(server: &mut Running, device: &mut RotaDevice) -> SessionReport {
    let check = device.check_in_tcp(server.addr).await.unwrap();
    let report = server.report().await;
    assert!(
        matches!(check.outcome, V2Outcome::Committed(_) | V2Outcome::NoUpdate),
        "{check:?} {report:?}"
    );
    report
}

fn device(id: u32) -> RotaDevice {
    RotaDevice::new(id, SECRET.as_bytes())
}

fn data(device: &RotaDevice) -> String {
    String::from_utf8_lossy(device.file("data.txt").unwrap_or(b"<none>")).into_owned()
}

#[tokio::test]
async fn devices_pinned_to_tags_get_their_release_and_its_name() {
    let fx = releases();
    inventory(&fx, 1, &["data.txt"], serde_json::json!({"release": "v1"}));
    inventory(&fx, 2, &["data.txt"], serde_json::json!({"release": "v2"}));
    let mut server = fx.start().await;

    let mut one = device(1);
    let report = check_in(&mut server, &mut one).await;
    // v1's file list (both files), v1's bytes, the control tree's secret.
    assert_eq!(data(&one), "data of v1");
    assert_eq!(one.file("notes.txt"), Some(&b"notes of v1"[..]));
    assert_eq!(report.release.as_deref(), Some("v1"));
    assert!(matches!(report.outcome, Ok(Outcome::Updated)));

    let mut two = device(2);
    let report = check_in(&mut server, &mut two).await;
    assert_eq!(data(&two), "data of v2");
    assert_eq!(report.release.as_deref(), Some("v2"));

    // Up to date at its release: no update, still named.
    let report = check_in(&mut server, &mut one).await;
    assert!(
        matches!(report.outcome, Ok(Outcome::NoUpdate)),
        "{report:?}"
    );
    assert_eq!(report.release.as_deref(), Some("v1"));

    // A commit pin is named by its tag; an untagged commit by its short id.
    let v1 = rev_parse(fx.path(), "v1");
    inventory(&fx, 3, &["data.txt"], serde_json::json!({ "release": v1 }));
    let report = check_in(&mut server, &mut device(3)).await;
    assert_eq!(report.release.as_deref(), Some("v1"));
    git(
        fx.path(),
        &["commit", "-q", "--allow-empty", "-m", "untagged"],
    );
    let head = rev_parse(fx.path(), "HEAD");
    inventory(
        &fx,
        4,
        &["data.txt"],
        serde_json::json!({ "release": head }),
    );
    let mut four = device(4);
    let report = check_in(&mut server, &mut four).await;
    assert_eq!(report.release.as_deref(), Some(&head[..7]));
    assert_eq!(data(&four), "data of v2");
}

#[tokio::test]
async fn the_working_tree_is_named_by_its_head_commit_dirty_or_dir() {
    let fx = releases();
    let head = rev_parse(fx.path(), "HEAD");
    let mut server = fx.start().await;
    // The working tree is v2, as committed: the short HEAD commit.
    let mut five = device(5);
    let report = check_in(&mut server, &mut five).await;
    assert_eq!(report.release.as_deref(), Some(&head[..7]));
    // A served file edited: dirty.
    fx.write("notes.txt", b"edited");
    let report = check_in(&mut server, &mut five).await;
    assert_eq!(report.release, Some(format!("{}+dirty", &head[..7])));
    assert_eq!(five.file("notes.txt"), Some(&b"edited"[..]));
    // An edit to a file no device is served does not make it dirty.
    fx.write("unrelated.txt", b"x");
    fx.write("notes.txt", b"notes of v2");
    let report = check_in(&mut server, &mut device(6)).await;
    assert_eq!(report.release.as_deref(), Some(&head[..7]));

    // Outside git: `dir`, v1 and v2 alike.
    let plain = Fixture::standard();
    let mut server = plain.start().await;
    let mut v1 = nodemcu::Device::new(9, "supersekrit", "127.0.0.1", server.addr.port());
    v1.check_in_tcp(server.addr).await.unwrap();
    let report = server.report().await;
    assert!(report.outcome.is_ok(), "{report:?}");
    assert_eq!(report.release.as_deref(), Some("dir"));
}

#[tokio::test]
async fn a_group_pins_its_devices_and_a_device_pin_comes_first() {
    let fx = releases();
    fx.write(
        "groups.json",
        br#"{"groups": {"canary": {"devices": [1, 2, 11223344], "release": "v1"}}}"#,
    );
    // Device 2 is in the group but pins v2 itself: its own pin wins.
    inventory(&fx, 2, &["data.txt"], serde_json::json!({"release": "v2"}));
    inventory(&fx, 3, &["data.txt"], serde_json::json!({}));
    let json = serde_json::json!({ "files": ["data.txt"], "secret": SECRET });
    fx.write("ESP-11223344.json", json.to_string().as_bytes());
    let mut server = fx.start().await;

    let mut one = device(1);
    let report = check_in(&mut server, &mut one).await;
    assert_eq!(
        (data(&one), report.release.as_deref()),
        ("data of v1".into(), Some("v1"))
    );
    let mut two = device(2);
    check_in(&mut server, &mut two).await;
    assert_eq!(data(&two), "data of v2");
    // Device 3: in no group, no pin: the working tree (edited after the commit).
    fx.write("data.txt", b"working tree");
    let mut three = device(3);
    check_in(&mut server, &mut three).await;
    assert_eq!(data(&three), "working tree");

    // A NodeMCU (v1) device of the group gets v1's inventory at v1 (its file list) too. ESP-11223344.json
    // is not in the commits: refused, typed, nothing sent.
    let mut nodemcu = nodemcu::Device::new(11223344, SECRET, "127.0.0.1", server.addr.port());
    let check = nodemcu.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.bytes_received, 0, "nothing sent");
    let report = server.report().await;
    let Err(SessionError::Repo(RepoError::Pin {
        device,
        field,
        error,
    })) = &report.outcome
    else {
        panic!("{report:?}");
    };
    assert_eq!(
        (*device, field.as_str()),
        (11223344, "groups.json: groups.canary.release")
    );
    assert!(
        matches!(error, PinError::InventoryMissing { file, rev } if file == "ESP-11223344.json" && rev == "v1"),
        "{error}"
    );
    git(fx.path(), &["add", "ESP-11223344.json"]);
    git(fx.path(), &["commit", "-q", "-m", "nodemcu"]);
    git(fx.path(), &["tag", "-f", "v1"]);
    let check = nodemcu.check_in_tcp(server.addr).await.unwrap();
    let report = server.report().await;
    assert!(
        matches!(report.outcome, Ok(Outcome::Updated)),
        "{report:?} {check:?}"
    );
    assert_eq!(report.release.as_deref(), Some("v1"));
    assert_eq!(
        nodemcu.fs.get("data.txt").map(Vec::as_slice),
        Some(&b"data of v2"[..]),
        "v1 now names the commit that added the inventory, on top of v2"
    );
}

#[tokio::test]
async fn a_moved_branch_is_seen_and_the_snapshot_serves_without_reading() {
    let fx = releases();
    inventory(
        &fx,
        5,
        &["data.txt"],
        serde_json::json!({"release": "stable"}),
    );
    // Files older than the racy window, as in a deployed repository: the snapshot keeps them.
    std::thread::sleep(RACY_WINDOW + Duration::from_millis(100));
    let repo = Repo::open_dir(fx.path()).unwrap();
    let mut server = start(repo.clone(), Limits::default()).await;
    let mut five = device(5);
    let report = check_in(&mut server, &mut five).await;
    assert_eq!(
        (data(&five), report.release.as_deref()),
        ("data of v1".into(), Some("stable"))
    );

    // The next check-in is answered from the snapshot: no repository read at all.
    let before = repo.cache_stats();
    let report = check_in(&mut server, &mut five).await;
    assert!(
        matches!(report.outcome, Ok(Outcome::NoUpdate)),
        "{report:?}"
    );
    assert_eq!(repo.cache_stats(), before);
    assert_eq!(repo.refresh(), 0, "nothing changed");

    // The branch moves: the refresh thread sees it within REFRESH.
    git(fx.path(), &["branch", "-f", "stable", "v2"]);
    tokio::time::sleep(REFRESH * 3).await;
    let report = check_in(&mut server, &mut five).await;
    assert!(matches!(report.outcome, Ok(Outcome::Updated)), "{report:?}");
    assert_eq!(data(&five), "data of v2");

    // An edit of an inventory is seen as well: checked by hand here, as the thread would.
    check_in(&mut server, &mut five).await;
    std::thread::sleep(RACY_WINDOW + Duration::from_millis(100));
    inventory(
        &fx,
        5,
        &["notes.txt"],
        serde_json::json!({"release": "stable"}),
    );
    assert_eq!(repo.refresh(), 1, "device 5's entry dropped");
    let served = repo.for_device(5, None, None).unwrap();
    assert_eq!(
        served.inventory.files,
        ["data.txt", "notes.txt"],
        "v2's list"
    );
}

#[tokio::test]
async fn the_caller_may_override_the_release_per_check_in() {
    let fx = releases();
    inventory(&fx, 1, &["data.txt"], serde_json::json!({"release": "v2"}));
    let repo = Repo::open_dir(fx.path()).unwrap();
    let served = repo.for_device(1, Some("v1"), None).unwrap();
    assert_eq!(served.release.name, "v1");
    assert_eq!(
        served.release.commit.as_deref(),
        Some(rev_parse(fx.path(), "v1").as_str())
    );
    assert_eq!(served.plan.files[0].data, b"data of v1");
    assert_eq!(
        served.inventory.secret,
        SECRET.as_bytes(),
        "the control tree's secret"
    );
    assert_eq!(served.label(&served.plan.files[0]), "data.txt@v1");
    let served = repo.served(1, None, None).await.unwrap();
    assert_eq!(served.release.name, "v2");
    let err = repo.for_device(1, Some("v9"), None).unwrap_err();
    assert!(
        matches!(&err, RepoError::Pin { device: 1, field, error: PinError::UnknownRevision { rev, .. } } if field == "override" && rev == "v9"),
        "{err}"
    );
}

/// Checks in device `id` and expects a refusal before anything is sent; returns the error.
async fn refused(server: &mut Running, id: u32) -> RepoError {
    let check = device(id).check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.bytes_received, 0, "nothing sent: {check:?}");
    let report = server.report().await;
    match report.outcome {
        Err(SessionError::Repo(error)) => error,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn every_bad_pin_is_a_typed_error_naming_the_device_and_field() {
    let fx = releases();
    // Branch `broken`: v1 with device 4's inventory naming a file v1 does not hold.
    git(fx.path(), &["checkout", "-q", "-b", "broken", "v1"]);
    let json = serde_json::json!({ "files": ["data.txt", "gone.txt"], "secret": "x" });
    fx.write("ESP-4.json", json.to_string().as_bytes());
    git(fx.path(), &["commit", "-q", "-am", "names a missing file"]);
    git(fx.path(), &["checkout", "-q", "main"]);
    inventory(
        &fx,
        1,
        &["data.txt"],
        serde_json::json!({"release": "no-such-tag"}),
    );
    git(fx.path(), &["rm", "-q", "ESP-2.json"]);
    git(fx.path(), &["commit", "-q", "-m", "no device 2"]);
    git(fx.path(), &["tag", "v3"]);
    inventory(&fx, 2, &["data.txt"], serde_json::json!({"release": "v3"}));
    let mut server = fx.start().await;

    let error = refused(&mut server, 1).await;
    let text = error.to_string();
    assert!(
        matches!(&error, RepoError::Pin { device: 1, field, error: PinError::UnknownRevision { rev, .. } }
            if field == "ESP-1.json: release" && rev == "no-such-tag"),
        "{text}"
    );
    assert!(
        text.contains("device 1") && text.contains("no-such-tag"),
        "{text}"
    );

    let error = refused(&mut server, 2).await;
    assert!(
        matches!(&error, RepoError::Pin { device: 2, error: PinError::InventoryMissing { file, rev }, .. }
            if file == "ESP-2.json" && rev == "v3"),
        "{error}"
    );

    fx.write(
        "groups.json",
        br#"{"groups": {"a": {"devices": [3], "release": "v1"}, "b": {"devices": [3], "release": "v2"}}}"#,
    );
    let error = refused(&mut server, 3).await;
    assert!(
        matches!(&error, RepoError::Pin { device: 3, error: PinError::TwoGroups(a, b), .. } if a == "a" && b == "b"),
        "{error}"
    );
    fx.write("groups.json", br#"{"groups": {"a": {"devices": [3]}}}"#);
    let error = refused(&mut server, 3).await;
    assert!(error.to_string().contains("groups.a.release"), "{error}");

    // A file the pinned inventory names, missing at its revision.
    inventory(
        &fx,
        4,
        &["data.txt"],
        serde_json::json!({"release": "broken"}),
    );
    let error = refused(&mut server, 4).await;
    let RepoError::Pin {
        device: 4,
        error: PinError::Release { rev, error },
        ..
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!(rev, "broken");
    assert!(
        matches!(&**error, RepoError::MissingFile(f) if f == "gone.txt"),
        "{error}"
    );

    // Not a git repository.
    let plain = Fixture::empty();
    inventory(
        &plain,
        5,
        &["data.txt"],
        serde_json::json!({"release": "v1"}),
    );
    let mut server = plain.start().await;
    let error = refused(&mut server, 5).await;
    assert!(
        matches!(&error, RepoError::Pin { device: 5, error: PinError::NotGit { rev, .. }, .. } if rev == "v1"),
        "{error}"
    );
}

// -----------------------------------------------------------------------------------------------
// ELF files packed by the server.

/// `rust-lld` of the toolchain running the tests.
fn rust_lld() -> PathBuf {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "target-libdir"])
        .output()
        .expect("rustc runs");
    let libdir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let lld = libdir.parent().unwrap().join("bin/rust-lld");
    assert!(lld.is_file(), "rust-lld not found at {}", lld.display());
    lld
}

/// A Cortex-M3 overlay ELF file as the overlay build links one (`overlays/build.rs`'s flags, the
/// real `linker/overlay-thumbv7m.x`): an entry returning `n`, and a table of two absolute addresses
/// (so the blob has relocations).
fn arm_overlay(dir: &Path, n: u8) -> Vec<u8> {
    use object::write::{Object, Relocation, Symbol, SymbolSection};
    use object::{elf, Architecture, BinaryFormat, Endianness, FileFlags, RelocationFlags};
    use object::{SectionKind, SymbolFlags, SymbolKind, SymbolScope};
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::Arm, Endianness::Little);
    obj.flags = FileFlags::Elf {
        os_abi: elf::ELFOSABI_NONE,
        abi_version: 0,
        e_flags: elf::EF_ARM_EABI_VER5,
    };
    let text = obj.add_section(
        vec![],
        b".text.rota_overlay_entry".to_vec(),
        SectionKind::Text,
    );
    // movs r0, #n; bx lr
    let code = [0x20, n, 0x70, 0x47];
    let code = [code[1], code[0], code[2], code[3]];
    let offset = obj.append_section_data(text, &code, 4);
    let entry = obj.add_symbol(Symbol {
        name: rota_abi::ENTRY_SYMBOL.as_bytes().to_vec(),
        value: offset | 1,
        size: 4,
        kind: SymbolKind::Text,
        scope: SymbolScope::Linkage,
        weak: false,
        section: SymbolSection::Section(text),
        flags: SymbolFlags::None,
    });
    let table = obj.add_section(
        vec![],
        b".data.rel.ro.table".to_vec(),
        SectionKind::ReadOnlyDataWithRel,
    );
    let base = obj.append_section_data(table, &[0; 8], 4);
    for i in 0..2 {
        obj.add_relocation(
            table,
            Relocation {
                offset: base + 4 * i,
                symbol: entry,
                addend: 0,
                flags: RelocationFlags::Elf {
                    r_type: elf::R_ARM_ABS32,
                },
            },
        )
        .unwrap();
    }
    obj.add_symbol(Symbol {
        name: b"table".to_vec(),
        value: base,
        size: 8,
        kind: SymbolKind::Data,
        scope: SymbolScope::Compilation,
        weak: false,
        section: SymbolSection::Section(table),
        flags: SymbolFlags::None,
    });
    let o = dir.join(format!("overlay{n}.o"));
    let elf = dir.join(format!("overlay{n}.elf"));
    std::fs::write(&o, obj.write().unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../linker/overlay-thumbv7m.x");
    let out = Command::new(rust_lld())
        .args(["-flavor", "gnu", "-pie", "-znorelro", "--no-dynamic-linker"])
        .arg(format!("-T{}", script.display()))
        .arg(&o)
        .arg("-o")
        .arg(&elf)
        .output()
        .expect("rust-lld runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(elf).unwrap()
}

/// A Cortex-M3 device of this ABI.
fn arm_device(id: u32) -> RotaDevice {
    let mut d = device(id);
    d.isa = Isa::Thumbv7m as u8;
    d.abi = rota_abi::ABI_VERSION as u8;
    d
}

#[tokio::test]
async fn overlay_elf_files_are_packed_once_and_served_as_blobs() {
    let fx = Fixture::empty();
    let scratch = tempfile::tempdir().unwrap();
    let elf = arm_overlay(scratch.path(), 42);
    fx.write("tick.thumbv7m.elf", &elf);
    fx.write("data.txt", b"data");
    inventory(&fx, 1, &["tick", "data.txt"], serde_json::json!({}));
    inventory(&fx, 2, &["tick", "data.txt"], serde_json::json!({}));
    let repo = Repo::open_dir(fx.path()).unwrap();
    let mut server = start(repo.clone(), Limits::default()).await;

    let expected = rota_pack::pack(&elf, rota_server::repo::PACKED_MAX)
        .unwrap()
        .blob("tick")
        .unwrap();
    let parsed = rota_blob::Blob::parse(&expected).unwrap();
    assert_eq!(parsed.relocs().count(), 2, "the fixture has relocations");
    let mut devices = [arm_device(1), arm_device(2)];
    for d in &mut devices {
        let report = check_in(&mut server, d).await;
        assert!(matches!(report.outcome, Ok(Outcome::Updated)), "{report:?}");
        assert_eq!(d.file("tick"), Some(expected.as_slice()), "device {}", d.id);
    }
    assert_eq!(repo.packs(), 1, "one ELF, packed once for both devices");

    // A v1 device is never packed for: `tick` is missing.
    let json = serde_json::json!({ "files": ["tick"], "secret": SECRET });
    fx.write("ESP-3.json", json.to_string().as_bytes());
    let mut v1 = nodemcu::Device::new(3, SECRET, "127.0.0.1", server.addr.port());
    let check = v1.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.bytes_received, 0);
    let report = server.report().await;
    assert!(
        matches!(&report.outcome, Err(SessionError::Repo(RepoError::MissingFile(f))) if f == "tick"),
        "{report:?}"
    );

    // A new ELF is packed again (the key is its content).
    fx.write("tick.thumbv7m.elf", &arm_overlay(scratch.path(), 7));
    let one = &mut devices[0];
    let report = check_in(&mut server, one).await;
    assert!(matches!(report.outcome, Ok(Outcome::Updated)), "{report:?}");
    assert_eq!(repo.packs(), 2);
    assert_ne!(one.file("tick"), Some(expected.as_slice()));
}

#[tokio::test]
async fn a_bad_elf_file_is_refused_naming_it_before_anything_is_sent() {
    let fx = Fixture::empty();
    let scratch = tempfile::tempdir().unwrap();
    fx.write("tick.thumbv7m.elf", b"\x7fELF but not really");
    inventory(&fx, 1, &["tick"], serde_json::json!({}));
    // An ARM ELF file named for the ESP8266.
    fx.write("tick.lx106.elf", &arm_overlay(scratch.path(), 1));
    let mut server = fx.start().await;

    let check = arm_device(1).check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.bytes_received, 0);
    let report = server.report().await;
    let Err(SessionError::Repo(RepoError::Elf { file, error })) = &report.outcome else {
        panic!("{report:?}");
    };
    assert_eq!(file, "tick.thumbv7m.elf");
    assert!(
        matches!(error, ElfError::Pack(rota_pack::PackError::NotElf(_))),
        "{error}"
    );

    let mut esp = device(1);
    esp.isa = Isa::Lx106 as u8;
    esp.abi = rota_abi::ABI_VERSION as u8;
    let check = esp.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.bytes_received, 0);
    let report = server.report().await;
    let Err(SessionError::Repo(RepoError::Elf { file, error })) = &report.outcome else {
        panic!("{report:?}");
    };
    assert_eq!(file, "tick.lx106.elf");
    assert!(
        matches!(
            error,
            ElfError::Isa {
                want: "lx106",
                found: "thumbv7m"
            }
        ),
        "{error}"
    );
}
