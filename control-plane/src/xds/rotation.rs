//! CA rotation wired to the running control plane: which connected nodes have ACKed a
//! trust bundle holding the next CA (from the ACKed SDS versions the stream tasks record
//! in `status.rs`), the forced steps behind `warden ca prepare|activate|retire`, and the
//! periodic [`ControlPlane::tick`] that runs automatic steps, renews due SVIDs and
//! updates the expiry gauges.
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

use super::control::{Applied, ControlError, ControlPlane};
use super::metrics::Expiry;
use super::renewal::{in_danger, seconds_until};
use super::types::NodeId;
use crate::identity::rotation::{rfc3339, Refusal, Step};
use crate::identity::{CaStatus, NodeAcks, RotateError};

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

/// What one tick did.
#[derive(Debug, Default)]
pub struct Tick {
    /// The automatic rotation step taken, if any.
    pub step: Option<Step>,
    /// SVID renewals (and pushes) this tick.
    pub renewed: Applied,
}

impl ControlPlane {
    /// Connected nodes and those that have not ACKed a bundle with sequence ≥ `required`.
    pub fn node_acks(&self, required: Option<u64>) -> NodeAcks {
        let statuses = self.shared.status.dump();
        let state = self.lock();
        let mut acks = NodeAcks::default();
        for node in self.shared.cache.nodes() {
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

    fn next_sequence(&self) -> Option<u64> {
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
        self.after_step(Step::Prepare)?;
        Ok(self.ca_status())
    }

    /// Forced `activate`: refused until every connected node ACKed the next CA's bundle.
    pub fn ca_activate(&self) -> Result<CaStatus, CaOpError> {
        let acks = self.node_acks(self.next_sequence());
        self.authority()
            .activate(&acks.lagging, self.clock.as_ref())?;
        self.after_step(Step::Activate)?;
        Ok(self.ca_status())
    }

    /// Forced `retire`: drops retired CAs whose SVIDs expired (all of them with `force`,
    /// which breaks workloads still holding their SVIDs).
    pub fn ca_retire(&self, force: bool) -> Result<CaStatus, CaOpError> {
        let dropped = self.authority().retire(force, self.clock.as_ref())?;
        tracing::info!(?dropped, force, "retired CAs left the bundle");
        self.after_step(Step::Retire)?;
        Ok(self.ca_status())
    }

    fn after_step(&self, step: Step) -> Result<Applied, ControlError> {
        self.shared.metrics.ca_rotation_step();
        let (serial, seq) = {
            let a = self.authority();
            (a.active().serial_hex().to_string(), a.bundle().sequence)
        };
        tracing::info!(?step, active_ca = %serial, bundle_sequence = seq, "CA rotation step");
        let applied = match step {
            Step::Activate => self.renew_all(),
            Step::Prepare | Step::Retire => self.renew_due(),
        };
        self.update_expiry();
        applied
    }

    /// Runs periodically (every second in `warden serve`): the automatic rotation step
    /// that is due, SVID renewals that are due, and the expiry gauges.
    pub fn tick(&self) -> Tick {
        let mut tick = Tick::default();
        // Who lags only matters once activation is due; skip the per-node walk otherwise.
        let rs = self.authority().rotation_state();
        let now = self.clock.now();
        let lagging = match rs.next {
            Some(_) if now >= rs.activate_at() => self.node_acks(self.next_sequence()).lagging,
            _ => Vec::new(),
        };
        // Past the deadline, lagging nodes no longer block: waiting longer would let the
        // current CA expire under every node.
        let overdue = rs.activation_overdue(now, self.longest_svid_ttl());
        let forced = !lagging.is_empty() && overdue;
        // Right after a start no node has reconnected yet, so none counts as lagging: hold
        // a due activation until they have had time to (never past the deadline).
        let reconnecting = [String::from(
            "(nodes reconnecting after the control plane started)",
        )];
        let settling = now < self.started_at + RECONNECT_GRACE;
        let blocking: &[String] = if overdue {
            &[]
        } else if settling && rs.next.is_some() {
            &reconnecting
        } else {
            &lagging
        };
        let step = self.authority().auto_step(blocking, self.clock.as_ref());
        match step {
            Ok(Some(step)) => {
                tick.step = Some(step);
                if forced && step == Step::Activate {
                    self.left_behind(&rs, lagging.clone());
                }
                if let Err(e) = self.after_step(step) {
                    tracing::error!("publishing after the CA rotation step failed: {e}");
                }
            }
            Ok(None) => self.warn_if_blocked(&lagging),
            Err(e) => tracing::error!("automatic CA rotation step failed: {e}"),
        }
        // The Workload API mints with the same CA; record its signing too.
        if let Err(e) = self.authority().persist_signing(self.clock.as_ref()) {
            tracing::error!("recording the CA's signing in the state dir failed: {e}");
        }
        self.forget_caught_up();
        if self.next_renewal().is_some_and(|t| t <= self.clock.now()) {
            match self.renew_due() {
                Ok(a) => tick.renewed = a,
                Err(e) => tracing::error!("SVID renewal failed (current SVIDs kept): {e}"),
            }
        }
        self.update_expiry();
        tick
    }

    /// Records the nodes a forced activation left behind (error log, metric, status).
    fn left_behind(&self, rs: &crate::identity::rotation::RotationState, nodes: Vec<String>) {
        let deadline = rfc3339(rs.activate_by(self.longest_svid_ttl()));
        tracing::error!(left_behind = ?nodes, %deadline, current_ca_expires_in_s = seconds_until(rs.current.not_after, self.clock.now()), "activated the next CA at its deadline although these nodes never ACKed the bundle holding it; they are pushed the new bundle again, and their mTLS with peers fails until they ACK it");
        self.shared.metrics.ca_forced_activation();
        let mut state = self.lock();
        state.left_behind = nodes;
        state.left_behind_sequence = Some(self.authority().bundle().sequence);
        self.shared.metrics.set_left_behind(&state.left_behind);
    }

    /// Drops from the left-behind list the nodes that have since ACKed a bundle holding
    /// the CA that was activated.
    fn forget_caught_up(&self) {
        let (required, before) = {
            let s = self.lock();
            (s.left_behind_sequence, s.left_behind.len())
        };
        if before == 0 {
            return;
        }
        let acks = self.node_acks(required);
        let mut state = self.lock();
        state
            .left_behind
            .retain(|n| !acks.connected.contains(n) || acks.lagging.contains(n));
        if state.left_behind.len() != before {
            tracing::info!(still_left_behind = ?state.left_behind, "left-behind nodes ACKed the new bundle");
            self.shared.metrics.set_left_behind(&state.left_behind);
        }
    }

    /// Past the activation threshold with nodes lagging: warn once a minute, naming them.
    fn warn_if_blocked(&self, lagging: &[String]) {
        let now = self.clock.now();
        let rs = self.authority().rotation_state();
        if rs.next.is_none() || lagging.is_empty() || now < rs.activate_at() {
            return;
        }
        let mut state = self.lock();
        let recent = state
            .blocked_warned_at
            .is_some_and(|t| now < t + std::time::Duration::from_secs(60));
        if !recent {
            state.blocked_warned_at = Some(now);
            tracing::warn!(lagging = ?lagging, current_ca_expires_in_s = seconds_until(rs.current.not_after, now), "automatic CA activation is due but these nodes have not ACKed the bundle with the next CA");
        }
    }

    /// Sets the expiry gauges and warns about SVIDs in the last sixth of their life.
    fn update_expiry(&self) {
        let now = self.clock.now();
        let mut e = Expiry::default();
        {
            let mut state = self.lock();
            let mut warn = Vec::new();
            for (name, s) in &state.svids {
                e.svids
                    .insert(name.clone(), seconds_until(s.not_after, now));
                if in_danger(s.not_before, s.not_after, now)
                    && !state.warned.contains(&s.serial_hex)
                {
                    warn.push(s.serial_hex.clone());
                    tracing::warn!(workload = %name, serial = %s.serial_hex, expires_in_s = seconds_until(s.not_after, now), "SVID is in the last sixth of its life and was not renewed (see warden_svid_renewal_failures_total)");
                }
            }
            let live: std::collections::BTreeSet<String> =
                state.svids.values().map(|s| s.serial_hex.clone()).collect();
            state.warned.retain(|s| live.contains(s));
            state.warned.extend(warn);
        }
        let a = self.authority();
        let rs = a.rotation_state();
        e.cas
            .insert("current".into(), seconds_until(rs.current.not_after, now));
        if let Some(n) = &rs.next {
            e.cas
                .insert("next".into(), seconds_until(n.ca.not_after, now));
        }
        for r in &rs.retired {
            e.cas.insert(
                format!("retired-{}", r.serial_hex),
                seconds_until(r.retire_after, now),
            );
        }
        e.bundle_sequence = a.bundle().sequence;
        // An expired signing CA cannot sign a usable SVID: `/readyz` fails on this.
        self.shared
            .metrics
            .set_ca_expired(rs.current.not_after <= now);
        self.shared.metrics.set_expiry(e);
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
