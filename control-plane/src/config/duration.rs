//! Human durations, the one parser for config files and every CLI flag: `90s`, `10m`,
//! `1h`, `1h30m`, `7d`.
//!
//! One set of bounds for every lifetime Warden accepts (CA, X.509-SVID, JWT-SVID, JWT key,
//! join token, `mint --ttl`): [`MIN_TTL`] to [`MAX`]. Arithmetic is checked, so no input
//! overflows into a panic later (`SystemTime + ttl` stays far from the type's end).

use std::time::{Duration, SystemTime};

/// The longest duration accepted anywhere: 10 years (3650d). Longer lifetimes are no
/// use for short-lived identities, and keeping far below `SystemTime`'s and X.509's limits
/// means `now + ttl` never overflows.
pub const MAX: Duration = Duration::from_secs(3650 * 86400);

/// The shortest lifetime accepted for anything Warden issues. Production deployments use
/// minutes to hours (SPIRE: SVIDs 1h, JWT-SVIDs 5m); lifetimes down to 10s exist for
/// rotation drills and tests.
pub const MIN_TTL: Duration = Duration::from_secs(10);

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("unknown unit `{unit}` in `{text}` (units: s, m, h, d)")]
    UnknownUnit { unit: char, text: String },
    #[error("missing number before `{unit}` in `{text}`")]
    MissingNumber { unit: char, text: String },
    #[error("`{text}` needs a unit (s, m, h or d), e.g. `{digits}s`")]
    NoUnit { text: String, digits: String },
    #[error("`{text}` is longer than the maximum 3650d (10 years)")]
    TooLong { text: String },
    #[error("`{text}` is shorter than the minimum 10s")]
    TooShort { text: String },
}

/// Parse a duration made of `<number><unit>` parts, units `s`, `m`, `h`, `d`; at most
/// [`MAX`]. `0s` is accepted (some settings use it for "off"); lifetimes use
/// [`parse_ttl`].
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let too_long = || DurationError::TooLong {
        text: super::diag::clip(text),
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: c,
                    text: super::diag::clip(text),
                })
            }
        };
        if digits.is_empty() {
            return Err(DurationError::MissingNumber {
                unit: c,
                text: super::diag::clip(text),
            });
        }
        // Only digits are left, so a parse error means the number does not fit in u64.
        let n: u64 = digits.parse().map_err(|_| too_long())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(too_long)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(DurationError::NoUnit {
            text: super::diag::clip(text),
            digits: super::diag::clip(&digits),
        });
    }
    let d = Duration::from_secs(total);
    if d > MAX {
        return Err(too_long());
    }
    Ok(d)
}

/// [`parse`] for a lifetime: between [`MIN_TTL`] and [`MAX`].
pub fn parse_ttl(text: &str) -> Result<Duration, DurationError> {
    let d = parse(text)?;
    if d < MIN_TTL {
        return Err(DurationError::TooShort {
            text: super::diag::clip(text.trim()),
        });
    }
    Ok(d)
}

/// `now + d`, saturating at `now + MAX` instead of panicking on overflow.
pub fn after(now: SystemTime, d: Duration) -> SystemTime {
    now.checked_add(d.min(MAX))
        .or_else(|| now.checked_add(MAX))
        .unwrap_or(now)
}

/// Format a duration the way configs spell it (`1h30m`, `45s`).
pub fn format(d: Duration) -> String {
    crate::units::format_duration(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_parse_with_units_and_compounds() {
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn durations_without_unit_or_with_unknown_unit_are_rejected() {
        assert!(matches!(parse("10"), Err(DurationError::NoUnit { .. })));
        assert!(matches!(
            parse("10y"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert!(matches!(
            parse("h"),
            Err(DurationError::MissingNumber { .. })
        ));
        assert!(matches!(
            parse("-5s"),
            Err(DurationError::UnknownUnit { .. })
        ));
    }

    #[test]
    fn huge_durations_are_refused_not_wrapped() {
        for text in [
            "9223372036854775807s",
            "18446744073709551615s",
            "99999999999999999999999s",
            "87600000h",
            "3651d",
            "3650d1s",
        ] {
            assert_eq!(
                parse(text),
                Err(DurationError::TooLong {
                    text: text.to_owned()
                }),
                "{text}"
            );
        }
        assert_eq!(parse("3650d").unwrap(), MAX);
        assert_eq!(parse("87600h").unwrap(), MAX);
    }

    #[test]
    fn lifetimes_share_one_minimum() {
        assert!(matches!(
            parse_ttl("9s"),
            Err(DurationError::TooShort { .. })
        ));
        assert!(matches!(
            parse_ttl("0s"),
            Err(DurationError::TooShort { .. })
        ));
        assert_eq!(parse_ttl("10s").unwrap(), MIN_TTL);
        assert!(parse_ttl("9223372036854775807s")
            .unwrap_err()
            .to_string()
            .contains("maximum"));
    }

    #[test]
    fn after_never_overflows() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(after(now, Duration::MAX), now + MAX);
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }

    proptest! {
        #[test]
        fn no_input_makes_the_parser_panic(s in "\\PC{0,40}", d in "[0-9smhd]{0,30}") {
            let _ = parse(&s);
            let _ = parse_ttl(&s);
            if let Ok(v) = parse(&d) {
                prop_assert!(v <= MAX);
                prop_assert_eq!(parse(&format(v)), Ok(v));
            }
        }
    }
}
