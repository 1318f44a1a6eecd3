//! Audit ingest: how many decision records per second the control plane takes from
//! sidecars' access-log entries into the SQLite store (entry → event → sink → batched
//! transactions), the memory bound of its queue, and what happens at twice the measured
//! rate (drops counted, no call blocks). Prints a markdown table. Bounded: a few seconds.
//!
//! Run with `cargo bench -p warden --bench audit_ingest` (or `./dev bench`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prost::Message;
use xds_api::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties, HttpResponseProperties,
};
use xds_api::pb::google::protobuf::{Any, BytesValue, UInt32Value};

use warden::audit::als_entry::{decision, Sender};
use warden::audit::{AuditSink, SinkConfig, What};

fn entry(i: u64) -> HttpAccessLogEntry {
    let record = format!(
        r#"{{"id":"d-{i}","decision":"{}","reason":"data.envoy.authz.allow is false","rule":"data.envoy.authz.allow","policy_version":"74f5effbe53b","mode":"enforce","eval_us":12}}"#,
        if i.is_multiple_of(10) {
            "deny"
        } else {
            "allow"
        }
    );
    let any = Any {
        type_url: "type.googleapis.com/google.protobuf.BytesValue".into(),
        value: BytesValue {
            value: record.into_bytes(),
        }
        .encode_to_vec(),
    };
    HttpAccessLogEntry {
        common_properties: Some(AccessLogCommon {
            filter_state_objects: HashMap::from([("wasm.warden_decision".to_string(), any)]),
            ..Default::default()
        }),
        request: Some(HttpRequestProperties {
            request_method: 1,
            path: format!("/api/items/{i}"),
            authority: "backend".into(),
            ..Default::default()
        }),
        response: Some(HttpResponseProperties {
            response_code: Some(UInt32Value { value: 200 }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn wait_idle(sink: &AuditSink, total: u64) -> Duration {
    let start = Instant::now();
    loop {
        let s = sink.stats();
        if s.written + s.dropped + s.failed >= total || start.elapsed() > Duration::from_secs(60) {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Per-emit latencies (µs): p50, p99, max.
fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

/// Offers `n` entries as fast as possible; returns (records/s stored, emit latencies).
fn flat_out(sink: &AuditSink, from: &Sender, n: u64) -> (f64, (f64, f64, f64)) {
    let before = sink.stats();
    let start = Instant::now();
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let e = entry(i);
        let t = Instant::now();
        if let Some((ms, d)) = decision(&e, from) {
            sink.emit_at(ms, What::Decision(d));
        }
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let total = before.written + before.dropped + before.failed + n;
    wait_idle(sink, total);
    let written = sink.stats().written - before.written;
    (
        written as f64 / start.elapsed().as_secs_f64(),
        percentiles(lat),
    )
}

/// Offers entries at `rate`/s for `secs`; returns (offered, stored, dropped, latencies).
fn paced(
    sink: &AuditSink,
    from: &Sender,
    rate: f64,
    secs: f64,
) -> (u64, u64, u64, (f64, f64, f64)) {
    let before = sink.stats();
    let start = Instant::now();
    let mut offered = 0u64;
    let mut lat = Vec::new();
    while start.elapsed().as_secs_f64() < secs {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while offered < due {
            let e = entry(offered);
            let t = Instant::now();
            if let Some((ms, d)) = decision(&e, from) {
                sink.emit_at(ms, What::Decision(d));
            }
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            offered += 1;
        }
        std::thread::yield_now();
    }
    wait_idle(
        sink,
        before.written + before.dropped + before.failed + offered,
    );
    let after = sink.stats();
    (
        offered,
        after.written - before.written,
        after.dropped - before.dropped,
        percentiles(lat),
    )
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = SinkConfig::default();
    let from = Sender {
        destination: "spiffe://example.org/ns/demo/sa/backend".into(),
        instance: "backend-sidecar".into(),
    };
    // Memory bound: a full queue of decision events (measured, not estimated).
    let rss0 = rss_kib();
    let held: Vec<_> = (0..cfg.capacity as u64)
        .filter_map(|i| decision(&entry(i), &from))
        .collect();
    let queue_kib = rss_kib().saturating_sub(rss0);
    drop(held);
    let sink = AuditSink::start(&dir.path().join("audit.db"), "example.org", cfg).expect("store");
    let rss1 = rss_kib();
    let (rate, (p50, p99, max)) = flat_out(&sink, &from, 200_000);
    let target = 2.0 * rate.max(50_000.0);
    let (offered, stored, dropped, (q50, q99, qmax)) = paced(&sink, &from, target, 3.0);
    let rss2 = rss_kib();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| ingest, access-log entries → SQLite (flat out, 200k, {cores} cores) | {rate:.0} records/s |");
    println!("| emit p50 / p99 / max (flat out) | {p50:.1} / {p99:.1} / {max:.0} µs |");
    println!(
        "| queue bound | {} records ≈ {} MiB (measured) |",
        cfg.capacity,
        queue_kib / 1024
    );
    println!(
        "| RSS growth of the sink over both runs | {} MiB |",
        rss2.saturating_sub(rss1) / 1024
    );
    println!("| at 2× ({target:.0}/s for 3 s): offered / stored / dropped | {offered} / {stored} / {dropped} |");
    println!("| emit p50 / p99 / max at 2× | {q50:.1} / {q99:.1} / {qmax:.0} µs |");
}
