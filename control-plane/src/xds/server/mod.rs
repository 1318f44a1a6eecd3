//! The ADS gRPC service: `StreamAggregatedResources` (SotW) and
//! `DeltaAggregatedResources` (delta). One task per stream `select!`s over the client's
//! requests and its node's snapshot updates (`watch`); the protocol logic lives in the
//! pure state machines [`sotw`] and [`delta`], this module only does the I/O and records
//! their [`Event`]s in metrics, logs and the status registry.

mod attesting;
mod auth;
mod delta;
mod event;
mod sotw;
mod stream;
pub mod tls;

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use xds_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use xds_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};

pub use attesting::AttestingAuthorizer;
pub use auth::{AllowAnyCaller, Caller, NodeAuthorizer};
pub use delta::DeltaState;
pub use event::Event;
pub use sotw::SotwState;

use super::cache::Cache;
use super::metrics::Metrics;
use super::status::StatusRegistry;

/// Shared state every stream task needs.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Snapshots per node.
    pub cache: Arc<Cache>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// ACK/NACK state per node for the config dump.
    pub status: Arc<StatusRegistry>,
    /// Who may stream which node.
    pub authorizer: Arc<dyn NodeAuthorizer>,
    /// Streams older than this are ended (UNAVAILABLE) so the client reconnects and
    /// presents its credential again; `None`: no limit.
    pub max_stream_age: Option<std::time::Duration>,
}

/// The ADS service.
#[derive(Debug, Clone)]
pub struct AdsServer {
    shared: Shared,
}

impl AdsServer {
    /// A service over `shared`.
    pub fn new(shared: Shared) -> Self {
        Self { shared }
    }

    /// The tonic service to mount on a `tonic::transport::Server`.
    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<Self> {
        AggregatedDiscoveryServiceServer::new(self)
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

/// The transport settings Warden uses everywhere (`warden serve`, tests, benchmarks): no
/// per-connection stream cap (a benchmark multiplexes thousands of node streams on few
/// connections), TCP_NODELAY, HTTP/2 keepalive to notice dead proxies.
fn transport() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(1 << 20))
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
}

/// Serves ADS as **plaintext** gRPC on `listener` until the future is dropped or the
/// listener fails. Only for local development (`warden serve --insecure-plaintext-xds`),
/// tests of the protocol, and benchmarks: a caller's token crosses the wire in clear.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Shared,
) -> Result<(), tonic::transport::Error> {
    transport()
        .add_service(AdsServer::new(shared).into_service())
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
}

/// Serves ADS over TLS on `listener` with `config` (see [`tls::server_config`]); a
/// client that does not complete a TLS handshake never reaches gRPC.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    shared: Shared,
) -> Result<(), tonic::transport::Error> {
    transport()
        .add_service(AdsServer::new(shared).into_service())
        .serve_with_incoming(tls::accept_tls(listener, config))
        .await
}

type BoxStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

fn caller_of<T>(req: &Request<T>) -> Caller {
    Caller {
        remote_addr: req.remote_addr(),
        metadata: req.metadata().clone(),
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = BoxStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = BoxStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let caller = caller_of(&request);
        let (tx, rx) = mpsc::channel(16);
        let shared = self.shared.clone();
        tokio::spawn(stream::run::<SotwState>(
            shared,
            caller,
            request.into_inner(),
            tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let caller = caller_of(&request);
        let (tx, rx) = mpsc::channel(16);
        let shared = self.shared.clone();
        tokio::spawn(stream::run::<DeltaState>(
            shared,
            caller,
            request.into_inner(),
            tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "sequence_tests.rs"]
pub(crate) mod sequence_tests;

#[cfg(test)]
#[path = "sequence_stream_tests.rs"]
mod sequence_stream_tests;

#[cfg(test)]
#[path = "secure_tests.rs"]
mod secure_tests;
