//! The dashboard's JSON API, built from the live config (pure views) and, for traffic,
//! from the sidecars' Envoy admin stats. Read-only.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{Config, PolicyMode};
use crate::plane::ControlPlane;

/// Routes of the JSON API.
pub(super) fn router(cp: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/ui/api/mesh", get(mesh))
        .route("/ui/api/policy", get(policy))
        .route("/ui/api/traffic", get(traffic))
        .with_state(cp)
}

/// One workload as the dashboard shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadView {
    /// Name.
    pub name: String,
    /// SPIFFE ID.
    pub spiffe_id: String,
    /// Its sidecar's Envoy node id.
    pub node_id: String,
    /// Its sidecar's Envoy admin address.
    pub sidecar_admin: String,
    /// The mTLS listener peers call.
    pub inbound: String,
    /// Workloads it calls.
    pub upstreams: Vec<String>,
    /// How its sidecar may attest on the xDS stream.
    pub attestation: Vec<&'static str>,
}

/// The mesh as configured, and the policy that runs in it.
#[derive(Debug, Clone, Serialize)]
pub struct MeshView {
    /// Trust domain.
    pub trust_domain: String,
    /// Config directory.
    pub config_dir: String,
    /// Version of the policy in force (the filter's `policy_version`).
    pub policy_version: String,
    /// The decision rule.
    pub entrypoint: String,
    /// `enforce` or `dry-run`.
    pub mode: &'static str,
    /// The playground is in this binary.
    pub playground: bool,
    /// Workloads, sorted by name.
    pub workloads: Vec<WorkloadView>,
}

/// The dashboard's view of a config.
pub fn mesh_view(cfg: &Config) -> MeshView {
    MeshView {
        trust_domain: cfg.trust_domain.to_string(),
        config_dir: cfg.dir.display().to_string(),
        policy_version: crate::policy::policy_version(&cfg.policy.entrypoint, &cfg.policies),
        entrypoint: cfg.policy.entrypoint.clone(),
        mode: mode_name(cfg.policy.mode),
        playground: super::HAS_PLAYGROUND,
        workloads: cfg
            .workloads
            .iter()
            .map(|w| WorkloadView {
                name: w.name.clone(),
                spiffe_id: w.spiffe_id.to_string(),
                node_id: w.node_id.clone(),
                sidecar_admin: w.sidecar_admin.to_string(),
                inbound: w.inbound.listen.to_string(),
                upstreams: w.upstreams.iter().map(|u| u.workload.clone()).collect(),
                attestation: w.attestation.iter().map(|m| m.as_str()).collect(),
            })
            .collect(),
    }
}

fn mode_name(mode: PolicyMode) -> &'static str {
    match mode {
        PolicyMode::Enforce => "enforce",
        PolicyMode::DryRun => "dry-run",
    }
}

/// The live config's policy in the playground's input shape (`warden-playground`'s
/// `Workspace`), plus the workloads a request can name.
pub fn policy_workspace(cfg: &Config) -> Value {
    let module = |f: &crate::config::RegoFile| json!({"name": f.name, "source": f.source});
    let workloads: BTreeMap<&str, String> = cfg
        .workloads
        .iter()
        .map(|w| (w.name.as_str(), w.spiffe_id.to_string()))
        .collect();
    json!({
        "modules": cfg.policies.modules.iter().map(module).collect::<Vec<_>>(),
        "tests": cfg.policies.tests.iter().map(module).collect::<Vec<_>>(),
        "data": cfg.policies.data,
        "settings": {
            "entrypoint": cfg.policy.entrypoint,
            "mode": match cfg.policy.mode { PolicyMode::Enforce => "enforce", PolicyMode::DryRun => "dry_run" },
            "deny_status": cfg.policy.deny_status,
            "expose_reason": cfg.policy.expose_reason,
        },
        "workloads": workloads,
    })
}

async fn mesh(State(cp): State<Arc<ControlPlane>>) -> Json<MeshView> {
    Json(mesh_view(&cp.config()))
}

async fn policy(State(cp): State<Arc<ControlPlane>>) -> Json<Value> {
    Json(policy_workspace(&cp.config()))
}

async fn traffic(State(cp): State<Arc<ControlPlane>>) -> Json<super::traffic::Traffic> {
    let cfg = cp.config();
    Json(super::traffic::collect(&cfg).await)
}
