//! [`AuditSink`]: the one handle the control plane emits events through. Emitting never
//! blocks: events go into a bounded channel with `try_send`; when it is full the event is
//! dropped and counted. One blocking thread drains the channel into the store in batches
//! (one transaction per batch) and applies retention now and then.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::event::{now_ms, Event, What};
use super::store::{Retention, Store};
use super::AuditError;

/// How the sink buffers and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkConfig {
    /// Events buffered before drops start (the memory bound).
    pub capacity: usize,
    /// At most this many events per transaction.
    pub batch: usize,
    /// Retention, applied about once a minute.
    pub retention: Retention,
}

/// Where committed batches are also sent (OTLP), if anywhere.
pub type Export = Option<super::otlp::Exporter>;

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            capacity: 65_536,
            batch: 4_096,
            retention: Retention::default(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    tx: SyncSender<Event>,
    trust_domain: String,
    dropped: AtomicU64,
    written: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    exported: Option<Arc<super::otlp::ExportStats>>,
}

/// Cheap to clone; a disabled sink ([`AuditSink::disabled`]) ignores everything.
#[derive(Debug, Clone, Default)]
pub struct AuditSink {
    inner: Option<Arc<Inner>>,
}

/// Counters of a sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Events dropped because the buffer was full.
    pub dropped: u64,
    /// Events committed to the store.
    pub written: u64,
    /// Events lost to a store error.
    pub failed: u64,
}

impl AuditSink {
    /// A sink that records nothing (tests, or audit turned off).
    pub fn disabled() -> AuditSink {
        AuditSink { inner: None }
    }

    /// Open the store at `path` and start its writer thread.
    pub fn start(
        path: &Path,
        trust_domain: &str,
        cfg: SinkConfig,
    ) -> Result<AuditSink, AuditError> {
        Self::start_exporting(path, trust_domain, cfg, None)
    }

    /// Like [`AuditSink::start`], also handing each committed batch to `export`.
    pub fn start_exporting(
        path: &Path,
        trust_domain: &str,
        cfg: SinkConfig,
        export: Export,
    ) -> Result<AuditSink, AuditError> {
        let store = Store::open(path)?;
        let (tx, rx) = mpsc::sync_channel(cfg.capacity.max(1));
        let written = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let exported = export.as_ref().map(super::otlp::Exporter::stats_handle);
        let w = Writer {
            store,
            rx,
            cfg,
            written: written.clone(),
            failed: failed.clone(),
            export,
        };
        std::thread::Builder::new()
            .name("warden-audit".into())
            .spawn(move || w.run())
            .map_err(AuditError::Thread)?;
        Ok(AuditSink {
            inner: Some(Arc::new(Inner {
                tx,
                trust_domain: trust_domain.to_string(),
                dropped: AtomicU64::new(0),
                written,
                failed,
                exported,
            })),
        })
    }

    /// Record `what`, now. Never blocks.
    pub fn emit(&self, what: What) {
        if let Some(i) = &self.inner {
            self.send(Event::at(now_ms(), &i.trust_domain, what));
        }
    }

    /// Record an event with its own time (decisions carry the sidecar's).
    pub fn emit_at(&self, time_ms: i64, what: What) {
        if let Some(i) = &self.inner {
            self.send(Event::at(time_ms, &i.trust_domain, what));
        }
    }

    fn send(&self, e: Event) {
        let Some(i) = &self.inner else { return };
        match i.tx.try_send(e) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                i.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether events are recorded at all.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The counters in the OpenMetrics text format (for the admin `/metrics`).
    pub fn render_metrics(&self) -> String {
        let Some(i) = &self.inner else {
            return String::new();
        };
        let s = self.stats();
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}_total {v}\n"
            ));
        };
        counter(
            "warden_audit_records_written",
            "Audit records committed to the store.",
            s.written,
        );
        counter(
            "warden_audit_records_dropped",
            "Audit events dropped because the queue was full.",
            s.dropped,
        );
        counter(
            "warden_audit_records_failed",
            "Audit events lost to a store error.",
            s.failed,
        );
        if let Some(x) = &i.exported {
            counter(
                "warden_audit_records_exported",
                "Audit records accepted by the OTLP collector.",
                x.exported.load(Ordering::Relaxed),
            );
            counter(
                "warden_audit_export_dropped",
                "Audit records not exported (queue full or collector failing).",
                x.dropped.load(Ordering::Relaxed),
            );
        }
        out
    }

    /// Counters so far.
    pub fn stats(&self) -> SinkStats {
        self.inner
            .as_ref()
            .map_or(SinkStats::default(), |i| SinkStats {
                dropped: i.dropped.load(Ordering::Relaxed),
                written: i.written.load(Ordering::Relaxed),
                failed: i.failed.load(Ordering::Relaxed),
            })
    }
}

struct Writer {
    store: Store,
    rx: Receiver<Event>,
    cfg: SinkConfig,
    written: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    export: Export,
}

const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl Writer {
    fn run(mut self) {
        let mut last_prune = Instant::now() - PRUNE_EVERY;
        let mut batch = Vec::with_capacity(self.cfg.batch);
        loop {
            if last_prune.elapsed() >= PRUNE_EVERY {
                if let Err(e) = self.store.prune(self.cfg.retention, now_ms()) {
                    tracing::warn!(error = %e, "audit retention failed");
                }
                last_prune = Instant::now();
            }
            match self.rx.recv_timeout(PRUNE_EVERY) {
                Ok(e) => batch.push(e),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < self.cfg.batch {
                match self.rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            let n = batch.len() as u64;
            match self.store.append(&batch) {
                Ok(links) => {
                    if let Some(x) = &self.export {
                        let out = links
                            .into_iter()
                            .zip(batch.iter().cloned())
                            .map(|((seq, hash), event)| super::otlp::Exported { seq, hash, event })
                            .collect();
                        x.offer(out);
                    }
                    self.written.fetch_add(n, Ordering::Relaxed)
                }
                Err(e) => {
                    tracing::error!(error = %e, records = n, "audit records could not be stored");
                    self.failed.fetch_add(n, Ordering::Relaxed)
                }
            };
            batch.clear();
        }
    }
}
