//! Control plane tests: start, renewal at half life, reloads (changed, removed, refused).

use std::path::Path;

use super::publish::build_all;
use super::*;
use crate::config::Workload;
use crate::xds::types::ResourceType;

use crate::test_support::{sample_mesh as mesh, ManualClock};

#[test]
fn renewal_at_half_life_changes_only_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let start = SystemTime::now();
    let clock = Arc::new(ManualClock::at(start));
    let sh = XdsHandles::default();
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
    let sh = XdsHandles::default();
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
    let sh = XdsHandles::default();
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

#[test]
fn a_renewal_pushes_only_the_nodes_whose_svid_changed() {
    let dir = tempfile::tempdir().unwrap();
    let start = SystemTime::now();
    let clock = Arc::new(ManualClock::at(start));
    let sh = XdsHandles::default();
    let (cp, _) = ControlPlane::start(
        mesh(dir.path()),
        "/m.wasm".into(),
        clock.clone(),
        sh.clone(),
    )
    .unwrap();
    // Move to the earliest renewal point: exactly the SVIDs due then are renewed.
    let due = cp.next_renewal().unwrap();
    *clock.0.lock().unwrap() = due;
    let renewed = cp.renew_due().unwrap();
    assert!(renewed.minted >= 1);
    assert_eq!(
        renewed.changed.len(),
        renewed.minted,
        "one pushed node per renewed SVID"
    );
    // A reload with a new config object rebuilds everything (and changes nothing).
    let again = cp.reload(mesh(dir.path())).unwrap();
    assert!(again.changed.is_empty(), "{again:?}");
}

#[test]
fn snapshots_built_in_parallel_keep_the_workload_order_and_fail_as_a_whole() {
    let cfg = mesh(Path::new("/unused"));
    let many: Vec<&Workload> = cfg.workloads.iter().cycle().take(2000).collect();
    let names = build_all(&many, |w| Ok(w.name.clone())).unwrap();
    let want: Vec<String> = many.iter().map(|w| w.name.clone()).collect();
    assert_eq!(names, want);
    let err = build_all(&many, |w| {
        if w.name == "database" {
            Err(ResourceError::UnknownUpstream {
                workload: w.name.clone(),
                upstream: "x".into(),
            })
        } else {
            Ok(())
        }
    });
    assert!(err.is_err());
}
