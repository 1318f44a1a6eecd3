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

/// A private copy of `examples/mesh` (so the CA state dir is per test).
pub(crate) fn sample() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh"),
        dir.path(),
    );
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
