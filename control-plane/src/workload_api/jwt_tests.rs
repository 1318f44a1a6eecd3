use super::*;

const T0: Duration = Duration::from_secs(1_800_000_000);

fn setup() -> (tempfile::TempDir, JwtKey, SpiffeId) {
    let dir = tempfile::tempdir().unwrap();
    let key = JwtKey::generate().unwrap();
    (dir, key, "spiffe://example.org/app".parse().unwrap())
}

fn aud(a: &str) -> Vec<String> {
    vec![a.to_string()]
}

#[test]
fn a_signed_token_validates_with_its_subject_and_claims() {
    let (_d, key, id) = setup();
    let now = UNIX_EPOCH + T0;
    let token = key
        .sign(&id, &aud("db"), now, Duration::from_secs(300))
        .unwrap();
    let v = key
        .validate(&token, "db", now + Duration::from_secs(10))
        .unwrap();
    assert_eq!(v.subject, id);
    assert_eq!(v.claims["exp"], json!(T0.as_secs() + 300));
    assert_eq!(v.claims["iat"], json!(T0.as_secs()));
}

#[test]
fn the_header_names_the_key_published_in_the_jwks() {
    let (_d, key, id) = setup();
    let token = key
        .sign(&id, &aud("db"), UNIX_EPOCH + T0, Duration::from_secs(60))
        .unwrap();
    let header = decode_json(token.split('.').next().unwrap()).unwrap();
    let jwk = key.jwk();
    assert_eq!(header["kid"], jwk["kid"]);
    assert_eq!(jwk["use"], "jwt-svid");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(jwk["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
}

#[test]
fn wrong_audience_expiry_and_tampering_are_rejected() {
    let (_d, key, id) = setup();
    let now = UNIX_EPOCH + T0;
    let token = key
        .sign(&id, &aud("db"), now, Duration::from_secs(300))
        .unwrap();
    assert!(matches!(
        key.validate(&token, "web", now),
        Err(JwtError::Audience(_))
    ));
    assert!(matches!(
        key.validate(&token, "db", now + Duration::from_secs(300)),
        Err(JwtError::Expired)
    ));
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged =
        b64_json(&json!({"sub": "spiffe://example.org/admin", "aud": ["db"], "exp": u64::MAX}));
    parts[1] = &forged;
    assert!(matches!(
        key.validate(&parts.join("."), "db", now),
        Err(JwtError::Signature)
    ));
}

#[test]
fn a_token_from_another_key_is_rejected() {
    let (_d, key, id) = setup();
    let (_d2, other, _) = setup();
    let token = other
        .sign(&id, &aud("db"), UNIX_EPOCH + T0, Duration::from_secs(60))
        .unwrap();
    assert!(matches!(
        key.validate(&token, "db", UNIX_EPOCH + T0),
        Err(JwtError::UnknownKey)
    ));
}

#[test]
fn an_empty_audience_is_refused_when_signing() {
    let (_d, key, id) = setup();
    assert!(matches!(
        key.sign(&id, &[], UNIX_EPOCH + T0, Duration::from_secs(60)),
        Err(JwtError::NoAudience)
    ));
}

#[test]
fn a_key_survives_a_pem_round_trip_with_its_kid() {
    let (_d, key, _) = setup();
    let again = JwtKey::from_pem(&key.to_pem()).unwrap();
    assert_eq!(key.kid(), again.kid());
}
