//! Human durations in config files: `90s`, `10m`, `1h`, `1h30m`, `7d`.

use std::time::Duration;

/// Parse a duration made of `<number><unit>` parts, units `s`, `m`, `h`, `d`.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
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
            _ => return Err(format!("unknown unit `{c}` in `{text}`")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("missing number before `{c}` in `{text}`"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("`{text}` is too long"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "`{text}` needs a unit (s, m, h or d), e.g. `{digits}s`"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// [`parse`] for clap's `value_parser`.
pub fn parse_arg(text: &str) -> Result<Duration, String> {
    parse(text)
}

/// Format a duration the way configs spell it (`1h30m`, `45s`).
pub fn format(d: Duration) -> String {
    let mut s = d.as_secs();
    let mut out = String::new();
    for (unit, len) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_compounds() {
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn durations_without_unit_or_with_unknown_unit_are_rejected() {
        assert!(parse("10").unwrap_err().contains("needs a unit"));
        assert!(parse("10y").unwrap_err().contains("unknown unit"));
        assert!(parse("").is_err());
        assert!(parse("h").is_err());
    }
}
