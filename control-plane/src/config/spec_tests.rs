//! Inputs that once validated and then broke later (issue 15), each refused at its
//! `file:line:col` with a hint: trust domains that are not host names, lifetimes out of
//! bounds, leaf IDs without a path, upstream CAs that cannot work. Plus the loader under
//! arbitrary input: no panic.

use std::fs;
use std::path::Path;

use proptest::prelude::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use super::tests::{edit, errors, line_of, sample};
use super::*;

/// The one error of a config with `warden.yaml`'s `from` replaced by `to`, checked to sit
/// on the line of `needle` with a hint.
fn main_error(from: &str, to: &str, needle: &str) -> Diagnostic {
    let dir = sample();
    let f = edit(dir.path(), MAIN_FILE, from, to);
    let errs = errors(dir.path());
    assert_eq!(errs.len(), 1, "{to}: {errs:?}");
    let e = errs.into_iter().next().unwrap();
    assert_eq!((e.line, e.file.clone()), (line_of(&f, needle), f), "{to}");
    assert!(e.column > 0 && e.hint.is_some(), "{e}");
    e
}

#[test]
fn trust_domains_that_are_not_host_names_are_refused_with_a_hint() {
    let long_label = "a".repeat(64);
    let long_total = vec!["a".repeat(60); 4].join(".");
    let cases = [
        "example..org",
        ".x",
        "x.",
        "a-.org",
        "a_b.org",
        long_label.as_str(),
        // Valid alone (239 bytes), but `warden-control-plane.` makes it 260.
        long_total.as_str(),
    ];
    for td in cases {
        let e = main_error(
            "trust_domain: example.org",
            &format!("trust_domain: \"{td}\""),
            "trust_domain",
        );
        assert!(e.message.contains("trust domain"), "{td}: {e}");
        assert!(e.hint.as_deref().unwrap().contains("host name"), "{e}");
    }
}

#[test]
fn the_derived_server_name_matches_the_xds_server_certificate() {
    let td: TrustDomain = "example.org".parse().unwrap();
    assert_eq!(
        validate::control_plane_host(&td),
        crate::xds::server::tls::control_plane_dns_name(&td)
    );
}

#[test]
fn lifetimes_outside_the_shared_bounds_are_refused() {
    for (from, to, needle, want) in [
        ("ttl: 24h", "ttl: 87600000h", "ttl:", "maximum"),
        ("ttl: 24h", "ttl: 9223372036854775807s", "ttl:", "maximum"),
        ("svid_ttl: 1h", "svid_ttl: 9s", "svid_ttl", "minimum 10s"),
        ("svid_ttl: 1h", "svid_ttl: 0s", "svid_ttl", "minimum 10s"),
    ] {
        let e = main_error(from, to, needle);
        assert!(e.message.contains(want), "{to}: {e}");
    }
}

#[test]
fn svid_ttl_above_a_sixth_of_the_ca_ttl_is_a_warning_not_an_error() {
    let dir = sample();
    let f = edit(dir.path(), MAIN_FILE, "ttl: 24h", "ttl: 2h");
    let cfg = load(dir.path()).unwrap();
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    let w = &cfg.warnings[0];
    assert!(w.is_warning());
    assert_eq!(w.line, line_of(&f, "svid_ttl"));
    assert!(
        w.to_string()
            .contains(": warning: svid_ttl 1h is more than 1/6"),
        "{w}"
    );
    assert!(w.hint.as_deref().unwrap().contains("20m"), "{w}");
    // The pair once accepted by validate and refused by mint: one set of bounds now, so
    // both accept it, with the warning.
    edit(dir.path(), MAIN_FILE, "ttl: 2h", "ttl: 30s");
    edit(dir.path(), MAIN_FILE, "svid_ttl: 1h", "svid_ttl: 10s");
    let cfg = load(dir.path()).unwrap();
    assert!(
        cfg.warnings[0].message.contains("svid_ttl 10s"),
        "{:?}",
        cfg.warnings
    );
    // 1h under a 24h CA is within SPIRE's ratio: no warning.
    assert!(load(sample().path()).unwrap().warnings.is_empty());
}

#[test]
fn a_workload_id_without_a_path_is_refused() {
    let dir = sample();
    let f = edit(
        dir.path(),
        "workloads/backend.yaml",
        "spiffe_id: spiffe://example.org/ns/demo/sa/backend",
        "spiffe_id: spiffe://example.org",
    );
    let errs = errors(dir.path());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, line_of(&f, "spiffe_id"));
    assert!(errs[0].message.contains("needs a path"), "{}", errs[0]);
}

/// A self-signed upstream root written into `dir` as up.pem / up.key.
fn write_root(dir: &Path, pathlen: Option<u8>, key_cert_sign: bool) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "Upstream Root");
    p.is_ca = IsCa::Ca(match pathlen {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = if key_cert_sign {
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    fs::write(dir.join("up.pem"), p.self_signed(&key).unwrap().pem()).unwrap();
    fs::write(dir.join("up.key"), key.serialize_pem()).unwrap();
}

#[test]
fn an_upstream_ca_that_cannot_work_is_refused_at_validate_without_writing() {
    let dir = sample();
    let f = edit(
        dir.path(),
        MAIN_FILE,
        "  state_dir: .warden",
        "  state_dir: .warden\n  upstream: { cert: up.pem, key: up.key }",
    );
    write_root(dir.path(), None, true);
    assert!(load(dir.path()).is_ok());
    for (pathlen, kcs, want) in [
        (Some(0), true, "pathLenConstraint 0"),
        (None, false, "without keyCertSign"),
    ] {
        write_root(dir.path(), pathlen, kcs);
        let errs = errors(dir.path());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, line_of(&f, "upstream"));
        assert!(errs[0].message.contains(want), "{}", errs[0]);
        assert!(errs[0].hint.is_some());
    }
    assert!(!dir.path().join(".warden").exists(), "validate wrote state");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Arbitrary text in warden.yaml and a workload file: diagnostics, never a panic.
    #[test]
    fn the_loader_never_panics(main in "\\PC{0,200}", workload in "[a-z_:{}\\[\\] \n0-9./-]{0,200}", td in "\\PC{0,80}", ttl in "[0-9smhd]{0,25}") {
        let dir = sample();
        fs::write(dir.path().join("workloads/extra.yaml"), &workload).unwrap();
        let _ = load(dir.path());
        let text = fs::read_to_string(dir.path().join(MAIN_FILE)).unwrap();
        let text = text
            .replace("trust_domain: example.org", &format!("trust_domain: {td:?}"))
            .replace("svid_ttl: 1h", &format!("svid_ttl: \"{ttl}\""));
        fs::write(dir.path().join(MAIN_FILE), text).unwrap();
        let _ = load(dir.path());
        fs::write(dir.path().join(MAIN_FILE), &main).unwrap();
        let _ = load(dir.path());
    }
}
