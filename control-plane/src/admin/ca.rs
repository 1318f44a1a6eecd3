//! CA rotation on the admin endpoint: `GET /ca/status` (JSON [`CaStatus`]) and
//! `POST /ca/prepare`, `POST /ca/activate`, `POST /ca/retire[?force=true]`.
//!
//! A POST answers 200 with `{"ok": true, "step", "status"}` when the step ran, 409 with
//! `{"ok": false, "step", "refused": "<reason>", "status"}` when it is unsafe now, and
//! 500 with `{"ok": false, "step", "error"}` when it failed. `serve` wraps these routes
//! in [`super::auth::protect`]: off loopback the POSTs need the operator token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::identity::rotation::Step;
use crate::plane::{CaOpError, ControlPlane};

/// Routes for CA status and forced rotation steps.
pub fn router(cp: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/ca/status", get(status))
        .route("/ca/prepare", post(|s| step(s, Step::Prepare, false)))
        .route("/ca/activate", post(|s| step(s, Step::Activate, false)))
        .route(
            "/ca/retire",
            post(|s, uri: Uri| step(s, Step::Retire, wants_force(&uri))),
        )
        .with_state(cp)
}

/// `?force=true` (or `force=1`, `force`) in the query string.
fn wants_force(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "force" | "force=true" | "force=1"))
    })
}

async fn status(State(cp): State<Arc<ControlPlane>>) -> Json<Value> {
    let st = tokio::task::spawn_blocking(move || cp.ca_status()).await;
    Json(st.map_or(Value::Null, |s| {
        serde_json::to_value(s).unwrap_or(Value::Null)
    }))
}

async fn step(cp: State<Arc<ControlPlane>>, step: Step, force: bool) -> (StatusCode, Json<Value>) {
    let State(cp) = cp;
    let cp2 = cp.clone();
    let result = tokio::task::spawn_blocking(move || match step {
        Step::Prepare => cp2.ca_prepare(),
        Step::Activate => cp2.ca_activate(),
        Step::Retire => cp2.ca_retire(force),
    })
    .await;
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"ok": false, "step": step, "error": e.to_string()})),
            )
        }
    };
    match result {
        Ok(status) => (
            StatusCode::OK,
            Json(json!({"ok": true, "step": step, "status": status})),
        ),
        Err(CaOpError::Refused(r)) => {
            tracing::warn!(?step, "CA rotation step refused: {r}");
            let status = tokio::task::spawn_blocking(move || cp.ca_status())
                .await
                .ok();
            (
                StatusCode::CONFLICT,
                Json(
                    json!({"ok": false, "step": step, "refused": r.to_string(), "status": status}),
                ),
            )
        }
        Err(CaOpError::Failed(e)) => {
            tracing::error!(?step, "CA rotation step failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"ok": false, "step": step, "error": e.to_string()})),
            )
        }
    }
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
