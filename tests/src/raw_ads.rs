//! A raw ADS client that misbehaves on purpose, for fault-injection scenarios: it
//! attests like a sidecar (TLS against the trust bundle, `authorization: Bearer <join
//! token>`) and then never ACKs anything, or NACKs everything. It runs its own runtime
//! on a thread; [`RawAds::received`] is what the server sent it. Dropping it closes the
//! stream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use xds_api::pb::envoy::config::core::v3::Node;
use xds_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use xds_api::pb::google::rpc::Status;

/// SDS type URL.
pub const SDS: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// CDS type URL.
pub const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// LDS type URL.
pub const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// ECDS type URL.
pub const ECDS: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// How the client misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Subscribes to SDS only and never sends another request.
    NeverAck,
    /// Subscribes to CDS, LDS, SDS and ECDS and NACKs every response.
    NackEverything,
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct RawAdsSpec {
    /// The ADS address.
    pub xds: SocketAddr,
    /// PEM of the trust bundle (`warden bundle`).
    pub roots_pem: String,
    /// The server's DNS name (`warden-control-plane.<trust domain>`).
    pub server_name: String,
    /// The join token.
    pub token: String,
    /// The node id to claim (must be the token's workload's).
    pub node: String,
    /// SDS names to subscribe to.
    pub secrets: Vec<String>,
    /// What to do with responses.
    pub behaviour: Behaviour,
}

/// One response as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Type URL.
    pub type_url: String,
    /// `version_info`.
    pub version: String,
    /// Nonce.
    pub nonce: String,
    /// Number of resources.
    pub resources: usize,
    /// When it arrived.
    pub at: Instant,
}

/// A running raw client.
#[derive(Debug)]
pub struct RawAds {
    received: Arc<Mutex<Vec<Received>>>,
    ended: Arc<Mutex<Option<String>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawAds {
    /// Connects and subscribes; returns once the stream is open (or fails).
    pub fn start(spec: RawAdsSpec) -> Result<Self> {
        let received = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(None));
        let (stop, stopped) = oneshot::channel();
        let (opened_tx, opened) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let (received, ended) = (received.clone(), ended.clone());
            move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let end = rt.block_on(run(spec, received, stopped, opened_tx));
                if let Err(e) = end {
                    *ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                }
            }
        });
        let opened = opened
            .recv_timeout(std::time::Duration::from_secs(20))
            .context("raw ADS client did not connect in 20 s")?;
        opened.map_err(|e| anyhow::anyhow!("raw ADS client: {e}"))?;
        Ok(Self {
            received,
            ended,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Every response so far.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Responses of one type so far.
    pub fn received_of(&self, type_url: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.type_url == type_url)
            .collect()
    }

    /// Why the stream ended, if it did.
    pub fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for RawAds {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn request(spec: &RawAdsSpec, type_url: &str, names: &[String], first: bool) -> DiscoveryRequest {
    DiscoveryRequest {
        node: first.then(|| Node {
            id: spec.node.clone(),
            ..Default::default()
        }),
        type_url: type_url.into(),
        resource_names: names.to_vec(),
        ..Default::default()
    }
}

#[allow(clippy::result_large_err)] // tonic's interceptor signature returns tonic::Status
async fn run(
    spec: RawAdsSpec,
    received: Arc<Mutex<Vec<Received>>>,
    mut stopped: oneshot::Receiver<()>,
    opened: std::sync::mpsc::Sender<Result<(), String>>,
) -> Result<()> {
    let connect = async {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&spec.roots_pem))
            .domain_name(spec.server_name.clone());
        let channel = Channel::from_shared(format!("https://{}", spec.xds))?
            .tls_config(tls)?
            .connect()
            .await?;
        let bearer: MetadataValue<_> = format!("Bearer {}", spec.token).parse()?;
        let client = AggregatedDiscoveryServiceClient::with_interceptor(
            channel,
            move |mut req: tonic::Request<()>| {
                req.metadata_mut().insert("authorization", bearer.clone());
                Ok(req)
            },
        );
        anyhow::Ok(client)
    };
    let mut client = match connect.await {
        Ok(c) => c,
        Err(e) => {
            let _ = opened.send(Err(e.to_string()));
            return Err(e);
        }
    };
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(16);
    tx.send(request(&spec, SDS, &spec.secrets, true)).await?;
    if spec.behaviour == Behaviour::NackEverything {
        tx.send(request(&spec, CDS, &[], false)).await?;
        tx.send(request(&spec, LDS, &[], false)).await?;
        tx.send(request(&spec, ECDS, &["warden-authz".to_owned()], false))
            .await?;
    }
    let mut stream = match client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
    {
        Ok(s) => s.into_inner(),
        Err(e) => {
            let _ = opened.send(Err(e.to_string()));
            return Err(e.into());
        }
    };
    let _ = opened.send(Ok(()));
    loop {
        let msg: DiscoveryResponse = tokio::select! {
            _ = &mut stopped => return Ok(()),
            m = stream.message() => match m? {
                Some(m) => m,
                None => anyhow::bail!("the server ended the stream"),
            },
        };
        received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Received {
                type_url: msg.type_url.clone(),
                version: msg.version_info.clone(),
                nonce: msg.nonce.clone(),
                resources: msg.resources.len(),
                at: Instant::now(),
            });
        if spec.behaviour == Behaviour::NackEverything {
            let names = if msg.type_url == SDS {
                spec.secrets.clone()
            } else if msg.type_url == ECDS {
                vec!["warden-authz".to_owned()]
            } else {
                Vec::new()
            };
            let mut nack = request(&spec, &msg.type_url, &names, false);
            nack.response_nonce = msg.nonce.clone();
            nack.error_detail = Some(Status {
                code: 3,
                message: "raw client rejects everything".into(),
                details: vec![],
            });
            tx.send(nack).await?;
        }
    }
}
