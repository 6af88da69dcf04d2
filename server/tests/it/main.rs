//! Integration tests of rota-server: one test binary (fast to link), one module per theme.

mod common;
mod dashboard;
mod defects;
mod durable;
mod flood;
mod links;
mod load;
mod provision;
mod release;
mod releases;
mod rollout;
mod state;
mod v2;
