//! CA rotation as pure decisions over a [`RotationState`] and an instant: which step is
//! due (SPIRE's thresholds: prepare the next CA at 1/2 of the current CA's life, activate
//! it at 5/6) and whether an operator's forced step is safe, with the reason when not.
//!
//! Activation waits for lagging nodes only while that is safe: [`RotationState::activate_by`]
//! is the hard deadline (the last instant the current CA can still sign an SVID of the
//! full TTL). Past it the next CA is activated whatever the nodes do (as SPIRE does), and
//! the nodes left behind are named by the caller.
//!
//! Phases: current only → prepared (next in the bundle, not signing) → activated (next
//! signs; the old CA stays in the bundle as retired) → the retired CA leaves the bundle
//! once the last SVID it signed has expired. No I/O and no clock here: the caller passes
//! `now` and the nodes that have not yet ACKed the bundle with the next CA.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Fraction of the current CA's life after which the next CA is prepared (SPIRE: 1/2).
pub const PREPARE_FRACTION: (u32, u32) = (1, 2);
/// Fraction of the current CA's life after which the next CA is activated (SPIRE: 5/6).
pub const ACTIVATE_FRACTION: (u32, u32) = (5, 6);

/// One CA certificate's identity and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaView {
    /// Serial number, lowercase hex.
    pub serial_hex: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

/// The prepared next CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextView {
    /// Its certificate.
    pub ca: CaView,
    /// When it was prepared.
    pub prepared_at: SystemTime,
    /// The bundle sequence from which it is in the bundle.
    pub published_sequence: u64,
}

/// A CA that stopped signing and is still in the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredView {
    /// Serial number, lowercase hex.
    pub serial_hex: String,
    /// When it may leave the bundle: the last `notAfter` of the SVIDs it signed.
    pub retire_after: SystemTime,
}

/// What rotation decisions look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationState {
    /// The signing CA.
    pub current: CaView,
    /// A prepared CA, if any.
    pub next: Option<NextView>,
    /// Retired CAs still in the bundle.
    pub retired: Vec<RetiredView>,
}

/// Where the rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// One CA signs and is alone in the bundle.
    CurrentOnly,
    /// A next CA is in the bundle but does not sign yet.
    Prepared,
    /// The next CA signs; the old one is still in the bundle until its SVIDs expire.
    Activated,
}

/// A rotation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Create the next CA and publish it in the bundle.
    Prepare,
    /// Let the next CA sign; the current one becomes retired.
    Activate,
    /// Drop retired CAs whose SVIDs have all expired from the bundle.
    Retire,
}

/// Why a step is refused. Every message says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `prepare` with a next CA already prepared.
    #[error("a next CA ({serial}) is already prepared (since {since}); activate it with `warden ca activate` before preparing another")]
    NextExists { serial: String, since: String },
    /// `activate` without a prepared CA.
    #[error("no next CA is prepared; run `warden ca prepare` first and wait until every Envoy has ACKed the new bundle")]
    NoNext,
    /// `activate` before every connected Envoy ACKed the bundle holding the next CA.
    #[error("the next CA is not yet trusted everywhere: {} connected node(s) have not ACKed bundle sequence {sequence}: {}; activating now would break their mTLS (check `/config_dump` for NACKs)", nodes.len(), nodes.join(", "))]
    NotAcked { sequence: u64, nodes: Vec<String> },
    /// `activate` while the next CA's certificate is not yet valid.
    #[error("the next CA is valid only from {from}; retry after that")]
    NotYetValid { from: String },
    /// `retire` with no retired CA in the bundle.
    #[error("nothing to retire: no retired CA is left in the bundle")]
    NothingToRetire,
    /// `retire` while SVIDs of a retired CA are still valid.
    #[error("SVIDs signed by retired CA {serial} are valid until {until}; it leaves the bundle by itself then (removing it earlier breaks workloads still holding those SVIDs; `--force` does exactly that)")]
    StillInUse { serial: String, until: String },
}

/// `t` as RFC 3339 in UTC, whole seconds (`2026-11-28T21:04:00Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = unix(t);
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

/// Whole seconds since the Unix epoch (0 before it).
pub use super::unix_time::unix_secs as unix;

fn fraction_of_life(ca: &CaView, (num, den): (u32, u32)) -> SystemTime {
    let life = ca
        .not_after
        .duration_since(ca.not_before)
        .unwrap_or(Duration::ZERO);
    ca.not_before + life * num / den
}

impl RotationState {
    /// The phase, from the slots present.
    pub fn phase(&self) -> Phase {
        match (&self.next, self.retired.is_empty()) {
            (Some(_), _) => Phase::Prepared,
            (None, false) => Phase::Activated,
            (None, true) => Phase::CurrentOnly,
        }
    }

    /// When the next CA is prepared automatically.
    pub fn prepare_at(&self) -> SystemTime {
        fraction_of_life(&self.current, PREPARE_FRACTION)
    }

    /// When the next CA is activated automatically (if every node has ACKed it).
    pub fn activate_at(&self) -> SystemTime {
        fraction_of_life(&self.current, ACTIVATE_FRACTION)
    }

    /// The hard activation deadline: `max(activate_at, current.notAfter − longest SVID
    /// TTL)`. Until then activation waits for lagging nodes; from then on the current CA
    /// can no longer sign an SVID of the full TTL (its SVIDs would be cut short, renewed
    /// ever more often, and finally expire with it), so activation goes ahead anyway.
    pub fn activate_by(&self, longest_svid_ttl: Duration) -> SystemTime {
        let floor = self
            .current
            .not_after
            .checked_sub(longest_svid_ttl)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        floor.max(self.activate_at())
    }

    /// Whether activation must go ahead now even with lagging nodes: a next CA is
    /// prepared, already valid, and the deadline [`Self::activate_by`] has come.
    pub fn activation_overdue(&self, now: SystemTime, longest_svid_ttl: Duration) -> bool {
        self.next
            .as_ref()
            .is_some_and(|n| n.ca.not_before <= now && now >= self.activate_by(longest_svid_ttl))
    }

    /// Whether `prepare` is safe now.
    pub fn check_prepare(&self) -> Result<(), Refusal> {
        match &self.next {
            Some(n) => Err(Refusal::NextExists {
                serial: n.ca.serial_hex.clone(),
                since: rfc3339(n.prepared_at),
            }),
            None => Ok(()),
        }
    }

    /// Whether `activate` is safe now; `lagging` are the connected nodes that have not
    /// ACKed a bundle holding the next CA.
    pub fn check_activate(&self, now: SystemTime, lagging: &[String]) -> Result<(), Refusal> {
        let next = self.next.as_ref().ok_or(Refusal::NoNext)?;
        if next.ca.not_before > now {
            return Err(Refusal::NotYetValid {
                from: rfc3339(next.ca.not_before),
            });
        }
        if !lagging.is_empty() {
            return Err(Refusal::NotAcked {
                sequence: next.published_sequence,
                nodes: lagging.to_vec(),
            });
        }
        Ok(())
    }

    /// The retired CAs (serials) that `retire` drops now: those whose SVIDs have all
    /// expired, or all of them with `force`.
    pub fn check_retire(&self, now: SystemTime, force: bool) -> Result<Vec<String>, Refusal> {
        if self.retired.is_empty() {
            return Err(Refusal::NothingToRetire);
        }
        let due: Vec<String> = self
            .retired
            .iter()
            .filter(|r| force || r.retire_after <= now)
            .map(|r| r.serial_hex.clone())
            .collect();
        if due.is_empty() {
            let first = self
                .retired
                .iter()
                .min_by_key(|r| r.retire_after)
                .ok_or(Refusal::NothingToRetire)?;
            return Err(Refusal::StillInUse {
                serial: first.serial_hex.clone(),
                until: rfc3339(first.retire_after),
            });
        }
        Ok(due)
    }

    /// The step the automatic rotation takes now, if any: retire what has expired, prepare
    /// at 1/2 of the current CA's life, activate at 5/6 once every node has ACKed.
    pub fn due_step(&self, now: SystemTime, lagging: &[String]) -> Option<Step> {
        if self.retired.iter().any(|r| r.retire_after <= now) {
            return Some(Step::Retire);
        }
        match &self.next {
            None if now >= self.prepare_at() => Some(Step::Prepare),
            Some(_) if now >= self.activate_at() && self.check_activate(now, lagging).is_ok() => {
                Some(Step::Activate)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;
