//! The SPIFFE bundle format as a foreign trust domain serves it (SPIFFE Trust Domain and
//! Bundle spec §4): a JWK set whose keys carry `use: "x509-svid"` (exactly one
//! certificate in `x5c`) or `use: "jwt-svid"` (with a `kid`), plus the optional
//! `spiffe_sequence` and `spiffe_refresh_hint`. Parsing only: no I/O, no clock.
//!
//! Keys with an unknown `use` are ignored, as the spec asks; a malformed `x509-svid` or
//! `jwt-svid` key rejects the whole document (a half-read bundle would silently drop a
//! CA a peer still signs with).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use crate::identity::{TrustBundle, TrustDomain};

/// Largest bundle document accepted (a bundle holds a handful of CAs and keys).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Most keys accepted in one document.
pub const MAX_KEYS: usize = 256;

/// Why a bundle document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Larger than [`MAX_DOCUMENT_BYTES`].
    #[error("bundle document of {0} bytes is larger than the {MAX_DOCUMENT_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not JSON, or not an object with a `keys` array.
    #[error("not a SPIFFE bundle (JWK set): {0}")]
    Json(String),
    /// More keys than [`MAX_KEYS`].
    #[error("{0} keys; at most {MAX_KEYS} are accepted")]
    TooManyKeys(usize),
    /// One key is malformed.
    #[error("keys[{index}]: {reason}")]
    Key {
        /// Position in `keys`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// No `x509-svid` key: nothing to verify X.509-SVIDs with.
    #[error("the bundle has no x509-svid key")]
    NoX509Authorities,
}

/// A foreign trust domain's bundle as parsed from its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignBundle {
    /// X.509 authorities and sequence (0 when the document has none).
    pub bundle: TrustBundle,
    /// `spiffe_refresh_hint`, when present and positive.
    pub refresh_hint: Option<Duration>,
    /// The `jwt-svid` keys, as they were (for the Workload API's `FetchJWTBundles`).
    pub jwt_keys: Vec<Value>,
    /// Earliest `notAfter` among the X.509 authorities.
    pub expires: Option<std::time::SystemTime>,
}

impl ForeignBundle {
    /// The JWT bundle as a JWK set (what `FetchJWTBundles` sends).
    pub fn jwt_jwks(&self) -> String {
        serde_json::json!({ "keys": self.jwt_keys }).to_string()
    }
}

/// Parses `bytes` as the bundle of `trust_domain`.
pub fn parse(trust_domain: &TrustDomain, bytes: &[u8]) -> Result<ForeignBundle, DocumentError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge(bytes.len()));
    }
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| DocumentError::Json(e.to_string()))?;
    let obj = doc
        .as_object()
        .ok_or_else(|| DocumentError::Json("the document is not a JSON object".into()))?;
    let keys = obj
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| DocumentError::Json("no `keys` array".into()))?;
    if keys.len() > MAX_KEYS {
        return Err(DocumentError::TooManyKeys(keys.len()));
    }
    let mut x509 = Vec::new();
    let mut jwt_keys = Vec::new();
    let mut expires: Option<std::time::SystemTime> = None;
    for (index, key) in keys.iter().enumerate() {
        let err = |reason: String| DocumentError::Key { index, reason };
        match key.get("use").and_then(Value::as_str) {
            Some("x509-svid") => {
                let (der, not_after) = x509_authority(key).map_err(err)?;
                expires = Some(expires.map_or(not_after, |e| e.min(not_after)));
                if !x509.contains(&der) {
                    x509.push(der);
                }
            }
            Some("jwt-svid") => {
                let kid = key.get("kid").and_then(Value::as_str).unwrap_or("");
                if kid.is_empty() {
                    return Err(err("a jwt-svid key needs a non-empty `kid`".into()));
                }
                if key.get("kty").and_then(Value::as_str).is_none() {
                    return Err(err("a jwt-svid key needs `kty`".into()));
                }
                jwt_keys.push(key.clone());
            }
            _ => {}
        }
    }
    if x509.is_empty() {
        return Err(DocumentError::NoX509Authorities);
    }
    let sequence = obj
        .get("spiffe_sequence")
        .map(|v| {
            v.as_u64().ok_or_else(|| {
                DocumentError::Json("`spiffe_sequence` is not a non-negative integer".into())
            })
        })
        .transpose()?
        .unwrap_or(0);
    let refresh_hint = obj
        .get("spiffe_refresh_hint")
        .and_then(Value::as_u64)
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    Ok(ForeignBundle {
        bundle: TrustBundle {
            trust_domain: trust_domain.clone(),
            x509_authorities_der: x509,
            sequence,
        },
        refresh_hint,
        jwt_keys,
        expires,
    })
}

/// The DER certificate of one `x509-svid` key (exactly one `x5c` entry, a CA
/// certificate) and its `notAfter`.
fn x509_authority(key: &Value) -> Result<(Vec<u8>, std::time::SystemTime), String> {
    let x5c = key
        .get("x5c")
        .and_then(Value::as_array)
        .ok_or("an x509-svid key needs `x5c`")?;
    let [one] = x5c.as_slice() else {
        return Err(format!(
            "`x5c` must hold exactly one certificate, not {}",
            x5c.len()
        ));
    };
    let b64 = one.as_str().ok_or("`x5c[0]` is not a string")?;
    let der = STANDARD
        .decode(b64)
        .map_err(|e| format!("`x5c[0]` is not base64: {e}"))?;
    let (rest, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("`x5c[0]` is not an X.509 certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("`x5c[0]` has bytes after the certificate".into());
    }
    let not_after = crate::identity::from_unix_secs(
        u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0),
    );
    Ok((der, not_after))
}

#[cfg(test)]
#[path = "bundle_document_tests.rs"]
mod tests;
