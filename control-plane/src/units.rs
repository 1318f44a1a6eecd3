//! Durations spelled the way configs write them (`1h30m`, `45s`): shared by the config
//! layer (`config::duration`) and the identity layer below it (upstream CA defects).

use std::time::Duration;

/// Format a duration the way configs spell it (`1h30m`, `45s`; whole seconds).
pub(crate) fn format_duration(d: Duration) -> String {
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
