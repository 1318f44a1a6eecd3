//! From one Envoy access-log entry (`HTTPAccessLogEntry`) to a decision event. Pure. The
//! destination and instance come from the caller (the verified client certificate of the
//! ALS stream and its identifier), never from the entry.
//!
//! - Wasm filter: its record is in filter state `wasm.warden_decision` (an `Any` holding
//!   a `BytesValue` of JSON, as Envoy serialises Wasm-set properties).
//! - Native RBAC: a deny has response code details starting `rbac_access_denied`; its
//!   decision id is the `x-warden-decision-id` response header (Envoy's request id).
//! - An entry with neither, answered by the app (`via_upstream`), is a native allow
//!   (the Wasm filter leaves a record for every request it decides).
//!   Anything else (e.g. Envoy refusing a malformed request before any filter) is not a
//!   decision and is skipped.

use prost::Message;
use xds_api::pb::envoy::data::accesslog::v3::tls_properties::certificate_properties::subject_alt_name::San;
use xds_api::pb::envoy::data::accesslog::v3::HttpAccessLogEntry;
use xds_api::pb::google::protobuf::{Any, BytesValue};

use super::event::{Decision, Mode, NO_VERIFIED_PEER};
/// The filter-state key of the Wasm filter's decision record (`set_property` of
/// `warden_decision` in the filter).
pub const DECISION_STATE: &str = "wasm.warden_decision";

/// The Wasm filter's record (see `warden_filter::authorize::Verdict::record`).
#[derive(Debug, serde::Deserialize)]
struct FilterRecord {
    id: String,
    decision: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    rule: String,
    #[serde(default)]
    policy_version: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    eval_us: Option<u64>,
}

/// Who sent the entry (from the verified ALS connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// The sidecar's SPIFFE ID (its client certificate).
    pub destination: String,
    /// The node id it named in the stream identifier.
    pub instance: String,
}

/// The decision in `entry`, if it holds one; plus the time (ms since the epoch).
pub fn decision(entry: &HttpAccessLogEntry, from: &Sender) -> Option<(i64, Decision)> {
    let common = entry.common_properties.as_ref();
    let request = entry.request.clone().unwrap_or_default();
    let response = entry.response.clone().unwrap_or_default();
    let time_ms = common.and_then(|c| c.start_time.as_ref()).map_or(0, |t| {
        t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000)
    });
    let source = common
        .and_then(|c| c.tls_properties.as_ref())
        .and_then(|t| t.peer_certificate_properties.as_ref())
        .and_then(|p| {
            p.subject_alt_name.iter().find_map(|s| match &s.san {
                Some(San::Uri(u)) if u.starts_with("spiffe://") => Some(u.clone()),
                _ => None,
            })
        })
        .unwrap_or_else(|| NO_VERIFIED_PEER.to_string());
    let code = response.response_code.map_or(0, |c| c.value);
    let details = response.response_code_details.clone();
    let header_id = response
        .response_headers
        .get("x-warden-decision-id")
        .cloned()
        .unwrap_or_default();
    let method =
        xds_api::pb::envoy::config::core::v3::RequestMethod::try_from(request.request_method)
            .map(|m| m.as_str_name().to_string())
            .unwrap_or_default();
    let path = request
        .path
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_string();
    let record = common
        .and_then(|c| c.filter_state_objects.get(DECISION_STATE))
        .and_then(record_of);
    let mut d = Decision {
        decision_id: header_id.clone(),
        source,
        destination: from.destination.clone(),
        instance: from.instance.clone(),
        method,
        host: request.authority.clone(),
        path,
        decision: String::new(),
        reason: String::new(),
        rules: Vec::new(),
        policy_version: String::new(),
        mode: Mode::Enforce,
        engine: String::new(),
        eval_us: None,
        response_code: code,
    };
    if let Some(r) = record {
        d.decision_id = r.id;
        d.decision = r.decision;
        d.reason = r.reason.unwrap_or_default();
        d.rules = (!r.rule.is_empty()).then_some(r.rule).into_iter().collect();
        d.policy_version = r.policy_version;
        d.mode = if r.mode == "dry-run" || r.mode == "dry_run" {
            Mode::DryRun
        } else {
            Mode::Enforce
        };
        d.engine = "filter".into();
        d.eval_us = r.eval_us;
    } else if details.starts_with("rbac_access_denied") {
        d.decision = "deny".into();
        d.reason = details;
        d.engine = "native_rbac".into();
        if d.decision_id.is_empty() {
            d.decision_id = request.request_id.clone();
        }
    } else if details == "via_upstream" {
        d.decision = "allow".into();
        d.reason = "allowed by the workload's RBAC policies".into();
        d.engine = "native_rbac".into();
        d.decision_id = request.request_id.clone();
    } else {
        return None;
    }
    if d.decision_id.is_empty() || !(d.decision == "allow" || d.decision == "deny") {
        return None;
    }
    Some((time_ms, d))
}

/// The filter record from its filter-state `Any` (a `BytesValue`, possibly wrapped in
/// one more `Any`). Anything else is ignored: the entry then is not a filter decision.
fn record_of(any: &Any) -> Option<FilterRecord> {
    let inner = if any.type_url.ends_with("/google.protobuf.Any") {
        Any::decode(any.value.as_slice()).ok()?
    } else {
        any.clone()
    };
    let bytes = if inner.type_url.ends_with("/google.protobuf.BytesValue") {
        BytesValue::decode(inner.value.as_slice()).ok()?.value
    } else if inner.type_url.ends_with("/google.protobuf.StringValue") {
        xds_api::pb::google::protobuf::StringValue::decode(inner.value.as_slice())
            .ok()?
            .value
            .into_bytes()
    } else {
        return None;
    };
    if bytes.len() > 64 * 1024 {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
#[path = "als_entry_tests.rs"]
mod tests;
