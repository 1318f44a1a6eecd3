use std::time::UNIX_EPOCH;

use serde_json::json;

use super::*;

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

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
        key.validate(&token, "db", now + Duration::from_secs(300) + CLOCK_SKEW),
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

/// A token with this header and these claims, signed by `key`.
fn raw_token(key: &JwtKey, header: Value, claims: Value) -> String {
    let input = format!("{}.{}", b64_json(&header), b64_json(&claims));
    let sig = key
        .pair
        .sign(&SystemRandom::new(), input.as_bytes())
        .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn check(key: &JwtKey, header: Value, claims: Value) -> Result<Validated, JwtError> {
    key.validate(&raw_token(key, header, claims), "db", UNIX_EPOCH + T0)
}

fn claims_with(extra: Value) -> Value {
    let mut c = json!({"sub": "spiffe://example.org/app", "aud": "db", "exp": T0.as_secs() + 60});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[test]
fn only_jwt_or_jose_is_accepted_as_the_token_type() {
    let (_d, key, _) = setup();
    for (typ, ok) in [
        (json!("JWT"), true),
        (json!("JOSE"), true),
        (json!("foo"), false),
        (json!("jwt+x"), false),
    ] {
        let header = json!({"alg": "ES256", "kid": key.kid(), "typ": typ});
        let got = check(&key, header, claims_with(json!({})));
        assert_eq!(got.is_ok(), ok, "typ {typ}: {got:?}");
        if !ok {
            assert!(matches!(got, Err(JwtError::Type(_))), "{got:?}");
        }
    }
    let no_typ = json!({"alg": "ES256", "kid": key.kid()});
    assert!(check(&key, no_typ, claims_with(json!({}))).is_ok());
}

#[test]
fn nbf_in_the_future_is_refused_with_the_same_skew_as_exp() {
    let (_d, key, _) = setup();
    let header = || json!({"alg": "ES256", "kid": key.kid(), "typ": "JWT"});
    let at = |secs: i64| json!(T0.as_secs() as i64 + secs);
    let skew = CLOCK_SKEW.as_secs() as i64;
    assert!(matches!(
        check(&key, header(), claims_with(json!({"nbf": at(3600)}))),
        Err(JwtError::NotYetValid)
    ));
    assert!(matches!(
        check(&key, header(), claims_with(json!({"nbf": at(skew + 1)}))),
        Err(JwtError::NotYetValid)
    ));
    assert!(check(&key, header(), claims_with(json!({"nbf": at(skew)}))).is_ok());
    assert!(check(&key, header(), claims_with(json!({"nbf": at(-10)}))).is_ok());
    // exp just inside and just outside the same skew.
    assert!(check(&key, header(), claims_with(json!({"exp": at(1 - skew)}))).is_ok());
    assert!(matches!(
        check(&key, header(), claims_with(json!({"exp": at(-skew)}))),
        Err(JwtError::Expired)
    ));
}

#[test]
fn numeric_dates_may_be_any_json_number() {
    let (_d, key, _) = setup();
    let header = || json!({"alg": "ES256", "kid": key.kid()});
    // T0 is 1.8e9; 1.9e9 is a valid NumericDate in the future.
    assert!(check(&key, header(), claims_with(json!({"exp": 1.9e9}))).is_ok());
    assert!(check(
        &key,
        header(),
        claims_with(json!({"exp": T0.as_secs() as f64 + 0.5, "nbf": 1.5e9}))
    )
    .is_ok());
    assert!(matches!(
        check(&key, header(), claims_with(json!({"exp": 1.7e9}))),
        Err(JwtError::Expired)
    ));
    for bad in [json!("1900000000"), json!(null), json!([1]), json!(true)] {
        assert!(
            matches!(
                check(&key, header(), claims_with(json!({"exp": bad}))),
                Err(JwtError::Malformed(_))
            ),
            "exp {bad}"
        );
    }
    let mut no_exp = claims_with(json!({}));
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        check(&key, header(), no_exp),
        Err(JwtError::Malformed(_))
    ));
}

#[test]
fn subjects_without_a_path_and_other_algorithms_are_refused() {
    let (_d, key, _) = setup();
    let header = json!({"alg": "ES256", "kid": key.kid()});
    assert!(matches!(
        check(
            &key,
            header,
            claims_with(json!({"sub": "spiffe://example.org"}))
        ),
        Err(JwtError::Subject(_))
    ));
    let td_id: SpiffeId = "spiffe://example.org".parse().unwrap();
    assert!(matches!(
        key.sign(&td_id, &aud("db"), UNIX_EPOCH + T0, Duration::from_secs(60)),
        Err(JwtError::Subject(_))
    ));
    for alg in ["none", "HS256", "RS256", ""] {
        let header = json!({"alg": alg, "kid": key.kid()});
        assert!(
            matches!(
                check(&key, header, claims_with(json!({}))),
                Err(JwtError::Algorithm(_))
            ),
            "alg {alg}"
        );
    }
}

#[test]
fn a_critical_header_extension_is_refused() {
    let (_d, key, _) = setup();
    for crit in [json!(["exp"]), json!(["x-unknown"]), json!([])] {
        let header = json!({"alg": "ES256", "kid": key.kid(), "crit": crit, "x-unknown": 1});
        let got = check(&key, header, claims_with(json!({})));
        assert!(
            matches!(got, Err(JwtError::Critical)),
            "crit {crit}: {got:?}"
        );
    }
}

#[test]
fn huge_tokens_and_deeply_nested_claims_are_refused_quickly() {
    let (_d, key, _) = setup();
    let header = || json!({"alg": "ES256", "kid": key.kid()});
    let start = std::time::Instant::now();
    let many: Vec<String> = (0..2000).map(|i| format!("audience-{i}")).collect();
    let got = check(&key, header(), claims_with(json!({"aud": many})));
    assert!(matches!(got, Err(JwtError::TooLong)), "{got:?}");
    // Nor does Warden sign one it would refuse.
    let id: SpiffeId = "spiffe://example.org/app".parse().unwrap();
    let signed = key.sign(&id, &many, UNIX_EPOCH + T0, Duration::from_secs(60));
    assert!(matches!(signed, Err(JwtError::TooLong)), "{signed:?}");
    let big = format!("{}.{}.x", "a".repeat(1 << 20), "b".repeat(1 << 20));
    let got = key.validate(&big, "db", UNIX_EPOCH + T0);
    assert!(matches!(got, Err(JwtError::TooLong)), "{got:?}");
    // Nesting beyond serde_json's 128 levels (within the size limit) is malformed.
    let mut claims = claims_with(json!({}));
    let mut nested = json!(1);
    for _ in 0..500 {
        nested = json!([nested]);
    }
    claims["x"] = nested;
    let got = check(&key, header(), claims);
    assert!(matches!(got, Err(JwtError::Malformed(_))), "{got:?}");
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn a_kid_of_another_type_or_an_unknown_kid_is_refused() {
    let (_d, key, _) = setup();
    for kid in [
        json!(7),
        json!(null),
        json!(["k"]),
        json!("not-our-key"),
        json!(""),
    ] {
        let header = json!({"alg": "ES256", "kid": kid});
        let got = check(&key, header, claims_with(json!({})));
        assert!(
            matches!(got, Err(JwtError::UnknownKey | JwtError::Malformed(_))),
            "kid {kid}: {got:?}"
        );
    }
}

proptest::proptest! {
    #[test]
    fn no_token_text_makes_validation_panic(s in "\\PC{0,200}", parts in proptest::collection::vec("[A-Za-z0-9_-]{0,60}", 0..5)) {
        let (_d, key, _) = setup();
        let now = UNIX_EPOCH + T0;
        let _ = key.validate(&s, "db", now);
        let _ = key.validate(&parts.join("."), "db", now);
    }

    #[test]
    fn no_claims_json_makes_validation_panic(exp in proptest::num::f64::ANY, nbf in proptest::num::f64::ANY, sub in "\\PC{0,40}") {
        let (_d, key, _) = setup();
        let header = json!({"alg": "ES256", "kid": key.kid()});
        let claims = json!({"sub": sub, "aud": "db", "exp": exp, "nbf": nbf});
        let _ = check(&key, header, claims);
    }
}

#[test]
fn the_audience_must_be_a_string_or_a_list_of_strings_holding_ours() {
    let (_d, key, _) = setup();
    let header = || json!({"alg": "ES256", "kid": key.kid()});
    for (aud, ok) in [
        (json!("db"), true),
        (json!(["web", "db"]), true),
        (json!("web"), false),
        (json!([]), false),
        (json!([1, "db"]), false),
        (json!({"db": true}), false),
        (json!(null), false),
    ] {
        let got = check(&key, header(), claims_with(json!({"aud": aud})));
        assert_eq!(got.is_ok(), ok, "aud {aud}: {got:?}");
        if !ok {
            assert!(
                matches!(got, Err(JwtError::Audience(_))),
                "aud {aud}: {got:?}"
            );
        }
    }
    let mut no_aud = claims_with(json!({}));
    no_aud.as_object_mut().unwrap().remove("aud");
    assert!(matches!(
        check(&key, header(), no_aud),
        Err(JwtError::Audience(_))
    ));
    let token = key
        .sign(
            &"spiffe://example.org/app".parse().unwrap(),
            &aud("db"),
            UNIX_EPOCH + T0,
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(matches!(
        key.validate(&token, "", UNIX_EPOCH + T0),
        Err(JwtError::Audience(_))
    ));
}
