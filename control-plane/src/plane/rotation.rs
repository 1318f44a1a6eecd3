//! CA rotation wired to the running control plane: which connected nodes have ACKed a
//! trust bundle holding the next CA (from the ACKed SDS versions the stream tasks record
//! in `xds/status.rs`) and the forced steps behind `warden ca prepare|activate|retire`.
//! The automatic steps run on the periodic tick (`tick.rs`).
//!
//! Activation is time-driven with a hard floor: it waits for lagging nodes only until
//! [`RotationState::activate_by`] (derived from the current CA's remaining life and the
//! longest SVID TTL); then it activates anyway, names the nodes left behind (error log,
//! `warden_ca_nodes_left_behind`, `warden ca status`) and re-mints every SVID, so those
//! nodes are pushed the new bundle again with their new SVID.
//!
//! After a step the snapshots are rebuilt: a bundle change moves only SDS; an activation
//! re-mints every SVID with the new CA at once (the old CA stays in the bundle, so SVIDs
//! still in flight keep verifying until they expire).

use std::collections::BTreeMap;

use super::{Applied, ControlError, ControlPlane};
use crate::identity::rotation::{rfc3339, Refusal, Step};
use crate::identity::{CaStatus, NodeAcks, RotateError};
use crate::xds::types::NodeId;

/// A CA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CaOpError {
    /// The step is unsafe now (HTTP 409); the reason says why and what to do.
    #[error("{0}")]
    Refused(Refusal),
    /// The CA could not be created, loaded or saved, or snapshots not rebuilt (HTTP 500).
    #[error(transparent)]
    Failed(#[from] ControlError),
}

impl From<RotateError> for CaOpError {
    fn from(e: RotateError) -> Self {
        match e {
            RotateError::Refused(r) => CaOpError::Refused(r),
            RotateError::Ca(c) => CaOpError::Failed(ControlError::Ca(c)),
        }
    }
}

/// How long after a start automatic activation waits for nodes to reconnect before it
/// counts who lags (Envoy retries a lost ADS stream within a few seconds).
pub const RECONNECT_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

impl ControlPlane {
    /// Connected nodes and those that have not ACKed a bundle with sequence ≥ `required`.
    pub fn node_acks(&self, required: Option<u64>) -> NodeAcks {
        let statuses = self.xds.status.dump();
        let state = self.lock();
        let mut acks = NodeAcks::default();
        for node in self.xds.cache.nodes() {
            let Some(st) = statuses.get(node.as_str()).filter(|s| s.streams > 0) else {
                continue;
            };
            acks.connected.push(node.to_string());
            let Some(required) = required else { continue };
            let acked = st.types.get("sds").and_then(|t| t.version_acked.as_deref());
            let seq = acked.and_then(|v| {
                state
                    .published
                    .get(&node)?
                    .iter()
                    .rev()
                    .find(|(pv, _)| pv == v)
                    .map(|(_, s)| *s)
            });
            if seq.is_none_or(|s| s < required) {
                acks.lagging.push(node.to_string());
            }
        }
        acks
    }

    pub(super) fn next_sequence(&self) -> Option<u64> {
        self.authority()
            .rotation_state()
            .next
            .map(|n| n.published_sequence)
    }

    /// The CA's rotation state, with live node ACKs, the activation deadline and the
    /// nodes left behind by a forced activation.
    pub fn ca_status(&self) -> CaStatus {
        let acks = self.node_acks(self.next_sequence());
        let ttl = self.longest_svid_ttl();
        let left_behind = self.lock().left_behind.clone();
        let a = self.authority();
        let mut st = CaStatus::of(&a, self.clock.now(), Some(acks));
        st.activate_by = a
            .rotation_state()
            .next
            .is_some()
            .then(|| rfc3339(a.rotation_state().activate_by(ttl)));
        st.left_behind = left_behind;
        st
    }

    /// The longest SVID TTL the active CA signs for: the activation deadline keeps that
    /// much of the current CA's life in reserve.
    pub fn longest_svid_ttl(&self) -> std::time::Duration {
        let cfg = self.config();
        cfg.ca.svid_ttl.max(self.lock().other_svid_ttl)
    }

    /// Forced `prepare`: creates the next CA and publishes the bundle holding it.
    pub fn ca_prepare(&self) -> Result<CaStatus, CaOpError> {
        self.authority().prepare(self.clock.as_ref())?;
        self.xds
            .audit
            .ca_step(&Step::Prepare, true, &[], self.ca().serial_hex());
        self.after_step(Step::Prepare)?;
        Ok(self.ca_status())
    }

    /// Forced `activate`: refused until every connected node ACKed the next CA's bundle.
    pub fn ca_activate(&self) -> Result<CaStatus, CaOpError> {
        let acks = self.node_acks(self.next_sequence());
        self.authority()
            .activate(&acks.lagging, self.clock.as_ref())?;
        self.xds
            .audit
            .ca_step(&Step::Activate, true, &acks.lagging, self.ca().serial_hex());
        self.after_step(Step::Activate)?;
        Ok(self.ca_status())
    }

    /// Forced `retire`: drops retired CAs whose SVIDs expired (all of them with `force`,
    /// which breaks workloads still holding their SVIDs).
    pub fn ca_retire(&self, force: bool) -> Result<CaStatus, CaOpError> {
        let dropped = self.authority().retire(force, self.clock.as_ref())?;
        tracing::info!(?dropped, force, "retired CAs left the bundle");
        self.xds
            .audit
            .ca_step(&Step::Retire, true, &[], self.ca().serial_hex());
        self.after_step(Step::Retire)?;
        Ok(self.ca_status())
    }

    pub(super) fn after_step(&self, step: Step) -> Result<Applied, ControlError> {
        self.xds.metrics.ca_rotation_step();
        let (serial, seq) = {
            let a = self.authority();
            (a.active().serial_hex().to_string(), a.bundle().sequence)
        };
        tracing::info!(?step, active_ca = %serial, bundle_sequence = seq, "CA rotation step");
        self.xds.audit.bundle_updated(&self.bundle());
        let applied = match step {
            Step::Activate => self.renew_all(),
            Step::Prepare | Step::Retire => self.renew_due(),
        };
        self.update_expiry();
        applied
    }

    /// Nodes and their ACK state (for tests and the admin).
    pub fn published_sequences(&self) -> BTreeMap<NodeId, u64> {
        self.lock()
            .published
            .iter()
            .filter_map(|(n, h)| h.back().map(|(_, s)| (n.clone(), *s)))
            .collect()
    }
}
#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "rotation_deadline_tests.rs"]
mod deadline_tests;
