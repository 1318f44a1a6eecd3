//! Building and publishing snapshots: which instances need new resources, building the
//! workloads' shared bases and then every changed instance's snapshot in parallel (rayon;
//! a full rebuild of thousands of nodes is the bulk of a config push), refusing what a
//! sidecar could not receive, and writing the rest to the cache.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;

use super::book::Renewed;
use super::book::Target;
use super::instances::{base, node_snapshot, BuildCtx};
use super::{Applied, ControlError, ControlPlane, State};
use crate::config::Config;
use crate::identity::{Svid, TrustBundle};
use crate::xds::limits::{oversized, ADS_MESSAGE_LIMIT};
use crate::xds::resources::ResourceError;
use crate::xds::snapshot::Snapshot;
use crate::xds::types::{NodeId, ResourceType};

/// How many (SDS version, bundle sequence) pairs are remembered per node to map an ACKed
/// version back to the bundle it carried. A node further behind counts as lagging.
const PUBLISHED_HISTORY: usize = 64;

/// Below this many nodes a build stays on the calling thread (spawning costs more).
const PARALLEL_FROM: usize = 256;

/// Whether the published snapshots were built from this very config and bundle (then
/// the bases still hold and only instances whose SVID changed need building).
pub(super) fn same_inputs(state: &State, config: &Arc<Config>, sequence: u64) -> bool {
    Arc::ptr_eq(&state.config, config) && state.built_sequence == Some(sequence)
}

/// The instances whose node needs new resources. Same inputs: only those whose SVID
/// changed (a renewal round touches a few nodes per tick, not all).
pub(super) fn changed_targets<'t, 'c>(
    state: &State,
    same: bool,
    targets: &'t [Target<'c>],
    renewed: &Renewed,
) -> Vec<&'t Target<'c>> {
    targets
        .iter()
        .filter(|t| {
            !same
                || state.book.svids.get(&t.key).map(|s| &s.serial_hex)
                    != renewed.svids.get(&t.key).map(|s| &s.serial_hex)
        })
        .collect()
}

/// Builds every item's output, on the rayon pool when there are many. In order; all or
/// nothing.
pub(super) fn build_all<I: Sync, T: Send>(
    items: &[I],
    build: impl Fn(&I) -> Result<T, ResourceError> + Sync + Send,
) -> Result<Vec<T>, ResourceError> {
    if items.len() < PARALLEL_FROM {
        items.iter().map(&build).collect()
    } else {
        items.par_iter().map(&build).collect()
    }
}

impl ControlPlane {
    /// Every workload's base snapshot (what its instances share).
    pub(super) fn build_bases(
        &self,
        config: &Config,
        bundle: &TrustBundle,
    ) -> Result<HashMap<String, Arc<Snapshot>>, ControlError> {
        let federated = self.federated_trust_bundles();
        let ctx = BuildCtx {
            config,
            bundle,
            federated: &federated,
            filter_module: self.filter_modules().for_config(config),
        };
        let workloads: Vec<_> = config.workloads.iter().collect();
        let built = build_all(&workloads, |w| base(ctx, w))?;
        Ok(workloads
            .iter()
            .map(|w| w.name.clone())
            .zip(built)
            .collect())
    }

    /// Every node's snapshot for `todo`, all or nothing; refused when a response would
    /// exceed the ADS message limit (a sidecar would reset its stream for ever).
    pub(super) fn build_snapshots(
        &self,
        config: &Config,
        bases: &HashMap<String, Arc<Snapshot>>,
        todo: &[&Target<'_>],
        svids: &BTreeMap<NodeId, Svid>,
        bundle: &TrustBundle,
    ) -> Result<Vec<(NodeId, Snapshot)>, ControlError> {
        let federated = self.federated_trust_bundles();
        let ctx = BuildCtx {
            config,
            bundle,
            federated: &federated,
            filter_module: self.filter_modules().for_config(config),
        };
        let build = |t: &&Target<'_>| -> Result<(NodeId, Snapshot), ResourceError> {
            let name = &t.workload.name;
            let missing = || ResourceError::UnknownUpstream {
                workload: name.clone(),
                upstream: name.clone(),
            };
            let base = bases.get(name).ok_or_else(missing)?;
            let svid = svids.get(&t.key).ok_or_else(missing)?;
            Ok((t.key.clone(), node_snapshot(ctx, base, t, svid)?))
        };
        let snapshots = build_all(todo, build)?;
        for ((node, snap), t) in snapshots.iter().zip(todo) {
            if let Some(detail) = oversized(snap, ADS_MESSAGE_LIMIT) {
                self.xds.metrics.oversized_refused();
                tracing::error!(%node, t = %detail.t, resource = %detail.resource, resource_bytes = detail.resource_bytes, response_bytes = detail.response_bytes, limit = detail.limit, "refusing to publish: a response would exceed the ADS message limit; the last good config keeps serving");
                return Err(ControlError::Oversized {
                    workload: t.workload.name.clone(),
                    detail,
                });
            }
        }
        Ok(snapshots)
    }

    /// Writes `snapshots` to the cache, drops nodes not in `keep`, and remembers which
    /// bundle sequence each node's SDS version carries.
    pub(super) fn publish(
        &self,
        state: &mut State,
        keep: &HashSet<&NodeId>,
        snapshots: Vec<(NodeId, Snapshot)>,
        sequence: u64,
        applied: &mut Applied,
    ) {
        for old in self.xds.cache.nodes() {
            if !keep.contains(&old) {
                self.xds.cache.remove(&old);
                applied.removed.push(old);
            }
        }
        for (node, snap) in snapshots {
            self.publish_one(state, node, snap, sequence, applied);
        }
        state.published.retain(|n, _| keep.contains(n));
    }

    /// Writes one node's snapshot and records the bundle sequence its SDS version carries.
    pub(super) fn publish_one(
        &self,
        state: &mut State,
        node: NodeId,
        snap: Snapshot,
        sequence: u64,
        applied: &mut Applied,
    ) {
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
}
