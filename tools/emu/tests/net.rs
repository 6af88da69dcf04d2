//! The NIC drivers, rota-net and the bridge under QEMU: `tcp_copy` receives bytes from a server on
//! 127.0.0.1 through `-nic user,restrict=on,guestfwd=...`, on mps2-an385 (the LAN9118) and on the
//! LX106 on QEMU's xtfpga board (the OpenCores MAC, rota-ethoc); the storage file persists and a cut
//! run ends with the power-cut status. Needs `make tcp-copy` (build/mps2-an385/tcp_copy.elf,
//! build/esp8266/tcp_copy-xtfpga.elf).
use rota_emu::artifact;
use rota_emu::net::{copy, fnv1a, Forwarded, Mps2Run, POWER_CUT_EXIT};
use rota_emu::xtfpga::XtfpgaRun;
use std::path::Path;

fn tcp_copy() -> Mps2Run {
    Mps2Run::new(artifact("mps2-an385/tcp_copy.elf"))
}

/// The LX106's `tcp_copy` on the xtfpga machine, its MAC on the restricted user network.
fn lx106_tcp_copy() -> XtfpgaRun {
    XtfpgaRun::new(artifact("esp8266/tcp_copy-xtfpga.elf"))
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 + 7) as u8).collect()
}

#[test]
fn tcp_copy_receives_64_kib_intact() {
    let payload = data(64 * 1024);
    let (out, line, got) = copy(tcp_copy(), &payload);
    assert_eq!(out.status, Some(0), "{}", out.console);
    let line = line.expect("tcp_copy line");
    assert_eq!(line.bytes, payload.len() as u64);
    assert_eq!(line.fnv, fnv1a(&payload), "checksum of the received bytes");
    assert_eq!(got, b"OK", "the device acknowledges the end");
    assert!(line.net_heap > 0 && line.net_heap < 10 * 1024, "{line:?}");
    assert_eq!(line.heap_after, 0, "the network gives its heap back");
    println!("{line:?}");
}

#[test]
fn tcp_copy_works_with_dhcp() {
    let payload = data(10_000);
    let mut run = tcp_copy();
    run.args.push("ip=dhcp".into());
    let (out, line, _) = copy(run, &payload);
    assert_eq!(out.status, Some(0), "{}", out.console);
    assert_eq!(line.expect("tcp_copy line").fnv, fnv1a(&payload));
}

#[test]
fn storage_file_persists_and_a_cut_stops_half_way() {
    cut_half_way_then_complete(|file, cut| {
        let mut run = tcp_copy();
        run.storage = Some(file.to_path_buf());
        run.args.push("write".into());
        run.cut = cut;
        run
    });
}

/// With `write`, the copy goes through to the storage file: operations are 0 = erase sector 0, then
/// one 512-byte write each, and a cut at op 5 (2048..2560) stops after its first half; the next run
/// starts from the file (not from a fresh region) and completes the write. `run(file, cut)` is the
/// machine's `tcp_copy` run with that storage file and cut.
fn cut_half_way_then_complete<R: Forwarded>(run: impl Fn(&Path, Option<u32>) -> R) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("storage.bin");
    let payload = data(8 * 1024);
    let (out, line, _) = copy(run(&file, Some(5)), &payload);
    assert_eq!(out.status, Some(POWER_CUT_EXIT), "{}", out.console);
    assert!(line.is_none(), "the run ended at the cut");
    let image = std::fs::read(&file).unwrap();
    assert_eq!(image.len(), 512 * 1024, "the file holds the whole region");
    assert_eq!(
        &image[..2304],
        &payload[..2304],
        "ops 1..4 and half of op 5"
    );
    assert!(
        image[2304..4096].iter().all(|&b| b == 0xFF),
        "rest of the erased sector"
    );

    let (out, line, _) = copy(run(&file, None), &payload);
    assert_eq!(out.status, Some(0), "{}", out.console);
    assert_eq!(line.expect("tcp_copy line").fnv, fnv1a(&payload));
    let image = std::fs::read(&file).unwrap();
    assert_eq!(&image[..payload.len()], &payload[..]);
}

#[test]
fn lx106_tcp_copy_receives_64_kib_intact() {
    let payload = data(64 * 1024);
    let (out, line, got) = copy(lx106_tcp_copy(), &payload);
    assert_eq!(out.status, Some(0), "{}", out.console);
    let line = line.expect("tcp_copy line");
    assert_eq!(line.bytes, payload.len() as u64);
    assert_eq!(line.fnv, fnv1a(&payload), "checksum of the received bytes");
    assert_eq!(got, b"OK", "the device acknowledges the end");
    // The MAC's frames are in its packet RAM: the heap holds only rota-net's buffers.
    assert!(line.net_heap > 0 && line.net_heap < 10 * 1024, "{line:?}");
    assert_eq!(line.heap_after, 0, "the network gives its heap back");
    // Without the board's wake-up timer QEMU's main loop slept before reading the forward: 0.5 to
    // 1 s for these 64 KiB, against a few ms with it.
    assert!(line.us < 250_000, "QEMU's main loop slept: {line:?}");
    println!("{line:?}");
}

#[test]
fn lx106_tcp_copy_works_with_dhcp() {
    let payload = data(10_000);
    let mut run = lx106_tcp_copy();
    run.args.push("ip=dhcp".into());
    let (out, line, got) = copy(run, &payload);
    assert_eq!(out.status, Some(0), "{}", out.console);
    assert_eq!(line.expect("tcp_copy line").fnv, fnv1a(&payload));
    assert_eq!(got, b"OK");
}

#[test]
fn lx106_tcp_copy_writes_through_to_the_storage_file_and_a_cut_stops_half_way() {
    cut_half_way_then_complete(|file, cut| {
        let mut run = lx106_tcp_copy();
        run.storage = Some(file.to_path_buf());
        run.args.push("write".into());
        run.cut = cut;
        run
    });
}
