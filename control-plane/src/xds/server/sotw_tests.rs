//! Table-driven tests of the SotW state machine: ACK, NACK, stale nonce, name changes.

use xds_api::pb::google::rpc::Status;

use super::*;
use crate::xds::snapshot::tests::sample;

const SDS: ResourceType = ResourceType::Secret;
const CDS: ResourceType = ResourceType::Cluster;

fn req(
    t: ResourceType,
    names: &[&str],
    version: &str,
    nonce: &str,
    nack: Option<&str>,
) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        type_url: t.type_url().into(),
        response_nonce: nonce.into(),
        error_detail: nack.map(|m| Status {
            code: 3,
            message: m.into(),
            details: vec![],
        }),
        ..Default::default()
    }
}

/// What one step must produce.
struct Want {
    responses: usize,
    resources: Option<usize>,
    event: Option<fn(&Event) -> bool>,
}

fn is_ack(e: &Event) -> bool {
    matches!(e, Event::Ack { .. })
}
fn is_nack(e: &Event) -> bool {
    matches!(e, Event::Nack { detail, .. } if detail == "bad")
}
fn is_stale(e: &Event) -> bool {
    matches!(e, Event::StaleNonce { .. })
}
fn is_missing(e: &Event) -> bool {
    matches!(e, Event::Missing { names, .. } if names == &["other"])
}

#[test]
fn sotw_protocol_cases() {
    let snap = sample(&[("a", "1"), ("b", "1")], 1);
    let v_sds = snap.version(SDS).to_string();
    let v_cds = snap.version(CDS).to_string();
    // Each case: a name, and steps of (request, want). Nonces count from 1 per stream.
    type Step = (DiscoveryRequest, Want);
    let cases: Vec<(&str, Vec<Step>)> = vec![
        (
            "first_request_is_answered_with_only_the_requested_secret",
            vec![(
                req(SDS, &["a"], "", "", None),
                Want {
                    responses: 1,
                    resources: Some(1),
                    event: None,
                },
            )],
        ),
        (
            "wildcard_cluster_request_gets_every_cluster",
            vec![(
                req(CDS, &[], "", "", None),
                Want {
                    responses: 1,
                    resources: Some(1),
                    event: None,
                },
            )],
        ),
        (
            "ack_gets_no_reply",
            vec![
                (
                    req(SDS, &["a"], "", "", None),
                    Want {
                        responses: 1,
                        resources: Some(1),
                        event: None,
                    },
                ),
                (
                    req(SDS, &["a"], &v_sds, "1", None),
                    Want {
                        responses: 0,
                        resources: None,
                        event: Some(is_ack),
                    },
                ),
            ],
        ),
        (
            "ack_with_new_names_is_answered_with_the_new_set",
            vec![
                (
                    req(SDS, &["a"], "", "", None),
                    Want {
                        responses: 1,
                        resources: Some(1),
                        event: None,
                    },
                ),
                (
                    req(SDS, &["a", "b"], &v_sds, "1", None),
                    Want {
                        responses: 1,
                        resources: Some(2),
                        event: Some(is_ack),
                    },
                ),
            ],
        ),
        (
            "nack_gets_no_reply_and_is_recorded_with_its_error",
            vec![
                (
                    req(CDS, &[], "", "", None),
                    Want {
                        responses: 1,
                        resources: Some(1),
                        event: None,
                    },
                ),
                (
                    req(CDS, &[], "", "1", Some("bad")),
                    Want {
                        responses: 0,
                        resources: None,
                        event: Some(is_nack),
                    },
                ),
            ],
        ),
        (
            "stale_nonce_is_ignored",
            vec![
                (
                    req(SDS, &["a"], "", "", None),
                    Want {
                        responses: 1,
                        resources: None,
                        event: None,
                    },
                ),
                (
                    req(SDS, &["a", "b"], &v_sds, "1", None),
                    Want {
                        responses: 1,
                        resources: None,
                        event: None,
                    },
                ),
                (
                    req(SDS, &["a", "b", "c"], &v_sds, "1", None),
                    Want {
                        responses: 0,
                        resources: None,
                        event: Some(is_stale),
                    },
                ),
            ],
        ),
        (
            "stale_nack_is_ignored",
            vec![
                (
                    req(CDS, &[], "", "", None),
                    Want {
                        responses: 1,
                        resources: None,
                        event: None,
                    },
                ),
                (
                    req(SDS, &["a"], "", "", None),
                    Want {
                        responses: 1,
                        resources: None,
                        event: None,
                    },
                ),
                (
                    req(CDS, &[], "", "2", Some("bad")),
                    Want {
                        responses: 0,
                        resources: None,
                        event: Some(is_stale),
                    },
                ),
            ],
        ),
        (
            "unknown_secret_names_are_reported_and_not_invented",
            vec![(
                req(SDS, &["a", "other"], "", "", None),
                Want {
                    responses: 1,
                    resources: Some(1),
                    event: Some(is_missing),
                },
            )],
        ),
        (
            "reconnecting_envoy_with_a_version_is_answered",
            vec![(
                req(CDS, &[], &v_cds, "", None),
                Want {
                    responses: 1,
                    resources: Some(1),
                    event: None,
                },
            )],
        ),
    ];
    for (name, steps) in cases {
        let mut st = SotwState::new();
        for (i, (request, want)) in steps.into_iter().enumerate() {
            let (events, resp) = st.on_request(&request, &snap);
            assert_eq!(resp.len(), want.responses, "{name} step {i}: {events:?}");
            if let (Some(n), Some(r)) = (want.resources, resp.first()) {
                assert_eq!(r.resources.len(), n, "{name} step {i}");
            }
            if let Some(pred) = want.event {
                assert!(events.iter().any(pred), "{name} step {i}: {events:?}");
            }
        }
    }
}

#[test]
fn unsupported_type_is_reported_and_not_answered() {
    let mut st = SotwState::new();
    let mut r = req(CDS, &[], "", "", None);
    r.type_url = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration".into();
    let (events, resp) = st.on_request(&r, &sample(&[], 1));
    assert!(resp.is_empty());
    assert!(matches!(events[0], Event::UnsupportedType { .. }));
}

#[test]
fn rotating_a_secret_pushes_only_sds() {
    let old = sample(&[("a", "1")], 1);
    let mut st = SotwState::new();
    st.on_request(&req(CDS, &[], "", "", None), &old);
    st.on_request(&req(ResourceType::Listener, &[], "", "", None), &old);
    st.on_request(&req(SDS, &["a"], "", "", None), &old);
    let (_, pushed) = st.on_snapshot(&sample(&[("a", "2")], 1));
    let types: Vec<_> = pushed.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(types, vec![SDS.type_url()]);
}

#[test]
fn clusters_are_pushed_before_listeners_on_a_combined_change() {
    let old = sample(&[], 1);
    let mut st = SotwState::new();
    st.on_request(&req(ResourceType::Listener, &[], "", "", None), &old);
    st.on_request(&req(CDS, &[], "", "", None), &old);
    let mut b = crate::xds::snapshot::SnapshotBuilder::new();
    let cluster = xds_api::pb::envoy::config::cluster::v3::Cluster {
        name: "c2".into(),
        ..Default::default()
    };
    let listener = xds_api::pb::envoy::config::listener::v3::Listener {
        name: "l2".into(),
        ..Default::default()
    };
    b.add(CDS, "c2", &cluster).unwrap();
    b.add(ResourceType::Listener, "l2", &listener).unwrap();
    let (_, pushed) = st.on_snapshot(&b.build().unwrap());
    let types: Vec<_> = pushed.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(
        types,
        vec![CDS.type_url(), ResourceType::Listener.type_url()]
    );
}

#[test]
fn a_nacked_type_is_pushed_again_when_the_snapshot_changes() {
    let old = sample(&[], 1);
    let mut st = SotwState::new();
    st.on_request(&req(CDS, &[], "", "", None), &old);
    st.on_request(&req(CDS, &[], "", "1", Some("bad")), &old);
    assert!(
        st.on_snapshot(&old).1.is_empty(),
        "same snapshot: nothing to resend"
    );
    let (_, pushed) = st.on_snapshot(&sample(&[], 2));
    assert_eq!(pushed.len(), 1);
}

#[test]
fn types_never_requested_are_not_pushed() {
    let mut st = SotwState::new();
    st.on_request(&req(CDS, &[], "", "", None), &sample(&[], 1));
    let (_, pushed) = st.on_snapshot(&sample(&[("a", "1")], 1));
    assert!(pushed.is_empty());
}
