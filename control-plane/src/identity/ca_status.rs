//! The CA's rotation state as data ([`CaStatus`], the JSON of the admin's `GET /ca/status`
//! and of `warden ca status --json`) and in plain words ([`CaStatus::summary`]). Pure.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::authority::Authority;
use super::rotation::{rfc3339, unix, Phase};

/// One CA certificate in the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotStatus {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity (RFC 3339, UTC).
    pub not_before: String,
    /// End of validity (RFC 3339, UTC).
    pub not_after: String,
    /// End of validity, seconds since the epoch.
    pub not_after_unix: u64,
    /// When it was prepared (next CA), seconds since the epoch.
    pub prepared_at_unix: Option<u64>,
    /// When it started signing, seconds since the epoch (unknown for a v1 state file).
    pub activated_at_unix: Option<u64>,
    /// Bundle sequence from which it is in the bundle (next CA).
    pub published_sequence: Option<u64>,
}

/// A retired CA in the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredStatus {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// When it stopped signing, seconds since the epoch.
    pub retired_at_unix: u64,
    /// When it leaves the bundle (its last SVID's `notAfter`), RFC 3339.
    pub retire_after: String,
    /// Same, seconds since the epoch.
    pub retire_after_unix: u64,
    /// Alias of `retire_after` (the certificate itself may live longer, unused).
    pub not_after: String,
}

/// Which connected nodes trust the next CA (only known to a running control plane).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAcks {
    /// Nodes with an open ADS stream.
    pub connected: Vec<String>,
    /// Connected nodes that have not ACKed a bundle holding the next CA.
    pub lagging: Vec<String>,
}

/// The whole rotation state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaStatus {
    /// Trust domain.
    pub trust_domain: String,
    /// When this status was taken, seconds since the epoch.
    pub now_unix: u64,
    /// `current_only`, `prepared` or `activated`.
    pub phase: Phase,
    /// The trust bundle's sequence.
    pub bundle_sequence: u64,
    /// Number of authorities in the bundle.
    pub bundle_authorities: usize,
    /// The signing CA.
    pub current: SlotStatus,
    /// The prepared next CA.
    pub next: Option<SlotStatus>,
    /// Retired CAs still in the bundle.
    pub retired: Vec<RetiredStatus>,
    /// When the next CA is prepared automatically (1/2 of the current CA's life).
    pub prepare_at: String,
    /// When the next CA is activated automatically (5/6), if every node has ACKed it.
    pub activate_at: String,
    /// The hard activation deadline: from then on the next CA is activated even if nodes
    /// lag (known only to a running control plane, which knows the longest SVID TTL).
    #[serde(default)]
    pub activate_by: Option<String>,
    /// Nodes that had not ACKed the next CA's bundle when it was activated at the
    /// deadline and have not ACKed the new bundle since (their mTLS with peers fails).
    #[serde(default)]
    pub left_behind: Vec<String>,
    /// Node ACKs; `None` when read offline from the state directory.
    pub nodes: Option<NodeAcks>,
    /// Connected nodes that block activation (empty offline or when nothing is prepared).
    pub activation_blocked_by: Vec<String>,
    /// Why each forced step would be refused now (`None`: it would run).
    pub refusals: StepRefusals,
}

/// Per step, the refusal reason or `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRefusals {
    pub prepare: Option<String>,
    pub activate: Option<String>,
    pub retire: Option<String>,
}

impl CaStatus {
    /// The status of `authority` at `now`; `nodes` from the running server, if any.
    pub fn of(authority: &Authority, now: SystemTime, nodes: Option<NodeAcks>) -> CaStatus {
        let rs = authority.rotation_state();
        let st = authority.state();
        let bundle = authority.bundle();
        let slot = |ca: &super::Ca, s: &super::state::CaSlot| SlotStatus {
            serial: ca.serial_hex().to_string(),
            not_before: rfc3339(ca.not_before()),
            not_after: rfc3339(ca.not_after()),
            not_after_unix: unix(ca.not_after()),
            prepared_at_unix: s.prepared_at_unix,
            activated_at_unix: s.activated_at_unix,
            published_sequence: s.published_sequence,
        };
        let lagging = nodes
            .as_ref()
            .map(|n| n.lagging.clone())
            .unwrap_or_default();
        let blocked = if rs.next.is_some() {
            lagging.clone()
        } else {
            Vec::new()
        };
        let refusals = StepRefusals {
            prepare: rs.check_prepare().err().map(|e| e.to_string()),
            activate: rs
                .check_activate(now, &lagging)
                .err()
                .map(|e| e.to_string()),
            retire: rs.check_retire(now, false).err().map(|e| e.to_string()),
        };
        CaStatus {
            trust_domain: bundle.trust_domain.to_string(),
            now_unix: unix(now),
            phase: rs.phase(),
            bundle_sequence: bundle.sequence,
            bundle_authorities: bundle.x509_authorities_der.len(),
            current: slot(&authority.active(), &st.current),
            next: authority
                .next()
                .zip(st.next.as_ref())
                .map(|(ca, s)| slot(&ca, s)),
            retired: rs
                .retired
                .iter()
                .zip(&st.retired)
                .map(|(r, s)| RetiredStatus {
                    serial: r.serial_hex.clone(),
                    retired_at_unix: s.retired_at_unix,
                    retire_after: rfc3339(r.retire_after),
                    retire_after_unix: s.retire_after_unix,
                    not_after: rfc3339(r.retire_after),
                })
                .collect(),
            prepare_at: rfc3339(rs.prepare_at()),
            activate_at: rfc3339(rs.activate_at()),
            activate_by: None,
            left_behind: Vec::new(),
            nodes,
            activation_blocked_by: blocked,
            refusals,
        }
    }

    /// The state in plain words, one clause per CA.
    pub fn summary(&self) -> String {
        let mut parts = vec![self.current_part()];
        if !self.left_behind.is_empty() {
            parts.push(format!(
                "activated at the deadline without the ACK of {} (left behind: pushed the new bundle again, their mTLS with peers fails until they ACK it)",
                self.left_behind.join(", ")
            ));
        }
        parts.push(self.next_part());
        parts.extend(self.retired.iter().map(|r| self.retired_part(r)));
        format!(
            "{}.\nbundle sequence {} holds {} authorit{}; phase: {}.",
            parts.join(";\n"),
            self.bundle_sequence,
            self.bundle_authorities,
            if self.bundle_authorities == 1 {
                "y"
            } else {
                "ies"
            },
            match self.phase {
                Phase::CurrentOnly => "current only",
                Phase::Prepared => "prepared",
                Phase::Activated => "activated (old CA still trusted)",
            }
        )
    }

    fn current_part(&self) -> String {
        let now = self.now_unix;
        if self.current.not_after_unix <= now {
            format!(
                "current CA {} EXPIRED at {} ({} ago): it can no longer sign SVIDs, every renewal fails",
                short(&self.current.serial),
                self.current.not_after,
                human(now - self.current.not_after_unix)
            )
        } else {
            format!(
                "current CA {} signs SVIDs, expires in {} ({})",
                short(&self.current.serial),
                human(self.current.not_after_unix.saturating_sub(now)),
                self.current.not_after
            )
        }
    }

    fn next_part(&self) -> String {
        let now = self.now_unix;
        let Some(n) = &self.next else {
            return format!(
                "no next CA yet (prepared automatically at {})",
                self.prepare_at
            );
        };
        let ago = human(now.saturating_sub(n.prepared_at_unix.unwrap_or(now)));
        let published = match &self.nodes {
            None => "node ACKs unknown offline".to_string(),
            Some(acks) => format!(
                "published to {}/{} connected nodes",
                acks.connected.len() - self.activation_blocked_by.len().min(acks.connected.len()),
                acks.connected.len()
            ),
        };
        let deadline = self
            .activate_by
            .as_ref()
            .map(|d| format!("; activates anyway at {d}"))
            .unwrap_or_default();
        let can = match &self.refusals.activate {
            None if self.nodes.is_none() => format!(
                "activation is up to the running control plane, once every Envoy has ACKed it (automatically at {})",
                self.activate_at
            ),
            None => format!("can activate now (automatically at {})", self.activate_at),
            Some(_) if !self.activation_blocked_by.is_empty() => format!(
                "waiting for {} to ACK before it can activate{deadline}",
                self.activation_blocked_by.join(", ")
            ),
            Some(reason) => format!("cannot activate yet: {reason}"),
        };
        format!(
            "next CA {} prepared {ago} ago, {published}, {can}",
            short(&n.serial)
        )
    }

    fn retired_part(&self, r: &RetiredStatus) -> String {
        let now = self.now_unix;
        let when = if r.retire_after_unix <= now {
            "its SVIDs have expired, it leaves the bundle at the next tick (or `warden ca retire`)"
                .to_string()
        } else {
            format!(
                "leaves the bundle at {} (in {}) when its last SVID expires",
                r.retire_after,
                human(r.retire_after_unix - now)
            )
        };
        format!("retired CA {} {when}", short(&r.serial))
    }
}

/// A duration in the largest two units: `45s`, `12m`, `3h20m`, `2d4h`.
pub fn human(secs: u64) -> String {
    let d = Duration::from_secs(secs).as_secs();
    match d {
        0..=59 => format!("{d}s"),
        60..=3599 => format!("{}m", d / 60),
        3600..=86_399 => match (d % 3600) / 60 {
            0 => format!("{}h", d / 3600),
            m => format!("{}h{m}m", d / 3600),
        },
        _ => match (d % 86_400) / 3600 {
            0 => format!("{}d", d / 86_400),
            h => format!("{}d{h}h", d / 86_400),
        },
    }
}
/// The first eight characters of a serial, for humans.
fn short(serial: &str) -> String {
    serial.chars().take(8).collect::<String>() + "…"
}
