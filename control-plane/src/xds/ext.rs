//! Hand-written prost mirrors of the Envoy messages `xds-api` lacks (TLS contexts, the
//! SPIFFE validator config, the Wasm filter config). The authoritative shape is the
//! `.proto` subset under `proto/` at the workspace root; a unit test parses those files
//! and checks every field number and wire type against these structs.
//!
//! Only the fields Warden sets are mirrored; Envoy ignores nothing it needs because proto3
//! defaults for absent fields are upstream's defaults.

use prost::Name;
use xds_api::pb::envoy::config::core::v3::{AsyncDataSource, BackoffStrategy, DataSource};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, SdsSecretConfig,
};
use xds_api::pb::google::protobuf::{Any, BoolValue};

const TLS_PACKAGE: &str = "envoy.extensions.transport_sockets.tls.v3";

macro_rules! named {
    ($ty:ty, $package:expr, $name:literal) => {
        impl Name for $ty {
            const NAME: &'static str = $name;
            const PACKAGE: &'static str = $package;
            fn full_name() -> String {
                format!("{}.{}", $package, $name)
            }
            fn type_url() -> String {
                format!("type.googleapis.com/{}.{}", $package, $name)
            }
        }
    };
}

/// `envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpstreamTlsContext {
    /// Certificates and validation.
    #[prost(message, optional, tag = "1")]
    pub common_tls_context: Option<CommonTlsContext>,
    /// SNI sent to the server.
    #[prost(string, tag = "2")]
    pub sni: String,
}
named!(UpstreamTlsContext, TLS_PACKAGE, "UpstreamTlsContext");

/// `envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DownstreamTlsContext {
    /// Certificates and validation.
    #[prost(message, optional, tag = "1")]
    pub common_tls_context: Option<CommonTlsContext>,
    /// Reject clients without a certificate.
    #[prost(message, optional, tag = "2")]
    pub require_client_certificate: Option<BoolValue>,
    /// No TLS session tickets. Member of the `session_ticket_keys_type` oneof; mirrored
    /// as a plain field (same wire format; Warden only ever sets it to `true`).
    #[prost(bool, tag = "7")]
    pub disable_stateless_session_resumption: bool,
    /// No session-id resumption.
    #[prost(bool, tag = "10")]
    pub disable_stateful_session_resumption: bool,
}
named!(DownstreamTlsContext, TLS_PACKAGE, "DownstreamTlsContext");

/// `envoy.extensions.transport_sockets.tls.v3.CommonTlsContext` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CommonTlsContext {
    /// ALPN protocols offered.
    #[prost(string, repeated, tag = "4")]
    pub alpn_protocols: Vec<String>,
    /// Own certificate(s), fetched over SDS.
    #[prost(message, repeated, tag = "6")]
    pub tls_certificate_sds_secret_configs: Vec<SdsSecretConfig>,
    /// How the peer is validated.
    #[prost(oneof = "ValidationContextType", tags = "7, 8")]
    pub validation_context_type: Option<ValidationContextType>,
}
named!(CommonTlsContext, TLS_PACKAGE, "CommonTlsContext");

/// The `validation_context_type` oneof of `CommonTlsContext` (subset).
// A wire mirror: boxing would change nothing on the wire and complicate construction.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ValidationContextType {
    /// Validation context from SDS only.
    #[prost(message, tag = "7")]
    ValidationContextSdsSecretConfig(SdsSecretConfig),
    /// A static part (e.g. SAN matchers) merged with a part from SDS (the trust bundle).
    #[prost(message, tag = "8")]
    CombinedValidationContext(CombinedCertificateValidationContext),
}

/// `CommonTlsContext.CombinedCertificateValidationContext`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CombinedCertificateValidationContext {
    /// Static part, merged into the dynamic one.
    #[prost(message, optional, tag = "1")]
    pub default_validation_context: Option<CertificateValidationContext>,
    /// Dynamic part, from SDS.
    #[prost(message, optional, tag = "2")]
    pub validation_context_sds_secret_config: Option<SdsSecretConfig>,
}
named!(
    CombinedCertificateValidationContext,
    TLS_PACKAGE,
    "CommonTlsContext.CombinedCertificateValidationContext"
);

/// `envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpiffeCertValidatorConfig {
    /// One entry per trust domain accepted.
    #[prost(message, repeated, tag = "1")]
    pub trust_domains: Vec<SpiffeTrustDomain>,
}
named!(
    SpiffeCertValidatorConfig,
    TLS_PACKAGE,
    "SPIFFECertValidatorConfig"
);

/// `SPIFFECertValidatorConfig.TrustDomain`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpiffeTrustDomain {
    /// Trust domain name, without `spiffe://`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// PEM bundle of the trust domain's X.509 authorities.
    #[prost(message, optional, tag = "2")]
    pub trust_bundle: Option<DataSource>,
}
named!(
    SpiffeTrustDomain,
    TLS_PACKAGE,
    "SPIFFECertValidatorConfig.TrustDomain"
);

/// `envoy.extensions.filters.http.wasm.v3.Wasm`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Wasm {
    /// The plugin.
    #[prost(message, optional, tag = "1")]
    pub config: Option<PluginConfig>,
}
named!(Wasm, "envoy.extensions.filters.http.wasm.v3", "Wasm");

/// `envoy.extensions.wasm.v3.PluginConfig` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginConfig {
    /// Plugin name (shows in Envoy logs).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Root context id; empty selects the module's default root.
    #[prost(string, tag = "2")]
    pub root_id: String,
    /// The VM to run in (the only member of the `vm` oneof).
    #[prost(message, optional, tag = "3")]
    pub vm_config: Option<VmConfig>,
    /// Plugin configuration handed to `on_configure`.
    #[prost(message, optional, tag = "4")]
    pub configuration: Option<Any>,
    /// `FailurePolicy` enum value (see [`FAIL_RELOAD`]).
    #[prost(int32, tag = "7")]
    pub failure_policy: i32,
    /// How fast a crashed VM is reloaded under [`FAIL_RELOAD`].
    #[prost(message, optional, tag = "8")]
    pub reload_config: Option<ReloadConfig>,
}
named!(PluginConfig, "envoy.extensions.wasm.v3", "PluginConfig");

/// `envoy.extensions.wasm.v3.ReloadConfig`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReloadConfig {
    /// Backoff between reload attempts (Envoy's default: 1 s base).
    #[prost(message, optional, tag = "1")]
    pub backoff: Option<BackoffStrategy>,
}
named!(ReloadConfig, "envoy.extensions.wasm.v3", "ReloadConfig");

/// `envoy.extensions.wasm.v3.FailurePolicy.FAIL_CLOSED`: a crashed VM denies requests,
/// for good (until a new configuration).
pub const FAIL_CLOSED: i32 = 2;

/// `envoy.extensions.wasm.v3.FailurePolicy.FAIL_RELOAD`: a crashed VM denies requests
/// while Envoy creates a fresh one (with `reload_config`'s backoff).
pub const FAIL_RELOAD: i32 = 1;

/// `envoy.extensions.wasm.v3.VmConfig` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct VmConfig {
    /// VMs with the same id and code are shared between plugins.
    #[prost(string, tag = "1")]
    pub vm_id: String,
    /// `envoy.wasm.runtime.v8`.
    #[prost(string, tag = "2")]
    pub runtime: String,
    /// Where the module bytes come from.
    #[prost(message, optional, tag = "3")]
    pub code: Option<AsyncDataSource>,
}
named!(VmConfig, "envoy.extensions.wasm.v3", "VmConfig");

#[cfg(test)]
#[path = "ext_drift_tests.rs"]
mod drift_tests;
