//! Ed25519 (RFC 8032, pure: no pre-hash, no context) over the whole manifest, with
//! `ed25519-compact` (built for size: `docs/signing.md` compares the candidates). Verification is
//! what a device needs; signing (feature `sign`) is the host's.

use crate::manifest::{Manifest, ManifestError};

/// Bytes of a public key.
pub const PUBLIC_KEY_SIZE: usize = 32;
/// Bytes of a signature.
pub const SIGNATURE_SIZE: usize = 64;
/// Bytes of a secret key as rota keeps it: the RFC 8032 seed.
pub const SEED_SIZE: usize = 32;
/// The longest release file: the longest manifest and its signature.
pub const RELEASE_MAX: usize = crate::manifest::MANIFEST_MAX + SIGNATURE_SIZE;

/// Why a signature was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// No public key to check it with.
    NoKeys,
    /// Not one of the keys is a usable Ed25519 public key (not a point of the curve, or one of
    /// small order): the first such key's index.
    BadKey {
        /// Index in the keys given.
        index: usize,
    },
    /// The signature does not verify under any usable key (malformed, another key's, or over other
    /// bytes).
    BadSignature,
}

impl SignatureError {
    /// A short description for consoles without `core::fmt`.
    pub fn describe(&self) -> &'static str {
        match self {
            SignatureError::NoKeys => "no public key",
            SignatureError::BadKey { .. } => "bad public key",
            SignatureError::BadSignature => "bad signature",
        }
    }
}

impl core::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SignatureError::BadKey { index } => {
                write!(f, "public key {index} is not a usable Ed25519 key")
            }
            other => f.write_str(other.describe()),
        }
    }
}

/// Verifies `signature` over `manifest` with each of `keys` in turn (a device holds one or two, so
/// that a key can be rotated); returns the index of the first key it verifies under. If none:
/// [`SignatureError::BadSignature`] when at least one key was usable, else
/// [`SignatureError::BadKey`] naming the first key (or [`SignatureError::NoKeys`]).
///
/// The checks are `ed25519-compact`'s: `S` must be canonical (below the group order), `A` and `R`
/// must decode and `A` must not have small order, and `[S]B - [k]A - R` must have small order
/// (RFC 8032's equation; a signature our signer makes passes it exactly).
pub fn verify(
    manifest: &[u8],
    signature: &[u8; SIGNATURE_SIZE],
    keys: &[[u8; PUBLIC_KEY_SIZE]],
) -> Result<usize, SignatureError> {
    use ed25519_compact::Error;
    let mut first_bad = None;
    let mut refused_as_signature = false;
    for (index, key) in keys.iter().enumerate() {
        match verify_one(manifest, signature, key) {
            Ok(()) => return Ok(index),
            Err(Error::InvalidPublicKey | Error::WeakPublicKey) => {
                first_bad.get_or_insert(index);
            }
            Err(_) => refused_as_signature = true,
        }
    }
    match first_bad {
        _ if refused_as_signature => Err(SignatureError::BadSignature),
        Some(index) => Err(SignatureError::BadKey { index }),
        None => Err(SignatureError::NoKeys),
    }
}

/// One key's verdict. Not inlined: inlined into the loop over the keys, LLVM gave the caller's
/// frame the verification's temporaries as well (about 600 B more stack on both ISAs, measured).
#[inline(never)]
fn verify_one(
    manifest: &[u8],
    signature: &[u8; SIGNATURE_SIZE],
    key: &[u8; PUBLIC_KEY_SIZE],
) -> Result<(), ed25519_compact::Error> {
    let signature = ed25519_compact::Signature::new(*signature);
    ed25519_compact::PublicKey::new(*key).verify(manifest, &signature)
}

/// `N` bytes written as `2 * N` hex digits of either case (white space around them allowed), as key
/// files and inventories hold keys; `None` for anything else.
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    // Digits only: `from_str_radix` alone would also take a leading `+`.
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Splits a release file (`manifest || signature`, the signature its last 64 bytes) and checks the
/// manifest. It does not verify the signature ([`verify`] does).
pub fn split_release(
    release: &[u8],
) -> Result<(Manifest<'_>, &[u8; SIGNATURE_SIZE]), ManifestError> {
    // Shorter than a signature: no manifest at all.
    let Some((manifest, signature)) = release.split_last_chunk::<SIGNATURE_SIZE>() else {
        return Err(ManifestError::TooShort { len: 0 });
    };
    Ok((Manifest::parse(manifest)?, signature))
}

/// The public key of the secret `seed`, or `None` for the all-zero seed (never a random one).
#[cfg(feature = "sign")]
pub fn public_key(seed: &[u8; SEED_SIZE]) -> Option<[u8; PUBLIC_KEY_SIZE]> {
    let pair = ed25519_compact::KeyPair::try_from_seed(ed25519_compact::Seed::new(*seed)).ok()?;
    Some(*pair.pk)
}

/// Signs `manifest` with the secret `seed` (deterministic RFC 8032 Ed25519), or `None` for the
/// all-zero seed.
#[cfg(feature = "sign")]
pub fn sign(manifest: &[u8], seed: &[u8; SEED_SIZE]) -> Option<[u8; SIGNATURE_SIZE]> {
    let pair = ed25519_compact::KeyPair::try_from_seed(ed25519_compact::Seed::new(*seed)).ok()?;
    Some(*pair.sk.sign(manifest, None))
}
