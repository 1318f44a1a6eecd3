//! The config files as written: serde types that mirror the YAML one to one and reject
//! unknown keys. Values stay strings here so `validate.rs` can report each bad value at
//! its own line with a hint, instead of serde's generic type errors.

use serde::Deserialize;

/// `warden.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWarden {
    pub(crate) trust_domain: String,
    #[serde(default)]
    pub(crate) ca: RawCa,
    #[serde(default)]
    pub(crate) server: RawServer,
    #[serde(default)]
    pub(crate) policy: RawPolicy,
    #[serde(default)]
    pub(crate) attestation: RawAttestation,
    pub(crate) audit: Option<RawAudit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub(crate) listen: Option<String>,
    pub(crate) advertise: Option<String>,
    pub(crate) sample_allows: Option<f64>,
    pub(crate) retention: Option<String>,
    pub(crate) max_size_mib: Option<u64>,
    pub(crate) otlp_endpoint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAttestation {
    pub(crate) kubernetes: Option<RawKubernetes>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKubernetes {
    pub(crate) issuer: String,
    pub(crate) audience: Option<String>,
    pub(crate) jwks_file: String,
}

/// `tokens.yaml`: join token records (hashes only), written by `warden token`.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTokens {
    #[serde(default)]
    pub(crate) tokens: Vec<RawToken>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawToken {
    pub(crate) id: String,
    pub(crate) workload: String,
    pub(crate) sha256: String,
    pub(crate) expires: String,
    #[serde(default)]
    pub(crate) revoked: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCa {
    pub(crate) key_type: Option<String>,
    pub(crate) ttl: Option<String>,
    pub(crate) svid_ttl: Option<String>,
    pub(crate) state_dir: Option<String>,
    pub(crate) upstream: Option<RawUpstreamCa>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamCa {
    pub(crate) cert: String,
    pub(crate) key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) xds_listen: Option<String>,
    pub(crate) admin_listen: Option<String>,
    /// File holding the bearer token for the mutating admin routes (`POST /ca/*`).
    pub(crate) admin_token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub(crate) entrypoint: Option<String>,
    pub(crate) mode: Option<String>,
    pub(crate) deny_status: Option<u16>,
    pub(crate) expose_reason: Option<bool>,
    pub(crate) escaped_slashes: Option<String>,
    pub(crate) native_rbac: Option<String>,
}

/// `workloads/<name>.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkload {
    pub(crate) name: String,
    pub(crate) spiffe_id: String,
    pub(crate) node_id: Option<String>,
    /// How the sidecar proves itself: `join_token`, `kubernetes` (default: both).
    pub(crate) attestation: Option<Vec<String>>,
    pub(crate) sidecar: RawSidecar,
    pub(crate) inbound: RawInbound,
    #[serde(default)]
    pub(crate) upstreams: Vec<RawUpstream>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSidecar {
    pub(crate) admin: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInbound {
    pub(crate) listen: String,
    pub(crate) app: String,
    /// `NAME:PORT`: a DNS name with every instance's address.
    #[serde(default)]
    pub(crate) service: Option<String>,
    /// Instance addresses, `IP:PORT` each.
    #[serde(default)]
    pub(crate) endpoints: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) workload: String,
    pub(crate) listen: String,
    /// A workload of a federated trust domain: its SPIFFE ID (with `address`).
    #[serde(default)]
    pub(crate) spiffe_id: Option<String>,
    /// A workload of a federated trust domain: its sidecar's inbound address.
    #[serde(default)]
    pub(crate) address: Option<String>,
}
