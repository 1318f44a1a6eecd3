//! Config-as-code: a directory in the user's git repo describes the trust domain, the CA,
//! the server, the workloads and the Rego policies (layout in ARCHITECTURE.md).
//!
//! [`load`] reads and checks everything at once and returns either a typed, validated
//! [`Config`] or every problem as a [`Diagnostic`] at `file:line:col` with a hint. It does
//! no network I/O and never writes; the CA state directory is only named here.

mod admin_auth;
pub use admin_auth::{read_operator_token, OperatorTokenError, MIN_OPERATOR_TOKEN_LEN};
mod attestation;
mod audit;
pub use audit::AuditSettings;
mod ctx;
mod data_value;
mod diag;
pub mod duration;
pub mod federation;
mod files;
mod policy_check;
mod raw;
pub mod reach;
pub mod replica;
mod spans;
pub mod tokens_file;
mod validate;
pub mod workload_api;
mod workloads;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use diag::{Diagnostic, Diagnostics, Pos, Severity};
pub use files::{read_policy_dir, PolicyDir};
pub use reach::{InstanceIpHosts, Reach};

use crate::identity::{CaParams, KeyType, SpiffeId, TrustDomain, UpstreamCa};

/// The main file of a config directory.
pub const MAIN_FILE: &str = "warden.yaml";
/// Folder with one YAML file per workload.
pub const WORKLOADS_DIR: &str = "workloads";
/// Folder with the Rego policies, their tests and optional data.
pub const POLICIES_DIR: &str = "policies";
/// Join token records (SHA-256 only), maintained by `warden token`.
pub const TOKENS_FILE: &str = "tokens.yaml";

/// A validated config directory.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config directory (as given).
    pub dir: PathBuf,
    pub trust_domain: TrustDomain,
    pub ca: CaSettings,
    pub server: ServerSettings,
    pub policy: PolicySettings,
    /// Sorted by name.
    pub workloads: Vec<Workload>,
    pub policies: PolicySources,
    /// How sidecars prove who they are (`attestation:` in warden.yaml).
    pub attestation: AttestationSettings,
    /// Join token records from `tokens.yaml`.
    pub tokens: Vec<JoinTokenRecord>,
    /// The audit trail (`audit:` in warden.yaml).
    pub audit: AuditSettings,
    /// Problems that do not stop the config from working (e.g. svid_ttl above 1/6 of the
    /// CA's ttl); `validate` prints them, `serve` logs them.
    pub warnings: Vec<Diagnostic>,
}

/// Caller attestation settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestationSettings {
    pub kubernetes: Option<KubernetesSettings>,
}

/// Kubernetes projected service-account tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSettings {
    /// The cluster's service-account issuer (`iss`).
    pub issuer: String,
    /// Required audience (default `warden`).
    pub audience: String,
    /// JWKS file with the issuer's public keys.
    pub jwks_file: PathBuf,
    /// Its content, read at load time.
    pub jwks: String,
}

/// One join token, by hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTokenRecord {
    /// Public id (8 hex), the middle part of the token.
    pub id: String,
    /// The workload the token proves.
    pub workload: String,
    /// SHA-256 of the whole token.
    pub sha256: [u8; 32],
    pub expires: std::time::SystemTime,
    pub revoked: bool,
}

/// CA settings (`ca:` in warden.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSettings {
    pub key_type: KeyType,
    /// Lifetime of the CA certificate (default 24h).
    pub ttl: Duration,
    /// Lifetime of X.509-SVIDs (default 1h; at least 1m, at most the CA's).
    pub svid_ttl: Duration,
    /// Where the CA key lives; relative paths are resolved against the config dir.
    pub state_dir: PathBuf,
    pub upstream: Option<UpstreamCa>,
}

/// Listen addresses (`server:` in warden.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// ADS gRPC endpoint for Envoy sidecars (default 127.0.0.1:18000).
    pub xds_listen: SocketAddr,
    /// Admin HTTP endpoint: health, metrics, config dump (default 127.0.0.1:18001).
    pub admin_listen: SocketAddr,
    /// Bearer token file for the mutating admin routes (`POST /ca/*`); required when
    /// `admin_listen` is not loopback.
    pub admin_token_file: Option<PathBuf>,
}

/// How the filter enforces policy (`policy:` in warden.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// The Rego rule that decides (default `data.envoy.authz.allow`).
    pub entrypoint: String,
    pub mode: PolicyMode,
    /// HTTP status of a deny (default 403).
    pub deny_status: u16,
    /// Whether the deny reason goes into the response body (default false: log only).
    pub expose_reason: bool,
    /// What the inbound listener does with `%2F` / `%5C` in a path (default: reject).
    pub escaped_slashes: EscapedSlashes,
    /// `policy.native_rbac`: `auto` (default, true) compiles each workload's policy to
    /// Envoy's RBAC filter where it can (`crate::rbac`); `off` (false) keeps Wasm.
    pub native_rbac: bool,
}

/// `policy.escaped_slashes`: the inbound HTTP connection manager's
/// `path_with_escaped_slashes_action`. Paths are always normalized first (RFC 3986
/// dot segments, merged slashes), so the policy and the app see the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// 400 for any `%2F`/`%5C` in the path (`reject`, the default).
    #[default]
    Reject,
    /// Decode them and answer with a redirect to the decoded path
    /// (`unescape_and_redirect`).
    UnescapeAndRedirect,
    /// Decode them, merge slashes again and forward (`unescape_and_forward`; Istio's
    /// `DECODE_AND_MERGE_SLASHES`).
    UnescapeAndForward,
}

/// Enforce decisions, or only log would-be denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    Enforce,
    DryRun,
}

/// The Rego sources of the config directory.
#[derive(Debug, Clone, Default)]
pub struct PolicySources {
    /// Policy modules (`policies/**/*.rego`, not `_test`), sorted by name.
    pub modules: Vec<RegoFile>,
    /// Test modules (`policies/**/*_test.rego`), sorted by name.
    pub tests: Vec<RegoFile>,
    /// The data document (`policies/data.json` or `data.yaml`), `{}` if absent.
    pub data: serde_json::Value,
    /// The modules compiled for the entrypoint (regorus RVM program, binary, base64), as
    /// the filter receives it; compiled once per load, empty until the policy compiles.
    pub program: String,
    /// The request fields the policy can read, analysed with the program (shipped to the
    /// filter, printed by `warden policy config`); `None` until the policy compiles.
    pub input_needs: Option<warden_filter::InputNeeds>,
    /// Extended builtins (regex, glob, net, ...) the compiled policy calls; when any, the
    /// sidecars get the extended filter module.
    pub extended_builtins: Vec<String>,
    /// The rule the program evaluates (`policy.entrypoint`, a package path resolved to
    /// its `allow` rule); empty until the policy compiles.
    pub entrypoint: String,
    /// The engine the filter runs the policy on (the RVM `program`, or the interpreter).
    pub engine: warden_filter::PolicyEngine,
}

/// One Rego file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegoFile {
    pub path: PathBuf,
    /// Path relative to the config dir with `/` separators, e.g. `policies/authz.rego`.
    pub name: String,
    pub source: String,
}

/// One workload and its sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub spiffe_id: SpiffeId,
    /// The Envoy node id of its sidecar (defaults to the name).
    pub node_id: String,
    /// Admin address of the sidecar Envoy.
    pub sidecar_admin: SocketAddr,
    pub inbound: Inbound,
    pub upstreams: Vec<Upstream>,
    /// The file this workload came from.
    pub file: PathBuf,
    /// How its sidecar may prove itself on the xDS stream (`attestation:` in the
    /// workload file; default: every method).
    pub attestation: Vec<AttestMethod>,
}

/// A way a sidecar proves which workload it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttestMethod {
    /// A join token created for the workload by name (`warden token create`).
    JoinToken,
    /// A Kubernetes projected service-account token whose namespace and service
    /// account map to the workload's SPIFFE ID (needs `attestation.kubernetes`).
    Kubernetes,
}

impl AttestMethod {
    /// Every method, the default.
    pub const ALL: [AttestMethod; 2] = [AttestMethod::JoinToken, AttestMethod::Kubernetes];

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AttestMethod::JoinToken => "join_token",
            AttestMethod::Kubernetes => "kubernetes",
        }
    }
}

/// The sidecar's mTLS listener and the local app behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Where the sidecar listens (`0.0.0.0:PORT` when the host is `${INSTANCE_IP}`).
    pub listen: SocketAddr,
    /// The local app (`0.0.0.0:PORT` when the host is `${INSTANCE_IP}`).
    pub app: SocketAddr,
    /// Which of the two hosts each instance fills with its own `INSTANCE_IP`.
    pub instance_ip: InstanceIpHosts,
    /// How callers reach the instances (`inbound.service`, `inbound.endpoints`).
    pub reach: Reach,
}

impl Workload {
    /// This workload as instance address `ip` runs it: `${INSTANCE_IP}` hosts replaced.
    pub fn at_instance_ip(&self, ip: std::net::IpAddr) -> Workload {
        let mut w = self.clone();
        if w.inbound.instance_ip.listen {
            w.inbound.listen.set_ip(ip);
        }
        if w.inbound.instance_ip.app {
            w.inbound.app.set_ip(ip);
        }
        w
    }
}

/// A service this workload calls: its app talks plain HTTP to `listen`, the sidecar
/// carries it over mTLS to the upstream's inbound listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub workload: String,
    pub listen: SocketAddr,
    /// Set when the upstream is a workload of another (federated) trust domain; then
    /// `workload` is only a local name.
    pub foreign: Option<ForeignUpstream>,
}

/// An upstream in another trust domain, reached at a fixed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignUpstream {
    pub spiffe_id: SpiffeId,
    /// Its sidecar's inbound (mTLS) address.
    pub address: SocketAddr,
}

impl Config {
    /// The workload with this name.
    pub fn workload(&self, name: &str) -> Option<&Workload> {
        // `workloads` is sorted by name (config::load sorts it): binary search, so building
        // thousands of nodes' upstream clusters stays fast; linear fallback for hand-built
        // configs.
        match self
            .workloads
            .binary_search_by(|w| w.name.as_str().cmp(name))
        {
            Ok(i) => self.workloads.get(i),
            Err(_) => self.workloads.iter().find(|w| w.name == name),
        }
    }

    /// The workload whose sidecar uses this Envoy node id.
    pub fn workload_for_node(&self, node_id: &str) -> Option<&Workload> {
        self.workloads.iter().find(|w| w.node_id == node_id)
    }

    /// Parameters for [`crate::identity::Ca::load_or_init`].
    pub fn ca_params(&self) -> CaParams {
        CaParams {
            trust_domain: self.trust_domain.clone(),
            key_type: self.ca.key_type,
            ttl: self.ca.ttl,
            state_dir: self.ca.state_dir.clone(),
            upstream: self.ca.upstream.clone(),
        }
    }
}

/// Load and validate a config directory; every problem is reported, not only the first.
pub fn load(dir: &Path) -> Result<Config, Diagnostics> {
    let files = files::read_dir(dir)?;
    validate::validate(dir, files)
}

#[cfg(test)]
mod input_tests;
#[cfg(test)]
mod reach_tests;
#[cfg(test)]
mod spec_tests;
#[cfg(test)]
mod tests;
