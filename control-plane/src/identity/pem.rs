//! PEM ↔ DER for certificates and PKCS#8 private keys (RFC 7468), the one place Warden
//! reads or writes PEM. Reading is `rustls-pki-types`' PEM parser (strict about markers
//! and base64, skips sections of other labels); writing is the `pem` crate's encoder (in
//! the tree through rcgen), with LF line endings and 64-character lines as OpenSSL and
//! Envoy write them. No I/O here.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

/// A PEM text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PemError {
    /// Broken markers or base64 (the parser's own words).
    #[error("bad PEM: {0}")]
    Syntax(String),
    /// No section of the wanted label.
    #[error("no `-----BEGIN {0}-----` section")]
    Missing(&'static str),
}

impl From<rustls_pki_types::pem::Error> for PemError {
    fn from(e: rustls_pki_types::pem::Error) -> Self {
        PemError::Syntax(e.to_string())
    }
}

const CERTIFICATE: &str = "CERTIFICATE";
const PRIVATE_KEY: &str = "PRIVATE KEY";

/// Every `CERTIFICATE` section of `text`, in order, as DER (none is not an error: callers
/// say what an empty chain means to them). Sections of other labels are skipped.
pub(crate) fn certs(text: &str) -> Result<Vec<Vec<u8>>, PemError> {
    CertificateDer::pem_slice_iter(text.as_bytes())
        .map(|c| Ok(c?.to_vec()))
        .collect()
}

/// The first `PRIVATE KEY` (PKCS#8) section of `text`, as DER.
pub(crate) fn pkcs8_key(text: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, PemError> {
    match PrivatePkcs8KeyDer::from_pem_slice(text.as_bytes()) {
        Ok(key) => Ok(zeroize::Zeroizing::new(key.secret_pkcs8_der().to_vec())),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(PemError::Missing(PRIVATE_KEY)),
        Err(e) => Err(e.into()),
    }
}

/// One certificate as a PEM section.
pub(crate) fn cert_pem(der: &[u8]) -> String {
    encode(CERTIFICATE, der)
}

/// Certificates as concatenated PEM sections, in order.
pub(crate) fn certs_pem<'a>(ders: impl IntoIterator<Item = &'a Vec<u8>>) -> String {
    ders.into_iter().map(|d| cert_pem(d)).collect()
}

/// A PKCS#8 private key as a PEM section (zeroized when dropped).
pub(crate) fn pkcs8_key_pem(der: &[u8]) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(encode(PRIVATE_KEY, der))
}

fn encode(label: &str, der: &[u8]) -> String {
    let config = ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF);
    ::pem::encode_config(&::pem::Pem::new(label, der), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_decoded_in_order_and_other_sections_skipped() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nAQI=\n-----END CERTIFICATE-----\n\
                    -----BEGIN PRIVATE KEY-----\nBQY=\n-----END PRIVATE KEY-----\n\
                    -----BEGIN CERTIFICATE-----\r\nAw==\r\n-----END CERTIFICATE-----\r\n";
        assert_eq!(certs(text).unwrap(), vec![vec![1, 2], vec![3]]);
        assert_eq!(pkcs8_key(text).unwrap().as_slice(), &[5, 6]);
        assert!(certs("no pem here").unwrap().is_empty());
        assert_eq!(pkcs8_key("no pem"), Err(PemError::Missing("PRIVATE KEY")));
    }

    #[test]
    fn encoding_round_trips_with_lf_and_64_character_lines() {
        let der: Vec<u8> = (0..=255).collect();
        let text = cert_pem(&der);
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(text.ends_with("-----END CERTIFICATE-----\n"));
        assert!(!text.contains('\r'));
        assert!(text.lines().all(|l| l.len() <= 64));
        let two = certs_pem([&der, &vec![7u8]]);
        assert_eq!(certs(&two).unwrap(), vec![der.clone(), vec![7]]);
        assert_eq!(
            pkcs8_key(&pkcs8_key_pem(&der)).unwrap().as_slice(),
            der.as_slice()
        );
    }

    #[test]
    fn broken_sections_are_errors_not_panics() {
        for bad in [
            "-----BEGIN CERTIFICATE-----\nAQI=\n",
            "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nAQI=\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(matches!(certs(bad), Err(PemError::Syntax(_))), "{bad:?}");
        }
        let huge = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            "A".repeat(1 << 20)
        );
        assert_eq!(certs(&huge).unwrap()[0].len(), 3 << 18);
    }
}
