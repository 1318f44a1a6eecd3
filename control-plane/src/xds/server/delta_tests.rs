//! Tests of the delta state machine: subscriptions, diffs, removals, ACK/NACK/stale.

use xds_api::pb::google::rpc::Status;

use super::*;
use crate::xds::snapshot::tests::sample;

const SDS: ResourceType = ResourceType::Secret;
const CDS: ResourceType = ResourceType::Cluster;

fn req(
    t: ResourceType,
    sub: &[&str],
    unsub: &[&str],
    nonce: &str,
    nack: Option<&str>,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: t.type_url().into(),
        resource_names_subscribe: sub.iter().map(|s| s.to_string()).collect(),
        resource_names_unsubscribe: unsub.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        error_detail: nack.map(|m| Status {
            code: 3,
            message: m.into(),
            details: vec![],
        }),
        ..Default::default()
    }
}

fn names(r: &DeltaDiscoveryResponse) -> Vec<&str> {
    r.resources.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn subscribing_to_a_secret_sends_only_that_secret() {
    let snap = sample(&[("a", "1"), ("b", "1")], 1);
    let mut st = DeltaState::new();
    let (_, r) = st.on_request(&req(SDS, &["a"], &[], "", None), &snap);
    assert_eq!(names(&r[0]), vec!["a"]);
}

#[test]
fn ack_gets_no_reply() {
    let snap = sample(&[("a", "1")], 1);
    let mut st = DeltaState::new();
    st.on_request(&req(SDS, &["a"], &[], "", None), &snap);
    let (events, r) = st.on_request(&req(SDS, &[], &[], "1", None), &snap);
    assert!(r.is_empty());
    assert!(matches!(events[0], Event::Ack { .. }));
}

#[test]
fn nack_gets_no_reply_and_is_recorded() {
    let snap = sample(&[], 1);
    let mut st = DeltaState::new();
    st.on_request(&req(CDS, &[], &[], "", None), &snap);
    let (events, r) = st.on_request(&req(CDS, &[], &[], "1", Some("bad")), &snap);
    assert!(r.is_empty());
    assert!(matches!(&events[0], Event::Nack { detail, .. } if detail == "bad"));
}

#[test]
fn stale_nonce_is_recorded_but_subscription_changes_still_apply() {
    let mut st = DeltaState::new();
    st.on_request(
        &req(SDS, &["a"], &[], "", None),
        &sample(&[("a", "1"), ("b", "1")], 1),
    );
    let snap = sample(&[("a", "2"), ("b", "1")], 1);
    let (_, pushed) = st.on_snapshot(&snap);
    assert_eq!(pushed[0].nonce, "2");
    let (events, r) = st.on_request(&req(SDS, &["b"], &[], "1", None), &snap);
    assert!(matches!(events[0], Event::StaleNonce { .. }), "{events:?}");
    assert_eq!(names(&r[0]), vec!["b"]);
}

#[test]
fn a_changed_snapshot_sends_only_changed_resources() {
    let mut st = DeltaState::new();
    st.on_request(
        &req(SDS, &["a", "b"], &[], "", None),
        &sample(&[("a", "1"), ("b", "1")], 1),
    );
    st.on_request(&req(CDS, &[], &[], "", None), &sample(&[], 1));
    let (_, out) = st.on_snapshot(&sample(&[("a", "1"), ("b", "2")], 1));
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0]), vec!["b"]);
}

#[test]
fn a_removed_resource_is_named_in_removed_resources() {
    let mut st = DeltaState::new();
    st.on_request(
        &req(SDS, &["a", "b"], &[], "", None),
        &sample(&[("a", "1"), ("b", "1")], 1),
    );
    let (_, out) = st.on_snapshot(&sample(&[("a", "1")], 1));
    assert_eq!(out[0].removed_resources, vec!["b".to_string()]);
    assert!(out[0].resources.is_empty());
}

#[test]
fn initial_resource_versions_suppress_resending_what_the_client_has() {
    let snap = sample(&[], 1);
    let have = snap.get(CDS).unwrap().resources["c"].version.to_string();
    let mut st = DeltaState::new();
    let mut r = req(CDS, &[], &[], "", None);
    r.initial_resource_versions.insert("c".into(), have);
    r.initial_resource_versions
        .insert("gone".into(), "x".into());
    let (_, resp) = st.on_request(&r, &snap);
    let resp = &resp[0];
    assert!(resp.resources.is_empty());
    assert_eq!(resp.removed_resources, vec!["gone".to_string()]);
}

#[test]
fn resubscribing_resends_the_resource() {
    let snap = sample(&[("a", "1")], 1);
    let mut st = DeltaState::new();
    st.on_request(&req(SDS, &["a"], &[], "", None), &snap);
    st.on_request(&req(SDS, &[], &["a"], "1", None), &snap);
    let (_, r) = st.on_request(&req(SDS, &["a"], &[], "1", None), &snap);
    assert_eq!(names(&r[0]), vec!["a"]);
}

#[test]
fn the_first_wildcard_request_is_answered_even_when_empty() {
    let mut st = DeltaState::new();
    let (_, r) = st.on_request(
        &req(ResourceType::ExtensionConfig, &[], &[], "", None),
        &sample(&[], 1),
    );
    assert!(r[0].resources.is_empty());
}

#[test]
fn an_ack_after_a_nack_covers_only_its_own_resources() {
    // Secrets a and b are sent together and rejected; then only a changes and is sent
    // and ACKed. b (say, the trust bundle) is still rejected: the ACK must not report the
    // type at the snapshot's version, or CA activation would count the node as caught up.
    let mut st = DeltaState::new();
    let snap = sample(&[("a", "1"), ("b", "1")], 1);
    st.on_request(&req(SDS, &["a", "b"], &[], "", None), &snap);
    let (events, _) = st.on_request(&req(SDS, &[], &[], "1", Some("bad bundle")), &snap);
    assert!(matches!(events[0], Event::Nack { .. }), "{events:?}");
    let snap = sample(&[("a", "2"), ("b", "1")], 1);
    let (_, pushed) = st.on_snapshot(&snap);
    assert_eq!(names(&pushed[0]), vec!["a"]);
    let (events, _) = st.on_request(&req(SDS, &[], &[], &pushed[0].nonce, None), &snap);
    assert!(
        matches!(&events[0], Event::PartialAck { still_rejected, .. } if still_rejected == &["b".to_string()]),
        "{events:?}"
    );
    // Once b is sent again and ACKed, the type is whole again.
    let snap = sample(&[("a", "2"), ("b", "2")], 1);
    let (_, pushed) = st.on_snapshot(&snap);
    assert_eq!(names(&pushed[0]), vec!["b"]);
    let (events, _) = st.on_request(&req(SDS, &[], &[], &pushed[0].nonce, None), &snap);
    assert!(matches!(events[0], Event::Ack { .. }), "{events:?}");
}
