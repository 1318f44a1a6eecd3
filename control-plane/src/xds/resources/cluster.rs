//! CDS clusters: the local app (plain HTTP on loopback) and one mTLS cluster per upstream
//! workload, whose TLS presents the caller's SVID and accepts only the upstream's SPIFFE
//! ID (URI SAN exact match) under the trust bundle from SDS.
//!
//! An upstream cluster reaches every instance of its target: a static endpoint
//! (`inbound.listen`), a static list (`inbound.endpoints`) or a DNS name Envoy resolves
//! itself (`inbound.service`: STRICT_DNS, refreshed every [`DNS_REFRESH`] or at the
//! record's TTL), so the endpoint set lives in DNS, not in one control-plane replica.
//! Outlier detection ejects an instance after consecutive connect failures or 5xx; the
//! outbound route retries on another instance (`listener.rs`).

use xds_api::pb::envoy::config::cluster::v3::{cluster, Cluster, OutlierDetection};
use xds_api::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    subject_alt_name_matcher::SanType, CertificateValidationContext, SubjectAltNameMatcher,
};
use xds_api::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use xds_api::pb::google::protobuf::{Duration, UInt32Value};

use super::common::{address, sds, tls_socket};
use crate::config::{Reach, Workload};
use crate::xds::ext::{
    CombinedCertificateValidationContext, CommonTlsContext, UpstreamTlsContext,
    ValidationContextType,
};

/// How often Envoy re-resolves an `inbound.service` name when the record has no TTL
/// (with `respect_dns_ttl` the record's TTL wins).
pub(super) const DNS_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) fn static_cluster(name: &str, endpoint: std::net::SocketAddr) -> Cluster {
    endpoints_cluster(name, &[endpoint])
}

fn lb_endpoint(address: xds_api::pb::envoy::config::core::v3::Address) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(address),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn endpoints_cluster(name: &str, endpoints: &[std::net::SocketAddr]) -> Cluster {
    let lb = endpoints.iter().map(|e| lb_endpoint(address(*e))).collect();
    assigned(name, cluster::DiscoveryType::Static, lb)
}

/// A STRICT_DNS cluster: every address `host` resolves to is one instance.
fn dns_cluster(name: &str, host: &str, port: u16) -> Cluster {
    use xds_api::pb::envoy::config::core::v3::{address, socket_address, SocketAddress};
    let addr = xds_api::pb::envoy::config::core::v3::Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: host.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    };
    Cluster {
        dns_refresh_rate: Some(Duration {
            seconds: DNS_REFRESH.as_secs() as i64,
            nanos: 0,
        }),
        respect_dns_ttl: true,
        dns_lookup_family: cluster::DnsLookupFamily::V4Preferred as i32,
        ..assigned(
            name,
            cluster::DiscoveryType::StrictDns,
            vec![lb_endpoint(addr)],
        )
    }
}

/// Ejects an instance after 3 consecutive 5xx or connect failures (a killed instance
/// refuses connections at once) for 10 s (longer on repeat), at most half the instances.
fn outlier_detection() -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: Some(UInt32Value { value: 3 }),
        interval: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
        base_ejection_time: Some(Duration {
            seconds: 10,
            nanos: 0,
        }),
        max_ejection_percent: Some(UInt32Value { value: 50 }),
        ..Default::default()
    }
}

fn assigned(name: &str, kind: cluster::DiscoveryType, lb_endpoints: Vec<LbEndpoint>) -> Cluster {
    Cluster {
        name: name.to_string(),
        connect_timeout: Some(Duration {
            seconds: 2,
            nanos: 0,
        }),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(kind as i32)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints,
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
    let base = match &target.inbound.reach {
        Reach::Listen => static_cluster(name, target.inbound.listen),
        Reach::Endpoints(list) => endpoints_cluster(name, list),
        Reach::Service { host, port } => dns_cluster(name, host, *port),
    };
    secured(
        base,
        &target.name,
        target.spiffe_id.as_str(),
        own_svid,
        bundle,
    )
}

/// A workload of a federated trust domain: where it listens and its SPIFFE ID.
pub(super) struct Target<'a> {
    pub(super) sni: &'a str,
    pub(super) spiffe_id: &'a str,
    pub(super) address: std::net::SocketAddr,
}

/// mTLS to `target.address`, as `own_svid`, accepting only `target.spiffe_id` (checked
/// against the validation context `bundle`, which may hold federated trust domains).
pub(super) fn upstream_to(
    name: &str,
    target: &Target<'_>,
    own_svid: &str,
    bundle: &str,
) -> Cluster {
    let base = static_cluster(name, target.address);
    secured(base, target.sni, target.spiffe_id, own_svid, bundle)
}

/// `base` with mTLS (presenting `own_svid`, accepting only `spiffe_id` under `bundle`)
/// and outlier detection.
fn secured(base: Cluster, sni: &str, spiffe_id: &str, own_svid: &str, bundle: &str) -> Cluster {
    let san = SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact(spiffe_id.to_string())),
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
        sni: sni.to_string(),
    };
    Cluster {
        transport_socket: Some(tls_socket(&tls)),
        outlier_detection: Some(outlier_detection()),
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Reach;

    fn target(reach: Reach) -> Workload {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
        let cfg = crate::config::load(&root).unwrap_or_else(|d| panic!("{d}"));
        let mut w = cfg.workload("backend").unwrap().clone();
        w.inbound.reach = reach;
        w
    }

    fn kind(c: &Cluster) -> Option<cluster::DiscoveryType> {
        match c.cluster_discovery_type {
            Some(cluster::ClusterDiscoveryType::Type(t)) => {
                cluster::DiscoveryType::try_from(t).ok()
            }
            _ => None,
        }
    }

    fn hosts(c: &Cluster) -> usize {
        c.load_assignment
            .as_ref()
            .map_or(0, |l| l.endpoints[0].lb_endpoints.len())
    }

    #[test]
    fn a_service_is_a_strict_dns_cluster_that_follows_the_ttl() {
        let w = target(Reach::Service {
            host: "backend.demo.svc.cluster.local".into(),
            port: 15002,
        });
        let c = upstream("upstream-backend", &w, "svid", "bundle");
        assert_eq!(kind(&c), Some(cluster::DiscoveryType::StrictDns));
        assert!(c.respect_dns_ttl);
        assert_eq!(c.dns_refresh_rate.as_ref().map(|d| d.seconds), Some(2));
        assert_eq!(hosts(&c), 1);
        let od = c.outlier_detection.as_ref().unwrap();
        assert_eq!(od.consecutive_5xx.as_ref().map(|v| v.value), Some(3));
        assert_eq!(od.max_ejection_percent.as_ref().map(|v| v.value), Some(50));
    }

    #[test]
    fn endpoints_and_the_single_listen_address_are_static() {
        let list = vec![
            "127.0.0.11:15002".parse().unwrap(),
            "127.0.0.12:15002".parse().unwrap(),
        ];
        let c = upstream("u", &target(Reach::Endpoints(list)), "s", "b");
        assert_eq!(
            (kind(&c), hosts(&c)),
            (Some(cluster::DiscoveryType::Static), 2)
        );
        let c = upstream("u", &target(Reach::Listen), "s", "b");
        assert_eq!(
            (kind(&c), hosts(&c)),
            (Some(cluster::DiscoveryType::Static), 1)
        );
        assert!(c.outlier_detection.is_some());
    }
}
