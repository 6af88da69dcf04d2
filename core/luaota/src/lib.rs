//! luaOTA protocol v1, device side, sans-IO.
#![no_std]
