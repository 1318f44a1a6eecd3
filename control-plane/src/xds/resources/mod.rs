//! Pure resource builders: from the validated `Config`, one workload, its issued SVID and
//! the trust bundle to that workload's node [`Snapshot`]. No I/O, no clock: the same
//! inputs always give the same snapshot (and the same versions), so replicas agree.
//!
//! Per workload: an inbound mTLS listener (SVID and SPIFFE validation over SDS, the
//! `warden-authz` filter over ECDS, router to the local app), one plain-HTTP outbound
//! listener per upstream with an mTLS cluster that checks the upstream's SPIFFE ID, the
//! secrets (SPIRE/Istio names) and the ECDS filter config.

pub mod audit_log;
mod cluster;
mod common;
mod filter;
mod listener;
mod native;
mod secret;

use std::path::Path;

pub use filter::{filter_configuration, FilterModules, AUTHZ_FILTER_NAME};

use crate::config::{Config, Workload};
use crate::identity::{Svid, TrustBundle};
use crate::xds::snapshot::{Snapshot, SnapshotBuilder, SnapshotError};
use crate::xds::types::{ResourceType, SecretName};

/// Errors building a node's resources.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// An upstream names a workload the config does not have (config validation should
    /// have caught it; kept so the builder never panics).
    #[error("workload `{workload}` calls unknown upstream `{upstream}`")]
    UnknownUpstream {
        /// Calling workload.
        workload: String,
        /// Missing upstream.
        upstream: String,
    },
    /// The snapshot failed validation.
    #[error("snapshot for workload `{workload}`: {source}")]
    Snapshot {
        /// Workload.
        workload: String,
        /// Cause.
        #[source]
        source: SnapshotError,
    },
}

/// Everything a node's snapshot is built from.
#[derive(Debug, Clone, Copy)]
pub struct NodeInputs<'a> {
    /// The whole validated config (upstreams are looked up in it).
    pub config: &'a Config,
    /// The workload this node serves.
    pub workload: &'a Workload,
    /// The workload's current SVID.
    pub svid: &'a Svid,
    /// The trust bundle of the trust domain.
    pub bundle: &'a TrustBundle,
    /// Bundles of federated trust domains (each its own CA set), sorted.
    pub federated: &'a [TrustBundle],
    /// Absolute path of the filter's `.wasm` module, as Envoy will open it.
    pub filter_module: &'a Path,
}

/// Resource names (stable: they appear in Envoy stats and the config dump).
pub mod names {
    /// The inbound mTLS listener.
    pub const INBOUND_LISTENER: &str = "inbound";
    /// The cluster for the local app.
    pub const LOCAL_APP_CLUSTER: &str = "local-app";
    /// Outbound listener for calls to `upstream`.
    pub fn outbound_listener(upstream: &str) -> String {
        format!("outbound-{upstream}")
    }
    /// mTLS cluster to `upstream`'s inbound listener.
    pub fn upstream_cluster(upstream: &str) -> String {
        format!("upstream-{upstream}")
    }
}

/// The secrets of one node: its SVID (under its SPIFFE ID and `default`) and the trust
/// bundles (see [`secret::add_bundles`]). Returns the validation context's secret name.
fn add_secrets(b: &mut SnapshotBuilder, inputs: &NodeInputs<'_>) -> Result<String, SnapshotError> {
    let own_svid = inputs.workload.spiffe_id.to_string();
    for name in [own_svid.as_str(), SecretName::DEFAULT] {
        b.add(ResourceType::Secret, name, &secret::svid(name, inputs.svid))?;
    }
    secret::add_bundles(b, inputs.bundle, inputs.federated)
}

/// Only the secrets of one node (an instance's own SVID): the rest of an instance's
/// snapshot is shared with its workload's (see [`Snapshot::with_types_of`]).
pub fn build_secrets(inputs: &NodeInputs<'_>) -> Result<Snapshot, ResourceError> {
    let mut b = SnapshotBuilder::new();
    let wrap = |source| ResourceError::Snapshot {
        workload: inputs.workload.name.clone(),
        source,
    };
    add_secrets(&mut b, inputs).map_err(wrap)?;
    b.build().map_err(wrap)
}

/// Builds and validates the snapshot for one node.
pub fn build_node_snapshot(inputs: &NodeInputs<'_>) -> Result<Snapshot, ResourceError> {
    let w = inputs.workload;
    let wrap = |source| ResourceError::Snapshot {
        workload: w.name.clone(),
        source,
    };
    let mut b = SnapshotBuilder::new();
    let own_svid = w.spiffe_id.to_string();
    let bundle_name = add_secrets(&mut b, inputs).map_err(wrap)?;
    let ecds = filter::extension_config(inputs);
    b.add(ResourceType::ExtensionConfig, AUTHZ_FILTER_NAME, &ecds)
        .map_err(wrap)?;

    let app = cluster::local_app(w);
    b.add(ResourceType::Cluster, names::LOCAL_APP_CLUSTER, &app)
        .map_err(wrap)?;
    let audit = audit_log::als_address(&inputs.config.audit);
    let logs = audit.map(|_| audit_log::access_log(&inputs.config.audit));
    let inbound = listener::inbound(w, &own_svid, &bundle_name, &inputs.config.policy, logs);
    b.add(ResourceType::Listener, names::INBOUND_LISTENER, &inbound)
        .map_err(wrap)?;
    let from = (ResourceType::Listener, names::INBOUND_LISTENER);
    b.reference(from, (ResourceType::Secret, &own_svid))
        .reference(from, (ResourceType::Secret, &bundle_name))
        .reference(from, (ResourceType::ExtensionConfig, AUTHZ_FILTER_NAME))
        .reference(from, (ResourceType::Cluster, names::LOCAL_APP_CLUSTER));
    if let Some(at) = audit {
        audit_log::add_cluster(&mut b, inputs, at, &own_svid, &bundle_name).map_err(wrap)?;
    }

    for up in &w.upstreams {
        let cname = names::upstream_cluster(&up.workload);
        let lname = names::outbound_listener(&up.workload);
        let c = match &up.foreign {
            Some(f) => {
                let target = cluster::Target {
                    sni: &up.workload,
                    spiffe_id: f.spiffe_id.as_str(),
                    address: f.address,
                };
                cluster::upstream_to(&cname, &target, &own_svid, &bundle_name)
            }
            None => {
                let target = inputs.config.workload(&up.workload).ok_or_else(|| {
                    ResourceError::UnknownUpstream {
                        workload: w.name.clone(),
                        upstream: up.workload.clone(),
                    }
                })?;
                cluster::upstream(&cname, target, &own_svid, &bundle_name)
            }
        };
        b.add(ResourceType::Cluster, &cname, &c).map_err(wrap)?;
        b.add(
            ResourceType::Listener,
            &lname,
            &listener::outbound(&lname, up.listen, &cname),
        )
        .map_err(wrap)?;
        b.reference(
            (ResourceType::Cluster, &cname),
            (ResourceType::Secret, &own_svid),
        )
        .reference(
            (ResourceType::Cluster, &cname),
            (ResourceType::Secret, &bundle_name),
        )
        .reference(
            (ResourceType::Listener, &lname),
            (ResourceType::Cluster, &cname),
        );
    }
    b.build().map_err(wrap)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
