//! The audit event schema (version [`SCHEMA_VERSION`], documented in `docs/audit.md`).
//! An [`Event`] is what happened; the store wraps it in a chained record. Fields that
//! queries filter on (decision id, source, destination, decision, path) are promoted to
//! the record's columns by [`Event::columns`]; everything else stays in the body.

use serde::{Deserialize, Serialize};

/// Version of the event schema. Bumped on any change to a field's meaning; readers
/// reject records of a newer major version than they know.
pub const SCHEMA_VERSION: u32 = 1;

/// Stand-in for the source of a request that presented no verified peer certificate.
pub const NO_VERIFIED_PEER: &str = "no verified peer";

/// One audit event: when, in which trust domain, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version the event was written with.
    pub v: u32,
    /// Milliseconds since the Unix epoch (control-plane clock, or Envoy's for decisions).
    pub time_ms: i64,
    /// The trust domain of the control plane that recorded it.
    pub trust_domain: String,
    /// What happened.
    #[serde(flatten)]
    pub what: What,
}

/// Enforce or dry-run (a dry-run deny lets the request through).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Denies are enforced.
    Enforce,
    /// Denies are only recorded.
    DryRun,
}

/// One authorization decision taken by a sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The decision id (`x-warden-decision-id`).
    pub decision_id: String,
    /// The caller's SPIFFE ID, or [`NO_VERIFIED_PEER`].
    pub source: String,
    /// The SPIFFE ID of the workload that decided (the verified sidecar, never a claim).
    pub destination: String,
    /// The workload instance (the sidecar's xDS node id).
    pub instance: String,
    /// HTTP method.
    pub method: String,
    /// Host (`:authority`).
    pub host: String,
    /// Path as the filter saw it.
    pub path: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// The reason (deny reason, or response code details).
    pub reason: String,
    /// The rule(s) that decided, `file:line`, when known.
    pub rules: Vec<String>,
    /// Policy version, when known.
    pub policy_version: String,
    /// Enforce or dry-run.
    pub mode: Mode,
    /// `filter` (Rego in Wasm) or `native_rbac`.
    pub engine: String,
    /// Evaluation time in microseconds, when known.
    pub eval_us: Option<u64>,
    /// HTTP response code sent.
    pub response_code: u32,
}

/// What happened. The `kind` tag is the event kind queried with `--kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum What {
    /// A request was allowed or denied by a sidecar.
    Decision(Decision),
    /// An X.509-SVID was issued to a sidecar (first issue).
    SvidIssued(SvidEvent),
    /// An X.509-SVID was renewed.
    SvidRenewed(SvidEvent),
    /// Renewing an SVID failed; the still-valid one was kept.
    SvidFailed {
        /// The workload.
        workload: String,
        /// Why.
        reason: String,
    },
    /// An xDS stream's attestation was accepted.
    AttestAccepted {
        /// Attestation method (`join_token`, `k8s_sa`, ...).
        method: String,
        /// The node id the sidecar claimed.
        node: String,
        /// The workload it proved.
        workload: String,
    },
    /// An xDS stream's attestation was refused (never the credential itself).
    AttestRefused {
        /// Attestation method, when one was recognised.
        method: String,
        /// The node id the sidecar claimed.
        node: String,
        /// Why.
        reason: String,
    },
    /// The Workload API issued an X.509-SVID.
    WorkloadX509 {
        /// SPIFFE ID.
        spiffe_id: String,
        /// Caller (process, uid) as seen by the Workload API.
        caller: String,
    },
    /// The Workload API issued a JWT-SVID.
    WorkloadJwt {
        /// Subject (SPIFFE ID).
        subject: String,
        /// Audience(s).
        audience: Vec<String>,
    },
    /// A CA rotation step.
    CaStep {
        /// `prepare`, `activate` or `retire`.
        step: String,
        /// Forced by an operator (`warden ca ...`), rather than scheduled.
        forced: bool,
        /// Nodes that had not acknowledged the bundle at the time.
        lagging: Vec<String>,
        /// The CA's key id / subject, when known.
        ca: String,
    },
    /// Join tokens seen created on a reload (ids only).
    TokenCreated {
        /// Token id.
        id: String,
        /// The workload it proves.
        workload: String,
    },
    /// Join tokens seen revoked on a reload.
    TokenRevoked {
        /// Token id.
        id: String,
    },
    /// A config reload was accepted.
    ReloadAccepted {
        /// Short summary of what changed.
        summary: String,
    },
    /// A config reload was refused; the last good config keeps serving.
    ReloadRefused {
        /// The diagnostics, one per line.
        diagnostics: Vec<String>,
    },
    /// The trust bundle served changed.
    BundleUpdated {
        /// Trust domain of the bundle.
        bundle_domain: String,
        /// Number of CA certificates in it.
        authorities: usize,
    },
}

/// SVID issue / renewal details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SvidEvent {
    /// SPIFFE ID.
    pub spiffe_id: String,
    /// Workload.
    pub workload: String,
    /// Instance (node id), when per instance.
    pub instance: String,
    /// Certificate serial (hex).
    pub serial: String,
    /// Not-after, ms since the epoch.
    pub not_after_ms: i64,
    /// Which CA signed it (its key id).
    pub ca: String,
}

/// The promoted columns of one event, for indexes and filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    /// Event kind.
    pub kind: String,
    /// Decision id (decisions only).
    pub decision_id: Option<String>,
    /// Source SPIFFE ID (decisions).
    pub source: Option<String>,
    /// Destination / subject SPIFFE ID.
    pub destination: Option<String>,
    /// `allow` / `deny` (decisions).
    pub decision: Option<String>,
    /// Request path (decisions).
    pub path: Option<String>,
}

impl What {
    /// The kind name (the serde tag).
    pub fn kind(&self) -> &'static str {
        match self {
            What::Decision(_) => "decision",
            What::SvidIssued(_) => "svid_issued",
            What::SvidRenewed(_) => "svid_renewed",
            What::SvidFailed { .. } => "svid_failed",
            What::AttestAccepted { .. } => "attest_accepted",
            What::AttestRefused { .. } => "attest_refused",
            What::WorkloadX509 { .. } => "workload_x509",
            What::WorkloadJwt { .. } => "workload_jwt",
            What::CaStep { .. } => "ca_step",
            What::TokenCreated { .. } => "token_created",
            What::TokenRevoked { .. } => "token_revoked",
            What::ReloadAccepted { .. } => "reload_accepted",
            What::ReloadRefused { .. } => "reload_refused",
            What::BundleUpdated { .. } => "bundle_updated",
        }
    }
}

/// Every kind name, for `--kind` validation.
pub const KINDS: &[&str] = &[
    "decision",
    "svid_issued",
    "svid_renewed",
    "svid_failed",
    "attest_accepted",
    "attest_refused",
    "workload_x509",
    "workload_jwt",
    "ca_step",
    "token_created",
    "token_revoked",
    "reload_accepted",
    "reload_refused",
    "bundle_updated",
];

impl Event {
    /// An event now, in `trust_domain`.
    pub fn now(trust_domain: &str, what: What) -> Event {
        Event::at(now_ms(), trust_domain, what)
    }

    /// An event at `time_ms`.
    pub fn at(time_ms: i64, trust_domain: &str, what: What) -> Event {
        Event {
            v: SCHEMA_VERSION,
            time_ms,
            trust_domain: trust_domain.to_string(),
            what,
        }
    }

    /// The canonical encoding hashed into the chain: compact JSON with fields in
    /// declaration order (no maps, so the order is fixed).
    pub fn canonical(&self) -> Vec<u8> {
        // Serialising plain structs, strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The promoted columns.
    pub fn columns(&self) -> Columns {
        let mut c = Columns {
            kind: self.what.kind().to_string(),
            ..Columns::default()
        };
        match &self.what {
            What::Decision(d) => {
                c.decision_id = Some(d.decision_id.clone());
                c.source = Some(d.source.clone());
                c.destination = Some(d.destination.clone());
                c.decision = Some(d.decision.clone());
                c.path = Some(d.path.clone());
            }
            What::SvidIssued(s) | What::SvidRenewed(s) => {
                c.destination = Some(s.spiffe_id.clone());
            }
            What::WorkloadX509 { spiffe_id, .. } => c.destination = Some(spiffe_id.clone()),
            What::WorkloadJwt { subject, .. } => c.destination = Some(subject.clone()),
            _ => {}
        }
        c
    }
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
