//! Sampling of allowed decisions: denies are always kept; an allow is kept when a hash of
//! its decision id falls under the rate, so every replica and retry agrees on the same
//! decision. Pure.

use sha2::{Digest, Sha256};

/// A sampling rate in parts per million (1_000_000 = keep all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(u32);

impl Rate {
    /// Keep everything (the default).
    pub const ALL: Rate = Rate(1_000_000);

    /// A rate from a fraction in [0, 1]; out-of-range or NaN values clamp.
    pub fn from_fraction(f: f64) -> Rate {
        if f.is_nan() || f <= 0.0 {
            Rate(0)
        } else if f >= 1.0 {
            Rate::ALL
        } else {
            Rate((f * 1_000_000.0).round() as u32)
        }
    }

    /// Parts per million.
    pub fn per_million(self) -> u32 {
        self.0
    }
}

/// Whether to keep a decision.
pub fn keep(decision: &str, decision_id: &str, rate: Rate) -> bool {
    if decision != "allow" || rate == Rate::ALL {
        return true;
    }
    let h = Sha256::digest(decision_id.as_bytes());
    let v = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % 1_000_000;
    v < rate.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denies_are_always_kept() {
        assert!(keep("deny", "x", Rate::from_fraction(0.0)));
    }

    #[test]
    fn allows_are_kept_at_about_the_rate() {
        let r = Rate::from_fraction(0.25);
        let kept = (0..10_000)
            .filter(|i| keep("allow", &format!("id-{i}"), r))
            .count();
        assert!((2_000..3_000).contains(&kept), "{kept}");
    }

    #[test]
    fn the_same_id_is_always_decided_the_same_way() {
        let r = Rate::from_fraction(0.5);
        assert_eq!(keep("allow", "abc", r), keep("allow", "abc", r));
    }

    #[test]
    fn nan_and_out_of_range_rates_clamp() {
        assert_eq!(Rate::from_fraction(f64::NAN).per_million(), 0);
        assert_eq!(Rate::from_fraction(7.0), Rate::ALL);
    }
}
