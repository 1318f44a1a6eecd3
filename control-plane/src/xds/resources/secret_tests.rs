//! Validation contexts with federated trust domains, and upstreams in another trust
//! domain, on the sample mesh.

use std::path::PathBuf;
use std::time::Duration;

use prost::Message;
use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::config::core::v3::transport_socket;
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};

use super::super::{build_node_snapshot, NodeInputs};
use crate::config::ForeignUpstream;
use crate::identity::{Ca, CaParams, SvidParams, SystemClock, TrustBundle};
use crate::xds::ext::{self, SpiffeCertValidatorConfig, UpstreamTlsContext};
use crate::xds::snapshot::Snapshot;
use crate::xds::types::ResourceType;

fn foreign(td: &str) -> TrustBundle {
    TrustBundle {
        trust_domain: td.parse().unwrap(),
        x509_authorities_der: vec![vec![0x30, 0x00]],
        sequence: 9,
    }
}

fn snapshot(federated: &[TrustBundle], foreign_upstream: bool) -> Snapshot {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::test_support::sample_mesh(dir.path());
    let params = CaParams {
        state_dir: dir.path().to_path_buf(),
        ..config.ca_params()
    };
    let ca = Ca::load_or_init(&params, &SystemClock).unwrap();
    let i = config
        .workloads
        .iter()
        .position(|w| w.name == "frontend")
        .unwrap();
    if foreign_upstream {
        config.workloads[i].upstreams[0].foreign = Some(ForeignUpstream {
            spiffe_id: "spiffe://b.test/ns/shop/sa/api".parse().unwrap(),
            address: "127.0.0.1:4444".parse().unwrap(),
        });
    }
    let w = &config.workloads[i];
    let svid = ca
        .mint(
            &SvidParams {
                id: w.spiffe_id.clone(),
                ttl: Duration::from_secs(600),
            },
            &SystemClock,
        )
        .unwrap();
    let module = PathBuf::from("/opt/warden/warden_filter.wasm");
    build_node_snapshot(&NodeInputs {
        config: &config,
        workload: w,
        svid: &svid,
        bundle: &ca.bundle(),
        federated,
        filter_module: &module,
    })
    .unwrap()
}

fn trust_domains(snap: &Snapshot, name: &str) -> Vec<String> {
    let r = &snap.get(ResourceType::Secret).unwrap().resources[name];
    let s = Secret::decode(r.body.value.as_slice()).unwrap();
    let Some(secret::Type::ValidationContext(vc)) = s.r#type else {
        panic!("{name} is not a validation context")
    };
    let any = vc.custom_validator_config.unwrap().typed_config.unwrap();
    let cfg = SpiffeCertValidatorConfig::decode(any.value.as_slice()).unwrap();
    cfg.trust_domains.into_iter().map(|t| t.name).collect()
}

fn upstream_tls(snap: &Snapshot) -> (Cluster, UpstreamTlsContext) {
    let (name, r) = snap
        .get(ResourceType::Cluster)
        .unwrap()
        .resources
        .iter()
        .find(|(n, _)| n.starts_with("upstream-"))
        .unwrap();
    let c = Cluster::decode(r.body.value.as_slice()).unwrap();
    let Some(transport_socket::ConfigType::TypedConfig(any)) =
        c.transport_socket.clone().and_then(|t| t.config_type)
    else {
        panic!("{name}: no TLS")
    };
    (c, UpstreamTlsContext::decode(any.value.as_slice()).unwrap())
}

#[test]
fn without_federation_all_holds_only_the_own_trust_domain() {
    let snap = snapshot(&[], false);
    assert_eq!(trust_domains(&snap, "ALL"), vec!["example.org"]);
    assert_eq!(trust_domains(&snap, "ROOTCA"), vec!["example.org"]);
}

#[test]
fn each_federated_trust_domain_gets_its_own_secret_and_all_gets_one_ca_set_per_domain() {
    let snap = snapshot(&[foreign("b.test"), foreign("c.test")], false);
    assert_eq!(trust_domains(&snap, "spiffe://b.test"), vec!["b.test"]);
    assert_eq!(trust_domains(&snap, "spiffe://c.test"), vec!["c.test"]);
    assert_eq!(
        trust_domains(&snap, "spiffe://example.org"),
        vec!["example.org"]
    );
    assert_eq!(trust_domains(&snap, "ROOTCA"), vec!["example.org"]);
    assert_eq!(
        trust_domains(&snap, "ALL"),
        vec!["example.org", "b.test", "c.test"]
    );
    let (_, tls) = upstream_tls(&snap);
    let Some(ext::ValidationContextType::CombinedValidationContext(c)) =
        tls.common_tls_context.unwrap().validation_context_type
    else {
        panic!("no combined validation context")
    };
    assert_eq!(c.validation_context_sds_secret_config.unwrap().name, "ALL");
}

#[test]
fn a_federated_bundle_claiming_the_own_trust_domain_never_replaces_the_own_cas() {
    let snap = snapshot(&[foreign("example.org")], false);
    assert_eq!(trust_domains(&snap, "ALL"), vec!["example.org"]);
}

#[test]
fn an_upstream_in_another_trust_domain_is_dialled_at_its_address_and_checked_by_its_id() {
    let snap = snapshot(&[foreign("b.test")], true);
    let (cluster, tls) = upstream_tls(&snap);
    assert!(format!("{:?}", cluster.load_assignment).contains("PortValue(4444)"));
    let Some(ext::ValidationContextType::CombinedValidationContext(c)) =
        tls.common_tls_context.unwrap().validation_context_type
    else {
        panic!("no combined validation context")
    };
    let san = &c
        .default_validation_context
        .unwrap()
        .match_typed_subject_alt_names[0];
    assert_eq!(
        format!("{:?}", san.matcher),
        format!(
            "{:?}",
            Some(xds_api::pb::envoy::r#type::matcher::v3::StringMatcher {
                match_pattern: Some(
                    xds_api::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Exact(
                        "spiffe://b.test/ns/shop/sa/api".into()
                    )
                ),
                ..Default::default()
            })
        )
    );
    assert_eq!(c.validation_context_sds_secret_config.unwrap().name, "ALL");
}
