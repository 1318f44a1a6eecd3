//! Export against an OTLP/gRPC receiver built from the same official definitions (the
//! `opentelemetry-proto` crate's generated `LogsService` server) on 127.0.0.1.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};

use super::*;
use crate::audit::event::{Event, What};

#[derive(Debug, Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.got.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

fn batch() -> Vec<Exported> {
    vec![
        Exported {
            seq: 1,
            hash: [7; 32],
            event: Event::at(
                1_700_000_000_123,
                "example.org",
                What::TokenRevoked { id: "abc".into() },
            ),
        },
        Exported {
            seq: 2,
            hash: [8; 32],
            event: Event::at(
                1_700_000_000_456,
                "example.org",
                What::ReloadRefused {
                    diagnostics: vec!["bad".into()],
                },
            ),
        },
    ]
}

#[test]
fn records_reach_an_official_otlp_receiver_as_log_records_with_body_time_and_attributes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let receiver = Receiver::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = LogsServiceServer::new(receiver.clone());
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let exporter = Exporter::start(format!("http://{addr}"), "replica-a".into()).unwrap();
    exporter.offer(batch());
    let deadline = Instant::now() + Duration::from_secs(10);
    while exporter.stats().exported.load(Ordering::Relaxed) < 2 {
        assert!(
            Instant::now() < deadline,
            "not exported: {:?}",
            exporter.stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = receiver.got.lock().unwrap();
    let rl = &got[0].resource_logs[0];
    let attrs = format!("{:?}", rl.resource);
    assert!(
        attrs.contains("replica-a") && attrs.contains("example.org"),
        "{attrs}"
    );
    let records = &rl.scope_logs[0].log_records;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].time_unix_nano, 1_700_000_000_123_000_000);
    let body = format!("{:?}", records[1].body);
    assert!(body.contains("reload_refused"), "{body}");
    assert_eq!(records[1].severity_text, "WARN");
    let a = format!("{:?}", records[0].attributes);
    assert!(
        a.contains("warden.audit.token_revoked") && a.contains(&hex::encode([7u8; 32])),
        "{a}"
    );
}

#[test]
fn an_unreachable_collector_drops_and_counts_without_blocking() {
    // A port nobody listens on (bound, then closed).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let exporter = Exporter::start(format!("http://{addr}"), "r".into()).unwrap();
    let started = Instant::now();
    for _ in 0..200 {
        exporter.offer(batch());
    }
    assert!(started.elapsed() < Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(20);
    while exporter.stats().dropped.load(Ordering::Relaxed) < 400 {
        assert!(Instant::now() < deadline, "{:?}", exporter.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(exporter.stats().exported.load(Ordering::Relaxed), 0);
}
