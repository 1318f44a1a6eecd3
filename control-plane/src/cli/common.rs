//! Helpers shared by CLI verbs: loading the config (diagnostics become one error) and
//! opening the CA it names.

use std::path::Path;

use anyhow::Context;

use warden::config::{self, Config};
use warden::identity::{Authority, SystemClock};

/// Load and validate a config directory; invalid config is an error listing every problem.
pub(crate) fn load_config(dir: &Path) -> anyhow::Result<Config> {
    config::load(dir).map_err(|diags| {
        anyhow::anyhow!(
            "{diags}\n{}: invalid config ({} problem(s)); run `warden validate {}`",
            dir.display(),
            diags.0.len(),
            dir.display()
        )
    })
}

/// Open (or create) every CA generation the config's state dir holds (current signs;
/// the bundle also holds a prepared next CA and retired ones).
pub(crate) fn open_authority(cfg: &Config) -> anyhow::Result<Authority> {
    Authority::load_or_init(&cfg.ca_params(), &SystemClock)
        .with_context(|| format!("cannot open the CA in {}", cfg.ca.state_dir.display()))
}

/// The full trust bundle (every CA in it) of the config's state dir.
pub(crate) fn load_authority_bundle(cfg: &Config) -> anyhow::Result<warden::identity::TrustBundle> {
    Ok(open_authority(cfg)?.bundle())
}
