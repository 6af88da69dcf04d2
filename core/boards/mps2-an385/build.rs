//! Puts the board's memory map (`linker/mps2-an385.x` in this folder) where cortex-m-rt's link.x
//! expects `memory.x`.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let map = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("linker/mps2-an385.x");
    fs::copy(&map, out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={}", map.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-examples=-Tlink.x");
}
