//! Edge cases of service-account token validation: each attack or mistake is refused
//! with its own reason. Keys are generated per test.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

use super::*;

const NOW: u64 = 1_800_000_000;

struct Issuer {
    pkcs8: Vec<u8>,
    jwk: serde_json::Value,
}

fn issuer(kid: &str) -> Issuer {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    });
    Issuer {
        pkcs8: pkcs8.as_ref().to_vec(),
        jwk,
    }
}

fn verifier(keys: &[&Issuer]) -> K8sVerifier {
    let set = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
    K8sVerifier::new(
        "https://kubernetes.default.svc".into(),
        "warden".into(),
        K8sVerifier::parse_jwks(&set.to_string()).unwrap(),
    )
}

fn good_claims() -> serde_json::Value {
    json!({
        "iss": "https://kubernetes.default.svc",
        "aud": ["warden"],
        "sub": "system:serviceaccount:demo:backend",
        "exp": NOW + 600,
        "nbf": NOW - 10,
        "iat": NOW - 10,
        "kubernetes.io": { "namespace": "demo", "serviceaccount": { "name": "backend", "uid": "u-1" } }
    })
}

fn sign(iss: &Issuer, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &EncodingKey::from_ec_der(&iss.pkcs8)).unwrap()
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn valid_token_proves_its_service_account() {
    let k = issuer("k1");
    let sa = verifier(&[&k])
        .verify(&sign(&k, Some("k1"), &good_claims()), at(NOW))
        .unwrap();
    assert_eq!(
        sa,
        ServiceAccount {
            namespace: "demo".into(),
            name: "backend".into(),
            pod: None,
            node: None,
        }
    );
}

#[test]
fn alg_none_is_refused() {
    let k = issuer("k1");
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(good_claims().to_string());
    let token = format!("{header}.{body}.");
    let err = verifier(&[&k]).verify(&token, at(NOW)).unwrap_err();
    assert_eq!(err, K8sError::Algorithm("none".into()));
}

#[test]
fn hmac_signed_with_the_public_key_is_refused() {
    let k = issuer("k1");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let secret = serde_json::to_vec(&k.jwk).unwrap();
    let token = encode(&header, &good_claims(), &EncodingKey::from_secret(&secret)).unwrap();
    let err = verifier(&[&k]).verify(&token, at(NOW)).unwrap_err();
    assert!(matches!(err, K8sError::Algorithm(a) if a == "HS256"));
}

#[test]
fn rsa_alg_against_an_ec_key_is_refused() {
    let k = issuer("k1");
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1"}"#);
    let body = URL_SAFE_NO_PAD.encode(good_claims().to_string());
    let token = format!("{header}.{body}.AAAA");
    assert_eq!(
        verifier(&[&k]).verify(&token, at(NOW)).unwrap_err(),
        K8sError::KeyMismatch("RS256".into())
    );
}

#[test]
fn token_signed_by_another_key_is_refused() {
    let trusted = issuer("k1");
    let attacker = issuer("k1");
    let err = verifier(&[&trusted])
        .verify(&sign(&attacker, Some("k1"), &good_claims()), at(NOW))
        .unwrap_err();
    assert!(matches!(err, K8sError::Invalid(_)), "{err}");
}

#[test]
fn unknown_kid_is_refused() {
    let k = issuer("k1");
    let err = verifier(&[&k])
        .verify(&sign(&k, Some("other"), &good_claims()), at(NOW))
        .unwrap_err();
    assert_eq!(err, K8sError::UnknownKey);
}

#[test]
fn missing_claims_are_named() {
    let k = issuer("k1");
    for claim in ["iss", "aud", "exp"] {
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove(claim);
        let err = verifier(&[&k])
            .verify(&sign(&k, Some("k1"), &c), at(NOW))
            .unwrap_err();
        assert!(
            matches!(err, K8sError::MissingClaim(n) if n == claim),
            "{claim}: {err}"
        );
    }
}

#[test]
fn wrong_audience_or_issuer_is_refused() {
    let k = issuer("k1");
    let mut c = good_claims();
    c["aud"] = json!("vault");
    assert_eq!(
        verifier(&[&k])
            .verify(&sign(&k, Some("k1"), &c), at(NOW))
            .unwrap_err(),
        K8sError::WrongAudience("warden".into())
    );
    let mut c = good_claims();
    c["iss"] = json!("https://evil.example");
    assert!(matches!(
        verifier(&[&k])
            .verify(&sign(&k, Some("k1"), &c), at(NOW))
            .unwrap_err(),
        K8sError::WrongIssuer(_)
    ));
}

#[test]
fn expiry_and_not_before_allow_only_small_clock_skew() {
    let k = issuer("k1");
    let v = verifier(&[&k]);
    let token = sign(&k, Some("k1"), &good_claims());
    assert!(
        v.verify(&token, at(NOW + 600 + 20)).is_ok(),
        "within leeway"
    );
    assert_eq!(
        v.verify(&token, at(NOW + 600 + 31)).unwrap_err(),
        K8sError::Expired
    );
    let mut c = good_claims();
    c["nbf"] = json!(NOW + 60);
    let early = sign(&k, Some("k1"), &c);
    assert_eq!(
        v.verify(&early, at(NOW)).unwrap_err(),
        K8sError::NotYetValid
    );
    assert!(v.verify(&early, at(NOW + 40)).is_ok());
}

#[test]
fn subject_is_used_when_the_kubernetes_claim_is_absent() {
    let k = issuer("k1");
    let mut c = good_claims();
    c.as_object_mut().unwrap().remove("kubernetes.io");
    let sa = verifier(&[&k])
        .verify(&sign(&k, None, &c), at(NOW))
        .unwrap();
    assert_eq!(sa.name, "backend");
    c["sub"] = json!("alice");
    assert_eq!(
        verifier(&[&k])
            .verify(&sign(&k, None, &c), at(NOW))
            .unwrap_err(),
        K8sError::NoServiceAccount
    );
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let k = issuer("k1");
    for t in ["", "a", "a.b", "a.b.c", "....", "eyJhbGciOiJFUzI1NiJ9.e30"] {
        assert!(verifier(&[&k]).verify(t, at(NOW)).is_err(), "{t}");
    }
}

#[test]
fn a_payload_swapped_under_a_valid_signature_is_refused() {
    let k = issuer("k1");
    let token = sign(&k, Some("k1"), &good_claims());
    let mut c = good_claims();
    c["kubernetes.io"]["serviceaccount"]["name"] = json!("frontend");
    let forged_body = URL_SAFE_NO_PAD.encode(c.to_string());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{forged_body}.{}", parts[0], parts[2]);
    let err = verifier(&[&k]).verify(&forged, at(NOW)).unwrap_err();
    assert!(matches!(err, K8sError::Invalid(_)), "{err}");
}

#[test]
fn alg_none_in_any_spelling_or_without_a_signature_is_refused() {
    let k = issuer("k1");
    let body = URL_SAFE_NO_PAD.encode(good_claims().to_string());
    for alg in ["None", "NONE", "nOnE", ""] {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#));
        for sig in ["", "AAAA"] {
            let token = format!("{header}.{body}.{sig}");
            assert!(
                verifier(&[&k]).verify(&token, at(NOW)).is_err(),
                "alg {alg:?} sig {sig:?}"
            );
        }
    }
    // A real ES256 header with the signature stripped.
    let token = sign(&k, Some("k1"), &good_claims());
    let stripped = format!("{}.", token.rsplit_once('.').unwrap().0);
    assert!(verifier(&[&k]).verify(&stripped, at(NOW)).is_err());
}

#[test]
fn without_a_kid_several_issuer_keys_are_ambiguous_and_refused() {
    let (a, b) = (issuer("a"), issuer("b"));
    let token = sign(&a, None, &good_claims());
    assert_eq!(
        verifier(&[&a, &b]).verify(&token, at(NOW)).unwrap_err(),
        K8sError::UnknownKey
    );
    assert!(
        verifier(&[&a]).verify(&token, at(NOW)).is_ok(),
        "one key: no kid needed"
    );
}
