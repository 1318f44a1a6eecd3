//! Process-wide counters of the control plane (lock-free atomics), rendered as
//! Prometheus text by the admin endpoint. No I/O here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use super::types::ResourceType;

/// Counters per resource type, indexed in [`ResourceType::PUSH_ORDER`] order.
#[derive(Debug, Default)]
struct PerType([AtomicU64; 4]);

impl PerType {
    fn inc(&self, t: ResourceType) {
        self.0[index(t)].fetch_add(1, Relaxed);
    }
    fn get(&self, t: ResourceType) -> u64 {
        self.0[index(t)].load(Relaxed)
    }
}

fn index(t: ResourceType) -> usize {
    ResourceType::PUSH_ORDER
        .iter()
        .position(|x| *x == t)
        .unwrap_or(0)
}

/// The control plane's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    connected_proxies: AtomicU64,
    streams_total: AtomicU64,
    streams_refused: AtomicU64,
    pushes: PerType,
    acks: PerType,
    nacks: PerType,
    stale_nonces: AtomicU64,
    svids_issued: AtomicU64,
    config_reloads: AtomicU64,
    config_reload_failures: AtomicU64,
    snapshots_published: AtomicU64,
    svid_renewal_failures: AtomicU64,
    ca_rotation_steps: AtomicU64,
    expiry: Mutex<Expiry>,
    ca_forced_activations: AtomicU64,
    ca_expired: std::sync::atomic::AtomicBool,
    left_behind: Mutex<Vec<String>>,
    oversized_refused: AtomicU64,
    stream_resets: Mutex<BTreeMap<String, u64>>,
    attestations: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    attestation_failures: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

/// Gauges set by the control loop's tick (seconds until expiry, negative once past).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// Per workload name.
    pub svids: BTreeMap<String, i64>,
    /// Per CA slot (`current`, `next`, `retired-<serial>`; retired: until it may leave).
    pub cas: BTreeMap<String, i64>,
    /// The trust bundle's sequence.
    pub bundle_sequence: u64,
}

impl Metrics {
    /// A stream became active.
    pub fn stream_opened(&self) {
        self.connected_proxies.fetch_add(1, Relaxed);
        self.streams_total.fetch_add(1, Relaxed);
    }
    /// A stream ended.
    pub fn stream_closed(&self) {
        self.connected_proxies.fetch_sub(1, Relaxed);
    }
    /// A stream was refused (unknown node, failed authorization).
    pub fn stream_refused(&self) {
        self.streams_refused.fetch_add(1, Relaxed);
    }
    /// A response was sent.
    pub fn push(&self, t: ResourceType) {
        self.pushes.inc(t);
    }
    /// Envoy accepted a response.
    pub fn ack(&self, t: ResourceType) {
        self.acks.inc(t);
    }
    /// Envoy rejected a response.
    pub fn nack(&self, t: ResourceType) {
        self.nacks.inc(t);
    }
    /// A request carried a nonce that is not the latest one.
    pub fn stale_nonce(&self) {
        self.stale_nonces.fetch_add(1, Relaxed);
    }
    /// An SVID was minted.
    pub fn svid_issued(&self) {
        self.svids_issued.fetch_add(1, Relaxed);
    }
    /// A config reload was applied.
    pub fn config_reloaded(&self) {
        self.config_reloads.fetch_add(1, Relaxed);
    }
    /// A config reload was rejected.
    pub fn config_reload_failed(&self) {
        self.config_reload_failures.fetch_add(1, Relaxed);
    }
    /// A node snapshot was published.
    pub fn snapshot_published(&self) {
        self.snapshots_published.fetch_add(1, Relaxed);
    }
    /// An SVID renewal failed (the still-valid SVID was kept).
    pub fn svid_renewal_failed(&self) {
        self.svid_renewal_failures.fetch_add(1, Relaxed);
    }
    /// A CA rotation step (prepare, activate, retire) ran.
    pub fn ca_rotation_step(&self) {
        self.ca_rotation_steps.fetch_add(1, Relaxed);
    }
    /// Replaces the expiry gauges.
    pub fn set_expiry(&self, expiry: Expiry) {
        *self.expiry.lock().unwrap_or_else(|p| p.into_inner()) = expiry;
    }
    /// The next CA was activated at its deadline although nodes lagged.
    pub fn ca_forced_activation(&self) {
        self.ca_forced_activations.fetch_add(1, Relaxed);
    }
    /// The nodes a forced activation left behind that have not caught up yet.
    pub fn set_left_behind(&self, nodes: &[String]) {
        *self.left_behind.lock().unwrap_or_else(|p| p.into_inner()) = nodes.to_vec();
    }
    /// Whether the signing CA has expired (no usable SVID can be minted).
    pub fn set_ca_expired(&self, expired: bool) {
        self.ca_expired.store(expired, Relaxed);
    }
    /// True while the signing CA has expired; `/readyz` fails then.
    pub fn ca_expired(&self) -> bool {
        self.ca_expired.load(Relaxed)
    }
    /// A config was refused because a resource exceeded the ADS message limit.
    pub fn oversized_refused(&self) {
        self.oversized_refused.fetch_add(1, Relaxed);
    }
    /// A node's ADS stream ended with an error (reset by the client or the transport).
    pub fn stream_reset(&self, node: &str) {
        *self
            .stream_resets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node.to_string())
            .or_insert(0) += 1;
    }
    /// Stream resets of `node` so far.
    pub fn stream_resets(&self, node: &str) -> u64 {
        let map = self.stream_resets.lock().unwrap_or_else(|p| p.into_inner());
        map.get(node).copied().unwrap_or(0)
    }
    /// SVID renewal failures so far.
    pub fn svid_renewal_failures(&self) -> u64 {
        self.svid_renewal_failures.load(Relaxed)
    }
    /// A caller proved who it is with `method` (`join_token`, `k8s_psat`).
    pub fn attested(&self, method: &'static str) {
        bump(&self.attestations, method);
    }
    /// A caller was refused for `reason` (an `AttestError::reason` label).
    pub fn attestation_failed(&self, reason: &'static str) {
        bump(&self.attestation_failures, reason);
    }
    /// Refusals so far for `reason`.
    pub fn attestation_failures(&self, reason: &str) -> u64 {
        let map = self
            .attestation_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.get(reason).copied().unwrap_or(0)
    }
    /// Currently connected proxies (open ADS streams).
    pub fn connected(&self) -> u64 {
        self.connected_proxies.load(Relaxed)
    }
    /// NACKs received for one type.
    pub fn nacks(&self, t: ResourceType) -> u64 {
        self.nacks.get(t)
    }
    /// ACKs received for one type.
    pub fn acks(&self, t: ResourceType) -> u64 {
        self.acks.get(t)
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let v = v.load(Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let per_type = |out: &mut String, name: &str, help: &str, v: &PerType| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for t in ResourceType::PUSH_ORDER {
                let _ = writeln!(out, "{name}{{type=\"{}\"}} {}", t.short_name(), v.get(t));
            }
        };
        gauge(
            &mut out,
            "warden_xds_connected_proxies",
            "Open ADS streams.",
            self.connected(),
        );
        counter(
            &mut out,
            "warden_xds_streams_total",
            "ADS streams accepted.",
            &self.streams_total,
        );
        counter(
            &mut out,
            "warden_xds_streams_refused_total",
            "ADS streams refused (unknown or unauthorized node).",
            &self.streams_refused,
        );
        per_type(
            &mut out,
            "warden_xds_pushes_total",
            "Discovery responses sent.",
            &self.pushes,
        );
        per_type(
            &mut out,
            "warden_xds_acks_total",
            "Responses accepted by Envoy.",
            &self.acks,
        );
        per_type(
            &mut out,
            "warden_xds_nacks_total",
            "Responses rejected by Envoy.",
            &self.nacks,
        );
        counter(
            &mut out,
            "warden_xds_stale_nonces_total",
            "Requests ignored for a stale nonce.",
            &self.stale_nonces,
        );
        counter(
            &mut out,
            "warden_xds_snapshots_published_total",
            "Node snapshots published.",
            &self.snapshots_published,
        );
        counter(
            &mut out,
            "warden_svids_issued_total",
            "X.509-SVIDs minted.",
            &self.svids_issued,
        );
        counter(
            &mut out,
            "warden_config_reloads_total",
            "Config reloads applied.",
            &self.config_reloads,
        );
        counter(
            &mut out,
            "warden_config_reload_failures_total",
            "Config reloads rejected (last good config kept).",
            &self.config_reload_failures,
        );
        counter(
            &mut out,
            "warden_svid_renewal_failures_total",
            "SVID renewals that failed (the still-valid SVID was kept; retried with backoff).",
            &self.svid_renewal_failures,
        );
        counter(
            &mut out,
            "warden_ca_rotation_steps_total",
            "CA rotation steps run (prepare, activate, retire; automatic or forced).",
            &self.ca_rotation_steps,
        );
        counter(
            &mut out,
            "warden_ca_forced_activations_total",
            "Next CAs activated at their deadline although nodes had not ACKed the bundle.",
            &self.ca_forced_activations,
        );
        gauge(
            &mut out,
            "warden_ca_expired",
            "1 while the signing CA has expired (no usable SVID can be minted; /readyz fails).",
            u64::from(self.ca_expired()),
        );
        let left: BTreeMap<String, i64> = self
            .left_behind
            .lock()
            .map(|l| l.iter().map(|n| (n.clone(), 1)).collect())
            .unwrap_or_default();
        counter(
            &mut out,
            "warden_xds_oversized_refused_total",
            "Config changes refused because a resource exceeds the ADS message limit.",
            &self.oversized_refused,
        );
        let resets: BTreeMap<String, i64> = self
            .stream_resets
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v as i64)).collect())
            .unwrap_or_default();
        let expiry = self.expiry.lock().map(|e| e.clone()).unwrap_or_default();
        let labeled =
            |out: &mut String, name: &str, help: &str, label: &str, v: &BTreeMap<String, i64>| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                for (k, v) in v {
                    let k = k.replace('\\', "\\\\").replace('"', "\\\"");
                    let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {v}");
                }
            };
        labeled(
            &mut out,
            "warden_svid_expiry_seconds",
            "Seconds until each workload's current X.509-SVID expires.",
            "workload",
            &expiry.svids,
        );
        labeled(
            &mut out,
            "warden_ca_expiry_seconds",
            "Seconds until each CA expires (retired CAs: until they may leave the bundle).",
            "slot",
            &expiry.cas,
        );
        labeled(
            &mut out,
            "warden_ca_nodes_left_behind",
            "1 per node a forced CA activation left behind, until it ACKs the new bundle.",
            "node",
            &left,
        );
        let name = "warden_xds_stream_resets_total";
        let _ = writeln!(out, "# HELP {name} ADS streams per node that ended with an error (a reset loop shows here).\n# TYPE {name} counter");
        for (node, n) in &resets {
            let node = node.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{node=\"{node}\"}} {n}");
        }
        gauge(
            &mut out,
            "warden_ca_bundle_sequence",
            "Sequence of the trust bundle (increases when its authorities change).",
            expiry.bundle_sequence,
        );
        let labelled =
            |out: &mut String,
             name: &str,
             help: &str,
             label: &str,
             known: &[&'static str],
             v: &std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>| {
                let mut map = v.lock().unwrap_or_else(|p| p.into_inner()).clone();
                for k in known {
                    map.entry(k).or_insert(0);
                }
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (k, n) in map {
                    let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {n}");
                }
            };
        labelled(
            &mut out,
            "warden_xds_attestations_total",
            "ADS callers that proved their workload, by method.",
            "method",
            &["join_token", "k8s_psat"],
            &self.attestations,
        );
        labelled(
            &mut out,
            "warden_xds_attestation_failures_total",
            "ADS streams refused by attestation, by reason.",
            "reason",
            &crate::attest::AttestError::REASONS,
            &self.attestation_failures,
        );
        out
    }
}

fn bump(map: &std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>, key: &'static str) {
    *map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_insert(0) += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_rendered_resets_per_node_left_behind_nodes_and_an_expired_ca() {
        let m = Metrics::default();
        m.stream_reset("a-sidecar");
        m.stream_reset("a-sidecar");
        m.set_left_behind(&["db-sidecar".to_string()]);
        m.set_ca_expired(true);
        m.oversized_refused();
        let text = m.render();
        for line in [
            "warden_xds_stream_resets_total{node=\"a-sidecar\"} 2",
            "# TYPE warden_xds_stream_resets_total counter",
            "warden_ca_nodes_left_behind{node=\"db-sidecar\"} 1",
            "warden_ca_expired 1",
            "warden_xds_oversized_refused_total 1",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
        m.set_ca_expired(false);
        assert!(m.render().contains("warden_ca_expired 0"));
    }

    #[test]
    fn nacks_are_rendered_per_type() {
        let m = Metrics::default();
        m.nack(ResourceType::Listener);
        m.stream_opened();
        let text = m.render();
        assert!(
            text.contains("warden_xds_nacks_total{type=\"lds\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("warden_xds_nacks_total{type=\"cds\"} 0"),
            "{text}"
        );
        assert!(text.contains("warden_xds_connected_proxies 1"), "{text}");
    }

    #[test]
    fn expiry_gauges_are_rendered_with_labels() {
        let m = Metrics::default();
        let mut e = Expiry::default();
        e.svids.insert("backend".into(), 42);
        e.cas.insert("current".into(), 3600);
        e.bundle_sequence = 2;
        m.set_expiry(e);
        m.svid_renewal_failed();
        let text = m.render();
        assert!(
            text.contains("warden_svid_expiry_seconds{workload=\"backend\"} 42"),
            "{text}"
        );
        assert!(
            text.contains("warden_ca_expiry_seconds{slot=\"current\"} 3600"),
            "{text}"
        );
        assert!(text.contains("warden_ca_bundle_sequence 2"), "{text}");
        assert!(
            text.contains("warden_svid_renewal_failures_total 1"),
            "{text}"
        );
    }
}
