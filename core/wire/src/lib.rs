//! rota protocol v2: authenticated binary frames, messages and the sans-IO device and server sessions.
#![no_std]
