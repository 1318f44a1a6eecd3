//! The SPIFFE CA: a self-signed root, or an intermediate signed by an upstream CA whose
//! certificate and key are files on disk. Its key and certificate persist in the state
//! directory (`state.rs`) and are reused after a restart; anything inconsistent there is
//! an error, never silently replaced.
//!
//! Scale-out: replicas that share an upstream root each create their own intermediate in
//! their own state directory, so no two processes ever share a private key. With a
//! self-signed root, run one replica (or share the state directory read-only).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use x509_parser::certificate::X509Certificate;
use zeroize::Zeroizing;

use super::keys::{self, KeyError, KeyType};
/// PEM reading and writing live in `identity::pem`; these names are the ones CA code uses.
pub(crate) use super::pem::{cert_pem as der_to_pem, certs as pem_certs};
use super::state::{CaSlot, CaState, StateError, STATE_FILE};
use super::svid::{self, Svid, SvidParams, BACKDATE};
pub(crate) use super::unix_time::unix_secs_ceil;
use super::{Clock, TrustBundle, TrustDomain};

/// How to find or create the CA.
#[derive(Debug, Clone)]
pub struct CaParams {
    pub trust_domain: TrustDomain,
    pub key_type: KeyType,
    /// Lifetime of a newly created CA certificate.
    pub ttl: Duration,
    pub state_dir: PathBuf,
    pub upstream: Option<UpstreamCa>,
}

/// An upstream CA that signs Warden's intermediate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCa {
    /// PEM certificate of the upstream CA, optionally followed by its own chain up to the root.
    pub cert: PathBuf,
    /// PKCS#8 PEM private key of the upstream CA.
    pub key: PathBuf,
}

/// Everything that can go wrong loading the CA or minting with it.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot read upstream CA file {path}: {source}")]
    UpstreamRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream CA file {path}: {reason}")]
    UpstreamInvalid { path: PathBuf, reason: String },
    #[error("{path}: {reason}; it was left untouched")]
    StateInvalid { path: PathBuf, reason: String },
    #[error("the CA certificate in {path} expired at {not_after}; move the state directory away to start a new CA (every workload must then trust the new bundle)")]
    Expired { path: PathBuf, not_after: String },
    /// The signing CA has expired (or would cut the SVID to nothing): never hand out an
    /// SVID whose `notAfter` is not in the future.
    #[error("CA {serial} expired at {not_after}: it can no longer sign a usable SVID (activate the next CA: `warden ca status`)")]
    CaExpired { serial: String, not_after: String },
    #[error("{id} is not in trust domain {trust_domain}")]
    ForeignId { id: String, trust_domain: String },
    #[error("{id} has no path; a leaf SVID's ID needs one (X509-SVID spec §3.1)")]
    LeafWithoutPath { id: String },
    #[error(transparent)]
    UpstreamUnusable(#[from] super::upstream_defect::UpstreamDefects),
    #[error("CA ttl {0:?} is too long")]
    TtlTooLong(Duration),
    #[error("building a certificate failed: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// A loaded CA, ready to mint SVIDs. `Send + Sync`; minting takes `&self`.
#[derive(Debug)]
pub struct Ca {
    trust_domain: TrustDomain,
    issuer: Issuer<'static, KeyPair>,
    not_before: SystemTime,
    not_after: SystemTime,
    serial_hex: String,
    /// The latest `notAfter` of any SVID minted by this process (seconds since the epoch),
    /// seeded from the state file so a restart never forgets earlier SVIDs.
    signed_until: AtomicU64,
    /// PEM of the certificates that follow a leaf: empty for a self-signed root, otherwise
    /// our intermediate and any upstream intermediates.
    chain_tail_pem: String,
    cert_pem: String,
    bundle: TrustBundle,
}

impl Ca {
    /// Load one CA generation from its slot (checks key, certificate, upstream signature
    /// and expiry).
    pub(crate) fn from_slot(
        params: &CaParams,
        slot: &CaSlot,
        upstream: Option<&Upstream>,
        clock: &dyn Clock,
    ) -> Result<Ca, CaError> {
        let path = params.state_dir.join(STATE_FILE);
        let invalid = |reason: String| CaError::StateInvalid {
            path: path.clone(),
            reason,
        };
        let key = keys::parse_key_pem(&slot.key_pem)
            .map_err(|e| invalid(format!("the CA key is unreadable ({e})")))?;
        let key_type = KeyType::of(&key)
            .ok_or_else(|| invalid("the CA key has an unsupported algorithm".into()))?;
        if key_type != params.key_type {
            return Err(invalid(format!(
                "the CA key is {key_type} but the config asks for {}; key_type only applies to a new CA",
                params.key_type
            )));
        }
        let der = pem_certs(&slot.cert_pem)
            .map_err(|e| invalid(e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| invalid("no CA certificate".into()))?;
        let cert = parse_cert(&der).map_err(invalid)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid(
                "the CA certificate does not match the CA key".into(),
            ));
        }
        let not_after = SystemTime::from(cert.validity().not_after.to_datetime());
        let not_before = SystemTime::from(cert.validity().not_before.to_datetime());
        let serial_hex = hex::encode(cert.raw_serial());
        if not_after <= clock.now() {
            return Err(CaError::Expired {
                path,
                not_after: cert.validity().not_after.to_string(),
            });
        }
        let (chain_tail_pem, roots) = match upstream {
            None => (String::new(), vec![der.clone()]),
            Some(up) => {
                let up_cert = parse_cert(&up.chain_der[0]).map_err(invalid)?;
                cert.verify_signature(Some(up_cert.public_key()))
                    .map_err(|_| invalid(format!(
                        "the intermediate CA here was not signed by the upstream CA in {}; use a new state_dir for a new upstream",
                        up.cert_path.display()
                    )))?;
                let mut tail = slot.cert_pem.clone();
                for der in &up.chain_der[..up.chain_der.len() - 1] {
                    tail.push_str(&der_to_pem(der));
                }
                (tail, vec![up.root_der.clone()])
            }
        };
        let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), key)?;
        Ok(Ca {
            trust_domain: params.trust_domain.clone(),
            issuer,
            not_before,
            not_after,
            serial_hex,
            signed_until: AtomicU64::new(slot.signed_until_unix.unwrap_or(0)),
            chain_tail_pem,
            cert_pem: slot.cert_pem.clone(),
            bundle: TrustBundle {
                trust_domain: params.trust_domain.clone(),
                x509_authorities_der: roots,
                sequence: 1,
            },
        })
    }

    /// Mint an X.509-SVID with a fresh P-256 key.
    pub fn mint(&self, params: &SvidParams, clock: &dyn Clock) -> Result<Svid, CaError> {
        self.mint_with_dns_names(params, &[], clock)
    }

    /// Mint an X.509-SVID that also carries `dns_names` as DNS SANs (the SPIFFE spec
    /// allows other SAN types besides the one URI SAN). For TLS servers whose clients
    /// can only check host names, such as gRPC clients (Envoy's `google_grpc`): the
    /// control plane's xDS serving certificate.
    pub fn mint_with_dns_names(
        &self,
        params: &SvidParams,
        dns_names: &[String],
        clock: &dyn Clock,
    ) -> Result<Svid, CaError> {
        if !params.id.is_member_of(&self.trust_domain) {
            return Err(CaError::ForeignId {
                id: params.id.to_string(),
                trust_domain: self.trust_domain.to_string(),
            });
        }
        // The last line of defence: every caller already parses leaf IDs with a path.
        if params.id.path().is_empty() {
            return Err(CaError::LeafWithoutPath {
                id: params.id.to_string(),
            });
        }
        let (not_before, not_after) = svid::validity(clock.now(), params.ttl, self.not_after);
        if not_after <= clock.now() {
            return Err(CaError::CaExpired {
                serial: self.serial_hex.clone(),
                not_after: super::rotation::rfc3339(self.not_after),
            });
        }
        let key = KeyType::EcP256.generate()?;
        let serial = svid::random_serial();
        let serial_hex = hex::encode(serial.to_bytes());
        let mut template = svid::leaf_template(&params.id, serial, not_before, not_after)?;
        for name in dns_names {
            let name = name.clone().try_into()?;
            template
                .subject_alt_names
                .push(rcgen::SanType::DnsName(name));
        }
        let leaf = template.signed_by(&key, &self.issuer)?;
        // Recorded so this CA stays in the bundle until the last SVID it signed expired.
        self.signed_until
            .fetch_max(unix_secs_ceil(not_after), Ordering::SeqCst);
        let mut cert_chain_pem = leaf.pem();
        cert_chain_pem.push_str(&self.chain_tail_pem);
        Ok(Svid {
            id: params.id.clone(),
            cert_chain_pem,
            private_key_pem: Zeroizing::new(key.serialize_pem()),
            not_before,
            not_after,
            serial_hex,
        })
    }

    /// The trust bundle workloads use to verify SVIDs of this trust domain.
    pub fn bundle(&self) -> TrustBundle {
        self.bundle.clone()
    }

    /// The CA's own certificate (PEM).
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// When the CA certificate expires; SVIDs never outlive it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// When the CA certificate became valid.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// The CA certificate's serial number, lowercase hex.
    pub fn serial_hex(&self) -> &str {
        &self.serial_hex
    }

    /// The latest `notAfter` of any SVID this CA signed (as far as this process knows,
    /// including what the state file recorded); `None` if it signed none.
    pub fn signed_until(&self) -> Option<SystemTime> {
        match self.signed_until.load(Ordering::SeqCst) {
            0 => None,
            s => Some(super::from_unix_secs(s)),
        }
    }

    /// The trust domain this CA signs for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
}

/// Refuses a state file of another trust domain.
pub(crate) fn check_trust_domain(params: &CaParams, state: &CaState) -> Result<(), CaError> {
    if state.trust_domain != params.trust_domain.as_str() {
        return Err(CaError::StateInvalid {
            path: params.state_dir.join(STATE_FILE),
            reason: format!(
                "this CA belongs to trust domain `{}` but the config says `{}`; use another state_dir for another trust domain",
                state.trust_domain, params.trust_domain
            ),
        });
    }
    Ok(())
}

/// Create a new CA generation: a fresh key and a certificate (self-signed or upstream-signed).
pub(crate) fn create(
    params: &CaParams,
    upstream: Option<&Upstream>,
    clock: &dyn Clock,
) -> Result<CaSlot, CaError> {
    let key = params.key_type.generate()?;
    let now = clock.now();
    let mut tpl = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Warden");
    // A random suffix keeps names distinct across replicas and CA generations.
    let suffix = hex::encode(rand::random::<[u8; 4]>());
    dn.push(
        DnType::CommonName,
        format!("Warden CA {} {suffix}", params.trust_domain),
    );
    tpl.distinguished_name = dn;
    tpl.subject_alt_names = vec![SanType::URI(
        params
            .trust_domain
            .to_spiffe_id_string()
            .as_str()
            .try_into()?,
    )];
    tpl.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    tpl.serial_number = Some(svid::random_serial());
    tpl.not_before = (now.checked_sub(BACKDATE).unwrap_or(now)).into();
    // Config bounds ttl (config::duration::MAX); checked anyway so no caller can panic here.
    let mut not_after = now
        .checked_add(params.ttl)
        .ok_or(CaError::TtlTooLong(params.ttl))?;
    let cert = match upstream {
        None => {
            tpl.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            tpl.not_after = not_after.into();
            tpl.self_signed(&key)?
        }
        Some(up) => {
            tpl.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            tpl.use_authority_key_identifier_extension = true;
            not_after = not_after.min(up.not_after);
            tpl.not_after = not_after.into();
            tpl.signed_by(&key, &up.issuer)?
        }
    };
    Ok(CaSlot::new(key.serialize_pem(), cert.pem()))
}

/// A loaded upstream CA.
#[derive(Debug)]
pub(crate) struct Upstream {
    cert_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The certificate file's chain in file order: the upstream CA first.
    chain_der: Vec<Vec<u8>>,
    /// The trust anchor: the last certificate of the chain.
    pub(crate) root_der: Vec<u8>,
    not_after: SystemTime,
}

impl Upstream {
    /// The certificate file's chain, DER, upstream signer first.
    pub(crate) fn chain(&self) -> &[Vec<u8>] {
        &self.chain_der
    }

    /// The certificate file.
    pub(crate) fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    pub(crate) fn load(files: &UpstreamCa) -> Result<Upstream, CaError> {
        let read = |path: &Path| {
            crate::fsutil::read_text(path).map_err(|source| CaError::UpstreamRead {
                path: path.to_path_buf(),
                source,
            })
        };
        let invalid = |path: &Path, reason: String| CaError::UpstreamInvalid {
            path: path.to_path_buf(),
            reason,
        };
        let cert_text = read(&files.cert)?;
        let key_text = read(&files.key)?;
        let chain_der = pem_certs(&cert_text).map_err(|e| invalid(&files.cert, e.to_string()))?;
        let first = chain_der
            .first()
            .ok_or_else(|| invalid(&files.cert, "no PEM certificate found".into()))?;
        let root_der = chain_der.last().cloned().unwrap_or_default();
        let cert = parse_cert(first).map_err(|r| invalid(&files.cert, r))?;
        // CA flag, keyUsage, validity, chain: upstream_check::check, every defect at once.
        let key = keys::parse_key_pem(&key_text).map_err(|_| {
            invalid(
                &files.key,
                "not a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`); convert one with `openssl pkcs8 -topk8 -nocrypt -in KEY`".into(),
            )
        })?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid(
                &files.key,
                format!(
                    "this key does not belong to the certificate in {}",
                    files.cert.display()
                ),
            ));
        }
        let not_after = SystemTime::from(cert.validity().not_after.to_datetime());
        let issuer = Issuer::from_ca_cert_der(&first.as_slice().into(), key)?;
        Ok(Upstream {
            cert_path: files.cert.clone(),
            issuer,
            chain_der,
            root_der,
            not_after,
        })
    }
}

/// A DER certificate, parsed.
fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))
}

#[cfg(test)]
#[path = "ca_tests.rs"]
pub(super) mod tests;
