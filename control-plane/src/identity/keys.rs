//! Key types and key generation for CAs and SVIDs.
//!
//! ECDSA keys come from ring (through rcgen). ring cannot generate RSA keys, so RSA-2048
//! CA keys are generated with the `rsa` crate and handed to rcgen as PKCS#8.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, SignatureAlgorithm};
use serde::{Deserialize, Serialize};

/// The key algorithm of a CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 (the default, as in SPIRE).
    #[default]
    #[serde(rename = "ec-p256")]
    EcP256,
    /// ECDSA on P-384 with SHA-384.
    #[serde(rename = "ec-p384")]
    EcP384,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 signatures.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

/// Key generation or loading failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating a {key_type} key failed: {source}")]
    Generate {
        key_type: KeyType,
        #[source]
        source: rcgen::Error,
    },
    #[error("generating an RSA key failed: {0}")]
    Rsa(String),
    #[error("not a PKCS#8 private key in PEM form ({0})")]
    Parse(#[source] rcgen::Error),
}

impl KeyType {
    /// All accepted spellings, for error messages.
    pub const NAMES: &'static [&'static str] = &["ec-p256", "ec-p384", "rsa-2048"];

    pub(crate) fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Generate a fresh key of this type.
    pub(crate) fn generate(self) -> Result<KeyPair, KeyError> {
        match self {
            KeyType::EcP256 | KeyType::EcP384 => {
                KeyPair::generate_for(self.algorithm()).map_err(|source| KeyError::Generate {
                    key_type: self,
                    source,
                })
            }
            KeyType::Rsa2048 => {
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
                    .map_err(|e| KeyError::Rsa(e.to_string()))?;
                let der = key
                    .to_pkcs8_der()
                    .map_err(|e| KeyError::Rsa(e.to_string()))?;
                let der = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
                KeyPair::from_pkcs8_der_and_sign_algo(&der, self.algorithm()).map_err(|source| {
                    KeyError::Generate {
                        key_type: self,
                        source,
                    }
                })
            }
        }
    }

    /// Which key type a loaded key pair is, if it is one we sign with.
    pub(crate) fn of(key: &KeyPair) -> Option<KeyType> {
        let alg = key.algorithm();
        [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048]
            .into_iter()
            .find(|t| t.algorithm() == alg)
    }
}

/// Parse a PKCS#8 PEM private key (any type we support).
pub(crate) fn parse_key_pem(pem: &str) -> Result<KeyPair, KeyError> {
    KeyPair::from_pem(pem).map_err(KeyError::Parse)
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::EcP256 => "ec-p256",
            KeyType::EcP384 => "ec-p384",
            KeyType::Rsa2048 => "rsa-2048",
        })
    }
}

/// A key type name Warden does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key type `{0}` (expected one of {names})", names = KeyType::NAMES.join(", "))]
pub struct UnknownKeyType(pub String);

impl FromStr for KeyType {
    type Err = UnknownKeyType;
    fn from_str(s: &str) -> Result<Self, UnknownKeyType> {
        match s {
            "ec-p256" => Ok(KeyType::EcP256),
            "ec-p384" => Ok(KeyType::EcP384),
            "rsa-2048" => Ok(KeyType::Rsa2048),
            other => Err(UnknownKeyType(other.to_owned())),
        }
    }
}
