//! The resident core, the overlays and the application blob on both emulated ISAs, from the file
//! store (needs `make firmware images`). The mps2 runs skip the update with a key press; the ESP8266
//! has no network, so `init` starts the application itself.
use rota_emu::system::{release, storage_image, Boot, Device, SECRET};
use rota_emu::{boot, Machine, Run};
use rota_image::FileSpec;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// Boots `m` once from a store holding `files`.
fn run(m: Machine, files: &[FileSpec]) -> Run {
    let image = storage_image(files, SECRET);
    match m {
        Machine::Mps2An385 => Device::new(&image).boot(&Boot {
            server: None,
            keys: b"x".to_vec(),
            ..Boot::to(0)
        }),
        Machine::Esp8266Sim => boot(m, &image, LIMIT),
    }
}

fn blob_mut<'a>(files: &'a mut [FileSpec], name: &str) -> &'a mut Vec<u8> {
    &mut files
        .iter_mut()
        .find(|f| f.name == name)
        .expect("file")
        .data
}

fn redigest(b: &mut [u8]) {
    let n = b.len() - 32;
    let d = rota_blob::sha256(&b[..n]);
    b[n..].copy_from_slice(&d);
}

fn assert_app_started_clean(run: &Run) {
    assert!(
        run.console.contains("app: version 1 running"),
        "app did not start:\n{}",
        run.console
    );
    assert_eq!(run.residue(), Some(0), "{}", run.console);
    assert_eq!(run.status, Some(0), "{}", run.console);
}

fn boots_from_the_store_away_from_link_address(m: Machine) {
    let files = release(m, 1);
    let run = run(m, &files);
    assert_app_started_clean(&run);
    let boot_line = run.phase("boot").expect("boot line");
    let ran: &[&str] = match m {
        Machine::Mps2An385 => &["init", "tick", "app"],
        Machine::Esp8266Sim => &["init", "app"],
    };
    for name in ran {
        let base = run
            .placed_at(name)
            .unwrap_or_else(|| panic!("{name} not placed:\n{}", run.console));
        assert_ne!(base, 0, "{name} ran at its link address");
        let blob = &files.iter().find(|f| &f.name == name).unwrap().data;
        let image = rota_blob::Blob::parse(blob).unwrap().header.image_size;
        let line = run.phase(name).expect("phase line");
        assert_eq!(line.arena, u64::from(image), "{name} ran from the arena");
        assert!(line.stack_peak > 0 && line.stack_peak < 8192);
    }
    assert_eq!(run.phase("app").unwrap().used, boot_line.used);
}

fn refuses_corrupted_blob(m: Machine) {
    let mut files = release(m, 1);
    let init = blob_mut(&mut files, "init");
    let at = init.len() - 40;
    init[at] ^= 0x40; // a byte of init's image: the blob's own digest no longer matches
    let run = run(m, &files);
    assert!(
        run.console
            .contains("overlay init refused: digest mismatch"),
        "{}",
        run.console
    );
    assert!(run.placed_at("init").is_none() && run.placed_at("tick").is_none());
    assert_app_started_clean(&run);
}

fn refuses_abi_mismatch(m: Machine) {
    let mut files = release(m, 1);
    let init = blob_mut(&mut files, "init");
    init[16] = init[16].wrapping_add(1); // the ABI version
    redigest(init);
    let run = run(m, &files);
    assert!(
        run.console
            .contains("overlay init refused: abi version mismatch"),
        "{}",
        run.console
    );
    assert_app_started_clean(&run);
}

fn refuses_other_isa(m: Machine, other: Machine) {
    let run = run(m, &release(other, 1));
    assert!(
        run.console.contains("overlay init refused: wrong isa"),
        "{}",
        run.console
    );
    assert!(
        run.console.contains("app: wrong isa; nothing to run"),
        "{}",
        run.console
    );
    assert_eq!(run.residue(), Some(0));
}

#[test]
fn mps2_boots_from_the_store_away_from_link_address_with_residue_0() {
    boots_from_the_store_away_from_link_address(Machine::Mps2An385);
}
#[test]
fn esp8266_boots_from_the_store_away_from_link_address_with_residue_0() {
    boots_from_the_store_away_from_link_address(Machine::Esp8266Sim);
}
#[test]
fn mps2_refuses_corrupted_blob_and_starts_app() {
    refuses_corrupted_blob(Machine::Mps2An385);
}
#[test]
fn esp8266_refuses_corrupted_blob_and_starts_app() {
    refuses_corrupted_blob(Machine::Esp8266Sim);
}
#[test]
fn mps2_refuses_abi_mismatch() {
    refuses_abi_mismatch(Machine::Mps2An385);
}
#[test]
fn esp8266_refuses_abi_mismatch() {
    refuses_abi_mismatch(Machine::Esp8266Sim);
}
#[test]
fn mps2_refuses_lx106_blobs() {
    refuses_other_isa(Machine::Mps2An385, Machine::Esp8266Sim);
}
#[test]
fn esp8266_refuses_thumb_blobs() {
    refuses_other_isa(Machine::Esp8266Sim, Machine::Mps2An385);
}
