//! The resident core, the overlays and the application blob on both emulated ISAs, from the file
//! store (needs `make firmware images`). The mps2 runs skip the update with a key press; the ESP8266
//! machines run without a network (the sim has none, the xtfpga board is run without its NIC), so
//! `init` starts the application itself. The xtfpga machine's console is its 16550 UART and its
//! storage a host file that outlives each run; the whole networked system on it is in system.rs.
use rota_emu::system::{release, storage_image, Boot, Device, SECRET};
use rota_emu::xtfpga::XtfpgaRun;
use rota_emu::{boot, Machine, Run};
use rota_image::FileSpec;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// Boots `m` once from a store holding `files`.
fn run(m: Machine, files: &[FileSpec]) -> Run {
    let image = storage_image(m, files, SECRET);
    match m {
        Machine::Mps2An385 => Device::new(&image).boot(&Boot {
            server: None,
            keys: b"x".to_vec(),
            ..Boot::to(0)
        }),
        Machine::Esp8266Sim | Machine::Esp8266Xtfpga => boot(m, &image, LIMIT),
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
    // mps2's 1 KB arena takes the app (it has relocations); the overlays, larger and free of
    // relocations, run in place from the store. The LX106 runs init, tick and the app in its arena.
    let ran: &[&str] = if m == Machine::Mps2An385 {
        &["app"]
    } else {
        &["init", "app"]
    };
    if m == Machine::Mps2An385 {
        let storage = m.storage_addr();
        for name in ["init", "tick"] {
            let at = run
                .placed_at(name)
                .unwrap_or_else(|| panic!("{name} placed"));
            assert!(
                (storage..storage + 0x10_0000).contains(&at),
                "{name} ran in place: {at:#x}\n{}",
                run.console
            );
            assert_eq!(run.phase(name).expect("phase line").arena, 0);
        }
    }
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

#[test]
fn xtfpga_boots_from_the_store_away_from_link_address_with_residue_0() {
    boots_from_the_store_away_from_link_address(Machine::Esp8266Xtfpga);
}
#[test]
fn xtfpga_refuses_corrupted_blob_and_starts_app() {
    refuses_corrupted_blob(Machine::Esp8266Xtfpga);
}
#[test]
fn xtfpga_refuses_abi_mismatch() {
    refuses_abi_mismatch(Machine::Esp8266Xtfpga);
}
#[test]
fn xtfpga_refuses_thumb_blobs() {
    refuses_other_isa(Machine::Esp8266Xtfpga, Machine::Mps2An385);
}

/// A file in `dir` holding `bytes`.
fn file_with(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write file");
    path
}

#[test]
fn xtfpga_heap_report_comes_over_the_uart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = file_with(
        &dir,
        "image.bin",
        &storage_image(
            Machine::Esp8266Xtfpga,
            &release(Machine::Esp8266Xtfpga, 1),
            SECRET,
        ),
    );
    let uart = dir.path().join("uart.txt");
    let mut qemu = XtfpgaRun::new(Machine::Esp8266Xtfpga.firmware());
    qemu.image = Some(image);
    qemu.serial = Some(uart.clone());
    qemu.no_nic = true;
    let stdio = qemu.run(LIMIT);
    assert_eq!(stdio.status, Some(0), "{}", stdio.console);
    let console = std::fs::read_to_string(&uart).expect("the UART's output");
    let run = Run {
        console,
        status: stdio.status,
        log: String::new(),
    };
    assert!(
        run.console.starts_with("rota core on esp8266 (xtfpga)\n"),
        "{}",
        run.console
    );
    assert!(run.ram().is_some(), "{}", run.console);
    let phases: Vec<String> = run.heap_lines().into_iter().map(|l| l.phase).collect();
    assert_eq!(phases, ["boot", "init", "app"], "{}", run.console);
    assert!(run
        .console
        .contains("init: no network interface; starting app\n"));
    assert_app_started_clean(&run);
    // Nothing of it went through semihosting (QEMU's stdio here).
    assert!(
        !stdio.console.contains("heap ") && !stdio.console.contains("app:"),
        "{}",
        stdio.console
    );
}

#[test]
fn xtfpga_storage_file_persists_across_runs() {
    let image = storage_image(
        Machine::Esp8266Xtfpga,
        &release(Machine::Esp8266Xtfpga, 1),
        SECRET,
    );
    let device = Device::on(Machine::Esp8266Xtfpga, &image);
    let no_server = Boot {
        server: None,
        ..Boot::to(0)
    };
    let first = device.boot(&no_server);
    assert!(first.console.contains("\nboot 1\n"), "{}", first.console);
    assert!(first.console.contains("app: version 1 running, boot 1"));
    assert_app_started_clean(&first);
    let after_first = device.image();
    assert_eq!(
        after_first.len(),
        image.len(),
        "the file keeps the region's size"
    );
    assert_ne!(
        after_first, image,
        "the boot number and report reached the file"
    );

    let second = device.boot(&no_server);
    assert!(second.console.contains("\nboot 2\n"), "{}", second.console);
    assert!(second.console.contains("app: version 1 running, boot 2"));
    // The report the first run stored, as the second run's app reads it.
    assert!(
        second.console.contains("app: last boot init heap peak="),
        "{}",
        second.console
    );
    assert_app_started_clean(&second);
}

#[test]
fn xtfpga_creates_a_missing_storage_file_from_the_loaded_image() {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = storage_image(
        Machine::Esp8266Xtfpga,
        &release(Machine::Esp8266Xtfpga, 1),
        SECRET,
    );
    let loaded = file_with(&dir, "image.bin", &image);
    let storage = dir.path().join("storage.bin");
    let mut qemu = XtfpgaRun::new(Machine::Esp8266Xtfpga.firmware());
    qemu.image = Some(loaded);
    qemu.storage = Some(storage.clone());
    let first = qemu.run(LIMIT);
    assert!(first.console.contains("\nboot 1\n"), "{}", first.console);
    assert_app_started_clean(&first);
    assert_eq!(
        std::fs::metadata(&storage).expect("created").len(),
        image.len() as u64
    );
    // Without the loader image the file alone holds the store.
    qemu.image = None;
    let second = qemu.run(LIMIT);
    assert!(second.console.contains("\nboot 2\n"), "{}", second.console);
    assert_app_started_clean(&second);
}

#[test]
fn xtfpga_refuses_a_power_cut_it_cannot_inject() {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = storage_image(
        Machine::Esp8266Xtfpga,
        &release(Machine::Esp8266Xtfpga, 1),
        SECRET,
    );
    let storage = file_with(&dir, "storage.bin", &image);
    let mut qemu = XtfpgaRun::new(Machine::Esp8266Xtfpga.firmware());
    qemu.storage = Some(storage.clone());
    qemu.args = vec!["cut=3".into()];
    let run = qemu.run(LIMIT);
    assert_eq!(run.status, Some(2), "{}", run.console);
    assert!(
        run.console
            .contains("storage: cut= needs a build with power-cut injection"),
        "{}",
        run.console
    );
    assert!(!run.console.contains("boot 1"), "{}", run.console);
    assert_eq!(
        std::fs::read(&storage).expect("storage"),
        image,
        "untouched"
    );
}

#[test]
fn xtfpga_without_a_usable_storage_file_runs_from_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = storage_image(
        Machine::Esp8266Xtfpga,
        &release(Machine::Esp8266Xtfpga, 1),
        SECRET,
    );
    let mut qemu = XtfpgaRun::new(Machine::Esp8266Xtfpga.firmware());
    qemu.image = Some(file_with(&dir, "image.bin", &image));
    qemu.storage = Some(dir.path().join("no/such/dir/storage.bin"));
    let run = qemu.run(LIMIT);
    assert!(
        run.console
            .contains("storage: cannot open the storage file; using memory"),
        "{}",
        run.console
    );
    assert_app_started_clean(&run);
}

/// The address of symbol `name` in the ELF at `path`.
fn symbol(path: &std::path::Path, name: &str) -> u64 {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(path).expect("read firmware");
    let elf = object::File::parse(&*data).expect("parse firmware");
    let found = elf.symbols().find(|s| s.name() == Ok(name));
    found
        .unwrap_or_else(|| panic!("{name} not in {}", path.display()))
        .address()
}

#[test]
fn storage_images_are_made_for_the_mapping_and_arena_the_firmware_has() {
    // What a storage image assumes about where blobs run in place relocated must be what the board
    // links: its flash window and its arena.
    for m in [Machine::Esp8266Xtfpga, Machine::Esp8266Sim] {
        let elf = m.firmware();
        let p = m.in_place().expect("the LX106 relocates in place");
        assert_eq!(
            symbol(&elf, "_flash_start"),
            u64::from(p.mapped_base),
            "{m:?}"
        );
        let arena = symbol(&elf, "_arena_end") - symbol(&elf, "_arena_start");
        assert_eq!(arena, u64::from(p.arena), "{m:?}");
    }
    assert_eq!(Machine::Mps2An385.in_place(), None);
}
