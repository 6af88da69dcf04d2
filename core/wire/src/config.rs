//! The device's configuration: the payload of its config record, postcard, at most [`MAX_CONFIG`] bytes.
//!
//! These are luaOTA's `config.json` fields for a wired rota device (no WiFi credentials, IPv4 only, no
//! DNS lookup of the server), plus what luaOTA v1 compatibility mode must keep (`chk` and the `files`
//! map, bounded). The server may send a new one in `Commit`, but never one that changes `device_id` or
//! `secret`: the device refuses it ([`ConfigError`]).

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::codec::{Reader, Writer};
use crate::{Error, MAX_NAME};

/// Largest encoded config.
pub use rota_limits::CONFIG_MAX as MAX_CONFIG;
/// Longest secret a config can hold.
pub use rota_limits::SECRET_MAX as MAX_SECRET;
/// Most files the v1 compatibility `files` map holds.
pub use rota_limits::V1_FILES_MAX as MAX_V1_FILES;

/// Why a config is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConfigError {
    /// Not a postcard `DeviceConfig`, or trailing bytes.
    Malformed = 1,
    /// Encodes to more than [`MAX_CONFIG`] bytes.
    TooLong = 2,
    /// It would change the device id.
    DeviceId = 3,
    /// It would change the secret.
    Secret = 4,
    /// `protocol` is neither 1 nor 2.
    Protocol = 5,
    /// It would change how the device reaches the server (`link`): one that took a serial device
    /// to TCP, or the other way, would cut it off from every later update.
    Link = 6,
    /// It would change the release keys: the server may not choose whose signatures the device
    /// trusts (that would make the signatures worthless against a server that is not trusted).
    Keys = 7,
}

/// Most release keys (Ed25519 public keys) a device holds: two, so a key can be rotated.
pub use rota_limits::RELEASE_KEYS_MAX as MAX_KEYS;
/// Trial boots a new generation gets by default before the core rolls it back.
pub const DEFAULT_TRIALS: u8 = 3;

/// One entry of the v1 compatibility `files` map: a name and the number the v1 server gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1File {
    /// The file name.
    pub name: String<MAX_NAME>,
    /// The server's number for it.
    pub number: u32,
}

/// How the device reaches the server: the same protocol runs over either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Link {
    /// TCP over the board's network interface (`server`, `port`, the addressing fields).
    #[default]
    Tcp = 0,
    /// The console's serial line, through `rota-bridge serial` on the host (`docs/protocol.md`,
    /// "Serial link"); the addressing fields are not used.
    Serial = 1,
}

/// The device's stored configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// The device id (chip id) it checks in with.
    pub device_id: u32,
    /// The HMAC secret shared with the server.
    pub secret: Vec<u8, MAX_SECRET>,
    /// The server's IPv4 address.
    pub server: [u8; 4],
    /// The server's TCP port.
    pub port: u16,
    /// Keep the network up when starting the application.
    pub leave: bool,
    /// The application to start.
    pub app: String<MAX_NAME>,
    /// Its entry point.
    pub entry: String<MAX_NAME>,
    /// Static IPv4 address; `None` for DHCP.
    pub ip: Option<[u8; 4]>,
    /// Gateway (static addressing).
    pub gateway: [u8; 4],
    /// Netmask (static addressing).
    pub netmask: [u8; 4],
    /// DNS server (handed to the application; the updater resolves nothing).
    pub dns: [u8; 4],
    /// 1 = luaOTA v1 compatibility, 2 = rota v2.
    pub protocol: u8,
    /// How the device reaches the server.
    pub link: Link,
    /// Boots a newly committed generation may take without being confirmed before the core goes
    /// back to the previous one (0: none, committed generations are confirmed at once).
    pub trials: u8,
    /// The Ed25519 public keys whose signatures the device's releases must carry; none: releases
    /// need no signature (the fleet view says "unsigned").
    pub keys: Vec<[u8; 32], MAX_KEYS>,
    /// v1 compatibility: the fingerprint the v1 server sent last.
    pub chk: String<{ rota_limits::V1_CHK_LEN }>,
    /// v1 compatibility: the file numbers the v1 server sent last.
    pub files: Vec<V1File, MAX_V1_FILES>,
}

impl DeviceConfig {
    /// The config with every field at its limit: the one whose encoding [`MAX_CONFIG`] is derived from
    /// (limit checks of the store, the core and the server use it).
    #[cfg(feature = "std")]
    pub fn largest() -> DeviceConfig {
        let name = || String::try_from("x".repeat(MAX_NAME).as_str()).expect("fits");
        DeviceConfig {
            device_id: u32::MAX,
            secret: Vec::from_slice(&[0xff; MAX_SECRET]).expect("fits"),
            server: [255; 4],
            port: u16::MAX,
            leave: true,
            app: name(),
            entry: name(),
            ip: Some([255; 4]),
            gateway: [255; 4],
            netmask: [255; 4],
            dns: [255; 4],
            protocol: 1,
            link: Link::Serial,
            trials: u8::MAX,
            keys: Vec::from_slice(&[[0xff; 32]; MAX_KEYS]).expect("fits"),
            chk: String::try_from("f".repeat(rota_limits::V1_CHK_LEN).as_str()).expect("fits"),
            files: (0..MAX_V1_FILES)
                .map(|_| V1File {
                    name: name(),
                    number: u32::MAX,
                })
                .collect(),
        }
    }

    /// Encodes into `out` (at least [`MAX_CONFIG`] bytes are never needed more); returns the length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        let n = postcard::to_slice(self, out)
            .map(|used| used.len())
            .map_err(|_| Error::BufferTooSmall)?;
        if n > MAX_CONFIG {
            return Err(Error::Config(ConfigError::TooLong));
        }
        Ok(n)
    }

    /// Decodes a config record's payload; refuses trailing bytes, oversized records and unknown
    /// protocols.
    pub fn decode(bytes: &[u8]) -> Result<DeviceConfig, ConfigError> {
        if bytes.len() > MAX_CONFIG {
            return Err(ConfigError::TooLong);
        }
        let config: DeviceConfig = match postcard::take_from_bytes(bytes) {
            Ok((config, [])) => config,
            _ => return Err(ConfigError::Malformed),
        };
        if !matches!(config.protocol, 1 | 2) {
            return Err(ConfigError::Protocol);
        }
        Ok(config)
    }

    /// Checks a config the server sent (postcard bytes) for a device whose present config is
    /// `present`: it must be a record [`DeviceConfig::decode`] accepts, and keep the device id, the
    /// secret, the link and the release keys. Returns the new config's view.
    pub fn check_update<'b>(
        bytes: &'b [u8],
        present: &Keep<'_>,
    ) -> Result<ConfigView<'b>, ConfigError> {
        let view = ConfigView::parse(bytes)?;
        if view.device_id != present.device_id {
            return Err(ConfigError::DeviceId);
        }
        if view.secret != present.secret {
            return Err(ConfigError::Secret);
        }
        if view.link != present.link {
            return Err(ConfigError::Link);
        }
        if view.keys != present.keys {
            return Err(ConfigError::Keys);
        }
        Ok(view)
    }
}

/// What a new config must keep of the present one ([`DeviceConfig::check_update`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep<'a> {
    /// The device id.
    pub device_id: u32,
    /// The secret.
    pub secret: &'a [u8],
    /// How the device reaches the server.
    pub link: Link,
    /// The release keys, as encoded: 32 bytes each ([`ConfigView::keys`]).
    pub keys: &'a [u8],
}

/// The fields of an encoded [`DeviceConfig`] the device needs, borrowed from the record.
///
/// Hand-written (it runs on the device, where serde's decoder costs kilobytes of code and of stack);
/// the tests check it accepts exactly what [`DeviceConfig::decode`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigView<'a> {
    /// See [`DeviceConfig::device_id`].
    pub device_id: u32,
    /// See [`DeviceConfig::secret`].
    pub secret: &'a [u8],
    /// See [`DeviceConfig::server`].
    pub server: [u8; 4],
    /// See [`DeviceConfig::port`].
    pub port: u16,
    /// See [`DeviceConfig::app`].
    pub app: &'a [u8],
    /// See [`DeviceConfig::ip`].
    pub ip: Option<[u8; 4]>,
    /// See [`DeviceConfig::gateway`].
    pub gateway: [u8; 4],
    /// See [`DeviceConfig::netmask`].
    pub netmask: [u8; 4],
    /// See [`DeviceConfig::protocol`].
    pub protocol: u8,
    /// See [`DeviceConfig::link`].
    pub link: Link,
    /// See [`DeviceConfig::trials`].
    pub trials: u8,
    /// See [`DeviceConfig::keys`]: the keys' bytes, 32 each, back to back.
    pub keys: &'a [u8],
    /// See [`DeviceConfig::chk`].
    pub chk: &'a [u8],
    /// The v1 `files` map as encoded (read it with [`ConfigView::v1_files`]).
    files: &'a [u8],
    /// Where `chk` starts in the record.
    v1_at: usize,
    /// The whole record.
    record: &'a [u8],
}

impl<'a> ConfigView<'a> {
    /// Parses a config record's payload with the same checks as [`DeviceConfig::decode`].
    pub fn parse(bytes: &'a [u8]) -> Result<ConfigView<'a>, ConfigError> {
        if bytes.len() > MAX_CONFIG {
            return Err(ConfigError::TooLong);
        }
        let mut r = Reader::new(bytes);
        let view = (|| {
            let device_id = r.u32()?;
            let secret = r.bytes(MAX_SECRET)?;
            let server = r.array::<4>()?;
            let port = r.u16()?;
            r.flag()?;
            let app = r.str(MAX_NAME)?;
            r.str(MAX_NAME)?;
            let ip = if r.flag()? {
                Some(r.array::<4>()?)
            } else {
                None
            };
            let gateway = r.array::<4>()?;
            let netmask = r.array::<4>()?;
            r.take(4)?;
            let protocol = r.byte()?;
            let link = match r.variant()? {
                0 => Link::Tcp,
                1 => Link::Serial,
                _ => return Err(Error::Malformed),
            };
            let trials = r.byte()?;
            let count = r.length()?;
            if count > MAX_KEYS {
                return Err(Error::Malformed);
            }
            let keys = r.take(32 * count)?;
            let v1_at = bytes.len() - r.remaining();
            let chk = r.str(rota_limits::V1_CHK_LEN)?;
            let files_at = bytes.len() - r.remaining();
            let files = r.length()?;
            if files > MAX_V1_FILES {
                return Err(Error::Malformed);
            }
            for _ in 0..files {
                r.str(MAX_NAME)?;
                r.u32()?;
            }
            r.end()?;
            Ok(ConfigView {
                device_id,
                secret,
                server,
                port,
                app,
                ip,
                gateway,
                netmask,
                protocol,
                link,
                trials,
                keys,
                chk,
                files: &bytes[files_at..],
                v1_at,
                record: bytes,
            })
        })()
        .map_err(|_| ConfigError::Malformed)?;
        if !matches!(view.protocol, 1 | 2) {
            return Err(ConfigError::Protocol);
        }
        Ok(view)
    }

    /// The release keys.
    pub fn keys(&self) -> impl Iterator<Item = &'a [u8; 32]> {
        self.keys.as_chunks::<32>().0.iter()
    }

    /// What a config the server sends must keep of this one.
    pub fn keep(&self) -> Keep<'a> {
        Keep {
            device_id: self.device_id,
            secret: self.secret,
            link: self.link,
            keys: self.keys,
        }
    }

    /// The v1 `files` map: names and the numbers the v1 server gave them (already checked by
    /// [`ConfigView::parse`]).
    pub fn v1_files(&self) -> impl Iterator<Item = (&'a [u8], u32)> {
        let mut r = Reader::new(self.files);
        let count = r.length().unwrap_or(0);
        (0..count).map_while(move |_| Some((r.str(MAX_NAME).ok()?, r.u32().ok()?)))
    }

    /// This record with the v1 state (`chk` and `files`) replaced, written into `out`; returns its
    /// length. What a v1 `restart` leaves: everything else is kept.
    pub fn with_v1_state<'f>(
        &self,
        chk: &[u8],
        files: impl ExactSizeIterator<Item = (&'f [u8], u32)>,
        out: &mut [u8],
    ) -> Result<usize, ConfigError> {
        if chk.len() > 32 || files.len() > MAX_V1_FILES {
            return Err(ConfigError::TooLong);
        }
        let mut w = Writer::new(out);
        let too_long = |_| ConfigError::TooLong;
        w.raw(&self.record[..self.v1_at]).map_err(too_long)?;
        w.bytes(chk).map_err(too_long)?;
        w.u32(files.len() as u32).map_err(too_long)?;
        for (name, number) in files {
            if name.is_empty() || name.len() > MAX_NAME {
                return Err(ConfigError::Malformed);
            }
            w.bytes(name).map_err(too_long)?;
            w.u32(number).map_err(too_long)?;
        }
        if w.len() > MAX_CONFIG {
            return Err(ConfigError::TooLong);
        }
        Ok(w.len())
    }
}

/// The version of an encoded config that a Hello reports: the first 4 bytes of its SHA-256, little
/// endian (0 is reserved for "no config record").
pub fn config_version(bytes: &[u8]) -> u32 {
    let d = crate::sha256(bytes);
    u32::from_le_bytes([d[0], d[1], d[2], d[3]]).max(1)
}
