//! What each node was last sent, what it ACKed and its last NACK: the data behind the
//! admin `/config_dump`. Written by the stream tasks, read by the admin endpoint.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use super::types::{NodeId, Nonce, ResourceType, Version};

/// A rejected response, as Envoy reported it. NACKs are data: logged, counted, shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The version Envoy rejected.
    pub rejected_version: Version,
    /// The nonce of the rejected response.
    pub nonce: Nonce,
    /// Envoy's `error_detail.message`.
    pub error_detail: String,
    /// Seconds since the Unix epoch.
    pub at_unix: u64,
}

/// One type's state on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeStatus {
    /// Version of the last response sent.
    pub version_sent: Option<Version>,
    /// Nonce of the last response sent.
    pub nonce_sent: Option<Nonce>,
    /// Last version Envoy ACKed.
    pub version_acked: Option<Version>,
    /// Last NACK (kept after later ACKs, for the record).
    pub last_nack: Option<Rejection>,
    /// Whether the latest response is NACKed (cleared by the next ACK).
    pub rejected: bool,
    /// Since when the type has been stuck in NACK (the first NACK since the last ACK),
    /// seconds since the Unix epoch; `None` once ACKed.
    pub rejected_since_unix: Option<u64>,
}

/// One node's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// Open streams for this node id.
    pub streams: u32,
    /// `sotw` or `delta` for the latest stream.
    pub protocol: Option<&'static str>,
    /// Per type, by short name (`cds`, `lds`, `sds`, `ecds`).
    pub types: BTreeMap<&'static str, TypeStatus>,
}

/// Status of every node that has connected since start.
#[derive(Debug, Default)]
pub struct StatusRegistry {
    nodes: Mutex<BTreeMap<NodeId, NodeStatus>>,
}

impl StatusRegistry {
    fn with<R>(&self, node: &NodeId, f: impl FnOnce(&mut NodeStatus) -> R) -> R {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        f(nodes.entry(node.clone()).or_default())
    }

    /// A stream for `node` opened.
    pub fn connected(&self, node: &NodeId, protocol: &'static str) {
        self.with(node, |n| {
            n.streams += 1;
            n.protocol = Some(protocol);
        });
    }
    /// A stream for `node` closed.
    pub fn disconnected(&self, node: &NodeId) {
        self.with(node, |n| n.streams = n.streams.saturating_sub(1));
    }
    /// A response was sent.
    pub fn sent(
        &self,
        node: &NodeId,
        t: ResourceType,
        version: impl Into<Version>,
        nonce: impl Into<Nonce>,
    ) {
        let (version, nonce) = (version.into(), nonce.into());
        self.with(node, |n| {
            let s = n.types.entry(t.short_name()).or_default();
            s.version_sent = Some(version);
            s.nonce_sent = Some(nonce);
        });
    }
    /// Envoy ACKed `version`.
    pub fn acked(&self, node: &NodeId, t: ResourceType, version: impl Into<Version>) {
        let version = version.into();
        self.with(node, |n| {
            let s = n.types.entry(t.short_name()).or_default();
            s.version_acked = Some(version);
            s.rejected = false;
            s.rejected_since_unix = None;
        });
    }
    /// Envoy NACKed a response.
    pub fn nacked(&self, node: &NodeId, t: ResourceType, rejection: Rejection) {
        self.with(node, |n| {
            let s = n.types.entry(t.short_name()).or_default();
            s.rejected_since_unix = s.rejected_since_unix.or(Some(rejection.at_unix));
            s.last_nack = Some(rejection);
            s.rejected = true;
        });
    }
    /// Open streams of `node` now (0 when unknown).
    pub fn open_streams(&self, node: &NodeId) -> u32 {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.get(node).map_or(0, |n| n.streams)
    }
    /// Drops a node's record (a forgotten instance), so the registry stays bounded.
    pub fn forget(&self, node: &NodeId) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if nodes.get(node).is_some_and(|n| n.streams == 0) {
            nodes.remove(node);
        }
    }
    /// A copy of everything, for the config dump.
    pub fn dump(&self) -> BTreeMap<String, NodeStatus> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
}

/// Prometheus lines: per node and type stuck in NACK, for how many seconds (gauge
/// `warden_xds_rejected_seconds`; a type leaves it with its next ACK).
pub fn render_rejected(nodes: &BTreeMap<String, NodeStatus>, now_unix: u64) -> String {
    let name = "warden_xds_rejected_seconds";
    let mut out = format!(
        "# HELP {name} Seconds each node's resource type has been stuck in NACK (Envoy runs its last good config).\n# TYPE {name} gauge\n"
    );
    for (node, st) in nodes {
        for (t, ts) in &st.types {
            if let Some(since) = ts.rejected_since_unix.filter(|_| ts.rejected) {
                let node = node.replace('\\', "\\\\").replace('"', "\\\"");
                out.push_str(&format!(
                    "{name}{{node=\"{node}\",type=\"{t}\"}} {}\n",
                    now_unix.saturating_sub(since)
                ));
            }
        }
    }
    out
}

/// Prometheus lines: per workload (its node id, a bounded label), how many instances
/// have a stream open (gauge `warden_workload_instances_connected`).
pub fn render_instances(nodes: &BTreeMap<String, NodeStatus>) -> String {
    let name = "warden_workload_instances_connected";
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for (key, st) in nodes {
        let node = key.split_once('/').map_or(key.as_str(), |(n, _)| n);
        let c = counts.entry(node).or_insert(0);
        if st.streams > 0 {
            *c += 1;
        }
    }
    let mut out = format!(
        "# HELP {name} Instances (sidecars) of each workload with an ADS stream open, by the workload's node id.\n# TYPE {name} gauge\n"
    );
    for (node, n) in counts {
        let node = node.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str(&format!("{name}{{node=\"{node}\"}} {n}\n"));
    }
    out
}

/// Seconds since the Unix epoch for `t` (0 before the epoch).
pub use crate::identity::unix_secs as unix_seconds;

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(at_unix: u64) -> Rejection {
        Rejection {
            rejected_version: "v2".into(),
            nonce: "3".into(),
            error_detail: "bad".into(),
            at_unix,
        }
    }

    #[test]
    fn a_type_stuck_in_nack_shows_since_when_until_its_next_ack() {
        let reg = StatusRegistry::default();
        let node = NodeId::new("backend-sidecar");
        reg.nacked(&node, ResourceType::Listener, rejection(100));
        reg.nacked(&node, ResourceType::Listener, rejection(130));
        let dump = reg.dump();
        assert_eq!(
            dump["backend-sidecar"].types["lds"].rejected_since_unix,
            Some(100)
        );
        let text = render_rejected(&dump, 145);
        assert!(
            text.contains("warden_xds_rejected_seconds{node=\"backend-sidecar\",type=\"lds\"} 45"),
            "{text}"
        );
        reg.acked(&node, ResourceType::Listener, "v3");
        let dump = reg.dump();
        assert_eq!(
            dump["backend-sidecar"].types["lds"].rejected_since_unix,
            None
        );
        assert!(!render_rejected(&dump, 200).contains("backend-sidecar"));
    }

    #[test]
    fn connected_instances_are_counted_per_workload_not_per_instance() {
        let reg = StatusRegistry::default();
        for n in ["backend/b-1", "backend/b-2", "backend/b-3", "frontend"] {
            reg.connected(&NodeId::new(n), "sotw");
        }
        reg.disconnected(&NodeId::new("backend/b-3"));
        let text = render_instances(&reg.dump());
        assert!(
            text.contains("warden_workload_instances_connected{node=\"backend\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("warden_workload_instances_connected{node=\"frontend\"} 1"),
            "{text}"
        );
        assert!(!text.contains("b-1"), "no per-instance label: {text}");
        reg.forget(&NodeId::new("backend/b-3"));
        reg.forget(&NodeId::new("backend/b-1"));
        assert_eq!(reg.dump().len(), 3, "only the closed one is forgotten");
    }

    #[test]
    fn the_config_dump_shows_versions_and_nonces_as_plain_strings() {
        let reg = StatusRegistry::default();
        let node = NodeId::new("n1");
        reg.sent(
            &node,
            ResourceType::Secret,
            Version::new("v9"),
            Nonce::nth(4),
        );
        reg.acked(&node, ResourceType::Secret, "v9");
        reg.nacked(&node, ResourceType::Listener, rejection(7));
        let json = serde_json::to_value(reg.dump()).unwrap();
        let sds = &json["n1"]["types"]["sds"];
        assert_eq!(sds["version_sent"], "v9");
        assert_eq!(sds["nonce_sent"], "4");
        assert_eq!(sds["version_acked"], "v9");
        let nack = &json["n1"]["types"]["lds"]["last_nack"];
        assert_eq!(nack["rejected_version"], "v2");
        assert_eq!(nack["nonce"], "3");
    }
}
