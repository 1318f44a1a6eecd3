//! The refresh state machine of one federation relationship, pure: no I/O, the time and
//! the jitter are passed in. It decides when to fetch next, what a fetched bundle does
//! (accepted, unchanged, or refused because its sequence went backwards), and keeps the
//! last good bundle through failures.

use std::time::{Duration, SystemTime};

use super::document::ForeignBundle;

/// Longest refresh interval, whatever the peer's hint says.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Refresh interval when the peer's bundle has no hint (SPIRE's default).
pub const DEFAULT_HINT: Duration = Duration::from_secs(300);
/// Warn when the earliest CA of the bundle expires within this many refresh intervals.
const EXPIRY_WARNING_INTERVALS: u32 = 3;

/// What a fetched bundle did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new bundle became current.
    Updated,
    /// Same authorities and sequence as before.
    Unchanged,
}

/// Why a fetched bundle was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Its `spiffe_sequence` is lower than the current bundle's.
    #[error("bundle sequence went backwards ({got} < {current}); keeping the current bundle")]
    SequenceBackwards {
        /// Fetched.
        got: u64,
        /// Current.
        current: u64,
    },
}

/// One relationship's state.
#[derive(Debug, Clone)]
pub struct RefreshState {
    /// The last good bundle (initial, persisted, or fetched).
    pub current: Option<ForeignBundle>,
    /// Last successful fetch.
    pub last_refresh: Option<SystemTime>,
    /// Next attempt.
    pub next_refresh: SystemTime,
    /// Failed fetches (including refused bundles) since start.
    pub failures: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// The last failure's text, cleared by a success.
    pub last_error: Option<String>,
}

impl RefreshState {
    /// Starts with `initial` (persisted or bootstrap bundle); the first fetch is now.
    pub fn new(initial: Option<ForeignBundle>, now: SystemTime) -> Self {
        Self {
            current: initial,
            last_refresh: None,
            next_refresh: now,
            failures: 0,
            consecutive_failures: 0,
            last_error: None,
        }
    }

    /// Whether a fetch is due.
    pub fn due(&self, now: SystemTime) -> bool {
        now >= self.next_refresh
    }

    /// The refresh interval: the current bundle's hint (or [`DEFAULT_HINT`]) within
    /// `floor ..= MAX_INTERVAL`.
    pub fn interval(&self, floor: Duration) -> Duration {
        let hint = self
            .current
            .as_ref()
            .and_then(|c| c.refresh_hint)
            .unwrap_or(DEFAULT_HINT);
        hint.clamp(floor, MAX_INTERVAL.max(floor))
    }

    /// A fetched, parsed bundle. `jitter` in `0.0..1.0` brings the next refresh forward
    /// by up to 10 % of the interval, so many relying parties spread out.
    pub fn fetched(
        &mut self,
        fetched: ForeignBundle,
        now: SystemTime,
        floor: Duration,
        jitter: f64,
    ) -> Result<Outcome, Refused> {
        if let Some(current) = &self.current {
            if fetched.bundle.sequence < current.bundle.sequence {
                let refused = Refused::SequenceBackwards {
                    got: fetched.bundle.sequence,
                    current: current.bundle.sequence,
                };
                self.failed(refused.to_string(), now, floor);
                return Err(refused);
            }
        }
        let outcome = if self.current.as_ref() == Some(&fetched) {
            Outcome::Unchanged
        } else {
            Outcome::Updated
        };
        self.current = Some(fetched);
        self.last_refresh = Some(now);
        self.consecutive_failures = 0;
        self.last_error = None;
        let interval = self.interval(floor);
        self.next_refresh = now + interval.mul_f64(1.0 - 0.1 * jitter.clamp(0.0, 1.0));
        Ok(outcome)
    }

    /// A failed fetch: the current bundle stays; retried after the floor, doubling per
    /// consecutive failure, never later than the refresh interval.
    pub fn failed(&mut self, error: String, now: SystemTime, floor: Duration) {
        self.failures += 1;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_error = Some(error);
        let backoff =
            floor.saturating_mul(1 << self.consecutive_failures.min(10).saturating_sub(1));
        self.next_refresh = now + backoff.min(self.interval(floor));
    }

    /// Whether the earliest CA of the current bundle expires within a few refresh
    /// intervals (the peer must rotate, and we must see it, before then).
    pub fn expiring_soon(&self, now: SystemTime, floor: Duration) -> bool {
        let window = self
            .interval(floor)
            .saturating_mul(EXPIRY_WARNING_INTERVALS);
        self.current
            .as_ref()
            .and_then(|c| c.expires)
            .is_some_and(|exp| exp <= now + window)
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
