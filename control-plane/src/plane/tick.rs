//! The periodic [`ControlPlane::tick`] (every second in `warden serve`): the automatic CA
//! rotation step that is due (activation waits for lagging nodes only until its deadline,
//! then goes ahead and names the nodes left behind), SVID renewals that are due, and the
//! expiry gauges with a warning for SVIDs in the last sixth of their life.

use std::collections::BTreeSet;
use std::time::Duration;

use super::rotation::RECONNECT_GRACE;
use super::{Applied, ControlPlane};
use crate::identity::renewal::{in_danger, seconds_until};
use crate::identity::rotation::{rfc3339, RotationState, Step};
use crate::xds::metrics::Expiry;

/// The left-behind gauge has one series per node (instance); at most this many, so a
/// fleet left behind cannot blow up the metrics (the full list is in `warden ca status`).
const LEFT_BEHIND_SERIES: usize = 256;

fn capped(nodes: &[String]) -> &[String] {
    &nodes[..nodes.len().min(LEFT_BEHIND_SERIES)]
}

/// What one tick did.
#[derive(Debug, Default)]
pub struct Tick {
    /// The automatic rotation step taken, if any.
    pub step: Option<Step>,
    /// SVID renewals (and pushes) this tick.
    pub renewed: Applied,
}

impl ControlPlane {
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
                self.xds
                    .audit
                    .ca_step(&step, forced, &lagging, self.ca().serial_hex());
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
        self.forget_gone_instances();
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
    fn left_behind(&self, rs: &RotationState, nodes: Vec<String>) {
        let deadline = rfc3339(rs.activate_by(self.longest_svid_ttl()));
        tracing::error!(left_behind = ?nodes, %deadline, current_ca_expires_in_s = seconds_until(rs.current.not_after, self.clock.now()), "activated the next CA at its deadline although these nodes never ACKed the bundle holding it; they are pushed the new bundle again, and their mTLS with peers fails until they ACK it");
        self.xds.metrics.ca_forced_activation();
        let mut state = self.lock();
        state.left_behind = nodes;
        state.left_behind_sequence = Some(self.authority().bundle().sequence);
        self.xds.metrics.set_left_behind(capped(&state.left_behind));
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
            self.xds.metrics.set_left_behind(capped(&state.left_behind));
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
            .is_some_and(|t| now < t + Duration::from_secs(60));
        if !recent {
            state.blocked_warned_at = Some(now);
            tracing::warn!(lagging = ?lagging, current_ca_expires_in_s = seconds_until(rs.current.not_after, now), "automatic CA activation is due but these nodes have not ACKed the bundle with the next CA");
        }
    }

    /// Sets the expiry gauges and warns about SVIDs in the last sixth of their life.
    pub(super) fn update_expiry(&self) {
        let now = self.clock.now();
        let mut e = Expiry::default();
        {
            let mut state = self.lock();
            let mut warn = Vec::new();
            // Labelled by workload (bounded): the instance whose SVID expires first.
            let names: std::collections::HashMap<&str, &str> = state
                .config
                .workloads
                .iter()
                .map(|w| (w.node_id.as_str(), w.name.as_str()))
                .collect();
            for (key, s) in &state.book.svids {
                let node = crate::xds::node::split_key(key).0;
                let name = names.get(node).copied().unwrap_or(node).to_string();
                let left = seconds_until(s.not_after, now);
                let slot = e.svids.entry(name.clone()).or_insert(left);
                *slot = (*slot).min(left);
                if in_danger(s.not_before, s.not_after, now)
                    && !state.warned.contains(&s.serial_hex)
                {
                    warn.push(s.serial_hex.clone());
                    tracing::warn!(workload = %name, instance = %key, serial = %s.serial_hex, expires_in_s = seconds_until(s.not_after, now), "SVID is in the last sixth of its life and was not renewed (see warden_svid_renewal_failures_total)");
                }
            }
            let live: BTreeSet<String> = state
                .book
                .svids
                .values()
                .map(|s| s.serial_hex.clone())
                .collect();
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
        self.xds.metrics.set_ca_expired(rs.current.not_after <= now);
        self.xds.metrics.set_expiry(e);
    }
}
