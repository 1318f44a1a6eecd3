//! When to renew a certificate or key and how to retry a failed renewal: the one rule
//! every renewer in Warden follows (sidecar SVIDs, the xDS serving certificate, Workload
//! API SVIDs, JWT signing keys). Pure functions of time; no I/O.
//!
//! - Renewal at a fraction of the life, spread ±10 % of that fraction (45–55 % at the
//!   default one half, SPIRE's and Istio's default): the point is a hash of (subject,
//!   serial), so it is stable for one certificate (tests, restarts) yet spread across
//!   thousands of workloads, and it moves with every new serial so renewals never lock
//!   into step.
//! - A failed renewal keeps the still-valid certificate and retries after 1 s, 2 s, 4 s …
//!   capped at 30 s.
//! - "Life" starts at issuance, not at the backdated `notBefore`: with a 30 s backdate and
//!   a 20 s TTL, half of `notAfter - notBefore` would already be in the past at issuance.
//! - A certificate within the last 1/6 of its life without renewal is "in danger": warned
//!   about and visible in metrics, never allowed to expire silently.

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::BACKDATE;

/// When a certificate was issued: its `notBefore` plus the backdate (never past `notAfter`).
pub fn issued_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    (not_before + BACKDATE).min(not_after)
}

/// Earliest renewal point at the default rule, as a fraction of the life (per mille).
pub const RENEW_FROM_PERMILLE: u32 = 450;
/// Width of the default renewal window (per mille of the life): renewal in 45–55 %.
pub const RENEW_SPREAD_PERMILLE: u32 = 100;
/// First retry delay after a failed renewal.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Retry delay cap.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Where in its life a certificate is renewed: a centre fraction (per mille) spread by
/// ±10 % of itself. [`Rule::DEFAULT`] (one half: 45–55 %) is what sidecar SVIDs, the
/// serving certificate and (unless `renew_fraction` says otherwise) Workload API SVIDs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    centre_permille: u32,
}

impl Rule {
    /// Renewal at 45–55 % of the life.
    pub const DEFAULT: Rule = Rule {
        centre_permille: 500,
    };

    /// A rule centred on `fraction` of the life (clamped to 0.001 ..= 0.9).
    pub fn at_fraction(fraction: f64) -> Rule {
        let permille = (fraction.clamp(0.001, 0.9) * 1000.0).round() as u32;
        Rule {
            centre_permille: permille,
        }
    }

    /// The window's bounds, per mille of the life: the centre ±10 % of itself.
    pub fn window_permille(self) -> (u32, u32) {
        let c = self.centre_permille;
        (c - c / 10, c + c / 10)
    }

    /// When the certificate `(subject, serial)` valid from `not_before` to `not_after`
    /// is renewed: somewhere in the window, fixed per subject and serial.
    pub fn renew_at(
        self,
        subject: &str,
        serial_hex: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> SystemTime {
        let (lo, hi) = self.window_permille();
        let permille = lo + spread(subject, serial_hex) % (hi - lo + 1);
        point(issued_at(not_before, not_after), not_after, permille)
    }
}

/// `permille` of the way from `from` to `to` (`from` when `to` is earlier).
pub fn point(from: SystemTime, to: SystemTime, permille: u32) -> SystemTime {
    let life = to.duration_since(from).unwrap_or(Duration::ZERO);
    let nanos = life.as_nanos().saturating_mul(u128::from(permille)) / 1000;
    from + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn spread(subject: &str, serial_hex: &str) -> u32 {
    let mut h = Sha256::new();
    h.update(subject.as_bytes());
    h.update([0]);
    h.update(serial_hex.as_bytes());
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// When the SVID `(workload, serial)` valid from `not_before` to `not_after` is renewed
/// by the default rule: somewhere in 45–55 % of its life, fixed per workload and serial.
pub fn renew_at(
    workload: &str,
    serial_hex: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> SystemTime {
    Rule::DEFAULT.renew_at(workload, serial_hex, not_before, not_after)
}

/// Delay before retry number `failures` (1 = after the first failure).
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    (BACKOFF_FIRST * 2u32.pow(exp)).min(BACKOFF_CAP)
}

/// Whether the certificate is in the last 1/6 of its life (it should have been renewed
/// long ago).
pub fn in_danger(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
    let not_before = issued_at(not_before, not_after);
    let life = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    now + life / 6 >= not_after
}

/// Seconds from `now` until `t`, negative once past.
pub fn seconds_until(t: SystemTime, now: SystemTime) -> i64 {
    match t.duration_since(now) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// A subject's failed renewals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failing {
    /// Consecutive failures.
    pub failures: u32,
    /// Not before this instant is the next attempt made.
    pub retry_at: SystemTime,
}

impl Failing {
    /// The state after one more failure at `now`.
    pub fn after_failure(prev: Option<Failing>, now: SystemTime) -> Failing {
        let failures = prev.map_or(1, |f| f.failures + 1);
        Failing {
            failures,
            retry_at: now + backoff(failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    /// The `notBefore` of an SVID issued at `t(secs)` (backdated).
    fn nb(secs: u64) -> SystemTime {
        t(secs) - BACKDATE
    }

    #[test]
    fn renewal_lands_between_45_and_55_percent_and_is_stable() {
        for i in 0..500 {
            let w = format!("w{i}");
            let at = renew_at(&w, "ab", nb(0), t(1000));
            assert!(at >= t(450) && at <= t(550), "{w}: {at:?}");
            assert_eq!(at, renew_at(&w, "ab", nb(0), t(1000)), "deterministic");
        }
    }

    #[test]
    fn renewals_of_many_workloads_spread_over_the_window() {
        let mut buckets = [0u32; 10];
        for i in 0..1000 {
            let at = renew_at(&format!("w{i}"), "01", nb(0), t(1000));
            let off = at.duration_since(t(450)).unwrap().as_secs().min(99);
            buckets[(off / 10) as usize] += 1;
        }
        assert!(buckets.iter().all(|b| *b > 50), "{buckets:?}");
    }

    #[test]
    fn a_new_serial_moves_the_renewal_point() {
        let points: std::collections::BTreeSet<_> = (0..20)
            .map(|s| renew_at("w", &format!("{s:02x}"), nb(0), t(100_000)))
            .collect();
        assert!(points.len() > 10);
    }

    proptest::proptest! {
        #[test]
        fn renewal_is_always_inside_the_window(
            w in "[a-z0-9-]{1,20}",
            serial in "[0-9a-f]{32}",
            start in 0u64..4_000_000_000,
            life in 1u64..10_000_000,
        ) {
            let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(start) + BACKDATE;
            let na = issued + Duration::from_secs(life);
            let at = renew_at(&w, &serial, issued - BACKDATE, na);
            let l = Duration::from_secs(life);
            proptest::prop_assert!(at >= issued + l * 45 / 100 && at <= issued + l * 55 / 100);
        }
    }

    #[test]
    fn a_short_svid_is_not_due_at_issuance_despite_the_backdate() {
        let at = renew_at("w", "01", nb(0), t(20));
        assert!(at >= t(9) && at <= t(11), "{at:?}");
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_thirty() {
        let got: Vec<u64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(1000), BACKOFF_CAP);
    }

    #[test]
    fn consecutive_failures_push_the_retry_out() {
        let f1 = Failing::after_failure(None, t(0));
        assert_eq!(f1.retry_at, t(1));
        let f2 = Failing::after_failure(Some(f1), t(1));
        assert_eq!((f2.failures, f2.retry_at), (2, t(3)));
    }

    #[test]
    fn the_last_sixth_of_the_life_is_danger() {
        assert!(!in_danger(nb(0), t(600), t(499)));
        assert!(in_danger(nb(0), t(600), t(500)));
        assert_eq!(seconds_until(t(10), t(0)), 10);
        assert_eq!(seconds_until(t(0), t(10)), -10);
    }

    #[test]
    fn a_configured_fraction_is_spread_ten_percent_of_itself() {
        // Moved from the Workload API issuer's tests: 0.5 of one hour is 30 min ±3 min.
        let issued = t(0);
        let end = issued + Duration::from_secs(3600);
        let rule = Rule::at_fraction(0.5);
        assert_eq!(rule, Rule::DEFAULT);
        assert_eq!(rule.window_permille(), (450, 550));
        assert_eq!(point(issued, end, 500), issued + Duration::from_secs(1800));
        assert_eq!(point(issued, end, 550), issued + Duration::from_secs(1980));
        assert_eq!(point(issued, end, 450), issued + Duration::from_secs(1620));
        for i in 0..200 {
            let at = Rule::at_fraction(0.8).renew_at(&format!("e{i}"), "0a", nb(0), end);
            assert!(at >= t(2592) && at <= t(3168), "{at:?}");
        }
    }

    #[test]
    fn an_expired_certificate_is_due_at_once() {
        assert_eq!(point(t(10), t(5), 500), t(10));
        assert!(renew_at("w", "01", nb(10), t(5)) <= t(10));
    }

    #[test]
    fn absurd_fractions_are_clamped_into_the_life() {
        assert_eq!(Rule::at_fraction(7.0).window_permille(), (810, 990));
        assert_eq!(Rule::at_fraction(-1.0).window_permille(), (1, 1));
        assert!(Rule::at_fraction(f64::NAN).window_permille().1 <= 990);
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert!(point(SystemTime::UNIX_EPOCH, far, 990) <= far);
    }
}
