//! The serving certificate: its names, its conversion for rustls, and in-place swaps.

use std::time::{Duration, SystemTime};

use super::*;
use crate::identity::{CaParams, FixedClock, KeyType};

fn ca(dir: &std::path::Path) -> Ca {
    let params = CaParams {
        trust_domain: "example.org".parse().unwrap(),
        key_type: KeyType::EcP256,
        ttl: Duration::from_secs(24 * 3600),
        state_dir: dir.to_path_buf(),
        upstream: None,
    };
    Ca::load_or_init(&params, &FixedClock(SystemTime::now())).unwrap()
}

#[test]
fn the_control_plane_has_its_own_spiffe_id_and_dns_name() {
    let td: TrustDomain = "example.org".parse().unwrap();
    assert_eq!(
        control_plane_id(&td).as_str(),
        "spiffe://example.org/warden/control-plane"
    );
    assert_eq!(
        control_plane_dns_name(&td),
        "warden-control-plane.example.org"
    );
}

#[test]
fn the_server_svid_carries_both_names_and_loads_into_rustls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(dir.path());
    let svid = mint_server_svid(
        &ca,
        Duration::from_secs(600),
        &FixedClock(SystemTime::now()),
    )
    .unwrap();
    let key = certified_key(&svid).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).unwrap();
    let sans = format!(
        "{:?}",
        leaf.subject_alternative_name().unwrap().unwrap().value
    );
    assert!(
        sans.contains("spiffe://example.org/warden/control-plane"),
        "{sans}"
    );
    assert!(sans.contains("warden-control-plane.example.org"), "{sans}");
    assert!(
        server_config(Arc::new(ServerCert::new(key)))
            .unwrap()
            .alpn_protocols
            == vec![b"h2".to_vec()]
    );
}

#[test]
fn replacing_the_certificate_changes_what_new_handshakes_get() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(dir.path());
    let clock = FixedClock(SystemTime::now());
    let a =
        certified_key(&mint_server_svid(&ca, Duration::from_secs(600), &clock).unwrap()).unwrap();
    let b =
        certified_key(&mint_server_svid(&ca, Duration::from_secs(600), &clock).unwrap()).unwrap();
    let (leaf_a, leaf_b) = (a.cert[0].clone(), b.cert[0].clone());
    let cert = ServerCert::new(a);
    assert_eq!(cert.current().cert[0], leaf_a);
    cert.replace(b);
    assert_eq!(cert.current().cert[0], leaf_b);
}

#[test]
fn a_chain_without_a_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(dir.path());
    let mut svid = mint_server_svid(
        &ca,
        Duration::from_secs(600),
        &FixedClock(SystemTime::now()),
    )
    .unwrap();
    svid.private_key_pem = zeroize::Zeroizing::new(String::new());
    assert!(matches!(certified_key(&svid), Err(TlsError::Key(_))));
}
