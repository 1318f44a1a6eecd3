//! `warden audit [filters]`, `warden audit show <decision-id>`, `warden audit verify`:
//! read the audit store in the config's state directory (read-only; `warden serve` may be
//! writing). Each control-plane replica has its own store: query the replica that served
//! the sidecar, or use the OTLP export to gather all of them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::common::load_config;
use std::sync::Arc;
use warden::audit::query::{json_line, story, table_line, TABLE_HEADER};

use warden::audit::{
    als, event::KINDS, otlp, store, AuditSink, Query, Retention, SinkConfig, Store,
};
use warden::config::Config;
use warden::plane::{serving_cert, ControlPlane};
use warden::xds::server::tls;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// The whole story of one decision (by its `x-warden-decision-id`).
    Show {
        /// The decision id.
        decision_id: String,
        #[command(flatten)]
        at: Location,
        /// Print JSON lines instead.
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain; exit 1 naming the first bad record.
    Verify {
        #[command(flatten)]
        at: Location,
    },
}

/// Where the store is.
#[derive(Debug, Clone, clap::Args)]
struct Location {
    /// The config directory (the store is `audit.db` in its state directory).
    #[arg(long, env = "WARDEN_CONFIG", default_value = ".")]
    config: PathBuf,
    /// The store file itself (instead of --config).
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    at: Location,
    /// Decision id.
    #[arg(long)]
    decision_id: Option<String>,
    /// Source SPIFFE ID (or "no verified peer").
    #[arg(long)]
    source: Option<String>,
    /// Destination SPIFFE ID.
    #[arg(long)]
    destination: Option<String>,
    /// allow or deny.
    #[arg(long, value_parser = ["allow", "deny"])]
    decision: Option<String>,
    /// Request path prefix.
    #[arg(long)]
    path_prefix: Option<String>,
    /// Event kind (decision, svid_issued, attest_refused, ca_step, reload_refused, ...).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(KINDS))]
    kind: Option<String>,
    /// From this time (RFC 3339), or this long ago (e.g. 1h).
    #[arg(long, value_parser = time_arg)]
    since: Option<i64>,
    /// Until this time (RFC 3339), or this long ago.
    #[arg(long, value_parser = time_arg)]
    until: Option<i64>,
    /// At most this many records (the newest).
    #[arg(long, default_value_t = 1000)]
    limit: u32,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Start the audit sink `warden serve` records through.
pub(crate) fn start_sink(cfg: &Config) -> anyhow::Result<AuditSink> {
    let path = cfg.ca.state_dir.join(store::FILE);
    std::fs::create_dir_all(&cfg.ca.state_dir)
        .with_context(|| format!("creating {}", cfg.ca.state_dir.display()))?;
    let retention = Retention {
        max_age_ms: i64::try_from(cfg.audit.retention.as_millis()).unwrap_or(i64::MAX),
        max_bytes: cfg.audit.max_size_mib.saturating_mul(1 << 20),
    };
    let sink_config = SinkConfig {
        retention,
        ..SinkConfig::default()
    };
    let export = match &cfg.audit.otlp_endpoint {
        Some(endpoint) => {
            let replica = format!("{}", cfg.server.xds_listen);
            tracing::info!(%endpoint, "audit: exporting records as OTLP logs");
            Some(otlp::Exporter::start(endpoint.clone(), replica)?)
        }
        None => None,
    };
    AuditSink::start_exporting(&path, cfg.trust_domain.as_str(), sink_config, export)
        .with_context(|| format!("opening the audit store {}", path.display()))
}

/// The mTLS access-log listener sidecars send decisions to (only with `audit.listen`),
/// with its own serving certificate kept fresh like the xDS one.
pub(crate) async fn start_als(
    cp: &Arc<ControlPlane>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let cfg = cp.config();
    let Some(addr) = cfg.audit.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (audit.listen in warden.yaml)"))?;
    let (ttl, clock) = (cfg.ca.svid_ttl, cp.clock());
    let svid = tls::mint_server_svid(&cp.ca(), ttl, clock.as_ref())
        .context("minting the audit listener's certificate")?;
    let cert = Arc::new(tls::ServerCert::new(tls::certified_key(&svid)?));
    let verifier = {
        let cp = cp.clone();
        Arc::new(als::BundleVerifier::new(move || cp.bundle()))
    };
    let config = server_config(cert.clone(), verifier)?;
    let renew = {
        let (cp, clock) = (cp.clone(), clock.clone());
        move || -> Result<_, tls::TlsError> {
            let svid = tls::mint_server_svid(&cp.ca(), ttl, clock.as_ref())?;
            cert.replace(tls::certified_key(&svid)?);
            Ok(svid)
        }
    };
    let sink = cp.xds().audit.clone();
    let rules: als::RuleLocator = {
        let cp = cp.clone();
        Arc::new(move |rule: &str| {
            let cfg = cp.config();
            let rule = if rule.is_empty() {
                cfg.policy.entrypoint.as_str()
            } else {
                rule
            };
            let modules = cfg
                .policies
                .modules
                .iter()
                .map(|m| (m.name.as_str(), m.source.as_str()));
            warden::audit::rules::locations(modules, rule)
        })
    };
    tracing::info!(%addr, "audit: access-log service for sidecars' decisions (mTLS)");
    Ok(Some(tokio::spawn(async move {
        let renewal = tokio::spawn(serving_cert::renew_forever((&svid).into(), clock, renew));
        if let Err(e) = serve(listener, config, sink, rules).await {
            tracing::error!("audit access-log service stopped: {e}");
        }
        renewal.abort();
    })))
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(Sub::Show {
            decision_id,
            at,
            json,
        }) => show(&at, decision_id, json),
        Some(Sub::Verify { at }) => verify(&at),
        None => list(args.list),
    }
}

fn open(at: &Location) -> anyhow::Result<Store> {
    let path = match &at.db {
        Some(p) => p.clone(),
        None => db_path(&at.config)?,
    };
    Ok(Store::open_read_only(&path)?)
}

/// The store of the config in `dir`. The trail must stay readable when the config is
/// broken (a refused reload is in it): then only `ca.state_dir` is read from warden.yaml.
fn db_path(dir: &Path) -> anyhow::Result<PathBuf> {
    if let Ok(cfg) = load_config(dir) {
        return Ok(cfg.ca.state_dir.join(store::FILE));
    }
    let text = std::fs::read_to_string(dir.join("warden.yaml"))
        .with_context(|| format!("reading {}", dir.join("warden.yaml").display()))?;
    let state_dir = serde_yaml::from_str::<serde_yaml::Value>(&text)
        .ok()
        .and_then(|v| v.get("ca")?.get("state_dir")?.as_str().map(str::to_string))
        .unwrap_or_else(|| ".warden".to_string());
    Ok(dir.join(state_dir).join(store::FILE))
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let s = open(&a.at)?;
    let q = Query {
        decision_id: a.decision_id,
        source: a.source,
        destination: a.destination,
        decision: a.decision,
        path_prefix: a.path_prefix,
        kind: a.kind,
        since_ms: a.since,
        until_ms: a.until,
        limit: Some(a.limit),
    };
    let rows = s.query(&q)?;
    if !a.json {
        println!("{TABLE_HEADER}");
    }
    for r in &rows {
        println!("{}", if a.json { json_line(r) } else { table_line(r) });
    }
    Ok(ExitCode::SUCCESS)
}

fn show(at: &Location, id: String, json: bool) -> anyhow::Result<ExitCode> {
    let s = open(at)?;
    let rows = s.query(&Query {
        decision_id: Some(id.clone()),
        ..Query::default()
    })?;
    if rows.is_empty() {
        eprintln!("no record of decision `{id}` in this store (each control-plane replica has its own store; allows may be sampled)");
        return Ok(ExitCode::from(1));
    }
    for r in &rows {
        if json {
            println!("{}", json_line(r));
        } else {
            for line in story(r) {
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(at: &Location) -> anyhow::Result<ExitCode> {
    let s = open(at)?;
    match s.verify()? {
        Ok(v) => {
            println!(
                "ok: {} record(s) from {} chain to head {}",
                v.records, v.first_seq, v.head
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            println!("TAMPERED: {b}");
            Ok(ExitCode::from(1))
        }
    }
}

fn time_arg(s: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let ago = warden::config::duration::parse(s)
        .map_err(|e| format!("not RFC 3339 nor a duration: {e}"))?;
    Ok(warden::audit::event::now_ms() - i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))
}

/// A rustls server config presenting `cert` and requiring a client certificate that
/// chains to the bundle `verifier` reads; ALPN `h2`.
fn server_config(
    cert: Arc<tls::ServerCert>,
    verifier: Arc<als::BundleVerifier>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serves the ALS on `listener` over mTLS until dropped.
async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    sink: AuditSink,
    rules: als::RuleLocator,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        // Notice dead sidecars; bound what one connection may hold open.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .max_concurrent_streams(Some(16))
        .add_service(als::AlsServer::new(sink, rules).into_service())
        .serve_with_incoming(tls::accept_tls(listener, config))
        .await
}
