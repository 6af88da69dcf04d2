//! The resident core's network glue: one smoltcp interface and TCP socket, allocated only while in use.
#![no_std]
