//! `xds-bench`: starts `warden serve` on a generated config with N workloads, opens N
//! simulated Envoy ADS streams (one distinct node each), waits until all are in sync,
//! then changes the policy and times the push until every stream has ACKed it. Prints one
//! markdown table row (`--header` prints the header first). `bench/xds/run.sh` runs it
//! for N = 1k and 10k.

mod ca_rotation;
mod gen;
mod rotation;
mod stream;
mod tls_names;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use warden_e2e::process::{Process, ProcessSpec};
use warden_e2e::{http, locate, ports, wait};

use stream::Event;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(about = "xDS load benchmark against warden serve")]
struct Args {
    /// Number of simulated Envoys (one ADS stream and node each).
    #[arg(long)]
    streams: usize,
    /// Instances per workload: `streams / instances` workloads, each stream one instance
    /// (node.cluster = the workload's node id, node.id = its instance name) with its own
    /// SVID. 1 (the default): every stream is its own workload.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Streams multiplexed on one HTTP/2 connection (Envoy uses 1).
    #[arg(long, default_value_t = 1)]
    streams_per_conn: usize,
    /// Client runtime worker threads (the client shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Upper bound on each phase.
    #[arg(long, default_value_t = 180)]
    timeout_secs: u64,
    /// Print the markdown table header first.
    #[arg(long)]
    header: bool,
    /// Instead of a policy push, time one SVID renewal round: from the server signing
    /// until every stream has ACKed its new SVID, and the server's CPU.
    #[arg(long)]
    svid_rotation: bool,
    /// `ca.svid_ttl` of the generated config (renewal comes at about half of it; long
    /// enough that every stream is in sync before the first renewal).
    #[arg(long, default_value = "60s")]
    svid_ttl: String,
    /// Instead of a policy push, force a CA rotation through the admin endpoint: time
    /// `prepare` until every stream ACKed the new bundle, and `activate` until every
    /// stream ACKed an SVID from the new CA (with the server's CPU).
    #[arg(long)]
    ca_activation: bool,
}

/// What one run measured.
#[derive(Debug, Default)]
struct Figures {
    held: usize,
    sync: Duration,
    rss_idle_kb: u64,
    rss_held_kb: u64,
    push_first: Option<Duration>,
    push_all: Option<Duration>,
    push_acks: usize,
    errors: usize,
    first_error: Option<String>,
    svid_round: Option<rotation::SvidRound>,
    ca_round: Option<ca_rotation::CaRound>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.streams < 2 {
        bail!("--streams must be at least 2");
    }
    if args.instances == 0 || args.streams / args.instances < 2 {
        bail!("--instances must leave at least 2 workloads");
    }
    let dir = tempfile::Builder::new()
        .prefix("warden-xds-bench-")
        .tempdir()?;
    let config = dir.path().join("config");
    let (xds, admin) = (ports::free_addr()?, ports::free_addr()?);
    let svid_ttl = if args.svid_rotation {
        &args.svid_ttl
    } else {
        "1h"
    };
    gen::write(&config, args.streams / args.instances, xds, admin, svid_ttl)?;
    let mut spec = ProcessSpec::new("warden", locate::warden()?)
        .args([
            "serve".to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
            // Measures the ADS protocol and snapshot fan-out, not TLS or attestation: the
            // simulated clients speak plaintext and carry no credential.
            "--insecure-plaintext-xds".to_owned(),
        ])
        .env(
            "WARDEN_LOG",
            std::env::var("WARDEN_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
        );
    if let Ok(module) = locate::filter_module() {
        spec = spec.env("WARDEN_FILTER_MODULE", module.display().to_string());
    }
    if let Ok(module) = locate::extended_filter_module() {
        spec = spec.env(
            "WARDEN_FILTER_MODULE_EXTENDED",
            module.display().to_string(),
        );
    }
    let mut server = Process::spawn(&spec, dir.path())?;
    let timeout = Duration::from_secs(args.timeout_secs);
    wait::until_true("warden /readyz", timeout, || {
        server.ensure_running()?;
        Ok(http::get(admin, "/readyz").is_ok_and(|r| r.status == 200))
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()?;
    let result = runtime.block_on(measure(&args, &server, &config, (xds, admin), timeout));
    drop(runtime);
    let figures = match result {
        Ok(f) => f,
        Err(err) => {
            eprintln!("warden log tail:\n{}", server.log_tail(3000));
            return Err(err);
        }
    };
    server.stop();
    print_row(&args, &figures);
    Ok(())
}

async fn measure(
    args: &Args,
    server: &Process,
    config: &std::path::Path,
    (xds, admin): (std::net::SocketAddr, std::net::SocketAddr),
    timeout: Duration,
) -> Result<Figures> {
    let mut figures = Figures {
        rss_idle_kb: rss_kb(server.pid())?,
        ..Figures::default()
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let start = Instant::now();
    let conns = args.streams.div_ceil(args.streams_per_conn);
    let mut channels: Vec<Channel> = Vec::with_capacity(conns);
    for batch in (0..conns).collect::<Vec<_>>().chunks(200) {
        let connects = batch.iter().map(|_| async {
            Endpoint::from_shared(format!("http://{xds}"))?
                .connect_timeout(Duration::from_secs(10))
                .connect()
                .await
                .context("connecting to the ADS server")
        });
        for channel in futures::future::join_all(connects).await {
            channels.push(channel?);
        }
    }
    for i in 0..args.streams {
        let channel = channels[i / args.streams_per_conn].clone();
        let node = gen::node(i, args.instances);
        tokio::spawn(stream::run(i, channel, node, events_tx.clone()));
    }
    drop(events_tx);

    // Phase 1: every stream subscribed and in sync.
    let mut synced = 0;
    let deadline = start + timeout;
    while synced < args.streams {
        match next_event(&mut events, deadline).await? {
            Event::Synced => synced += 1,
            Event::Acked { .. } | Event::SecretsChanged { .. } => {}
            Event::Ended { error, .. } => note_error(&mut figures, error),
        }
        if figures.errors > args.streams / 100 + 5 {
            bail!(
                "too many failed streams: {}",
                figures.first_error.unwrap_or_default()
            );
        }
    }
    figures.sync = start.elapsed();
    figures.held = synced - figures.errors.min(synced);
    tokio::time::sleep(Duration::from_secs(1)).await;
    while let Ok(event) = events.try_recv() {
        if let Event::Ended { error, .. } = event {
            note_error(&mut figures, error);
        }
    }
    figures.rss_held_kb = rss_kb(server.pid())?;

    if args.svid_rotation {
        let sampler = rotation::Sampler::start(server.pid(), admin);
        let baseline = rotation::svids_issued(admin)?;
        let round =
            rotation::svid_round(&mut events, figures.held, sampler, baseline, timeout).await?;
        figures.svid_round = Some(round);
        return Ok(figures);
    }
    if args.ca_activation {
        let round =
            ca_rotation::ca_round(&mut events, figures.held, (server.pid(), admin), timeout)
                .await?;
        figures.ca_round = Some(round);
        return Ok(figures);
    }

    // Phase 2: a policy change, pushed to every node.
    let t0 = Instant::now();
    std::fs::write(config.join("policies/authz.rego"), gen::changed_policy(1))?;
    server.signal("HUP")?;
    let mut seen = HashSet::new();
    let deadline = t0 + timeout;
    let mut last = t0;
    while seen.len() < figures.held {
        if let Event::Acked { stream, at } = next_event(&mut events, deadline).await? {
            figures.push_acks += 1;
            last = last.max(at);
            if seen.insert(stream) && seen.len() == figures.held {
                figures.push_first = Some(at - t0);
            }
        }
    }
    // Let follow-up pushes of the same change (other types) finish: quiet for 1 s.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
        if let Event::Acked { at, .. } = event {
            figures.push_acks += 1;
            last = last.max(at);
        }
    }
    figures.push_all = Some(last - t0);
    Ok(figures)
}

async fn next_event(
    events: &mut mpsc::UnboundedReceiver<Event>,
    deadline: Instant,
) -> Result<Event> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, events.recv()).await {
        Ok(Some(event)) => Ok(event),
        Ok(None) => bail!("every stream ended"),
        Err(_) => bail!("timed out"),
    }
}

fn note_error(figures: &mut Figures, error: String) {
    figures.errors += 1;
    figures.first_error.get_or_insert(error);
}

/// VmRSS of a process, in KiB.
fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("bad VmRSS line")?
        .parse()?)
}

fn print_row(args: &Args, f: &Figures) {
    if let Some(round) = &f.svid_round {
        print_rotation_row(args, f, round);
        return;
    }
    if let Some(round) = &f.ca_round {
        print_ca_row(args, f, round);
        return;
    }
    if args.header {
        println!(
            "| streams | workloads × instances | held | connect + initial sync | server RSS idle | RSS with streams | RSS per stream | \
             push: all ACKed once | push: last ACK | ACKs in push | stream errors |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{} ms", d.as_millis()));
    let per_stream = (f.rss_held_kb.saturating_sub(f.rss_idle_kb) as f64) / (f.held.max(1) as f64);
    println!(
        "| {} | {} × {} | {} | {:.2} s | {:.1} MiB | {:.1} MiB | {:.1} KiB | {} | {} | {} | {} |",
        args.streams,
        args.streams / args.instances,
        args.instances,
        f.held,
        f.sync.as_secs_f64(),
        f.rss_idle_kb as f64 / 1024.0,
        f.rss_held_kb as f64 / 1024.0,
        per_stream,
        ms(f.push_first),
        ms(f.push_all),
        f.push_acks,
        f.errors,
    );
    if let Some(err) = &f.first_error {
        eprintln!("first stream error: {err}");
    }
}

fn print_rotation_row(args: &Args, f: &Figures, r: &rotation::SvidRound) {
    if args.header {
        println!(
            "| streams | held | SVIDs signed | signing spread | first signing → all ACKed | \
             last signing → all ACKed | warden CPU in window | stream errors |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    let ms = |d: Duration| format!("{} ms", d.as_millis());
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        args.streams,
        f.held,
        r.signed,
        ms(r.signing_spread),
        ms(r.first_signing_to_all),
        ms(r.last_signing_to_all),
        ms(r.cpu),
        f.errors,
    );
    if let Some(err) = &f.first_error {
        eprintln!("first stream error: {err}");
    }
}

fn print_ca_row(args: &Args, f: &Figures, r: &ca_rotation::CaRound) {
    if args.header {
        println!(
            "| streams | held | prepare → all ACKed new bundle | activate refused (409) | \
             activate → all ACKed new-CA SVID | SVIDs signed | warden CPU in window | stream errors |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    let ms = |d: Duration| format!("{} ms", d.as_millis());
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        args.streams,
        f.held,
        ms(r.prepare_to_all),
        r.refused,
        ms(r.activate_to_all),
        r.signed,
        ms(r.cpu),
        f.errors,
    );
}
