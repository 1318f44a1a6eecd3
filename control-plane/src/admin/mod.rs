//! Admin HTTP endpoint: `/healthz` (process up), `/readyz` (first snapshot published,
//! ADS listening, the signing CA not expired), `/metrics` (OpenMetrics text) and `/config_dump` (JSON: per node and
//! type the version current in the cache, sent, ACKed and the last NACK with Envoy's
//! `error_detail`). Read-only; no secrets are ever rendered. CA rotation (`/ca/*`, the only
//! endpoints that change anything) lives in [`ca`].

pub mod auth;
pub mod ca;
pub mod ui;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Serialize;

pub use crate::plane::reload::ConfigInfo;
use crate::plane::XdsHandles;
use crate::xds::types::{NodeId, ResourceType};

/// Errors of the admin endpoint.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Binding or serving failed.
    #[error("admin endpoint on {addr}: {source}")]
    Serve {
        /// Listen address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// State the admin handlers read.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The xDS side of the core (cache, metrics, status).
    pub xds: XdsHandles,
    /// Set once the first snapshots are published and ADS is listening.
    pub ready: Arc<AtomicBool>,
    /// Config facts, replaced on reload.
    pub config: Arc<Mutex<ConfigInfo>>,
}

/// The router (exposed for tests).
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/config_dump", get(config_dump))
        .with_state(state)
}

/// Serves the admin endpoint on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, state: AdminState) -> Result<(), AdminError> {
    serve_router(listener, router(state)).await
}

/// Serves `router` (e.g. [`router`] merged with [`ca::router`]) on `listener`.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
) -> Result<(), AdminError> {
    let addr = listener.local_addr().map_err(|source| AdminError::Serve {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    axum::serve(listener, router)
        .await
        .map_err(|source| AdminError::Serve { addr, source })
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.xds.metrics.ca_expired() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the signing CA has expired and cannot sign a usable SVID (see `warden ca status`)\n",
        )
    } else if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let now = crate::xds::status::unix_seconds(std::time::SystemTime::now());
    let mut text = s.xds.metrics.render();
    let statuses = s.xds.status.dump();
    text.push_str(&crate::xds::status::render_rejected(&statuses, now));
    text.push_str(&crate::xds::status::render_instances(&statuses));
    text.push_str(&s.xds.audit.render_metrics());
    text.push_str(crate::xds::metrics::EOF);
    (
        [(header::CONTENT_TYPE, crate::xds::metrics::CONTENT_TYPE)],
        text,
    )
}

#[derive(Debug, Serialize)]
struct TypeDump {
    version_current: String,
    resources: Vec<String>,
    #[serde(flatten)]
    status: crate::xds::status::TypeStatus,
}

#[derive(Debug, Serialize)]
struct NodeDump {
    connected_streams: u32,
    protocol: Option<&'static str>,
    types: BTreeMap<&'static str, TypeDump>,
}

#[derive(Debug, Serialize)]
struct Dump {
    config: ConfigInfo,
    nodes: BTreeMap<String, NodeDump>,
}

/// Builds the config dump (pure over the state; used by the handler and tests).
pub fn dump(s: &AdminState) -> serde_json::Value {
    let statuses = s.xds.status.dump();
    let mut nodes = BTreeMap::new();
    let mut ids: Vec<NodeId> = s.xds.cache.nodes();
    ids.extend(statuses.keys().map(NodeId::new));
    ids.sort();
    ids.dedup();
    for id in ids {
        let snap = s.xds.cache.get(&id);
        let st = statuses.get(id.as_str()).cloned().unwrap_or_default();
        let types = ResourceType::PUSH_ORDER
            .into_iter()
            .map(|t| {
                let (version_current, resources) = match &snap {
                    Some(sn) => (
                        sn.version(t).to_string(),
                        sn.get(t)
                            .map(|ts| ts.resources.keys().cloned().collect())
                            .unwrap_or_default(),
                    ),
                    None => (String::new(), Vec::new()),
                };
                let status = st.types.get(t.short_name()).cloned().unwrap_or_default();
                (
                    t.short_name(),
                    TypeDump {
                        version_current,
                        resources,
                        status,
                    },
                )
            })
            .collect();
        nodes.insert(
            id.to_string(),
            NodeDump {
                connected_streams: st.streams,
                protocol: st.protocol,
                types,
            },
        );
    }
    let config = s.config.lock().map(|c| c.clone()).unwrap_or_default();
    serde_json::to_value(Dump { config, nodes }).unwrap_or(serde_json::Value::Null)
}

async fn config_dump(State(s): State<AdminState>) -> impl IntoResponse {
    axum::Json(dump(&s))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
