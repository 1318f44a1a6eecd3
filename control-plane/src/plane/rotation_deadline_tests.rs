//! The activation deadline and the floor on SVID validity, driven by a hand-moved clock:
//! a node that never ACKs blocks activation only until the deadline; an expired CA is a
//! counted, visible failure that never hands out an expired SVID.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::tests::{ack, start};
use super::*;
use crate::plane::XdsHandles;
use crate::test_support::ManualClock;
use crate::xds::types::ResourceType;

const LAGGARD: &str = "database-sidecar";

fn every_svid_is_valid_after(cp: &ControlPlane, now: SystemTime) {
    for (w, s) in &cp.lock().book.svids {
        assert!(
            s.not_after > now,
            "{w}: notAfter {:?} <= {now:?}",
            s.not_after
        );
    }
}

#[test]
fn a_node_that_never_acks_blocks_activation_only_until_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now();
    let clock = Arc::new(ManualClock::at(t0));
    let sh = XdsHandles::default();
    let cp = start(dir.path(), clock.clone(), &sh);
    for n in ["backend-sidecar", LAGGARD, "frontend-sidecar"] {
        sh.status.connected(&NodeId::new(n), "sotw");
        ack(&sh, n);
    }
    clock.set(t0 + Duration::from_secs(3001));
    assert_eq!(cp.tick().step, Some(Step::Prepare));
    ack(&sh, "backend-sidecar");
    ack(&sh, "frontend-sidecar");
    let rs = cp.authority().rotation_state();
    let deadline = rs.activate_by(Duration::from_secs(600));
    assert_eq!(deadline, rs.current.not_after - Duration::from_secs(600));

    clock.set(rs.activate_at() + Duration::from_secs(1));
    assert_eq!(cp.tick().step, None, "waits while it is safe");
    let st = cp.ca_status();
    assert_eq!(st.activation_blocked_by, vec![LAGGARD.to_string()]);
    assert!(
        st.summary().contains("activates anyway at"),
        "{}",
        st.summary()
    );
    clock.set(deadline - Duration::from_secs(1));
    assert_eq!(cp.tick().step, None);

    let sds_before = sh.cache.get(&NodeId::new(LAGGARD)).unwrap();
    clock.set(deadline);
    assert_eq!(cp.tick().step, Some(Step::Activate), "activates anyway");
    every_svid_is_valid_after(&cp, deadline + Duration::from_secs(599));
    let st = cp.ca_status();
    assert_eq!(st.left_behind, vec![LAGGARD.to_string()]);
    assert!(st.summary().contains("left behind"), "{}", st.summary());
    let text = sh.metrics.render();
    assert!(
        text.contains("warden_ca_forced_activations_total 1"),
        "{text}"
    );
    assert!(
        text.contains("warden_ca_nodes_left_behind{node=\"database-sidecar\"} 1"),
        "{text}"
    );
    // The node left behind is pushed the new bundle (and a new SVID) again.
    let sds_after = sh.cache.get(&NodeId::new(LAGGARD)).unwrap();
    assert_eq!(
        sds_before.changed_types(&sds_after),
        vec![ResourceType::Secret]
    );

    // Once it ACKs the new bundle it is no longer left behind.
    ack(&sh, LAGGARD);
    clock.set(deadline + Duration::from_secs(1));
    cp.tick();
    assert!(cp.ca_status().left_behind.is_empty());
    assert!(!sh
        .metrics
        .render()
        .contains("warden_ca_nodes_left_behind{node="));
}

#[test]
fn an_expired_ca_fails_renewals_visibly_and_never_hands_out_an_expired_svid() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now();
    let clock = Arc::new(ManualClock::at(t0));
    let sh = XdsHandles::default();
    let cp = start(dir.path(), clock.clone(), &sh);
    let expired_at = cp.ca().not_after();
    let later = expired_at + Duration::from_secs(10);
    clock.set(later);

    let err = cp.renew_due().unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    assert!(sh.metrics.svid_renewal_failures() >= 1);
    let words = cp.ca_status().summary();
    assert!(words.contains("EXPIRED"), "{words}");
    assert!(!words.contains("expires in 0s"), "{words}");
    for s in cp.lock().book.svids.values() {
        assert!(s.not_after <= expired_at, "nothing new was minted");
    }

    // The tick notices: readiness fails (`warden_ca_expired`), and retries follow the
    // backoff instead of failing (and logging) on every tick.
    let failures = sh.metrics.svid_renewal_failures();
    for i in 0..10 {
        clock.set(later + Duration::from_secs(i));
        let t = cp.tick();
        assert_eq!(t.renewed.minted, 0);
        assert!(sh.metrics.ca_expired(), "tick {i}: readiness must fail");
    }
    let retried = sh.metrics.svid_renewal_failures() - failures;
    // 3 workloads retried after 1, 2 and 4 s: 9 failures, not 30.
    assert!((3..=12).contains(&retried), "{retried} failures in 10 s");
    assert!(sh.metrics.render().contains("warden_ca_expired 1"));
    for s in cp.lock().book.svids.values() {
        assert!(s.not_after <= expired_at, "nothing new was minted");
    }
}

#[test]
fn a_restart_past_the_activation_point_waits_for_nodes_to_reconnect_before_activating() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now();
    let clock = Arc::new(ManualClock::at(t0));
    let sh = XdsHandles::default();
    let cp = start(dir.path(), clock.clone(), &sh);
    clock.set(t0 + Duration::from_secs(3001));
    assert_eq!(cp.tick().step, Some(Step::Prepare));
    let rs = cp.authority().rotation_state();
    drop(cp);
    // The control plane restarts past the activation point: no node has reconnected yet.
    clock.set(rs.activate_at() + Duration::from_secs(1));
    let sh = XdsHandles::default();
    let cp = start(dir.path(), clock.clone(), &sh);
    assert_eq!(
        cp.tick().step,
        None,
        "no node counts as caught up before reconnecting"
    );
    // A node reconnects and has not ACKed the new bundle: it blocks, as before a restart.
    sh.status.connected(&NodeId::new(LAGGARD), "sotw");
    clock.set(rs.activate_at() + RECONNECT_GRACE + Duration::from_secs(2));
    assert_eq!(cp.tick().step, None, "the reconnected laggard blocks");
    ack(&sh, LAGGARD);
    assert_eq!(cp.tick().step, Some(Step::Activate));
}
