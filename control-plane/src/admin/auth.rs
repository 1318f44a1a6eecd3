//! Operator authentication for the admin endpoint's mutating routes (`POST /ca/*`).
//!
//! Reads (`/healthz`, `/readyz`, `/metrics`, `/config_dump`, `/ca/status`, `/ui`) stay
//! open so probes and scrapers work on the pod IP; every other method needs
//! `authorization: Bearer <token>` where the token is the content of
//! `server.admin_token_file` (e.g. a mounted Kubernetes Secret). The file is re-read on
//! each mutating request, so a rotated Secret takes effect without a restart, and an
//! unreadable file refuses the call (fail closed). Comparison is over SHA-256 digests in
//! constant time. Without a token file the routes are open, which `warden validate`
//! allows only on a loopback `admin_listen`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use sha2::{Digest, Sha256};

pub use crate::config::MIN_OPERATOR_TOKEN_LEN as MIN_TOKEN_LEN;

/// Why a mutating admin call was refused. Never contains a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this admin endpoint needs `authorization: Bearer <operator token>` (server.admin_token_file; `warden ca --admin-token-file`)")]
    NoCredential,
    #[error("wrong operator token")]
    WrongToken,
    #[error("the operator token file cannot be used: {0}")]
    TokenFile(String),
}

/// Who may call the mutating admin routes.
#[derive(Debug, Clone, Default)]
pub struct OperatorAuth {
    token_file: Option<PathBuf>,
}

impl OperatorAuth {
    /// Bearer token from `token_file`, or no authentication when `None`.
    pub fn new(token_file: Option<PathBuf>) -> Self {
        OperatorAuth { token_file }
    }

    /// Check the `authorization` header value of a mutating call.
    pub fn verify(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        let Some(file) = &self.token_file else {
            return Ok(());
        };
        let expected = read_token(file)?;
        check(&expected, authorization)
    }
}

/// The token in `file` (trimmed), refused when empty, short or oversized (the rule is
/// [`crate::config::read_operator_token`]'s, which `warden validate` applies too).
pub fn read_token(file: &std::path::Path) -> Result<String, AuthError> {
    crate::config::read_operator_token(file).map_err(|e| AuthError::TokenFile(e.to_string()))
}

/// Pure: does `authorization` carry `expected` as a bearer token?
pub fn check(expected: &str, authorization: Option<&str>) -> Result<(), AuthError> {
    let presented = authorization
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::NoCredential)?;
    let (a, b) = (Sha256::digest(expected), Sha256::digest(presented));
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    if diff == 0 {
        Ok(())
    } else {
        Err(AuthError::WrongToken)
    }
}

/// `router` with every non-GET/HEAD route behind `auth`.
pub fn protect(router: Router, auth: OperatorAuth) -> Router {
    router.layer(axum::middleware::from_fn_with_state(Arc::new(auth), guard))
}

async fn guard(State(auth): State<Arc<OperatorAuth>>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let checked = tokio::task::spawn_blocking(move || auth.verify(value.as_deref())).await;
    let err = match checked {
        Ok(Ok(())) => return next.run(req).await,
        Ok(Err(e)) => e,
        Err(e) => AuthError::TokenFile(e.to_string()),
    };
    tracing::warn!(target: "warden::audit", event = "admin_call_refused", path = %req.uri().path(), reason = %err);
    let status = match err {
        AuthError::TokenFile(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    let body = Json(serde_json::json!({"ok": false, "error": err.to_string()}));
    (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
