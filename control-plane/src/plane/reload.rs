//! The reload transaction: load the config directory → check the filter module it needs →
//! build its attestor → reload the core → swap the attestor in → record the outcome
//! (metrics, [`ConfigInfo`] for the config dump, logs). A step that fails leaves every
//! earlier one without effect: the last good config, attestor and snapshots keep serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use super::{Applied, ControlError, ControlPlane};
use crate::attest::Attestor;
use crate::config::replica::ReplicaOverrides;
use crate::config::{self, Config, Diagnostics};

/// Facts about the running config, shown in the config dump.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigInfo {
    /// Config directory.
    pub dir: String,
    /// Trust domain.
    pub trust_domain: String,
    /// Workloads by name -> node id.
    pub workloads: BTreeMap<String, String>,
    /// Last reload error (diagnostics), if the latest reload was rejected.
    pub last_reload_error: Option<String>,
}

impl ConfigInfo {
    /// The facts of `cfg`, with no reload error.
    pub fn of(cfg: &Config) -> Self {
        ConfigInfo {
            dir: cfg.dir.display().to_string(),
            trust_domain: cfg.trust_domain.to_string(),
            workloads: cfg
                .workloads
                .iter()
                .map(|w| (w.name.clone(), w.node_id.clone()))
                .collect(),
            last_reload_error: None,
        }
    }
}

/// Why a reload was rejected (the last good config keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config does not validate.
    #[error("config reload rejected; the last good config keeps serving:\n{0}")]
    Invalid(Diagnostics),
    /// The filter module the config needs is missing or not Wasm.
    #[error("config reload rejected; the last good config keeps serving: {0}")]
    Module(#[from] ModuleError),
    /// The attestation settings cannot be used.
    #[error("config reload rejected (attestation settings): {0}")]
    Attestation(String),
    /// The core refused the change.
    #[error("config reload rejected; the last good config keeps serving: {0}")]
    Plane(#[from] ControlError),
}

/// A filter module Envoy could not load.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// It cannot be read.
    #[error("filter module {}: {source}", path.display())]
    Unreadable {
        /// The module's path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// It does not start with the Wasm magic.
    #[error("filter module {} is not a WebAssembly module (no \\0asm header)", path.display())]
    NotWasm {
        /// The module's path.
        path: PathBuf,
    },
}

/// A filter module must be a readable file starting with the Wasm magic `\0asm`: one
/// Envoy cannot open makes every sidecar NACK the filter config and every listener.
pub fn check_module(path: &Path) -> Result<(), ModuleError> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|source| ModuleError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    if &magic != b"\0asm" {
        return Err(ModuleError::NotWasm {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Installs a new attestor where the xDS server reads it (`None`: no attestation).
pub type AttestorSlot = Arc<dyn Fn(Attestor) + Send + Sync>;

/// Runs reload transactions for one config directory.
pub struct Reloader {
    plane: Arc<ControlPlane>,
    dir: PathBuf,
    info: Arc<Mutex<ConfigInfo>>,
    attestor: Option<AttestorSlot>,
    overrides: ReplicaOverrides,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("dir", &self.dir)
            .field("attestor", &self.attestor.is_some())
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// Reloads `dir` into `plane`, recording the outcome in `info`; a successful reload
    /// hands its attestor to `attestor`.
    pub fn new(
        plane: Arc<ControlPlane>,
        dir: PathBuf,
        info: Arc<Mutex<ConfigInfo>>,
        attestor: Option<AttestorSlot>,
    ) -> Self {
        Self {
            plane,
            dir,
            info,
            attestor,
            overrides: ReplicaOverrides::default(),
        }
    }

    /// Applies this replica's own settings to every config it loads (see
    /// [`ReplicaOverrides`]).
    pub fn with_overrides(mut self, overrides: ReplicaOverrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// The config facts the admin endpoint shows.
    pub fn info(&self) -> Arc<Mutex<ConfigInfo>> {
        self.info.clone()
    }

    /// Runs one transaction off the async workers (loading and building every node's
    /// snapshot is CPU work of up to seconds with thousands of workloads).
    pub fn reload(&self) -> Result<Applied, ReloadError> {
        tokio::task::block_in_place(|| self.reload_blocking())
    }

    /// Runs one transaction on this thread and records its outcome (the error's text is
    /// what the config dump shows).
    pub fn reload_blocking(&self) -> Result<Applied, ReloadError> {
        let started = Instant::now();
        let result = self.transaction(started);
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok((applied, new_info, load_ms)) => {
                self.plane.xds.metrics.config_reloaded();
                *info = new_info;
                log_applied(&applied, load_ms, started.elapsed().as_millis());
                self.plane.xds.audit.reload_accepted(
                    applied.changed.len(),
                    applied.removed.len(),
                    applied.minted,
                );
                Ok(applied)
            }
            Err(e) => {
                self.plane.xds.metrics.config_reload_failed();
                let msg = e.to_string();
                tracing::error!("{msg}");
                self.plane.xds.audit.reload_refused(&msg);
                info.last_reload_error = Some(msg);
                Err(e)
            }
        }
    }

    fn transaction(&self, started: Instant) -> Result<(Applied, ConfigInfo, u128), ReloadError> {
        let cfg = config::load(&self.dir).map_err(ReloadError::Invalid)?;
        let cfg = self.overrides.apply(cfg);
        // An invalid federation.yaml rejects the reload (the federation task would keep
        // the last good relationships anyway; this makes it visible and counted).
        config::federation::FederationSettings::load(&cfg)
            .map_err(|e| ReloadError::Invalid(e.into_diagnostics()))?;
        let load_ms = started.elapsed().as_millis();
        for w in &cfg.warnings {
            tracing::warn!("{w}");
        }
        let new_info = ConfigInfo::of(&cfg);
        // The module this config needs must still be there (it is checked at start, but
        // files go away); otherwise every sidecar would NACK the new config.
        check_module(self.plane.filter_modules().for_config(&cfg))?;
        // Check the attestation settings before anything changes, apply them after.
        let attestor = Attestor::from_config(cfg.clone())
            .map_err(|e| ReloadError::Attestation(e.to_string()))?;
        let (old_tokens, new_tokens) = (self.plane.config().tokens.clone(), cfg.tokens.clone());
        let applied = self.plane.reload(cfg)?;
        self.plane.xds.audit.tokens(&old_tokens, &new_tokens);
        if let Some(install) = &self.attestor {
            install(attestor);
        }
        Ok((applied, new_info, load_ms))
    }
}

fn log_applied(applied: &Applied, load_ms: u128, total_ms: u128) {
    if applied.changed.len() + applied.removed.len() <= 10 {
        tracing::info!(changed = ?applied.changed, removed = ?applied.removed, svids = applied.minted, load_ms, total_ms, "config reloaded");
    } else {
        tracing::info!(
            changed = applied.changed.len(),
            removed = applied.removed.len(),
            svids = applied.minted,
            load_ms,
            total_ms,
            "config reloaded"
        );
    }
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
