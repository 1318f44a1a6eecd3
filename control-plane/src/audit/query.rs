//! Queries over the store and how their results print (table or JSON lines). Pure: the
//! SQL text and its parameters are built here; `store.rs` runs them.

use serde::Serialize;

use super::event::{Event, What};

/// Filters; every one set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Decision id.
    pub decision_id: Option<String>,
    /// Source SPIFFE ID.
    pub source: Option<String>,
    /// Destination SPIFFE ID.
    pub destination: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// Path prefix.
    pub path_prefix: Option<String>,
    /// Event kind.
    pub kind: Option<String>,
    /// From this time (ms since the epoch, inclusive).
    pub since_ms: Option<i64>,
    /// Until this time (ms since the epoch, exclusive).
    pub until_ms: Option<i64>,
    /// At most this many records (the newest ones).
    pub limit: Option<u32>,
}

/// One stored record as returned by a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Sequence number in the chain.
    pub seq: i64,
    /// The record's chain hash (hex).
    pub hash: String,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// A SQL parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// Text.
    Text(String),
    /// Integer.
    Int(i64),
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Text(s) => s.to_sql(),
            Arg::Int(i) => i.to_sql(),
        }
    }
}

impl Query {
    /// The SELECT (seq, body, hash) and its parameters.
    pub fn to_sql(&self) -> (String, Vec<Arg>) {
        let mut clauses = Vec::new();
        let mut args = Vec::new();
        let mut eq = |col: &str, v: &Option<String>| {
            if let Some(v) = v {
                args.push(Arg::Text(v.clone()));
                clauses.push(format!("{col} = ?{}", args.len()));
            }
        };
        eq("decision_id", &self.decision_id);
        eq("source", &self.source);
        eq("destination", &self.destination);
        eq("decision", &self.decision);
        eq("kind", &self.kind);
        if let Some(p) = &self.path_prefix {
            // substr comparison, not LIKE: `%` and `_` in a path are literal.
            args.push(Arg::Text(p.clone()));
            let n = args.len();
            clauses.push(format!("substr(path, 1, length(?{n})) = ?{n}"));
        }
        if let Some(t) = self.since_ms {
            args.push(Arg::Int(t));
            clauses.push(format!("time_ms >= ?{}", args.len()));
        }
        if let Some(t) = self.until_ms {
            args.push(Arg::Int(t));
            clauses.push(format!("time_ms < ?{}", args.len()));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let limit = self.limit.map_or(String::new(), |l| format!(" LIMIT {l}"));
        let sql = format!(
            "SELECT seq, body, hash FROM (SELECT seq, body, hash FROM records{filter} ORDER BY seq DESC{limit}) ORDER BY seq"
        );
        (sql, args)
    }
}

/// One line of JSON per record.
pub fn json_line(row: &Row) -> String {
    serde_json::to_string(row).unwrap_or_default()
}

/// A table header for [`table_line`].
pub const TABLE_HEADER: &str = "SEQ     TIME                      KIND             DETAIL";

/// One table line per record.
pub fn table_line(row: &Row) -> String {
    let time = format_time(row.event.time_ms);
    format!(
        "{:<7} {:<25} {:<16} {}",
        row.seq,
        time,
        row.event.what.kind(),
        detail(&row.event.what)
    )
}

/// The whole story of one decision, one field a line.
pub fn story(row: &Row) -> Vec<String> {
    let mut out = vec![
        format!("time:        {}", format_time(row.event.time_ms)),
        format!("trust domain: {}", row.event.trust_domain),
        format!("record:      {} ({})", row.seq, row.hash),
    ];
    if let What::Decision(d) = &row.event.what {
        let rules = if d.rules.is_empty() {
            "(not recorded)".to_string()
        } else {
            d.rules.join(", ")
        };
        out.extend([
            format!("decision id: {}", d.decision_id),
            format!("decision:    {} ({:?}, {})", d.decision, d.mode, d.engine),
            format!("source:      {}", d.source),
            format!("destination: {}", d.destination),
            format!("instance:    {}", d.instance),
            format!("request:     {} {}{}", d.method, d.host, d.path),
            format!("response:    {}", d.response_code),
            format!("reason:      {}", d.reason),
            format!("rule:        {rules}"),
            format!("policy:      {}", d.policy_version),
        ]);
        if let Some(us) = d.eval_us {
            out.push(format!("eval time:   {us} µs"));
        }
    } else {
        out.push(format!("event:       {}", detail(&row.event.what)));
    }
    out
}

fn detail(w: &What) -> String {
    match w {
        What::Decision(d) => format!(
            "{} {} {} -> {} {} {}: {}",
            d.decision, d.decision_id, d.source, d.destination, d.method, d.path, d.reason
        ),
        What::SvidIssued(s) | What::SvidRenewed(s) => format!(
            "{} ({}) serial {} not after {}",
            s.spiffe_id,
            s.instance,
            s.serial,
            format_time(s.not_after_ms)
        ),
        What::SvidFailed { workload, reason } => format!("{workload}: {reason}"),
        What::AttestAccepted {
            method,
            node,
            workload,
        } => {
            format!("{method} node {node} as workload {workload}")
        }
        What::AttestRefused {
            method,
            node,
            reason,
        } => format!("{method} node {node}: {reason}"),
        What::WorkloadX509 { spiffe_id, caller } => format!("{spiffe_id} to {caller}"),
        What::WorkloadJwt { subject, audience } => {
            format!("{subject} for {}", audience.join(","))
        }
        What::CaStep {
            step,
            forced,
            lagging,
            ca,
        } => format!(
            "{step}{} {ca}{}",
            if *forced { " (forced)" } else { "" },
            if lagging.is_empty() {
                String::new()
            } else {
                format!(" lagging: {}", lagging.join(","))
            }
        ),
        What::TokenCreated { id, workload } => format!("{id} for {workload}"),
        What::TokenRevoked { id } => id.clone(),
        What::ReloadAccepted { summary } => summary.clone(),
        What::ReloadRefused { diagnostics } => diagnostics.join("; "),
        What::BundleUpdated {
            bundle_domain,
            authorities,
        } => {
            format!("{bundle_domain}: {authorities} CA(s)")
        }
    }
}

/// RFC 3339 in UTC, to the millisecond.
pub fn format_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_filters_select_everything_newest_last() {
        let (sql, args) = Query::default().to_sql();
        assert!(!sql.contains("WHERE"));
        assert!(args.is_empty());
    }

    #[test]
    fn each_filter_adds_one_numbered_parameter() {
        let q = Query {
            decision_id: Some("d".into()),
            path_prefix: Some("/a%".into()),
            since_ms: Some(5),
            ..Query::default()
        };
        let (sql, args) = q.to_sql();
        assert!(sql.contains("decision_id = ?1"));
        assert!(sql.contains("substr(path, 1, length(?2)) = ?2"));
        assert!(sql.contains("time_ms >= ?3"));
        assert_eq!(args.len(), 3);
    }
}
