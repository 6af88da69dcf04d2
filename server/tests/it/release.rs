//! Never send what cannot run, and signed releases (issue 11), against the real server over TCP:
//! every blob is checked for the ISA and ABI the device reports before anything is sent; a device
//! holding release keys is sent the signed release first, and one the server cannot vouch for (none,
//! not of these files, below the device's security version) is refused before anything is sent.

use rota_blob::{emit_blob, Isa};
use rota_devices::rota::{RotaDevice, V2Outcome};
use rota_release::ManifestBuilder;
use rota_server::fleet::Fleet;
use rota_server::session::{Outcome as ServerOutcome, SessionError};
use rota_wire::msg::ReleaseError;

use crate::common::{Fixture, Running};

const SECRET: &str = "release secret";
const ABI: u32 = rota_abi::ABI_VERSION;
const SEED: [u8; 32] = [3; 32];

/// A blob of `name` for `isa` and `abi`: a small image the device's loader accepts.
fn blob(isa: Isa, abi: u32, name: &str) -> Vec<u8> {
    let image: Vec<u8> = (0..64u8)
        .map(|i| i.wrapping_mul(7) ^ name.len() as u8)
        .collect();
    emit_blob(isa, abi, name, &image, 0, &[4, 8]).unwrap()
}

/// A repository for device 7: the three overlays and the app as Cortex-M3 blobs of this ABI, and a
/// data file (never checked as a blob).
fn fixture() -> Fixture {
    let fx = Fixture::empty();
    for name in ["init", "tick", "provision", "app"] {
        fx.write(name, &blob(Isa::Thumbv7m, ABI, name));
    }
    fx.write("notes.txt", b"not a blob");
    fx.inventory(
        "ESP-7.json",
        &["init", "tick", "provision", "app", "notes.txt"],
        SECRET,
    );
    fx
}

/// A Cortex-M3 device of this ABI.
fn device() -> RotaDevice {
    let mut d = RotaDevice::new(7, SECRET.as_bytes());
    d.isa = Isa::Thumbv7m as u8;
    d.abi = ABI as u8;
    d
}

/// Checks that the server refused the check-in naming `file` and `why`, sent nothing, and recorded
/// it; the device got no answer and committed nothing.
async fn refused(
    server: &mut Running,
    fx: &Fixture,
    check: &rota_devices::rota::V2CheckIn,
    file: &str,
    why: &str,
) {
    assert_eq!(check.outcome, V2Outcome::Closed, "{check:?}");
    assert_eq!(check.bytes_received, 0, "nothing sent");
    let report = server.report().await;
    let Err(SessionError::Release(text)) = &report.outcome else {
        panic!("{report:?}");
    };
    assert!(text.contains(file) && text.contains(why), "{text}");
    let record = Fleet::for_repo(fx.path())
        .unwrap()
        .load(7)
        .unwrap()
        .unwrap();
    assert!(
        record.outcome.contains("release refused"),
        "{}",
        record.outcome
    );
    assert!(record.outcome.contains(file), "{}", record.outcome);
}

#[tokio::test]
async fn blobs_for_another_isa_another_abi_or_corrupted_are_refused_before_anything_is_sent() {
    let fx = fixture();
    let mut server = fx.start().await;

    // The LX106 cannot run Cortex-M3 blobs.
    let mut lx106 = device();
    lx106.isa = Isa::Lx106 as u8;
    let check = lx106.check_in_tcp(server.addr).await.unwrap();
    refused(&mut server, &fx, &check, "`init`", "wrong isa").await;
    assert!(lx106.store.files.is_empty());

    // A core of the next ABI cannot run them either.
    let mut newer = device();
    newer.abi = ABI as u8 + 1;
    newer.store.boots = 100;
    let check = newer.check_in_tcp(server.addr).await.unwrap();
    refused(&mut server, &fx, &check, "`init`", "abi").await;

    // The right device is served, the data file included.
    let mut good = device();
    good.store.boots = 200;
    let check = good.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::Committed(1), "{check:?}");
    assert_eq!(
        server.report().await.outcome.ok(),
        Some(ServerOutcome::Updated)
    );
    assert_eq!(good.file("notes.txt"), Some(&b"not a blob"[..]));

    // A corrupted app (one byte of its image) is refused, and the device keeps what it has.
    let mut app = blob(Isa::Thumbv7m, ABI, "app");
    app[60] ^= 0x40;
    fx.write("app", &app);
    let before = good.store.files.clone();
    let check = good.check_in_tcp(server.addr).await.unwrap();
    refused(&mut server, &fx, &check, "`app`", "digest").await;
    assert_eq!(good.store.files, before);

    // So is an app that is not a blob at all, under the config's own app name.
    fx.write("main.bin", b"MZ not a blob");
    let json = serde_json::json!({
        "files": ["init", "tick", "provision", "main.bin"], "secret": SECRET,
        "config": {"server": "10.0.2.2", "app": "main.bin"}});
    fx.write("ESP-7.json", json.to_string().as_bytes());
    fx.write("app", &blob(Isa::Thumbv7m, ABI, "app"));
    let check = good.check_in_tcp(server.addr).await.unwrap();
    refused(&mut server, &fx, &check, "`main.bin`", "truncated").await;
}

/// Signs `fx`'s files for device 7 at security version `sv` with `seed`: `ESP-7.release`.
fn sign(fx: &Fixture, names: &[&str], sv: u32, seed: &[u8; 32]) {
    let mut b = ManifestBuilder::new(sv, Isa::Thumbv7m, ABI);
    for name in names {
        b.file(
            name.as_bytes(),
            &std::fs::read(fx.path().join(name)).unwrap(),
        );
    }
    let mut release = b.build().unwrap();
    release.extend_from_slice(&rota_release::sign(&release, seed).unwrap());
    fx.write("ESP-7.release", &release);
}

const FILES: [&str; 5] = ["init", "tick", "provision", "app", "notes.txt"];

#[tokio::test]
async fn a_device_with_keys_gets_the_signed_release_and_nothing_the_server_cannot_vouch_for() {
    let fx = fixture();
    let mut server = fx.start().await;
    let mut keyed = device();
    keyed.keys = vec![rota_release::public_key(&SEED).unwrap()];

    // No release beside the inventory: refused, nothing sent.
    let check = keyed.check_in_tcp(server.addr).await.unwrap();
    refused(&mut server, &fx, &check, "ESP-7.json", "no signed release").await;

    // Signed: sent first, verified by the device, committed at its security version.
    sign(&fx, &FILES, 2, &SEED);
    let check = keyed.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::Committed(1), "{check:?}");
    assert_eq!(
        server.report().await.outcome.ok(),
        Some(ServerOutcome::Updated)
    );
    assert_eq!(keyed.store.security_version, 2);
    let record = Fleet::for_repo(fx.path())
        .unwrap()
        .load(7)
        .unwrap()
        .unwrap();
    assert_eq!(record.signed, Some(true));

    // Up to date: one round trip, the release not sent again.
    let check = keyed.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::NoUpdate);
    assert_eq!(
        server.report().await.outcome.ok(),
        Some(ServerOutcome::NoUpdate)
    );

    // A file changed after signing: the release no longer names it.
    fx.write("notes.txt", b"edited after signing");
    let check = keyed.check_in_tcp(server.addr).await.unwrap();
    refused(
        &mut server,
        &fx,
        &check,
        "`notes.txt`",
        "sign the inventory again",
    )
    .await;

    // Signed again, but below the device's security version: refused (anti-rollback).
    sign(&fx, &FILES, 1, &SEED);
    let check = keyed.check_in_tcp(server.addr).await.unwrap();
    refused(
        &mut server,
        &fx,
        &check,
        "security version 1",
        "below the device's 2",
    )
    .await;

    // Signed by a key the device does not hold: the server cannot tell, the device refuses it at
    // the Release, before anything is written, and keeps its files.
    let before = keyed.store.files.clone();
    sign(&fx, &FILES, 3, &[4; 32]);
    let check = keyed.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(
        check.outcome,
        V2Outcome::Failed(rota_wire::Error::Release(ReleaseError::Signature)),
        "{check:?}"
    );
    let report = server.report().await;
    assert!(report.outcome.is_err(), "{report:?}");
    assert_eq!(keyed.store.files, before);
    assert!(keyed.store.staged.is_empty());
    let record = Fleet::for_repo(fx.path())
        .unwrap()
        .load(7)
        .unwrap()
        .unwrap();
    assert!(record.outcome.contains("signature"), "{}", record.outcome);

    // A device without keys is served as before, and the fleet says it is unsigned.
    let mut plain = device();
    plain.id = 7;
    plain.store.boots = 1000;
    sign(&fx, &FILES, 3, &SEED);
    let check = plain.check_in_tcp(server.addr).await.unwrap();
    assert_eq!(check.outcome, V2Outcome::Committed(1), "{check:?}");
    server.report().await;
    assert_eq!(
        Fleet::for_repo(fx.path())
            .unwrap()
            .load(7)
            .unwrap()
            .unwrap()
            .signed,
        Some(false)
    );
}
