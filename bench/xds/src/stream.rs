//! One simulated Envoy on one state-of-the-world ADS stream: subscribes like Envoy (CDS
//! wildcard; LDS wildcard once clusters arrive; SDS for exactly the secret names the
//! clusters and listeners reference; ECDS for the discovered HTTP filters), ACKs every
//! response, and reports what it did as [`Event`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::config::core::v3::{Node, TypedExtensionConfig};
use xds_api::pb::envoy::config::listener::v3::Listener;
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use xds_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use xds_api::pb::google::protobuf::Any;

use crate::tls_names::Refs;

/// Type URLs of the four types Warden serves.
pub(crate) const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Listener.
pub(crate) const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Secret.
pub(crate) const SDS: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// Extension config (the filter's policy).
pub(crate) const ECDS: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// What a stream reports.
#[derive(Debug)]
pub(crate) enum Event {
    /// Every subscribed type has been received in full and ACKed once.
    Synced,
    /// An ACK was sent.
    Acked { stream: usize, at: Instant },
    /// An ACK was sent for an SDS response that replaced secrets the stream already had:
    /// its own SVID (`svid`) and/or a trust bundle (`bundle`).
    SecretsChanged {
        stream: usize,
        svid: bool,
        bundle: bool,
        at: Instant,
    },
    /// The stream failed or ended.
    Ended { error: String },
}

#[derive(Debug, Default)]
struct TypeState {
    names: BTreeSet<String>,
    have: BTreeSet<String>,
    version: String,
    nonce: String,
    acked: bool,
}

impl TypeState {
    fn complete(&self) -> bool {
        self.acked && self.names.is_subset(&self.have)
    }
}

#[derive(Debug, Default)]
struct State {
    cds: TypeState,
    lds: TypeState,
    sds: TypeState,
    ecds: TypeState,
    cds_refs: Refs,
    lds_refs: Refs,
    /// Encoded bytes of every secret held, by name.
    secrets: BTreeMap<String, Vec<u8>>,
}

impl State {
    fn of(&mut self, type_url: &str) -> Option<&mut TypeState> {
        match type_url {
            CDS => Some(&mut self.cds),
            LDS => Some(&mut self.lds),
            SDS => Some(&mut self.sds),
            ECDS => Some(&mut self.ecds),
            _ => None,
        }
    }

    fn synced(&self) -> bool {
        self.cds.acked
            && self.lds.acked
            && (self.sds.names.is_empty() || self.sds.complete())
            && (self.ecds.names.is_empty() || self.ecds.complete())
    }
}

/// Runs one stream until the server closes it or the task is dropped.
pub(crate) async fn run(
    stream: usize,
    channel: Channel,
    (node_id, cluster): (String, String),
    events: mpsc::UnboundedSender<Event>,
) {
    let error = match drive(stream, channel, (&node_id, &cluster), &events).await {
        Ok(()) => "closed by server".to_owned(),
        Err(err) => format!("{err:#}"),
    };
    let _ = events.send(Event::Ended { error });
}

async fn drive(
    stream: usize,
    channel: Channel,
    (node_id, cluster): (&str, &str),
    events: &mpsc::UnboundedSender<Event>,
) -> Result<()> {
    let node = Node {
        id: node_id.to_owned(),
        cluster: cluster.to_owned(),
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(16);
    let request = |type_url: &str, st: &TypeState| DiscoveryRequest {
        node: Some(node.clone()),
        type_url: type_url.to_owned(),
        resource_names: st.names.iter().cloned().collect(),
        version_info: st.version.clone(),
        response_nonce: st.nonce.clone(),
        ..Default::default()
    };
    let mut state = State::default();
    tx.send(request(CDS, &state.cds)).await?;
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let mut responses = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .context("opening the ADS stream")?
        .into_inner();
    let (mut synced, mut lds_requested) = (false, false);
    while let Some(response) = responses.message().await? {
        let type_url = response.type_url.clone();
        let have = absorb(&mut state, &response)?;
        let changed = if type_url == SDS {
            secret_changes(&mut state.secrets, &response)?
        } else {
            (false, false)
        };
        let Some(st) = state.of(&type_url) else {
            continue;
        };
        st.have = have;
        st.version = response.version_info;
        st.nonce = response.nonce;
        st.acked = true;
        tx.send(request(&type_url, st)).await?;
        let at = Instant::now();
        let _ = events.send(Event::Acked { stream, at });
        if changed.0 || changed.1 {
            let _ = events.send(Event::SecretsChanged {
                stream,
                svid: changed.0,
                bundle: changed.1,
                at,
            });
        }

        if type_url == CDS && !lds_requested {
            // Envoy asks for listeners once its clusters are in.
            lds_requested = true;
            tx.send(request(LDS, &state.lds)).await?;
        }
        let secrets: BTreeSet<String> = state
            .cds_refs
            .secrets
            .union(&state.lds_refs.secrets)
            .cloned()
            .collect();
        if secrets != state.sds.names {
            state.sds.names = secrets;
            tx.send(request(SDS, &state.sds)).await?;
        }
        let extensions = state.lds_refs.extensions.clone();
        if extensions != state.ecds.names {
            state.ecds.names = extensions;
            tx.send(request(ECDS, &state.ecds)).await?;
        }
        if !synced && state.synced() {
            synced = true;
            let _ = events.send(Event::Synced);
        }
    }
    Ok(())
}

/// Records the secrets of an SDS response; returns whether a certificate secret (SVID)
/// and whether a validation secret (bundle) replaced one held before.
fn secret_changes(
    held: &mut BTreeMap<String, Vec<u8>>,
    response: &DiscoveryResponse,
) -> Result<(bool, bool)> {
    let (mut svid, mut bundle) = (false, false);
    for any in &response.resources {
        let secret: Secret = any.to_msg()?;
        let is_svid = matches!(secret.r#type, Some(secret::Type::TlsCertificate(_)));
        if let Some(old) = held.insert(secret.name, any.value.clone()) {
            if old != any.value {
                if is_svid {
                    svid = true;
                } else {
                    bundle = true;
                }
            }
        }
    }
    Ok((svid, bundle))
}

/// Updates the references found in clusters and listeners; returns the resource names
/// the response carried.
fn absorb(state: &mut State, response: &DiscoveryResponse) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let mut refs = Refs::default();
    for any in &response.resources {
        names.insert(resource_name(&response.type_url, any, &mut refs)?);
    }
    match response.type_url.as_str() {
        CDS => state.cds_refs = refs,
        LDS => state.lds_refs = refs,
        _ => {}
    }
    Ok(names)
}

fn resource_name(type_url: &str, any: &Any, refs: &mut Refs) -> Result<String> {
    Ok(match type_url {
        CDS => {
            let cluster: Cluster = any.to_msg()?;
            refs.add_cluster(&cluster);
            cluster.name
        }
        LDS => {
            let listener: Listener = any.to_msg()?;
            refs.add_listener(&listener);
            listener.name
        }
        SDS => any.to_msg::<Secret>()?.name,
        ECDS => any.to_msg::<TypedExtensionConfig>()?.name,
        _ => String::new(),
    })
}
