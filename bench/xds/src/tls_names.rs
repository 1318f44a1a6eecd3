//! Which SDS secrets and ECDS configs a Cluster or Listener refers to, found the way
//! Envoy finds them. `xds-api` 0.2.0 lacks the TLS context messages, so the few fields
//! needed are declared here (names and numbers as in Envoy's `tls.proto`; unknown
//! fields are skipped by prost).

use std::collections::BTreeSet;

use prost::Message;
use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::config::core::v3::transport_socket::ConfigType as SocketConfig;
use xds_api::pb::envoy::config::core::v3::TransportSocket;
use xds_api::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use xds_api::pb::envoy::config::listener::v3::Listener;
use xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;

/// `envoy.extensions.transport_sockets.tls.v3.{Upstream,Downstream}TlsContext`: both
/// carry the common context in field 1.
#[derive(Clone, PartialEq, Message)]
struct TlsContext {
    #[prost(message, optional, tag = "1")]
    common_tls_context: Option<CommonTlsContext>,
}

#[derive(Clone, PartialEq, Message)]
struct CommonTlsContext {
    #[prost(message, repeated, tag = "6")]
    tls_certificate_sds_secret_configs: Vec<SdsSecretConfig>,
    #[prost(message, optional, tag = "7")]
    validation_context_sds_secret_config: Option<SdsSecretConfig>,
    #[prost(message, optional, tag = "8")]
    combined_validation_context: Option<CombinedValidationContext>,
}

#[derive(Clone, PartialEq, Message)]
struct CombinedValidationContext {
    #[prost(message, optional, tag = "2")]
    validation_context_sds_secret_config: Option<SdsSecretConfig>,
}

#[derive(Clone, PartialEq, Message)]
struct SdsSecretConfig {
    #[prost(string, tag = "1")]
    name: String,
}

/// Names a resource makes Envoy subscribe to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Refs {
    /// SDS secret names.
    pub(crate) secrets: BTreeSet<String>,
    /// ECDS extension config names.
    pub(crate) extensions: BTreeSet<String>,
}

impl Refs {
    /// Adds the secrets of a cluster's transport socket.
    pub(crate) fn add_cluster(&mut self, cluster: &Cluster) {
        if let Some(socket) = &cluster.transport_socket {
            self.add_socket(socket);
        }
    }

    /// Adds the secrets of every filter chain and the ECDS names of every HTTP filter.
    pub(crate) fn add_listener(&mut self, listener: &Listener) {
        for chain in &listener.filter_chains {
            if let Some(socket) = &chain.transport_socket {
                self.add_socket(socket);
            }
            for filter in &chain.filters {
                let Some(FilterConfig::TypedConfig(any)) = &filter.config_type else {
                    continue;
                };
                let Ok(hcm) = any.to_msg::<HttpConnectionManager>() else {
                    continue;
                };
                for http in &hcm.http_filters {
                    if let Some(HttpFilterConfig::ConfigDiscovery(_)) = &http.config_type {
                        self.extensions.insert(http.name.clone());
                    }
                }
            }
        }
    }

    fn add_socket(&mut self, socket: &TransportSocket) {
        let Some(SocketConfig::TypedConfig(any)) = &socket.config_type else {
            return;
        };
        let Ok(ctx) = TlsContext::decode(any.value.as_slice()) else {
            return;
        };
        let Some(common) = ctx.common_tls_context else {
            return;
        };
        for sds in common.tls_certificate_sds_secret_configs {
            self.secrets.insert(sds.name);
        }
        if let Some(sds) = common.validation_context_sds_secret_config {
            self.secrets.insert(sds.name);
        }
        if let Some(sds) = common
            .combined_validation_context
            .and_then(|c| c.validation_context_sds_secret_config)
        {
            self.secrets.insert(sds.name);
        }
    }
}
