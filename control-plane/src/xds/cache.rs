//! The snapshot cache: the latest validated [`Snapshot`] per node id, behind a `watch`
//! channel so each ADS stream task wakes when its node's snapshot changes. A node whose
//! entry is removed (its workload left the config) sees `None` and its streams end.
//!
//! Instances other than a workload's default one get their snapshot on demand: when
//! their sidecar connects, the stream asks the cache to [`Cache::join`] them, which
//! hands the claim to the [`Joiner`] (the control plane: mint the instance's SVID, build
//! and publish its snapshot).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use tokio::sync::watch;

use super::node::NodeClaim;
use super::snapshot::Snapshot;
use super::types::NodeId;

/// What a stream watches: the node's current snapshot, or `None` once removed.
pub type SnapshotWatch = watch::Receiver<Option<Arc<Snapshot>>>;

/// Creates an instance's snapshot when its sidecar connects.
///
/// Contract: on `Ok`, the claim's key ([`NodeClaim::key`]) has a snapshot in the cache.
/// Called once per stream, after authorization; may sign (CPU, no network I/O).
pub trait Joiner: Send + Sync + std::fmt::Debug + 'static {
    /// Makes sure the instance `claim` names has a current snapshot; `Err`: why not, for
    /// the sidecar.
    fn join(&self, claim: &NodeClaim) -> Result<(), String>;
}

/// Latest snapshot per node.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Mutex<HashMap<NodeId, watch::Sender<Option<Arc<Snapshot>>>>>,
    joiner: RwLock<Option<Weak<dyn Joiner>>>,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<NodeId, watch::Sender<Option<Arc<Snapshot>>>>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes `snapshot` for `node`. Returns `false` (and wakes nobody) when the node
    /// already has a snapshot with identical versions.
    pub fn set(&self, node: &NodeId, snapshot: Snapshot) -> bool {
        let mut nodes = self.lock();
        match nodes.get(node) {
            Some(tx) => tx.send_if_modified(|cur| {
                let same = cur
                    .as_ref()
                    .is_some_and(|c| c.changed_types(&snapshot).is_empty());
                if !same {
                    *cur = Some(Arc::new(snapshot));
                }
                !same
            }),
            None => {
                nodes.insert(node.clone(), watch::Sender::new(Some(Arc::new(snapshot))));
                true
            }
        }
    }

    /// Removes a node: its open streams see `None` and end.
    pub fn remove(&self, node: &NodeId) {
        if let Some(tx) = self.lock().remove(node) {
            tx.send_replace(None);
        }
    }

    /// Who creates instances on demand (the control plane; held weakly).
    pub fn set_joiner(&self, joiner: Weak<dyn Joiner>) {
        *self.joiner.write().unwrap_or_else(|p| p.into_inner()) = Some(joiner);
    }

    /// Watches the snapshot of the instance `claim` names, asking the joiner to create
    /// (or refresh) it first. Without a joiner only nodes already in the cache are known.
    pub fn join(&self, claim: &NodeClaim) -> Result<(NodeId, SnapshotWatch), String> {
        let joiner = self
            .joiner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(Weak::upgrade);
        if let Some(j) = joiner {
            j.join(claim)?;
        }
        let key = claim.key();
        match self.watch(&key) {
            Some(w) => Ok((key, w)),
            None => Err(format!(
                "node `{key}` is not a workload instance in the Warden config; start Envoy with \
                 the bootstrap from `warden bootstrap --workload NAME [--instance NAME]`"
            )),
        }
    }

    /// Watches a node's snapshot; `None` when the node is unknown.
    pub fn watch(&self, node: &NodeId) -> Option<SnapshotWatch> {
        self.lock().get(node).map(|tx| tx.subscribe())
    }

    /// Whether `node` has a snapshot.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.lock().contains_key(node)
    }

    /// The current snapshot of a node.
    pub fn get(&self, node: &NodeId) -> Option<Arc<Snapshot>> {
        self.lock().get(node).and_then(|tx| tx.borrow().clone())
    }

    /// Node ids with a snapshot.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::snapshot::tests::sample;

    #[test]
    fn setting_an_identical_snapshot_wakes_nobody() {
        let cache = Cache::new();
        let node = NodeId::new("n");
        assert!(cache.set(&node, sample(&[("s", "1")], 1)));
        let mut rx = cache.watch(&node).unwrap();
        rx.mark_unchanged();
        assert!(!cache.set(&node, sample(&[("s", "1")], 1)));
        assert!(!rx.has_changed().unwrap());
        assert!(cache.set(&node, sample(&[("s", "2")], 1)));
        assert!(rx.has_changed().unwrap());
    }

    #[test]
    fn removing_a_node_tells_its_watchers() {
        let cache = Cache::new();
        let node = NodeId::new("n");
        cache.set(&node, sample(&[], 1));
        let rx = cache.watch(&node).unwrap();
        cache.remove(&node);
        assert!(rx.borrow().is_none());
        assert!(cache.watch(&node).is_none());
    }
}
