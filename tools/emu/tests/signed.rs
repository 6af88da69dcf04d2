//! Signed releases under QEMU (issue 11), on both networked machines: a device whose config holds a
//! release key (`rota-image --key`) is updated with a release `rota-sign` signed with it, and refuses
//! one signed by any other key before it commits anything, still booting its old version. The keys
//! and signatures are made by the real `rota-sign`, the release served by the real `rota-server`.
#[macro_use]
mod common;

use common::{app_versions, assert_no_fault};
use rota_emu::system::SECRET;
use rota_emu::system::{
    device_config, provision_ram_limit, release, storage_image_with, Boot, Device, Server, Signer,
};
use rota_emu::Machine;
use rota_wire::msg::{Reason, ReleaseError};

on_both_machines!(
    a_release_signed_by_another_key_is_refused_and_one_signed_by_the_devices_key_is_installed
);

/// A device of `m` holding release 1 and `signer`'s public key.
fn signed_device(m: Machine, signer: &Signer) -> Device {
    let mut config = device_config(SECRET);
    config.keys.push(signer.public_key()).expect("a key fits");
    Device::on(m, &storage_image_with(m, &config, &release(m, 1)))
}

fn a_release_signed_by_another_key_is_refused_and_one_signed_by_the_devices_key_is_installed(
    m: Machine,
) {
    let ours = Signer::new(m, 1);
    let theirs = Signer::new(m, 1);
    let device = signed_device(m, &ours);

    // Release 2, correctly made but signed by a key the device does not hold: refused at the
    // Release, before a byte of it is written; the device boots release 1.
    let server = Server::start_signed(&release(m, 2), SECRET, &theirs);
    let run = device.boot(&Boot::to(server.port));
    assert_no_fault(&run);
    let refusal = format!(
        "provision: session refused (reason {}, code {}); nothing committed",
        Reason::Release as u8,
        ReleaseError::Signature as u8
    );
    assert!(run.console.contains(&refusal), "{}", run.console);
    assert!(!run.console.contains("update committed"), "{}", run.console);
    assert_eq!(app_versions(&run), vec![1], "{}", run.console);
    let state = server.last_check_in().expect("check-in recorded");
    assert!(state.contains("signature does not verify"), "{state}");
    assert!(
        state.contains("\"signed\": true") || state.contains("\"signed\":true"),
        "{state}"
    );
    drop(server);

    // The same release signed by the device's own key: installed.
    let server = Server::start_signed(&release(m, 2), SECRET, &ours);
    let run = device.boot(&Boot::to(server.port));
    assert_no_fault(&run);
    assert!(
        run.console.contains("provision: update committed"),
        "{}",
        run.console
    );
    assert_eq!(app_versions(&run), vec![2], "{}", run.console);
    // The whole device's data RAM in provision with the Ed25519 verification on its stack
    // (docs/sizes.md).
    let peak = run.peak_ram(m, "provision").expect("provision ran");
    println!("{m:?}: a signed update: provision peaks at {peak} B of data RAM");
    // The verification's stack comes on top of the session and the network: the same floor holds.
    assert!(
        peak <= provision_ram_limit(m, 2),
        "a signed update's provision takes {peak} B of data RAM\n{}",
        run.console
    );
    for l in run.console.lines() {
        if l.contains("signature verified") || l.contains("session received") {
            println!("{m:?}: {l}");
        }
    }
    // And it stays: the next boot gets no update.
    let run = device.boot(&Boot::to(server.port));
    assert!(
        run.console.contains("provision: no update"),
        "{}",
        run.console
    );
    assert_eq!(app_versions(&run), vec![2]);
}
