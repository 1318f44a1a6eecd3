//! `warden federation status`: each federation relationship as the running control plane
//! sees it (last refresh, sequence, next refresh, failures), read from `/federation` on
//! its admin endpoint. Also what `warden serve` starts for federation: the refresh task
//! and, when `federation.yaml` has one, the bundle endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};

use warden::config::federation::{EndpointProfile, FederationSettings};
use warden::federation::{endpoint, Federation, RelationshipStatus};
use warden::identity::from_unix_secs;
use warden::plane::{serving_cert, ControlPlane};
use warden::xds::server::tls;

use super::common::load_config;

/// `warden federation` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Per relationship: last refresh, bundle sequence, next refresh, failures.
    Status {
        /// Config directory (its `server.admin_listen` is the default admin address).
        #[arg(long, env = "WARDEN_CONFIG", default_value = ".")]
        config: PathBuf,
        /// Admin address of the running control plane (default: from the config).
        #[arg(long, value_name = "ADDR")]
        admin: Option<SocketAddr>,
        /// Print the JSON answer instead of words.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Status {
        config,
        admin,
        json,
    } = cmd;
    let addr = match admin {
        Some(a) => a,
        None => load_config(&config)?.server.admin_listen,
    };
    let limits = warden::http_client::Limits {
        connect: Duration::from_secs(3),
        answer: Duration::from_secs(10),
        max_body: 4 * 1024 * 1024,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (code, body) = runtime
        .block_on(warden::http_client::request(
            addr,
            "GET",
            "/federation",
            limits,
        ))
        .with_context(|| format!("asking the control plane at {addr}"))?;
    if code != 200 {
        bail!("{addr}/federation answered {code}");
    }
    let status: Vec<RelationshipStatus> = serde_json::from_slice(&body)
        .with_context(|| format!("unexpected answer from {addr}/federation"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    if status.is_empty() {
        println!("no federation relationships (federation.yaml lists none)");
    }
    let now = SystemTime::now();
    let mut failing = false;
    for s in &status {
        println!("{} ({}, {})", s.trust_domain, s.profile, s.url);
        match s.sequence {
            Some(seq) => println!(
                "  bundle: sequence {seq}, {} X.509 authorities",
                s.authorities
            ),
            None => println!("  bundle: none yet (no bundle_file and no successful fetch)"),
        }
        match s.last_refresh {
            Some(t) => println!("  last refresh: {}", ago(now, from_unix_secs(t))),
            None => println!("  last refresh: never"),
        }
        println!(
            "  next refresh: {}",
            ago(now, from_unix_secs(s.next_refresh))
        );
        if let Some(e) = &s.last_error {
            failing = true;
            println!(
                "  FAILING: {} consecutive failures ({} in total), last: {e}; the last good bundle is kept",
                s.consecutive_failures, s.failures
            );
        } else if s.failures > 0 {
            println!("  failures so far: {} (recovered)", s.failures);
        }
        if let Some(exp) = s.expires {
            println!("  earliest CA expires: {}", ago(now, from_unix_secs(exp)));
        }
    }
    Ok(if failing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn ago(now: SystemTime, t: SystemTime) -> String {
    match t.duration_since(now) {
        Ok(d) => format!("in {}s", d.as_secs()),
        Err(e) => format!("{}s ago", e.duration().as_secs()),
    }
}

/// Starts the federation task and, when configured, the bundle endpoint. The tasks run
/// until the runtime stops.
pub(crate) async fn start(cp: &Arc<ControlPlane>) -> anyhow::Result<Arc<Federation>> {
    let federation = Federation::new(cp.clone());
    tokio::spawn(federation.clone().run());
    let settings = FederationSettings::load(&cp.config())
        .map_err(|e| anyhow::anyhow!("{}", e.into_diagnostics()))?;
    let Some(ep) = settings.and_then(|s| s.bundle_endpoint) else {
        return Ok(federation);
    };
    let listener = tokio::net::TcpListener::bind(ep.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (bundle_endpoint.listen in federation.yaml)",
                ep.listen
            )
        })?;
    let cert = match (&ep.profile, &ep.web_cert) {
        (EndpointProfile::HttpsWeb, Some((c, k))) => {
            Arc::new(tls::ServerCert::new(endpoint::web_certified_key(c, k)?))
        }
        _ => spiffe_cert(cp)?,
    };
    let hint = ep.refresh_hint;
    let source: endpoint::BundleSource = {
        let cp = cp.clone();
        let state_dir = cp.config().ca.state_dir.clone();
        Arc::new(move || {
            let jwt = jwt_keys(&state_dir, cp.clock().now());
            cp.bundle().to_spiffe_json(hint, &jwt)
        })
    };
    tracing::info!(addr = %ep.listen, profile = ?ep.profile, "SPIFFE bundle endpoint serving");
    tokio::spawn(endpoint::serve(listener, cert, source));
    Ok(federation)
}

/// The Workload API's JWT signing keys (`jwt-svid` keys of the served bundle), read from
/// the state dir where the Workload API keeps them; none when it never ran.
fn jwt_keys(state_dir: &std::path::Path, now: SystemTime) -> Vec<serde_json::Value> {
    use warden::workload_api::jwt_keys::{JwtKeys, KEYS_FILE};
    if !state_dir.join(KEYS_FILE).is_file() {
        return Vec::new();
    }
    let jwks = match JwtKeys::load_or_create(state_dir, now) {
        Ok(keys) => keys.jwks_json(),
        Err(e) => {
            tracing::warn!("bundle endpoint: JWT keys not served: {e}");
            return Vec::new();
        }
    };
    serde_json::from_str::<serde_json::Value>(&jwks)
        .ok()
        .and_then(|v| v.get("keys").and_then(|k| k.as_array()).cloned())
        .unwrap_or_default()
}

/// The `https_spiffe` certificate: an SVID of our trust domain, re-minted at its renewal
/// point (`identity::renewal`) and as soon as another CA signs (a peer that fetched the
/// bundle after our old CA retired would not trust the old one).
fn spiffe_cert(cp: &Arc<ControlPlane>) -> anyhow::Result<Arc<tls::ServerCert>> {
    let ttl = cp.config().ca.svid_ttl;
    let clock = cp.clock();
    let svid = tls::mint_server_svid(&cp.ca(), ttl, clock.as_ref())
        .context("minting the bundle endpoint's SVID")?;
    let cert = Arc::new(tls::ServerCert::new(tls::certified_key(&svid)?));
    let (cp, served) = (cp.clone(), cert.clone());
    tokio::spawn(async move {
        let mut signer = cp.ca().serial_hex().to_owned();
        let mut current: serving_cert::Served = (&svid).into();
        let mut failing = None;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = clock.now();
            let active = cp.ca();
            let due = serving_cert::next_attempt(&current, failing) <= now;
            if !due && active.serial_hex() == signer {
                continue;
            }
            match tls::mint_server_svid(&active, ttl, clock.as_ref())
                .and_then(|s| tls::certified_key(&s).map(|k| (s, k)))
            {
                Ok((s, key)) => {
                    served.replace(key);
                    tracing::info!(serial = %s.serial_hex, "bundle endpoint SVID renewed");
                    current = (&s).into();
                    signer = active.serial_hex().to_owned();
                    failing = None;
                }
                Err(e) => {
                    tracing::warn!(
                        "renewing the bundle endpoint SVID: {e}; the current one keeps serving"
                    );
                    failing = Some(warden::identity::renewal::Failing::after_failure(
                        failing, now,
                    ));
                }
            }
        }
    });
    Ok(cert)
}
