//! What the device keeps between check-ins (the part of luaOTA's `config.json` a rota device has), and
//! the `HI` record built from it.

use crate::json::Writer;

/// Longest file name in the `files` map, in bytes.
pub use rota_limits::NAME_MAX;
/// Most entries in the `files` map.
pub use rota_limits::V1_FILES_MAX as FILES_MAX;
/// Longest server host name or address, in bytes.
pub const SERVER_MAX: usize = 64;
/// Length of the server's fingerprint `chk` (32 hex characters).
pub use rota_limits::V1_CHK_LEN as CHK_LEN;

/// One entry of the `files` map: a file name and the server's number for it (luaOTA's server uses the
/// mtime, rota's a content hash; the device only stores and echoes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNumber {
    /// The file name as the server spells it.
    pub name: heapless::Vec<u8, NAME_MAX>,
    /// The server's number for it.
    pub number: u32,
}

/// The device's v1 configuration: where to check in, and what the server last installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Server host name or address (sent back in the HI; the caller connects to it).
    pub server: heapless::Vec<u8, SERVER_MAX>,
    /// Server TCP port (luaOTA's default is 8266).
    pub port: u16,
    /// luaOTA's `leave` flag (keep the network up when starting the application).
    pub leave: u32,
    /// The fingerprint of the last `restart`, if any.
    pub chk: Option<[u8; CHK_LEN]>,
    /// The file numbers of the last `restart`, in the server's order.
    pub files: heapless::Vec<FileNumber, FILES_MAX>,
}

impl Config {
    /// A fresh config (no `chk`, no files) for `server:port`; `None` if `server` is over [`SERVER_MAX`].
    pub fn new(server: &[u8], port: u16) -> Option<Self> {
        Some(Config {
            server: heapless::Vec::from_slice(server).ok()?,
            port,
            leave: 0,
            chk: None,
            files: heapless::Vec::new(),
        })
    }
}

/// Writes the JSON of the `HI` record for chip `id` into `buf` and returns its length, or `None` if it
/// does not fit. Fields in a fixed order: `leave`, `port`, [`ssid`, `spwd`], `server`, [`chk`, `files`],
/// `id`, `a` (the order of the protocol document's test vector). `wifi` is `(ssid, spwd)`; a rota device
/// passes `None` (it has no WiFi credentials in this config and never sends a secret).
pub fn render_hi(
    buf: &mut [u8],
    id: u32,
    config: &Config,
    wifi: Option<(&[u8], &[u8])>,
) -> Option<usize> {
    let mut w = Writer::new(buf);
    w.raw(b"{\"leave\":")
        .int(config.leave)
        .raw(b",\"port\":")
        .int(u32::from(config.port));
    if let Some((ssid, spwd)) = wifi {
        w.raw(b",\"ssid\":")
            .string(ssid)
            .raw(b",\"spwd\":")
            .string(spwd);
    }
    w.raw(b",\"server\":").string(&config.server);
    if let Some(chk) = &config.chk {
        w.raw(b",\"chk\":").string(chk);
    }
    if config.chk.is_some() || !config.files.is_empty() {
        w.raw(b",\"files\":{");
        for (i, f) in config.files.iter().enumerate() {
            if i > 0 {
                w.raw(b",");
            }
            w.string(&f.name).raw(b":").int(f.number);
        }
        w.raw(b"}");
    }
    w.raw(b",\"id\":").int(id).raw(b",\"a\":\"HI\"}");
    w.finish()
}
