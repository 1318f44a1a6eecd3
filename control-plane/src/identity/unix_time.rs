//! Unix time in whole seconds: the one conversion Warden uses for JWT claims, CA state,
//! NACK ages and token checks. Times before the epoch count as 0 (a clock that far off is
//! reported elsewhere; these helpers never panic).

use std::time::{Duration, SystemTime};

/// Whole seconds since the Unix epoch, rounded down (0 before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the epoch, rounded up (an SVID's `notAfter` must never be under-counted).
pub fn unix_secs_ceil(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// Seconds since the epoch as a fraction (for NumericDates, RFC 7519 §2; 0 before it).
pub fn unix_secs_f64(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The instant `secs` seconds after the epoch.
pub fn from_unix_secs(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_down_or_up_and_the_past_before_1970_is_zero() {
        let t = from_unix_secs(1_800_000_000) + Duration::from_millis(1);
        assert_eq!(unix_secs(t), 1_800_000_000);
        assert_eq!(unix_secs_ceil(t), 1_800_000_001);
        assert_eq!(unix_secs_ceil(from_unix_secs(5)), 5);
        assert!((unix_secs_f64(t) - 1_800_000_000.001).abs() < 1e-6);
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!((unix_secs(before), unix_secs_ceil(before)), (0, 0));
        assert_eq!(unix_secs_f64(before), 0.0);
    }
}
