//! Caller attestation for the xDS channel: proving which workload a sidecar is before it
//! receives a single secret. A caller presents a bearer credential (gRPC metadata
//! `authorization: Bearer <credential>`): a Warden join token, or a Kubernetes projected
//! service-account token. The proven identity maps to exactly one workload, and the node
//! id the stream claims must be that workload's node id.
//!
//! Pure: the server hands in the credential, the claimed node id and the time.

mod join_token;
mod k8s;
pub mod node;

use std::path::PathBuf;
use std::time::SystemTime;

pub use join_token::{digest as token_digest, generate as generate_token, NewToken, TokenError};
pub use k8s::{bind_to_instance, BoundObject, JwksError, K8sError, K8sVerifier, ServiceAccount};

use crate::config::{AttestMethod, Config, JoinTokenRecord};
use node::{ClaimError, NodeClaim};

/// Why a caller was refused. Never contains the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    #[error(
        "no credential (expected `authorization: Bearer <join token or service-account token>`)"
    )]
    NoCredential,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("service-account token refused: {0}")]
    K8s(#[from] K8sError),
    #[error("a Kubernetes token was presented but Kubernetes attestation is not configured")]
    K8sNotConfigured,
    #[error("{0} is not the SPIFFE ID of any workload")]
    NoWorkload(String),
    #[error(
        "workload `{workload}` does not allow attestation by {method} (its `attestation:` list)"
    )]
    MethodNotAllowed {
        workload: String,
        method: &'static str,
    },
    #[error(
        "caller is workload `{workload}` (node id `{expected}`) but claimed node id `{claimed}` (an instance sends node.cluster = the workload's node id, node.id = its instance name)"
    )]
    NodeMismatch {
        workload: String,
        expected: String,
        claimed: String,
    },
    /// The node identity itself is unusable (instance name, `INSTANCE_IP`).
    #[error(transparent)]
    BadNode(#[from] ClaimError),
}

impl AttestError {
    /// A short, stable label for metrics (`reason` of
    /// `warden_xds_attestation_failures_total`).
    pub fn reason(&self) -> &'static str {
        match self {
            AttestError::NoCredential => "no_credential",
            AttestError::Token(TokenError::Malformed) => "token_malformed",
            AttestError::Token(TokenError::Unknown(_)) => "token_unknown",
            AttestError::Token(TokenError::Revoked(_)) => "token_revoked",
            AttestError::Token(TokenError::Expired(_)) => "token_expired",
            AttestError::K8s(K8sError::Expired | K8sError::NotYetValid) => "jwt_expired",
            AttestError::K8s(K8sError::WrongAudience(_)) => "jwt_wrong_audience",
            AttestError::K8s(K8sError::WrongIssuer(_)) => "jwt_wrong_issuer",
            AttestError::K8s(
                K8sError::Algorithm(_)
                | K8sError::UnknownKey
                | K8sError::KeyMismatch(_)
                | K8sError::Invalid(_),
            ) => "jwt_bad_signature",
            AttestError::K8s(
                K8sError::Malformed | K8sError::MissingClaim(_) | K8sError::NoServiceAccount,
            ) => "jwt_malformed",
            AttestError::K8s(K8sError::NotPodBound) => "jwt_not_pod_bound",
            AttestError::K8s(K8sError::PodMismatch { .. }) => "pod_mismatch",
            AttestError::K8sNotConfigured => "k8s_not_configured",
            AttestError::NoWorkload(_) => "no_workload",
            AttestError::NodeMismatch { .. } => "node_mismatch",
            AttestError::MethodNotAllowed { .. } => "method_not_allowed",
            AttestError::BadNode(_) => "bad_node",
        }
    }

    /// Every [`AttestError::reason`] label (so metrics can render zeros).
    pub const REASONS: [&'static str; 17] = [
        "no_credential",
        "token_malformed",
        "token_unknown",
        "token_revoked",
        "token_expired",
        "jwt_expired",
        "jwt_wrong_audience",
        "jwt_wrong_issuer",
        "jwt_bad_signature",
        "jwt_malformed",
        "jwt_not_pod_bound",
        "pod_mismatch",
        "k8s_not_configured",
        "no_workload",
        "node_mismatch",
        "method_not_allowed",
        "bad_node",
    ];
}

/// Why attestation settings cannot be used (config load or reload refuses them).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttestorError {
    /// `attestation.kubernetes.jwks_file` is not a JWKS document.
    #[error("{}: {source}", file.display())]
    Jwks { file: PathBuf, source: JwksError },
}

/// Who the caller proved to be: the workload, and which of its instances the node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    pub workload: String,
    /// The instance name (`node.id`); `None` for the workload's default instance.
    pub instance: Option<String>,
    /// `join_token` or `k8s_psat`, for logs and metrics.
    pub method: &'static str,
}

/// Attests callers against one config.
#[derive(Debug, Clone)]
pub struct Attestor {
    config: Config,
    k8s: Option<K8sVerifier>,
}

impl Attestor {
    /// An attestor for `config`, with Kubernetes tokens checked by `k8s` when given.
    pub fn new(config: Config, k8s: Option<K8sVerifier>) -> Self {
        Attestor { config, k8s }
    }

    /// The attestor `config` describes: its join token records, and Kubernetes tokens
    /// when `attestation.kubernetes` is set (the JWKS was read at load time).
    pub fn from_config(config: Config) -> Result<Self, AttestorError> {
        let k8s = match &config.attestation.kubernetes {
            Some(k) => Some(K8sVerifier::new(
                k.issuer.clone(),
                k.audience.clone(),
                K8sVerifier::parse_jwks(&k.jwks).map_err(|source| AttestorError::Jwks {
                    file: k.jwks_file.clone(),
                    source,
                })?,
            )),
            None => None,
        };
        Ok(Self::new(config, k8s))
    }

    /// Check `authorization` (the metadata value) for a stream claiming the default
    /// instance `node_id` (see [`Attestor::attest_node`]).
    pub fn attest(
        &self,
        authorization: Option<&str>,
        node_id: &str,
        now: SystemTime,
    ) -> Result<Attested, AttestError> {
        self.attest_node(authorization, &NodeClaim::node(node_id), now)
    }

    /// Check `authorization` (the metadata value) for a stream claiming `node`: the
    /// credential proves the workload; the node must name that workload's node id
    /// (`node.cluster`, or `node.id` for the default instance) and a valid instance name.
    pub fn attest_node(
        &self,
        authorization: Option<&str>,
        node: &NodeClaim,
        now: SystemTime,
    ) -> Result<Attested, AttestError> {
        node.check()?;
        let credential = authorization
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or(AttestError::NoCredential)?;
        let (workload, method, sa) = if credential.starts_with("wdn.") {
            let record: &JoinTokenRecord =
                join_token::verify(credential, &self.config.tokens, now)?;
            (record.workload.clone(), "join_token", None)
        } else {
            let verifier = self.k8s.as_ref().ok_or(AttestError::K8sNotConfigured)?;
            let sa = verifier.verify(credential, now)?;
            let id = format!(
                "{}/ns/{}/sa/{}",
                self.config.trust_domain.to_spiffe_id_string(),
                sa.namespace,
                sa.name
            );
            let w = self
                .config
                .workloads
                .iter()
                .find(|w| w.spiffe_id.as_str() == id)
                .ok_or(AttestError::NoWorkload(id))?;
            (w.name.clone(), "k8s_psat", Some(sa))
        };
        let w = self.config.workload(&workload);
        let allowed = match method {
            "join_token" => AttestMethod::JoinToken,
            _ => AttestMethod::Kubernetes,
        };
        if w.is_some_and(|w| !w.attestation.contains(&allowed)) {
            return Err(AttestError::MethodNotAllowed { workload, method });
        }
        let expected = w.map(|w| w.node_id.clone()).unwrap_or_default();
        if expected != node.workload_node_id() {
            return Err(AttestError::NodeMismatch {
                workload,
                expected,
                claimed: node.workload_node_id().to_owned(),
            });
        }
        // A service-account token opens only the stream of the pod it was projected into
        // (Envoy `node.id`, the instance name on Kubernetes, is the pod name).
        if let Some(sa) = &sa {
            bind_to_instance(sa, &node.id)?;
        }
        Ok(Attested {
            workload,
            instance: node.instance_name().map(str::to_owned),
            method,
        })
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod k8s_pod_tests;
