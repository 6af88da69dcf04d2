//! Links the probe as the boards link their firmware: cortex-m-rt's `link.x` over mps2-an385's memory
//! map on the Cortex-M3, the esp8266 board's `sim` script on the LX106.
use std::{env, fs, path::PathBuf};

fn main() {
    let boards = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../boards");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let arg = |a: &str| println!("cargo:rustc-link-arg-bins={a}");
    match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("arm") => {
            let map = boards.join("mps2-an385/linker/mps2-an385.x");
            fs::copy(&map, out.join("memory.x")).unwrap();
            println!("cargo:rustc-link-search={}", out.display());
            println!("cargo:rerun-if-changed={}", map.display());
            arg("-Tlink.x");
        }
        Ok("xtensa") => {
            let dir = boards.join("esp8266/linker");
            println!("cargo:rerun-if-changed={}", dir.display());
            arg("-nostartfiles");
            arg("-nostdlib");
            arg(&format!("-Wl,-L{}", dir.display()));
            arg(&format!("-Wl,-T{}", dir.join("esp8266-sim.x").display()));
            arg("-Wl,--gc-sections");
            arg("-Wl,--no-warn-rwx-segments");
        }
        _ => {}
    }
    println!("cargo:rerun-if-changed=build.rs");
}
