//! What the inbound listener adds so a workload on Envoy's RBAC filter (`crate::rbac`)
//! loses nothing the Wasm filter gives: an RBAC deny answers `deny_status` with an
//! `x-warden-decision-id` header (Envoy's request id) and, with `expose_reason`, the
//! reason in the body (an HCM local-reply mapper keyed on the RBAC filter's dynamic
//! metadata, so the Wasm filter's own replies are left alone); each RBAC decision is
//! logged as one JSON line on stderr with the Rego rule (`file:line`) that allowed it;
//! and the app gets a trusted `x-spiffe-id` from the verified peer certificate. On the
//! Wasm path none of these match or change anything (the filter sets the same header).

use xds_api::pb::envoy::config::accesslog::v3::{
    access_log, access_log_filter, AccessLog, AccessLogFilter, MetadataFilter,
};
use xds_api::pb::envoy::config::core::v3::{
    data_source, header_value_option::HeaderAppendAction, substitution_format_string, DataSource,
    HeaderValue, HeaderValueOption, SubstitutionFormatString,
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

/// The reason a native deny gives (the Wasm filter names the undefined or false rule).
const DENY_REASON: &str = "denied by policy: no allow rule matched";

/// Local replies of RBAC denies: status, decision id header, reason (if exposed).
pub(super) fn local_reply(settings: &PolicySettings) -> LocalReplyConfig {
    let body = if settings.expose_reason {
        format!("{DENY_REASON} (decision {DECISION_ID})\n")
    } else {
        format!("access denied (decision {DECISION_ID})\n")
    };
    LocalReplyConfig {
        mappers: vec![ResponseMapper {
            filter: Some(rbac_denied()),
            status_code: Some(UInt32Value {
                value: u32::from(settings.deny_status),
            }),
            body_format_override: Some(SubstitutionFormatString {
                format: Some(substitution_format_string::Format::TextFormatSource(
                    DataSource {
                        specifier: Some(data_source::Specifier::InlineString(body)),
                        ..Default::default()
                    },
                )),
                content_type: "text/plain".to_string(),
                ..Default::default()
            }),
            headers_to_add: vec![header(DECISION_ID_HEADER, DECISION_ID)],
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
