//! A bounded HTTP load generator for the mesh path (app → outbound sidecar listener →
//! mTLS → inbound sidecar → app): N client threads, half of them on keep-alive
//! connections and half opening a fresh connection per request (so both connection reuse
//! and new TLS handshakes are exercised), at a modest fixed rate. Bounded by a request
//! count and a deadline, stoppable at any time. Any non-2xx answer, connect error, reset
//! or timeout is a failure; the first few are kept with their details.
//!
//! It does not retry: a request that fails for any reason counts as failed, including one
//! on a reused connection the server closed (the client honours `connection: close`, so
//! that only happens if the server drops a connection without saying so).

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::http::{Conn, Response};
use crate::wait;

/// How many failure details are kept.
const KEPT_FAILURES: usize = 5;

/// What load to generate.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Outbound sidecar listeners to call; threads `2k` and `2k+1` (one keep-alive, one
    /// connection per request) call `targets[k % len]`.
    pub targets: Vec<SocketAddr>,
    /// Client threads; even ones keep connections alive, odd ones connect per request.
    pub threads: usize,
    /// Requests per second per thread.
    pub rate_per_thread: u32,
    /// Upper bound on requests over all threads.
    pub max_requests: u64,
    /// Upper bound on the run time.
    pub deadline: Duration,
}

impl LoadSpec {
    /// Four threads at 25 req/s each (about 100 req/s), at most 50,000 requests or
    /// 5 minutes.
    pub fn new(targets: Vec<SocketAddr>) -> Self {
        Self {
            targets,
            threads: 4,
            rate_per_thread: 25,
            max_requests: 50_000,
            deadline: Duration::from_secs(300),
        }
    }
}

/// Counts so far (or final, from [`Load::stop`]).
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests attempted.
    pub sent: u64,
    /// Requests answered with 2xx.
    pub ok: u64,
    /// Requests that failed (non-2xx, connect error, reset, timeout).
    pub failed: u64,
    /// TCP connections opened.
    pub connections: u64,
    /// The first few failures: when, which thread and target, what happened.
    pub failures: Vec<String>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {}, ok {}, failed {}, connections {}",
            self.sent, self.ok, self.failed, self.connections
        )?;
        for failure in &self.failures {
            write!(f, "\n  {failure}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    connections: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Counters {
    fn report(&self) -> LoadReport {
        LoadReport {
            sent: self.sent.load(Ordering::SeqCst),
            ok: self.ok.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
            connections: self.connections.load(Ordering::SeqCst),
            failures: self.failures.lock().map(|f| f.clone()).unwrap_or_default(),
        }
    }

    fn fail(&self, detail: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut kept) = self.failures.lock() {
            if kept.len() < KEPT_FAILURES {
                kept.push(detail);
            }
        }
    }
}

/// Running load; stops (and joins its threads) on [`Load::stop`] or drop.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the client threads.
    pub fn start(spec: &LoadSpec) -> Result<Self> {
        if spec.targets.is_empty() || spec.threads == 0 || spec.rate_per_thread == 0 {
            bail!("load needs targets, threads and a rate: {spec:?}");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let issued = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let threads = (0..spec.threads)
            .map(|i| {
                let client = Client {
                    index: i,
                    target: spec.targets[(i / 2) % spec.targets.len()],
                    keep_alive: i % 2 == 0,
                    interval: Duration::from_secs(1) / spec.rate_per_thread,
                    max_requests: spec.max_requests,
                    end: start + spec.deadline,
                    start,
                    stop: stop.clone(),
                    counters: counters.clone(),
                    issued: issued.clone(),
                };
                std::thread::spawn(move || client.run())
            })
            .collect();
        Ok(Self {
            stop,
            counters,
            threads,
        })
    }

    /// Counts so far.
    pub fn report(&self) -> LoadReport {
        self.counters.report()
    }

    /// Waits until at least `more` further requests have completed (proof that traffic
    /// flows at this point of a scenario); fails after `timeout`.
    pub fn wait_for_more(&self, more: u64, timeout: Duration) -> Result<()> {
        let target = self.report().sent + more;
        wait::until_true(&format!("{more} more requests"), timeout, || {
            Ok(self.report().sent >= target)
        })
    }

    /// Stops every thread (each finishes its request in flight) and returns the totals.
    pub fn stop(mut self) -> LoadReport {
        self.halt();
        self.counters.report()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One client thread.
#[derive(Debug)]
struct Client {
    index: usize,
    target: SocketAddr,
    keep_alive: bool,
    interval: Duration,
    max_requests: u64,
    start: Instant,
    end: Instant,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    issued: Arc<AtomicU64>,
}

impl Client {
    fn run(self) {
        let mut conn: Option<Conn<TcpStream>> = None;
        let mut uses = 0u64;
        let mut next = Instant::now();
        let mut n = 0u64;
        while !self.stop.load(Ordering::SeqCst) && Instant::now() < self.end {
            if self.issued.fetch_add(1, Ordering::SeqCst) >= self.max_requests {
                break;
            }
            n += 1;
            self.counters.sent.fetch_add(1, Ordering::SeqCst);
            let reused = conn.is_some();
            let outcome = self.request(&mut conn, n);
            match outcome {
                Ok(response) if (200..300).contains(&response.status) => {
                    self.counters.ok.fetch_add(1, Ordering::SeqCst);
                    uses += 1;
                    let close = response
                        .header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                    if close || !self.keep_alive {
                        conn = None;
                        uses = 0;
                    }
                }
                Ok(response) => {
                    self.fail(
                        n,
                        reused,
                        uses,
                        &format!("status {}: {}", response.status, short(&response.text())),
                    );
                    conn = None;
                    uses = 0;
                }
                Err(err) => {
                    self.fail(n, reused, uses, &format!("{err:#}"));
                    conn = None;
                    uses = 0;
                }
            }
            next += self.interval;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                // Behind schedule (slow answers): do not burst to catch up.
                next = now;
            }
        }
    }

    fn request(&self, conn: &mut Option<Conn<TcpStream>>, n: u64) -> Result<Response> {
        if conn.is_none() {
            *conn = Some(Conn::connect(self.target)?);
            self.counters.connections.fetch_add(1, Ordering::SeqCst);
        }
        let path = format!("/load/{}/{n}", self.index);
        let headers: &[(&str, &str)] = if self.keep_alive {
            &[]
        } else {
            &[("connection", "close")]
        };
        match conn {
            Some(c) => c.get(&path, headers),
            None => bail!("no connection"),
        }
    }

    fn fail(&self, n: u64, reused: bool, uses: u64, what: &str) {
        let how = if reused {
            format!("keep-alive, after {uses} answers on this connection")
        } else {
            "new connection".to_owned()
        };
        self.counters.fail(format!(
            "t+{:.2}s thread {} request {n} → {} ({how}): {what}",
            self.start.elapsed().as_secs_f64(),
            self.index,
            self.target,
        ));
    }
}

fn short(text: &str) -> String {
    text.chars().take(200).collect()
}
