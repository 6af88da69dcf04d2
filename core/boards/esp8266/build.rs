//! Picks the linker script of the selected machine (`sim`, `xtfpga` or `chip`: exactly one) from
//! this folder's `linker/` for the firmware binary and the examples.

use std::env;
use std::path::PathBuf;

/// The machines, as cargo features, each with its script `linker/esp8266-<machine>.x`.
const MACHINES: [&str; 3] = ["sim", "xtfpga", "chip"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Only the Xtensa firmware link needs the scripts; `cargo metadata`/host tools see nothing.
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("xtensa") {
        return;
    }
    let selected: Vec<&str> = MACHINES
        .into_iter()
        .filter(|m| env::var_os(format!("CARGO_FEATURE_{}", m.to_uppercase())).is_some())
        .collect();
    let [machine] = selected[..] else {
        panic!(
            "rota-board-esp8266: enable exactly one of the features `sim` (default), `xtfpga` or \
             `chip` (--no-default-features --features xtfpga or chip for the others); got {selected:?}"
        )
    };
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("linker");
    // Every script of the folder (one may INCLUDE another).
    for m in MACHINES {
        println!(
            "cargo:rerun-if-changed={}",
            dir.join(format!("esp8266-{m}.x")).display()
        );
    }
    let script = dir.join(format!("esp8266-{machine}.x"));
    // The firmware binary and the examples link the same way.
    for targets in ["bins", "examples"] {
        let arg = |a: &str| println!("cargo:rustc-link-arg-{targets}={a}");
        arg("-nostartfiles");
        arg("-nostdlib");
        // The directory is on the search path for INCLUDE.
        arg(&format!("-Wl,-L{}", dir.display()));
        arg(&format!("-Wl,-T{}", script.display()));
        arg("-Wl,--gc-sections");
        // IRAM holds code and the (writable, executable) overlay arena by design.
        arg("-Wl,--no-warn-rwx-segments");
    }
}
