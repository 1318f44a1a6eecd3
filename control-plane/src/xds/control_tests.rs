//! Control plane tests: start, renewal at half life, reloads (changed, removed, refused).

use std::path::Path;
use std::sync::Mutex as StdMutex;

use super::*;
use crate::xds::cache::Cache;
use crate::xds::metrics::Metrics;
use crate::xds::server::AllowAnyCaller;
use crate::xds::status::StatusRegistry;
use crate::xds::types::ResourceType;

/// A clock the test moves by hand.
#[derive(Debug)]
struct ManualClock(StdMutex<SystemTime>);

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

fn shared() -> Shared {
    Shared {
        cache: Arc::new(Cache::new()),
        metrics: Arc::new(Metrics::default()),
        status: Arc::new(StatusRegistry::default()),
        authorizer: Arc::new(AllowAnyCaller),
    }
}

fn mesh(state: &Path) -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    let mut cfg = crate::config::load(&root).unwrap_or_else(|d| panic!("{d}"));
    cfg.ca.state_dir = state.to_path_buf();
    cfg
}

#[test]
fn refresh_is_at_half_the_lifetime() {
    let nb = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    let na = nb + Duration::from_secs(3600);
    assert_eq!(refresh_at(nb, na), nb + Duration::from_secs(1800));
    assert_eq!(
        refresh_at(na, nb),
        na,
        "inverted validity refreshes at once"
    );
}

#[test]
fn renewal_at_half_life_changes_only_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let start = SystemTime::now();
    let clock = Arc::new(ManualClock(StdMutex::new(start)));
    let sh = shared();
    let (cp, applied) = ControlPlane::start(
        mesh(dir.path()),
        "/m.wasm".into(),
        clock.clone(),
        sh.clone(),
    )
    .unwrap();
    assert_eq!(applied.minted, 3);
    let node = NodeId::new("backend-sidecar");
    let before = sh.cache.get(&node).unwrap();
    assert_eq!(cp.renew_due().unwrap().minted, 0, "nothing due yet");
    let due = cp.next_renewal().unwrap();
    let ttl = cp.config().ca.svid_ttl;
    assert!(
        due >= start + ttl * 45 / 100 - Duration::from_secs(31) && due <= start + ttl * 55 / 100
    );
    // Past 55 % of the life every SVID is due, whatever its jitter.
    *clock.0.lock().unwrap() = start + ttl * 56 / 100;
    let renewed = cp.renew_due().unwrap();
    assert_eq!(renewed.minted, 3);
    let after = sh.cache.get(&node).unwrap();
    assert_eq!(before.changed_types(&after), vec![ResourceType::Secret]);
    assert!(cp.next_renewal().unwrap() > due);
}

#[test]
fn a_reload_pushes_only_changed_nodes_and_drops_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let sh = shared();
    let cfg = mesh(dir.path());
    let (cp, _) = ControlPlane::start(
        cfg.clone(),
        "/m.wasm".into(),
        Arc::new(crate::identity::SystemClock),
        sh.clone(),
    )
    .unwrap();
    let mut next = cfg.clone();
    next.workloads.retain(|w| w.name != "database");
    for w in &mut next.workloads {
        w.upstreams.retain(|u| u.workload != "database");
    }
    let applied = cp.reload(next).unwrap();
    assert_eq!(applied.minted, 0, "SVIDs of unchanged workloads are kept");
    assert_eq!(applied.removed, vec![NodeId::new("database-sidecar")]);
    assert_eq!(
        applied.changed,
        vec![
            NodeId::new("backend-sidecar"),
            NodeId::new("frontend-sidecar")
        ]
    );
    assert!(sh.cache.get(&NodeId::new("database-sidecar")).is_none());
    assert!(
        cp.reload(cp.config().as_ref().clone())
            .unwrap()
            .changed
            .is_empty(),
        "same config: no push"
    );
}

#[test]
fn a_trust_domain_change_is_refused_and_the_last_good_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let sh = shared();
    let cfg = mesh(dir.path());
    let (cp, _) = ControlPlane::start(
        cfg.clone(),
        "/m.wasm".into(),
        Arc::new(crate::identity::SystemClock),
        sh.clone(),
    )
    .unwrap();
    let before = sh.cache.get(&NodeId::new("frontend-sidecar")).unwrap();
    let mut next = cfg;
    next.trust_domain = "other.org".parse().unwrap();
    assert!(matches!(
        cp.reload(next),
        Err(ControlError::CaSettingsChanged { .. })
    ));
    assert_eq!(
        *sh.cache.get(&NodeId::new("frontend-sidecar")).unwrap(),
        *before
    );
}
