//! Rego compile checks for `warden validate` (filled in by the policy engine work).

use super::{Diagnostic, PolicySettings, PolicySources};

/// Compile every policy module with the filter's engine and report errors.
pub(crate) fn check(_sources: &PolicySources, _settings: &PolicySettings) -> Vec<Diagnostic> {
    // TODO(filter): compile with warden-filter and report file:line:col.
    Vec::new()
}
