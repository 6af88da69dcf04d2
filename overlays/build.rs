//! Shared build script of every overlay: link arguments per ISA, and rebuild when a linker script changes.
use std::{env, path::PathBuf};

fn main() {
    // The workspace's `linker/`: two levels up from an overlay, three from a test fixture
    // (overlays/fixtures/<name>).
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let linker = manifest
        .ancestors()
        .map(|dir| dir.join("linker"))
        .find(|dir| dir.join("overlay-thumbv7m.x").exists())
        .unwrap_or_else(|| manifest.join("../../linker"));
    let linker = linker.canonicalize().unwrap_or(linker);
    println!("cargo:rerun-if-changed={}", linker.display());
    match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        // A PIE at 0: only R_ARM_RELATIVE words remain (the Makefile adds -C relocation-model=pic).
        Ok("arm") => {
            for arg in ["-pie", "-znorelro", "--no-dynamic-linker"] {
                println!("cargo:rustc-link-arg-bins={arg}");
            }
            println!(
                "cargo:rustc-link-arg-bins=-T{}",
                linker.join("overlay-thumbv7m.x").display()
            );
        }
        // Linked at 0 keeping relocations (-q): R_XTENSA_32 words are patched by the loader.
        Ok("xtensa") => {
            for arg in ["-nostartfiles", "-nostdlib", "-Wl,-q", "-Wl,--gc-sections"] {
                println!("cargo:rustc-link-arg-bins={arg}");
            }
            println!(
                "cargo:rustc-link-arg-bins=-Wl,-T{}",
                linker.join("overlay-xtensa.x").display()
            );
        }
        _ => {}
    }
}
