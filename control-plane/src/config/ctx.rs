//! [`Ctx`]: the diagnostics collector every per-file check writes to (`validate.rs`,
//! `attestation.rs`, `workloads.rs`, `workload_api.rs`), with the shared small parsers
//! (addresses, lifetimes). Below all of them, so none imports another through it.

use std::net::SocketAddr;
use std::time::Duration;

use super::diag::Diagnostic;
use super::duration;
use super::files::Parsed;

/// Collects diagnostics for one file.
pub(super) struct Ctx<'a, T> {
    pub(super) file: &'a Parsed<T>,
    pub(super) diags: &'a mut Vec<Diagnostic>,
}

impl<T> Ctx<'_, T> {
    pub(super) fn error(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::at(&self.file.path, self.file.spans().value(path), message);
        d.hint = hint;
        self.diags.push(d);
    }

    pub(super) fn addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    path,
                    format!("`{text}` is not an IP:port address"),
                    Some("write it like 127.0.0.1:15001 (host names are not accepted here)".into()),
                );
                None
            }
        }
    }

    /// A lifetime, within the bounds every lifetime shares ([`duration::parse_ttl`]).
    pub(super) fn ttl(&mut self, path: &str, text: Option<&str>, default: Duration) -> Duration {
        match text.map(duration::parse_ttl) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.error(
                    path,
                    format!("invalid duration: {e}"),
                    Some("examples: 90s, 10m, 1h, 7d; lifetimes are 10s to 3650d".into()),
                );
                default
            }
        }
    }

    pub(super) fn warning(&mut self, path: &str, message: impl Into<String>, hint: String) {
        let d = Diagnostic::at(&self.file.path, self.file.spans().value(path), message)
            .hint(hint)
            .warning();
        self.diags.push(d);
    }
}
