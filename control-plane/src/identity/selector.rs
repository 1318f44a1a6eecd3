//! Workload API registration entries: which local process (by selectors: uid, gid,
//! executable path) gets which SPIFFE ID. Vocabulary only: parsed from text by `config`,
//! matched against a caller by `workload_api::attest`; no I/O here.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::SpiffeId;

/// A selector string is not `unix:uid:N`, `unix:gid:N` or `unix:path:/abs`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("selector `{0}`: expected unix:uid:<number>, unix:gid:<number> or unix:path:<absolute path>")]
    BadSelector(String),
}

/// One property a caller must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Uid(u32),
    Gid(u32),
    /// Absolute path of the caller's executable.
    Path(PathBuf),
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SelectorError::BadSelector(s.to_string());
        let rest = s.strip_prefix("unix:").ok_or_else(bad)?;
        let (kind, value) = rest.split_once(':').ok_or_else(bad)?;
        // Plain decimal only: `+5` or ` 5` would parse but not print back the same.
        let number = value.bytes().all(|b| b.is_ascii_digit());
        match kind {
            "uid" if number => value.parse().map(Selector::Uid).map_err(|_| bad()),
            "gid" if number => value.parse().map(Selector::Gid).map_err(|_| bad()),
            "path" if value.starts_with('/') => Ok(Selector::Path(PathBuf::from(value))),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Uid(n) => write!(f, "unix:uid:{n}"),
            Selector::Gid(n) => write!(f, "unix:gid:{n}"),
            Selector::Path(p) => write!(f, "unix:path:{}", p.display()),
        }
    }
}

/// A workload that may fetch identities over the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub spiffe_id: SpiffeId,
    /// All must match.
    pub selectors: Vec<Selector>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_round_trip_through_their_text_form() {
        for s in ["unix:uid:1000", "unix:gid:0", "unix:path:/usr/bin/app"] {
            assert_eq!(s.parse::<Selector>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn malformed_selectors_are_rejected() {
        for s in [
            "uid:1",
            "unix:uid:-1",
            "unix:uid:x",
            "unix:path:rel/app",
            "unix:pid:3",
            "unix:uid",
            "unix:uid:+5",
            "unix:gid:",
            "unix:uid:4294967296",
        ] {
            assert!(s.parse::<Selector>().is_err(), "{s}");
        }
    }
}
