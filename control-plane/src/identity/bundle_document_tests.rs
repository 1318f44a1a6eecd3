use std::time::Duration;

use super::*;
use crate::identity::{Ca, CaParams, SystemClock};

fn td(s: &str) -> TrustDomain {
    s.parse().unwrap()
}

fn own_bundle() -> (TrustBundle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let params = CaParams {
        trust_domain: td("b.test"),
        key_type: crate::identity::KeyType::EcP256,
        ttl: Duration::from_secs(24 * 3600),
        state_dir: dir.path().to_path_buf(),
        upstream: None,
    };
    let ca = Ca::load_or_init(&params, &SystemClock).unwrap();
    (ca.bundle(), dir)
}

#[test]
fn the_bundle_warden_serves_parses_back_to_the_same_authorities_sequence_and_hint() {
    let (b, _dir) = own_bundle();
    let text = b.to_spiffe_json(Duration::from_secs(42), &[]);
    let parsed = parse(&td("b.test"), text.as_bytes()).unwrap();
    assert_eq!(parsed.bundle, b);
    assert_eq!(parsed.refresh_hint, Some(Duration::from_secs(42)));
    assert!(parsed.jwt_keys.is_empty());
    assert!(parsed.expires.is_some());
}

#[test]
fn keys_with_an_unknown_use_are_ignored_and_jwt_keys_are_kept() {
    let (b, _dir) = own_bundle();
    let mut doc: Value = serde_json::from_str(&b.to_jwks_json()).unwrap();
    let keys = doc["keys"].as_array_mut().unwrap();
    keys.push(serde_json::json!({"use": "future-svid", "kty": "OKP"}));
    keys.push(serde_json::json!({"use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256", "x": "AA", "y": "AA"}));
    let parsed = parse(&td("b.test"), doc.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.bundle.x509_authorities_der.len(), 1);
    assert_eq!(parsed.jwt_keys.len(), 1);
    assert!(parsed.jwt_jwks().contains("\"kid\":\"k1\""));
}

#[test]
fn malformed_documents_are_refused_with_the_reason() {
    let (b, _dir) = own_bundle();
    let good: Value = serde_json::from_str(&b.to_jwks_json()).unwrap();
    let x5c = good["keys"][0]["x5c"][0].clone();
    let cases: Vec<(&str, Value)> = vec![
        ("not an object", serde_json::json!([1, 2])),
        ("no keys", serde_json::json!({"spiffe_sequence": 1})),
        (
            "two certificates",
            serde_json::json!({"keys": [{"use": "x509-svid", "x5c": [x5c, x5c]}]}),
        ),
        (
            "bad base64",
            serde_json::json!({"keys": [{"use": "x509-svid", "x5c": ["!!"]}]}),
        ),
        (
            "not a certificate",
            serde_json::json!({"keys": [{"use": "x509-svid", "x5c": ["AAAA"]}]}),
        ),
        (
            "jwt key without kid",
            serde_json::json!({"keys": [{"use": "x509-svid", "x5c": [x5c]}, {"use": "jwt-svid", "kty": "EC"}]}),
        ),
        (
            "negative sequence",
            serde_json::json!({"keys": [{"use": "x509-svid", "x5c": [x5c]}], "spiffe_sequence": -1}),
        ),
        ("no x509 key", serde_json::json!({"keys": []})),
    ];
    for (what, doc) in cases {
        assert!(
            parse(&td("b.test"), doc.to_string().as_bytes()).is_err(),
            "{what} was accepted"
        );
    }
    assert!(parse(&td("b.test"), b"\xff\xfe garbage").is_err());
}

#[test]
fn huge_documents_and_too_many_keys_are_refused_before_parsing_keys() {
    let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
    assert_eq!(
        parse(&td("b.test"), &big),
        Err(DocumentError::TooLarge(MAX_DOCUMENT_BYTES + 1))
    );
    let keys: Vec<Value> = (0..=MAX_KEYS)
        .map(|_| serde_json::json!({"use": "x"}))
        .collect();
    let doc = serde_json::json!({ "keys": keys }).to_string();
    assert_eq!(
        parse(&td("b.test"), doc.as_bytes()),
        Err(DocumentError::TooManyKeys(MAX_KEYS + 1))
    );
}

#[test]
fn a_zero_refresh_hint_counts_as_none() {
    let (b, _dir) = own_bundle();
    let mut doc: Value = serde_json::from_str(&b.to_jwks_json()).unwrap();
    doc["spiffe_refresh_hint"] = 0.into();
    let parsed = parse(&td("b.test"), doc.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.refresh_hint, None);
}
