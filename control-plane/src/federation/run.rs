//! The federation task: follows `federation.yaml` through config reloads (relationships
//! added, changed, removed without a restart), fetches each foreign bundle when its
//! refresh is due, keeps the last good one through failures (persisted in the state
//! directory, so it survives restarts), and hands the bundles to the core. Its status is
//! served at `/federation` on the admin endpoint (`warden federation status`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::document::{self, ForeignBundle};
use super::fetch::{self, Trust};
use super::state::{Outcome, RefreshState};
use crate::config::federation::{FederationSettings, PeerAuth, Relationship};
use crate::config::Config;
use crate::identity::unix_secs;
use crate::plane::ControlPlane;

/// One relationship and its refresh state.
#[derive(Debug)]
struct Peer {
    config: Relationship,
    state: RefreshState,
    warned_expiry: bool,
    /// A fetch is running.
    in_flight: bool,
    /// Bumped when the relationship's config changes (a running fetch's result is then
    /// dropped).
    generation: u64,
}

/// A finished fetch.
#[derive(Debug)]
struct Fetched {
    td: String,
    generation: u64,
    result: Result<hyper::body::Bytes, fetch::FetchError>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The config object the settings were read with (a reload makes a new one).
    seen: Option<Arc<Config>>,
    floor: Duration,
    peers: BTreeMap<String, Peer>,
    settings_error: Option<String>,
}

/// The federation task's state, shared with the admin endpoint.
#[derive(Debug)]
pub struct Federation {
    cp: Arc<ControlPlane>,
    inner: Mutex<Inner>,
}

/// What `/federation` shows per relationship.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RelationshipStatus {
    pub trust_domain: String,
    pub url: String,
    pub profile: String,
    /// Sequence of the bundle in use (`None`: no bundle yet).
    pub sequence: Option<u64>,
    /// X.509 authorities in the bundle in use.
    pub authorities: usize,
    /// Unix seconds of the last successful fetch.
    pub last_refresh: Option<u64>,
    /// Unix seconds of the next attempt.
    pub next_refresh: u64,
    pub failures: u64,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Unix seconds when the bundle's earliest CA expires.
    pub expires: Option<u64>,
}

impl Federation {
    /// A task over `cp`; nothing happens until [`Federation::run`].
    pub fn new(cp: Arc<ControlPlane>) -> Arc<Self> {
        Arc::new(Self {
            cp,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every relationship's status, by trust domain.
    pub fn status(&self) -> Vec<RelationshipStatus> {
        let inner = self.lock();
        inner
            .peers
            .values()
            .map(|p| RelationshipStatus {
                trust_domain: p.config.trust_domain.to_string(),
                url: p.config.url.to_string(),
                profile: match p.config.auth {
                    PeerAuth::Spiffe { .. } => "https_spiffe",
                    PeerAuth::Web { .. } => "https_web",
                }
                .to_owned(),
                sequence: p.state.current.as_ref().map(|c| c.bundle.sequence),
                authorities: p
                    .state
                    .current
                    .as_ref()
                    .map_or(0, |c| c.bundle.x509_authorities_der.len()),
                last_refresh: p.state.last_refresh.map(unix_secs),
                next_refresh: unix_secs(p.state.next_refresh),
                failures: p.state.failures,
                consecutive_failures: p.state.consecutive_failures,
                last_error: p.state.last_error.clone(),
                expires: p
                    .state
                    .current
                    .as_ref()
                    .and_then(|c| c.expires)
                    .map(unix_secs),
            })
            .collect()
    }

    /// Runs until dropped: once a second, follows config reloads and starts the fetches
    /// that are due, each in its own task (a peer that never answers holds only its own
    /// relationship); results are applied as they arrive.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel::<Fetched>();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let changed = self.follow_config();
                    self.start_due(&done_tx);
                    if changed {
                        self.publish();
                    }
                }
                Some(fetched) = done.recv() => {
                    if self.complete(fetched) {
                        self.publish();
                    }
                }
            }
        }
    }

    /// Re-reads `federation.yaml` when the core's config changed. True when the set of
    /// bundles may have changed.
    fn follow_config(&self) -> bool {
        let config = self.cp.config();
        let mut inner = self.lock();
        if inner.seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &config)) {
            return false;
        }
        inner.seen = Some(config.clone());
        let settings = match FederationSettings::load(&config) {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                let msg = e.into_diagnostics().to_string();
                tracing::error!("federation.yaml: {msg}; keeping the current relationships");
                inner.settings_error = Some(msg);
                return false;
            }
        };
        inner.settings_error = None;
        inner.floor = settings.refresh_floor;
        let now = self.cp.clock().now();
        let state_dir = state_dir(&config);
        let mut peers = BTreeMap::new();
        for rel in settings.relationships {
            let td = rel.trust_domain.to_string();
            let peer = match inner.peers.remove(&td) {
                Some(mut p) => {
                    if p.config != rel {
                        tracing::info!(trust_domain = %td, "federation relationship changed");
                        p.state.next_refresh = now;
                        p.config = rel;
                        p.generation = rand::random();
                    }
                    p
                }
                None => {
                    tracing::info!(trust_domain = %td, url = %rel.url, "federation relationship added");
                    let initial = initial_bundle(&rel, &state_dir);
                    Peer {
                        config: rel,
                        state: RefreshState::new(initial, now),
                        warned_expiry: false,
                        in_flight: false,
                        // Random, so a fetch of an earlier relationship with this
                        // trust domain (removed, then added again) never applies.
                        generation: rand::random(),
                    }
                }
            };
            peers.insert(td, peer);
        }
        for td in inner.peers.keys() {
            tracing::info!(trust_domain = %td, "federation relationship removed");
        }
        inner.peers = peers;
        true
    }

    /// Spawns a fetch for every due relationship that has none in flight.
    fn start_due(&self, done: &tokio::sync::mpsc::UnboundedSender<Fetched>) {
        let now = self.cp.clock().now();
        let mut inner = self.lock();
        for (td, peer) in inner.peers.iter_mut() {
            if peer.in_flight || !peer.state.due(now) {
                continue;
            }
            peer.in_flight = true;
            let (td, url, trust, generation) = (
                td.clone(),
                peer.config.url.clone(),
                trust(peer),
                peer.generation,
            );
            let done = done.clone();
            tokio::spawn(async move {
                let result = match trust {
                    Ok(trust) => fetch::fetch(&url, &trust).await,
                    Err(e) => Err(e),
                };
                let _ = done.send(Fetched {
                    td,
                    generation,
                    result,
                });
            });
        }
    }

    /// Applies one fetch's result. True when the bundle in use changed.
    fn complete(&self, fetched: Fetched) -> bool {
        let Fetched {
            td,
            generation,
            result,
        } = fetched;
        let now = self.cp.clock().now();
        let state_dir = state_dir(&self.cp.config());
        let metrics = self.cp.xds().metrics.clone();
        let mut inner = self.lock();
        let floor = inner.floor;
        let Some(peer) = inner.peers.get_mut(&td) else {
            return false;
        };
        peer.in_flight = false;
        if peer.generation != generation {
            // The relationship changed while the fetch ran; its next fetch is due now.
            return false;
        }
        let parsed = result.map_err(|e| e.to_string()).and_then(|bytes| {
            document::parse(&peer.config.trust_domain, &bytes)
                .map(|b| (b, bytes))
                .map_err(|e| e.to_string())
        });
        let jitter = rand::random::<f64>();
        let mut changed = false;
        match parsed.map(|(b, bytes)| (peer.state.fetched(b, now, floor, jitter), bytes)) {
            Ok((Ok(outcome), bytes)) => {
                let seq = peer.state.current.as_ref().map_or(0, |c| c.bundle.sequence);
                metrics.federation_refreshed(&td, seq);
                if let Some(exp) = peer.state.current.as_ref().and_then(|c| c.expires) {
                    metrics.federation_expires(&td, unix_secs(exp));
                }
                if outcome == Outcome::Updated {
                    tracing::info!(trust_domain = %td, sequence = seq, "federated bundle updated");
                    persist(&state_dir, &td, &bytes);
                    peer.warned_expiry = false;
                    changed = true;
                }
            }
            Ok((Err(refused), _)) => {
                metrics.federation_failed(&td);
                tracing::warn!(trust_domain = %td, "federated bundle refused: {refused}");
            }
            Err(e) => {
                metrics.federation_failed(&td);
                peer.state.failed(e.clone(), now, floor);
                tracing::warn!(trust_domain = %td, failures = peer.state.consecutive_failures, "fetching the federated bundle failed (last good bundle kept): {e}");
            }
        }
        if !peer.warned_expiry && peer.state.expiring_soon(now, floor) {
            peer.warned_expiry = true;
            tracing::warn!(trust_domain = %td, "a CA of the federated bundle expires soon and no newer bundle has been fetched");
        }
        changed
    }

    /// Hands the current bundles to the core (which republishes what changed).
    fn publish(&self) {
        let bundles: Vec<ForeignBundle> = self
            .lock()
            .peers
            .values()
            .filter_map(|p| p.state.current.clone())
            .collect();
        let cp = self.cp.clone();
        let result = tokio::task::block_in_place(|| cp.set_federated_bundles(bundles));
        if let Err(e) = result {
            tracing::error!("publishing federated bundles: {e}");
        }
    }
}

/// How to authenticate `peer`'s endpoint now.
fn trust(peer: &Peer) -> Result<Trust, fetch::FetchError> {
    match &peer.config.auth {
        PeerAuth::Spiffe { endpoint_id } => Ok(Trust::Spiffe {
            roots: peer
                .state
                .current
                .as_ref()
                .map(|c| c.bundle.x509_authorities_der.clone())
                .unwrap_or_default(),
            id: endpoint_id.clone(),
        }),
        PeerAuth::Web { ca_file } => {
            fetch::web_roots(ca_file.as_deref()).map(|r| Trust::Web { roots: Arc::new(r) })
        }
    }
}

fn state_dir(config: &Config) -> PathBuf {
    config.ca.state_dir.join("federation")
}

/// The persisted bundle (the last one fetched) if it parses, else the configured file.
fn initial_bundle(rel: &Relationship, state_dir: &std::path::Path) -> Option<ForeignBundle> {
    let td = &rel.trust_domain;
    let persisted = state_dir.join(format!("{td}.json"));
    let candidates = [Some(persisted), rel.bundle_file.clone()];
    let mut best: Option<ForeignBundle> = None;
    for path in candidates.into_iter().flatten() {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        match document::parse(td, &bytes) {
            Ok(b)
                if best
                    .as_ref()
                    .is_none_or(|o| b.bundle.sequence > o.bundle.sequence) =>
            {
                best = Some(b)
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(trust_domain = %td, path = %path.display(), "ignoring bundle: {e}")
            }
        }
    }
    best
}

fn persist(state_dir: &std::path::Path, td: &str, bytes: &[u8]) {
    let path = state_dir.join(format!("{td}.json"));
    let result = crate::fsutil::create_private_dir(state_dir)
        .and_then(|()| crate::fsutil::write_atomic(&path, bytes, 0o600));
    if let Err(e) = result {
        tracing::warn!(trust_domain = %td, path = %path.display(), "cannot persist the federated bundle: {e}");
    }
}

/// `GET /federation`: every relationship's status as JSON.
pub fn admin_router(federation: Arc<Federation>) -> axum::Router {
    axum::Router::new().route(
        "/federation",
        axum::routing::get(move || {
            let f = federation.clone();
            async move { axum::Json(f.status()) }
        }),
    )
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
