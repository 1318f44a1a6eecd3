//! Unit tests of the parent module (kept apart so that module reads in one sitting).

use super::*;

fn json(v: &Value) -> serde_json::Value {
    serde_json::from_str(&v.to_json_str().unwrap_or_default()).unwrap_or_default()
}

fn request(peer: Peer, path: &str, extra: &[(&str, &str)]) -> RequestAttributes {
    let mut headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "backend".to_string()),
        (":scheme".to_string(), "https".to_string()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    RequestAttributes::from_headers(peer, headers)
}

#[test]
fn verified_peer_fills_both_principal_fields() {
    let peer = Peer::from_connection(true, Some("spiffe://example.org/ns/demo/sa/frontend"));
    let input = json(&request(peer, "/a", &[]).to_input("spiffe://example.org/b"));
    assert_eq!(
        input["attributes"]["source"]["principal"],
        "spiffe://example.org/ns/demo/sa/frontend"
    );
    assert_eq!(
        input["source_principal"],
        "spiffe://example.org/ns/demo/sa/frontend"
    );
    assert_eq!(
        input["attributes"]["destination"]["principal"],
        "spiffe://example.org/b"
    );
    assert_eq!(input["attributes"]["request"]["http"]["method"], "GET");
    assert_eq!(input["attributes"]["request"]["http"]["host"], "backend");
}

#[test]
fn unverified_or_non_spiffe_peer_has_no_principal() {
    for peer in [
        Peer::from_connection(false, Some("spiffe://example.org/x")),
        Peer::from_connection(true, Some("https://example.org/x")),
        Peer::from_connection(true, Some("spiffe://")),
        Peer::from_connection(true, None),
    ] {
        let input = json(&request(peer, "/", &[]).to_input(""));
        assert!(input["attributes"]["source"].get("principal").is_none());
        assert!(input.get("source_principal").is_none());
    }
}

#[test]
fn forged_identity_headers_are_removed_from_the_input() {
    let input = json(
        &request(
            Peer::None,
            "/",
            &[
                ("x-spiffe-id", "spiffe://example.org/admin"),
                ("x-forwarded-client-cert", "URI=spiffe://example.org/admin"),
                ("x-other", "kept"),
            ],
        )
        .to_input(""),
    );
    let headers = &input["attributes"]["request"]["http"]["headers"];
    assert!(headers.get("x-spiffe-id").is_none());
    assert!(headers.get("x-forwarded-client-cert").is_none());
    assert_eq!(headers["x-other"], "kept");
}

#[test]
fn parsed_path_and_query_match_opa_envoy() {
    let input = json(&request(Peer::None, "/api/v1/a%20b?x=1&x=2&y=a+b&flag", &[]).to_input(""));
    assert_eq!(
        input["parsed_path"],
        serde_json::json!(["api", "v1", "a b"])
    );
    assert_eq!(
        input["parsed_query"],
        serde_json::json!({"x": ["1", "2"], "y": ["a b"], "flag": [""]})
    );
    let root = json(&request(Peer::None, "/", &[]).to_input(""));
    assert_eq!(root["parsed_path"], serde_json::json!([""]));
    assert_eq!(root["parsed_query"], serde_json::json!({}));
}

#[test]
fn repeated_headers_are_joined_with_a_comma() {
    let input = json(&request(Peer::None, "/", &[("x-a", "1"), ("X-A", "2")]).to_input(""));
    assert_eq!(
        input["attributes"]["request"]["http"]["headers"]["x-a"],
        "1,2"
    );
}

#[test]
fn a_lean_shape_leaves_out_what_the_policy_never_names() {
    let needs = InputNeeds::scan(["allow if input.attributes.request.http.method == \"GET\""]);
    assert_eq!(needs, InputNeeds::NONE);
    let peer = Peer::from_connection(true, Some("spiffe://example.org/a"));
    let request = request(peer, "/x?y=1", &[("x-a", "1")]);
    let lean = json(&InputShape::new("spiffe://example.org/b", needs).build(&request));
    let http = &lean["attributes"]["request"]["http"];
    assert_eq!(http["method"], "GET");
    assert_eq!(http["path"], "/x?y=1");
    for absent in ["headers", "host", "scheme"] {
        assert!(http.get(absent).is_none(), "{absent}: {lean}");
    }
    assert!(lean.get("parsed_path").is_none() && lean.get("parsed_query").is_none());
    assert_eq!(lean["source_principal"], "spiffe://example.org/a");
    assert_eq!(
        lean["attributes"]["destination"]["principal"],
        "spiffe://example.org/b"
    );
    // The full shape has everything.
    let full = json(&request.to_input("spiffe://example.org/b"));
    assert_eq!(full["attributes"]["request"]["http"]["headers"]["x-a"], "1");
    assert_eq!(full["parsed_query"]["y"], serde_json::json!(["1"]));
}

#[test]
fn a_path_go_cannot_parse_or_with_parameters_is_refused() {
    let check = |path: &str| request(Peer::None, path, &[]).check();
    assert_eq!(check("/api/items?a=1;b"), Ok(()));
    assert!(matches!(check("/a%zz"), Err(RequestError::Url(_))));
    assert!(matches!(check("/files/100%"), Err(RequestError::Url(_))));
    assert_eq!(check("/admin;x=1"), Err(RequestError::PathParameters));
    assert_eq!(check("/a;/b"), Err(RequestError::PathParameters));
}

#[test]
fn non_utf8_header_bytes_become_replacement_characters() {
    let headers = vec![
        (":path".to_string(), b"/x".to_vec()),
        ("x-a".to_string(), vec![0xc0, 0xa7]),
        ("x-b".to_string(), b"ok".to_vec()),
    ];
    let request = RequestAttributes::from_raw_headers(Peer::None, headers);
    let input = json(&request.to_input(""));
    let headers = &input["attributes"]["request"]["http"]["headers"];
    assert_eq!(headers["x-a"], "\u{fffd}\u{fffd}");
    assert_eq!(headers["x-b"], "ok");
}

#[test]
fn addresses_time_and_request_id_have_the_opa_envoy_shape() {
    let mut request = request(Peer::None, "/", &[("x-request-id", "abc")]);
    request.source_address = Some("127.0.0.1:5000".into());
    request.destination_address = Some("[::1]:8443".into());
    request.time_micros = Some(1_700_000_000_123_456);
    let input = json(&request.to_input(""));
    let attributes = &input["attributes"];
    assert_eq!(
        attributes["source"]["address"],
        serde_json::json!({"socketAddress": {"address": "127.0.0.1", "portValue": 5000}})
    );
    assert_eq!(
        attributes["destination"]["address"]["socketAddress"]["address"],
        "::1"
    );
    assert_eq!(attributes["request"]["time"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(attributes["request"]["http"]["id"], "abc");
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
}

#[test]
fn the_principal_is_the_uri_san_byte_for_byte_when_it_is_a_spiffe_id() {
    let id = "spiffe://example.org/ns/Demo-1/sa/front_end.v2";
    let peer = Peer::from_connection(true, Some(id));
    assert_eq!(peer.principal(), Some(id));
    assert_eq!(
        peer.id().map(|i| i.trust_domain().to_string()),
        Some("example.org".into())
    );
    for bad in [
        "spiffe://example.org/a/../b",
        "spiffe://a_b.org/x",
        "spiffe://10.0.0.1/x",
    ] {
        assert_eq!(Peer::from_connection(true, Some(bad)), Peer::None, "{bad}");
    }
}

proptest::proptest! {
    #[test]
    fn a_peer_is_verified_exactly_when_its_uri_san_parses_and_keeps_it_unchanged(
        san in "(spiffe://)?[a-zA-Z0-9._:/%?-]{0,40}",
    ) {
        let peer = Peer::from_connection(true, Some(&san));
        match san.parse::<warden_spiffe::SpiffeId>() {
            Ok(_) => proptest::prop_assert_eq!(peer.principal(), Some(san.as_str())),
            Err(_) => proptest::prop_assert_eq!(peer, Peer::None),
        }
    }
}

#[test]
fn an_oversized_uri_san_is_no_identity() {
    let at_limit = format!("spiffe://example.org/{}", "a".repeat(2048 - 21));
    assert!(Peer::from_connection(true, Some(&at_limit))
        .principal()
        .is_some());
    let over = format!("{at_limit}a");
    assert_eq!(Peer::from_connection(true, Some(&over)), Peer::None);
    let huge = format!("spiffe://example.org/{}", "a/".repeat(500_000));
    assert_eq!(Peer::from_connection(true, Some(&huge)), Peer::None);
}
