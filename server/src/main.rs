//! rota provisioning server (placeholder until its issue lands).
fn main() {}
