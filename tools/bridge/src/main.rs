//! The QEMU guestfwd command: joins its stdin/stdout to a TCP server on 127.0.0.1.
fn main() {}
