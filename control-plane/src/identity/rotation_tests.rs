//! Rotation decisions at chosen instants (a CA living from t=0 to t=6000 s).

use super::*;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn ca(serial: &str, from: u64, to: u64) -> CaView {
    CaView {
        serial_hex: serial.into(),
        not_before: at(from),
        not_after: at(to),
    }
}

fn current_only() -> RotationState {
    RotationState {
        current: ca("aa", 0, 6000),
        next: None,
        retired: Vec::new(),
    }
}

fn prepared() -> RotationState {
    RotationState {
        next: Some(NextView {
            ca: ca("bb", 3000, 9000),
            prepared_at: at(3000),
            published_sequence: 2,
        }),
        ..current_only()
    }
}

fn activated(retire_after: u64) -> RotationState {
    RotationState {
        current: ca("bb", 3000, 9000),
        next: None,
        retired: vec![RetiredView {
            serial_hex: "aa".into(),
            retire_after: at(retire_after),
        }],
    }
}

#[test]
fn thresholds_are_half_and_five_sixths_of_the_ca_life() {
    let s = current_only();
    assert_eq!(s.prepare_at(), at(3000));
    assert_eq!(s.activate_at(), at(5000));
}

#[test]
fn phases_follow_the_slots_present() {
    assert_eq!(current_only().phase(), Phase::CurrentOnly);
    assert_eq!(prepared().phase(), Phase::Prepared);
    assert_eq!(activated(5100).phase(), Phase::Activated);
}

#[test]
fn nothing_is_due_before_half_life() {
    assert_eq!(current_only().due_step(at(2999), &[]), None);
}

#[test]
fn the_next_ca_is_prepared_at_half_life() {
    assert_eq!(current_only().due_step(at(3000), &[]), Some(Step::Prepare));
}

#[test]
fn a_prepared_ca_waits_for_five_sixths_of_the_life() {
    assert_eq!(prepared().due_step(at(4999), &[]), None);
    assert_eq!(prepared().due_step(at(5000), &[]), Some(Step::Activate));
}

#[test]
fn automatic_activation_waits_for_every_node_to_ack_the_bundle() {
    let lagging = vec!["backend-sidecar".to_string()];
    assert_eq!(prepared().due_step(at(5500), &lagging), None);
    assert_eq!(prepared().due_step(at(5500), &[]), Some(Step::Activate));
}

#[test]
fn a_retired_ca_leaves_once_its_last_svid_expired() {
    assert_eq!(activated(5100).due_step(at(5099), &[]), None);
    assert_eq!(activated(5100).due_step(at(5100), &[]), Some(Step::Retire));
}

#[test]
fn prepare_is_refused_when_a_next_ca_exists() {
    let err = prepared().check_prepare().unwrap_err();
    assert!(matches!(err, Refusal::NextExists { ref serial, .. } if serial == "bb"));
    assert!(err.to_string().contains("warden ca activate"), "{err}");
    assert_eq!(current_only().check_prepare(), Ok(()));
}

#[test]
fn activate_is_refused_without_a_next_ca() {
    let err = current_only().check_activate(at(10), &[]).unwrap_err();
    assert_eq!(err, Refusal::NoNext);
    assert!(err.to_string().contains("warden ca prepare"));
}

#[test]
fn activate_is_refused_while_nodes_lag_and_names_them() {
    let lagging = vec!["a-sidecar".to_string(), "b-sidecar".to_string()];
    let err = prepared().check_activate(at(3100), &lagging).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("a-sidecar, b-sidecar"), "{text}");
    assert!(text.contains("bundle sequence 2"), "{text}");
    assert_eq!(prepared().check_activate(at(3100), &[]), Ok(()));
}

#[test]
fn activate_is_refused_before_the_next_ca_is_valid() {
    let err = prepared().check_activate(at(2000), &[]).unwrap_err();
    assert!(matches!(err, Refusal::NotYetValid { .. }), "{err}");
}

#[test]
fn retire_is_refused_while_old_svids_are_valid_and_says_until_when() {
    let err = activated(5100).check_retire(at(5000), false).unwrap_err();
    assert_eq!(
        err,
        Refusal::StillInUse {
            serial: "aa".into(),
            until: rfc3339(at(5100))
        }
    );
    assert!(err.to_string().contains("--force"));
}

#[test]
fn retire_drops_only_cas_whose_svids_expired() {
    let mut s = activated(5100);
    s.retired.push(RetiredView {
        serial_hex: "99".into(),
        retire_after: at(6000),
    });
    assert_eq!(s.check_retire(at(5200), false), Ok(vec!["aa".to_string()]));
}

#[test]
fn forced_retire_drops_every_retired_ca() {
    assert_eq!(
        activated(5100).check_retire(at(10), true),
        Ok(vec!["aa".to_string()])
    );
}

#[test]
fn retire_with_nothing_retired_is_refused() {
    assert_eq!(
        current_only().check_retire(at(10), true),
        Err(Refusal::NothingToRetire)
    );
}

#[test]
fn times_are_shown_in_utc() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_899_840);
    assert_eq!(rfc3339(t), "2026-11-28T21:04:00Z");
}

#[test]
fn the_activation_deadline_is_the_last_instant_a_full_svid_fits_in_the_current_ca() {
    // CA 0..6000, activate_at 5000: with a 600 s SVID TTL activation may wait until 5400.
    let s = prepared();
    assert_eq!(s.activate_by(Duration::from_secs(600)), at(5400));
    assert!(!s.activation_overdue(at(5399), Duration::from_secs(600)));
    assert!(s.activation_overdue(at(5400), Duration::from_secs(600)));
}

#[test]
fn a_long_svid_ttl_leaves_no_time_to_wait_past_the_five_sixths_point() {
    // The case: CA 3m, SVID 1m. Waiting past 5/6 is never safe then.
    let s = prepared();
    assert_eq!(s.activate_by(Duration::from_secs(3000)), at(5000));
    assert_eq!(s.activate_by(Duration::from_secs(10_000_000)), at(5000));
    assert!(s.activation_overdue(at(5000), Duration::from_secs(3000)));
}

#[test]
fn nothing_is_overdue_without_a_valid_next_ca() {
    assert!(!current_only().activation_overdue(at(5999), Duration::from_secs(60)));
    let mut s = prepared();
    if let Some(n) = s.next.as_mut() {
        n.ca.not_before = at(5900);
    }
    assert!(!s.activation_overdue(at(5800), Duration::from_secs(600)));
}
