//! One-line emission helpers on [`AuditSink`] for the control plane's call sites (so
//! files owned elsewhere only gain a single line each).

use std::time::SystemTime;

use super::event::{SvidEvent, What};
use super::sink::AuditSink;
use crate::identity::Svid;

fn ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl AuditSink {
    /// An SVID was minted for `workload` (renewed when it held one before).
    pub fn svid(&self, workload: &str, svid: &Svid, ca: &str, renewed: bool) {
        if !self.enabled() {
            return;
        }
        let e = SvidEvent {
            spiffe_id: svid.id.to_string(),
            workload: workload.to_string(),
            instance: String::new(),
            serial: svid.serial_hex.clone(),
            not_after_ms: ms(svid.not_after),
            ca: ca.to_string(),
        };
        self.emit(if renewed {
            What::SvidRenewed(e)
        } else {
            What::SvidIssued(e)
        });
    }

    /// Minting an SVID for `workload` failed.
    pub fn svid_failed(&self, workload: &str, reason: &dyn std::fmt::Display) {
        if self.enabled() {
            self.emit(What::SvidFailed {
                workload: workload.to_string(),
                reason: reason.to_string(),
            });
        }
    }

    /// A CA rotation step (`step` as its Debug name), forced or not, with lagging nodes.
    pub fn ca_step(&self, step: &dyn std::fmt::Debug, forced: bool, lagging: &[String], ca: &str) {
        if self.enabled() {
            self.emit(What::CaStep {
                step: format!("{step:?}").to_lowercase(),
                forced,
                lagging: lagging.to_vec(),
                ca: ca.to_string(),
            });
        }
    }

    /// A config reload was refused with these diagnostics.
    pub fn reload_refused(&self, diagnostics: &str) {
        if self.enabled() {
            self.emit(What::ReloadRefused {
                diagnostics: diagnostics.lines().map(str::to_string).collect(),
            });
        }
    }

    /// A config reload was accepted.
    pub fn reload_accepted(&self, changed: usize, removed: usize, minted: usize) {
        if self.enabled() {
            self.emit(What::ReloadAccepted {
                summary: format!(
                    "{changed} node(s) changed, {removed} removed, {minted} SVID(s) minted"
                ),
            });
        }
    }

    /// An xDS caller attested as `workload` with `method`, claiming `node`.
    pub fn attested(&self, method: &str, node: &str, workload: &str) {
        if self.enabled() {
            self.emit(What::AttestAccepted {
                method: method.to_string(),
                node: node.to_string(),
                workload: workload.to_string(),
            });
        }
    }

    /// An xDS caller claiming `node` was refused for `reason` (never the credential).
    pub fn attest_refused(&self, node: &str, reason: &str) {
        if self.enabled() {
            self.emit(What::AttestRefused {
                method: String::new(),
                node: node.to_string(),
                reason: reason.to_string(),
            });
        }
    }
}
