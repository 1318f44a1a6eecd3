//! Kubernetes projected service-account tokens: a JWT whose signature is checked against
//! the cluster's service-account issuer keys (a JWKS), with issuer, audience, expiry and
//! not-before checked against an injected clock (with a small leeway for skew).
//!
//! Tokens a kubelet projects into a pod are bound to that pod: the `kubernetes.io.pod`
//! claim names it (name and uid), and [`bind_to_instance`] requires the sidecar's instance
//! name (Envoy `node.id`, the pod name from the downward API) to be that pod, so a token
//! copied out of one pod cannot open another pod's stream. Tokens bound to no pod (e.g.
//! `kubectl create token` without `--bound-object-kind Pod`) are refused.
//!
//! Only asymmetric algorithms are accepted, and only when the key found for the token
//! (by `kid`) is of the matching family: `alg: none` and HMAC "alg confusion" tokens
//! (signed with the public key as an HMAC secret) are refused before any verification.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Accepted clock skew for `exp` and `nbf`.
pub(super) const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// A JWKS document that does not parse (a settings error, not a refusal).
#[derive(Debug, Clone, thiserror::Error)]
#[error("not a JWKS document: {0}")]
pub struct JwksError(Arc<serde_json::Error>);

/// Why a token was refused. Messages never contain the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum K8sError {
    #[error("not a JWT")]
    Malformed,
    #[error("algorithm {0} is not accepted (only RS256/384/512, PS256/384/512, ES256/384)")]
    Algorithm(String),
    #[error("no issuer key matches the token's kid")]
    UnknownKey,
    #[error("the key for this token does not fit algorithm {0}")]
    KeyMismatch(String),
    #[error("signature or claims invalid: {0}")]
    Invalid(String),
    #[error("missing claim `{0}`")]
    MissingClaim(&'static str),
    #[error("issuer `{0}` is not the configured one")]
    WrongIssuer(String),
    #[error("audience does not include `{0}`")]
    WrongAudience(String),
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token names no Kubernetes namespace and service account")]
    NoServiceAccount,
    #[error("token is bound to no pod (a projected token carries `kubernetes.io.pod`)")]
    NotPodBound,
    #[error("token is bound to pod `{pod}` but the sidecar claims instance `{instance}`")]
    PodMismatch { pod: String, instance: String },
}

/// The service account a valid token proves, and the objects the token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
    /// The pod the token was projected into (`kubernetes.io.pod`).
    pub pod: Option<BoundObject>,
    /// The node that pod runs on (`kubernetes.io.node`, Kubernetes 1.30+).
    pub node: Option<BoundObject>,
}

/// A Kubernetes object a token is bound to: its name and uid.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BoundObject {
    pub name: String,
    #[serde(default)]
    pub uid: String,
}

/// Require a pod-bound token whose pod is `instance` (the sidecar's `node.id`).
pub fn bind_to_instance(sa: &ServiceAccount, instance: &str) -> Result<(), K8sError> {
    let pod = sa.pod.as_ref().ok_or(K8sError::NotPodBound)?;
    if pod.name != instance {
        return Err(K8sError::PodMismatch {
            pod: pod.name.clone(),
            instance: instance.to_owned(),
        });
    }
    Ok(())
}

/// Verifies projected service-account tokens of one cluster.
#[derive(Debug, Clone)]
pub struct K8sVerifier {
    issuer: String,
    audience: String,
    keys: JwkSet,
    leeway: Duration,
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<u64>,
    nbf: Option<u64>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubeClaim>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct KubeClaim {
    namespace: Option<String>,
    serviceaccount: Option<BoundObject>,
    pod: Option<BoundObject>,
    node: Option<BoundObject>,
}

impl K8sVerifier {
    /// A verifier for tokens from `issuer` meant for `audience`, signed by a key in `keys`.
    pub fn new(issuer: String, audience: String, keys: JwkSet) -> Self {
        K8sVerifier {
            issuer,
            audience,
            keys,
            leeway: DEFAULT_LEEWAY,
        }
    }

    /// Parse a JWKS document (from a file or the issuer's `jwks_uri`).
    pub fn parse_jwks(json: &str) -> Result<JwkSet, JwksError> {
        serde_json::from_str(json).map_err(|e| JwksError(Arc::new(e)))
    }

    /// Check `token` at time `now`; the service account it proves.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<ServiceAccount, K8sError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| header_alg(token))?;
        let alg = header.alg;
        if !is_asymmetric(alg) {
            return Err(K8sError::Algorithm(format!("{alg:?}")));
        }
        let jwk = self.key_for(header.kid.as_deref())?;
        if !key_fits(jwk, alg) {
            return Err(K8sError::KeyMismatch(format!("{alg:?}")));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| K8sError::Invalid(e.to_string()))?;
        // Time and audience are checked below with the injected clock and clear errors.
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| K8sError::Invalid(e.to_string()))?;
        self.check_claims(&data.claims, now)
    }

    fn key_for(&self, kid: Option<&str>) -> Result<&Jwk, K8sError> {
        match kid {
            Some(kid) => self.keys.find(kid).ok_or(K8sError::UnknownKey),
            None if self.keys.keys.len() == 1 => Ok(&self.keys.keys[0]),
            None => Err(K8sError::UnknownKey),
        }
    }

    fn check_claims(&self, c: &Claims, now: SystemTime) -> Result<ServiceAccount, K8sError> {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let leeway = self.leeway.as_secs();
        let iss = c.iss.as_deref().ok_or(K8sError::MissingClaim("iss"))?;
        if iss != self.issuer {
            return Err(K8sError::WrongIssuer(iss.to_owned()));
        }
        let aud_ok = match c.aud.as_ref().ok_or(K8sError::MissingClaim("aud"))? {
            Audience::One(a) => *a == self.audience,
            Audience::Many(v) => v.contains(&self.audience),
        };
        if !aud_ok {
            return Err(K8sError::WrongAudience(self.audience.clone()));
        }
        let exp = c.exp.ok_or(K8sError::MissingClaim("exp"))?;
        if now > exp.saturating_add(leeway) {
            return Err(K8sError::Expired);
        }
        if let Some(nbf) = c.nbf {
            if nbf > now.saturating_add(leeway) {
                return Err(K8sError::NotYetValid);
            }
        }
        service_account(c)
    }
}

/// Namespace and name from the `kubernetes.io` claim, else from
/// `sub: system:serviceaccount:<ns>:<name>`.
fn service_account(c: &Claims) -> Result<ServiceAccount, K8sError> {
    if let Some(k) = &c.kubernetes {
        if let (Some(ns), Some(sa)) = (&k.namespace, &k.serviceaccount) {
            return Ok(ServiceAccount {
                namespace: ns.clone(),
                name: sa.name.clone(),
                pod: k.pod.clone().filter(|p| !p.name.is_empty()),
                node: k.node.clone(),
            });
        }
    }
    let sub = c.sub.as_deref().ok_or(K8sError::NoServiceAccount)?;
    let mut parts = sub.splitn(4, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("system"), Some("serviceaccount"), Some(ns), Some(name))
            if !ns.is_empty() && !name.is_empty() =>
        {
            Ok(ServiceAccount {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                pod: None,
                node: None,
            })
        }
        _ => Err(K8sError::NoServiceAccount),
    }
}

/// The `alg` of a header jsonwebtoken could not name (e.g. `none`), for the error.
fn header_alg(token: &str) -> K8sError {
    use base64::Engine;
    let alg = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["alg"].as_str().map(str::to_owned));
    match alg {
        Some(a) => K8sError::Algorithm(a),
        None => K8sError::Malformed,
    }
}

fn is_asymmetric(alg: Algorithm) -> bool {
    use Algorithm::*;
    matches!(
        alg,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 | ES256 | ES384
    )
}

fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    use Algorithm::*;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
        AlgorithmParameters::EllipticCurve(_) => matches!(alg, ES256 | ES384),
        _ => false,
    }
}

#[cfg(test)]
#[path = "k8s_tests.rs"]
mod tests;
