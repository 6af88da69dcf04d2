//! Signed releases, device side (issue 11): a device holding release keys commits only what a
//! manifest signed by one of them names, at a security version not below its own; everything else is
//! refused before it is committed, and the old files stay.

mod common;

use common::*;
use rota_release::{ManifestBuilder, MANIFEST_MAX};
use rota_wire::msg::{FileInfo, Hello, ReleaseError};
use rota_wire::server::{Outgoing, Step};
use rota_wire::{sha256, Device, Error, Link, Poll};

const SEED: [u8; 32] = [7; 32];
const OTHER_SEED: [u8; 32] = [9; 32];
const ISA: u8 = rota_release::Isa::Thumbv7m as u8;
const ABI: u8 = 5;

fn key(seed: &[u8; 32]) -> [u8; 32] {
    rota_release::public_key(seed).unwrap()
}

/// The repository the tests release: two files.
fn files() -> Repo {
    repo(&[("app", pattern(3000, 1)), ("data.bin", pattern(1500, 2))])
}

/// A manifest of `repo` at security version `sv` for this ISA and ABI, signed with `seed`: the
/// manifest and the signature, leaked so the plan can borrow them.
fn release(repo: &Repo, sv: u32, seed: &[u8; 32]) -> (&'static [u8], &'static [u8; 64]) {
    let mut b = ManifestBuilder::new(sv, rota_release::Isa::Thumbv7m, u32::from(ABI));
    for (name, data) in repo {
        b.file(name, data);
    }
    let manifest = b.build().unwrap();
    assert!(manifest.len() <= MANIFEST_MAX);
    let signature = rota_release::sign(&manifest, seed).unwrap();
    (
        Box::leak(manifest.into_boxed_slice()),
        Box::leak(Box::new(signature)),
    )
}

/// `plan` with `release` first. The test planner's versions are rota-release's, as the server's.
fn signed_plan<'r>(
    repo: &'r Repo,
    hello: &Hello<'_>,
    files: &[FileInfo<'_>],
    release: Option<(&'r [u8], &'r [u8; 64])>,
) -> Vec<Step<'r>> {
    let mut steps: Vec<Step<'r>> = plan(repo, hello, files)
        .into_iter()
        .map(|s| match s {
            Step::Send(o) => Step::Send(Outgoing {
                version: rota_release::file_version(&o.digest),
                ..o
            }),
            other => other,
        })
        .collect();
    if let Some((m, s)) = release {
        steps.insert(0, Step::Release(m, s));
    }
    steps
}

/// A device with `keys` (32 bytes each, back to back) at security version `sv`.
fn device(keys: &'static [u8], sv: u32) -> Device<'static> {
    Device {
        secret: SECRET,
        link: Link::Tcp,
        keys,
        app: b"app",
        trials: 3,
        isa: ISA,
        abi: ABI,
        security_version: sv,
    }
}

fn keys(seeds: &[&[u8; 32]]) -> &'static [u8] {
    Box::leak(
        seeds
            .iter()
            .flat_map(|s| key(s))
            .collect::<Vec<u8>>()
            .into_boxed_slice(),
    )
}

/// One check-in of `store` as `device` against `repo`, the plan led by `release`.
fn run(
    store: &mut MemStore,
    repo: &Repo,
    device: Device<'static>,
    release: Option<(&'static [u8], &'static [u8; 64])>,
) -> Run {
    check_in_as(
        store,
        repo,
        &mut pass(),
        |r, h, f| signed_plan(r, h, f, release),
        device,
        SECRET,
    )
}

/// A store holding the first release, committed by a signed session.
fn installed(keys: &'static [u8]) -> MemStore {
    let mut store = MemStore::default();
    let repo = files();
    let r = run(
        &mut store,
        &repo,
        device(keys, 0),
        Some(release(&repo, 1, &SEED)),
    );
    assert_eq!(r.device, Ok(Poll::Committed(1)), "{r:?}");
    assert_eq!(store.security_version, 1);
    store
}

fn refused(r: &Run, why: ReleaseError) {
    assert_eq!(r.device, Err(Error::Release(why)), "{r:?}");
    assert!(
        matches!(r.server, Some(Err(Error::Refused { .. }))),
        "the server is told: {r:?}"
    );
}

#[test]
fn a_release_signed_by_a_device_key_is_committed_with_its_security_version() {
    let store = installed(keys(&[&SEED]));
    for (name, data) in files() {
        assert_eq!(store.files[&name].0, data);
        assert_eq!(
            store.files[&name].1,
            rota_release::file_version(&sha256(&data))
        );
    }
    // Either of two keys (a rotation): the second one signs.
    let both = keys(&[&OTHER_SEED, &SEED]);
    let mut store = MemStore::default();
    let repo = files();
    let r = run(
        &mut store,
        &repo,
        device(both, 0),
        Some(release(&repo, 4, &SEED)),
    );
    assert_eq!(r.device, Ok(Poll::Committed(1)), "{r:?}");
    assert_eq!(store.last_commit.unwrap().security_version, 4);
}

#[test]
fn a_release_signed_by_another_key_is_refused_before_anything_is_written() {
    let keys = keys(&[&SEED]);
    let mut store = installed(keys);
    let before = store.clone();
    let mut repo = files();
    repo.insert(b"app".to_vec(), pattern(3000, 9));
    let r = run(
        &mut store,
        &repo,
        device(keys, 1),
        Some(release(&repo, 2, &OTHER_SEED)),
    );
    refused(&r, ReleaseError::Signature);
    assert_eq!(r.data_bytes, 0, "refused at the Release, before any file");
    assert_eq!(store.files, before.files, "the old version stays");
    assert!(store.staged.is_empty(), "nothing staged either");
}

#[test]
fn a_file_whose_digest_differs_from_the_signed_manifest_is_refused() {
    let keys = keys(&[&SEED]);
    let mut store = installed(keys);
    let before = store.files.clone();
    // The manifest is signed over one app, the server sends another.
    let mut signed = files();
    signed.insert(b"app".to_vec(), pattern(3000, 5));
    let mut served = files();
    served.insert(b"app".to_vec(), pattern(3000, 6));
    let r = run(
        &mut store,
        &served,
        device(keys, 1),
        Some(release(&signed, 2, &SEED)),
    );
    refused(&r, ReleaseError::NotInManifest);
    assert_eq!(store.files, before);
    assert!(store.staged.is_empty(), "the Begin itself was refused");
}

#[test]
fn a_valid_signature_over_a_lower_security_version_is_refused() {
    let keys = keys(&[&SEED]);
    let mut store = installed(keys);
    let before = store.files.clone();
    let mut repo = files();
    repo.insert(b"app".to_vec(), pattern(3000, 3));
    // The device is at 1 (from the first release); the server offers a correctly signed 0.
    let r = run(
        &mut store,
        &repo,
        device(keys, 1),
        Some(release(&repo, 0, &SEED)),
    );
    refused(&r, ReleaseError::Rollback);
    assert_eq!(store.files, before);
    // Had the session itself missed it, the store would refuse the commit too.
    assert_eq!(store.security_version, 1);
}

#[test]
fn a_plan_with_the_signature_stripped_is_refused_by_a_device_that_holds_a_key() {
    let keys = keys(&[&SEED]);
    let mut store = installed(keys);
    let before = store.files.clone();
    let mut repo = files();
    repo.insert(b"app".to_vec(), pattern(3000, 4));
    let r = run(&mut store, &repo, device(keys, 1), None);
    refused(&r, ReleaseError::Unsigned);
    assert_eq!(store.files, before);
    // Deleting a file without a release is refused the same way.
    let mut fewer = files();
    fewer.remove(b"data.bin".as_slice());
    let r = run(&mut store, &fewer, device(keys, 1), None);
    refused(&r, ReleaseError::Unsigned);
    assert_eq!(store.files, before);
}

#[test]
fn a_release_for_another_isa_or_abi_is_refused() {
    let keys = keys(&[&SEED]);
    let repo = files();
    for (isa, abi, why) in [
        (rota_release::Isa::Lx106, u32::from(ABI), ReleaseError::Isa),
        (
            rota_release::Isa::Thumbv7m,
            u32::from(ABI) + 1,
            ReleaseError::Abi,
        ),
    ] {
        let mut b = ManifestBuilder::new(1, isa, abi);
        for (name, data) in &repo {
            b.file(name, data);
        }
        let manifest: &'static [u8] = Box::leak(b.build().unwrap().into_boxed_slice());
        let signature: &'static [u8; 64] =
            Box::leak(Box::new(rota_release::sign(manifest, &SEED).unwrap()));
        let mut store = MemStore::default();
        let r = run(
            &mut store,
            &repo,
            device(keys, 0),
            Some((manifest, signature)),
        );
        refused(&r, why);
        assert!(store.files.is_empty());
    }
}

#[test]
fn a_commit_missing_a_manifest_file_is_refused() {
    let keys = keys(&[&SEED]);
    let mut store = MemStore::default();
    // The manifest names three files, the server sends two.
    let mut signed = files();
    signed.insert(b"extra".to_vec(), pattern(100, 8));
    let r = run(
        &mut store,
        &files(),
        device(keys, 0),
        Some(release(&signed, 1, &SEED)),
    );
    refused(&r, ReleaseError::Incomplete);
    assert!(store.files.is_empty(), "nothing committed");
}

#[test]
fn every_single_byte_change_of_the_release_frame_is_refused() {
    let keys = keys(&[&SEED]);
    let repo = files();
    let (manifest, signature) = release(&repo, 1, &SEED);
    // Mutate the manifest or the signature (the frame's tag is recomputed by the planner's
    // session, so only the signature can catch it).
    let total = manifest.len() + 64;
    for i in (0..total).step_by(7) {
        let mut m = manifest.to_vec();
        let mut s = *signature;
        if i < m.len() {
            m[i] ^= 0x01;
        } else {
            s[i - m.len()] ^= 0x01;
        }
        let m: &'static [u8] = Box::leak(m.into_boxed_slice());
        let s: &'static [u8; 64] = Box::leak(Box::new(s));
        let mut store = MemStore::default();
        let r = run(&mut store, &repo, device(keys, 0), Some((m, s)));
        assert!(
            matches!(
                r.device,
                Err(Error::Release(
                    ReleaseError::Signature | ReleaseError::Manifest
                ))
            ),
            "byte {i}: {r:?}"
        );
        assert!(store.files.is_empty(), "byte {i}");
    }
}

#[test]
fn a_device_without_keys_works_as_before() {
    let mut store = MemStore::default();
    let repo = files();
    let r = run(&mut store, &repo, device(&[], 0), None);
    assert_eq!(r.device, Ok(Poll::Committed(1)), "{r:?}");
    assert_eq!(store.security_version, 0);
}
