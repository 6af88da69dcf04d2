//! Record tags: the last 3 bytes of HMAC-MD5(secret, json), as 6 lowercase hex characters; and the
//! plain MD5 a v1 server derives its fingerprint `chk` from (the one MD5 of both ends).

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

/// Length of a record tag in characters.
pub const TAG_LEN: usize = 6;

/// Signs and checks record tags under one device secret (the HMAC key schedule is done once).
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Md5>,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Signer {
    /// A signer for `secret` (any length: keys over 64 bytes are first MD5-hashed, as RFC 2104 says).
    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of every length: this cannot fail.
        let mac = match <Hmac<Md5> as Mac>::new_from_slice(secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!(),
        };
        Signer { mac }
    }

    /// The full 16-byte HMAC-MD5 of `json`.
    pub fn hmac(&self, json: &[u8]) -> [u8; 16] {
        let mut mac = self.mac.clone();
        mac.update(json);
        mac.finalize().into_bytes().into()
    }

    /// The 6-character tag of `json`.
    pub fn tag(&self, json: &[u8]) -> [u8; TAG_LEN] {
        let mac = self.hmac(json);
        let mut out = [0u8; TAG_LEN];
        for (i, b) in mac[13..].iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        out
    }

    /// Whether `tag` is the tag of `json`, compared in constant time (for a tag of the right length).
    pub fn verify(&self, json: &[u8], tag: &[u8]) -> bool {
        let expected = self.tag(json);
        tag.len() == TAG_LEN
            && expected
                .iter()
                .zip(tag)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Plain MD5 of `data` (the hash under the tags), for a v1 server's fingerprint `chk` and its file
/// numbers: the device never computes either, it only stores and echoes them.
pub fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}
