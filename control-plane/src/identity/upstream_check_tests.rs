//! The upstream CA matrix: a good root, a root + intermediate chain, and each defect
//! seen in the field (pathlen:0, no keyCertSign, expired, intermediate without its root),
//! plus the neighbours of each kind. Certificates are generated here with rcgen.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use super::*;
use crate::identity::ca::UpstreamCa;
use crate::identity::{Authority, CaError, SystemClock};

const DAY: Duration = Duration::from_secs(86400);

/// How a test CA certificate differs from a good one.
#[derive(Clone, Copy, Default)]
struct Shape {
    pathlen: Option<u8>,
    no_key_cert_sign: bool,
    not_ca: bool,
    no_aki: bool,
    /// (not_before, not_after) relative to now, in days.
    days: Option<(i64, i64)>,
}

struct TestCa {
    pem: String,
    key: KeyPair,
    params: CertificateParams,
}

fn ca_params(cn: &str, shape: Shape) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = match (shape.not_ca, shape.pathlen) {
        (true, _) => IsCa::ExplicitNoCa,
        (false, Some(n)) => IsCa::Ca(BasicConstraints::Constrained(n)),
        (false, None) => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    p.key_usages = if shape.no_key_cert_sign {
        vec![KeyUsagePurpose::DigitalSignature]
    } else {
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]
    };
    let (from, to) = shape.days.unwrap_or((-1, 365));
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::days(from);
    p.not_after = now + time::Duration::days(to);
    p
}

fn root(shape: Shape) -> TestCa {
    let key = KeyPair::generate().unwrap();
    let params = ca_params("Test Root", shape);
    let pem = params.clone().self_signed(&key).unwrap().pem();
    TestCa { pem, key, params }
}

fn intermediate(under: &TestCa, shape: Shape) -> TestCa {
    let key = KeyPair::generate().unwrap();
    let mut params = ca_params("Test Intermediate", shape);
    params.use_authority_key_identifier_extension = !shape.no_aki;
    let issuer = Issuer::from_params(&under.params, &under.key);
    let pem = params.clone().signed_by(&key, &issuer).unwrap().pem();
    TestCa { pem, key, params }
}

/// Write `chain` (signer first) and the signer's key; return the CA params using them.
fn setup(dir: &Path, chain: &[&TestCa]) -> CaParams {
    let cert = dir.join("upstream.pem");
    let key = dir.join("upstream.key");
    let pem: String = chain.iter().map(|c| c.pem.as_str()).collect();
    std::fs::write(&cert, pem).unwrap();
    std::fs::write(&key, chain[0].key.serialize_pem()).unwrap();
    CaParams {
        trust_domain: "example.org".parse().unwrap(),
        key_type: KeyType::EcP256,
        ttl: DAY,
        state_dir: dir.join("state"),
        upstream: Some(UpstreamCa { cert, key }),
    }
}

fn defects(params: &CaParams) -> Vec<UpstreamDefect> {
    let up = Upstream::load(params.upstream.as_ref().unwrap()).unwrap();
    match check(&up, params, &SystemClock) {
        Ok(()) => Vec::new(),
        Err(d) => d.defects,
    }
}

#[test]
fn a_good_root_is_accepted_and_its_test_svid_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let r = root(Shape::default());
    assert_eq!(defects(&setup(dir.path(), &[&r])), vec![]);
    let r = root(Shape {
        pathlen: Some(1),
        ..Shape::default()
    });
    assert_eq!(defects(&setup(dir.path(), &[&r])), vec![]);
}

#[test]
fn a_root_plus_intermediate_chain_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let r = root(Shape {
        pathlen: Some(2),
        ..Shape::default()
    });
    let i = intermediate(
        &r,
        Shape {
            pathlen: Some(1),
            ..Shape::default()
        },
    );
    let params = setup(dir.path(), &[&i, &r]);
    assert_eq!(defects(&params), vec![]);
    // And the real CA under it mints SVIDs that openssl (strict) verifies against the root.
    let ca = Ca::load_or_init(&params, &SystemClock).unwrap();
    assert_eq!(ca.bundle().to_pem(), r.pem.replace('\r', ""));
    let svid = ca
        .mint(
            &SvidParams {
                id: "spiffe://example.org/db".parse().unwrap(),
                ttl: Duration::from_secs(600),
            },
            &SystemClock,
        )
        .unwrap();
    assert_eq!(
        super::super::ca::pem_certs(&svid.cert_chain_pem)
            .unwrap()
            .len(),
        3
    );
    assert!(crate::identity::ca::tests::openssl_verifies(
        dir.path(),
        &svid,
        &ca.bundle().to_pem()
    ));
}

#[test]
fn a_root_with_pathlen_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = root(Shape {
        pathlen: Some(0),
        ..Shape::default()
    });
    let got = defects(&setup(dir.path(), &[&r]));
    assert!(
        matches!(
            &got[..],
            [UpstreamDefect::PathLen {
                pathlen: 0,
                needed: 1,
                ..
            }]
        ),
        "{got:?}"
    );
    assert!(got[0].to_string().contains("pathlen:1"), "{}", got[0]);
    // The same kind one level up: the root of a chain needs room for two.
    let r = root(Shape {
        pathlen: Some(1),
        ..Shape::default()
    });
    let i = intermediate(&r, Shape::default());
    let got = defects(&setup(dir.path(), &[&i, &r]));
    assert!(
        matches!(
            &got[..],
            [UpstreamDefect::PathLen {
                pathlen: 1,
                needed: 2,
                ..
            }]
        ),
        "{got:?}"
    );
}

#[test]
fn a_root_without_key_cert_sign_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = root(Shape {
        no_key_cert_sign: true,
        ..Shape::default()
    });
    let got = defects(&setup(dir.path(), &[&r]));
    assert!(
        matches!(&got[..], [UpstreamDefect::NoKeyCertSign { .. }]),
        "{got:?}"
    );
}

#[test]
fn an_expired_upstream_is_refused_naming_the_date_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let r = root(Shape {
        days: Some((-2000, -1800)),
        ..Shape::default()
    });
    let params = setup(dir.path(), &[&r]);
    let got = defects(&params);
    assert!(
        matches!(&got[..], [UpstreamDefect::Expired { .. }]),
        "{got:?}"
    );
    let year = (time::OffsetDateTime::now_utc() - time::Duration::days(1800)).year();
    assert!(got[0].to_string().contains(&year.to_string()), "{}", got[0]);
    let err = Authority::load_or_init(&params, &SystemClock).unwrap_err();
    assert!(matches!(err, CaError::UpstreamUnusable(_)), "{err}");
    assert!(
        !params.state_dir.exists(),
        "state dir written before the checks passed"
    );
}

#[test]
fn an_upstream_ending_before_the_ca_ttl_or_not_yet_valid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = setup(
        dir.path(),
        &[&root(Shape {
            days: Some((-1, 10)),
            ..Shape::default()
        })],
    );
    params.ttl = 30 * DAY;
    let got = defects(&params);
    assert!(
        matches!(&got[..], [UpstreamDefect::EndsTooSoon { .. }]),
        "{got:?}"
    );
    assert!(got[0].to_string().contains("ca.ttl 30d"), "{}", got[0]);
    let got = defects(&setup(
        dir.path(),
        &[&root(Shape {
            days: Some((2, 30)),
            ..Shape::default()
        })],
    ));
    assert!(
        matches!(&got[..], [UpstreamDefect::NotYetValid { .. }]),
        "{got:?}"
    );
}

#[test]
fn an_intermediate_without_its_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = root(Shape::default());
    let i = intermediate(&r, Shape::default());
    let got = defects(&setup(dir.path(), &[&i]));
    assert!(
        matches!(&got[..], [UpstreamDefect::NoRoot { .. }]),
        "{got:?}"
    );
}

#[test]
fn a_chain_out_of_order_or_a_non_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = root(Shape::default());
    let i = intermediate(&r, Shape::default());
    // Root first, then the intermediate: the root is not last, the chain ends in no root.
    let mut params = setup(dir.path(), &[&r, &i]);
    std::fs::write(
        &params.upstream.as_ref().unwrap().key,
        r.key.serialize_pem(),
    )
    .unwrap();
    let got = defects(&params);
    assert!(
        got.iter()
            .any(|d| matches!(d, UpstreamDefect::RootNotLast { .. })),
        "{got:?}"
    );
    assert!(got
        .iter()
        .any(|d| matches!(d, UpstreamDefect::NoRoot { .. })));
    params.ttl = DAY;
    let leaf = root(Shape {
        not_ca: true,
        ..Shape::default()
    });
    let got = defects(&setup(dir.path(), &[&leaf]));
    assert!(
        matches!(&got[..], [UpstreamDefect::NotCa { .. }]),
        "{got:?}"
    );
}

#[test]
fn an_intermediate_without_authority_key_identifier_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = root(Shape::default());
    let i = intermediate(
        &r,
        Shape {
            no_aki: true,
            ..Shape::default()
        },
    );
    let got = defects(&setup(dir.path(), &[&i, &r]));
    assert!(
        matches!(&got[..], [UpstreamDefect::NoAuthorityKeyId { .. }]),
        "{got:?}"
    );
}

#[test]
fn copies_of_the_root_before_the_end_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = root(Shape::default());
    let got = defects(&setup(dir.path(), &[&r, &r, &r]));
    assert_eq!(
        got.iter()
            .filter(|d| matches!(d, UpstreamDefect::RootNotLast { .. }))
            .count(),
        2,
        "{got:?}"
    );
}

#[test]
fn the_structural_checks_never_panic_on_a_garbage_chain() {
    let junk = vec![vec![0x30, 0x03, 0x02, 0x01, 0x01], Vec::new()];
    let got = check_chain(&junk, Path::new("x.pem"), SystemTime::now(), DAY);
    assert!(!got.is_empty());
}

/// A good root whose parameters `edit` changes first.
fn root_with(edit: impl FnOnce(&mut CertificateParams)) -> TestCa {
    let key = KeyPair::generate().unwrap();
    let mut params = ca_params("Test Root", Shape::default());
    edit(&mut params);
    let pem = params.clone().self_signed(&key).unwrap().pem();
    TestCa { pem, key, params }
}

#[test]
fn a_root_whose_name_constraints_exclude_the_control_plane_name_is_refused() {
    use rcgen::{GeneralSubtree, NameConstraints};
    let dir = tempfile::tempdir().unwrap();
    let constrained = |dns: &str| {
        root_with(|p| {
            p.name_constraints = Some(NameConstraints {
                permitted_subtrees: vec![GeneralSubtree::DnsName(dns.into())],
                excluded_subtrees: vec![],
            })
        })
    };
    // The xDS serving SVID carries warden-control-plane.example.org: outside corp.example.
    let got = defects(&setup(dir.path(), &[&constrained("corp.example")]));
    assert!(
        matches!(&got[..], [UpstreamDefect::NameConstraints { name, .. }] if name == "warden-control-plane.example.org"),
        "{got:?}"
    );
    assert_eq!(
        defects(&setup(dir.path(), &[&constrained("example.org")])),
        vec![]
    );
}

#[test]
fn an_intermediate_with_an_unknown_critical_extension_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = root(Shape::default());
    let key = KeyPair::generate().unwrap();
    let mut params = ca_params("Test Intermediate", Shape::default());
    params.use_authority_key_identifier_extension = true;
    let mut ext =
        rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![0x05, 0x00]);
    ext.set_criticality(true);
    params.custom_extensions.push(ext);
    let pem = params
        .clone()
        .signed_by(&key, &Issuer::from_params(&r.params, &r.key))
        .unwrap()
        .pem();
    let i = TestCa { pem, key, params };
    let got = defects(&setup(dir.path(), &[&i, &r]));
    assert!(
        matches!(&got[..], [UpstreamDefect::TestSvid { reason }] if reason.contains("UnsupportedCriticalExtension")),
        "{got:?}"
    );
}

#[test]
fn an_rsa_root_above_an_ec_warden_ca_is_accepted_and_its_test_svid_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyType::Rsa2048.generate().unwrap();
    let params = ca_params("RSA Root", Shape::default());
    let pem = params.clone().self_signed(&key).unwrap().pem();
    let r = TestCa { pem, key, params };
    assert_eq!(defects(&setup(dir.path(), &[&r])), vec![]);
}

/// A root with a nameConstraints extension whose permitted (or excluded) subtree is the
/// URI host `host` (rcgen has no URI subtrees, so the DER is written here).
fn uri_constrained_root(host: &str, excluded: bool) -> TestCa {
    let h = host.as_bytes();
    let mut uri = vec![0x86, h.len() as u8];
    uri.extend_from_slice(h);
    let mut subtree = vec![0x30, uri.len() as u8];
    subtree.extend(uri);
    let mut subtrees = vec![if excluded { 0xa1 } else { 0xa0 }, subtree.len() as u8];
    subtrees.extend(subtree);
    let mut nc = vec![0x30, subtrees.len() as u8];
    nc.extend(subtrees);
    root_with(|p| {
        let mut ext = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 30], nc);
        ext.set_criticality(true);
        p.custom_extensions.push(ext);
    })
}

#[test]
fn a_root_constrained_to_the_trust_domain_by_uri_is_accepted() {
    // X509-SVID spec §4.2: signing certificates may constrain URI SANs to the trust domain.
    let dir = tempfile::tempdir().unwrap();
    let params = setup(dir.path(), &[&uri_constrained_root("example.org", false)]);
    assert_eq!(defects(&params), vec![]);
    // OpenSSL, which implements URI constraints (BoringSSL in Envoy shares its code),
    // verifies a real SVID under it.
    let ca = Ca::load_or_init(&params, &SystemClock).unwrap();
    let svid = ca
        .mint(
            &SvidParams {
                id: "spiffe://example.org/db".parse().unwrap(),
                ttl: Duration::from_secs(600),
            },
            &SystemClock,
        )
        .unwrap();
    assert!(crate::identity::ca::tests::openssl_verifies(
        dir.path(),
        &svid,
        &ca.bundle().to_pem()
    ));
}

#[test]
fn a_root_whose_uri_constraints_exclude_the_trust_domain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (host, excluded) in [
        ("other.org", false),
        ("example.org", true),
        (".example.org", false),
    ] {
        let got = defects(&setup(dir.path(), &[&uri_constrained_root(host, excluded)]));
        assert!(
            matches!(&got[..], [UpstreamDefect::NameConstraints { .. }]),
            "{host} excluded={excluded}: {got:?}"
        );
        assert!(
            got[0].to_string().contains("spiffe://example.org"),
            "{}",
            got[0]
        );
    }
}
