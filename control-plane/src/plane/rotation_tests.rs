//! CA rotation through the control plane: ACK-gated activation, automatic steps on the
//! tick with a hand-moved clock, renewal failures with backoff, restarts.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::Config;
use crate::plane::XdsHandles;
use crate::test_support::{sample_mesh, ManualClock};
use crate::xds::types::ResourceType;

/// The sample mesh with a 6000 s CA and 600 s SVIDs, state in `state`.
pub(super) fn mesh(state: &Path) -> Config {
    let mut cfg = sample_mesh(state);
    cfg.ca.ttl = Duration::from_secs(6000);
    cfg.ca.svid_ttl = Duration::from_secs(600);
    cfg
}

pub(super) fn start(state: &Path, clock: Arc<ManualClock>, sh: &XdsHandles) -> ControlPlane {
    ControlPlane::start(mesh(state), "/m.wasm".into(), clock, sh.clone())
        .unwrap()
        .0
}

const NODES: [&str; 3] = ["backend-sidecar", "database-sidecar", "frontend-sidecar"];

/// `node` connects and ACKs its current SDS version, as a stream task records it.
pub(super) fn ack(sh: &XdsHandles, node: &str) {
    let id = NodeId::new(node);
    let v = sh.cache.get(&id).unwrap().version(ResourceType::Secret);
    sh.status.acked(&id, ResourceType::Secret, v.as_str());
}

fn connect_all(sh: &XdsHandles) {
    for n in NODES {
        sh.status.connected(&NodeId::new(n), "sotw");
        ack(sh, n);
    }
}

#[test]
fn activation_waits_until_every_connected_node_acked_the_new_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(SystemTime::now()));
    let sh = XdsHandles::default();
    let cp = start(dir.path(), clock.clone(), &sh);
    connect_all(&sh);
    let old = cp.ca();
    let before = sh.cache.get(&NodeId::new("backend-sidecar")).unwrap();

    let st = cp.ca_prepare().unwrap();
    assert_eq!(st.bundle_sequence, 2);
    assert_eq!(st.activation_blocked_by, NODES.map(String::from).to_vec());
    let after = sh.cache.get(&NodeId::new("backend-sidecar")).unwrap();
    assert_eq!(before.changed_types(&after), vec![ResourceType::Secret]);
    assert_eq!(cp.bundle().x509_authorities_der.len(), 2);

    ack(&sh, "backend-sidecar");
    ack(&sh, "frontend-sidecar");
    match cp.ca_activate() {
        Err(CaOpError::Refused(r)) => {
            assert!(r.to_string().contains("database-sidecar"), "{r}");
            assert!(!r.to_string().contains("backend-sidecar"), "{r}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(cp.ca().serial_hex(), old.serial_hex(), "nothing changed");

    ack(&sh, "database-sidecar");
    let st = cp.ca_activate().unwrap();
    assert_ne!(cp.ca().serial_hex(), old.serial_hex());
    assert_eq!(st.retired[0].serial, old.serial_hex());
    // Every SVID was re-minted at once by the new CA.
    let new_ca = cp.ca();
    for svid in cp.lock().book.svids.values() {
        let leaf = crate::identity::ca::pem_certs(&svid.cert_chain_pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf[0]).unwrap();
        let ca_der = crate::identity::ca::pem_certs(new_ca.certificate_pem()).unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der[0]).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
    }
}

#[test]
fn a_disconnected_node_does_not_block_activation() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(SystemTime::now()));
    let sh = XdsHandles::default();
    let cp = start(dir.path(), clock, &sh);
    connect_all(&sh);
    cp.ca_prepare().unwrap();
    for n in ["backend-sidecar", "frontend-sidecar"] {
        ack(&sh, n);
    }
    sh.status.disconnected(&NodeId::new("database-sidecar"));
    assert!(cp.ca_status().activation_blocked_by.is_empty());
    cp.ca_activate().unwrap();
}

#[test]
fn the_tick_prepares_activates_and_retires_on_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now();
    let clock = Arc::new(ManualClock::at(t0));
    let sh = XdsHandles::default();
    let cp = start(dir.path(), clock.clone(), &sh);
    connect_all(&sh);
    let s = |n: u64| t0 + Duration::from_secs(n);
    clock.set(s(100));
    assert_eq!(cp.tick().step, None);
    clock.set(s(3001));
    assert_eq!(cp.tick().step, Some(Step::Prepare));
    clock.set(s(5001));
    assert_eq!(cp.tick().step, None, "nodes have not ACKed the new bundle");
    for n in NODES {
        ack(&sh, n);
    }
    assert_eq!(cp.tick().step, Some(Step::Activate));
    assert_eq!(
        cp.ca_status().phase,
        crate::identity::rotation::Phase::Activated
    );
    // The old CA's last SVIDs were minted at 5001 s at the latest (600 s life).
    clock.set(s(5001 + 599));
    assert_eq!(cp.tick().step, None);
    clock.set(s(5001 + 602));
    assert_eq!(cp.tick().step, Some(Step::Retire));
    assert_eq!(cp.bundle().x509_authorities_der.len(), 1);
    let metrics = sh.metrics.render();
    assert!(
        metrics.contains("warden_ca_rotation_steps_total 3"),
        "{metrics}"
    );
    assert!(metrics.contains("warden_ca_bundle_sequence 3"), "{metrics}");
}

#[test]
fn a_failed_renewal_keeps_the_valid_svid_and_retries_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let t0 = SystemTime::now();
    let clock = Arc::new(ManualClock::at(t0));
    let sh = XdsHandles::default();
    let cp = start(&state, clock.clone(), &sh);
    let serials: Vec<String> = cp
        .lock()
        .book
        .svids
        .values()
        .map(|s| s.serial_hex.clone())
        .collect();
    // The state directory breaks: recording the new SVIDs' validity fails, so they are
    // never handed out.
    let aside = dir.path().join("aside");
    std::fs::rename(&state, &aside).unwrap();
    std::fs::write(&state, "not a directory").unwrap();
    clock.set(t0 + Duration::from_secs(340));
    let t = cp.tick();
    assert_eq!((t.renewed.minted, t.renewed.failed), (0, 3));
    let kept: Vec<String> = cp
        .lock()
        .book
        .svids
        .values()
        .map(|s| s.serial_hex.clone())
        .collect();
    assert_eq!(kept, serials, "the still-valid SVIDs keep serving");
    assert_eq!(
        cp.next_renewal(),
        Some(t0 + Duration::from_secs(341)),
        "retry after 1 s"
    );
    clock.set(t0 + Duration::from_secs(341));
    assert_eq!(cp.tick().renewed.failed, 3);
    assert_eq!(
        cp.next_renewal(),
        Some(t0 + Duration::from_secs(343)),
        "then 2 s"
    );
    assert_eq!(sh.metrics.svid_renewal_failures(), 6);

    std::fs::remove_file(&state).unwrap();
    std::fs::rename(&aside, &state).unwrap();
    clock.set(t0 + Duration::from_secs(343));
    assert_eq!(cp.tick().renewed.minted, 3);
    assert!(cp.lock().book.failing.is_empty());
}

#[test]
fn a_restart_serves_the_same_cas_and_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(SystemTime::now()));
    let sh = XdsHandles::default();
    let cp = start(dir.path(), clock.clone(), &sh);
    cp.ca_prepare().unwrap();
    let (serial, bundle) = (cp.ca().serial_hex().to_string(), cp.bundle());
    drop(cp);
    let sh2 = XdsHandles::default();
    let cp2 = start(dir.path(), clock, &sh2);
    assert_eq!(cp2.ca().serial_hex(), serial);
    assert_eq!(cp2.bundle(), bundle);
    assert_eq!(
        cp2.ca_status().phase,
        crate::identity::rotation::Phase::Prepared
    );
}

#[test]
fn short_lived_svids_renew_once_per_half_life_not_on_every_tick() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now();
    let clock = Arc::new(ManualClock::at(t0));
    let sh = XdsHandles::default();
    let mut cfg = mesh(dir.path());
    cfg.ca.svid_ttl = Duration::from_secs(20);
    let cp = ControlPlane::start(cfg, "/m.wasm".into(), clock.clone(), sh.clone())
        .unwrap()
        .0;
    let mut minted = Vec::new();
    for s in 1..=40 {
        clock.set(t0 + Duration::from_secs(s));
        minted.push(cp.tick().renewed.minted);
    }
    let total: usize = minted.iter().sum();
    // 3 workloads renewing every 9–11 s over 40 s: 3 or 4 rounds, not 40.
    assert!((9..=12).contains(&total), "{minted:?}");
}
