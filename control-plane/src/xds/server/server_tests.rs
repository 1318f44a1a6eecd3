//! The ADS server on 127.0.0.1:0 driven by a real tonic client.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use xds_api::pb::envoy::config::core::v3::Node;
use xds_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_api::pb::google::rpc::Status as RpcStatus;

use super::*;
use crate::xds::snapshot::tests::sample;
use crate::xds::types::{NodeId, ResourceType};

const SDS: ResourceType = ResourceType::Secret;

async fn start() -> (String, Shared) {
    start_with_age(None).await
}

async fn start_with_age(max_stream_age: Option<Duration>) -> (String, Shared) {
    let shared = Shared {
        cache: Arc::new(Cache::new()),
        metrics: Arc::new(Metrics::default()),
        status: Arc::new(StatusRegistry::default()),
        authorizer: Arc::new(AllowAnyCaller),
        max_stream_age,
    };
    shared
        .cache
        .set(&NodeId::new("n1"), sample(&[("a", "1"), ("b", "1")], 1));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, shared.clone()));
    (format!("http://{addr}"), shared)
}

fn node(id: &str) -> Option<Node> {
    Some(Node {
        id: id.into(),
        ..Default::default()
    })
}

fn sotw(
    id: &str,
    names: &[&str],
    version: &str,
    nonce: &str,
    nack: Option<&str>,
) -> DiscoveryRequest {
    DiscoveryRequest {
        node: node(id),
        version_info: version.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        type_url: SDS.type_url().into(),
        response_nonce: nonce.into(),
        error_detail: nack.map(|m| RpcStatus {
            code: 3,
            message: m.into(),
            details: vec![],
        }),
        ..Default::default()
    }
}

async fn client(url: String) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    AggregatedDiscoveryServiceClient::new(channel)
}

#[allow(clippy::result_large_err)]
async fn next<T>(s: &mut tonic::Streaming<T>) -> Result<T, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(5), s.message())
        .await
        .expect("response within 5 s")
        .and_then(|m| m.ok_or_else(|| tonic::Status::aborted("stream ended")))
}

async fn silent<T: std::fmt::Debug>(s: &mut tonic::Streaming<T>) {
    let r = tokio::time::timeout(Duration::from_millis(300), s.message()).await;
    assert!(r.is_err(), "expected no message, got {r:?}");
}

#[tokio::test]
async fn unknown_node_is_refused_with_permission_denied() {
    let (url, shared) = start().await;
    let mut client = client(url).await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(sotw("intruder", &["a"], "", "", None))
        .await
        .unwrap();
    let mut resp = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let err = next(&mut resp).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("intruder"), "{}", err.message());
    assert!(shared
        .metrics
        .render()
        .contains("warden_xds_streams_refused_total 1"));
}

#[tokio::test]
async fn sotw_serves_requested_secrets_ignores_acks_and_pushes_rotations() {
    let (url, shared) = start().await;
    let mut client = client(url).await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(sotw("n1", &["a"], "", "", None)).await.unwrap();
    let mut resp = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut resp).await.unwrap();
    assert_eq!(first.resources.len(), 1);
    tx.send(sotw("", &["a"], &first.version_info, &first.nonce, None))
        .await
        .unwrap();
    silent(&mut resp).await;
    shared
        .cache
        .set(&NodeId::new("n1"), sample(&[("a", "2"), ("b", "1")], 1));
    let pushed = next(&mut resp).await.unwrap();
    assert_ne!(pushed.version_info, first.version_info);
    assert_eq!(pushed.type_url, SDS.type_url());
    tx.send(sotw("", &["a"], &pushed.version_info, &pushed.nonce, None))
        .await
        .unwrap();
    silent(&mut resp).await;
    let dump = shared.status.dump();
    assert_eq!(
        dump["n1"].types["sds"].version_acked.as_deref(),
        Some(pushed.version_info.as_str())
    );
    assert_eq!(shared.metrics.acks(SDS), 2);
}

#[tokio::test]
async fn sotw_nack_is_recorded_with_its_error_detail() {
    let (url, shared) = start().await;
    let mut client = client(url).await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(sotw("n1", &["a"], "", "", None)).await.unwrap();
    let mut resp = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut resp).await.unwrap();
    tx.send(sotw(
        "",
        &["a"],
        "",
        &first.nonce,
        Some("Invalid path: /nope"),
    ))
    .await
    .unwrap();
    silent(&mut resp).await;
    let dump = shared.status.dump();
    let nack = dump["n1"].types["sds"].last_nack.clone().unwrap();
    assert_eq!(nack.error_detail, "Invalid path: /nope");
    assert_eq!(nack.rejected_version, first.version_info);
    assert_eq!(shared.metrics.nacks(SDS), 1);
}

#[tokio::test]
async fn delta_stream_sends_changes_only_and_removed_names() {
    let (url, shared) = start().await;
    let mut client = client(url).await;
    let (tx, rx) = mpsc::channel(4);
    let req = |sub: &[&str], nonce: &str| DeltaDiscoveryRequest {
        node: node("n1"),
        type_url: SDS.type_url().into(),
        resource_names_subscribe: sub.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    tx.send(req(&["a", "b"], "")).await.unwrap();
    let mut resp = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut resp).await.unwrap();
    assert_eq!(first.resources.len(), 2);
    tx.send(req(&[], &first.nonce)).await.unwrap();
    silent(&mut resp).await;
    shared
        .cache
        .set(&NodeId::new("n1"), sample(&[("a", "2")], 1));
    let pushed = next(&mut resp).await.unwrap();
    let names: Vec<_> = pushed.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["a"]);
    assert_eq!(pushed.removed_resources, vec!["b".to_string()]);
}

#[tokio::test]
async fn removing_a_node_ends_its_stream() {
    let (url, shared) = start().await;
    let mut client = client(url).await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(sotw("n1", &["a"], "", "", None)).await.unwrap();
    let mut resp = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    next(&mut resp).await.unwrap();
    shared.cache.remove(&NodeId::new("n1"));
    let err = next(&mut resp).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn streams_older_than_the_age_limit_are_ended_so_clients_re_attest() {
    let (url, shared) = start_with_age(Some(Duration::from_millis(300))).await;
    let mut client = client(url).await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(sotw("n1", &["a"], "", "", None)).await.unwrap();
    let mut resp = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    next(&mut resp).await.unwrap();
    let started = std::time::Instant::now();
    let err = next(&mut resp).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(err.message().contains("age limit"), "{}", err.message());
    assert!(started.elapsed() < Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(shared.metrics.connected(), 0);
}
