//! Links the overlay at address 0 with linker/overlay-xtensa.x, keeping relocations (-q).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("xtensa") {
        return;
    }
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let script = manifest.join("../../../../linker/overlay-xtensa.x");
    let script = script.canonicalize().unwrap_or(script);
    println!("cargo:rerun-if-changed={}", script.display());
    for arg in [
        "-nostartfiles".to_string(),
        "-nostdlib".to_string(),
        "-Wl,-q".to_string(),
        "-Wl,--gc-sections".to_string(),
        format!("-Wl,-T{}", script.display()),
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
