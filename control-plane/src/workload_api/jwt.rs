//! JWT-SVIDs (SPIFFE JWT-SVID spec): ES256 tokens with `sub` = SPIFFE ID, a non-empty
//! `aud`, `iat` and a short `exp`; the header's `kid` names the key in the trust domain's
//! JWT bundle (a JWKS whose keys have `use: "jwt-svid"`).
//!
//! This module holds one ES256 key and the token format; `jwt_keys` keeps the rotating set
//! (active, next, retiring keys) and persists it. `kid` is derived from the public key, so
//! it is stable across restarts.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Whole seconds since the epoch, as JWT claims and key files carry them.
pub(crate) use crate::identity::unix_secs as unix;
use crate::identity::{pem, SpiffeId};

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
    #[error("token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("token type `{0}` is not JWT or JOSE")]
    Type(String),
    #[error("token audience does not contain `{0}`")]
    Audience(String),
    #[error("token subject is not a workload SPIFFE ID (with a path): {0}")]
    Subject(String),
    #[error("token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("token header has `crit` (RFC 7515 §4.1.11): Warden understands no JOSE extensions, so it must refuse the token")]
    Critical,
}

/// Longest token read: JWT-SVIDs are a few hundred bytes (one `sub`, a few audiences);
/// 16 KiB leaves room for many audiences and stops megabyte tokens before base64 and JSON.
pub const MAX_TOKEN_LEN: usize = 16 << 10;

/// One ES256 JWT signing key.
pub struct JwtKey {
    /// The key pair: its public half names the key (`kid`), fills the JWK and checks
    /// signatures. Keys are generated with `ring` (`jsonwebtoken` only reads keys).
    pair: EcdsaKeyPair,
    pkcs8: zeroize::Zeroizing<Vec<u8>>,
    /// `jsonwebtoken`'s signing form of `pkcs8`, built once.
    encoding: EncodingKey,
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
        JwtKey::from_pkcs8(&pem::pkcs8_key(text).ok()?)
    }

    /// The PKCS#8 PEM to persist.
    pub fn to_pem(&self) -> zeroize::Zeroizing<String> {
        pem::pkcs8_key_pem(&self.pkcs8)
    }

    fn from_pkcs8(der: &[u8]) -> Option<JwtKey> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .ok()?;
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(pair.public_key().as_ref())[..18]);
        Some(JwtKey {
            pair,
            pkcs8: zeroize::Zeroizing::new(der.to_vec()),
            encoding: EncodingKey::from_ec_der(der),
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
        if id.path().is_empty() {
            return Err(JwtError::Subject(id.to_string()));
        }
        let iat = unix(now);
        let claims = SvidClaims {
            sub: id.as_str(),
            aud: audience,
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|_| JwtError::Sign)?;
        // Never hand out a token that `validate` would refuse (many or huge audiences).
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLong);
        }
        Ok(token)
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
        let jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Other("jwt-svid".into())),
                key_id: Some(self.kid.clone()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                key_type: EllipticCurveKeyType::EC,
                curve: EllipticCurve::P256,
                x: URL_SAFE_NO_PAD.encode(x),
                y: URL_SAFE_NO_PAD.encode(y),
            }),
        };
        serde_json::to_value(jwk).unwrap_or_default()
    }
}

/// The claims Warden puts in a JWT-SVID (JWT-SVID spec §3).
#[derive(serde::Serialize)]
struct SvidClaims<'a> {
    sub: &'a str,
    aud: &'a [String],
    iat: u64,
    exp: u64,
}

/// Clock skew allowed on both `exp` and `nbf` (RFC 7519 §4.1.4 and §4.1.5 allow "a small
/// leeway"; the same 30 s as Kubernetes token attestation).
pub const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// Check a token (JWT-SVID spec: JOSE header, claims, validation; RFC 7519 §7.2): at most
/// [`MAX_TOKEN_LEN`] bytes; `alg` ES256, `typ` absent, `JWT` or `JOSE`, no `crit`; the key (found by `kid` through `key_for`) and
/// signature;
/// `exp` required and `nbf` optional, both NumericDates (any JSON number) checked at `now`
/// with [`CLOCK_SKEW`]; the audience; a `sub` that is a workload SPIFFE ID (with a path).
/// Returns the subject and claims.
///
/// Header, base64url, signature and audience are the `jsonwebtoken` crate's. Checked here:
/// `crit` (the crate's header type drops it, so it could not refuse it), and the time
/// claims, because the crate reads only integer NumericDates and the wall clock while the
/// spec allows fractions and Warden injects the clock.
pub fn validate<'k>(
    token: &str,
    audience: &str,
    now: SystemTime,
    key_for: impl Fn(&str) -> Option<&'k JwtKey>,
) -> Result<Validated, JwtError> {
    use jsonwebtoken::errors::ErrorKind;
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLong);
    }
    if token.split('.').count() != 3 {
        return Err(JwtError::Malformed("expected three dot-separated parts"));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| header_error(token))?;
    // jsonwebtoken's header type has no `crit`; an extension marked critical must not be
    // ignored, so any `crit` refuses the token (an empty list is invalid too).
    let raw_header = token.split('.').next().map(decode_json);
    if raw_header.is_some_and(|h| h.is_ok_and(|h| h.contains_key("crit"))) {
        return Err(JwtError::Critical);
    }
    if header.alg != Algorithm::ES256 {
        return Err(JwtError::Algorithm(format!("{:?}", header.alg)));
    }
    if let Some(typ) = header
        .typ
        .as_deref()
        .filter(|t| !matches!(*t, "JWT" | "JOSE"))
    {
        return Err(JwtError::Type(typ.to_string()));
    }
    let key = key_for(header.kid.as_deref().unwrap_or_default()).ok_or(JwtError::UnknownKey)?;
    let decoding = DecodingKey::from_ec_der(key.pair.public_key().as_ref());
    if audience.is_empty() {
        return Err(JwtError::Audience(String::new()));
    }
    // Signature, then `aud` (a string or a list that holds `audience`; required), by the
    // crate; the times below with Warden's clock.
    let mut rules = jsonwebtoken::Validation::new(Algorithm::ES256);
    rules.set_required_spec_claims(&["aud"]);
    rules.set_audience(&[audience]);
    rules.validate_exp = false;
    rules.validate_nbf = false;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &rules)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey => JwtError::Signature,
            ErrorKind::InvalidAudience | ErrorKind::MissingRequiredClaim(_) => {
                JwtError::Audience(audience.to_string())
            }
            _ => JwtError::Malformed("claims are not a base64url JSON object"),
        })?
        .claims;
    check_times(&claims, now)?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let subject = sub
        .parse::<SpiffeId>()
        .and_then(SpiffeId::require_path)
        .map_err(|_| JwtError::Subject(sub.to_string()))?;
    Ok(Validated { subject, claims })
}

/// `exp` (required) and `nbf` (optional) as NumericDates: any JSON number, fractions
/// included (RFC 7519 §2), with the same skew.
fn check_times(claims: &Map<String, Value>, now: SystemTime) -> Result<(), JwtError> {
    let number = |name: &str| -> Result<Option<f64>, JwtError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|n| n.is_finite())
                .map(Some)
                .ok_or(JwtError::Malformed("exp and nbf must be numbers")),
        }
    };
    let now = crate::identity::unix_secs_f64(now);
    let skew = CLOCK_SKEW.as_secs_f64();
    let exp = number("exp")?.ok_or(JwtError::Malformed("no exp"))?;
    if exp + skew <= now {
        return Err(JwtError::Expired);
    }
    if number("nbf")?.is_some_and(|nbf| nbf - skew > now) {
        return Err(JwtError::NotYetValid);
    }
    Ok(())
}

/// Why the crate could not read a header: an algorithm it does not know (e.g. `none`), or
/// not a JOSE header at all.
fn header_error(token: &str) -> JwtError {
    let header = token.split('.').next().map(decode_json);
    match header {
        Some(Ok(h)) => match h.get("alg").and_then(Value::as_str) {
            Some("ES256") => JwtError::Malformed("header fields have the wrong types"),
            Some(alg) => JwtError::Algorithm(alg.to_string()),
            None => JwtError::Algorithm("(missing)".into()),
        },
        _ => JwtError::Malformed("header is not a base64url JSON object"),
    }
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

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
