use std::time::{Duration, SystemTime};

use super::*;
use crate::identity::TrustBundle;

const FLOOR: Duration = Duration::from_secs(5);

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn bundle(sequence: u64, anchor: u8, hint: Option<u64>) -> ForeignBundle {
    ForeignBundle {
        bundle: TrustBundle {
            trust_domain: "b.test".parse().unwrap(),
            x509_authorities_der: vec![vec![anchor]],
            sequence,
        },
        refresh_hint: hint.map(Duration::from_secs),
        jwt_keys: Vec::new(),
        expires: Some(t(100_000)),
    }
}

#[test]
fn the_first_fetch_is_due_at_once_and_the_next_one_after_the_hint_minus_jitter() {
    let mut s = RefreshState::new(None, t(0));
    assert!(s.due(t(0)));
    assert_eq!(
        s.fetched(bundle(1, 1, Some(60)), t(0), FLOOR, 0.0),
        Ok(Outcome::Updated)
    );
    assert_eq!(s.next_refresh, t(60));
    assert!(!s.due(t(59)));
    s.fetched(bundle(1, 1, Some(60)), t(60), FLOOR, 0.999)
        .unwrap();
    let next = s.next_refresh.duration_since(t(60)).unwrap();
    assert!(
        next >= Duration::from_secs(54) && next <= Duration::from_secs(60),
        "{next:?}"
    );
}

#[test]
fn the_same_bundle_again_is_unchanged_and_a_new_sequence_updates() {
    let mut s = RefreshState::new(Some(bundle(3, 1, None)), t(0));
    assert_eq!(
        s.fetched(bundle(3, 1, None), t(0), FLOOR, 0.0),
        Ok(Outcome::Unchanged)
    );
    assert_eq!(
        s.fetched(bundle(4, 2, None), t(1), FLOOR, 0.0),
        Ok(Outcome::Updated)
    );
    assert_eq!(s.current.as_ref().unwrap().bundle.sequence, 4);
}

#[test]
fn a_sequence_going_backwards_is_refused_counted_and_the_current_bundle_kept() {
    let mut s = RefreshState::new(Some(bundle(7, 1, None)), t(0));
    let refused = s.fetched(bundle(6, 9, None), t(0), FLOOR, 0.0);
    assert_eq!(
        refused,
        Err(Refused::SequenceBackwards { got: 6, current: 7 })
    );
    assert_eq!(s.current, Some(bundle(7, 1, None)));
    assert_eq!((s.failures, s.consecutive_failures), (1, 1));
    assert!(s.last_error.as_deref().unwrap().contains("backwards"));
}

#[test]
fn failures_keep_the_bundle_and_retry_after_the_floor_doubling_up_to_the_interval() {
    let mut s = RefreshState::new(Some(bundle(1, 1, Some(60))), t(0));
    let mut waits = Vec::new();
    for i in 0..6 {
        s.failed("connection refused".into(), t(i), FLOOR);
        waits.push(s.next_refresh.duration_since(t(i)).unwrap().as_secs());
    }
    assert_eq!(waits, vec![5, 10, 20, 40, 60, 60]);
    assert_eq!(s.current, Some(bundle(1, 1, Some(60))));
    assert_eq!(s.failures, 6);
    s.fetched(bundle(1, 1, Some(60)), t(100), FLOOR, 0.0)
        .unwrap();
    assert_eq!((s.consecutive_failures, s.last_error.clone()), (0, None));
    assert_eq!(s.failures, 6, "the total stays");
}

#[test]
fn the_interval_is_the_hint_within_the_floor_and_an_hour() {
    let s = |hint| RefreshState::new(Some(bundle(1, 1, hint)), t(0));
    assert_eq!(s(Some(1)).interval(FLOOR), FLOOR);
    assert_eq!(s(Some(86_400)).interval(FLOOR), MAX_INTERVAL);
    assert_eq!(s(None).interval(FLOOR), DEFAULT_HINT);
    assert_eq!(RefreshState::new(None, t(0)).interval(FLOOR), DEFAULT_HINT);
}

#[test]
fn a_bundle_whose_ca_expires_within_three_intervals_is_flagged() {
    let s = RefreshState::new(Some(bundle(1, 1, Some(60))), t(0));
    assert!(!s.expiring_soon(t(0), FLOOR));
    assert!(s.expiring_soon(t(100_000 - 180), FLOOR));
    assert!(!RefreshState::new(None, t(0)).expiring_soon(t(0), FLOOR));
}
