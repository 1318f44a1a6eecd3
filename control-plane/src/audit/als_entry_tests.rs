use std::collections::HashMap;

use prost::Message;
use xds_api::pb::envoy::data::accesslog::v3::tls_properties::certificate_properties::{
    subject_alt_name::San, SubjectAltName,
};
use xds_api::pb::envoy::data::accesslog::v3::tls_properties::CertificateProperties;
use xds_api::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties, HttpResponseProperties,
    TlsProperties,
};
use xds_api::pb::google::protobuf::{Any, BytesValue, UInt32Value};

use super::*;

fn sender() -> Sender {
    Sender {
        destination: "spiffe://t/backend".into(),
        instance: "backend-1".into(),
    }
}

fn entry(state: Option<Any>, code: u32, details: &str, header: Option<&str>) -> HttpAccessLogEntry {
    let mut fs = HashMap::new();
    if let Some(a) = state {
        fs.insert(DECISION_STATE.to_string(), a);
    }
    let mut headers = HashMap::new();
    if let Some(h) = header {
        headers.insert("x-warden-decision-id".to_string(), h.to_string());
    }
    HttpAccessLogEntry {
        common_properties: Some(AccessLogCommon {
            tls_properties: Some(TlsProperties {
                peer_certificate_properties: Some(CertificateProperties {
                    subject_alt_name: vec![SubjectAltName {
                        san: Some(San::Uri("spiffe://t/frontend".into())),
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            filter_state_objects: fs,
            ..Default::default()
        }),
        request: Some(HttpRequestProperties {
            request_method: 1,
            path: "/admin?token=secret".into(),
            authority: "backend".into(),
            request_id: "req-1".into(),
            ..Default::default()
        }),
        response: Some(HttpResponseProperties {
            response_code: Some(UInt32Value { value: code }),
            response_code_details: details.into(),
            response_headers: headers,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn bytes_any(json: &str) -> Any {
    Any {
        type_url: "type.googleapis.com/google.protobuf.BytesValue".into(),
        value: BytesValue {
            value: json.as_bytes().to_vec(),
        }
        .encode_to_vec(),
    }
}

#[test]
fn a_filter_deny_takes_id_reason_and_rule_from_the_record_and_the_destination_from_the_sender() {
    let rec = r#"{"id":"d-1","decision":"deny","reason":"allow is undefined","rule":"data.x.allow","policy_version":"v1","mode":"enforce","eval_us":9}"#;
    let (_, d) = decision(
        &entry(Some(bytes_any(rec)), 403, "", Some("d-1")),
        &sender(),
    )
    .unwrap();
    assert_eq!(d.decision_id, "d-1");
    assert_eq!(d.decision, "deny");
    assert_eq!(d.source, "spiffe://t/frontend");
    assert_eq!(d.destination, "spiffe://t/backend");
    assert_eq!(d.path, "/admin", "the query string is left out");
    assert_eq!(d.method, "GET");
    assert_eq!(d.rules, vec!["data.x.allow".to_string()]);
    assert_eq!(d.engine, "filter");
}

#[test]
fn a_record_wrapped_in_one_more_any_is_read_too() {
    let rec = r#"{"id":"d-2","decision":"allow"}"#;
    let wrapped = Any {
        type_url: "type.googleapis.com/google.protobuf.Any".into(),
        value: bytes_any(rec).encode_to_vec(),
    };
    let (_, d) = decision(&entry(Some(wrapped), 200, "via_upstream", None), &sender()).unwrap();
    assert_eq!(
        (d.decision_id.as_str(), d.decision.as_str()),
        ("d-2", "allow")
    );
}

#[test]
fn a_native_rbac_deny_uses_the_decision_id_header_and_the_details() {
    let e = entry(
        None,
        403,
        "rbac_access_denied_matched_policy[none]",
        Some("req-1"),
    );
    let (_, d) = decision(&e, &sender()).unwrap();
    assert_eq!(d.decision_id, "req-1");
    assert_eq!(d.decision, "deny");
    assert_eq!(d.engine, "native_rbac");
    assert!(d.reason.starts_with("rbac_access_denied"));
}

#[test]
fn entries_that_are_not_decisions_or_carry_garbage_are_skipped() {
    assert!(decision(&entry(None, 400, "http1.codec_error", None), &sender()).is_none());
    let garbage = bytes_any("\u{0}not json");
    assert!(decision(&entry(Some(garbage), 400, "", None), &sender()).is_none());
    let bad_any = Any {
        type_url: "type.googleapis.com/google.protobuf.BytesValue".into(),
        value: vec![0xff, 0xff, 0xff],
    };
    assert!(decision(&entry(Some(bad_any), 400, "", None), &sender()).is_none());
    let odd = bytes_any(r#"{"id":"x","decision":"maybe"}"#);
    assert!(decision(&entry(Some(odd), 200, "", None), &sender()).is_none());
    assert!(decision(&HttpAccessLogEntry::default(), &sender()).is_none());
}
