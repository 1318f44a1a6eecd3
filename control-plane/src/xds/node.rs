//! Where the control plane files each instance: the key `<workload node id>/<instance>`
//! (the default instance under the node id itself; `/` is in neither charset, so keys
//! never collide), used by the cache, the status registry and the SVID book. The claim
//! itself (id, cluster, `INSTANCE_IP`, naming rules) is attestation vocabulary, in
//! `attest::node`, re-exported here.

pub use crate::attest::node::{
    is_instance_name, ClaimError, NodeClaim, INSTANCE_IP_FIELD, MAX_INSTANCE_LEN,
};

use super::types::NodeId;

impl NodeClaim {
    /// The key the control plane files this instance under (cache, status, SVID book).
    pub fn key(&self) -> NodeId {
        instance_key(self.workload_node_id(), self.instance_name())
    }
}

/// The key of `instance` of the workload with `node_id` (`None`: the default instance).
pub fn instance_key(node_id: &str, instance: Option<&str>) -> NodeId {
    match instance {
        None => NodeId::new(node_id),
        Some(i) => NodeId::new(format!("{node_id}/{i}")),
    }
}

/// Splits a key into the workload node id and the instance (`None`: default instance).
pub fn split_key(key: &NodeId) -> (&str, Option<&str>) {
    match key.as_str().split_once('/') {
        Some((n, i)) => (n, Some(i)),
        None => (key.as_str(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_instance_is_keyed_by_the_node_id_and_others_under_it() {
        assert_eq!(NodeClaim::node("backend").key(), NodeId::new("backend"));
        assert_eq!(
            NodeClaim::instance("backend", "backend").key(),
            NodeId::new("backend")
        );
        let c = NodeClaim::instance("backend", "backend-7f9c-x2");
        assert_eq!(c.key(), NodeId::new("backend/backend-7f9c-x2"));
        assert_eq!(split_key(&c.key()), ("backend", Some("backend-7f9c-x2")));
        assert_eq!(split_key(&NodeId::new("backend")), ("backend", None));
    }
}
