//! LDS listeners: the inbound mTLS listener (client certificate required, SPIFFE
//! validation, `warden-authz` filter from ECDS, caller identity forwarded to the app in
//! `x-forwarded-client-cert`) and plain-HTTP outbound listeners, one per upstream.
//! Every listener sets `enable_reuse_port: false` (REFERENCE.md: SO_REUSEPORT trap).

use std::net::SocketAddr;

use xds_api::pb::envoy::config::accesslog::v3::AccessLog;
use xds_api::pb::envoy::config::core::v3::ExtensionConfigSource;
use xds_api::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use xds_api::pb::envoy::config::route::v3::{
    retry_policy::{retry_host_predicate, RetryHostPredicate},
    route, route_action, route_match, RetryPolicy, Route, RouteAction, RouteConfiguration,
    RouteMatch, VirtualHost,
};
use xds_api::pb::envoy::extensions::filters::http::router::v3::Router;
use xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::{
        self, ForwardClientCertDetails, PathWithEscapedSlashesAction, SetCurrentClientCertDetails,
    },
    http_filter, HttpConnectionManager, HttpFilter,
};
use xds_api::pb::google::protobuf::{Any, BoolValue, UInt32Value};

use super::common::{address, ads, any, sds, tls_socket};
use crate::config::{EscapedSlashes, PolicySettings, Workload};
use crate::rbac::proto::HttpRbac;
use crate::xds::ext::{CommonTlsContext, DownstreamTlsContext, ValidationContextType, Wasm};

/// Retries a request on another instance when the connection failed, was reset or the
/// stream refused (an instance going away), at most [`RETRIES`] times; the
/// `previous_hosts` predicate makes each retry pick a host not tried yet.
fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        retry_on: "connect-failure,reset,refused-stream".to_string(),
        num_retries: Some(UInt32Value { value: RETRIES }),
        retry_host_predicate: vec![RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".to_string(),
            config_type: Some(retry_host_predicate::ConfigType::TypedConfig(Any {
                type_url: "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate".to_string(),
                value: Vec::new(),
            })),
        }],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    }
}

/// How many times an outbound request is retried on another instance.
pub(super) const RETRIES: u32 = 3;

fn route_to(cluster: &str) -> RouteConfiguration {
    route_with(cluster, None)
}

fn route_with(cluster: &str, retry: Option<RetryPolicy>) -> RouteConfiguration {
    RouteConfiguration {
        request_headers_to_add: Vec::new(),
        name: format!("to-{cluster}"),
        virtual_hosts: vec![VirtualHost {
            name: cluster.to_string(),
            domains: vec!["*".to_string()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                        cluster.to_string(),
                    )),
                    retry_policy: retry,
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn router() -> HttpFilter {
    HttpFilter {
        name: "envoy.filters.http.router".to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(
            any(&Router::default()),
        )),
        ..Default::default()
    }
}

fn hcm_filter(hcm: &HttpConnectionManager) -> Filter {
    Filter {
        name: "envoy.filters.network.http_connection_manager".to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(any(hcm))),
    }
}

fn listener(name: &str, at: SocketAddr, chain: FilterChain) -> Listener {
    Listener {
        name: name.to_string(),
        address: Some(address(at)),
        filter_chains: vec![chain],
        enable_reuse_port: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// `path_with_escaped_slashes_action` for the setting.
fn escaped_slashes_action(setting: EscapedSlashes) -> PathWithEscapedSlashesAction {
    match setting {
        EscapedSlashes::Reject => PathWithEscapedSlashesAction::RejectRequest,
        EscapedSlashes::UnescapeAndRedirect => PathWithEscapedSlashesAction::UnescapeAndRedirect,
        EscapedSlashes::UnescapeAndForward => PathWithEscapedSlashesAction::UnescapeAndForward,
    }
}

/// The inbound listener on `inbound.listen`. Paths are made canonical before any filter
/// runs, and the canonical path is what the app receives, so the policy judges the path
/// the app serves: RFC 3986 dot segments removed and unreserved escapes decoded
/// (`normalize_path`; `/api/%2e%2e/admin` → `/admin`), slashes merged (`merge_slashes`;
/// `/api//..//admin` → `/admin`), `%2F`/`%5C` per `policy.escaped_slashes` (default:
/// 400). Stricter than Istio's default (`BASE`: `normalize_path` only).
///
/// The `warden-authz` filter comes over ECDS and may be the Wasm filter or Envoy's RBAC
/// filter (`crate::rbac`); for the latter the listener maps RBAC denies to the deny
/// status with a decision id, logs each RBAC decision and sets `x-spiffe-id` (see
/// `native`). Switching a workload between the two is one ECDS push.
pub(super) fn inbound(
    w: &Workload,
    own_svid: &str,
    bundle: &str,
    settings: &PolicySettings,
    audit_log: Option<AccessLog>,
) -> Listener {
    let authz = HttpFilter {
        name: super::AUTHZ_FILTER_NAME.to_string(),
        config_type: Some(http_filter::ConfigType::ConfigDiscovery(
            ExtensionConfigSource {
                config_source: Some(ads()),
                type_urls: vec![
                    <Wasm as prost::Name>::type_url(),
                    <HttpRbac as prost::Name>::type_url(),
                ],
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let mut routes = route_to(super::names::LOCAL_APP_CLUSTER);
    routes.request_headers_to_add = vec![super::native::trusted_identity()];
    let hcm = HttpConnectionManager {
        stat_prefix: "inbound".to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(routes)),
        http_filters: vec![authz, router()],
        local_reply_config: Some(super::native::local_reply(settings)),
        access_log: std::iter::once(super::native::decision_log())
            .chain(audit_log)
            .collect(),
        normalize_path: Some(BoolValue { value: true }),
        merge_slashes: true,
        path_with_escaped_slashes_action: escaped_slashes_action(settings.escaped_slashes) as i32,
        forward_client_cert_details: ForwardClientCertDetails::SanitizeSet as i32,
        set_current_client_cert_details: Some(SetCurrentClientCertDetails {
            uri: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    let tls = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: Vec::new(),
            tls_certificate_sds_secret_configs: vec![sds(own_svid)],
            validation_context_type: Some(ValidationContextType::ValidationContextSdsSecretConfig(
                sds(bundle),
            )),
        }),
        require_client_certificate: Some(BoolValue { value: true }),
        // A resumed TLS session skips certificate validation, and Envoy then reports
        // `connection.peer_certificate_valid` false: the filter would deny every request
        // on a resumed connection (seen with Envoy 1.40). Full handshakes only.
        disable_stateless_session_resumption: true,
        disable_stateful_session_resumption: true,
    };
    let chain = FilterChain {
        filters: vec![hcm_filter(&hcm)],
        transport_socket: Some(tls_socket(&tls)),
        ..Default::default()
    };
    listener(super::names::INBOUND_LISTENER, w.inbound.listen, chain)
}

/// A plain-HTTP listener on `at` for the local app, routing to `cluster` (mTLS onward).
/// The default `forward_client_cert_details` (SANITIZE) drops any XFCC the app sends.
pub(super) fn outbound(name: &str, at: SocketAddr, cluster: &str) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: name.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            route_with(cluster, Some(retry_policy())),
        )),
        http_filters: vec![router()],
        ..Default::default()
    };
    let chain = FilterChain {
        filters: vec![hcm_filter(&hcm)],
        ..Default::default()
    };
    listener(name, at, chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_routes_retry_on_another_instance_and_inbound_ones_do_not() {
        let retry = |r: &RouteConfiguration| match &r.virtual_hosts[0].routes[0].action {
            Some(route::Action::Route(a)) => a.retry_policy.clone(),
            _ => None,
        };
        let p = retry(&route_with("upstream-backend", Some(retry_policy()))).unwrap();
        assert_eq!(p.retry_on, "connect-failure,reset,refused-stream");
        assert_eq!(p.num_retries.map(|n| n.value), Some(RETRIES));
        assert_eq!(
            p.retry_host_predicate[0].name,
            "envoy.retry_host_predicates.previous_hosts"
        );
        assert!(retry(&route_to("local-app")).is_none());
    }
}
