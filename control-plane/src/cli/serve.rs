//! `warden serve`: loads the config, starts the CA, the ADS server and the admin
//! endpoint, and reloads on file change (mtime poll every second) or SIGHUP. An invalid
//! config at start exits 1 with the same diagnostics as `warden validate`; an invalid
//! config on reload is logged with those diagnostics and the last good keeps serving.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::admin::{self, AdminState, ConfigInfo};
use crate::attest;
use crate::config::{self, Config};
use crate::identity::{Clock, SystemClock};
use crate::workload_api::{run_workload_api, IdentitySource};
use crate::xds::cache::Cache;
use crate::xds::control::ControlPlane;
use crate::xds::metrics::Metrics;
use crate::xds::resources::FilterModules;
use crate::xds::server::{tls, AllowAnyCaller, AttestingAuthorizer, NodeAuthorizer, Shared};
use crate::xds::status::StatusRegistry;

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
}

fn duration_or_zero(s: &str) -> Result<Duration, String> {
    if s == "0" || s == "0s" {
        return Ok(Duration::ZERO);
    }
    crate::config::duration::parse_arg(s)
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = match config::load(&args.config) {
        Ok(c) => c,
        Err(diags) => {
            eprintln!("{diags}");
            return Ok(ExitCode::from(1));
        }
    };
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let modules = FilterModules {
        core: module_path(args.filter_module.as_deref(), DEFAULT_FILTER_MODULE)?,
        extended: module_path(
            args.filter_module_extended.as_deref(),
            DEFAULT_EXTENDED_FILTER_MODULE,
        )?,
    };
    // A module Envoy cannot open makes every sidecar NACK the filter config, and then
    // every listener that references it: refuse to start instead.
    for (module, flag) in [
        (&modules.core, "--filter-module"),
        (&modules.extended, "--filter-module-extended"),
    ] {
        if let Err(e) = check_module(module) {
            anyhow::bail!("{e} (build it with `./dev build` or pass {flag})");
        }
    }
    let metrics = Arc::new(Metrics::default());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let attesting = if args.insecure_plaintext_xds {
        None
    } else {
        let auth = AttestingAuthorizer::new(cfg.clone(), clock.clone(), metrics.clone())
            .map_err(|e| anyhow::anyhow!("attestation settings: {e}"))?;
        Some(Arc::new(auth))
    };
    let authorizer: Arc<dyn NodeAuthorizer> = match &attesting {
        Some(a) => a.clone(),
        None => Arc::new(AllowAnyCaller),
    };
    let shared = Shared {
        cache: Arc::new(Cache::new()),
        metrics,
        status: Arc::new(StatusRegistry::default()),
        authorizer,
        max_stream_age: (!args.xds_max_stream_age.is_zero()).then_some(args.xds_max_stream_age),
    };
    let (xds_addr, admin_addr) = (cfg.server.xds_listen, cfg.server.admin_listen);
    let info = Arc::new(Mutex::new(config_info(&cfg, None)));
    let svid_ttl = cfg.ca.svid_ttl;
    let module = modules.for_config(&cfg).to_path_buf();
    let (cp, applied) = ControlPlane::start(cfg, modules, clock.clone(), shared.clone())
        .context("starting the control plane")?;
    let cp = Arc::new(cp);
    // The activation deadline keeps room for the longest SVID the CA signs.
    if let Ok(Some(s)) = crate::workload_api::Settings::load(&cp.config()) {
        cp.also_signs_for(s.x509_ttl);
    }
    tracing::info!(nodes = applied.changed.len(), svids = applied.minted, module = %module.display(), "snapshots published");

    let xds_listener = bind(xds_addr, "xds_listen").await?;
    let admin_listener = bind(admin_addr, "admin_listen").await?;
    let (ads, renewal) = if args.insecure_plaintext_xds {
        for _ in 0..3 {
            tracing::warn!(addr = %xds_addr, "INSECURE: --insecure-plaintext-xds: ADS is plaintext gRPC and every caller's node id is trusted without attestation; any process that reaches this port can obtain every workload's private key. Local development only.");
        }
        let ads: futures::future::BoxFuture<'static, _> =
            Box::pin(crate::xds::server::serve(xds_listener, shared.clone()));
        (ads, None)
    } else {
        let svid = tls::mint_server_svid(&cp.ca(), svid_ttl, clock.as_ref())
            .context("minting the control plane's serving certificate")?;
        let cert = Arc::new(tls::ServerCert::new(tls::certified_key(&svid)?));
        let tls_config = tls::server_config(cert.clone())?;
        tracing::info!(addr = %xds_addr, id = %svid.id, serial = %svid.serial_hex, max_stream_age = ?shared.max_stream_age, "ADS over TLS; callers must attest (join token or Kubernetes service-account token)");
        let renewal = tokio::spawn(tls::renew_forever(
            cert,
            svid.not_before,
            svid.not_after,
            svid_ttl,
            {
                let cp = cp.clone();
                move || cp.ca()
            },
            clock.clone(),
        ));
        let ads: futures::future::BoxFuture<'static, _> = Box::pin(crate::xds::server::serve_tls(
            xds_listener,
            tls_config,
            shared.clone(),
        ));
        (ads, Some(renewal))
    };
    let ready = Arc::new(AtomicBool::new(false));
    let admin_state = AdminState {
        xds: shared.clone(),
        ready: ready.clone(),
        config: info.clone(),
    };
    // The SPIFFE Workload API for workloads without a sidecar (only with workload-api.yaml).
    let (wl_stop, wl_stopped) = tokio::sync::oneshot::channel::<()>();
    let wl_task = tokio::spawn({
        let source: Arc<dyn IdentitySource> = cp.clone();
        async move {
            let shutdown = async {
                let _ = wl_stopped.await;
            };
            if let Err(e) = run_workload_api(source, Arc::new(SystemClock), shutdown).await {
                tracing::error!("Workload API stopped: {e}");
            }
        }
    });
    let mut ads_task = tokio::spawn(ads);
    let admin_router = admin::router(admin_state)
        .merge(admin::ca::router(cp.clone()))
        .merge(admin::ui::router(cp.clone()));
    let mut admin_task = tokio::spawn(admin::serve_router(admin_listener, admin_router));
    ready.store(true, Ordering::Relaxed);
    tracing::info!(xds = %xds_addr, admin = %admin_addr, "warden serving");

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut seen = fingerprint(&args.config);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            r = &mut ads_task => anyhow::bail!("ADS server stopped: {:?}", r),
            r = &mut admin_task => anyhow::bail!("admin endpoint stopped: {:?}", r),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                seen = fingerprint(&args.config);
                reload(&cp, &args.config, &shared, &info, attesting.as_deref());
            }
            _ = tick.tick() => {
                let now = fingerprint(&args.config);
                if now != seen {
                    seen = now;
                    tracing::info!("config files changed: reloading");
                    reload(&cp, &args.config, &shared, &info, attesting.as_deref());
                }
                // Automatic CA rotation steps, SVID renewals (with backoff), expiry gauges.
                let t = cp.tick();
                if t.renewed.minted > 0 || t.renewed.failed > 0 {
                    tracing::info!(renewed = t.renewed.minted, failed = t.renewed.failed, pushed = t.renewed.changed.len(), "SVIDs renewed");
                }
            }
        }
    }
    tracing::info!("shutting down");
    if let Some(r) = renewal {
        r.abort();
    }
    let _ = wl_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), wl_task).await;
    Ok(ExitCode::SUCCESS)
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (server.{what} in warden.yaml)"))
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

/// A filter module must be a readable file starting with the Wasm magic `\0asm`.
pub(crate) fn check_module(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| format!("filter module {}: {e}", path.display()))?;
    if &magic != b"\0asm" {
        return Err(format!(
            "filter module {} is not a WebAssembly module (no \\0asm header)",
            path.display()
        ));
    }
    Ok(())
}

fn config_info(cfg: &Config, error: Option<String>) -> ConfigInfo {
    ConfigInfo {
        dir: cfg.dir.display().to_string(),
        trust_domain: cfg.trust_domain.to_string(),
        workloads: cfg
            .workloads
            .iter()
            .map(|w| (w.name.clone(), w.node_id.clone()))
            .collect(),
        last_reload_error: error,
    }
}

fn reload(
    cp: &ControlPlane,
    dir: &Path,
    shared: &Shared,
    info: &Mutex<ConfigInfo>,
    attesting: Option<&AttestingAuthorizer>,
) {
    // Loading and building every node's snapshot is CPU work of up to seconds with
    // thousands of workloads: keep it off the async workers that drive the streams.
    tokio::task::block_in_place(|| reload_blocking(cp, dir, shared, info, attesting))
}

fn reload_blocking(
    cp: &ControlPlane,
    dir: &Path,
    shared: &Shared,
    info: &Mutex<ConfigInfo>,
    attesting: Option<&AttestingAuthorizer>,
) {
    let started = std::time::Instant::now();
    let mut load_ms = 0;
    let result = config::load(dir)
        .map_err(|d| format!("config reload rejected; the last good config keeps serving:\n{d}"))
        .and_then(|cfg| {
            load_ms = started.elapsed().as_millis();
            for w in &cfg.warnings {
                tracing::warn!("{w}");
            }
            let new_info = config_info(&cfg, None);
            // The module this config needs must still be there (it is checked at start,
            // but files go away); otherwise every sidecar would NACK the new config.
            check_module(cp.filter_modules().for_config(&cfg)).map_err(|e| {
                format!("config reload rejected; the last good config keeps serving: {e}")
            })?;
            // Check the attestation settings before anything changes, apply them after.
            let attestor = attest::Attestor::from_config(cfg.clone())
                .map_err(|e| format!("config reload rejected (attestation settings): {e}"))?;
            let applied = cp.reload(cfg).map_err(|e| {
                format!("config reload rejected; the last good config keeps serving: {e}")
            })?;
            if let Some(a) = attesting {
                a.set(attestor);
            }
            Ok((applied, new_info))
        });
    let mut info = info.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok((applied, new_info)) => {
            shared.metrics.config_reloaded();
            *info = new_info;
            let total_ms = started.elapsed().as_millis();
            if applied.changed.len() + applied.removed.len() <= 10 {
                tracing::info!(changed = ?applied.changed, removed = ?applied.removed, svids = applied.minted, load_ms, total_ms, "config reloaded");
            } else {
                tracing::info!(
                    changed = applied.changed.len(),
                    removed = applied.removed.len(),
                    svids = applied.minted,
                    load_ms,
                    total_ms,
                    "config reloaded"
                );
            }
        }
        Err(msg) => {
            shared.metrics.config_reload_failed();
            tracing::error!("{msg}");
            info.last_reload_error = Some(msg);
        }
    }
}

/// (path, modified, len) of every config file, skipping hidden entries (the CA state
/// dir `.warden` lives inside the config dir and must not trigger reloads).
fn fingerprint(dir: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                if depth < 3 {
                    stack.push((e.path(), depth + 1));
                }
            } else {
                out.push((e.path(), meta.modified().ok(), meta.len()));
            }
        }
    }
    out.sort();
    out
}
