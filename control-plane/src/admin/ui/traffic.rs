//! Calls between workloads, with allow / deny counts, read from the sidecars' Envoy admin
//! `/stats` (Warden has no audit trail of single decisions yet, issue #20; metrics are the
//! source). Per call edge `from → to`, the caller's sidecar counts responses of its
//! `upstream-<to>` cluster by status: `2xx` allowed through, the configured deny status
//! (403 by default) denied. Per destination, the `warden_authz.*` counters of the
//! destination's filter count its decisions (allowed, denied, dry-run denied, errors).
//!
//! Each sidecar is asked once per request with a short timeout; an unreachable sidecar is
//! reported, never waited for. Parsing is pure (tested below); [`collect`] does the I/O.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::http_client::{self, HttpError, Limits};

/// How long one sidecar may take to answer.
const TIMEOUT: Duration = Duration::from_millis(1500);
/// The most bytes read from one sidecar's stats.
const MAX_BYTES: usize = 4 << 20;
/// Only the stats the dashboard shows (RE2, URL-encoded): filter counters and upstream
/// response codes.
const STATS_PATH: &str = "/stats?format=json&filter=warden_authz%7Cupstream_rq_";

/// Errors reading one sidecar's stats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrafficError {
    /// No answer in time, or the connection failed.
    #[error("sidecar admin {addr} did not answer: {detail}")]
    Unreachable {
        /// Admin address.
        addr: String,
        /// What happened.
        detail: String,
    },
    /// The answer was not the stats JSON.
    #[error("sidecar admin {addr} answered something else: {detail}")]
    BadAnswer {
        /// Admin address.
        addr: String,
        /// What was wrong.
        detail: String,
    },
}

/// The destination filter's decision counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Decisions {
    /// Allowed by the policy.
    pub allowed: u64,
    /// Denied and refused.
    pub denied: u64,
    /// Denied but let through (dry-run).
    pub dry_run_denied: u64,
    /// Denies that came from an error.
    pub errors: u64,
}

/// One sidecar's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Sidecar {
    /// Workload name.
    pub workload: String,
    /// Its admin address.
    pub admin: String,
    /// Why its stats could not be read, if so.
    pub error: Option<String>,
    /// Its filter's decisions (as destination).
    pub decisions: Decisions,
}

/// Calls from one workload to another.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// Caller workload.
    pub from: String,
    /// Called workload.
    pub to: String,
    /// Responses with a 2xx status.
    pub allowed: u64,
    /// Responses with the deny status.
    pub denied: u64,
    /// Every other response.
    pub other: u64,
}

/// Everything `/ui/api/traffic` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Traffic {
    /// When it was read (seconds since the Unix epoch).
    pub at_unix: u64,
    /// The HTTP status a deny answers with.
    pub deny_status: u16,
    /// Per workload, its sidecar's answer.
    pub sidecars: Vec<Sidecar>,
    /// Per configured upstream, the calls.
    pub edges: Vec<Edge>,
}

/// Reads every sidecar's stats (concurrently) and builds the view.
pub async fn collect(cfg: &Config) -> Traffic {
    let reads = cfg.workloads.iter().map(|w| fetch(w.sidecar_admin));
    let answers = futures::future::join_all(reads).await;
    let deny_status = cfg.policy.deny_status;
    let mut sidecars = Vec::new();
    let mut edges = Vec::new();
    for (w, answer) in cfg.workloads.iter().zip(answers) {
        let addr = w.sidecar_admin.to_string();
        let stats = answer.and_then(|text| {
            parse_stats(&text).map_err(|e| match e {
                TrafficError::BadAnswer { detail, .. } => TrafficError::BadAnswer {
                    addr: addr.clone(),
                    detail,
                },
                other => other,
            })
        });
        let (stats, error) = match stats {
            Ok(stats) => (stats, None),
            Err(e) => (BTreeMap::new(), Some(e.to_string())),
        };
        for upstream in &w.upstreams {
            edges.push(edge(&stats, &w.name, &upstream.workload, deny_status));
        }
        sidecars.push(Sidecar {
            workload: w.name.clone(),
            admin: w.sidecar_admin.to_string(),
            error,
            decisions: decisions(&stats),
        });
    }
    Traffic {
        at_unix: crate::xds::status::unix_seconds(std::time::SystemTime::now()),
        deny_status,
        sidecars,
        edges,
    }
}

/// Envoy's `/stats?format=json` counters and gauges by name (histograms left out).
pub fn parse_stats(text: &str) -> Result<BTreeMap<String, u64>, TrafficError> {
    let bad = |detail: String| TrafficError::BadAnswer {
        addr: String::new(),
        detail,
    };
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let stats = doc
        .get("stats")
        .and_then(|s| s.as_array())
        .ok_or_else(|| bad("no `stats` array".into()))?;
    Ok(stats
        .iter()
        .filter_map(|s| {
            Some((
                s.get("name")?.as_str()?.to_string(),
                s.get("value")?.as_u64()?,
            ))
        })
        .collect())
}

/// The calls `from → to`, from the caller's `upstream-<to>` cluster response codes.
pub fn edge(stats: &BTreeMap<String, u64>, from: &str, to: &str, deny_status: u16) -> Edge {
    let prefix = format!("cluster.upstream-{to}.upstream_rq_");
    let mut out = Edge {
        from: from.to_string(),
        to: to.to_string(),
        ..Edge::default()
    };
    for (name, value) in stats.range(prefix.clone()..) {
        let Some(code) = name.strip_prefix(&prefix) else {
            break;
        };
        // Exact codes only (`upstream_rq_403`), not classes (`2xx`) or `completed`.
        let Ok(code) = code.parse::<u16>() else {
            continue;
        };
        match code {
            200..=299 => out.allowed += value,
            c if c == deny_status => out.denied += value,
            _ => out.other += value,
        }
    }
    out
}

/// The filter's counters, whatever prefix Envoy gives custom Wasm metrics.
pub fn decisions(stats: &BTreeMap<String, u64>) -> Decisions {
    let mut out = Decisions::default();
    for (name, value) in stats {
        let Some((_, counter)) = name.rsplit_once("warden_authz.") else {
            continue;
        };
        match counter {
            "allowed" => out.allowed += value,
            "denied" => out.denied += value,
            "dry_run_denied" => out.dry_run_denied += value,
            "errors" => out.errors += value,
            _ => {}
        }
    }
    out
}

async fn fetch(addr: SocketAddr) -> Result<String, TrafficError> {
    let limits = Limits {
        connect: TIMEOUT,
        answer: TIMEOUT,
        max_body: MAX_BYTES,
    };
    let (code, body) = http_client::request(addr, "GET", STATS_PATH, limits)
        .await
        .map_err(|e| match e {
            HttpError::Body(_) | HttpError::Protocol(_) => TrafficError::BadAnswer {
                addr: addr.to_string(),
                detail: e.to_string(),
            },
            _ => TrafficError::Unreachable {
                addr: addr.to_string(),
                detail: e.to_string(),
            },
        })?;
    if code != 200 {
        return Err(TrafficError::BadAnswer {
            addr: addr.to_string(),
            detail: format!("status {code}"),
        });
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn an_edge_counts_2xx_as_allowed_and_the_deny_status_as_denied() {
        let s = stats(&[
            ("cluster.upstream-backend.upstream_rq_200", 5),
            ("cluster.upstream-backend.upstream_rq_204", 1),
            ("cluster.upstream-backend.upstream_rq_2xx", 6),
            ("cluster.upstream-backend.upstream_rq_403", 2),
            ("cluster.upstream-backend.upstream_rq_4xx", 3),
            ("cluster.upstream-backend.upstream_rq_404", 1),
            ("cluster.upstream-backend.upstream_rq_completed", 9),
            ("cluster.upstream-backend2.upstream_rq_403", 7),
        ]);
        let e = edge(&s, "frontend", "backend", 403);
        assert_eq!((e.allowed, e.denied, e.other), (6, 2, 1));
        assert_eq!(edge(&s, "frontend", "backend", 401).denied, 0);
    }

    #[test]
    fn filter_counters_are_found_under_any_prefix() {
        let s = stats(&[
            ("wasmcustom.warden_authz.allowed", 3),
            ("warden_authz.denied", 2),
            ("wasmcustom.warden_authz.errors", 1),
            ("cluster.x.upstream_rq_200", 9),
        ]);
        let d = decisions(&s);
        assert_eq!(
            (d.allowed, d.denied, d.errors, d.dry_run_denied),
            (3, 2, 1, 0)
        );
    }

    #[test]
    fn envoy_stats_json_is_parsed_and_histograms_are_skipped() {
        let s = parse_stats(r#"{"stats":[{"name":"a.b","value":4},{"histograms":{}}]}"#)
            .unwrap_or_default();
        assert_eq!(s.get("a.b"), Some(&4));
        assert!(parse_stats("<html>").is_err());
        assert!(parse_stats("{}").is_err());
    }

    #[tokio::test]
    async fn a_sidecar_that_never_answers_is_reported_within_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
        let Ok(listener) = listener else { return };
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        // Accept and hold the connection without answering.
        let hold = tokio::spawn(async move {
            let conn = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(conn);
        });
        let started = std::time::Instant::now();
        let answer = fetch(addr).await;
        assert!(
            matches!(answer, Err(TrafficError::Unreachable { .. })),
            "{answer:?}"
        );
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(1));
        hold.abort();
    }
}
