//! The request sequences of `sequence_tests.rs`, over a real ADS stream (SotW and
//! delta) to the server on 127.0.0.1:0: the same responses, in the same order, and
//! silence where the state machine sends nothing.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use xds_api::pb::envoy::config::core::v3::Node;
use xds_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use xds_api::pb::google::rpc::Status as RpcStatus;

use super::sequence_tests::{cases, node, Step};
use super::*;
use crate::xds::types::{NodeId, ResourceType};

async fn server() -> (
    AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    Shared,
) {
    let shared = Shared {
        cache: Arc::new(Cache::new()),
        metrics: Arc::new(Metrics::default()),
        status: Arc::new(StatusRegistry::default()),
        authorizer: Arc::new(AllowAnyCaller),
        max_stream_age: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, shared.clone()));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (AggregatedDiscoveryServiceClient::new(channel), shared)
}

fn status(nack: Option<&str>) -> Option<RpcStatus> {
    nack.map(|m| RpcStatus {
        code: 3,
        message: m.into(),
        details: vec![],
    })
}

fn first_node(first: &mut bool) -> Option<Node> {
    std::mem::replace(first, false).then(|| Node {
        id: "n1".into(),
        ..Default::default()
    })
}

/// Waits for `n` messages, then makes sure no further one comes within 200 ms.
async fn take<T: std::fmt::Debug>(s: &mut tonic::Streaming<T>, n: usize) -> Vec<T> {
    let mut out = Vec::new();
    for _ in 0..n {
        let m = tokio::time::timeout(Duration::from_secs(5), s.message())
            .await
            .expect("a response within 5 s")
            .expect("stream open")
            .expect("a message");
        out.push(m);
    }
    let extra = tokio::time::timeout(Duration::from_millis(200), s.message()).await;
    assert!(extra.is_err(), "unexpected message: {extra:?}");
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn want(w: &[(ResourceType, &'static [&'static str])]) -> Vec<(ResourceType, Vec<String>)> {
    w.iter()
        .map(|(t, n)| (*t, sorted(n.iter().map(|s| s.to_string()).collect())))
        .collect()
}

fn listener_or_filter_or_secret_name(
    t: ResourceType,
    a: &xds_api::pb::google::protobuf::Any,
) -> String {
    use prost::Message;
    use xds_api::pb::envoy::config::core::v3::TypedExtensionConfig;
    use xds_api::pb::envoy::config::listener::v3::Listener;
    use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
    let v = a.value.as_slice();
    match t {
        ResourceType::Listener => Listener::decode(v).unwrap().name,
        ResourceType::ExtensionConfig => TypedExtensionConfig::decode(v).unwrap().name,
        ResourceType::Secret => Secret::decode(v).unwrap().name,
        ResourceType::Cluster => String::new(),
    }
}

#[tokio::test]
async fn sotw_sequences_over_a_real_stream() {
    for case in cases() {
        let (mut client, shared) = server().await;
        let n1 = NodeId::new("n1");
        shared.cache.set(&n1, node(case.start.0, case.start.1));
        let (tx, rx) = mpsc::channel(16);
        let mut rx = Some(rx);
        let mut first = true;
        let mut stream = None;
        for (i, e) in case.steps.iter().enumerate() {
            match &e.step {
                Step::Req(t, names, nonce, nack) => {
                    let req = DiscoveryRequest {
                        node: first_node(&mut first),
                        type_url: t.type_url().into(),
                        resource_names: names.iter().map(|s| s.to_string()).collect(),
                        response_nonce: nonce.to_string(),
                        error_detail: status(*nack),
                        ..Default::default()
                    };
                    tx.send(req).await.unwrap();
                }
                Step::Snap(p, l) => {
                    shared.cache.set(&n1, node(p, l));
                }
            }
            if let Some(rx) = rx.take() {
                let s = client
                    .stream_aggregated_resources(ReceiverStream::new(rx))
                    .await
                    .unwrap()
                    .into_inner();
                stream = Some(s);
            }
            let s = stream.as_mut().expect("the first step is a request");
            let got: Vec<_> = take(s, e.sotw.len())
                .await
                .iter()
                .map(|r| {
                    let t = ResourceType::from_type_url(&r.type_url).unwrap();
                    let names = r
                        .resources
                        .iter()
                        .map(|a| listener_or_filter_or_secret_name(t, a))
                        .collect();
                    (t, sorted(names))
                })
                .collect();
            assert_eq!(got, want(&e.sotw), "{} step {i}", case.name);
        }
    }
}

#[tokio::test]
async fn delta_sequences_over_a_real_stream() {
    for case in cases() {
        let (mut client, shared) = server().await;
        let n1 = NodeId::new("n1");
        shared.cache.set(&n1, node(case.start.0, case.start.1));
        let (tx, rx) = mpsc::channel(16);
        let mut rx = Some(rx);
        let mut first = true;
        let mut stream = None;
        let mut subscribed: std::collections::BTreeMap<ResourceType, Vec<String>> =
            Default::default();
        for (i, e) in case.steps.iter().enumerate() {
            match &e.step {
                Step::Req(t, names, nonce, nack) => {
                    let have = subscribed.entry(*t).or_default();
                    let new: Vec<String> = names
                        .iter()
                        .map(|s| s.to_string())
                        .filter(|n| !have.contains(n))
                        .collect();
                    have.extend(new.iter().cloned());
                    let req = DeltaDiscoveryRequest {
                        node: first_node(&mut first),
                        type_url: t.type_url().into(),
                        resource_names_subscribe: new,
                        response_nonce: nonce.to_string(),
                        error_detail: status(*nack),
                        ..Default::default()
                    };
                    tx.send(req).await.unwrap();
                }
                Step::Snap(p, l) => {
                    shared.cache.set(&n1, node(p, l));
                }
            }
            if let Some(rx) = rx.take() {
                let s = client
                    .delta_aggregated_resources(ReceiverStream::new(rx))
                    .await
                    .unwrap()
                    .into_inner();
                stream = Some(s);
            }
            let s = stream.as_mut().expect("the first step is a request");
            let got: Vec<_> = take(s, e.delta.len())
                .await
                .iter()
                .map(|r| {
                    let t = ResourceType::from_type_url(&r.type_url).unwrap();
                    let names = r.resources.iter().map(|x| x.name.clone()).collect();
                    (t, sorted(names))
                })
                .collect();
            assert_eq!(got, want(&e.delta), "{} step {i}", case.name);
        }
    }
}
