//! The one path every change takes: renew the SVID book, build the changed nodes'
//! snapshots, publish all or nothing, then commit the new state.

use std::sync::Arc;

use super::book::{Force, Renewed};
use super::{Applied, ControlError, ControlPlane, State};
use crate::config::Config;
use crate::identity::Svid;

impl ControlPlane {
    /// Builds every node's snapshot from `config` (re-minting SVIDs that are missing,
    /// whose ID changed, that are due, signed by a CA that no longer signs, or that
    /// `force` selects), then publishes all or nothing. A failed renewal of a still-valid
    /// SVID keeps it and schedules a retry.
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
        let renewed = self.renew_book(&mut state.book, &config, &ca, now, force)?;
        let todo = super::publish::changed_workloads(&state, &config, &renewed, bundle.sequence);
        let snapshots = self.build_snapshots(&config, &todo, &renewed.svids, &bundle)?;
        let mut applied = Applied {
            minted: renewed.minted,
            failed: renewed.failed,
            ..Default::default()
        };
        self.publish(
            &mut state,
            &config,
            snapshots,
            bundle.sequence,
            &mut applied,
        );
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
