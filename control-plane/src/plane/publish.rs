//! Building and publishing snapshots: which nodes need new resources, building them in
//! parallel (rayon; a full rebuild of thousands of nodes is the bulk of a config push),
//! refusing what a sidecar could not receive, and writing the rest to the cache.

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;

use super::book::Renewed;
use super::{Applied, ControlError, ControlPlane, State};
use crate::config::{Config, Workload};
use crate::identity::{Svid, TrustBundle};
use crate::xds::limits::{oversized, ADS_MESSAGE_LIMIT};
use crate::xds::resources::{build_node_snapshot, NodeInputs, ResourceError};
use crate::xds::snapshot::Snapshot;
use crate::xds::types::{NodeId, ResourceType};

/// How many (SDS version, bundle sequence) pairs are remembered per node to map an ACKed
/// version back to the bundle it carried. A node further behind counts as lagging.
const PUBLISHED_HISTORY: usize = 64;

/// Below this many nodes a build stays on the calling thread (spawning costs more).
const PARALLEL_FROM: usize = 256;

/// The workloads whose node needs new resources. Same config object and bundle: only
/// nodes whose SVID changed (a renewal round touches a few nodes per tick, not all).
pub(super) fn changed_workloads<'c>(
    state: &State,
    config: &'c std::sync::Arc<Config>,
    renewed: &Renewed,
    sequence: u64,
) -> Vec<&'c Workload> {
    let same_inputs =
        std::sync::Arc::ptr_eq(&state.config, config) && state.built_sequence == Some(sequence);
    config
        .workloads
        .iter()
        .filter(|w| {
            !same_inputs
                || state.book.svids.get(&w.name).map(|s| &s.serial_hex)
                    != renewed.svids.get(&w.name).map(|s| &s.serial_hex)
        })
        .collect()
}

/// Builds every workload's output, on the rayon pool when there are many (a full rebuild
/// of thousands of nodes is the bulk of a config push). In order; all or nothing.
pub(super) fn build_all<T: Send>(
    workloads: &[&Workload],
    build: impl Fn(&Workload) -> Result<T, ResourceError> + Sync + Send,
) -> Result<Vec<T>, ResourceError> {
    if workloads.len() < PARALLEL_FROM {
        workloads.iter().map(|w| build(w)).collect()
    } else {
        workloads.par_iter().map(|w| build(w)).collect()
    }
}

impl ControlPlane {
    /// Every node's snapshot for `todo`, all or nothing; refused when a response would
    /// exceed the ADS message limit (a sidecar would reset its stream for ever).
    pub(super) fn build_snapshots(
        &self,
        config: &Config,
        todo: &[&Workload],
        svids: &BTreeMap<String, Svid>,
        bundle: &TrustBundle,
    ) -> Result<Vec<(NodeId, Snapshot)>, ControlError> {
        let filter_module = self.filter_modules().for_config(config);
        let federated = self.federated_trust_bundles();
        let build = |w: &Workload| -> Result<(NodeId, Snapshot), ResourceError> {
            let inputs = NodeInputs {
                config,
                workload: w,
                svid: &svids[&w.name],
                bundle,
                federated: &federated,
                filter_module,
            };
            Ok((
                NodeId::new(w.node_id.clone()),
                build_node_snapshot(&inputs)?,
            ))
        };
        let snapshots = build_all(todo, build)?;
        for ((node, snap), w) in snapshots.iter().zip(todo) {
            if let Some(detail) = oversized(snap, ADS_MESSAGE_LIMIT) {
                self.xds.metrics.oversized_refused();
                tracing::error!(%node, t = %detail.t, resource = %detail.resource, resource_bytes = detail.resource_bytes, response_bytes = detail.response_bytes, limit = detail.limit, "refusing to publish: a response would exceed the ADS message limit; the last good config keeps serving");
                return Err(ControlError::Oversized {
                    workload: w.name.clone(),
                    detail,
                });
            }
        }
        Ok(snapshots)
    }

    /// Writes `snapshots` to the cache, drops nodes no longer in `config`, and remembers
    /// which bundle sequence each node's SDS version carries.
    pub(super) fn publish(
        &self,
        state: &mut State,
        config: &Config,
        snapshots: Vec<(NodeId, Snapshot)>,
        sequence: u64,
        applied: &mut Applied,
    ) {
        let keep: HashSet<&str> = config
            .workloads
            .iter()
            .map(|w| w.node_id.as_str())
            .collect();
        for old in self.xds.cache.nodes() {
            if !keep.contains(old.as_str()) {
                self.xds.cache.remove(&old);
                applied.removed.push(old);
            }
        }
        for (node, snap) in snapshots {
            let sds = snap.version(ResourceType::Secret).to_string();
            let history = state.published.entry(node.clone()).or_default();
            if history
                .back()
                .is_none_or(|(v, seq)| *v != sds || *seq != sequence)
            {
                history.push_back((sds, sequence));
                if history.len() > PUBLISHED_HISTORY {
                    history.pop_front();
                }
            }
            if self.xds.cache.set(&node, snap) {
                self.xds.metrics.snapshot_published();
                applied.changed.push(node);
            }
        }
        state.published.retain(|n, _| keep.contains(n.as_str()));
    }
}
