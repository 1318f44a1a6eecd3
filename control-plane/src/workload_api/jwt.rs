//! JWT-SVIDs (SPIFFE JWT-SVID spec): ES256 tokens with `sub` = SPIFFE ID, a non-empty
//! `aud`, `iat` and a short `exp`; the header's `kid` names the key in the trust domain's
//! JWT bundle (a JWKS whose keys have `use: "jwt-svid"`).
//!
//! This module holds one ES256 key and the token format; `jwt_keys` keeps the rotating set
//! (active, next, retiring keys) and persists it. `kid` is derived from the public key, so
//! it is stable across restarts.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::identity::SpiffeId;

const PEM_LABEL: &str = "PRIVATE KEY";

/// Loading the key, signing or validating a token failed.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid JWT key file ({reason}); it was left untouched")]
    BadKey { path: PathBuf, reason: String },
    #[error("signing failed")]
    Sign,
    #[error("at least one audience is required")]
    NoAudience,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token algorithm `{0}` is not ES256")]
    Algorithm(String),
    #[error("token key id is not in the JWT bundle")]
    UnknownKey,
    #[error("token signature is invalid")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token audience does not contain `{0}`")]
    Audience(String),
    #[error("token subject is not a SPIFFE ID: {0}")]
    Subject(String),
}

/// One ES256 JWT signing key.
pub struct JwtKey {
    pair: EcdsaKeyPair,
    pkcs8: zeroize::Zeroizing<Vec<u8>>,
    kid: String,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey").field("kid", &self.kid).finish()
    }
}

/// A validated token: who it names and all its claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub subject: SpiffeId,
    pub claims: Map<String, Value>,
}

impl JwtKey {
    /// A new random key.
    pub fn generate() -> Result<JwtKey, JwtError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| JwtError::Sign)?;
        JwtKey::from_pkcs8(doc.as_ref()).ok_or(JwtError::Sign)
    }

    /// A key from its PKCS#8 PEM (`None` if it is not an ES256 key).
    pub fn from_pem(text: &str) -> Option<JwtKey> {
        JwtKey::from_pkcs8(&pem_body(text)?)
    }

    /// The PKCS#8 PEM to persist.
    pub fn to_pem(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(to_pem(&self.pkcs8))
    }

    fn from_pkcs8(der: &[u8]) -> Option<JwtKey> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .ok()?;
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(pair.public_key().as_ref())[..18]);
        Some(JwtKey {
            pair,
            pkcs8: zeroize::Zeroizing::new(der.to_vec()),
            kid,
        })
    }

    /// The key id in token headers and the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Sign a JWT-SVID for `id`, valid from `now` for `ttl`.
    pub fn sign(
        &self,
        id: &SpiffeId,
        audience: &[String],
        now: SystemTime,
        ttl: Duration,
    ) -> Result<String, JwtError> {
        if audience.is_empty() || audience.iter().any(|a| a.is_empty()) {
            return Err(JwtError::NoAudience);
        }
        let iat = unix(now);
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let claims =
            json!({"sub": id.as_str(), "aud": audience, "iat": iat, "exp": iat + ttl.as_secs()});
        let signing_input = format!("{}.{}", b64_json(&header), b64_json(&claims));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| JwtError::Sign)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }

    /// Check a token signed by this key (see [`validate`]).
    pub fn validate(
        &self,
        token: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<Validated, JwtError> {
        validate(token, audience, now, |kid| {
            (kid == self.kid).then_some(self)
        })
    }

    /// This key as a JWK for the JWT bundle.
    pub fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref(); // 0x04 || x || y
        let (x, y) = point
            .get(1..)
            .unwrap_or_default()
            .split_at(point.len().saturating_sub(1) / 2);
        json!({
            "kty": "EC", "crv": "P-256", "use": "jwt-svid", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        })
    }
}

/// Check a token's algorithm, key (found by `kid` through `key_for`), signature, expiry
/// (at `now`) and audience; return the subject and claims.
pub fn validate<'k>(
    token: &str,
    audience: &str,
    now: SystemTime,
    key_for: impl Fn(&str) -> Option<&'k JwtKey>,
) -> Result<Validated, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("expected three dot-separated parts"));
    };
    let header = decode_json(h)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if alg != "ES256" {
        return Err(JwtError::Algorithm(alg.to_string()));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let key = key_for(kid).ok_or(JwtError::UnknownKey)?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    let public = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_FIXED,
        key.pair.public_key().as_ref(),
    );
    public
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| JwtError::Signature)?;
    let claims = decode_json(c)?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(JwtError::Malformed("no numeric exp"))?;
    if exp <= unix(now) {
        return Err(JwtError::Expired);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if audience.is_empty() || !aud_ok {
        return Err(JwtError::Audience(audience.to_string()));
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let subject = sub
        .parse()
        .map_err(|_| JwtError::Subject(sub.to_string()))?;
    Ok(Validated { subject, claims })
}

pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn decode_json(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed("part is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed("part is not a JSON object")),
    }
}

fn to_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!(
        "-----BEGIN {PEM_LABEL}-----\n{}\n-----END {PEM_LABEL}-----\n",
        lines.join("\n")
    )
}

fn pem_body(text: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let body = text.split_once(&begin)?.1.split_once(&end)?.0;
    let joined: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(joined).ok()
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
