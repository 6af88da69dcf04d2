//! rota's provisioning server: a byte-exact luaOTA (protocol v1) service that never falls over, and
//! rota's own protocol v2 on the same port.
//!
//! - [`v1`]: typed v1 records (parse and emit) over rota-luaota's record layer (framing, HMAC-MD5
//!   tags), which the device side uses too;
//! - [`repo`]: inventories, what a device should hold and the send rule both protocols follow, v1's
//!   content-derived file numbers and fingerprint, an optional git revision;
//! - [`trim`]: `--SAFETRIM` by lexing Lua 5.1; [`luac`]: the Lua 5.1 compile check;
//! - [`restart`]: the `restart` record, refused when it could brick a device;
//! - [`plan_v2`]: the protocol v2 planner: what a rota device gets, decided from content digests, and
//!   its files' versions; the frames and the session state machine are `rota-wire`'s;
//! - [`fleet`]: each device's last check-in, its history, rollbacks and rollouts, in a database
//!   (SQLite in `.rota/state.db` by default, or PostgreSQL shared by several servers);
//!   [`durable::replace`]: atomic, durable replacement of a repository file (rota-sign's);
//! - [`rollout`]: staged rollouts: cohorts by a stable hash, widening, halting on rollbacks;
//! - [`dashboard`]: the dashboard's data (rota-dashboard's `Source`) from the fleet and rollouts;
//! - [`session`]: the per-connection state machine; [`listen`]: the TCP listener.
//!
//! The simulated devices its tests use (a NodeMCU luaOTA client, a rota device) are the crate
//! `rota-devices` (`server/devices/`), outside the server.
//!
//! How to run it, the repository layout, limits and measured figures: `docs/server.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod dashboard;
pub mod durable;
pub mod fleet;
pub mod listen;
pub mod luac;
pub mod plan_v2;
pub mod repo;
pub mod restart;
pub mod rollout;
pub mod session;
pub mod trim;
pub mod v1;
