//! Export of the same records as OpenTelemetry log records over OTLP/gRPC
//! (`opentelemetry.proto.collector.logs.v1.LogsService/Export`, the official definitions
//! from the `opentelemetry-proto` crate). Each control plane exports its own records.
//! The writer thread hands each committed batch over with `try_send`; a slow or dead
//! collector only drops batches (counted), never the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::chain::Hash;
use super::event::{Event, What};

/// One committed record.
#[derive(Debug, Clone)]
pub struct Exported {
    /// Sequence number in this control plane's chain.
    pub seq: i64,
    /// Its chain hash.
    pub hash: Hash,
    /// The event.
    pub event: Event,
}

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
    }
}

/// Severity numbers of the OTel log data model.
const INFO: i32 = 9;
const WARN: i32 = 13;

/// The OTLP request for `batch`: one resource (service `warden`, this trust domain and
/// `replica`), one scope (`warden.audit`), one log record per event; the body is the
/// record's canonical JSON, the attributes its kind, sequence, hash and decision fields.
pub fn request(batch: &[Exported], replica: &str) -> ExportLogsServiceRequest {
    let trust_domain = batch
        .first()
        .map(|e| e.event.trust_domain.clone())
        .unwrap_or_default();
    let records = batch.iter().map(record).collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "warden".into()),
                    kv("service.instance.id", replica.to_string()),
                    kv("warden.trust_domain", trust_domain),
                ],
                dropped_attributes_count: 0,
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "warden.audit".into(),
                    version: super::event::SCHEMA_VERSION.to_string(),
                    ..Default::default()
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn record(e: &Exported) -> LogRecord {
    let nanos = u64::try_from(e.event.time_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let mut attributes = vec![
        kv(
            "event.name",
            format!("warden.audit.{}", e.event.what.kind()),
        ),
        kv("warden.audit.seq", e.seq.to_string()),
        kv("warden.audit.hash", hex::encode(e.hash)),
    ];
    let mut severity = INFO;
    if let What::Decision(d) = &e.event.what {
        attributes.extend([
            kv("warden.decision_id", d.decision_id.clone()),
            kv("warden.decision", d.decision.clone()),
            kv("warden.source", d.source.clone()),
            kv("warden.destination", d.destination.clone()),
            kv("url.path", d.path.clone()),
        ]);
        if d.decision == "deny" {
            severity = WARN;
        }
    }
    if matches!(
        e.event.what,
        What::AttestRefused { .. } | What::ReloadRefused { .. } | What::SvidFailed { .. }
    ) {
        severity = WARN;
    }
    LogRecord {
        time_unix_nano: nanos,
        observed_time_unix_nano: nanos,
        severity_number: severity,
        severity_text: if severity == WARN { "WARN" } else { "INFO" }.into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(
                String::from_utf8_lossy(&e.event.canonical()).into_owned(),
            )),
        }),
        attributes,
        ..Default::default()
    }
}

/// Counters of the exporter.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Records the collector accepted.
    pub exported: AtomicU64,
    /// Records dropped (queue full, collector unreachable or refusing).
    pub dropped: AtomicU64,
}

/// Hands batches to the export thread.
#[derive(Debug, Clone)]
pub struct Exporter {
    tx: SyncSender<Vec<Exported>>,
    stats: Arc<ExportStats>,
}

/// Batches queued before drops start.
const QUEUE: usize = 64;
/// One export call's deadline.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

impl Exporter {
    /// Starts the export thread for `endpoint` (`http://host:port`).
    pub fn start(endpoint: String, replica: String) -> std::io::Result<Exporter> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let stats = Arc::new(ExportStats::default());
        let s = stats.clone();
        std::thread::Builder::new()
            .name("warden-otlp".into())
            .spawn(move || run(endpoint, replica, rx, s))?;
        Ok(Exporter { tx, stats })
    }

    /// Queue a committed batch; never blocks.
    pub fn offer(&self, batch: Vec<Exported>) {
        let n = batch.len() as u64;
        if self.tx.try_send(batch).is_err() {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The counters.
    pub fn stats(&self) -> &ExportStats {
        &self.stats
    }

    /// A handle on the counters.
    pub fn stats_handle(&self) -> Arc<ExportStats> {
        self.stats.clone()
    }
}

fn run(endpoint: String, replica: String, rx: Receiver<Vec<Exported>>, stats: Arc<ExportStats>) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        tracing::error!("audit export: no runtime; records are not exported");
        return;
    };
    let mut client: Option<LogsServiceClient<tonic::transport::Channel>> = None;
    while let Ok(batch) = rx.recv() {
        let n = batch.len() as u64;
        let req = request(&batch, &replica);
        let result = rt.block_on(async {
            if client.is_none() {
                let ep = tonic::transport::Endpoint::from_shared(endpoint.clone())
                    .map_err(|e| e.to_string())?
                    .connect_timeout(CALL_TIMEOUT)
                    .timeout(CALL_TIMEOUT);
                client = Some(LogsServiceClient::new(
                    ep.connect().await.map_err(|e| e.to_string())?,
                ));
            }
            let c = client.as_mut().ok_or("no client")?;
            c.export(req).await.map_err(|s| s.to_string())?;
            Ok::<(), String>(())
        });
        match result {
            Ok(()) => stats.exported.fetch_add(n, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(records = n, %endpoint, "audit export failed: {e}");
                client = None;
                stats.dropped.fetch_add(n, Ordering::Relaxed)
            }
        };
    }
}

#[cfg(test)]
#[path = "otlp_tests.rs"]
mod tests;
