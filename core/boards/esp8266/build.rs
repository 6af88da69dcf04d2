//! Picks the linker script of the selected machine (`sim` or `chip`) for the firmware binary.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Only the Xtensa firmware link needs the scripts; `cargo metadata`/host tools see nothing.
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("xtensa") {
        return;
    }
    let sim = env::var_os("CARGO_FEATURE_SIM").is_some();
    let chip = env::var_os("CARGO_FEATURE_CHIP").is_some();
    let machine = match (sim, chip) {
        (true, false) => "sim",
        (false, true) => "chip",
        _ => panic!(
            "rota-board-esp8266: enable exactly one of the features `sim` (default) or `chip` \
             (use --no-default-features --features chip for the real chip)"
        ),
    };
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let script = manifest.join(format!("../../../linker/esp8266-{machine}.x"));
    let script = script.canonicalize().unwrap_or(script);
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg-bins=-nostartfiles");
    println!("cargo:rustc-link-arg-bins=-nostdlib");
    println!("cargo:rustc-link-arg-bins=-Wl,-T{}", script.display());
    println!("cargo:rustc-link-arg-bins=-Wl,--gc-sections");
    // IRAM holds code and the (writable, executable) overlay arena by design.
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-rwx-segments");
}
