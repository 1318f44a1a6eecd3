//! The control plane's core: the CA ([`Authority`]: current, next, retired CAs), the
//! config served, and each workload's SVID (the SVID book), turned into node snapshots
//! and written to the xDS cache. It sits above `xds/` (resources, snapshot, cache, the
//! ADS server) and below the Workload API, the admin endpoint and the CLI; nothing in
//! `xds/` imports it.
//!
//! Every change (startup, config reload, SVID renewal, CA rotation step) goes through one
//! path, [`ControlPlane::apply`]: renew what is due (`book.rs`), build every changed
//! node's snapshot (`publish.rs`), publish only if all succeed, so a bad change never
//! half-applies and the last good keeps serving.
//!
//! The rest of the core: CA rotation steps and node ACKs (`rotation.rs`), the periodic
//! [`ControlPlane::tick`] and the expiry gauges (`tick.rs`), the reload transaction
//! (`reload.rs`), watching the config directory (`watch.rs`) and keeping the xDS serving
//! certificate fresh (`serving_cert.rs`). Every renewal follows `identity::renewal`.

mod apply;
mod book;
mod federated;
mod instances;
mod publish;
pub mod reload;
mod rotation;
pub mod serving_cert;
mod tick;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::identity::renewal::{renew_at, Failing};
use crate::identity::{Authority, Ca, CaError, Clock, Svid, TrustBundle};
use crate::xds::cache::Cache;
use crate::xds::metrics::Metrics;
use crate::xds::resources::{FilterModules, ResourceError};
use crate::xds::status::StatusRegistry;
use crate::xds::types::NodeId;

pub use instances::{INSTANCE_LINGER, MAX_INSTANCES_PER_WORKLOAD};
pub use rotation::{CaOpError, RECONNECT_GRACE};
pub use tick::Tick;

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
        detail: crate::xds::limits::Oversized,
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

/// The xDS side the core works with: it writes snapshots to the cache, counts in the
/// metrics, and reads the ACK state the stream tasks record (for CA rotation). The ADS
/// server is built over the same three (go-control-plane's shape: cache plus callbacks).
#[derive(Debug, Clone, Default)]
pub struct XdsHandles {
    /// Snapshots per node.
    pub cache: Arc<Cache>,
    /// Counters and gauges.
    pub metrics: Arc<Metrics>,
    /// ACK/NACK state per node, written by the stream tasks.
    pub status: Arc<StatusRegistry>,
    /// The audit trail (disabled by default).
    pub audit: crate::audit::AuditSink,
}

/// The SVID book: each instance's current SVID (by its node key, see `xds::node`), who
/// signed it and failed renewals.
#[derive(Debug, Default)]
pub(crate) struct Book {
    pub(crate) svids: BTreeMap<NodeId, Svid>,
    /// Serial of the CA that signed each instance's SVID.
    pub(crate) signers: BTreeMap<NodeId, String>,
    /// Instances whose renewal failed, with the next attempt.
    pub(crate) failing: BTreeMap<NodeId, Failing>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) config: Arc<Config>,
    pub(crate) book: Book,
    /// Per node, the SDS versions published and the bundle sequence each carried.
    pub(crate) published: HashMap<NodeId, VecDeque<(String, u64)>>,
    /// Serials of SVIDs already warned about as close to expiry (warn once each).
    pub(crate) warned: BTreeSet<String>,
    /// When a blocked automatic activation was last warned about.
    pub(crate) blocked_warned_at: Option<SystemTime>,
    /// Bundle sequence the published snapshots were built with (`None` before the first).
    pub(crate) built_sequence: Option<u64>,
    /// Nodes a forced activation left behind, until they ACK the bundle sequence below.
    pub(crate) left_behind: Vec<String>,
    /// The bundle sequence the left-behind nodes have to ACK.
    pub(crate) left_behind_sequence: Option<u64>,
    /// The longest TTL of SVIDs minted outside the xDS snapshots (serving certificate,
    /// Workload API), for the activation deadline.
    pub(crate) other_svid_ttl: Duration,
    /// Instances created when their sidecar connected (see `instances.rs`).
    pub(crate) instances: BTreeMap<NodeId, instances::Instance>,
    /// Per workload (name), the snapshot its instances share.
    pub(crate) bases: HashMap<String, Arc<crate::xds::snapshot::Snapshot>>,
    /// When gone instances were last looked for.
    pub(crate) swept_at: Option<SystemTime>,
}

/// The control plane's mutable core. Lock order: `state` before `authority`.
#[derive(Debug)]
pub struct ControlPlane {
    pub(crate) xds: XdsHandles,
    pub(crate) authority: Mutex<Authority>,
    pub(crate) clock: Arc<dyn Clock>,
    filter_modules: FilterModules,
    pub(crate) state: Mutex<State>,
    /// When this process started serving: until nodes had time to reconnect, a node not
    /// yet connected cannot be told from one that never ACKed (see `rotation.rs`).
    pub(crate) started_at: SystemTime,
    /// Bundles of federated trust domains (see `federated.rs`).
    pub(crate) federated: Mutex<Arc<Vec<crate::identity::ForeignBundle>>>,
}

impl ControlPlane {
    /// Loads (or creates) the CA, mints every workload's SVID and publishes all snapshots.
    pub fn start(
        config: Config,
        filter_modules: FilterModules,
        clock: Arc<dyn Clock>,
        xds: XdsHandles,
    ) -> Result<(Self, Applied), ControlError> {
        let authority = Authority::load_or_init(&config.ca_params(), clock.as_ref())?;
        let state = State {
            built_sequence: None,
            config: Arc::new(config),
            book: Book::default(),
            published: HashMap::new(),
            warned: BTreeSet::new(),
            blocked_warned_at: None,
            left_behind: Vec::new(),
            left_behind_sequence: None,
            other_svid_ttl: Duration::ZERO,
            instances: BTreeMap::new(),
            bases: HashMap::new(),
            swept_at: None,
        };
        let cp = Self {
            xds,
            authority: Mutex::new(authority),
            started_at: clock.now(),
            clock,
            filter_modules,
            state: Mutex::new(state),
            federated: Mutex::default(),
        };
        let config = cp.config();
        let applied = cp.apply(config, |_, _| false)?;
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

    /// The xDS side this core writes to (cache, metrics, ACK state).
    pub fn xds(&self) -> &XdsHandles {
        &self.xds
    }

    /// The injected clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
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

    pub(crate) fn authority(&self) -> MutexGuard<'_, Authority> {
        self.authority.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The config currently served.
    pub fn config(&self) -> Arc<Config> {
        self.lock().config.clone()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
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
        self.apply(Arc::new(config), |_, _| false)
    }

    /// Renews every SVID at or past its renewal point (45–55 % of its life, see
    /// `identity::renewal`) or signed by a CA that no longer signs, unless a failed
    /// attempt's backoff has not passed; republishes (only SDS changes).
    pub fn renew_due(&self) -> Result<Applied, ControlError> {
        let config = self.config();
        self.apply(config, |_, _| false)
    }

    /// Re-mints every SVID now (after a CA activation).
    pub(crate) fn renew_all(&self) -> Result<Applied, ControlError> {
        let config = self.config();
        self.apply(config, |_, _| true)
    }

    /// The earliest renewal time over all SVIDs (`None` without workloads).
    pub fn next_renewal(&self) -> Option<SystemTime> {
        let state = self.lock();
        let book = &state.book;
        book.svids
            .iter()
            .map(|(name, s)| {
                let at = renew_at(name.as_str(), &s.serial_hex, s.not_before, s.not_after);
                match book.failing.get(name) {
                    Some(f) => at.max(f.retry_at),
                    None => at,
                }
            })
            .min()
    }
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "instances_tests.rs"]
mod instances_tests;
