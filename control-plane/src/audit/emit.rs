//! One-line emission helpers on [`AuditSink`] for the control plane's call sites (so
//! files owned elsewhere only gain a single line each).

use std::time::SystemTime;

use super::event::{SvidEvent, What};
use super::sink::AuditSink;
use crate::config::JoinTokenRecord;
use crate::identity::Svid;

fn ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl AuditSink {
    /// An SVID was minted for `workload`'s instance (`instance`: its key, `<node_id>` or
    /// `<node_id>/<instance>`; renewed when it held one before).
    pub fn svid(&self, workload: &str, instance: &str, svid: &Svid, ca: &str, renewed: bool) {
        if !self.enabled() {
            return;
        }
        let e = SvidEvent {
            spiffe_id: svid.id.to_string(),
            workload: workload.to_string(),
            instance: instance.to_string(),
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

    /// The Workload API issued an X.509-SVID for `spiffe_id` (entry `entry`).
    pub fn workload_x509(&self, spiffe_id: &str, entry: &str) {
        if self.enabled() {
            self.emit(What::WorkloadX509 {
                spiffe_id: spiffe_id.to_string(),
                caller: format!("workload-api entry {entry}"),
            });
        }
    }

    /// The Workload API issued a JWT-SVID.
    pub fn workload_jwt(&self, subject: &str, audience: &[String]) {
        if self.enabled() {
            self.emit(What::WorkloadJwt {
                subject: subject.to_string(),
                audience: audience.to_vec(),
            });
        }
    }

    /// Join tokens that appeared or became revoked between `old` and `new` (ids only).
    pub fn tokens(&self, old: &[JoinTokenRecord], new: &[JoinTokenRecord]) {
        if !self.enabled() {
            return;
        }
        for t in new {
            match old.iter().find(|o| o.id == t.id) {
                None if !t.revoked => self.emit(What::TokenCreated {
                    id: t.id.clone(),
                    workload: t.workload.clone(),
                }),
                Some(o) if t.revoked && !o.revoked => {
                    self.emit(What::TokenRevoked { id: t.id.clone() })
                }
                _ => {}
            }
        }
        for o in old.iter().filter(|o| !new.iter().any(|t| t.id == o.id)) {
            self.emit(What::TokenRevoked { id: o.id.clone() });
        }
    }

    /// The trust bundle changed (after a CA step).
    pub fn bundle_updated(&self, bundle: &crate::identity::TrustBundle) {
        if self.enabled() {
            self.emit(What::BundleUpdated {
                bundle_domain: bundle.trust_domain.to_string(),
                authorities: bundle.x509_authorities_der.len(),
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
