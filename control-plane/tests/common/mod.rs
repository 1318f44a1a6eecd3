//! Helpers shared by the `warden` binary's integration tests (each test file uses some).
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the `warden` binary built for these tests to completion.
pub(crate) fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .output()
        .expect("warden runs")
}

/// A private copy of `examples/mesh` (so the CA state dir is per test), its audit
/// listener on an ephemeral port (tests run in parallel; these never start Envoy).
pub(crate) fn sample() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh"),
        dir.path(),
    );
    let main = dir.path().join("warden.yaml");
    let text = fs::read_to_string(&main).unwrap();
    assert!(
        text.contains("listen: 127.0.0.1:18002"),
        "the sample's audit.listen moved"
    );
    fs::write(
        &main,
        text.replace("listen: 127.0.0.1:18002", "listen: 127.0.0.1:0"),
    )
    .unwrap();
    dir
}

/// Copies a directory tree.
pub(crate) fn copy(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap().flatten() {
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy(&e.path(), &to)
        } else {
            fs::copy(e.path(), to).unwrap();
        }
    }
}

/// A stand-in filter module (just the Wasm header: `warden serve` checks that the file
/// exists and is WebAssembly; these tests never run Envoy), hidden from config reloads.
pub(crate) fn fake_module(dir: &Path) -> std::path::PathBuf {
    let path = dir.join(".warden_filter.wasm");
    fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    path
}
