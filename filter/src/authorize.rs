//! One authorization: request attributes → input → policy → [`Verdict`] → what the filter
//! does ([`Action`]) and what it logs. This is the exact path both the Envoy filter and
//! `warden policy eval` run. No I/O: the caller reads the request and applies the action.

use crate::cache::DecisionCache;
use crate::config::Mode;
use crate::decision::{Decision, DenyReason};
use crate::input::RequestAttributes;
use crate::policy::CompiledPolicy;

/// Header carrying the verified peer SPIFFE ID to the app, set (or removed) by the filter.
pub const SPIFFE_ID_HEADER: &str = "x-spiffe-id";
/// Response header naming the decision on a deny.
pub const DECISION_ID_HEADER: &str = "x-warden-decision-id";

/// Identifies one decision in logs and in the deny response. Formatted only when shown
/// (an allowed request never formats its id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DecisionId {
    prefix: u64,
    sequence: u64,
}

impl std::fmt::Display for DecisionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}-{:016x}", self.prefix, self.sequence)
    }
}

/// Hands out decision ids: a per-VM random prefix and a counter.
#[derive(Debug, Clone)]
pub struct DecisionIds {
    prefix: u64,
    next: u64,
}

impl DecisionIds {
    /// `seed` should differ between VMs (e.g. random bits); ids stay unique within one.
    pub fn new(seed: u64) -> Self {
        Self {
            prefix: seed,
            next: 0,
        }
    }

    /// The next id, e.g. `3f2a9c01d2e4b5a6-000000000000002a`.
    pub fn next_id(&mut self) -> DecisionId {
        self.next = self.next.wrapping_add(1);
        DecisionId {
            prefix: self.prefix,
            sequence: self.next,
        }
    }
}

/// What the filter does with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Forward the request after editing request headers (`None` removes the header).
    Continue {
        /// Headers to set (or remove) on the request before it reaches the app.
        set_headers: Vec<(String, Option<String>)>,
    },
    /// Answer locally.
    Respond {
        /// HTTP status.
        status: u16,
        /// Response headers (always includes the decision id).
        headers: Vec<(String, String)>,
        /// Response body.
        body: String,
    },
}

/// Which counters a verdict increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Request allowed by the policy.
    Allowed,
    /// Request denied and refused.
    Denied,
    /// Request denied by the policy but let through (dry-run).
    DryRunDenied,
    /// The deny came from an error (bad result, evaluation failure); counted in addition.
    Errors,
}

impl Counter {
    /// Every counter, in discriminant order.
    pub const ALL: [Counter; 4] = [
        Counter::Allowed,
        Counter::Denied,
        Counter::DryRunDenied,
        Counter::Errors,
    ];
}

/// The outcome of one authorization.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The decision id.
    pub id: DecisionId,
    /// The policy's decision.
    pub decision: Decision,
    /// The mode it was made in.
    pub mode: Mode,
}

/// Authorizes one request with a compiled policy.
pub fn authorize(policy: &CompiledPolicy, request: &RequestAttributes, id: DecisionId) -> Verdict {
    let config = policy.config();
    if let Err(error) = request.check() {
        return Verdict {
            id,
            decision: Decision::Deny {
                reason: DenyReason::BadRequest(error),
                status: Some(400),
                body: None,
                headers: Vec::new(),
            },
            mode: config.mode,
        };
    }
    let input = policy.input_for(request);
    let decision = Decision::from_result(&config.entrypoint, policy.evaluate(input));
    Verdict {
        id,
        decision,
        mode: config.mode,
    }
}

/// [`authorize`] with remembered decisions: a request the cache knows is not evaluated
/// again. Errors are never remembered.
pub fn authorize_cached(
    policy: &CompiledPolicy,
    request: &RequestAttributes,
    id: DecisionId,
    cache: &mut DecisionCache,
) -> Verdict {
    if let Some(decision) = cache.get(policy, request) {
        return Verdict {
            id,
            decision,
            mode: policy.config().mode,
        };
    }
    let verdict = authorize(policy, request, id);
    if !matches!(&verdict.decision, Decision::Deny { reason, .. } if reason.is_error()) {
        cache.put(policy, request, &verdict.decision);
    }
    verdict
}

impl Verdict {
    /// True when the request goes on to the app (allow, or deny in dry-run).
    pub fn lets_through(&self) -> bool {
        self.decision.is_allow() || self.mode == Mode::DryRun
    }

    /// Counters to increment.
    pub fn counters(&self) -> Vec<Counter> {
        match &self.decision {
            Decision::Allow { .. } => vec![Counter::Allowed],
            Decision::Deny { reason, .. } => {
                let mut out = vec![if self.mode == Mode::DryRun {
                    Counter::DryRunDenied
                } else {
                    Counter::Denied
                }];
                if reason.is_error() {
                    out.push(Counter::Errors);
                }
                out
            }
        }
    }

    /// The deny reason with context (rule, policy version, identity), for logs and, when
    /// configured, the response body.
    pub fn reason_text(
        &self,
        policy: &CompiledPolicy,
        request: &RequestAttributes,
    ) -> Option<String> {
        let Decision::Deny { reason, .. } = &self.decision else {
            return None;
        };
        Some(format!(
            "{reason} (policy version {:?}, peer {})",
            policy.config().policy_version,
            request
                .peer
                .principal()
                .unwrap_or("none (no verified mTLS peer)")
        ))
    }

    /// What the filter does.
    pub fn action(&self, policy: &CompiledPolicy, request: &RequestAttributes) -> Action {
        let config = policy.config();
        if self.lets_through() {
            let mut set_headers: Vec<(String, Option<String>)> = Vec::new();
            if let Decision::Allow { headers } = &self.decision {
                set_headers.extend(
                    headers
                        .iter()
                        .filter(|(k, _)| !k.eq_ignore_ascii_case(SPIFFE_ID_HEADER))
                        .map(|(k, v)| (k.clone(), Some(v.clone()))),
                );
            }
            // Last, so nothing overrides it: the trusted identity, or no header at all.
            set_headers.push((
                SPIFFE_ID_HEADER.to_string(),
                request.peer.principal().map(str::to_string),
            ));
            return Action::Continue { set_headers };
        }
        let (status, policy_body, mut headers) = match &self.decision {
            Decision::Deny {
                status,
                body,
                headers,
                ..
            } => (
                status.unwrap_or(config.deny_status),
                body.clone(),
                headers.clone(),
            ),
            Decision::Allow { .. } => (config.deny_status, None, Vec::new()),
        };
        headers.push((DECISION_ID_HEADER.to_string(), self.id.to_string()));
        let body = match policy_body {
            Some(body) => body,
            None if config.expose_reason => format!(
                "denied by policy (decision {}): {}\n",
                self.id,
                self.reason_text(policy, request).unwrap_or_default()
            ),
            None => format!("denied by policy (decision {})\n", self.id),
        };
        Action::Respond {
            status,
            headers,
            body,
        }
    }

    /// The decision record for the audit trail (compact JSON; the control plane adds
    /// source, destination, request and time from the access log entry). Serialised
    /// from a borrowed struct: this runs on every request when records are on.
    pub fn record(&self, policy: &CompiledPolicy, eval_micros: u64) -> String {
        let config = policy.config();
        let (decision, reason, rule) = match &self.decision {
            Decision::Allow { .. } => ("allow", None, config.entrypoint.as_str()),
            Decision::Deny { reason, .. } => (
                "deny",
                Some(reason.to_string()),
                deny_rule(reason).unwrap_or(config.entrypoint.as_str()),
            ),
        };
        let record = Record {
            id: self.id.to_string(),
            decision,
            enforced: !self.lets_through() || self.decision.is_allow(),
            reason,
            rule,
            policy_version: &config.policy_version,
            mode: config.mode,
            eval_us: eval_micros,
        };
        serde_json::to_string(&record).unwrap_or_default()
    }

    /// Whether this decision is logged: always for denies, for allows when configured.
    pub fn should_log(&self, policy: &CompiledPolicy) -> bool {
        !self.decision.is_allow() || policy.config().log_decisions
    }

    /// One structured JSON line: peer, destination, method, path (query string left out,
    /// it may carry secrets), decision, reason, policy version and evaluation time.
    pub fn log_line(
        &self,
        policy: &CompiledPolicy,
        request: &RequestAttributes,
        eval_micros: u64,
    ) -> String {
        let config = policy.config();
        let path = request.path.split(['?', '#']).next().unwrap_or_default();
        let line = serde_json::json!({
            "msg": "warden authz decision",
            "decision_id": self.id.to_string(),
            "decision": if self.decision.is_allow() { "allow" } else { "deny" },
            "enforced": !self.lets_through() || self.decision.is_allow(),
            "mode": config.mode,
            "peer": request.peer.principal(),
            "destination": config.destination_principal,
            "method": request.method,
            "path": path,
            "reason": match &self.decision {
                Decision::Deny { reason, .. } => Some(reason.to_string()),
                Decision::Allow { .. } => None,
            },
            "error": matches!(&self.decision, Decision::Deny { reason, .. } if reason.is_error()),
            "policy_version": config.policy_version,
            "eval_us": eval_micros,
        });
        line.to_string()
    }
}

/// Shorthand used by tests and the CLI: the deny reason, if any.
pub fn deny_reason(verdict: &Verdict) -> Option<&DenyReason> {
    match &verdict.decision {
        Decision::Deny { reason, .. } => Some(reason),
        Decision::Allow { .. } => None,
    }
}

/// The decision rule a deny reason names, if any.
fn deny_rule(reason: &DenyReason) -> Option<&str> {
    match reason {
        DenyReason::False { rule }
        | DenyReason::Undefined { rule }
        | DenyReason::NotAllowed { rule }
        | DenyReason::BadResult { rule, .. } => Some(rule),
        DenyReason::Error(_) | DenyReason::BadRequest(_) => None,
    }
}

/// The audit record's fields (see [`Verdict::record`]).
#[derive(serde::Serialize)]
struct Record<'a> {
    id: String,
    decision: &'static str,
    enforced: bool,
    reason: Option<String>,
    rule: &'a str,
    policy_version: &'a str,
    mode: Mode,
    eval_us: u64,
}
