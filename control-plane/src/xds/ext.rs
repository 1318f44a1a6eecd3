//! The Envoy messages `xds-api` lacks (TLS contexts, the SPIFFE validator config, the Wasm
//! filter config), generated from the `.proto` subsets under `proto/envoy/` by
//! `warden-proto-gen` into `generated/` (committed; its test fails when they are stale).
//! Messages they share with the rest of the Envoy API (`config.core.v3`, `SdsSecretConfig`,
//! `CertificateValidationContext`, `google.protobuf`) are `xds-api`'s own types.
//!
//! Only the fields Warden sets are in the subsets; Envoy ignores nothing it needs because
//! proto3 defaults for absent fields are upstream's defaults. This module re-exports the
//! generated types under the short names the resource builders use.

/// The generated code, in modules that mirror the protobuf packages (generated code
/// refers to sibling packages by relative paths).
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    /// `envoy.extensions.*`
    pub mod extensions {
        /// `envoy.extensions.transport_sockets.*`
        pub mod transport_sockets {
            /// `envoy.extensions.transport_sockets.tls.*`
            pub mod tls {
                /// `envoy.extensions.transport_sockets.tls.v3`
                pub mod v3 {
                    include!("generated/envoy.extensions.transport_sockets.tls.v3.rs");
                }
            }
        }
        /// `envoy.extensions.wasm.*`
        pub mod wasm {
            /// `envoy.extensions.wasm.v3`
            pub mod v3 {
                include!("generated/envoy.extensions.wasm.v3.rs");
            }
        }
        /// `envoy.extensions.filters.*`
        pub mod filters {
            /// `envoy.extensions.filters.http.*`
            pub mod http {
                /// `envoy.extensions.filters.http.wasm.*`
                pub mod wasm {
                    /// `envoy.extensions.filters.http.wasm.v3`
                    pub mod v3 {
                        include!("generated/envoy.extensions.filters.http.wasm.v3.rs");
                    }
                }
            }
        }
    }
}

pub use pb::extensions::filters::http::wasm::v3::Wasm;
pub use pb::extensions::transport_sockets::tls::v3::common_tls_context::{
    CombinedCertificateValidationContext, ValidationContextType,
};
pub use pb::extensions::transport_sockets::tls::v3::spiffe_cert_validator_config::TrustDomain as SpiffeTrustDomain;
pub use pb::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, SpiffeCertValidatorConfig, UpstreamTlsContext,
};
pub use pb::extensions::wasm::v3::{FailurePolicy, PluginConfig, ReloadConfig, VmConfig};

/// `FailurePolicy.FAIL_CLOSED`: a crashed VM denies requests, for good (until a new
/// configuration).
pub const FAIL_CLOSED: i32 = FailurePolicy::FailClosed as i32;

/// `FailurePolicy.FAIL_RELOAD`: a crashed VM denies requests while Envoy creates a fresh
/// one (with `reload_config`'s backoff).
pub const FAIL_RELOAD: i32 = FailurePolicy::FailReload as i32;

#[cfg(test)]
mod tests {
    use prost::{Message, Name};
    use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;

    use super::*;

    #[test]
    fn type_urls_name_the_upstream_envoy_messages() {
        let tls = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3";
        assert_eq!(
            UpstreamTlsContext::type_url(),
            format!("{tls}.UpstreamTlsContext")
        );
        assert_eq!(
            DownstreamTlsContext::type_url(),
            format!("{tls}.DownstreamTlsContext")
        );
        assert_eq!(
            SpiffeCertValidatorConfig::type_url(),
            format!("{tls}.SPIFFECertValidatorConfig")
        );
        assert_eq!(
            CombinedCertificateValidationContext::full_name(),
            "envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.CombinedCertificateValidationContext"
        );
        assert_eq!(
            Wasm::type_url(),
            "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
        );
        assert_eq!(
            PluginConfig::full_name(),
            "envoy.extensions.wasm.v3.PluginConfig"
        );
        assert_eq!((FAIL_RELOAD, FAIL_CLOSED), (1, 2));
    }

    #[test]
    fn messages_round_trip_and_keep_upstream_field_numbers() {
        let sds = SdsSecretConfig {
            name: "spiffe://example.org/app".into(),
            ..Default::default()
        };
        let tls = DownstreamTlsContext {
            common_tls_context: Some(CommonTlsContext {
                alpn_protocols: vec!["h2".into()],
                tls_certificate_sds_secret_configs: vec![sds.clone()],
                validation_context_type: Some(
                    ValidationContextType::ValidationContextSdsSecretConfig(sds),
                ),
            }),
            require_client_certificate: Some(Default::default()),
            disable_stateless_session_resumption: true,
            disable_stateful_session_resumption: true,
        };
        let bytes = tls.encode_to_vec();
        assert_eq!(DownstreamTlsContext::decode(bytes.as_slice()).unwrap(), tls);
        // Field 1 (common_tls_context, length-delimited) first; 7 and 10 are varints.
        assert_eq!(bytes[0], 1 << 3 | 2);
        assert!(bytes.ends_with(&[7 << 3, 1, 10 << 3, 1]), "{bytes:?}");
        let plugin = PluginConfig {
            vm_config: Some(VmConfig::default()),
            failure_policy: FAIL_RELOAD,
            ..Default::default()
        };
        let bytes = plugin.encode_to_vec();
        assert_eq!(bytes, vec![3 << 3 | 2, 0, 7 << 3, 1]);
    }
}
