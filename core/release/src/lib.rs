//! Signed rota releases (`docs/signing.md`).
//!
//! - [`Manifest`]: the release manifest (`RRM1`: security version, ISA, ABI, and each file's name,
//!   size, version and SHA-256), a checked view that never panics on any input; [`encode`] and, with
//!   `std`, [`ManifestBuilder`] write one;
//! - [`set_digest`]: one SHA-256 over a file set, which the device computes over its installed
//!   files and the server over a release;
//! - [`file_version`]: the version a file is given, from its SHA-256;
//! - [`verify`]: Ed25519 (RFC 8032) over the manifest's bytes, under one of a device's keys;
//!   [`split_release`] splits a release file (`manifest || signature`); with `sign`, [`sign`] and
//!   [`public_key`];
//! - [`check_blob`], [`check_release`]: every blob of a release checked with the device's own
//!   verifier against the device's ISA and ABI, before anything is signed or sent.
//!
//! `no_std`, no allocation, no unsafe code; `std` adds the builder, `sign` signing.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

mod check;
mod manifest;
mod sig;

pub use check::{blob_names, check_blob, check_release, BlobRefusal, ReleaseRefusal};
#[cfg(feature = "std")]
pub use manifest::ManifestBuilder;
pub use manifest::{
    encode, file_version, set_digest, Entries, Entry, Manifest, ManifestError, ENTRY_FIXED,
    ENTRY_MAX, HEADER_SIZE, MAGIC, MANIFEST_MAX, MAX_ENTRIES, SET_DOMAIN,
};
pub use rota_blob::Isa;
pub use sig::{
    from_hex, split_release, verify, SignatureError, PUBLIC_KEY_SIZE, RELEASE_MAX, SEED_SIZE,
    SIGNATURE_SIZE,
};
#[cfg(feature = "sign")]
pub use sig::{public_key, sign};
