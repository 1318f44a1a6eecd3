//! CA tests: minted SVIDs are checked by an independent parser (the `spiffe` crate) and
//! the chain by a real verifier (`openssl verify`), not only by the code that wrote them.

use std::process::Command;
use std::time::{Duration, SystemTime};

use super::*;
use crate::identity::{FixedClock, SpiffeId, SystemClock};

fn params(dir: &Path, key_type: KeyType) -> CaParams {
    CaParams {
        trust_domain: "example.org".parse().unwrap(),
        key_type,
        ttl: Duration::from_secs(24 * 3600),
        state_dir: dir.join("state"),
        upstream: None,
    }
}

fn mint(ca: &Ca, id: &str) -> Svid {
    ca.mint(
        &SvidParams {
            id: id.parse().unwrap(),
            ttl: Duration::from_secs(3600),
        },
        &SystemClock,
    )
    .unwrap()
}

/// Run `openssl verify` on a leaf with the bundle as trust anchor and the rest of the
/// chain as untrusted intermediates.
pub(crate) fn openssl_verifies(dir: &Path, svid: &Svid, bundle_pem: &str) -> bool {
    let certs = pem_certs(&svid.cert_chain_pem).unwrap();
    std::fs::write(dir.join("leaf.pem"), der_to_pem(&certs[0])).unwrap();
    let inter: String = certs[1..].iter().map(|d| der_to_pem(d)).collect();
    std::fs::write(
        dir.join("inter.pem"),
        if inter.is_empty() {
            bundle_pem.to_string()
        } else {
            inter
        },
    )
    .unwrap();
    std::fs::write(dir.join("bundle.pem"), bundle_pem).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
        .arg(dir.join("bundle.pem"))
        .arg("-untrusted")
        .arg(dir.join("inter.pem"))
        .arg(dir.join("leaf.pem"))
        .output()
        .expect("openssl is installed");
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

#[test]
fn minted_svid_passes_the_spiffe_crate_leaf_rules_and_openssl_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_init(&params(dir.path(), KeyType::EcP256), &SystemClock).unwrap();
    let svid = mint(&ca, "spiffe://example.org/ns/demo/sa/backend");
    let chain = pem_certs(&svid.cert_chain_pem).unwrap();
    let key_der = x509_parser::pem::parse_x509_pem(svid.private_key_pem.as_bytes())
        .unwrap()
        .1
        .contents;
    let parsed = spiffe::X509Svid::parse_from_der(&chain.concat(), &key_der)
        .expect("the spiffe crate accepts the SVID");
    assert_eq!(
        parsed.spiffe_id().to_string(),
        "spiffe://example.org/ns/demo/sa/backend"
    );
    assert!(openssl_verifies(dir.path(), &svid, &ca.bundle().to_pem()));
}

#[test]
fn every_key_type_makes_a_ca_that_openssl_trusts() {
    for key_type in [KeyType::EcP384, KeyType::Rsa2048] {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_init(&params(dir.path(), key_type), &SystemClock).unwrap();
        let svid = mint(&ca, "spiffe://example.org/x");
        assert!(
            openssl_verifies(dir.path(), &svid, &ca.bundle().to_pem()),
            "{key_type}"
        );
    }
}

#[test]
fn ca_certificate_is_a_spiffe_signing_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_init(&params(dir.path(), KeyType::EcP256), &SystemClock).unwrap();
    let der = pem_certs(ca.certificate_pem()).unwrap().remove(0);
    let cert = parse_cert(&der).unwrap();
    assert!(cert.is_ca());
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        format!("{:?}", san.general_names),
        "[URI(\"spiffe://example.org\")]"
    );
}

#[test]
fn leaf_has_exactly_the_svid_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_init(&params(dir.path(), KeyType::EcP256), &SystemClock).unwrap();
    let svid = mint(&ca, "spiffe://example.org/a/b");
    let der = pem_certs(&svid.cert_chain_pem).unwrap().remove(0);
    let cert = parse_cert(&der).unwrap();
    assert!(!cert.is_ca());
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical);
    assert!(ku.value.digital_signature() && !ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(cert.raw_serial().len() >= 8);
    let sans = cert.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(sans.general_names.len(), 1);
}

#[test]
fn restart_reuses_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let p = params(dir.path(), KeyType::EcP256);
    let first = Ca::load_or_init(&p, &SystemClock).unwrap();
    let second = Ca::load_or_init(&p, &SystemClock).unwrap();
    assert_eq!(first.bundle(), second.bundle());
    let svid = mint(&second, "spiffe://example.org/x");
    assert!(openssl_verifies(
        dir.path(),
        &svid,
        &first.bundle().to_pem()
    ));
}

#[test]
fn state_from_another_trust_domain_or_key_type_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let p = params(dir.path(), KeyType::EcP256);
    Ca::load_or_init(&p, &SystemClock).unwrap();
    let before = std::fs::read(p.state_dir.join(STATE_FILE)).unwrap();
    let mut other_td = p.clone();
    other_td.trust_domain = "other.org".parse().unwrap();
    let err = Ca::load_or_init(&other_td, &SystemClock).unwrap_err();
    assert!(
        err.to_string()
            .contains("belongs to trust domain `example.org`"),
        "{err}"
    );
    let mut other_key = p.clone();
    other_key.key_type = KeyType::EcP384;
    let err = Ca::load_or_init(&other_key, &SystemClock).unwrap_err();
    assert!(err.to_string().contains("ec-p256"), "{err}");
    assert_eq!(before, std::fs::read(p.state_dir.join(STATE_FILE)).unwrap());
}

#[test]
fn mismatched_key_in_state_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = params(dir.path(), KeyType::EcP256);
    Ca::load_or_init(&p, &SystemClock).unwrap();
    let path = p.state_dir.join(STATE_FILE);
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["current"]["key_pem"] = KeyType::EcP256.generate().unwrap().serialize_pem().into();
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
    let err = Ca::load_or_init(&p, &SystemClock).unwrap_err();
    assert!(
        err.to_string().contains("does not match the CA key"),
        "{err}"
    );
}

#[test]
fn svid_lifetime_never_passes_the_ca_not_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = params(dir.path(), KeyType::EcP256);
    p.ttl = Duration::from_secs(600);
    let now = SystemTime::now();
    let ca = Ca::load_or_init(&p, &FixedClock(now)).unwrap();
    let svid = ca
        .mint(
            &SvidParams {
                id: "spiffe://example.org/x".parse().unwrap(),
                ttl: Duration::from_secs(3600),
            },
            &FixedClock(now),
        )
        .unwrap();
    assert!(svid.not_after <= ca.not_after());
}

#[test]
fn expired_ca_is_reported_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let p = params(dir.path(), KeyType::EcP256);
    Ca::load_or_init(&p, &SystemClock).unwrap();
    let later = FixedClock(SystemTime::now() + Duration::from_secs(48 * 3600));
    let err = Ca::load_or_init(&p, &later).unwrap_err();
    assert!(matches!(err, CaError::Expired { .. }), "{err}");
}

#[test]
fn foreign_ids_are_not_minted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_init(&params(dir.path(), KeyType::EcP256), &SystemClock).unwrap();
    let id: SpiffeId = "spiffe://evil.org/x".parse().unwrap();
    let err = ca
        .mint(
            &SvidParams {
                id,
                ttl: Duration::from_secs(60),
            },
            &SystemClock,
        )
        .unwrap_err();
    assert!(matches!(err, CaError::ForeignId { .. }));
}

#[test]
fn a_leaf_for_the_trust_domain_id_itself_is_not_minted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_init(&params(dir.path(), KeyType::EcP256), &SystemClock).unwrap();
    let id: SpiffeId = "spiffe://example.org".parse().unwrap();
    let params = SvidParams {
        id,
        ttl: Duration::from_secs(60),
    };
    let err = ca.mint(&params, &SystemClock).unwrap_err();
    assert!(matches!(err, CaError::LeafWithoutPath { .. }), "{err}");
}

/// Write an upstream root (cert + PKCS#8 key) made with openssl, as an operator would.
pub(crate) fn openssl_root(dir: &Path) -> UpstreamCa {
    let cert = dir.join("root.pem");
    let key = dir.join("root.key");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/O=Upstream/CN=Upstream Root",
        ])
        .args([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    UpstreamCa { cert, key }
}

#[test]
fn upstream_signed_intermediate_chains_to_the_upstream_root() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = params(dir.path(), KeyType::EcP256);
    p.upstream = Some(openssl_root(dir.path()));
    let ca = Ca::load_or_init(&p, &SystemClock).unwrap();
    let bundle = ca.bundle().to_pem();
    assert_eq!(
        bundle,
        std::fs::read_to_string(dir.path().join("root.pem"))
            .unwrap()
            .replace("\r", "")
    );
    let svid = mint(&ca, "spiffe://example.org/db");
    assert_eq!(
        pem_certs(&svid.cert_chain_pem).unwrap().len(),
        2,
        "leaf + intermediate"
    );
    assert!(openssl_verifies(dir.path(), &svid, &bundle));
    // A second replica (its own state dir) gets its own intermediate under the same root.
    let mut p2 = p.clone();
    p2.state_dir = dir.path().join("state2");
    let ca2 = Ca::load_or_init(&p2, &SystemClock).unwrap();
    assert_ne!(ca.certificate_pem(), ca2.certificate_pem());
    assert!(openssl_verifies(
        dir.path(),
        &mint(&ca2, "spiffe://example.org/db"),
        &bundle
    ));
}

#[test]
fn a_state_dir_signed_by_another_upstream_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = params(dir.path(), KeyType::EcP256);
    p.upstream = Some(openssl_root(dir.path()));
    Ca::load_or_init(&p, &SystemClock).unwrap();
    let other = tempfile::tempdir().unwrap();
    p.upstream = Some(openssl_root(other.path()));
    let err = Ca::load_or_init(&p, &SystemClock).unwrap_err();
    assert!(
        err.to_string().contains("not signed by the upstream CA"),
        "{err}"
    );
}

#[test]
fn upstream_key_in_the_wrong_format_gets_a_conversion_hint() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = openssl_root(dir.path());
    let sec1 = dir.path().join("root-sec1.key");
    let out = Command::new("openssl")
        .args(["ec", "-in"])
        .arg(&up.key)
        .arg("-out")
        .arg(&sec1)
        .output()
        .unwrap();
    assert!(out.status.success());
    up.key = sec1;
    let mut p = params(dir.path(), KeyType::EcP256);
    p.upstream = Some(up);
    let err = Ca::load_or_init(&p, &SystemClock).unwrap_err();
    assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
    assert!(
        !p.state_dir.join(STATE_FILE).exists(),
        "nothing half-written"
    );
}

#[test]
fn jwks_bundle_has_the_spiffe_fields() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_init(&params(dir.path(), KeyType::EcP256), &SystemClock).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&ca.bundle().to_jwks_json()).unwrap();
    assert_eq!(doc["keys"][0]["use"], "x509-svid");
    assert_eq!(doc["keys"][0]["kty"], "EC");
    assert_eq!(doc["keys"][0]["crv"], "P-256");
    assert_eq!(doc["keys"][0]["x5c"].as_array().unwrap().len(), 1);
    assert_eq!(doc["spiffe_sequence"], 1);
    assert!(doc["spiffe_refresh_hint"].as_u64().is_some());
}

#[test]
fn an_expired_ca_refuses_to_mint_instead_of_handing_out_an_expired_svid() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = params(dir.path(), KeyType::EcP256);
    p.ttl = Duration::from_secs(600);
    let now = SystemTime::now();
    let ca = Ca::load_or_init(&p, &FixedClock(now)).unwrap();
    let svid_params = SvidParams {
        id: "spiffe://example.org/x".parse().unwrap(),
        ttl: Duration::from_secs(60),
    };
    let last = ca.not_after() - Duration::from_secs(1);
    let svid = ca.mint(&svid_params, &FixedClock(last)).unwrap();
    assert!(
        svid.not_after > last,
        "a minted SVID is always valid a while"
    );
    for t in [ca.not_after(), ca.not_after() + Duration::from_secs(3600)] {
        let err = ca.mint(&svid_params, &FixedClock(t)).unwrap_err();
        assert!(matches!(err, CaError::CaExpired { .. }), "{err}");
        assert!(err.to_string().contains("expired"), "{err}");
    }
}
