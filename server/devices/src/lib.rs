//! Test doubles of the devices `rota-server` provisions, for its tests, its benchmark and other
//! crates' tests; never part of a product (`rota-server` depends on this crate only for its tests).
//!
//! - [`nodemcu`]: a NodeMCU luaOTA client (protocol v1), simulated as `luaota-protocol.md` describes
//!   the real one, limits and all (one 1024-byte config read, one record per TCP segment, the 3 s
//!   window, `filename invalid` above 31 bytes);
//! - [`rota`]: a rota device (protocol v2): `rota-wire`'s device session with an in-memory staging
//!   store.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod nodemcu;
pub mod rota;
