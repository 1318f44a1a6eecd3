//! CDS clusters: the local app (plain HTTP on loopback) and one mTLS cluster per upstream
//! workload, whose TLS presents the caller's SVID and accepts only the upstream's SPIFFE
//! ID (URI SAN exact match) under the trust bundle from SDS.

use xds_api::pb::envoy::config::cluster::v3::{cluster, Cluster};
use xds_api::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    subject_alt_name_matcher::SanType, CertificateValidationContext, SubjectAltNameMatcher,
};
use xds_api::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use xds_api::pb::google::protobuf::Duration;

use super::common::{address, sds, tls_socket};
use crate::config::Workload;
use crate::xds::ext::{
    CombinedCertificateValidationContext, CommonTlsContext, UpstreamTlsContext,
    ValidationContextType,
};

pub(super) fn static_cluster(name: &str, endpoint: std::net::SocketAddr) -> Cluster {
    Cluster {
        name: name.to_string(),
        connect_timeout: Some(Duration {
            seconds: 2,
            nanos: 0,
        }),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(address(endpoint)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The workload's own app, reached in plain HTTP.
pub(super) fn local_app(w: &Workload) -> Cluster {
    static_cluster(super::names::LOCAL_APP_CLUSTER, w.inbound.app)
}

/// mTLS to `target`'s inbound listener, as `own_svid`, accepting only `target`'s SPIFFE ID.
pub(super) fn upstream(name: &str, target: &Workload, own_svid: &str, bundle: &str) -> Cluster {
    let san = SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact(
                target.spiffe_id.to_string(),
            )),
            ..Default::default()
        }),
    };
    let tls = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: Vec::new(),
            tls_certificate_sds_secret_configs: vec![sds(own_svid)],
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_typed_subject_alt_names: vec![san],
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds(bundle)),
                },
            )),
        }),
        sni: target.name.clone(),
    };
    Cluster {
        transport_socket: Some(tls_socket(&tls)),
        ..static_cluster(name, target.inbound.listen)
    }
}
