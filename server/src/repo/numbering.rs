//! Protocol v1's numbers: each file's content-derived number and the inventory's fingerprint `chk`
//! (luaOTA's `files` map and `chk`). Protocol v2 uses neither.

/// The number of a file: the first 4 bytes of the MD5 of the bytes sent, big-endian, top bit cleared.
///
/// It is a JSON integer below 2^31, so NodeMCU integer builds store and echo it exactly.
pub fn content_number(data: &[u8]) -> u32 {
    let d = rota_luaota::md5(data);
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) & 0x7fff_ffff
}

/// The fingerprint of an inventory: `md5_hex("name1:n1:name2:n2:...")` in inventory order.
pub fn fingerprint<'a>(files: impl IntoIterator<Item = (&'a str, u32)>) -> String {
    let joined: Vec<String> = files
        .into_iter()
        .map(|(name, n)| format!("{name}:{n}"))
        .collect();
    hex(&rota_luaota::md5(joined.join(":").as_bytes()))
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_the_doc() {
        let expected = hex(&rota_luaota::md5(b"main.lua:12:data.txt:7"));
        assert_eq!(fingerprint([("main.lua", 12), ("data.txt", 7)]), expected);
        assert_ne!(fingerprint([("data.txt", 7), ("main.lua", 12)]), expected);
    }

    #[test]
    fn numbers_are_content_derived_31_bit() {
        assert_eq!(content_number(b"abc"), content_number(b"abc"));
        assert_ne!(content_number(b"abc"), content_number(b"abd"));
        // md5("") = d41d8cd9...; top bit of 0xd4 cleared.
        assert_eq!(content_number(b""), 0x541d_8cd9);
    }
}
