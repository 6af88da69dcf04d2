//! The device config record: rota-wire's hand-written `ConfigView::parse` (what the device runs)
//! against serde's `DeviceConfig::decode` (what the server and tools use). Differential.
//!
//! Input: a config record's payload.
//!
//! Checks: no panic; both accept the same inputs with the same error; where both accept, every field
//! the view has is equal; the decoded config re-encodes to a record both accept as equal;
//! `with_v1_state` keeps everything but the v1 state and gives a record both accept;
//! `check_update` accepts the record for a device it keeps (`keep()`), and refuses it naming the
//! field for one with another device id, secret, link or release keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rota_wire::config::{Keep, MAX_CONFIG};
use rota_wire::{ConfigError, ConfigView, DeviceConfig, Link};

fuzz_target!(|data: &[u8]| {
    let view = ConfigView::parse(data);
    let full = DeviceConfig::decode(data);
    assert_eq!(
        view.as_ref().err(),
        full.as_ref().err(),
        "ConfigView::parse and DeviceConfig::decode disagree"
    );
    let (Ok(v), Ok(c)) = (view, full) else {
        return;
    };
    assert_eq!(v.device_id, c.device_id);
    assert_eq!(v.secret, &c.secret[..]);
    assert_eq!(
        (v.server, v.port, v.ip, v.gateway, v.netmask, v.protocol, v.link),
        (c.server, c.port, c.ip, c.gateway, c.netmask, c.protocol, c.link)
    );
    assert_eq!((v.app, v.trials), (c.app.as_bytes(), c.trials));
    assert_eq!(v.keys, &c.keys.concat()[..]);
    assert_eq!(v.keys().copied().collect::<Vec<_>>(), c.keys.to_vec());
    assert_eq!(v.chk, c.chk.as_bytes());

    // The update check: what it keeps, field by field.
    let keep = v.keep();
    assert_eq!(DeviceConfig::check_update(data, &keep), Ok(v));
    let other_secret = [v.secret, b"x"].concat();
    let other_keys = if v.keys.is_empty() {
        vec![0u8; 32]
    } else {
        v.keys[32..].to_vec()
    };
    let other_link = match v.link {
        Link::Tcp => Link::Serial,
        Link::Serial => Link::Tcp,
    };
    for (present, error) in [
        (
            Keep {
                device_id: v.device_id ^ 1,
                ..keep
            },
            ConfigError::DeviceId,
        ),
        (
            Keep {
                secret: &other_secret,
                ..keep
            },
            ConfigError::Secret,
        ),
        (
            Keep {
                link: other_link,
                ..keep
            },
            ConfigError::Link,
        ),
        (
            Keep {
                keys: &other_keys,
                ..keep
            },
            ConfigError::Keys,
        ),
    ] {
        assert_eq!(DeviceConfig::check_update(data, &present), Err(error));
    }
    let files: Vec<(&[u8], u32)> = v.v1_files().collect();
    let want: Vec<(&[u8], u32)> = c
        .files
        .iter()
        .map(|f| (f.name.as_bytes(), f.number))
        .collect();
    assert_eq!(files, want);

    let mut out = vec![0u8; 2 * MAX_CONFIG];
    let n = c.encode(&mut out).expect("a decoded config re-encodes");
    assert_eq!(DeviceConfig::decode(&out[..n]).as_ref(), Ok(&c));
    assert!(ConfigView::parse(&out[..n]).is_ok());

    // The v1 restart: new chk, the files in reverse.
    let chk: &[u8] = if c.chk.is_empty() { b"0123abcd" } else { b"" };
    let rev: Vec<(&[u8], u32)> = want
        .iter()
        .rev()
        .map(|&(n, x)| (n, x.wrapping_add(1)))
        .collect();
    if let Ok(m) = v.with_v1_state(chk, rev.iter().copied(), &mut out) {
        let c2 = DeviceConfig::decode(&out[..m]).expect("with_v1_state gives a valid record");
        let v2 = ConfigView::parse(&out[..m]).expect("with_v1_state gives a valid record");
        assert_eq!(v2.chk, chk);
        assert_eq!(v2.v1_files().collect::<Vec<_>>(), rev);
        let mut kept = c2.clone();
        kept.chk = c.chk.clone();
        kept.files = c.files.clone();
        assert_eq!(kept, c, "with_v1_state changed more than the v1 state");
    }
});
