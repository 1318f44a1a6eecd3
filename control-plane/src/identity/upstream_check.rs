//! Checks an upstream CA before Warden uses it, the way SPIRE checks an upstream
//! authority: every certificate of the file's chain is a CA with `keyCertSign`, valid now
//! and for the configured CA lifetime, with a path length that leaves room for Warden's
//! intermediate; each certificate is signed by the next, and the chain ends in a
//! self-signed root (the trust anchor sidecars get). Then a throw-away intermediate and a
//! test SVID are signed in memory and verified with an independent verifier (webpki, the
//! one rustls uses) against that root.
//!
//! Pure apart from [`load_checked`], which reads the upstream files (`ca.rs` parses them;
//! the state directory is written only after these checks pass). Run by `warden validate`
//! and at every CA open. The defects are vocabulary of their own (`upstream_defect.rs`),
//! so the CA's error type does not depend on this module.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::certificate::X509Certificate;

use super::ca::{create, Ca, CaError, CaParams, Upstream};
use super::keys::KeyType;
use super::svid::SvidParams;
use super::upstream_defect::{UpstreamDefect, UpstreamDefects};
use super::Clock;

/// Load the upstream CA of `params`, if any, and check that it can work (see
/// `upstream_check`) before anything is written to the state directory.
pub(crate) fn load_checked(
    params: &CaParams,
    clock: &dyn Clock,
) -> Result<Option<Upstream>, CaError> {
    let Some(files) = &params.upstream else {
        return Ok(None);
    };
    let up = Upstream::load(files)?;
    check(&up, params, clock)?;
    Ok(Some(up))
}

/// Check `up` for a Warden CA with `params` (trust domain, CA ttl) at `clock.now()`.
pub(crate) fn check(
    up: &Upstream,
    params: &CaParams,
    clock: &dyn Clock,
) -> Result<(), UpstreamDefects> {
    let mut defects = check_chain(up.chain(), up.cert_path(), clock.now(), params.ttl);
    let (nc_defects, uri_constrained) =
        name_constraints(up.chain(), up.cert_path(), &params.trust_domain);
    defects.extend(nc_defects);
    if defects.is_empty() {
        if let Err(e) = test_svid(up, params, clock, uri_constrained) {
            defects.push(UpstreamDefect::TestSvid {
                reason: e.to_string(),
            });
        }
    }
    if defects.is_empty() {
        return Ok(());
    }
    Err(UpstreamDefects {
        path: up.cert_path().to_path_buf(),
        defects,
    })
}

/// The structural checks on the certificate file's chain (upstream signer first).
pub(crate) fn check_chain(
    chain: &[Vec<u8>],
    path: &Path,
    now: SystemTime,
    ca_ttl: Duration,
) -> Vec<UpstreamDefect> {
    let mut defects = Vec::new();
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .filter_map(|der| {
            x509_parser::parse_x509_certificate(der)
                .ok()
                .map(|(_, c)| c)
        })
        .collect();
    if parsed.len() != chain.len() {
        // ca.rs parsed the first one already; an unparsable later one breaks the chain.
        defects.push(UpstreamDefect::BrokenChain {
            cert: format!("a certificate in {}", path.display()),
            next: "an unparsable certificate".into(),
        });
        return defects;
    }
    let needed_until = now.checked_add(ca_ttl).unwrap_or(now);
    for (i, cert) in parsed.iter().enumerate() {
        let name = describe(path, i, cert);
        check_one(cert, &name, i, now, needed_until, ca_ttl, &mut defects);
        match parsed.get(i + 1) {
            // Copies of the root or stray roots would ride along in every SVID chain.
            Some(_) if cert.issuer() == cert.subject() => {
                defects.push(UpstreamDefect::RootNotLast { cert: name });
            }
            Some(next) => {
                let has_aki = cert.iter_extensions().any(|e| {
                    matches!(
                        e.parsed_extension(),
                        x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(_)
                    )
                });
                if !has_aki {
                    defects.push(UpstreamDefect::NoAuthorityKeyId { cert: name.clone() });
                }
                let linked = cert.issuer() == next.subject()
                    && cert.verify_signature(Some(next.public_key())).is_ok();
                if !linked {
                    defects.push(UpstreamDefect::BrokenChain {
                        cert: name,
                        next: describe(path, i + 1, next),
                    });
                }
            }
            None => {
                let self_signed =
                    cert.issuer() == cert.subject() && cert.verify_signature(None).is_ok();
                if !self_signed {
                    defects.push(UpstreamDefect::NoRoot { cert: name });
                }
            }
        }
    }
    defects
}

/// Name constraints (RFC 5280 §4.2.1.10) on the names Warden's certificates carry: the
/// trust domain as URI host, `warden-control-plane.<td>` as DNS name. In each
/// certificate, permitted subtrees of a type (when listed) must match and excluded ones
/// must not. URI: `host` is that host, `.domain` any host below it; DNS: a name and
/// everything below it. Checked here because webpki implements no URI constraints (it
/// refuses every URI SAN below one). Returns the defects and whether URI constraints
/// were seen.
fn name_constraints(
    chain: &[Vec<u8>],
    path: &Path,
    td: &super::TrustDomain,
) -> (Vec<UpstreamDefect>, bool) {
    use x509_parser::extensions::{GeneralName, GeneralSubtree, ParsedExtension};
    let uri_host = td.as_str().to_owned();
    let dns_host = format!("warden-control-plane.{td}");
    let below = |host: &str, domain: &str| {
        host.len() > domain.len()
            && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
    };
    let uri_matches = |c: &str| match c.strip_prefix('.') {
        Some(domain) => below(&uri_host, domain),
        None => c.eq_ignore_ascii_case(&uri_host),
    };
    let dns_matches = |c: &str| {
        let c = c.trim_start_matches('.');
        c.is_empty() || c.eq_ignore_ascii_case(&dns_host) || below(&dns_host, c)
    };
    let (mut defects, mut uri_seen) = (Vec::new(), false);
    for (i, der) in chain.iter().enumerate() {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            continue;
        };
        for ext in cert.iter_extensions() {
            let ParsedExtension::NameConstraints(nc) = ext.parsed_extension() else {
                continue;
            };
            let of = |list: &Option<Vec<GeneralSubtree<'_>>>, uri: bool| -> Vec<String> {
                list.iter()
                    .flatten()
                    .filter_map(|t| match (t.base.clone(), uri) {
                        (GeneralName::URI(u), true) | (GeneralName::DNSName(u), false) => {
                            Some(u.to_owned())
                        }
                        _ => None,
                    })
                    .collect()
            };
            for (uri, name) in [(true, td.to_spiffe_id_string()), (false, dns_host.clone())] {
                let (permitted, excluded) = (
                    of(&nc.permitted_subtrees, uri),
                    of(&nc.excluded_subtrees, uri),
                );
                let hit = |c: &String| if uri { uri_matches(c) } else { dns_matches(c) };
                uri_seen |= uri && !(permitted.is_empty() && excluded.is_empty());
                let allowed = (permitted.is_empty() || permitted.iter().any(hit))
                    && !excluded.iter().any(hit);
                if !allowed {
                    defects.push(UpstreamDefect::NameConstraints {
                        cert: describe(path, i, &cert),
                        name,
                    });
                }
            }
        }
    }
    (defects, uri_seen)
}

/// CA flag, keyCertSign, validity and path length of the certificate at `index` (Warden's
/// intermediate plus `index` certificates of the file sit below it).
fn check_one(
    cert: &X509Certificate<'_>,
    name: &str,
    index: usize,
    now: SystemTime,
    needed_until: SystemTime,
    ca_ttl: Duration,
    defects: &mut Vec<UpstreamDefect>,
) {
    let constraints = cert.basic_constraints().ok().flatten().map(|e| e.value);
    if !constraints.is_some_and(|bc| bc.ca) {
        defects.push(UpstreamDefect::NotCa { cert: name.into() });
    }
    // RFC 5280 §4.2.1.3: without the extension any use is allowed; with it, a CA that
    // signs certificates needs keyCertSign.
    if let Ok(Some(ku)) = cert.key_usage() {
        if !ku.value.key_cert_sign() {
            defects.push(UpstreamDefect::NoKeyCertSign { cert: name.into() });
        }
    }
    let not_before = SystemTime::from(cert.validity().not_before.to_datetime());
    let not_after = SystemTime::from(cert.validity().not_after.to_datetime());
    if not_before > now {
        defects.push(UpstreamDefect::NotYetValid {
            cert: name.into(),
            not_before: date(not_before),
        });
    }
    if not_after <= now {
        defects.push(UpstreamDefect::Expired {
            cert: name.into(),
            not_after: date(not_after),
        });
    } else if not_after < needed_until {
        defects.push(UpstreamDefect::EndsTooSoon {
            cert: name.into(),
            not_after: date(not_after),
            ttl: crate::units::format_duration(ca_ttl),
            needed: date(needed_until),
        });
    }
    let needed = u32::try_from(index + 1).unwrap_or(u32::MAX);
    if let Some(pathlen) = constraints.and_then(|bc| bc.path_len_constraint) {
        if pathlen < needed {
            defects.push(UpstreamDefect::PathLen {
                cert: name.into(),
                pathlen,
                needed,
            });
        }
    }
}

/// Why the throw-away SVID could not be made or did not verify.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("{0}")]
    Ca(#[from] CaError),
    #[error("{0}")]
    Id(#[from] super::IdError),
    #[error("{0}")]
    Pem(#[from] super::pem::PemError),
    #[error("empty SVID chain")]
    EmptyChain,
    #[error("the root is not a usable trust anchor ({0:?})")]
    Anchor(webpki::Error),
    #[error("{0:?}")]
    Leaf(webpki::Error),
    #[error("clock before 1970")]
    Clock,
    #[error("webpki, {what}: {err:?}")]
    Usage {
        what: &'static str,
        err: webpki::Error,
    },
    #[error("{host}: {detail}")]
    Name { host: String, detail: String },
    #[error("webpki, for the name {host}: {err:?}")]
    Subject { host: String, err: webpki::Error },
}

/// Sign a throw-away intermediate and SVID in memory and verify the SVID with webpki
/// against the chain's root, as a TLS peer would.
fn test_svid(
    up: &Upstream,
    params: &CaParams,
    clock: &dyn Clock,
    uri_constrained: bool,
) -> Result<(), ProbeError> {
    let probe = CaParams {
        key_type: KeyType::EcP256,
        ..params.clone()
    };
    let slot = create(&probe, Some(up), clock)?;
    let ca = Ca::from_slot(&probe, &slot, Some(up), clock)?;
    let id = params.trust_domain.parse_workload(&format!(
        "{}/warden/upstream-check",
        params.trust_domain.to_spiffe_id_string()
    ))?;
    // Like the control plane's own serving SVID: the URI SAN plus the DNS name sidecars
    // check (`xds::server::tls`), so DNS name constraints on the upstream are tried too.
    let host = format!("warden-control-plane.{}", params.trust_domain);
    let svid = ca.mint_with_dns_names(
        &SvidParams {
            id,
            ttl: Duration::from_secs(60),
        },
        std::slice::from_ref(&host),
        clock,
    )?;
    let chain = super::ca::pem_certs(&svid.cert_chain_pem)?;
    let (leaf, intermediates) = chain.split_first().ok_or(ProbeError::EmptyChain)?;
    let anchor_der = CertificateDer::from(up.root_der.as_slice());
    let anchor = webpki::anchor_from_trusted_cert(&anchor_der).map_err(ProbeError::Anchor)?;
    let leaf_der = CertificateDer::from(leaf.as_slice());
    let leaf = webpki::EndEntityCert::try_from(&leaf_der).map_err(ProbeError::Leaf)?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let now = clock
        .now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| ProbeError::Clock)?;
    // SVIDs serve both ends of mTLS: check each usage, then the host name.
    for (usage, what) in [
        (webpki::KeyUsage::client_auth(), "as a TLS client"),
        (webpki::KeyUsage::server_auth(), "as a TLS server"),
    ] {
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            std::slice::from_ref(&anchor),
            &intermediates,
            UnixTime::since_unix_epoch(now),
            usage,
            None,
            None,
        )
        .map(|_| ())
        .or_else(|e| match e {
            // webpki refuses every URI SAN below a URI name constraint (it implements
            // none); `name_constraints` checked both name types against them already.
            webpki::Error::NameConstraintViolation if uri_constrained => Ok(()),
            e => Err(e),
        })
        .map_err(|err| ProbeError::Usage { what, err })?;
    }
    let name =
        rustls_pki_types::ServerName::try_from(host.as_str()).map_err(|e| ProbeError::Name {
            host: host.clone(),
            detail: e.to_string(),
        })?;
    leaf.verify_is_valid_for_subject_name(&name)
        .map_err(|err| ProbeError::Subject { host, err })
}

/// `certificate 2 of ca.pem (CN=Example Root)`.
fn describe(path: &Path, index: usize, cert: &X509Certificate<'_>) -> String {
    format!(
        "certificate {} of {} ({})",
        index + 1,
        path.display(),
        cert.subject()
    )
}

fn date(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
#[path = "upstream_check_tests.rs"]
mod tests;
