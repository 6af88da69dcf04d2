//! rota's provisioning server: a byte-exact luaOTA (protocol v1) service that never falls over.
//!
//! - [`v1`]: framing, HMAC-MD5 tags and typed records (parse and emit);
//! - [`repo`]: inventories, content-derived file numbers, the fingerprint, an optional git revision;
//! - [`trim`]: `--SAFETRIM` by lexing Lua 5.1; [`luac`]: the Lua 5.1 compile check;
//! - [`restart`]: the `restart` record, refused when it could brick a device;
//! - [`session`]: the per-connection state machine; [`listen`]: the TCP listener;
//! - [`sim`]: a NodeMCU luaOTA client simulator for tests and benchmarks.
//!
//! How to run it, the repository layout, limits and measured figures: `docs/server.md`.

pub mod listen;
pub mod luac;
pub mod repo;
pub mod restart;
pub mod session;
pub mod sim;
pub mod trim;
pub mod v1;
