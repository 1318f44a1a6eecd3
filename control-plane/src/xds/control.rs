//! The control loop's state: the CA, the current config and each workload's SVID, turned
//! into node snapshots and published to the cache. Every change (startup, config reload,
//! SVID renewal) goes through one path: build every node's snapshot first, publish only
//! if all succeed, so a bad change never half-applies and the last good keeps serving.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::resources::{build_node_snapshot, NodeInputs, ResourceError};
use super::server::Shared;
use super::snapshot::Snapshot;
use super::types::NodeId;
use crate::config::Config;
use crate::identity::{Ca, CaError, Clock, Svid, SvidParams};

/// Why a change could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The CA could not be loaded or could not sign.
    #[error("certificate authority: {0}")]
    Ca(#[from] CaError),
    /// A node's resources could not be built.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// The trust domain or CA settings changed; that needs a restart (and a CA rotation).
    #[error("the trust domain or CA settings changed ({what}); restart `warden serve` to apply")]
    CaSettingsChanged {
        /// What changed.
        what: String,
    },
}

/// What an applied change did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Nodes whose snapshot changed (pushed to their streams).
    pub changed: Vec<NodeId>,
    /// Nodes removed (their streams end).
    pub removed: Vec<NodeId>,
    /// SVIDs minted.
    pub minted: usize,
}

/// When an SVID should be renewed: at half its lifetime (SPIRE's and Istio's default).
pub fn refresh_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + life / 2
}

#[derive(Debug)]
struct State {
    config: Arc<Config>,
    svids: BTreeMap<String, Svid>,
}

/// The control plane's mutable core.
#[derive(Debug)]
pub struct ControlPlane {
    shared: Shared,
    ca: Ca,
    clock: Arc<dyn Clock>,
    filter_module: PathBuf,
    state: Mutex<State>,
}

impl ControlPlane {
    /// Loads (or creates) the CA, mints every workload's SVID and publishes all snapshots.
    pub fn start(
        config: Config,
        filter_module: PathBuf,
        clock: Arc<dyn Clock>,
        shared: Shared,
    ) -> Result<(Self, Applied), ControlError> {
        let ca = Ca::load_or_init(&config.ca_params(), clock.as_ref())?;
        let state = State {
            config: Arc::new(config),
            svids: BTreeMap::new(),
        };
        let cp = Self {
            shared,
            ca,
            clock,
            filter_module,
            state: Mutex::new(state),
        };
        let config = cp.config();
        let applied = cp.apply_locked(config, |_, _| false)?;
        Ok((cp, applied))
    }

    /// The config currently served.
    pub fn config(&self) -> Arc<Config> {
        self.lock().config.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a new (already validated) config: SVIDs are kept for workloads whose
    /// SPIFFE ID is unchanged, only changed nodes are pushed, removed nodes are dropped.
    pub fn reload(&self, config: Config) -> Result<Applied, ControlError> {
        let current = self.config();
        if current.trust_domain != config.trust_domain
            || current.ca.state_dir != config.ca.state_dir
        {
            return Err(ControlError::CaSettingsChanged {
                what: format!(
                    "trust domain {} -> {}, state dir {} -> {}",
                    current.trust_domain,
                    config.trust_domain,
                    current.ca.state_dir.display(),
                    config.ca.state_dir.display()
                ),
            });
        }
        self.apply_locked(Arc::new(config), |_, _| false)
    }

    /// Renews every SVID at or past its refresh time and republishes (only SDS changes).
    pub fn renew_due(&self) -> Result<Applied, ControlError> {
        let now = self.clock.now();
        let config = self.config();
        self.apply_locked(config, |_, svid| {
            refresh_at(svid.not_before, svid.not_after) <= now
        })
    }

    /// The earliest refresh time over all SVIDs (`None` without workloads).
    pub fn next_renewal(&self) -> Option<SystemTime> {
        self.lock()
            .svids
            .values()
            .map(|s| refresh_at(s.not_before, s.not_after))
            .min()
    }

    /// Builds every node's snapshot from `config` (re-minting SVIDs that are missing,
    /// whose ID changed, or that `renew` selects), then publishes all or nothing.
    fn apply_locked(
        &self,
        config: Arc<Config>,
        renew: impl Fn(&str, &Svid) -> bool,
    ) -> Result<Applied, ControlError> {
        let mut state = self.lock();
        let bundle = self.ca.bundle();
        let mut svids = BTreeMap::new();
        let mut minted = 0;
        for w in &config.workloads {
            let keep = state
                .svids
                .get(&w.name)
                .filter(|s| s.id == w.spiffe_id && !renew(&w.name, s))
                .cloned();
            let svid = match keep {
                Some(s) => s,
                None => {
                    let params = SvidParams {
                        id: w.spiffe_id.clone(),
                        ttl: config.ca.svid_ttl,
                    };
                    let s = self.ca.mint(&params, self.clock.as_ref())?;
                    self.shared.metrics.svid_issued();
                    minted += 1;
                    tracing::info!(workload = %w.name, id = %w.spiffe_id, serial = %s.serial_hex, "SVID issued");
                    s
                }
            };
            svids.insert(w.name.clone(), svid);
        }
        let mut snapshots: Vec<(NodeId, Snapshot)> = Vec::new();
        for w in &config.workloads {
            let inputs = NodeInputs {
                config: &config,
                workload: w,
                svid: &svids[&w.name],
                bundle: &bundle,
                filter_module: &self.filter_module,
            };
            snapshots.push((
                NodeId::new(w.node_id.clone()),
                build_node_snapshot(&inputs)?,
            ));
        }
        let mut applied = Applied {
            minted,
            ..Default::default()
        };
        let keep: Vec<&NodeId> = snapshots.iter().map(|(n, _)| n).collect();
        for old in self.shared.cache.nodes() {
            if !keep.contains(&&old) {
                self.shared.cache.remove(&old);
                applied.removed.push(old);
            }
        }
        for (node, snap) in snapshots {
            if self.shared.cache.set(&node, snap) {
                self.shared.metrics.snapshot_published();
                applied.changed.push(node);
            }
        }
        state.config = config;
        state.svids = svids;
        Ok(applied)
    }
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
