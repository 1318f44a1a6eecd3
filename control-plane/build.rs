//! Embeds the policy playground (the `warden-playground` crate built for browsers by
//! `./dev build`, see `scripts/playground.sh`) when its output is in `playground/pkg/`:
//! sets cfg `warden_playground` and `WARDEN_PLAYGROUND_DIR` for `admin/ui.rs`. Without it
//! the binary builds the same, and `/ui/playground` says how to build the module.
//! Nothing is compiled or downloaded here.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(warden_playground)");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = manifest.join("../playground/pkg");
    // A directory: cargo rescans it, so a new build of the module is picked up.
    println!("cargo::rerun-if-changed={}", dir.display());
    let files = ["warden_playground.js", "warden_playground_bg.wasm"];
    if files.iter().all(|f| dir.join(f).is_file()) {
        let dir = dir.canonicalize().unwrap_or(dir);
        println!("cargo::rustc-cfg=warden_playground");
        println!("cargo::rustc-env=WARDEN_PLAYGROUND_DIR={}", dir.display());
    }
}
