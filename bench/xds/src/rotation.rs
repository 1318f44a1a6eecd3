//! Rotation figures (issue 5): with every stream in sync, how long from the server
//! signing new SVIDs until every stream has ACKed its new secret, and how much CPU the
//! `warden` process used over that window.
//!
//! The server side is observed from outside: a sampler thread reads the process's CPU
//! time (`/proc/<pid>/stat` utime + stime) and the `warden_svids_issued_total` counter
//! every [`SAMPLE`], so signing times are known to within one sample. The client side is
//! exact: each stream reports when it ACKed an SDS response that replaced its SVID.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;
use warden_e2e::{http, warden};

use crate::stream::Event;

/// Sampling period of the server's CPU time and signing counter.
pub(crate) const SAMPLE: Duration = Duration::from_millis(20);

/// One sample of the server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    pub(crate) cpu_ticks: u64,
    pub(crate) svids_issued: u64,
}

/// Samples the server until dropped.
#[derive(Debug)]
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    pub(crate) fn start(pid: u32, admin: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(sample) = sample(pid, admin) {
                        if let Ok(mut all) = samples.lock() {
                            all.push(sample);
                        }
                    }
                    std::thread::sleep(SAMPLE);
                }
            })
        };
        Self {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns every sample, oldest first.
    pub(crate) fn finish(mut self) -> Vec<Sample> {
        self.halt();
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.halt();
    }
}

fn sample(pid: u32, admin: SocketAddr) -> Result<Sample> {
    let at = Instant::now();
    let metrics = http::get(admin, "/metrics")?.text();
    Ok(Sample {
        at,
        cpu_ticks: cpu_ticks(pid)?,
        svids_issued: warden::sum_metric(&metrics, "warden_svids_issued_total", &[]) as u64,
    })
}

/// utime + stime of `pid`, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat.rsplit_once(')').context("bad /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux in practice).
pub(crate) fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// What one SVID renewal round measured.
#[derive(Debug, Default)]
pub(crate) struct SvidRound {
    /// SVIDs the server signed in the round.
    pub(crate) signed: u64,
    /// First to last signing (the renewal jitter spreads this).
    pub(crate) signing_spread: Duration,
    /// First signing until every stream ACKed a new SVID.
    pub(crate) first_signing_to_all: Duration,
    /// Last signing until every stream ACKed a new SVID.
    pub(crate) last_signing_to_all: Duration,
    /// Server CPU time over [first signing, all ACKed].
    pub(crate) cpu: Duration,
}

/// Waits (up to `timeout`) until each of the `held` streams has ACKed a new SVID, with
/// `sampler` running since before the round started and `baseline` the signing counter
/// then.
pub(crate) async fn svid_round(
    events: &mut mpsc::UnboundedReceiver<Event>,
    held: usize,
    sampler: Sampler,
    baseline: u64,
    timeout: Duration,
) -> Result<SvidRound> {
    let acked = first_change_per_stream(events, held, timeout, |svid, _, _| svid).await?;
    let all_acked = acked.values().copied().max().context("no stream")?;
    // One more sample after the last ACK, so the CPU window is closed.
    tokio::time::sleep(SAMPLE * 2).await;
    let samples = sampler.finish();
    let window = signing_window(&samples, baseline, held as u64)?;
    Ok(SvidRound {
        signed: window.signed,
        signing_spread: window.last.saturating_duration_since(window.first),
        first_signing_to_all: all_acked.saturating_duration_since(window.first),
        last_signing_to_all: all_acked.saturating_duration_since(window.last),
        cpu: cpu_between(&samples, window.before_first, all_acked),
    })
}

/// When each stream first ACKed an SDS response whose changes `wanted(svid, bundle, at)`
/// accepts.
pub(crate) async fn first_change_per_stream(
    events: &mut mpsc::UnboundedReceiver<Event>,
    held: usize,
    timeout: Duration,
    wanted: impl Fn(bool, bool, Instant) -> bool,
) -> Result<HashMap<usize, Instant>> {
    let deadline = Instant::now() + timeout;
    let mut acked = HashMap::new();
    while acked.len() < held {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(Event::SecretsChanged {
                stream,
                svid,
                bundle,
                at,
            })) if wanted(svid, bundle, at) => {
                acked.entry(stream).or_insert(at);
            }
            Ok(Some(Event::Ended { error })) => bail!("a stream ended during rotation: {error}"),
            Ok(Some(_)) => {}
            Ok(None) => bail!("every stream ended"),
            Err(_) => bail!(
                "timed out: {} of {held} streams ACKed the change",
                acked.len()
            ),
        }
    }
    Ok(acked)
}

/// When signing was seen to start and to finish, from the samples.
#[derive(Debug)]
pub(crate) struct SigningWindow {
    /// Last sample before any new signing (the CPU window opens here).
    pub(crate) before_first: Instant,
    /// First sample showing a new signing.
    pub(crate) first: Instant,
    /// First sample showing `expected` new signings.
    pub(crate) last: Instant,
    pub(crate) signed: u64,
}

pub(crate) fn signing_window(
    samples: &[Sample],
    baseline: u64,
    expected: u64,
) -> Result<SigningWindow> {
    let first_index = samples
        .iter()
        .position(|s| s.svids_issued > baseline)
        .context("no signing seen by the sampler")?;
    let last = samples
        .iter()
        .find(|s| s.svids_issued >= baseline + expected)
        .map_or(samples[samples.len() - 1].at, |s| s.at);
    Ok(SigningWindow {
        before_first: samples[first_index.saturating_sub(1)].at,
        first: samples[first_index].at,
        last,
        signed: samples[samples.len() - 1].svids_issued - baseline,
    })
}

/// Server CPU time between the last sample at or before `from` and the first at or
/// after `to`.
pub(crate) fn cpu_between(samples: &[Sample], from: Instant, to: Instant) -> Duration {
    let start = samples
        .iter()
        .rev()
        .find(|s| s.at <= from)
        .or(samples.first());
    let end = samples.iter().find(|s| s.at >= to).or(samples.last());
    match (start, end) {
        (Some(a), Some(b)) => {
            let ticks = b.cpu_ticks.saturating_sub(a.cpu_ticks);
            Duration::from_millis(ticks * 1000 / ticks_per_second().max(1))
        }
        _ => Duration::ZERO,
    }
}

/// The current value of the signing counter.
pub(crate) fn svids_issued(admin: SocketAddr) -> Result<u64> {
    let metrics = http::get(admin, "/metrics")?.text();
    Ok(warden::sum_metric(&metrics, "warden_svids_issued_total", &[]) as u64)
}
