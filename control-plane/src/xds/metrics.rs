//! Process-wide metrics of the control plane, kept in a `prometheus-client` registry (as
//! ztunnel does) and rendered by the admin endpoint in the OpenMetrics text format. No
//! I/O here.
//!
//! Sample names, types, HELP texts and label sets are Warden's public interface
//! (dashboards, alerts, the e2e tests): counters keep their `_total` samples, and label
//! values are escaped (`\`, `"`, newline), which `prometheus-client` leaves to its caller.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::types::ResourceType;

/// `Content-Type` of [`Metrics::render`] once [`EOF`] ends it.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The line that ends an OpenMetrics exposition (after any text appended to `render`).
pub const EOF: &str = "# EOF\n";

/// A label value, escaped for the text format on output.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Escaped(String);

impl EncodeLabelValue for Escaped {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// One label: `name="value"`.
type Label = [(&'static str, Escaped); 1];

fn label(name: &'static str, value: &str) -> Label {
    [(name, Escaped(value.to_string()))]
}

type Counters = Family<Label, Counter>;
type Gauges = Family<Label, Gauge>;

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

/// The control plane's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connected_proxies: Gauge,
    streams_total: Counter,
    streams_refused: Counter,
    pushes: Counters,
    acks: Counters,
    nacks: Counters,
    stale_nonces: Counter,
    snapshots_published: Counter,
    svids_issued: Counter,
    config_reloads: Counter,
    config_reload_failures: Counter,
    svid_renewal_failures: Counter,
    ca_rotation_steps: Counter,
    ca_forced_activations: Counter,
    ca_expired: Gauge,
    oversized_refused: Counter,
    svid_expiry: Gauges,
    ca_expiry: Gauges,
    left_behind: Gauges,
    stream_resets: Counters,
    bundle_sequence: Gauge,
    attestations: Counters,
    attestation_failures: Counters,
    federation_refreshes: Counters,
    federation_failures: Counters,
    federation_sequence: Gauges,
    federation_expiry: Gauges,
    /// Held while a gauge family is replaced and while rendering, so a scrape never sees
    /// one half rebuilt.
    replacing: Mutex<()>,
}

/// Registers metrics under their exposition names: `prometheus-client` adds `_total` to
/// counter samples and a full stop to HELP, so both are taken off here.
struct Registrar<'r>(&'r mut Registry);

impl Registrar<'_> {
    fn counter<M>(&mut self, sample: &str, help: &str, metric: &M) -> M
    where
        M: prometheus_client::registry::Metric + Clone,
    {
        let name = sample.strip_suffix("_total").unwrap_or(sample);
        self.gauge(name, help, metric)
    }

    fn gauge<M>(&mut self, name: &str, help: &str, metric: &M) -> M
    where
        M: prometheus_client::registry::Metric + Clone,
    {
        let help = help.strip_suffix('.').unwrap_or(help);
        self.0.register(name, help, metric.clone());
        metric.clone()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric registered, at zero; per-type and per-method/-reason series exist
    /// from the start so a dashboard sees 0 rather than nothing.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let mut r = Registrar(&mut registry);
        let per_type = |f: &Counters| {
            for t in ResourceType::PUSH_ORDER {
                f.get_or_create(&label("type", t.short_name())).get();
            }
        };
        let m = Metrics {
            connected_proxies: r.gauge(
                "warden_xds_connected_proxies",
                "Open ADS streams.",
                &Gauge::default(),
            ),
            streams_total: r.counter(
                "warden_xds_streams_total",
                "ADS streams accepted.",
                &Counter::default(),
            ),
            streams_refused: r.counter(
                "warden_xds_streams_refused_total",
                "ADS streams refused (unknown or unauthorized node).",
                &Counter::default(),
            ),
            pushes: r.counter(
                "warden_xds_pushes_total",
                "Discovery responses sent.",
                &Counters::default(),
            ),
            acks: r.counter(
                "warden_xds_acks_total",
                "Responses accepted by Envoy.",
                &Counters::default(),
            ),
            nacks: r.counter(
                "warden_xds_nacks_total",
                "Responses rejected by Envoy.",
                &Counters::default(),
            ),
            stale_nonces: r.counter(
                "warden_xds_stale_nonces_total",
                "Requests ignored for a stale nonce.",
                &Counter::default(),
            ),
            snapshots_published: r.counter(
                "warden_xds_snapshots_published_total",
                "Node snapshots published.",
                &Counter::default(),
            ),
            svids_issued: r.counter(
                "warden_svids_issued_total",
                "X.509-SVIDs minted.",
                &Counter::default(),
            ),
            config_reloads: r.counter(
                "warden_config_reloads_total",
                "Config reloads applied.",
                &Counter::default(),
            ),
            config_reload_failures: r.counter(
                "warden_config_reload_failures_total",
                "Config reloads rejected (last good config kept).",
                &Counter::default(),
            ),
            svid_renewal_failures: r.counter(
                "warden_svid_renewal_failures_total",
                "SVID renewals that failed (the still-valid SVID was kept; retried with backoff).",
                &Counter::default(),
            ),
            ca_rotation_steps: r.counter(
                "warden_ca_rotation_steps_total",
                "CA rotation steps run (prepare, activate, retire; automatic or forced).",
                &Counter::default(),
            ),
            ca_forced_activations: r.counter(
                "warden_ca_forced_activations_total",
                "Next CAs activated at their deadline although nodes had not ACKed the bundle.",
                &Counter::default(),
            ),
            ca_expired: r.gauge(
                "warden_ca_expired",
                "1 while the signing CA has expired (no usable SVID can be minted; /readyz fails).",
                &Gauge::default(),
            ),
            oversized_refused: r.counter(
                "warden_xds_oversized_refused_total",
                "Config changes refused because a resource exceeds the ADS message limit.",
                &Counter::default(),
            ),
            svid_expiry: r.gauge(
                "warden_svid_expiry_seconds",
                "Seconds until each workload's current X.509-SVID expires.",
                &Gauges::default(),
            ),
            ca_expiry: r.gauge(
                "warden_ca_expiry_seconds",
                "Seconds until each CA expires (retired CAs: until they may leave the bundle).",
                &Gauges::default(),
            ),
            left_behind: r.gauge(
                "warden_ca_nodes_left_behind",
                "1 per node a forced CA activation left behind, until it ACKs the new bundle.",
                &Gauges::default(),
            ),
            stream_resets: r.counter(
                "warden_xds_stream_resets_total",
                "ADS streams per node that ended with an error (a reset loop shows here).",
                &Counters::default(),
            ),
            bundle_sequence: r.gauge(
                "warden_ca_bundle_sequence",
                "Sequence of the trust bundle (increases when its authorities change).",
                &Gauge::default(),
            ),
            attestations: r.counter(
                "warden_xds_attestations_total",
                "ADS callers that proved their workload, by method.",
                &Counters::default(),
            ),
            attestation_failures: r.counter(
                "warden_xds_attestation_failures_total",
                "ADS streams refused by attestation, by reason.",
                &Counters::default(),
            ),
            federation_refreshes: r.counter(
                "warden_federation_refreshes_total",
                "Foreign bundles fetched and accepted, by trust domain.",
                &Counters::default(),
            ),
            federation_failures: r.counter(
                "warden_federation_refresh_failures_total",
                "Foreign bundle fetches that failed or were refused (last good bundle kept), by trust domain.",
                &Counters::default(),
            ),
            federation_sequence: r.gauge(
                "warden_federation_bundle_sequence",
                "Sequence of the bundle in use for each federated trust domain.",
                &Gauges::default(),
            ),
            federation_expiry: r.gauge(
                "warden_federation_bundle_expiry_timestamp_seconds",
                "Unix time when the earliest CA of each federated trust domain's bundle in use expires.",
                &Gauges::default(),
            ),
            replacing: Mutex::new(()),
            registry,
        };
        per_type(&m.pushes);
        per_type(&m.acks);
        per_type(&m.nacks);
        for method in ["join_token", "k8s_psat"] {
            m.attestations.get_or_create(&label("method", method)).get();
        }
        for reason in crate::attest::AttestError::REASONS {
            m.attestation_failures
                .get_or_create(&label("reason", reason))
                .get();
        }
        m
    }

    /// A stream became active.
    pub fn stream_opened(&self) {
        self.connected_proxies.inc();
        self.streams_total.inc();
    }
    /// A stream ended.
    pub fn stream_closed(&self) {
        self.connected_proxies.dec();
    }
    /// A stream was refused (unknown node, failed authorization).
    pub fn stream_refused(&self) {
        self.streams_refused.inc();
    }
    /// A response was sent.
    pub fn push(&self, t: ResourceType) {
        self.pushes
            .get_or_create(&label("type", t.short_name()))
            .inc();
    }
    /// Envoy accepted a response.
    pub fn ack(&self, t: ResourceType) {
        self.acks
            .get_or_create(&label("type", t.short_name()))
            .inc();
    }
    /// Envoy rejected a response.
    pub fn nack(&self, t: ResourceType) {
        self.nacks
            .get_or_create(&label("type", t.short_name()))
            .inc();
    }
    /// A request carried a nonce that is not the latest one.
    pub fn stale_nonce(&self) {
        self.stale_nonces.inc();
    }
    /// An SVID was minted.
    pub fn svid_issued(&self) {
        self.svids_issued.inc();
    }
    /// A config reload was applied.
    pub fn config_reloaded(&self) {
        self.config_reloads.inc();
    }
    /// A config reload was rejected.
    pub fn config_reload_failed(&self) {
        self.config_reload_failures.inc();
    }
    /// A node snapshot was published.
    pub fn snapshot_published(&self) {
        self.snapshots_published.inc();
    }
    /// An SVID renewal failed (the still-valid SVID was kept).
    pub fn svid_renewal_failed(&self) {
        self.svid_renewal_failures.inc();
    }
    /// A CA rotation step (prepare, activate, retire) ran.
    pub fn ca_rotation_step(&self) {
        self.ca_rotation_steps.inc();
    }
    /// Replaces the expiry gauges.
    pub fn set_expiry(&self, expiry: Expiry) {
        let _replacing = self.replacing.lock().unwrap_or_else(|p| p.into_inner());
        replace(&self.svid_expiry, "workload", &expiry.svids);
        replace(&self.ca_expiry, "slot", &expiry.cas);
        self.bundle_sequence
            .set(i64::try_from(expiry.bundle_sequence).unwrap_or(i64::MAX));
    }
    /// The next CA was activated at its deadline although nodes lagged.
    pub fn ca_forced_activation(&self) {
        self.ca_forced_activations.inc();
    }
    /// The nodes a forced activation left behind that have not caught up yet.
    pub fn set_left_behind(&self, nodes: &[String]) {
        let _replacing = self.replacing.lock().unwrap_or_else(|p| p.into_inner());
        let ones: BTreeMap<String, i64> = nodes.iter().map(|n| (n.clone(), 1)).collect();
        replace(&self.left_behind, "node", &ones);
    }
    /// Whether the signing CA has expired (no usable SVID can be minted).
    pub fn set_ca_expired(&self, expired: bool) {
        self.ca_expired.set(i64::from(expired));
    }
    /// True while the signing CA has expired; `/readyz` fails then.
    pub fn ca_expired(&self) -> bool {
        self.ca_expired.get() != 0
    }
    /// A config was refused because a resource exceeded the ADS message limit.
    pub fn oversized_refused(&self) {
        self.oversized_refused.inc();
    }
    /// A node's ADS stream ended with an error (reset by the client or the transport).
    pub fn stream_reset(&self, node: &str) {
        self.stream_resets.get_or_create(&label("node", node)).inc();
    }
    /// A foreign bundle of `td` was fetched and accepted; `sequence` is now in use.
    pub fn federation_refreshed(&self, td: &str, sequence: u64) {
        self.federation_refreshes
            .get_or_create(&label("trust_domain", td))
            .inc();
        self.federation_sequence
            .get_or_create(&label("trust_domain", td))
            .set(i64::try_from(sequence).unwrap_or(i64::MAX));
    }
    /// The bundle of `td` in use expires (earliest CA) at `unix` seconds.
    pub fn federation_expires(&self, td: &str, unix: u64) {
        self.federation_expiry
            .get_or_create(&label("trust_domain", td))
            .set(i64::try_from(unix).unwrap_or(i64::MAX));
    }
    /// A fetch of `td`'s bundle failed or was refused.
    pub fn federation_failed(&self, td: &str) {
        self.federation_failures
            .get_or_create(&label("trust_domain", td))
            .inc();
    }
    /// Stream resets of `node` so far.
    pub fn stream_resets(&self, node: &str) -> u64 {
        self.stream_resets
            .get(&label("node", node))
            .map_or(0, |c| c.get())
    }
    /// SVID renewal failures so far.
    pub fn svid_renewal_failures(&self) -> u64 {
        self.svid_renewal_failures.get()
    }
    /// A caller proved who it is with `method` (`join_token`, `k8s_psat`).
    pub fn attested(&self, method: &'static str) {
        self.attestations
            .get_or_create(&label("method", method))
            .inc();
    }
    /// A caller was refused for `reason` (an `AttestError::reason` label).
    pub fn attestation_failed(&self, reason: &'static str) {
        self.attestation_failures
            .get_or_create(&label("reason", reason))
            .inc();
    }
    /// Refusals so far for `reason`.
    pub fn attestation_failures(&self, reason: &str) -> u64 {
        self.attestation_failures
            .get(&label("reason", reason))
            .map_or(0, |c| c.get())
    }
    /// Currently connected proxies (open ADS streams).
    pub fn connected(&self) -> u64 {
        u64::try_from(self.connected_proxies.get()).unwrap_or(0)
    }
    /// NACKs received for one type.
    pub fn nacks(&self, t: ResourceType) -> u64 {
        self.nacks
            .get(&label("type", t.short_name()))
            .map_or(0, |c| c.get())
    }
    /// ACKs received for one type.
    pub fn acks(&self, t: ResourceType) -> u64 {
        self.acks
            .get(&label("type", t.short_name()))
            .map_or(0, |c| c.get())
    }

    /// Every metric in the OpenMetrics text format, without the closing [`EOF`] line (the
    /// admin endpoint appends its NACK gauges, then `EOF`).
    pub fn render(&self) -> String {
        let _replacing = self.replacing.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        // Writing into a `String` cannot fail; a failing metric would end the text early,
        // never panic.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        out
    }
}

/// Replaces every series of `family` with `values` (callers hold `replacing`).
fn replace(family: &Gauges, name: &'static str, values: &BTreeMap<String, i64>) {
    family.clear();
    for (k, v) in values {
        family.get_or_create(&label(name, k)).set(*v);
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
