//! X.509-SVID templates (SPIFFE X509-SVID spec §4/§5): exactly one URI SAN, CA=false,
//! keyUsage digitalSignature (critical), EKU serverAuth + clientAuth, a random serial of
//! 128 bits, a small backdate for clock skew, and a lifetime that never outlives the CA.
//!
//! Pure functions from parameters to `rcgen` templates; signing happens in `ca.rs`.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType, SerialNumber,
};
use zeroize::Zeroizing;

use super::SpiffeId;

/// How far `notBefore` is set in the past, so peers with a slightly slow clock accept a
/// fresh certificate.
pub(crate) const BACKDATE: Duration = Duration::from_secs(30);

/// What to mint.
#[derive(Debug, Clone)]
pub struct SvidParams {
    /// The SPIFFE ID to certify; must be in the CA's trust domain.
    pub id: SpiffeId,
    /// Requested lifetime; cut to the CA's own `notAfter` if longer.
    pub ttl: Duration,
}

/// A minted X.509-SVID with its private key.
#[derive(Clone)]
pub struct Svid {
    /// The SPIFFE ID in the certificate's URI SAN.
    pub id: SpiffeId,
    /// PEM chain: the leaf first, then any intermediates up to (not including) the root.
    pub cert_chain_pem: String,
    /// The leaf's PKCS#8 PEM private key.
    pub private_key_pem: Zeroizing<String>,
    /// Start of validity (backdated by [`BACKDATE`]).
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Serial number, lowercase hex.
    pub serial_hex: String,
}

impl std::fmt::Debug for Svid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Svid")
            .field("id", &self.id)
            .field("serial_hex", &self.serial_hex)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A positive random serial of 128 bits (RFC 5280 §4.1.2.2 allows up to 20 octets; the
/// SPIFFE spec asks for at least 64 bits of randomness).
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // keep it positive in DER
    bytes[0] |= 0x01; // and without a leading zero octet
    SerialNumber::from_slice(&bytes)
}

/// The validity window `[now - BACKDATE, min(now + ttl, ca_not_after)]`.
pub(crate) fn validity(
    now: SystemTime,
    ttl: Duration,
    ca_not_after: SystemTime,
) -> (SystemTime, SystemTime) {
    let not_before = now.checked_sub(BACKDATE).unwrap_or(now);
    // Checked: an absurd ttl ends at the CA's end instead of panicking.
    let wanted = now.checked_add(ttl).unwrap_or(ca_not_after);
    (not_before, wanted.min(ca_not_after))
}

/// The leaf template for one SVID.
pub(crate) fn leaf_template(
    id: &SpiffeId,
    serial: SerialNumber,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Warden");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(id.as_str().try_into()?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.serial_number = Some(serial);
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_backdated_and_never_outlives_the_ca() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ca_end = now + Duration::from_secs(600);
        let (nb, na) = validity(now, Duration::from_secs(3600), ca_end);
        assert_eq!(nb, now - BACKDATE);
        assert_eq!(na, ca_end, "cut to the CA's notAfter");
        let (_, na) = validity(now, Duration::from_secs(60), ca_end);
        assert_eq!(na, now + Duration::from_secs(60));
    }

    #[test]
    fn serials_are_positive_and_random() {
        let a = random_serial().to_bytes();
        let b = random_serial().to_bytes();
        assert_eq!(a.len(), 16);
        assert!(a[0] & 0x80 == 0 && a[0] != 0);
        assert_ne!(a, b);
    }
}
