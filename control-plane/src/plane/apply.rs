//! The one path every change takes: renew the SVID book (one SVID per instance), build
//! the changed instances' snapshots, publish all or nothing, then commit the new state.

use std::collections::HashSet;
use std::sync::Arc;

use super::book::{Force, Renewed};
use super::instances::targets;
use super::publish::{changed_targets, same_inputs};
use super::{Applied, ControlError, ControlPlane, State};
use crate::config::Config;
use crate::identity::Svid;
use crate::xds::types::NodeId;

impl ControlPlane {
    /// Builds every node's snapshot from `config` (re-minting SVIDs that are missing,
    /// whose ID changed, that are due, signed by a CA that no longer signs, or that
    /// `force` selects), then publishes all or nothing. A failed renewal of a still-valid
    /// SVID keeps it and schedules a retry. Instances whose workload left the config (or
    /// changed its node id) are dropped.
    pub(crate) fn apply(
        &self,
        config: Arc<Config>,
        force: impl Fn(&str, &Svid) -> bool,
    ) -> Result<Applied, ControlError> {
        let mut state = self.lock();
        let (ca, bundle) = {
            let a = self.authority();
            (a.active(), a.bundle())
        };
        let now = self.clock.now();
        let force: Force<'_> = &force;
        let targets = targets(&config, &state.instances);
        let renewed = self.renew_book(&mut state.book, &config, &targets, (&ca, now, force))?;
        let same = same_inputs(&state, &config, bundle.sequence);
        let todo = changed_targets(&state, same, &targets, &renewed);
        let bases = if same {
            state.bases.clone()
        } else {
            self.build_bases(&config, &bundle)?
        };
        let snapshots = self.build_snapshots(&config, &bases, &todo, &renewed.svids, &bundle)?;
        let mut applied = Applied {
            minted: renewed.minted,
            failed: renewed.failed,
            ..Default::default()
        };
        let keep: HashSet<NodeId> = targets.iter().map(|t| t.key.clone()).collect();
        drop(targets);
        let keep_refs: HashSet<&NodeId> = keep.iter().collect();
        self.publish(
            &mut state,
            &keep_refs,
            snapshots,
            bundle.sequence,
            &mut applied,
        );
        state.instances.retain(|k, _| keep.contains(k));
        state.bases = bases;
        commit(&mut state, config, renewed, bundle.sequence);
        Ok(applied)
    }
}

/// The published change becomes the state the next one starts from.
fn commit(state: &mut State, config: Arc<Config>, renewed: Renewed, sequence: u64) {
    state
        .book
        .failing
        .retain(|n, _| renewed.svids.contains_key(n));
    state.built_sequence = Some(sequence);
    state.config = config;
    state.book.svids = renewed.svids;
    state.book.signers = renewed.signers;
}
