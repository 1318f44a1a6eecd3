//! The production [`NodeAuthorizer`]: every ADS stream must present a credential in its
//! `authorization` metadata that [`Attestor`] maps to the workload whose node id the
//! stream claims. Refusals are counted (`warden_xds_attestation_failures_total{reason}`)
//! and written as one audit line (target `warden::audit`) with the caller's address, the
//! claimed node id and the reason; the credential itself is never logged.
//!
//! A missing credential is `UNAUTHENTICATED`; every other refusal (bad, expired, revoked
//! or foreign credential, node id of another workload) is `PERMISSION_DENIED`.

use std::sync::{Arc, RwLock};

use super::auth::{Caller, NodeAuthorizer};
use crate::attest::{AttestError, Attestor, AttestorError};
use crate::config::Config;
use crate::identity::Clock;
use crate::xds::metrics::Metrics;
use crate::xds::node::NodeClaim;

/// Attests callers against the current config; [`AttestingAuthorizer::update`] swaps in
/// a reloaded config (new and revoked tokens apply to the next stream).
#[derive(Debug)]
pub struct AttestingAuthorizer {
    attestor: RwLock<Arc<Attestor>>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    audit: crate::audit::AuditSink,
}

impl AttestingAuthorizer {
    /// An authorizer for `config`, with time from `clock`, counting in `metrics`.
    pub fn new(
        config: Config,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, AttestorError> {
        Ok(Self {
            attestor: RwLock::new(Arc::new(Attestor::from_config(config)?)),
            clock,
            metrics,
            audit: crate::audit::AuditSink::disabled(),
        })
    }

    /// Record attestations in `audit` too.
    pub fn with_audit(mut self, audit: crate::audit::AuditSink) -> Self {
        self.audit = audit;
        self
    }

    /// Use `config` for the next streams. On error the previous config stays.
    pub fn update(&self, config: Config) -> Result<(), AttestorError> {
        self.set(Attestor::from_config(config)?);
        Ok(())
    }

    /// Use `attestor` for the next streams.
    pub fn set(&self, attestor: Attestor) {
        *self.attestor.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(attestor);
    }

    fn current(&self) -> Arc<Attestor> {
        self.attestor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl NodeAuthorizer for AttestingAuthorizer {
    #[allow(clippy::result_large_err)]
    fn authorize(&self, caller: &Caller, claim: &NodeClaim) -> Result<(), tonic::Status> {
        let node = claim.key();
        let header = caller
            .metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let remote = caller
            .remote_addr
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        match self.current().attest_node(header, claim, self.clock.now()) {
            Ok(who) => {
                self.metrics.attested(who.method);
                tracing::info!(target: "warden::audit", event = "xds_attested", %remote, node = %node, workload = %who.workload, method = who.method, "xDS caller attested");
                self.audit
                    .attested(who.method, node.as_str(), &who.workload);
                Ok(())
            }
            Err(e) => {
                let reason = e.reason();
                self.metrics.attestation_failed(reason);
                tracing::warn!(target: "warden::audit", event = "xds_attestation_refused", %remote, node = %node, reason, "xDS caller refused: {e}");
                self.audit.attest_refused(node.as_str(), reason);
                Err(status_for(&e))
            }
        }
    }
}

#[allow(clippy::result_large_err)]
fn status_for(e: &AttestError) -> tonic::Status {
    let msg = format!("attestation failed: {e}");
    match e {
        AttestError::NoCredential => tonic::Status::unauthenticated(msg),
        _ => tonic::Status::permission_denied(msg),
    }
}
