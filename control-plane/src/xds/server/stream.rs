//! The per-stream task shared by SotW and delta: identify and authorize the node from
//! the first request, then `select!` over requests and snapshot updates, feeding the
//! protocol state machine and recording what it reports.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use xds_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};

use super::{Caller, DeltaState, Event, Shared, SotwState};
use xds_api::pb::envoy::config::core::v3::Node;
use xds_api::pb::google::protobuf::value::Kind;

use crate::xds::cache::SnapshotWatch;
use crate::xds::node::{split_key, NodeClaim, INSTANCE_IP_FIELD};
use crate::xds::snapshot::Snapshot;
use crate::xds::status::{unix_seconds, Rejection};
use crate::xds::types::NodeId;

/// One xDS protocol variant as seen by the stream task.
pub(super) trait Protocol: Default + Send + 'static {
    type Req: Send + 'static;
    type Resp: Send + 'static;
    /// `sotw` or `delta`.
    const NAME: &'static str;
    fn node_id(req: &Self::Req) -> Option<&str>;
    fn claim(req: &Self::Req) -> NodeClaim;
    fn on_request(&mut self, req: &Self::Req, snap: &Snapshot) -> (Vec<Event>, Vec<Self::Resp>);
    fn on_snapshot(&mut self, snap: &Snapshot) -> (Vec<Event>, Vec<Self::Resp>);
}

impl Protocol for SotwState {
    type Req = DiscoveryRequest;
    type Resp = DiscoveryResponse;
    const NAME: &'static str = "sotw";
    fn node_id(req: &DiscoveryRequest) -> Option<&str> {
        req.node.as_ref().map(|n| n.id.as_str())
    }
    fn claim(req: &DiscoveryRequest) -> NodeClaim {
        claim_of(req.node.as_ref())
    }
    fn on_request(
        &mut self,
        req: &DiscoveryRequest,
        snap: &Snapshot,
    ) -> (Vec<Event>, Vec<DiscoveryResponse>) {
        SotwState::on_request(self, req, snap)
    }
    fn on_snapshot(&mut self, snap: &Snapshot) -> (Vec<Event>, Vec<DiscoveryResponse>) {
        SotwState::on_snapshot(self, snap)
    }
}

impl Protocol for DeltaState {
    type Req = DeltaDiscoveryRequest;
    type Resp = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta";
    fn node_id(req: &DeltaDiscoveryRequest) -> Option<&str> {
        req.node.as_ref().map(|n| n.id.as_str())
    }
    fn claim(req: &DeltaDiscoveryRequest) -> NodeClaim {
        claim_of(req.node.as_ref())
    }
    fn on_request(
        &mut self,
        req: &DeltaDiscoveryRequest,
        snap: &Snapshot,
    ) -> (Vec<Event>, Vec<DeltaDiscoveryResponse>) {
        DeltaState::on_request(self, req, snap)
    }
    fn on_snapshot(&mut self, snap: &Snapshot) -> (Vec<Event>, Vec<DeltaDiscoveryResponse>) {
        DeltaState::on_snapshot(self, snap)
    }
}

type Tx<R> = mpsc::Sender<Result<R, Status>>;

/// Runs one stream to completion.
pub(super) async fn run<P: Protocol>(
    shared: Shared,
    caller: Caller,
    mut requests: Streaming<P::Req>,
    tx: Tx<P::Resp>,
) {
    let first = match requests.message().await {
        Ok(Some(r)) => r,
        Ok(None) | Err(_) => return,
    };
    let (node, watch) = match admit::<P>(&shared, &caller, &first) {
        Ok(v) => v,
        Err(status) => {
            shared.metrics.stream_refused();
            tracing::warn!(remote = ?caller.remote_addr, "refused ADS stream: {}", status.message());
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    tracing::info!(%node, protocol = P::NAME, remote = ?caller.remote_addr, "ADS stream opened");
    shared.metrics.stream_opened();
    shared.status.connected(&node, P::NAME);
    let deadline = shared.max_stream_age.map(|age| {
        // Up to 10% early so a fleet started together does not reconnect together.
        let jitter = age.mul_f64(rand::random::<f64>() * 0.1);
        tokio::time::Instant::now() + (age - jitter)
    });
    let end = drive::<P>(&shared, &node, first, requests, watch, &tx, deadline).await;
    if let Err(status) = end {
        let _ = tx.send(Err(status)).await;
    }
    shared.metrics.stream_closed();
    shared.status.disconnected(&node);
    tracing::info!(%node, protocol = P::NAME, "ADS stream closed");
}

#[allow(clippy::result_large_err)] // tonic::Status, once per stream
fn admit<P: Protocol>(
    shared: &Shared,
    caller: &Caller,
    first: &P::Req,
) -> Result<(NodeId, SnapshotWatch), Status> {
    let mut claim = P::claim(first);
    // Bootstraps before instances sent `cluster: <workload name>` with the node id as
    // `id`: a node whose id is a published node id is that workload's default instance.
    if claim.instance_name().is_some() && shared.cache.contains(&NodeId::new(claim.id.clone())) {
        claim.cluster.clear();
    }
    claim
        .check()
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    shared.authorizer.authorize(caller, &claim)?;
    shared.cache.join(&claim).map_err(Status::permission_denied)
}

/// The node identity in a request: id, cluster and the `INSTANCE_IP` metadata field.
fn claim_of(node: Option<&Node>) -> NodeClaim {
    let Some(n) = node else {
        return NodeClaim::default();
    };
    let ip = n
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(INSTANCE_IP_FIELD))
        .map(|v| match &v.kind {
            Some(Kind::StringValue(s)) => s.clone(),
            // Any other type is not an address: keep it visible in the refusal.
            _ => format!("{:?}", v.kind),
        });
    NodeClaim {
        id: n.id.clone(),
        cluster: n.cluster.clone(),
        instance_ip: ip,
    }
}

async fn drive<P: Protocol>(
    shared: &Shared,
    node: &NodeId,
    first: P::Req,
    mut requests: Streaming<P::Req>,
    mut watch: SnapshotWatch,
    tx: &Tx<P::Resp>,
    deadline: Option<tokio::time::Instant>,
) -> Result<(), Status> {
    let expired = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    let removed = || {
        Status::not_found(format!(
            "node id `{node}` was removed from the Warden config"
        ))
    };
    let mut snap: Arc<Snapshot> = watch.borrow_and_update().clone().ok_or_else(removed)?;
    let mut proto = P::default();
    let first_id = P::node_id(&first).unwrap_or_default().to_owned();
    let (events, resps) = proto.on_request(&first, &snap);
    record(shared, node, events);
    send_all(tx, resps).await?;
    loop {
        tokio::select! {
            () = &mut expired => {
                tracing::info!(%node, "ADS stream reached its maximum age; the client reconnects and re-attests");
                return Err(Status::unavailable(
                    "stream age limit reached: reconnect (credentials are checked again)",
                ));
            }
            msg = requests.message() => {
                let req = match msg {
                    Ok(Some(req)) => req,
                    Ok(None) => return Ok(()),
                    Err(status) => {
                        // A reset (e.g. the client refusing an oversized message) ends
                        // the stream; counted per node so a reconnect loop is visible.
                        // Labelled by the workload's node id: instance names would make
                        // the label unbounded.
                        let workload = split_key(node).0;
                        shared.metrics.stream_reset(workload);
                        let resets = shared.metrics.stream_resets(workload);
                        tracing::warn!(%node, resets, "ADS stream reset: {status}");
                        return Ok(());
                    }
                };
                if P::node_id(&req).is_some_and(|id| !id.is_empty() && id != first_id) {
                    return Err(Status::invalid_argument("node.id changed within a stream"));
                }
                let (events, resps) = proto.on_request(&req, &snap);
                record(shared, node, events);
                send_all(tx, resps).await?;
            }
            changed = watch.changed() => {
                if changed.is_err() {
                    return Err(removed());
                }
                let next = watch.borrow_and_update().clone();
                snap = next.ok_or_else(removed)?;
                let (events, resps) = proto.on_snapshot(&snap);
                record(shared, node, events);
                send_all(tx, resps).await?;
            }
        }
    }
}

async fn send_all<R>(tx: &Tx<R>, resps: Vec<R>) -> Result<(), Status> {
    for r in resps {
        // The receiver is gone only when the client went away: end quietly.
        tx.send(Ok(r))
            .await
            .map_err(|_| Status::cancelled("client went away"))?;
    }
    Ok(())
}

fn record(shared: &Shared, node: &NodeId, events: Vec<Event>) {
    for e in events {
        match e {
            Event::Ack { t, version, nonce } => {
                shared.metrics.ack(t);
                shared.status.acked(node, t, version.clone());
                tracing::debug!(%node, %t, %version, %nonce, "ACK");
            }
            Event::PartialAck {
                t,
                nonce,
                still_rejected,
            } => {
                // Counted as an ACK, but the status keeps the last full ACK and the NACK.
                shared.metrics.ack(t);
                tracing::debug!(%node, %t, %nonce, ?still_rejected, "ACK of a delta response; earlier resources still rejected");
            }
            Event::Nack {
                t,
                version,
                nonce,
                detail,
            } => {
                shared.metrics.nack(t);
                tracing::warn!(%node, %t, rejected_version = %version, %nonce, "NACK: {detail}");
                let at_unix = unix_seconds(SystemTime::now());
                shared.status.nacked(
                    node,
                    t,
                    Rejection {
                        rejected_version: version,
                        nonce,
                        error_detail: detail,
                        at_unix,
                    },
                );
            }
            Event::StaleNonce { t, nonce } => {
                shared.metrics.stale_nonce();
                tracing::debug!(%node, %t, %nonce, "stale nonce ignored");
            }
            Event::UnsupportedType { type_url } => {
                tracing::debug!(%node, %type_url, "request for a type Warden does not serve");
            }
            Event::Missing { t, names } => {
                tracing::warn!(%node, %t, ?names, "Envoy asked for resources this node does not have");
            }
            Event::Sent {
                t,
                version,
                nonce,
                resources,
            } => {
                shared.metrics.push(t);
                shared.status.sent(node, t, version.clone(), nonce.clone());
                tracing::debug!(%node, %t, %version, %nonce, resources, "pushed");
            }
        }
    }
}
