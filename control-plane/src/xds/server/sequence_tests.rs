//! Request sequences run against both pure state machines (SotW and delta): subscription
//! changes carried by ACKs and NACKs, stale nonces, and NACK recovery across resource
//! dependencies (a listener rejected because of its filter config). The same sequences
//! run over a real stream in `server_tests.rs`.

use xds_api::pb::envoy::config::core::v3::TypedExtensionConfig;
use xds_api::pb::envoy::config::listener::v3::Listener;
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use xds_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use xds_api::pb::google::protobuf::Any;
use xds_api::pb::google::rpc::Status;

use super::{DeltaState, SotwState};
use crate::xds::snapshot::{Snapshot, SnapshotBuilder};
use crate::xds::types::ResourceType;

const SDS: ResourceType = ResourceType::Secret;
const LDS: ResourceType = ResourceType::Listener;
const ECDS: ResourceType = ResourceType::ExtensionConfig;
const OWN: &str = "spiffe://example.org/backend";
const ROOT: &str = "ROOTCA";
const FILTER: &str = "warden-authz";

/// A node's snapshot: `policy` goes into the filter config, `listener` into the listener.
pub(crate) fn node(policy: &str, listener: &str) -> Snapshot {
    let mut b = SnapshotBuilder::new();
    b.add(
        LDS,
        "inbound",
        &Listener {
            name: "inbound".into(),
            stat_prefix: listener.into(),
            ..Default::default()
        },
    )
    .unwrap();
    b.add(
        ECDS,
        FILTER,
        &TypedExtensionConfig {
            name: FILTER.into(),
            typed_config: Some(Any {
                type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
                value: policy.as_bytes().to_vec(),
            }),
        },
    )
    .unwrap();
    for name in [OWN, ROOT] {
        b.add(
            SDS,
            name,
            &Secret {
                name: name.into(),
                ..Default::default()
            },
        )
        .unwrap();
    }
    b.reference((LDS, "inbound"), (ECDS, FILTER));
    b.build().unwrap()
}

/// One step of a sequence.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// A request of `t`: names (SotW: the full set; delta: subscribed), the nonce it
    /// answers ("" for the first), and a NACK message.
    Req(
        ResourceType,
        &'static [&'static str],
        &'static str,
        Option<&'static str>,
    ),
    /// The node's snapshot changes.
    Snap(&'static str, &'static str),
}

/// What one step must produce: per response, its type and resource names (sorted).
type Out = Vec<(ResourceType, Vec<String>)>;

type W = Vec<(ResourceType, &'static [&'static str])>;

/// One step and what it must produce over SotW and over delta (SotW responses carry
/// every subscribed resource, delta responses only what the client lacks).
pub(crate) struct Expect {
    pub(crate) step: Step,
    pub(crate) sotw: W,
    pub(crate) delta: W,
}

fn both(step: Step, w: W) -> Expect {
    Expect {
        step,
        sotw: w.clone(),
        delta: w,
    }
}

fn each(step: Step, sotw: W, delta: W) -> Expect {
    Expect { step, sotw, delta }
}

pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) start: (&'static str, &'static str),
    pub(crate) steps: Vec<Expect>,
}

use Step::{Req, Snap};

/// The sequences (nonces count from 1 per stream, over all types).
pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "a_nack_that_adds_a_name_is_answered_with_the_new_name",
            start: ("p1", "l1"),
            steps: vec![
                both(Req(SDS, &[OWN], "", None), vec![(SDS, &[OWN])]),
                each(
                    Req(SDS, &[OWN, ROOT], "1", Some("bad")),
                    vec![(SDS, &[ROOT, OWN])],
                    vec![(SDS, &[ROOT])],
                ),
                both(Req(SDS, &[OWN, ROOT], "2", None), vec![]),
            ],
        },
        Case {
            name: "a_nack_with_unchanged_names_gets_no_reply",
            start: ("p1", "l1"),
            steps: vec![
                both(Req(SDS, &[OWN], "", None), vec![(SDS, &[OWN])]),
                both(Req(SDS, &[OWN], "1", Some("bad")), vec![]),
            ],
        },
        Case {
            name: "a_stale_request_is_not_answered_and_the_next_ack_names_count",
            start: ("p1", "l1"),
            steps: vec![
                both(Req(SDS, &[OWN], "", None), vec![(SDS, &[OWN])]),
                each(
                    Req(SDS, &[OWN, ROOT], "1", None),
                    vec![(SDS, &[ROOT, OWN])],
                    vec![(SDS, &[ROOT])],
                ),
                // SotW: the stale request drops ROOTCA; it is not answered, but the ACK
                // of the latest response with the same names is.
                both(Req(SDS, &[OWN], "1", None), vec![]),
                each(Req(SDS, &[OWN], "2", None), vec![(SDS, &[OWN])], vec![]),
            ],
        },
        Case {
            name: "a_listener_rejected_for_its_filter_config_is_resent_once_that_config_is_acked",
            start: ("p1", "l1"),
            steps: vec![
                both(Req(LDS, &[], "", None), vec![(LDS, &["inbound"])]),
                both(Req(ECDS, &[FILTER], "", None), vec![(ECDS, &[FILTER])]),
                both(Req(LDS, &[], "1", None), vec![]),
                both(Req(ECDS, &[FILTER], "2", None), vec![]),
                // A policy the sidecar cannot load: the filter config is NACKed.
                both(Snap("bad", "l1"), vec![(ECDS, &[FILTER])]),
                both(
                    Req(ECDS, &[FILTER], "3", Some("Unable to create Wasm plugin")),
                    vec![],
                ),
                // A listener change now references the broken config: NACKed too.
                both(Snap("bad", "l2"), vec![(LDS, &["inbound"])]),
                both(Req(LDS, &[], "4", Some("filter config not ready")), vec![]),
                // The policy is reverted: the listener did not change, yet it is resent
                // as soon as the filter config it needs is accepted.
                both(Snap("p1", "l2"), vec![(ECDS, &[FILTER])]),
                both(Req(ECDS, &[FILTER], "5", None), vec![(LDS, &["inbound"])]),
                both(Req(LDS, &[], "6", None), vec![]),
            ],
        },
        Case {
            name: "a_listener_rejected_for_its_own_sake_is_resent_once_per_dependency_ack",
            start: ("p1", "l1"),
            steps: vec![
                both(Req(ECDS, &[FILTER], "", None), vec![(ECDS, &[FILTER])]),
                both(Req(LDS, &[], "", None), vec![(LDS, &["inbound"])]),
                both(Req(LDS, &[], "2", Some("bad listener")), vec![]),
                both(Req(ECDS, &[FILTER], "1", None), vec![(LDS, &["inbound"])]),
                both(Req(LDS, &[], "3", Some("bad listener")), vec![]),
                both(Req(SDS, &[OWN], "", None), vec![(SDS, &[OWN])]),
                both(Req(SDS, &[OWN], "4", None), vec![(LDS, &["inbound"])]),
                both(Req(LDS, &[], "5", Some("bad listener")), vec![]),
            ],
        },
        Case {
            name: "a_rejected_filter_config_is_not_resent_for_an_unrelated_ack",
            start: ("p1", "l1"),
            steps: vec![
                both(Req(ECDS, &[FILTER], "", None), vec![(ECDS, &[FILTER])]),
                both(Req(ECDS, &[FILTER], "1", Some("bad")), vec![]),
                both(Req(SDS, &[OWN], "", None), vec![(SDS, &[OWN])]),
                both(Req(SDS, &[OWN], "2", None), vec![]),
            ],
        },
    ]
}

fn want(w: &[(ResourceType, &'static [&'static str])]) -> Out {
    w.iter()
        .map(|(t, names)| {
            let mut n: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            n.sort();
            (*t, n)
        })
        .collect()
}

fn sotw_request(
    t: ResourceType,
    names: &[&str],
    nonce: &str,
    nack: Option<&str>,
) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: t.type_url().into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        error_detail: nack.map(|m| Status {
            code: 3,
            message: m.into(),
            details: vec![],
        }),
        ..Default::default()
    }
}

/// A delta request subscribing to the names not yet subscribed for `t`.
fn delta_request(
    subscribed: &mut std::collections::BTreeMap<ResourceType, Vec<String>>,
    t: ResourceType,
    names: &[&str],
    nonce: &str,
    nack: Option<&str>,
) -> DeltaDiscoveryRequest {
    let have = subscribed.entry(t).or_default();
    let new: Vec<String> = names
        .iter()
        .map(|s| s.to_string())
        .filter(|n| !have.contains(n))
        .collect();
    have.extend(new.iter().cloned());
    DeltaDiscoveryRequest {
        type_url: t.type_url().into(),
        resource_names_subscribe: new,
        response_nonce: nonce.into(),
        error_detail: nack.map(|m| Status {
            code: 3,
            message: m.into(),
            details: vec![],
        }),
        ..Default::default()
    }
}

fn type_of(url: &str) -> ResourceType {
    ResourceType::from_type_url(url).unwrap()
}

#[test]
fn sotw_request_sequences() {
    for case in cases() {
        let mut st = SotwState::new();
        let mut snap = node(case.start.0, case.start.1);
        for (i, Expect { step, sotw: w, .. }) in case.steps.iter().enumerate() {
            let got: Out = match step {
                Req(t, names, nonce, nack) => {
                    let (_, out) = st.on_request(&sotw_request(*t, names, nonce, *nack), &snap);
                    out.iter()
                        .map(|r| (type_of(&r.type_url), sotw_names(r)))
                        .collect()
                }
                Snap(p, l) => {
                    snap = node(p, l);
                    let (_, out) = st.on_snapshot(&snap);
                    out.iter()
                        .map(|r| (type_of(&r.type_url), sotw_names(r)))
                        .collect()
                }
            };
            assert_eq!(got, want(w), "{} step {i} ({step:?})", case.name);
        }
    }
}

fn sotw_names(r: &xds_api::pb::envoy::service::discovery::v3::DiscoveryResponse) -> Vec<String> {
    use prost::Message;
    let t = type_of(&r.type_url);
    let mut names: Vec<String> = r
        .resources
        .iter()
        .map(|a| match t {
            ResourceType::Listener => Listener::decode(a.value.as_slice()).unwrap().name,
            ResourceType::ExtensionConfig => {
                TypedExtensionConfig::decode(a.value.as_slice())
                    .unwrap()
                    .name
            }
            ResourceType::Secret => Secret::decode(a.value.as_slice()).unwrap().name,
            ResourceType::Cluster => String::new(),
        })
        .collect();
    names.sort();
    names
}

#[test]
fn delta_request_sequences() {
    for case in cases() {
        let mut st = DeltaState::new();
        let mut subscribed = Default::default();
        let mut snap = node(case.start.0, case.start.1);
        for (i, Expect { step, delta: w, .. }) in case.steps.iter().enumerate() {
            let out = match step {
                Req(t, names, nonce, nack) => {
                    let r = delta_request(&mut subscribed, *t, names, nonce, *nack);
                    st.on_request(&r, &snap).1
                }
                Snap(p, l) => {
                    snap = node(p, l);
                    st.on_snapshot(&snap).1
                }
            };
            let got: Out = out
                .iter()
                .map(|r| {
                    let mut n: Vec<String> = r.resources.iter().map(|x| x.name.clone()).collect();
                    n.sort();
                    (type_of(&r.type_url), n)
                })
                .collect();
            assert_eq!(got, want(w), "{} step {i} ({step:?})", case.name);
        }
    }
}
