//! What a sidecar claims to be in its first discovery request: `node.id` (the instance
//! name, e.g. the pod name), `node.cluster` (the workload's node id) and the metadata
//! field `INSTANCE_IP` (the instance's own address). Pure: parsing and the naming rules;
//! whether the credential backs the claim is `attest`'s business, creating the instance
//! the control plane's.
//!
//! Backward compatible: a node whose `id` equals its workload's node id (cluster empty or
//! equal to the id) is that workload's single default instance. The key the control plane
//! files an instance under is `xds::node`'s.

use std::net::IpAddr;

/// Longest instance name (a DNS subdomain, like a Kubernetes pod name).
pub const MAX_INSTANCE_LEN: usize = 253;

/// The node metadata field holding the instance's own IP address.
pub const INSTANCE_IP_FIELD: &str = "INSTANCE_IP";

/// Why a claim cannot be used (the stream is refused with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// `node.id` is empty.
    #[error("the first discovery request must carry node.id")]
    NoId,
    /// `node.id` is not an instance name.
    #[error("node.id `{0}` is not an instance name: use 1-253 of `[a-z0-9.-]` (a pod name), starting and ending with a letter or digit")]
    BadInstance(String),
    /// `INSTANCE_IP` is present but not a unicast IP address.
    #[error(
        "node metadata INSTANCE_IP `{0}` is not a unicast IP address (the instance's own address)"
    )]
    BadInstanceIp(String),
}

/// The node identity a stream claims.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeClaim {
    /// `node.id`.
    pub id: String,
    /// `node.cluster` (empty when unset).
    pub cluster: String,
    /// `node.metadata.INSTANCE_IP`, unparsed (checked by [`NodeClaim::instance_ip`]).
    pub instance_ip: Option<String>,
}

impl NodeClaim {
    /// A default-instance claim for `node_id` (what today's bootstraps send).
    pub fn node(node_id: impl Into<String>) -> Self {
        Self {
            id: node_id.into(),
            ..Self::default()
        }
    }

    /// A claim for instance `instance` of the workload with node id `node_id`.
    pub fn instance(node_id: impl Into<String>, instance: impl Into<String>) -> Self {
        Self {
            id: instance.into(),
            cluster: node_id.into(),
            instance_ip: None,
        }
    }

    /// The workload's node id this claim names: `cluster`, or `id` when cluster is empty.
    pub fn workload_node_id(&self) -> &str {
        if self.cluster.is_empty() {
            &self.id
        } else {
            &self.cluster
        }
    }

    /// The instance name, `None` for the workload's default instance.
    pub fn instance_name(&self) -> Option<&str> {
        (!self.cluster.is_empty() && self.cluster != self.id).then_some(self.id.as_str())
    }

    /// Checks the id (an instance name unless this is the default instance) and the
    /// `INSTANCE_IP` syntax.
    pub fn check(&self) -> Result<(), ClaimError> {
        if self.id.is_empty() {
            return Err(ClaimError::NoId);
        }
        if let Some(name) = self.instance_name() {
            if !is_instance_name(name) {
                return Err(ClaimError::BadInstance(clip(name)));
            }
        }
        self.instance_ip().map(|_| ())
    }

    /// `INSTANCE_IP`, parsed (`None` when absent).
    pub fn instance_ip(&self) -> Result<Option<IpAddr>, ClaimError> {
        match &self.instance_ip {
            None => Ok(None),
            // A unicast address: the instance's listener and app bind it.
            Some(s) => s
                .parse::<IpAddr>()
                .ok()
                .filter(|ip| !ip.is_unspecified() && !ip.is_multicast())
                .map(Some)
                .ok_or_else(|| ClaimError::BadInstanceIp(clip(s))),
        }
    }
}

/// 1-253 of `[a-z0-9.-]`, starting and ending with a letter or digit (a DNS subdomain,
/// what Kubernetes allows for pod names). Bounded so metrics and logs stay bounded.
pub fn is_instance_name(name: &str) -> bool {
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=MAX_INSTANCE_LEN).contains(&name.len())
        && name.bytes().next().is_some_and(edge)
        && name.bytes().last().is_some_and(edge)
        && name.bytes().all(|c| edge(c) || c == b'.' || c == b'-')
}

/// At most 80 characters of untrusted text for an error message, control characters
/// escaped.
fn clip(s: &str) -> String {
    let short: String = s.chars().take(80).collect();
    let mut out = short.escape_debug().to_string();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_whose_id_is_the_node_id_is_the_default_instance() {
        assert_eq!(NodeClaim::node("backend").instance_name(), None);
        assert_eq!(
            NodeClaim::instance("backend", "backend").instance_name(),
            None
        );
        let c = NodeClaim::instance("backend", "backend-7f9c-x2");
        assert_eq!(c.workload_node_id(), "backend");
        assert_eq!(c.instance_name(), Some("backend-7f9c-x2"));
        assert!(c.check().is_ok());
    }

    #[test]
    fn instance_names_outside_the_pod_name_charset_are_refused() {
        for bad in [
            "Upper",
            "a/b",
            "-lead",
            "trail-",
            "sp ace",
            "new\nline",
            "ünï",
            "a_b",
            &"a".repeat(254),
        ] {
            let c = NodeClaim::instance("backend", bad);
            assert!(
                matches!(c.check(), Err(ClaimError::BadInstance(_))),
                "{bad:?}"
            );
        }
        assert!(NodeClaim::instance("backend", "a".repeat(253))
            .check()
            .is_ok());
        assert!(NodeClaim::instance("backend", "pod-1.zone-b")
            .check()
            .is_ok());
    }

    #[test]
    fn an_instance_ip_that_is_not_an_address_is_refused() {
        let mut c = NodeClaim::instance("backend", "b-1");
        for bad in [
            "127.0.0.300",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "",
            "10.0.0.1:80",
        ] {
            c.instance_ip = Some(bad.into());
            assert!(
                matches!(c.check(), Err(ClaimError::BadInstanceIp(_))),
                "{bad}"
            );
        }
        c.instance_ip = Some("127.0.0.11".into());
        assert_eq!(
            c.instance_ip().unwrap(),
            Some("127.0.0.11".parse().unwrap())
        );
        assert!(matches!(
            NodeClaim::default().check(),
            Err(ClaimError::NoId)
        ));
    }
}
