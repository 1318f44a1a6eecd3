//! Turning a policy result into a [`Decision`], failing closed.
//!
//! Accepted results (as OPA-Envoy): `true` allows; `false` or undefined denies; an object
//! `{allowed, http_status, headers, body}` allows only when `allowed` is `true` and
//! otherwise denies with its status, headers and body. Anything else (a number, a string,
//! an object without a boolean `allowed`, an evaluation error) denies. No I/O here.

use regorus::Value;

use crate::input::RequestError;
use crate::policy::PolicyError;

/// Why a request was denied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DenyReason {
    /// The decision rule evaluated to `false`.
    #[error("{rule} is false")]
    False {
        /// The decision rule.
        rule: String,
    },
    /// The decision rule is undefined for this input (no rule body matched).
    #[error("{rule} is undefined")]
    Undefined {
        /// The decision rule.
        rule: String,
    },
    /// The object result says `allowed: false`.
    #[error("{rule} returned allowed = false")]
    NotAllowed {
        /// The decision rule.
        rule: String,
    },
    /// The result has a shape the filter does not accept.
    #[error("{rule} returned an unusable result: {detail}")]
    BadResult {
        /// The decision rule.
        rule: String,
        /// What was wrong.
        detail: String,
    },
    /// The policy failed to evaluate.
    #[error(transparent)]
    Error(#[from] PolicyError),
    /// The request was refused before the policy ran (answered with 400).
    #[error("bad request: {0}")]
    BadRequest(#[from] RequestError),
}

impl DenyReason {
    /// True when the deny comes from a failure rather than the policy's answer.
    pub fn is_error(&self) -> bool {
        matches!(self, Self::BadResult { .. } | Self::Error(_))
    }
}

/// The policy's answer for one request.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Let the request through, adding these request headers (from an object result).
    Allow {
        /// Headers the policy asked to add to the request.
        headers: Vec<(String, String)>,
    },
    /// Refuse the request.
    Deny {
        /// Why.
        reason: DenyReason,
        /// Status the policy chose (`http_status`), if any.
        status: Option<u16>,
        /// Response body the policy chose, if any.
        body: Option<String>,
        /// Response headers the policy chose.
        headers: Vec<(String, String)>,
    },
}

impl Decision {
    /// A deny with no policy-chosen response parts.
    pub fn deny(reason: DenyReason) -> Self {
        Self::Deny {
            reason,
            status: None,
            body: None,
            headers: Vec::new(),
        }
    }

    /// Interprets an evaluation result for the decision rule `rule`.
    pub fn from_result(rule: &str, result: Result<Value, PolicyError>) -> Self {
        let value = match result {
            Ok(value) => value,
            Err(error) => return Self::deny(DenyReason::Error(error)),
        };
        if value == Value::Bool(true) {
            return Self::Allow {
                headers: Vec::new(),
            };
        }
        let rule = rule.to_string();
        match value {
            Value::Bool(false) => Self::deny(DenyReason::False { rule }),
            Value::Undefined => Self::deny(DenyReason::Undefined { rule }),
            Value::Object(_) => from_object(rule, &value),
            other => Self::deny(DenyReason::BadResult {
                rule,
                detail: format!("expected a boolean or an object, got {}", type_name(&other)),
            }),
        }
    }

    /// True for an allow.
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }
}

fn from_object(rule: String, value: &Value) -> Decision {
    let bad = |detail: &str| {
        Decision::deny(DenyReason::BadResult {
            rule: rule.clone(),
            detail: detail.to_string(),
        })
    };
    let allowed = match &value["allowed"] {
        Value::Bool(b) => *b,
        Value::Undefined => return bad("object result has no `allowed` field"),
        _ => return bad("`allowed` is not a boolean"),
    };
    let headers = match headers_of(&value["headers"]) {
        Ok(h) => h,
        Err(detail) => return bad(detail),
    };
    if allowed {
        return Decision::Allow { headers };
    }
    let status = match &value["http_status"] {
        Value::Undefined => None,
        Value::Number(_) => match value["http_status"].as_u16() {
            Ok(s) if (100..=599).contains(&s) => Some(s),
            _ => return bad("`http_status` is not an HTTP status"),
        },
        _ => return bad("`http_status` is not a number"),
    };
    let body = match &value["body"] {
        Value::Undefined => None,
        Value::String(s) => Some(s.to_string()),
        _ => return bad("`body` is not a string"),
    };
    Decision::Deny {
        reason: DenyReason::NotAllowed { rule },
        status,
        body,
        headers,
    }
}

/// `headers`: an object of name → string (or array of strings, added one by one).
fn headers_of(value: &Value) -> Result<Vec<(String, String)>, &'static str> {
    let mut out = Vec::new();
    match value {
        Value::Undefined => {}
        Value::Object(map) => {
            for (k, v) in map.iter() {
                let name = k.as_string().map_err(|_| "header name is not a string")?;
                match v {
                    Value::String(s) => out.push((name.to_string(), s.to_string())),
                    Value::Array(items) => {
                        for item in items.iter() {
                            let s = item
                                .as_string()
                                .map_err(|_| "header value is not a string")?;
                            out.push((name.to_string(), s.to_string()));
                        }
                    }
                    _ => return Err("header value is not a string"),
                }
            }
        }
        _ => return Err("`headers` is not an object"),
    }
    Ok(out)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Set(_) => "set",
        Value::Object(_) => "object",
        Value::Undefined => "undefined",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(json: &str) -> Decision {
        let value = Value::from_json_str(json).unwrap_or(Value::Undefined);
        Decision::from_result("data.r.allow", Ok(value))
    }

    #[test]
    fn only_true_or_allowed_true_allows() {
        assert!(decide("true").is_allow());
        assert!(decide(r#"{"allowed": true}"#).is_allow());
        for json in [
            "false",
            "1",
            "\"yes\"",
            "null",
            "[true]",
            r#"{"allowed": "true"}"#,
            "{}",
        ] {
            assert!(!decide(json).is_allow(), "{json} must deny");
        }
        assert!(!Decision::from_result("r", Ok(Value::Undefined)).is_allow());
    }

    #[test]
    fn evaluation_error_denies_and_counts_as_error() {
        let d = Decision::from_result(
            "r",
            Err(PolicyError::Eval {
                message: "conflict".into(),
            }),
        );
        match d {
            Decision::Deny { reason, .. } => assert!(reason.is_error()),
            Decision::Allow { .. } => unreachable!("an error must deny"),
        }
    }

    #[test]
    fn object_deny_carries_status_body_and_headers() {
        let d = decide(
            r#"{"allowed": false, "http_status": 401, "body": "no", "headers": {"x-a": "1", "x-b": ["2", "3"]}}"#,
        );
        match d {
            Decision::Deny {
                reason,
                status,
                body,
                headers,
            } => {
                assert!(!reason.is_error());
                assert_eq!(status, Some(401));
                assert_eq!(body.as_deref(), Some("no"));
                assert_eq!(headers.len(), 3);
            }
            Decision::Allow { .. } => unreachable!("allowed is false"),
        }
    }

    #[test]
    fn object_with_bad_status_fails_closed() {
        match decide(r#"{"allowed": false, "http_status": 42}"#) {
            Decision::Deny { reason, .. } => assert!(reason.is_error()),
            Decision::Allow { .. } => unreachable!("must deny"),
        }
    }
}
