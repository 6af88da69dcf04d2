//! The resident core and the three overlays on both emulated ISAs (needs `make firmware images`).
use rota_emu::{blob, boot, storage, Machine, Run};
use std::time::Duration;

const CONFIG: &[u8] = b"server=10.0.2.100 port=8266";
const LIMIT: Duration = Duration::from_secs(30);

fn overlays(m: Machine) -> Vec<Vec<u8>> {
    ["init", "tick", "provision"]
        .iter()
        .map(|n| blob(m, n))
        .collect()
}

fn redigest(b: &mut [u8]) {
    let n = b.len() - 32;
    let d = rota_blob::sha256(&b[..n]);
    b[n..].copy_from_slice(&d);
}

fn assert_app_started_clean(run: &Run) {
    assert!(
        run.console.contains("app: started"),
        "app did not start:\n{}",
        run.console
    );
    assert_eq!(run.residue(), Some(0), "{}", run.console);
    assert_eq!(run.status, Some(0), "{}", run.console);
}

fn boots_three_overlays(m: Machine) {
    let blobs = overlays(m);
    let run = boot(m, &storage(7, CONFIG, &blobs), LIMIT);
    assert_app_started_clean(&run);
    assert!(
        run.console.contains("init: config 27 bytes, boot 7"),
        "{}",
        run.console
    );
    assert!(run.console.contains("tick: 5 ticks"), "{}", run.console);
    assert!(
        run.console
            .contains("provision: wrote and verified 1024 bytes"),
        "{}",
        run.console
    );
    let boot_line = run.phase("boot").expect("boot line");
    for (name, b) in ["init", "tick", "provision"].iter().zip(&blobs) {
        let base = run
            .placed_at(name)
            .unwrap_or_else(|| panic!("{name} not placed:\n{}", run.console));
        assert_ne!(base, 0, "{name} ran at its link address");
        let image = rota_blob::Blob::parse(b).unwrap().header.image_size;
        let line = run.phase(name).expect("phase line");
        assert_eq!(line.arena, u64::from(image));
        assert_eq!(line.used, boot_line.used, "{name} left heap behind");
        assert!(line.stack_peak > 0 && line.stack_peak < 8192);
    }
    assert!(
        run.phase("provision").unwrap().peak >= 2048,
        "provision's two 1 KB buffers are counted"
    );
    assert_eq!(run.phase("app").unwrap().used, boot_line.used);
}

fn refuses_corrupted_blob(m: Machine) {
    let mut blobs = overlays(m);
    let last = blobs[0].len() - 40;
    blobs[0][last] ^= 0x40; // a byte of init's image
    let run = boot(m, &storage(1, CONFIG, &blobs), LIMIT);
    assert!(
        run.console
            .contains("overlay init refused: digest mismatch"),
        "{}",
        run.console
    );
    assert!(run.placed_at("init").is_none() && run.placed_at("tick").is_none());
    assert_app_started_clean(&run);
}

fn skips_corrupt_slot(m: Machine) {
    let mut blobs = vec![b"garbage that is not a blob header, 48 bytes long".to_vec()];
    blobs.extend(overlays(m));
    let run = boot(m, &storage(1, CONFIG, &blobs), LIMIT);
    assert!(
        run.console.contains("slot 8192: skipped, bad magic"),
        "{}",
        run.console
    );
    assert!(run.placed_at("provision").is_some(), "{}", run.console);
    assert_app_started_clean(&run);
}

fn refuses_abi_mismatch(m: Machine) {
    let mut blobs = overlays(m);
    blobs[1][16] = blobs[1][16].wrapping_add(1); // tick's ABI version
    redigest(&mut blobs[1]);
    let run = boot(m, &storage(1, CONFIG, &blobs), LIMIT);
    assert!(run.placed_at("init").is_some(), "{}", run.console);
    assert!(
        run.console
            .contains("overlay tick refused: abi version mismatch"),
        "{}",
        run.console
    );
    assert!(run.placed_at("tick").is_none());
    assert_app_started_clean(&run);
}

fn refuses_other_isa(m: Machine, other: Machine) {
    let run = boot(m, &storage(1, CONFIG, &overlays(other)), LIMIT);
    assert!(
        run.console.contains("overlay init refused: wrong isa"),
        "{}",
        run.console
    );
    assert_app_started_clean(&run);
}

/// The reset service: `provision` resets when the config says `reset=1`. QEMU reboots both machines
/// (mps2 restores the storage image on reset, so it reboots until the time limit; so does the sim).
fn reset_service_reboots(m: Machine, banner: &str) {
    let run = boot(
        m,
        &storage(1, b"server=10.0.2.100 reset=1", &overlays(m)),
        Duration::from_secs(3),
    );
    assert!(
        run.console.matches(banner).count() >= 2,
        "no second boot:\n{}",
        run.console
    );
    assert!(
        run.console.contains("provision: reset requested"),
        "{}",
        run.console
    );
    assert!(
        !run.console.contains("app: started"),
        "the app ran although the device reset"
    );
    let run = boot(
        m,
        &storage(1, b"server=10.0.2.100 reset=0", &overlays(m)),
        LIMIT,
    );
    assert!(
        !run.console.contains("reset requested"),
        "reset=0 must not reset:\n{}",
        run.console
    );
    assert_app_started_clean(&run);
}

#[test]
fn mps2_reset_service_reboots() {
    reset_service_reboots(Machine::Mps2An385, "rota core on mps2-an385");
}

#[test]
fn esp8266_reset_service_reboots() {
    reset_service_reboots(Machine::Esp8266Sim, "rota core on esp8266");
}

#[test]
fn mps2_boots_three_overlays_away_from_link_address_with_residue_0() {
    boots_three_overlays(Machine::Mps2An385);
}
#[test]
fn esp8266_boots_three_overlays_away_from_link_address_with_residue_0() {
    boots_three_overlays(Machine::Esp8266Sim);
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
fn mps2_skips_corrupt_slot_without_hiding_the_next() {
    skips_corrupt_slot(Machine::Mps2An385);
}
#[test]
fn esp8266_skips_corrupt_slot_without_hiding_the_next() {
    skips_corrupt_slot(Machine::Esp8266Sim);
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
