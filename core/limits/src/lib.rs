//! The limits and lists that rota's device, overlays, store, protocols and server must agree on, each
//! declared once. A crate that needs one takes it from here (and re-exports it where its own users
//! expect it); sizes built from them are `const` expressions, and a crate whose own layout must hold
//! one of them says so in a `const` assertion beside that layout.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Longest file name in bytes, on every path: the store, the ABI's `Name`, both protocols, the server's
/// inventory check. NodeMCU's `file.open` refuses names over 31 characters (`filename invalid`), so
/// no device of either kind is ever sent a longer one.
pub const NAME_MAX: usize = 31;

/// Most files a signed release names (the entries of its manifest, `rota-release`): the blobs
/// ([`BLOBS`]) and a few data files. Bounds the manifest a device holds while it checks a release
/// (`rota_release::MANIFEST_MAX`).
pub const RELEASE_FILES_MAX: usize = 10;

/// Longest device secret (the HMAC key both protocols derive their keys from), in bytes.
pub const SECRET_MAX: usize = 64;

/// Largest device config in bytes: the postcard encoding of `rota_wire::DeviceConfig` with every field
/// at its limit (rota-wire's tests encode that config and compare), rounded up to whole words. What
/// the core's context holds, what the config check accepts, what a `Commit` may carry and what the
/// server sends.
pub const CONFIG_MAX: usize = {
    // postcard: integers are varints (a u32 takes at most 5 bytes, a u16 3), a string or byte vector
    // is a varint length (one byte below 128) and its bytes, an `Option` a flag byte and the value.
    const U32: usize = 5;
    const U16: usize = 3;
    const fn text(n: usize) -> usize {
        assert!(n < 128);
        1 + n
    }
    let fields = U32 // device_id
        + text(SECRET_MAX) // secret
        + 4 // server
        + U16 // port
        + 1 // leave
        + 2 * text(NAME_MAX) // app, entry
        + 1 + 4 // ip
        + 3 * 4 // gateway, netmask, dns
        + 1 // protocol
        + 1 // link
        + 1 // trials
        + 1 + RELEASE_KEYS_MAX * 32 // keys
        + text(V1_CHK_LEN) // chk
        + 1 + V1_FILES_MAX * (text(NAME_MAX) + U32); // files
    fields.next_multiple_of(4)
};

/// Most release keys (Ed25519 public keys) a device config holds: two, so that a signing key can be
/// rotated (releases signed by the new one are accepted while the old one still is).
pub const RELEASE_KEYS_MAX: usize = 2;

/// Largest payload of the store's config record, as the core lays it out: the config's length
/// (u16), the config, the last boot's heap report.
pub const RECORD_MAX: usize = 2 + CONFIG_MAX + REPORT_MAX;

/// Most entries of luaOTA's (v1) `files` map that a device keeps: the server's number for each file
/// it installed, echoed in the next `HI`.
pub const V1_FILES_MAX: usize = 8;
/// Length of luaOTA's fingerprint `chk` (the MD5 of the inventory, 32 hex digits).
pub const V1_CHK_LEN: usize = 32;

/// Bytes of one phase's entry in the heap report (phase, used, peak, stack peak).
pub const REPORT_ENTRY: usize = 13;
/// Largest heap report the core persists and a check-in carries: one entry per reported phase
/// (boot, the overlays, residue), rounded up to whole words.
pub const REPORT_MAX: usize = (REPORT_ENTRY * (OVERLAYS.len() + 2)).next_multiple_of(4);

/// Every blob a release holds: the overlays in boot order, then the application. The Makefile reads
/// this line (`make overlays` builds exactly these).
pub const BLOBS: [&str; 4] = ["init", "tick", "provision", "app"];
/// The overlays, in boot order.
pub const OVERLAYS: [&str; 3] = [BLOBS[0], BLOBS[1], BLOBS[2]];
/// The application blob's file name.
pub const APP: &str = BLOBS[3];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_and_sizes_agree() {
        assert_eq!(BLOBS[..OVERLAYS.len()], OVERLAYS);
        assert_eq!(BLOBS.last(), Some(&APP));
        assert_eq!(REPORT_MAX, 68);
        assert_eq!(CONFIG_MAX, 560);
        assert_eq!(
            CONFIG_MAX % 4,
            0,
            "the ABI's context keeps its words aligned"
        );
        assert!(REPORT_MAX >= REPORT_ENTRY * (OVERLAYS.len() + 2));
        assert!(
            RELEASE_FILES_MAX >= BLOBS.len(),
            "a release can hold every blob"
        );
        assert!(
            RELEASE_FILES_MAX <= u8::MAX as usize,
            "a manifest counts them in a byte"
        );
    }
}
