//! The sidecar side of the audit trail: each inbound HCM gets Envoy's gRPC access log
//! (`envoy.access_loggers.http_grpc`), buffered and flushed asynchronously by Envoy
//! (never in a request's path; Envoy counts what it drops), to the `warden-audit`
//! cluster: mTLS to the control plane's ALS listener with the sidecar's own SVID, so the
//! control plane learns the destination from a verified certificate, not a claim.
//!
//! The Wasm filter's record travels in filter state `wasm.warden_decision`; a native
//! RBAC decision is recognised from the RBAC filter's dynamic metadata and response code
//! details. The Envoy messages xds-api lacks are hand-written with `prost` like
//! `xds::ext` (subset in `proto/envoy/extensions/access_loggers/grpc/v3/als.proto`, same
//! field numbers as upstream).

use std::net::SocketAddr;

use xds_api::pb::envoy::config::accesslog::v3::{
    access_log, access_log_filter, comparison_filter, AccessLog, AccessLogFilter, ComparisonFilter,
    OrFilter, RuntimeFilter, StatusCodeFilter,
};
use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::config::core::v3::{
    grpc_service, ApiVersion, GrpcService, Http2ProtocolOptions, RuntimeUInt32,
};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    subject_alt_name_matcher::SanType, CertificateValidationContext, SubjectAltNameMatcher,
};
use xds_api::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use xds_api::pb::envoy::r#type::v3::{fractional_percent::DenominatorType, FractionalPercent};

use super::common::{any, sds, tls_socket};
use crate::config::AuditSettings;
use crate::xds::ext::{
    CombinedCertificateValidationContext, CommonTlsContext, UpstreamTlsContext,
    ValidationContextType,
};

/// The cluster the access log streams to.
pub const AUDIT_CLUSTER: &str = "warden-audit";
pub use crate::audit::als_entry::DECISION_STATE;
/// The access log's name (`StreamAccessLogsMessage.identifier.log_name`).
pub const LOG_NAME: &str = "warden-decisions";

/// `envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpGrpcAccessLogConfig {
    /// Common settings.
    #[prost(message, optional, tag = "1")]
    pub common_config: Option<CommonGrpcAccessLogConfig>,
    /// Request headers logged besides the defaults.
    #[prost(string, repeated, tag = "2")]
    pub additional_request_headers_to_log: Vec<String>,
    /// Response headers logged.
    #[prost(string, repeated, tag = "3")]
    pub additional_response_headers_to_log: Vec<String>,
}
prost_named!(
    HttpGrpcAccessLogConfig,
    "envoy.extensions.access_loggers.grpc.v3",
    "HttpGrpcAccessLogConfig"
);

/// `envoy.extensions.access_loggers.grpc.v3.CommonGrpcAccessLogConfig` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CommonGrpcAccessLogConfig {
    /// Log name sent in the stream's identifier.
    #[prost(string, tag = "1")]
    pub log_name: String,
    /// Where to send.
    #[prost(message, optional, tag = "2")]
    pub grpc_service: Option<GrpcService>,
    /// Flush at least this often.
    #[prost(message, optional, tag = "3")]
    pub buffer_flush_interval: Option<xds_api::pb::google::protobuf::Duration>,
    /// Flush when this many bytes are buffered.
    #[prost(message, optional, tag = "4")]
    pub buffer_size_bytes: Option<xds_api::pb::google::protobuf::UInt32Value>,
    /// Filter-state objects to send.
    #[prost(string, repeated, tag = "5")]
    pub filter_state_objects_to_log: Vec<String>,
    /// `V3`.
    #[prost(enumeration = "ApiVersion", tag = "6")]
    pub transport_api_version: i32,
}
prost_named!(
    CommonGrpcAccessLogConfig,
    "envoy.extensions.access_loggers.grpc.v3",
    "CommonGrpcAccessLogConfig"
);

/// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions` (subset: explicit HTTP/2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpProtocolOptions {
    /// `explicit_http_config` (a member of upstream's oneof).
    #[prost(message, optional, tag = "3")]
    pub explicit_http_config: Option<ExplicitHttpConfig>,
}
prost_named!(
    HttpProtocolOptions,
    "envoy.extensions.upstreams.http.v3",
    "HttpProtocolOptions"
);

/// `HttpProtocolOptions.ExplicitHttpConfig` (subset: HTTP/2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExplicitHttpConfig {
    /// `http2_protocol_options` (a member of upstream's oneof).
    #[prost(message, optional, tag = "2")]
    pub http2_protocol_options: Option<Http2ProtocolOptions>,
}
prost_named!(
    ExplicitHttpConfig,
    "envoy.extensions.upstreams.http.v3",
    "HttpProtocolOptions.ExplicitHttpConfig"
);

/// Where sidecars dial the ALS listener, when decisions are collected.
pub fn als_address(a: &AuditSettings) -> Option<SocketAddr> {
    a.advertise.or(a.listen)
}

/// The access log on every inbound HCM: denies always (status ≥ 400 or an RBAC deny),
/// allows sampled at `sample_allows` (all by default: no filter at all).
pub(super) fn access_log(a: &AuditSettings) -> AccessLog {
    let config = HttpGrpcAccessLogConfig {
        common_config: Some(CommonGrpcAccessLogConfig {
            log_name: LOG_NAME.to_string(),
            grpc_service: Some(GrpcService {
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                    grpc_service::EnvoyGrpc {
                        cluster_name: AUDIT_CLUSTER.to_string(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            buffer_flush_interval: Some(xds_api::pb::google::protobuf::Duration {
                seconds: 0,
                nanos: 200_000_000,
            }),
            buffer_size_bytes: Some(xds_api::pb::google::protobuf::UInt32Value { value: 16_384 }),
            filter_state_objects_to_log: vec![DECISION_STATE.to_string()],
            transport_api_version: ApiVersion::V3 as i32,
        }),
        additional_request_headers_to_log: Vec::new(),
        additional_response_headers_to_log: vec!["x-warden-decision-id".to_string()],
    };
    AccessLog {
        name: "envoy.access_loggers.http_grpc".to_string(),
        filter: sample_filter(a.sample_allows),
        config_type: Some(access_log::ConfigType::TypedConfig(any(&config))),
    }
}

/// `None` at rate 1; otherwise status ≥ 400 OR a runtime sample of the rest.
fn sample_filter(rate: f64) -> Option<AccessLogFilter> {
    if rate >= 1.0 {
        return None;
    }
    let failed = AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::StatusCodeFilter(
            StatusCodeFilter {
                comparison: Some(ComparisonFilter {
                    op: comparison_filter::Op::Ge as i32,
                    value: Some(RuntimeUInt32 {
                        default_value: 400,
                        runtime_key: "warden.audit.deny_status_floor".to_string(),
                    }),
                }),
            },
        )),
    };
    let sampled = AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::RuntimeFilter(
            RuntimeFilter {
                runtime_key: "warden.audit.sample_allows".to_string(),
                percent_sampled: Some(FractionalPercent {
                    numerator: (rate.clamp(0.0, 1.0) * 1_000_000.0).round() as u32,
                    denominator: DenominatorType::Million as i32,
                }),
                use_independent_randomness: true,
            },
        )),
    };
    Some(AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::OrFilter(OrFilter {
            filters: vec![failed, sampled],
        })),
    })
}

/// mTLS (HTTP/2) to the control plane's ALS listener at `at`, as `own_svid`, accepting
/// only the control plane's SPIFFE ID (`control_plane_id`) under the bundle from SDS.
pub(super) fn cluster(
    at: SocketAddr,
    own_svid: &str,
    bundle: &str,
    control_plane_id: &str,
) -> Cluster {
    let san = SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact(
                control_plane_id.to_string(),
            )),
            ..Default::default()
        }),
    };
    let tls = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: vec!["h2".to_string()],
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
        sni: String::new(),
    };
    let http2 = HttpProtocolOptions {
        explicit_http_config: Some(ExplicitHttpConfig {
            http2_protocol_options: Some(Http2ProtocolOptions::default()),
        }),
    };
    let mut c = super::cluster::static_cluster(AUDIT_CLUSTER, at);
    c.transport_socket = Some(tls_socket(&tls));
    c.typed_extension_protocol_options.insert(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
        any(&http2),
    );
    c
}

/// Adds the `warden-audit` cluster (and its secret references) to a node's snapshot.
pub(super) fn add_cluster(
    b: &mut crate::xds::snapshot::SnapshotBuilder,
    inputs: &super::NodeInputs<'_>,
    at: SocketAddr,
    own_svid: &str,
    bundle: &str,
) -> Result<(), crate::xds::snapshot::SnapshotError> {
    use crate::xds::types::ResourceType;
    let cp = crate::xds::server::tls::control_plane_id(&inputs.config.trust_domain);
    b.add(
        ResourceType::Cluster,
        AUDIT_CLUSTER,
        &cluster(at, own_svid, bundle, cp.as_str()),
    )?;
    b.reference(
        (ResourceType::Cluster, AUDIT_CLUSTER),
        (ResourceType::Secret, own_svid),
    )
    .reference(
        (ResourceType::Cluster, AUDIT_CLUSTER),
        (ResourceType::Secret, bundle),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allow_is_logged_by_default_and_a_rate_adds_a_filter_that_keeps_failures() {
        assert!(sample_filter(1.0).is_none());
        let f = format!("{:?}", sample_filter(0.25));
        assert!(f.contains("numerator: 250000") && f.contains("Ge"), "{f}");
    }
}
