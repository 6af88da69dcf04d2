//! luaOTA protocol v1, device side: no `std`, no heap, no I/O.
//!
//! A rota device in v1 compatibility mode checks in with an original luaOTA server (or rota-server's v1
//! service) exactly as NodeMCU's luaOTA client does, minus its defects:
//!
//! - [`Session`] sends the signed `HI` (never the secret), then answers the server's signed commands:
//!   `pu`/`dl` build a file in a caller-provided buffer and hand it whole, with its SHA-256, to the
//!   [`V1Store`]; `cm` (a Lua source) is answered `compile fail` and stores nothing; `ls`, `mv`, `ul`
//!   and unknown commands are answered as the original does; every reply is signed;
//! - the framing of v1 records (`json tag "\n" [payload]`): a checked view [`Record`] and the signed
//!   [`Line`] to send; and [`Signer`] (HMAC-MD5 tags, constant-time verification): the one
//!   implementation of both, used by this crate's session and by rota-server's v1 service;
//! - records are reassembled from any split or join of TCP segments, lines are bounded by the line
//!   buffer, JSON by a minimal parser of the flat objects the server sends; every malformed input gives
//!   a typed [`Error`], never a panic;
//! - the session ends with an [`Outcome`]: `NoUpdate` (a signed `OK!`; or, fail-safe, a first record
//!   without a valid tag, reported as such) or `Restart` with the new [`Config`] (`chk`, `files`,
//!   server, port, leave) for the caller to commit with the staged files.
//!
//! See `docs/luaota-device.md` for the design and the wire protocol as a rota device speaks it, and
//! `docs/server.md` for the server's side of it.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

mod config;
mod json;
mod record;
mod session;
mod sign;
mod store;

pub use config::{render_hi, Config, FileNumber, CHK_LEN, FILES_MAX, NAME_MAX, SERVER_MAX};
pub use json::{JsonError, JsonFault};
pub use record::{record_len, Line, Record, RecordError, MIN_JSON_LEN};
pub use session::{Error, NoUpdate, Outcome, Poll, Refusal, Session, FILE_LEN, LINE_LEN};
pub use sign::{md5, Signer, TAG_LEN};
pub use store::V1Store;
