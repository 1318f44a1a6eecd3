//! The control loop's state: the CA, the current config and each workload's SVID, turned
//! into node snapshots and published to the cache. Every change (startup, config reload,
//! SVID renewal) goes through one path: build every node's snapshot first, publish only
//! if all succeed, so a bad change never half-applies and the last good keeps serving.
//!
//! The CA is an [`Authority`] (current, next, retired CAs); its rotation steps and the
//! periodic tick live in `rotation.rs`. SVIDs renew at 45–55 % of their life
//! (`renewal.rs`); a failed mint keeps the still-valid SVID and retries with backoff.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::renewal::{renew_at, Failing};
use super::resources::{build_node_snapshot, FilterModules, NodeInputs, ResourceError};
use super::server::Shared;
use super::snapshot::Snapshot;
use super::types::{NodeId, ResourceType};
use crate::config::{Config, Workload};
use crate::identity::{Authority, Ca, CaError, Clock, Svid, SvidParams, TrustBundle};

/// How many (SDS version, bundle sequence) pairs are remembered per node to map an ACKed
/// version back to the bundle it carried. A node further behind counts as lagging.
const PUBLISHED_HISTORY: usize = 64;

/// Why a change could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The CA could not be loaded or could not sign.
    #[error("certificate authority: {0}")]
    Ca(#[from] CaError),
    /// A node's resources could not be built.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// A response for `workload`'s sidecar would exceed the ADS message limit; the
    /// change is refused (the last good config keeps serving).
    #[error("workload `{workload}`: {detail}")]
    Oversized {
        /// The workload.
        workload: String,
        /// Which type and resource, and their sizes.
        detail: super::limits::Oversized,
    },
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
    /// Renewals that failed (the still-valid SVID was kept).
    pub failed: usize,
}

/// When an SVID should be renewed: at half its lifetime (SPIRE's and Istio's default).
pub fn refresh_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + life / 2
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) config: Arc<Config>,
    pub(super) svids: BTreeMap<String, Svid>,
    /// Serial of the CA that signed each workload's SVID.
    signers: BTreeMap<String, String>,
    /// Workloads whose renewal failed, with the next attempt.
    pub(super) failing: BTreeMap<String, Failing>,
    /// Per node, the SDS versions published and the bundle sequence each carried.
    pub(super) published: HashMap<NodeId, VecDeque<(String, u64)>>,
    /// Serials of SVIDs already warned about as close to expiry (warn once each).
    pub(super) warned: std::collections::BTreeSet<String>,
    /// When a blocked automatic activation was last warned about.
    pub(super) blocked_warned_at: Option<SystemTime>,
    /// Bundle sequence the published snapshots were built with (`None` before the first).
    built_sequence: Option<u64>,
    /// Nodes a forced activation left behind, until they ACK the bundle sequence below.
    pub(super) left_behind: Vec<String>,
    /// The bundle sequence the left-behind nodes have to ACK.
    pub(super) left_behind_sequence: Option<u64>,
    /// The longest TTL of SVIDs minted outside the xDS snapshots (serving certificate,
    /// Workload API), for the activation deadline.
    pub(super) other_svid_ttl: Duration,
}

/// The control plane's mutable core. Lock order: `state` before `authority`.
#[derive(Debug)]
pub struct ControlPlane {
    pub(super) shared: Shared,
    pub(super) authority: Mutex<Authority>,
    pub(super) clock: Arc<dyn Clock>,
    filter_modules: FilterModules,
    pub(super) state: Mutex<State>,
    /// When this process started serving: until nodes had time to reconnect, a node not
    /// yet connected cannot be told from one that never ACKed (see `rotation.rs`).
    pub(super) started_at: std::time::SystemTime,
}

impl ControlPlane {
    /// Loads (or creates) the CA, mints every workload's SVID and publishes all snapshots.
    pub fn start(
        config: Config,
        filter_modules: FilterModules,
        clock: Arc<dyn Clock>,
        shared: Shared,
    ) -> Result<(Self, Applied), ControlError> {
        let authority = Authority::load_or_init(&config.ca_params(), clock.as_ref())?;
        let state = State {
            built_sequence: None,
            config: Arc::new(config),
            svids: BTreeMap::new(),
            signers: BTreeMap::new(),
            failing: BTreeMap::new(),
            published: HashMap::new(),
            warned: Default::default(),
            blocked_warned_at: None,
            left_behind: Vec::new(),
            left_behind_sequence: None,
            other_svid_ttl: Duration::ZERO,
        };
        let cp = Self {
            shared,
            authority: Mutex::new(authority),
            started_at: clock.now(),
            clock,
            filter_modules,
            state: Mutex::new(state),
        };
        let config = cp.config();
        let applied = cp.apply_locked(config, |_, _| false)?;
        Ok((cp, applied))
    }

    /// Declares the TTL of SVIDs the active CA signs outside the xDS snapshots (the
    /// serving certificate, the Workload API), so activation keeps room for them.
    pub fn also_signs_for(&self, ttl: Duration) {
        let mut state = self.lock();
        state.other_svid_ttl = state.other_svid_ttl.max(ttl);
    }

    /// The filter modules snapshots point Envoy at.
    pub fn filter_modules(&self) -> &FilterModules {
        &self.filter_modules
    }

    /// The CA that signs SVIDs now (shared with the Workload API). Changes on activation.
    pub fn ca(&self) -> Arc<Ca> {
        self.authority().active()
    }

    /// The trust bundle: every CA in it (current, prepared next, retired until their
    /// SVIDs expire), with a sequence that increases whenever that set changes.
    pub fn bundle(&self) -> TrustBundle {
        self.authority().bundle()
    }

    pub(super) fn authority(&self) -> std::sync::MutexGuard<'_, Authority> {
        self.authority.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The config currently served.
    pub fn config(&self) -> Arc<Config> {
        self.lock().config.clone()
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
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

    /// Renews every SVID at or past its renewal point (45–55 % of its life, see
    /// `renewal.rs`) or signed by a CA that no longer signs, unless a failed attempt's
    /// backoff has not passed; republishes (only SDS changes).
    pub fn renew_due(&self) -> Result<Applied, ControlError> {
        let config = self.config();
        self.apply_locked(config, |_, _| false)
    }

    /// Re-mints every SVID now (after a CA activation).
    pub(super) fn renew_all(&self) -> Result<Applied, ControlError> {
        let config = self.config();
        self.apply_locked(config, |_, _| true)
    }

    /// The earliest renewal time over all SVIDs (`None` without workloads).
    pub fn next_renewal(&self) -> Option<SystemTime> {
        let state = self.lock();
        state
            .svids
            .iter()
            .map(|(name, s)| {
                let at = renew_at(name, &s.serial_hex, s.not_before, s.not_after);
                match state.failing.get(name) {
                    Some(f) => at.max(f.retry_at),
                    None => at,
                }
            })
            .min()
    }

    /// Builds every node's snapshot from `config` (re-minting SVIDs that are missing,
    /// whose ID changed, that are due, signed by a CA that no longer signs, or that
    /// `force` selects), then publishes all or nothing. A failed renewal of a still-valid
    /// SVID keeps it and schedules a retry.
    fn apply_locked(
        &self,
        config: Arc<Config>,
        force: impl Fn(&str, &Svid) -> bool,
    ) -> Result<Applied, ControlError> {
        let mut state = self.lock();
        let (ca, bundle) = {
            let a = self.authority();
            (a.active(), a.bundle())
        };
        let now = self.clock.now();
        let mut svids = BTreeMap::new();
        let mut signers = BTreeMap::new();
        let (mut minted, mut failed) = (0, 0);
        let mut hard: Option<ControlError> = None;
        for w in &config.workloads {
            let held = state
                .svids
                .get(&w.name)
                .filter(|s| s.id == w.spiffe_id)
                .cloned();
            let signer = state.signers.get(&w.name).cloned();
            let failing = state.failing.get(&w.name).copied();
            let want_new = match &held {
                None => true,
                Some(s) => {
                    let due = renew_at(&w.name, &s.serial_hex, s.not_before, s.not_after) <= now
                        || signer.as_ref().is_some_and(|x| x != ca.serial_hex())
                        || force(&w.name, s);
                    due && failing.is_none_or(|f| f.retry_at <= now)
                }
            };
            if !want_new {
                if let Some(s) = held {
                    svids.insert(w.name.clone(), s);
                    signers.insert(w.name.clone(), signer.unwrap_or_default());
                }
                continue;
            }
            let params = SvidParams {
                id: w.spiffe_id.clone(),
                ttl: config.ca.svid_ttl,
            };
            match self.mint(&ca, &params) {
                Ok(s) => {
                    minted += 1;
                    state.failing.remove(&w.name);
                    tracing::info!(workload = %w.name, id = %w.spiffe_id, serial = %s.serial_hex, ca = %ca.serial_hex(), "SVID issued");
                    svids.insert(w.name.clone(), s);
                    signers.insert(w.name.clone(), ca.serial_hex().to_string());
                }
                Err(e) => match held.filter(|s| s.not_after > now) {
                    Some(s) => {
                        failed += 1;
                        self.shared.metrics.svid_renewal_failed();
                        let f = Failing::after_failure(failing, now);
                        tracing::warn!(workload = %w.name, failures = f.failures, retry_in_s = f.retry_at.duration_since(now).unwrap_or_default().as_secs(), "SVID renewal failed, the still-valid SVID is kept: {e}");
                        state.failing.insert(w.name.clone(), f);
                        svids.insert(w.name.clone(), s);
                        signers.insert(w.name.clone(), signer.unwrap_or_default());
                    }
                    None => {
                        // Nothing usable to keep: count it, say so loudly, retry with
                        // backoff (not every tick), and never hand out an expired SVID.
                        self.shared.metrics.svid_renewal_failed();
                        let f = Failing::after_failure(failing, now);
                        tracing::error!(workload = %w.name, failures = f.failures, "SVID renewal failed and the workload holds no valid SVID: {e}");
                        state.failing.insert(w.name.clone(), f);
                        hard.get_or_insert(e);
                    }
                },
            }
        }

        if let Some(e) = hard {
            return Err(e);
        }
        // Same config object and bundle: only nodes whose SVID changed need new resources
        // (a renewal round touches a few nodes per tick, not all of them).
        let same_inputs =
            Arc::ptr_eq(&state.config, &config) && state.built_sequence == Some(bundle.sequence);
        let todo: Vec<&Workload> = config
            .workloads
            .iter()
            .filter(|w| {
                !same_inputs
                    || state.svids.get(&w.name).map(|s| &s.serial_hex)
                        != svids.get(&w.name).map(|s| &s.serial_hex)
            })
            .collect();
        let build = |w: &Workload| -> Result<(NodeId, Snapshot), ResourceError> {
            let inputs = NodeInputs {
                config: &config,
                workload: w,
                svid: &svids[&w.name],
                bundle: &bundle,
                filter_module: self.filter_modules.for_config(&config),
            };
            Ok((
                NodeId::new(w.node_id.clone()),
                build_node_snapshot(&inputs)?,
            ))
        };
        let snapshots = build_all(&todo, build)?;
        // Never publish what a sidecar cannot receive: it would reset its stream for ever.
        for ((node, snap), w) in snapshots.iter().zip(&todo) {
            if let Some(detail) = super::limits::oversized(snap, super::limits::ADS_MESSAGE_LIMIT) {
                self.shared.metrics.oversized_refused();
                tracing::error!(%node, t = %detail.t, resource = %detail.resource, resource_bytes = detail.resource_bytes, response_bytes = detail.response_bytes, limit = detail.limit, "refusing to publish: a response would exceed the ADS message limit; the last good config keeps serving");
                return Err(ControlError::Oversized {
                    workload: w.name.clone(),
                    detail,
                });
            }
        }
        let mut applied = Applied {
            minted,
            failed,
            ..Default::default()
        };
        let keep: HashSet<&str> = config
            .workloads
            .iter()
            .map(|w| w.node_id.as_str())
            .collect();
        for old in self.shared.cache.nodes() {
            if !keep.contains(old.as_str()) {
                self.shared.cache.remove(&old);
                applied.removed.push(old);
            }
        }
        for (node, snap) in snapshots {
            let sds = snap.version(ResourceType::Secret).to_string();
            let history = state.published.entry(node.clone()).or_default();
            if history
                .back()
                .is_none_or(|(v, seq)| *v != sds || *seq != bundle.sequence)
            {
                history.push_back((sds, bundle.sequence));
                if history.len() > PUBLISHED_HISTORY {
                    history.pop_front();
                }
            }
            if self.shared.cache.set(&node, snap) {
                self.shared.metrics.snapshot_published();
                applied.changed.push(node);
            }
        }
        state.published.retain(|n, _| keep.contains(n.as_str()));
        state.failing.retain(|n, _| svids.contains_key(n));
        state.built_sequence = Some(bundle.sequence);
        state.config = config;
        state.svids = svids;
        state.signers = signers;
        Ok(applied)
    }

    /// Mints with `ca` and records in the state file how long its SVIDs stay valid
    /// before the SVID is handed to anyone (so a retired CA never leaves the bundle early).
    fn mint(&self, ca: &Ca, params: &SvidParams) -> Result<Svid, ControlError> {
        let s = ca.mint(params, self.clock.as_ref())?;
        self.authority().persist_signing(self.clock.as_ref())?;
        self.shared.metrics.svid_issued();
        Ok(s)
    }
}

/// Builds every node's snapshot, split over the available cores when there are many
/// (a full rebuild of thousands of nodes is the bulk of a config push). All or nothing.
fn build_all<T: Send>(
    workloads: &[&Workload],
    build: impl Fn(&Workload) -> Result<T, ResourceError> + Sync,
) -> Result<Vec<T>, ResourceError> {
    const PER_THREAD: usize = 256;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(workloads.len().div_ceil(PER_THREAD))
        .max(1);
    if threads == 1 {
        return workloads.iter().map(|w| build(w)).collect();
    }
    let chunk = workloads.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = workloads
            .chunks(chunk)
            .map(|part| {
                scope.spawn(|| part.iter().map(|w| build(w)).collect::<Result<Vec<T>, _>>())
            })
            .collect();
        let mut out = Vec::with_capacity(workloads.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
