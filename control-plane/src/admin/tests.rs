//! The admin endpoint on 127.0.0.1:0, queried over a real socket.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::xds::cache::Cache;
use crate::xds::metrics::Metrics;
use crate::xds::snapshot::tests::sample;
use crate::xds::status::{Rejection, StatusRegistry};

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf[9..12].parse().unwrap();
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn admin_reports_readiness_metrics_and_nacks_in_the_config_dump() {
    let xds = XdsHandles {
        cache: Arc::new(Cache::new()),
        metrics: Arc::new(Metrics::default()),
        status: Arc::new(StatusRegistry::default()),
        audit: Default::default(),
    };
    let node = NodeId::new("backend-sidecar");
    xds.cache.set(&node, sample(&[("a", "1")], 1));
    xds.status.sent(&node, ResourceType::Listener, "v2", "7");
    xds.status.nacked(
        &node,
        ResourceType::Listener,
        Rejection {
            rejected_version: "v2".into(),
            nonce: "7".into(),
            error_detail: "cannot bind".into(),
            at_unix: 1,
        },
    );
    xds.metrics.nack(ResourceType::Listener);
    let state = AdminState {
        xds,
        ready: Arc::new(AtomicBool::new(false)),
        config: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, state.clone()));

    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/readyz").await.0, 503);
    state.ready.store(true, Ordering::Relaxed);
    assert_eq!(get(addr, "/readyz").await.0, 200);
    // A signing CA that expired makes the control plane unready, saying why.
    state.xds.metrics.set_ca_expired(true);
    let (status, why) = get(addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(why.contains("expired"), "{why}");
    state.xds.metrics.set_ca_expired(false);
    assert_eq!(get(addr, "/readyz").await.0, 200);
    let (_, metrics) = get(addr, "/metrics").await;
    assert!(
        metrics.contains("warden_xds_nacks_total{type=\"lds\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("warden_xds_rejected_seconds{node=\"backend-sidecar\",type=\"lds\"}"),
        "{metrics}"
    );
    let (_, dump) = get(addr, "/config_dump").await;
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let lds = &dump["nodes"]["backend-sidecar"]["types"]["lds"];
    assert_eq!(lds["last_nack"]["error_detail"], "cannot bind");
    assert_eq!(lds["rejected"], true);
    assert_eq!(
        lds["rejected_since_unix"], 1,
        "stuck in NACK since the first NACK"
    );
    assert_eq!(lds["resources"][0], "l");
}
