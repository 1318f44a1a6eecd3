//! The SPIFFE Workload API on a Unix domain socket, for workloads without a sidecar
//! (jobs, databases, apps doing their own TLS) using stock SPIFFE clients.
//!
//! - `settings`: `workload-api.yaml` (socket, selectors, lifetimes)
//! - `attest`: caller credentials (`SO_PEERCRED`, `/proc/<pid>/exe`) against selectors
//! - `issuer`: current X.509-SVIDs, re-minted at a fraction of their lifetime, following
//!   CA rotations and reloaded entries
//! - `jwt` / `jwt_keys`: JWT-SVID tokens; the rotating signing keys and the JWT bundle
//! - `service`: the five RPCs, served by the generated tonic server
//! - `proto`: the messages and server generated from `proto/spiffe/workload.proto`

pub mod attest;
pub mod issuer;
pub mod jwt;
pub mod jwt_keys;
pub mod proto;
mod service;
/// `workload-api.yaml`, loaded by `config` like every other config file.
pub use crate::config::workload_api as settings;

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;

pub use settings::{Settings, SettingsError};

use std::time::Duration;

use crate::config::Config;
use crate::identity::{CaError, Clock};
pub use issuer::{FixedSource, IdentitySource};
use issuer::{Issuer, Lifetimes};
use jwt::JwtError;
use jwt_keys::JwtKeys;
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

/// How often the issuer follows the clock, the CA and the config.
const TICK: Duration = Duration::from_secs(1);

/// Run the Workload API until `shutdown` resolves, following `source`: SVIDs renew on
/// schedule, a CA rotation reaches open streams, and a changed `workload-api.yaml` (after a
/// config reload) applies without a restart; an invalid one is logged and the last good
/// entries keep serving. Without a `workload-api.yaml` at start this logs that it is
/// disabled and returns (adding one later needs a restart, as does moving the socket).
pub async fn run_workload_api(
    source: Arc<dyn IdentitySource>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), WorkloadApiError> {
    let cfg = source.config();
    let Some(settings) = Settings::load(&cfg)? else {
        tracing::info!(
            "no {} in {}; Workload API disabled",
            settings::FILE_NAME,
            cfg.dir.display()
        );
        return Ok(());
    };
    let jwt = JwtKeys::load_or_create(&cfg.ca.state_dir, clock.now())?;
    let issuer = Arc::new(Issuer::new(
        source,
        clock,
        jwt,
        lifetimes(&settings),
        &settings.entries,
    )?);
    let follow = tokio::spawn(follow(issuer.clone(), cfg, settings.clone()));
    let listener = bind(&settings.socket)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let api = Arc::new(WorkloadApi {
        issuer,
        shutdown: stop_rx,
    });
    tracing::info!(socket = %settings.socket.display(), workloads = settings.entries.len(), "Workload API listening");
    let signal = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let result = tonic::transport::Server::builder()
        .add_service(
            proto::spiffe_workload_api_server::SpiffeWorkloadApiServer::new(service::Rpc(api)),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), signal)
        .await;
    follow.abort();
    let _ = std::fs::remove_file(&settings.socket);
    Ok(result?)
}

fn lifetimes(s: &Settings) -> Lifetimes {
    Lifetimes {
        x509_ttl: s.x509_ttl,
        jwt_ttl: s.jwt_ttl,
        renew_fraction: s.renew_fraction,
        jwt_key_ttl: s.jwt_key_ttl,
    }
}

/// Once a second: re-read the settings when the served config changed, then tick.
async fn follow(issuer: Arc<Issuer>, mut cfg: Arc<Config>, mut settings: Settings) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        let now = issuer.config();
        if !Arc::ptr_eq(&now, &cfg) {
            cfg = now;
            match Settings::load(&cfg) {
                Ok(Some(new)) if new != settings => {
                    if new.socket != settings.socket {
                        tracing::warn!(old = %settings.socket.display(), new = %new.socket.display(), "the Workload API socket moved in the config; restart `warden serve` to listen on the new path");
                    }
                    issuer.set_entries(&new.entries, lifetimes(&new));
                    tracing::info!(
                        workloads = new.entries.len(),
                        "Workload API entries reloaded"
                    );
                    settings = new;
                }
                Ok(Some(_)) => {}
                Ok(None) => tracing::warn!(
                    "{} was removed; the Workload API keeps its last entries until restart",
                    settings::FILE_NAME
                ),
                Err(e) => tracing::error!(
                    "Workload API settings not reloaded, the last good ones keep serving: {e}"
                ),
            }
        }
        issuer.tick();
    }
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

/// In `warden serve` the Workload API follows the control plane: its active CA, its trust
/// bundle and its (reloaded) config.
impl IdentitySource for crate::plane::ControlPlane {
    fn signer(&self) -> Arc<crate::identity::Ca> {
        self.ca()
    }
    fn bundle(&self) -> crate::identity::TrustBundle {
        // Every CA in the bundle (current, prepared next, retired until their SVIDs expire).
        crate::plane::ControlPlane::bundle(self)
    }
    fn config(&self) -> Arc<Config> {
        crate::plane::ControlPlane::config(self)
    }
    fn federated(&self) -> Arc<Vec<crate::identity::ForeignBundle>> {
        self.federated_bundles()
    }

    fn audit(&self) -> crate::audit::AuditSink {
        self.xds().audit.clone()
    }
}
