//! `warden serve`: the I/O edge that wires the core (`plane`) to its listeners: loads the
//! config, starts the core, the ADS server (TLS with a serving certificate the core keeps
//! fresh, or plaintext for development), the admin endpoint and the Workload API, then
//! runs the core's tick every second and its reload transaction on file change (see
//! `plane::watch`) or SIGHUP. An invalid config at start exits 1 with the same
//! diagnostics as `warden validate`; an invalid config on reload is logged with those
//! diagnostics and the last good keeps serving.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use tokio::net::TcpListener;

use warden::admin::{self, AdminState};
use warden::config::replica::ReplicaOverrides;
use warden::config::{self, Config};
use warden::identity::state_lock::lock_state_dir;
use warden::identity::{Clock, SystemClock};
use warden::plane::reload::{check_module, AttestorSlot, ConfigInfo, Reloader};
use warden::plane::watch::ConfigWatch;
use warden::plane::{serving_cert, ControlPlane, XdsHandles};
use warden::workload_api::{run_workload_api, IdentitySource};
use warden::xds::resources::FilterModules;
use warden::xds::server::{tls, AllowAnyCaller, AttestingAuthorizer, NodeAuthorizer, Shared};

/// Default module paths, relative to the working directory (what `just build` produces in
/// the workspace): the core module and the extended one (regex, glob, net, ... builtins).
const DEFAULT_FILTER_MODULE: &str = "target/wasm32-wasip1/wasm/warden_filter.wasm";
const DEFAULT_EXTENDED_FILTER_MODULE: &str =
    "target/wasm32-wasip1/wasm-extended/warden_filter.wasm";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Config directory (warden.yaml, workloads/, policies/).
    #[arg(long, env = "WARDEN_CONFIG", default_value = ".")]
    config: PathBuf,
    /// The filter's core .wasm module (core Rego builtins) as Envoy should load it (made
    /// absolute). Default: target/wasm32-wasip1/wasm/warden_filter.wasm under the working
    /// directory.
    #[arg(long, env = "WARDEN_FILTER_MODULE")]
    filter_module: Option<PathBuf>,
    /// The extended .wasm module (also regex, glob, net, base64, hex, urlquery builtins),
    /// served instead of the core one when the policy calls such a builtin. Default:
    /// target/wasm32-wasip1/wasm-extended/warden_filter.wasm under the working directory.
    #[arg(long, env = "WARDEN_FILTER_MODULE_EXTENDED")]
    filter_module_extended: Option<PathBuf>,
    /// Serve ADS as plaintext gRPC and trust every caller's node id (no TLS, no
    /// attestation). For local development only: anyone who can reach the port gets any
    /// workload's private key. Sidecars need `warden bootstrap --insecure-plaintext`.
    #[arg(long, env = "WARDEN_INSECURE_PLAINTEXT_XDS")]
    insecure_plaintext_xds: bool,
    /// End ADS streams older than this (with ±10% jitter) so sidecars reconnect and
    /// present their current credential again; `0s` disables the limit.
    #[arg(long, default_value = "1h", value_parser = duration_or_zero)]
    xds_max_stream_age: Duration,
    /// This replica's ADS address (replaces `server.xds_listen`): for several replicas
    /// reading the same config repo.
    #[arg(long, env = "WARDEN_XDS_LISTEN", value_name = "ADDR")]
    xds_listen: Option<SocketAddr>,
    /// This replica's admin address (replaces `server.admin_listen`).
    #[arg(long, env = "WARDEN_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// This replica's CA state directory (replaces `ca.state_dir`; relative to the working
    /// directory). Every replica needs its own, and all of them a shared `ca.upstream`.
    #[arg(long, env = "WARDEN_STATE_DIR", value_name = "PATH")]
    state_dir: Option<PathBuf>,
}

impl Args {
    /// This replica's own settings (see `config::replica`).
    fn overrides(&self) -> anyhow::Result<ReplicaOverrides> {
        let state_dir = match &self.state_dir {
            Some(d) if d.is_absolute() => Some(d.clone()),
            Some(d) => Some(std::env::current_dir()?.join(d)),
            None => None,
        };
        Ok(ReplicaOverrides {
            xds_listen: self.xds_listen,
            admin_listen: self.admin_listen,
            state_dir,
        })
    }
}

fn duration_or_zero(s: &str) -> Result<Duration, warden::config::duration::DurationError> {
    if s == "0" || s == "0s" {
        return Ok(Duration::ZERO);
    }
    warden::config::duration::parse(s)
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

/// What runs until shutdown.
struct Running {
    ads: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    admin: tokio::task::JoinHandle<Result<(), admin::AdminError>>,
    cert_renewal: Option<tokio::task::JoinHandle<()>>,
    workload_api: (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ),
}

async fn serve(args: Args) -> anyhow::Result<ExitCode> {
    let overrides = args.overrides()?;
    let cfg = match config::load(&args.config) {
        Ok(c) => overrides.apply(c),
        Err(diags) => {
            eprintln!("{diags}");
            return Ok(ExitCode::from(1));
        }
    };
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    if let Some(w) = overrides.self_signed_warning(&cfg) {
        tracing::warn!("{w}");
    }
    // Held until serve returns: one `warden serve` per CA state directory.
    let _state_lock = match lock_state_dir(&cfg.ca.state_dir) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let modules = filter_modules(&args)?;
    let (xds_addr, admin_addr) = (cfg.server.xds_listen, cfg.server.admin_listen);
    let (cp, shared, slot) = start_core(&args, cfg, modules)?;
    let info = Arc::new(Mutex::new(ConfigInfo::of(&cp.config())));
    let reloader = Reloader::new(cp.clone(), args.config.clone(), info.clone(), slot)
        .with_overrides(overrides);
    let ready = Arc::new(AtomicBool::new(false));
    let admin_state = AdminState {
        xds: cp.xds().clone(),
        ready: ready.clone(),
        config: info,
    };
    let (ads, cert_renewal) = start_ads(&args, xds_addr, &cp, shared).await?;
    let federation = super::federation::start(&cp).await?;
    let _audit_als = super::audit::start_als(&cp).await?;
    let mut running = Running {
        ads: tokio::spawn(ads),
        cert_renewal,
        admin: tokio::spawn(admin::serve_router(
            bind(admin_addr, "admin_listen").await?,
            admin::router(admin_state)
                .merge(admin::auth::protect(
                    admin::ca::router(cp.clone()),
                    admin::auth::OperatorAuth::new(cp.config().server.admin_token_file.clone()),
                ))
                .merge(admin::ui::router(cp.clone()))
                .merge(warden::federation::admin_router(federation)),
        )),
        workload_api: spawn_workload_api(cp.clone()),
    };
    ready.store(true, Ordering::Relaxed);
    tracing::info!(xds = %xds_addr, admin = %admin_addr, "warden serving");
    let result = run_loop(&cp, &reloader, &args.config, &mut running).await;
    tracing::info!("shutting down");
    if let Some(r) = running.cert_renewal {
        r.abort();
    }
    let (wl_stop, wl_task) = running.workload_api;
    let _ = wl_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), wl_task).await;
    result.map(|()| ExitCode::SUCCESS)
}

/// The modules from the flags (made absolute); refuses to start when Envoy could not
/// load one (every sidecar would NACK the filter config, and every listener with it).
fn filter_modules(args: &Args) -> anyhow::Result<FilterModules> {
    let modules = FilterModules {
        core: module_path(args.filter_module.as_deref(), DEFAULT_FILTER_MODULE)?,
        extended: module_path(
            args.filter_module_extended.as_deref(),
            DEFAULT_EXTENDED_FILTER_MODULE,
        )?,
    };
    for (module, flag) in [
        (&modules.core, "--filter-module"),
        (&modules.extended, "--filter-module-extended"),
    ] {
        if let Err(e) = check_module(module) {
            anyhow::bail!("{e} (build it with `./dev build` or pass {flag})");
        }
    }
    Ok(modules)
}

/// The core, the ADS server's state over the same cache, and where reloads install the
/// attestor (none with `--insecure-plaintext-xds`).
fn start_core(
    args: &Args,
    cfg: Config,
    modules: FilterModules,
) -> anyhow::Result<(Arc<ControlPlane>, Shared, Option<AttestorSlot>)> {
    let xds = XdsHandles {
        audit: super::audit::start_sink(&cfg)?,
        ..XdsHandles::default()
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (authorizer, slot): (Arc<dyn NodeAuthorizer>, Option<AttestorSlot>) =
        if args.insecure_plaintext_xds {
            (Arc::new(AllowAnyCaller), None)
        } else {
            let auth = AttestingAuthorizer::new(cfg.clone(), clock.clone(), xds.metrics.clone())
                .map_err(|e| anyhow::anyhow!("attestation settings: {e}"))?
                .with_audit(xds.audit.clone());
            let auth = Arc::new(auth);
            let slot: AttestorSlot = {
                let auth = auth.clone();
                Arc::new(move |a| auth.set(a))
            };
            (auth, Some(slot))
        };
    let shared = Shared {
        cache: xds.cache.clone(),
        metrics: xds.metrics.clone(),
        status: xds.status.clone(),
        authorizer,
        max_stream_age: (!args.xds_max_stream_age.is_zero()).then_some(args.xds_max_stream_age),
    };
    let module = modules.for_config(&cfg).to_path_buf();
    let (cp, applied) =
        ControlPlane::start(cfg, modules, clock, xds).context("starting the control plane")?;
    // The activation deadline keeps room for the longest SVID the CA signs.
    if let Ok(Some(s)) = warden::workload_api::Settings::load(&cp.config()) {
        cp.also_signs_for(s.x509_ttl);
    }
    tracing::info!(nodes = applied.changed.len(), svids = applied.minted, module = %module.display(), "snapshots published");
    let cp = Arc::new(cp);
    cp.accept_instances(); // sidecars of new workload instances join on connect
    Ok((cp, shared, slot))
}

type AdsFuture = BoxFuture<'static, Result<(), tonic::transport::Error>>;

/// The ADS server: over TLS with a serving certificate the core renews, or plaintext.
async fn start_ads(
    args: &Args,
    addr: SocketAddr,
    cp: &Arc<ControlPlane>,
    shared: Shared,
) -> anyhow::Result<(AdsFuture, Option<tokio::task::JoinHandle<()>>)> {
    let listener = bind(addr, "xds_listen").await?;
    if args.insecure_plaintext_xds {
        for _ in 0..3 {
            tracing::warn!(%addr, "INSECURE: --insecure-plaintext-xds: ADS is plaintext gRPC and every caller's node id is trusted without attestation; any process that reaches this port can obtain every workload's private key. Local development only.");
        }
        return Ok((Box::pin(warden::xds::server::serve(listener, shared)), None));
    }
    let ttl = cp.config().ca.svid_ttl;
    let clock = cp.clock();
    let svid = tls::mint_server_svid(&cp.ca(), ttl, clock.as_ref())
        .context("minting the control plane's serving certificate")?;
    let cert = Arc::new(tls::ServerCert::new(tls::certified_key(&svid)?));
    let tls_config = tls::server_config(cert.clone())?;
    tracing::info!(%addr, id = %svid.id, serial = %svid.serial_hex, max_stream_age = ?shared.max_stream_age, "ADS over TLS; callers must attest (join token or Kubernetes service-account token)");
    let renew = {
        let (cp, clock) = (cp.clone(), clock.clone());
        move || -> Result<_, tls::TlsError> {
            let svid = tls::mint_server_svid(&cp.ca(), ttl, clock.as_ref())?;
            cert.replace(tls::certified_key(&svid)?);
            Ok(svid)
        }
    };
    let renewal = tokio::spawn(serving_cert::renew_forever((&svid).into(), clock, renew));
    let ads = warden::xds::server::serve_tls(listener, tls_config, shared);
    Ok((Box::pin(ads), Some(renewal)))
}

/// The SPIFFE Workload API for workloads without a sidecar (only with workload-api.yaml),
/// following the core's CA, bundle and config; stops when the sender fires.
fn spawn_workload_api(
    cp: Arc<ControlPlane>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let source: Arc<dyn IdentitySource> = cp;
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = run_workload_api(source, Arc::new(SystemClock), shutdown).await {
            tracing::error!("Workload API stopped: {e}");
        }
    });
    (stop, task)
}

/// Until a signal to stop: the core's tick every second, reloads on change or SIGHUP.
async fn run_loop(
    cp: &ControlPlane,
    reloader: &Reloader,
    dir: &Path,
    running: &mut Running,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut watch = ConfigWatch::new(dir);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            r = &mut running.ads => anyhow::bail!("ADS server stopped: {:?}", r),
            r = &mut running.admin => anyhow::bail!("admin endpoint stopped: {:?}", r),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                watch.mark_seen();
                let _ = reloader.reload();
            }
            _ = watch.changed() => {
                tracing::info!("config files changed: reloading");
                let _ = reloader.reload();
            }
            _ = tick.tick() => {
                // Automatic CA rotation steps, SVID renewals (with backoff), expiry gauges.
                let t = cp.tick();
                if t.renewed.minted > 0 || t.renewed.failed > 0 {
                    tracing::info!(renewed = t.renewed.minted, failed = t.renewed.failed, pushed = t.renewed.changed.len(), "SVIDs renewed");
                }
            }
        }
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} (server.{what} in warden.yaml, or --{} for this replica)",
            what.replace('_', "-")
        )
    })
}

fn module_path(arg: Option<&Path>, default: &str) -> anyhow::Result<PathBuf> {
    let p = arg
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(default));
    if p.is_absolute() {
        return Ok(p);
    }
    Ok(std::env::current_dir()?.join(p))
}
