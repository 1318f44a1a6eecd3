//! The SPIFFE Workload API on a Unix domain socket, for workloads without a sidecar
//! (jobs, databases, apps doing their own TLS) using stock SPIFFE clients.
//!
//! - `settings`: `workload-api.yaml` (socket, selectors, lifetimes)
//! - `attest`: caller credentials (`SO_PEERCRED`, `/proc/<pid>/exe`) against selectors
//! - `issuer`: current X.509-SVIDs, re-minted at a fraction of their lifetime
//! - `jwt`: JWT-SVID signing key, tokens, JWKS bundle
//! - `service` / `server`: the five RPCs and their hand-written tonic glue
//! - `proto`: prost mirror of `proto/spiffe/workload.proto`

pub mod attest;
pub mod issuer;
pub mod jwt;
mod pem;
pub mod proto;
mod server;
mod service;
pub mod settings;

#[cfg(test)]
mod proto_tests;

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;

pub use server::WorkloadApiServer;
pub use settings::{Settings, SettingsError};

use crate::config::Config;
use crate::identity::{CaError, CaHandle, Clock, SystemClock};
use issuer::{Issuer, Lifetimes};
use jwt::{JwtError, JwtKey};
use service::WorkloadApi;

/// Starting or running the Workload API failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadApiError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("no workload-api.yaml in {0}; the Workload API needs it")]
    NotConfigured(PathBuf),
    #[error(transparent)]
    Jwt(#[from] JwtError),
    #[error("minting the first X.509-SVIDs failed: {0}")]
    Mint(#[from] CaError),
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the Workload API server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Run the Workload API for `cfg` until `shutdown` resolves. Without a
/// `workload-api.yaml` in the config directory this logs that it is disabled and returns.
pub async fn run_workload_api(
    cfg: &Config,
    ca: impl Into<CaHandle>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), WorkloadApiError> {
    let Some(settings) = Settings::load(cfg)? else {
        tracing::info!(
            "no {} in {}; Workload API disabled",
            settings::FILE_NAME,
            cfg.dir.display()
        );
        return Ok(());
    };
    serve(
        &settings,
        &cfg.ca.state_dir,
        ca.into(),
        Arc::new(SystemClock),
        shutdown,
    )
    .await
}

/// Serve `settings` with an explicit clock; the JWT key lives in `state_dir`.
pub async fn serve(
    settings: &Settings,
    state_dir: &Path,
    ca: CaHandle,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), WorkloadApiError> {
    let jwt = JwtKey::load_or_create(state_dir)?;
    let lifetimes = Lifetimes {
        x509_ttl: settings.x509_ttl,
        jwt_ttl: settings.jwt_ttl,
        renew_fraction: settings.renew_fraction,
    };
    let (issuer, delays) = Issuer::new(ca, clock, jwt, lifetimes, &settings.entries)?;
    let issuer = Arc::new(issuer);
    let rotations: Vec<_> = settings
        .entries
        .iter()
        .zip(delays)
        .map(|(e, d)| tokio::spawn(issuer.clone().rotate(e.clone(), d)))
        .collect();
    let listener = bind(&settings.socket)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let api = Arc::new(WorkloadApi {
        issuer,
        entries: settings.entries.clone(),
        shutdown: stop_rx,
    });
    tracing::info!(socket = %settings.socket.display(), workloads = settings.entries.len(), "Workload API listening");
    let signal = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let result = tonic::transport::Server::builder()
        .add_service(WorkloadApiServer(api))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), signal)
        .await;
    rotations.iter().for_each(|r| r.abort());
    let _ = std::fs::remove_file(&settings.socket);
    Ok(result?)
}

/// Bind the socket: create the parent directory (0755), replace a stale socket (never any
/// other kind of file) and let any local user connect (attestation decides what they get).
fn bind(path: &Path) -> Result<UnixListener, WorkloadApiError> {
    let err = |source| WorkloadApiError::Listen {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(err)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(err)?,
        Ok(_) => return Err(err(std::io::Error::other("exists and is not a socket"))),
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(err)?;
    Ok(listener)
}
