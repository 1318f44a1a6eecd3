//! What the inbound listener adds so a workload on Envoy's RBAC filter (`crate::rbac`)
//! loses little the Wasm filter gives: an RBAC deny answers `deny_status` with an
//! `x-warden-decision-id` header (Envoy's request id) and Envoy's `RBAC: access denied`
//! body (an HCM local-reply mapper on 403s that only adds a missing id, so the Wasm
//! filter's own replies keep theirs); each RBAC deny is logged as one JSON line on stderr
//! (keyed on the RBAC filter's dynamic metadata);
//! and the app gets a trusted `x-spiffe-id` from the verified peer certificate. On the
//! Wasm path none of these match or change anything (the filter sets the same header).

use xds_api::pb::envoy::config::accesslog::v3::{
    access_log, access_log_filter, comparison_filter, AccessLog, AccessLogFilter, ComparisonFilter,
    MetadataFilter, StatusCodeFilter,
};
use xds_api::pb::envoy::config::core::v3::{
    data_source, header_value_option::HeaderAppendAction, substitution_format_string, DataSource,
    HeaderValue, HeaderValueOption, RuntimeUInt32, SubstitutionFormatString,
};
use xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    LocalReplyConfig, ResponseMapper,
};
use xds_api::pb::envoy::r#type::matcher::v3::{
    metadata_matcher::{path_segment, PathSegment},
    string_matcher, value_matcher, MetadataMatcher, StringMatcher, ValueMatcher,
};
use xds_api::pb::google::protobuf::UInt32Value;

use super::common::any;
use crate::config::PolicySettings;
use crate::rbac::emit::{POLICY_KEY, RESULT_KEY};
use crate::rbac::proto::StderrAccessLog;

/// The RBAC filter's dynamic metadata namespace.
const RBAC_METADATA: &str = "envoy.filters.http.rbac";

/// Header carrying the decision id on a deny (same name as the Wasm filter's).
const DECISION_ID_HEADER: &str = "x-warden-decision-id";

/// The decision id of a native decision: Envoy's `x-request-id` for the request.
const DECISION_ID: &str = "%REQ(x-request-id)%";

/// Matches requests the RBAC filter denied.
fn rbac_denied() -> AccessLogFilter {
    let value = value_matcher::MatchPattern::StringMatch(StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact("denied".to_string())),
        ..Default::default()
    });
    AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::MetadataFilter(
            MetadataFilter {
                matcher: Some(MetadataMatcher {
                    filter: RBAC_METADATA.to_string(),
                    path: vec![PathSegment {
                        segment: Some(path_segment::Segment::Key(RESULT_KEY.to_string())),
                    }],
                    value: Some(ValueMatcher {
                        match_pattern: Some(value),
                    }),
                    ..Default::default()
                }),
                match_if_key_not_found: Some(xds_api::pb::google::protobuf::BoolValue {
                    value: false,
                }),
            },
        )),
    }
}

fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value: value.to_string(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// A local reply with status 403. The RBAC filter's own deny is one; its dynamic
/// metadata is not set yet when the local-reply mapper runs (checked on Envoy 1.40), so
/// the mapper keys on the status and only adds what is missing: the Wasm filter's replies
/// already carry their decision id and use `deny_status`.
fn status_403() -> AccessLogFilter {
    AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::StatusCodeFilter(
            StatusCodeFilter {
                comparison: Some(ComparisonFilter {
                    op: comparison_filter::Op::Eq as i32,
                    value: Some(RuntimeUInt32 {
                        default_value: 403,
                        runtime_key: "warden.authz.rbac_deny_status".to_string(),
                    }),
                }),
            },
        )),
    }
}

/// Local replies of RBAC denies: the decision id header (Envoy's request id, unless the
/// reply has one) and `deny_status`. The body stays Envoy's `RBAC: access denied`.
pub(super) fn local_reply(settings: &PolicySettings) -> LocalReplyConfig {
    let mut header = header(DECISION_ID_HEADER, DECISION_ID);
    header.append_action = HeaderAppendAction::AddIfAbsent as i32;
    LocalReplyConfig {
        mappers: vec![ResponseMapper {
            filter: Some(status_403()),
            // A 403 already is 403; any other deny status also moves a policy's own
            // `http_status: 403` (object decisions on the Wasm path) to it.
            status_code: (settings.deny_status != 403).then(|| UInt32Value {
                value: u32::from(settings.deny_status),
            }),
            headers_to_add: vec![header],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One JSON line per RBAC deny on Envoy's stderr (the sidecar log), like the Wasm
/// filter's decision line (allowed requests are not logged, as with the filter).
pub(super) fn decision_log() -> AccessLog {
    let line = format!(
        concat!(
            r#"{{"warden_decision":"%DYNAMIC_METADATA({ns}:{result})%","#,
            r#""decision_id":"{id}","policy":"%DYNAMIC_METADATA({ns}:{policy})%","#,
            r#""peer":"%DOWNSTREAM_PEER_URI_SAN%","method":"%REQ(:METHOD)%","#,
            r#""path":"%REQ(:PATH)%","status":%RESPONSE_CODE%,"details":"%RESPONSE_CODE_DETAILS%"}}"#,
            "\n"
        ),
        ns = RBAC_METADATA,
        result = RESULT_KEY,
        policy = POLICY_KEY,
        id = DECISION_ID,
    );
    let config = StderrAccessLog {
        log_format: Some(SubstitutionFormatString {
            format: Some(substitution_format_string::Format::TextFormatSource(
                DataSource {
                    specifier: Some(data_source::Specifier::InlineString(line)),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
    };
    AccessLog {
        name: "envoy.access_loggers.stderr".to_string(),
        filter: Some(rbac_denied()),
        config_type: Some(access_log::ConfigType::TypedConfig(any(&config))),
    }
}

/// `x-spiffe-id: <verified peer URI SAN>` on every forwarded request, replacing whatever
/// the client sent (an allowed request only: denied ones are never forwarded).
pub(super) fn trusted_identity() -> HeaderValueOption {
    header("x-spiffe-id", "%DOWNSTREAM_PEER_URI_SAN%")
}
