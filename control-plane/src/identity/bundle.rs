//! Trust bundles: the X.509 authorities of one trust domain, as PEM (what Envoy's SPIFFE
//! validator and `openssl verify` read) and in the SPIFFE bundle format (SPIFFE Trust
//! Domain and Bundle spec §4: a JWKS whose keys have `use: "x509-svid"` and an `x5c`,
//! plus `spiffe_sequence` and `spiffe_refresh_hint`).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Map, Value};
use x509_parser::public_key::PublicKey;

use super::TrustDomain;

/// How often relying parties should re-fetch the bundle (seconds), as a hint.
pub(crate) const DEFAULT_REFRESH_HINT_SECS: u64 = 300;

/// The CA certificates that anchor one trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    pub trust_domain: TrustDomain,
    /// DER certificates of the trust anchors.
    pub x509_authorities_der: Vec<Vec<u8>>,
    /// Increases whenever the set of authorities changes.
    pub sequence: u64,
}

impl TrustBundle {
    /// All authorities as concatenated PEM certificates.
    pub fn to_pem(&self) -> String {
        super::pem::certs_pem(&self.x509_authorities_der)
    }

    /// The bundle in the SPIFFE bundle format (JWKS), pretty-printed.
    pub fn to_jwks_json(&self) -> String {
        self.to_spiffe_json(
            std::time::Duration::from_secs(DEFAULT_REFRESH_HINT_SECS),
            &[],
        )
    }

    /// The SPIFFE bundle format with `spiffe_refresh_hint` = `refresh_hint` (whole
    /// seconds, at least 1) and the given `jwt-svid` keys, as the bundle endpoint serves
    /// it.
    pub fn to_spiffe_json(&self, refresh_hint: std::time::Duration, jwt_keys: &[Value]) -> String {
        let keys: Vec<Value> = self
            .x509_authorities_der
            .iter()
            .map(|der| x509_jwk(der))
            .chain(jwt_keys.iter().cloned())
            .collect();
        let doc = json!({
            "keys": keys,
            "spiffe_sequence": self.sequence,
            "spiffe_refresh_hint": refresh_hint.as_secs().max(1),
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }
}

/// One `x509-svid` JWK: the key parameters of the certificate's public key plus `x5c`.
fn x509_jwk(der: &[u8]) -> Value {
    let mut jwk = Map::new();
    jwk.insert("use".into(), "x509-svid".into());
    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
        let spki = cert.public_key();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|oid| oid.to_id_string());
        match spki.parsed() {
            Ok(PublicKey::EC(point)) => {
                let data = point.data();
                let coord = (data.len().saturating_sub(1)) / 2;
                let crv = match curve.as_deref() {
                    Some("1.2.840.10045.3.1.7") => "P-256",
                    Some("1.3.132.0.34") => "P-384",
                    _ => "unknown",
                };
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), crv.into());
                jwk.insert(
                    "x".into(),
                    URL_SAFE_NO_PAD.encode(&data[1..1 + coord]).into(),
                );
                jwk.insert(
                    "y".into(),
                    URL_SAFE_NO_PAD.encode(&data[1 + coord..]).into(),
                );
            }
            Ok(PublicKey::RSA(rsa)) => {
                jwk.insert("kty".into(), "RSA".into());
                jwk.insert(
                    "n".into(),
                    URL_SAFE_NO_PAD.encode(strip_zeros(rsa.modulus)).into(),
                );
                jwk.insert(
                    "e".into(),
                    URL_SAFE_NO_PAD.encode(strip_zeros(rsa.exponent)).into(),
                );
            }
            _ => {}
        }
    }
    jwk.insert("x5c".into(), json!([STANDARD.encode(der)]));
    Value::Object(jwk)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}
