//! Instances: joining on connect with an own SVID, sharing the workload's resources,
//! `${INSTANCE_IP}`, the per-workload limit and forgetting gone instances.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::{InstanceIpHosts, Reach};
use crate::test_support::{sample_mesh as mesh, ManualClock};
use crate::xds::node::NodeClaim;
use crate::xds::types::{NodeId, ResourceType};

fn start(cfg: crate::config::Config, clock: Arc<ManualClock>) -> (Arc<ControlPlane>, XdsHandles) {
    let sh = XdsHandles::default();
    let (cp, _) = ControlPlane::start(cfg, "/m.wasm".into(), clock, sh.clone()).unwrap();
    let cp = Arc::new(cp);
    cp.accept_instances();
    (cp, sh)
}

fn key_of(cp: &ControlPlane, node: &str) -> String {
    cp.lock().book.svids[&NodeId::new(node)]
        .private_key_pem
        .to_string()
}

#[test]
fn each_instance_joins_with_its_own_key_and_shares_the_workloads_resources() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, sh) = start(mesh(dir.path()), Arc::new(ManualClock::new()));
    let mut keys = std::collections::BTreeSet::new();
    for i in ["backend-1", "backend-2", "backend-3"] {
        let (key, watch) = sh
            .cache
            .join(&NodeClaim::instance("backend-sidecar", i))
            .unwrap();
        assert_eq!(key.as_str(), format!("backend-sidecar/{i}"));
        assert!(watch.borrow().is_some());
        keys.insert(key_of(&cp, key.as_str()));
    }
    keys.insert(key_of(&cp, "backend-sidecar"));
    assert_eq!(keys.len(), 4, "four instances, four private keys");
    let svids = cp.lock().book.svids.clone();
    let ids: std::collections::BTreeSet<_> = svids
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("backend-sidecar"))
        .map(|(_, s)| s.id.to_string())
        .collect();
    assert_eq!(ids.len(), 1, "one SPIFFE ID for every instance");
    assert_eq!(cp.instance_counts()["backend"], 4);
    let a = sh
        .cache
        .get(&NodeId::new("backend-sidecar/backend-1"))
        .unwrap();
    let b = sh
        .cache
        .get(&NodeId::new("backend-sidecar/backend-2"))
        .unwrap();
    for t in [
        ResourceType::Cluster,
        ResourceType::Listener,
        ResourceType::ExtensionConfig,
    ] {
        assert!(
            std::ptr::eq(a.get(t).unwrap(), b.get(t).unwrap()),
            "{t:?} is shared, not copied"
        );
    }
    assert_ne!(
        a.version(ResourceType::Secret),
        b.version(ResourceType::Secret)
    );
    let (sa, sb) = (
        a.get(ResourceType::Secret).unwrap(),
        b.get(ResourceType::Secret).unwrap(),
    );
    assert!(
        Arc::ptr_eq(&sa.resources["ROOTCA"], &sb.resources["ROOTCA"]),
        "the bundle secrets are shared"
    );
    let own = "spiffe://example.org/ns/demo/sa/backend";
    assert!(!Arc::ptr_eq(&sa.resources[own], &sb.resources[own]));
    // Joining again (a reconnect) keeps the SVID.
    let before = key_of(&cp, "backend-sidecar/backend-1");
    sh.cache
        .join(&NodeClaim::instance("backend-sidecar", "backend-1"))
        .unwrap();
    assert_eq!(key_of(&cp, "backend-sidecar/backend-1"), before);
}

#[test]
fn renewal_and_reload_keep_joined_instances_and_renew_them_on_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let start_at = SystemTime::now();
    let clock = Arc::new(ManualClock::at(start_at));
    let (cp, sh) = start(mesh(dir.path()), clock.clone());
    sh.cache
        .join(&NodeClaim::instance("backend-sidecar", "b-1"))
        .unwrap();
    let before = key_of(&cp, "backend-sidecar/b-1");
    let ttl = cp.config().ca.svid_ttl;
    clock.set(start_at + ttl * 56 / 100);
    let renewed = cp.renew_due().unwrap();
    assert_eq!(renewed.minted, 4, "3 default instances and the joined one");
    assert_ne!(key_of(&cp, "backend-sidecar/b-1"), before);
    cp.reload(mesh(dir.path())).unwrap();
    assert!(sh.cache.contains(&NodeId::new("backend-sidecar/b-1")));
}

#[test]
fn a_claim_for_no_workload_or_a_bad_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = mesh(dir.path());
    let w = cfg
        .workloads
        .iter_mut()
        .find(|w| w.name == "backend")
        .unwrap();
    w.inbound.instance_ip = InstanceIpHosts {
        listen: true,
        app: true,
    };
    w.inbound.reach = Reach::Service {
        host: "backend.demo".into(),
        port: w.inbound.listen.port(),
    };
    let (cp, sh) = start(cfg, Arc::new(ManualClock::new()));
    assert!(
        !sh.cache.contains(&NodeId::new("backend-sidecar")),
        "an ${{INSTANCE_IP}} workload has no address-less default node"
    );
    let e = sh
        .cache
        .join(&NodeClaim::instance("nobody", "x-1"))
        .unwrap_err();
    assert!(e.contains("not a workload"), "{e}");
    let e = sh
        .cache
        .join(&NodeClaim::instance("backend-sidecar", "b-1"))
        .unwrap_err();
    assert!(e.contains("INSTANCE_IP"), "{e}");
    let mut claim = NodeClaim::instance("backend-sidecar", "b-1");
    claim.instance_ip = Some("127.0.0.12".into());
    let (key, _) = sh.cache.join(&claim).unwrap();
    let snap = sh.cache.get(&key).unwrap();
    let lds = snap.get(ResourceType::Listener).unwrap();
    let inbound = &lds.resources["inbound"].body.value;
    assert!(
        inbound.windows(10).any(|w| w == b"127.0.0.12"),
        "the inbound listener is on the instance's address"
    );
    // Another address for the same instance name (a restarted pod) rebuilds it.
    claim.instance_ip = Some("127.0.0.13".into());
    sh.cache.join(&claim).unwrap();
    let snap = sh.cache.get(&key).unwrap();
    let inbound = &snap.get(ResourceType::Listener).unwrap().resources["inbound"]
        .body
        .value;
    assert!(inbound.windows(10).any(|w| w == b"127.0.0.13"));
    drop(cp);
}

#[test]
fn an_instance_without_streams_is_forgotten_after_the_linger_time() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now();
    let clock = Arc::new(ManualClock::at(t0));
    let (cp, sh) = start(mesh(dir.path()), clock.clone());
    let (gone, _) = sh
        .cache
        .join(&NodeClaim::instance("backend-sidecar", "gone-1"))
        .unwrap();
    let (live, _) = sh
        .cache
        .join(&NodeClaim::instance("backend-sidecar", "live-1"))
        .unwrap();
    sh.status.connected(&live, "sotw");
    sh.status.connected(&gone, "sotw");
    sh.status.disconnected(&gone);
    clock.set(t0 + INSTANCE_LINGER - Duration::from_secs(1));
    cp.tick();
    assert!(sh.cache.contains(&gone), "kept within the linger time");
    clock.set(t0 + INSTANCE_LINGER + Duration::from_secs(20));
    cp.tick();
    assert!(!sh.cache.contains(&gone));
    assert!(!cp.lock().book.svids.contains_key(&gone));
    assert!(!sh.status.dump().contains_key(gone.as_str()));
    assert!(sh.cache.contains(&live), "a connected instance stays");
    assert!(sh.cache.contains(&NodeId::new("backend-sidecar")));
}

#[test]
fn a_workload_cannot_grow_past_its_instance_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _) = start(mesh(dir.path()), Arc::new(ManualClock::new()));
    let now = SystemTime::now();
    let mut state = cp.lock();
    let config = state.config.clone();
    let w = config.workload("backend").unwrap();
    for i in 0..MAX_INSTANCES_PER_WORKLOAD {
        state.instances.insert(
            NodeId::new(format!("backend-sidecar/b-{i}")),
            super::instances::Instance {
                workload: "backend".into(),
                ip: None,
                last_seen: now,
            },
        );
    }
    let new = NodeId::new("backend-sidecar/one-more");
    let e = super::instances::room_for(&mut state, w, &new, None, now).unwrap_err();
    assert!(e.contains("limit"), "{e}");
    let known = NodeId::new("backend-sidecar/b-7");
    assert!(super::instances::room_for(&mut state, w, &known, None, now).unwrap());
    let other = config.workload("frontend").unwrap();
    let free = NodeId::new("frontend-sidecar/f-1");
    assert!(super::instances::room_for(&mut state, other, &free, None, now).unwrap());
}

mod over_ads {
    use std::time::Duration;

    use tokio_stream::wrappers::ReceiverStream;
    use xds_api::pb::envoy::config::core::v3::Node;
    use xds_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use xds_api::pb::envoy::service::discovery::v3::DiscoveryRequest;

    use super::*;
    use crate::xds::server::{serve, AllowAnyCaller, Shared};

    async fn first_response(url: &str, node: Node) -> Result<usize, tonic::Status> {
        let channel = tonic::transport::Channel::from_shared(url.to_owned())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(DiscoveryRequest {
            node: Some(node),
            type_url: ResourceType::Secret.type_url().into(),
            resource_names: vec!["spiffe://example.org/ns/demo/sa/backend".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let mut stream = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let r = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("an answer within 5 s")?;
        Ok(r.map_or(0, |r| r.resources.len()))
    }

    #[tokio::test]
    async fn an_instance_stream_joins_and_an_old_bootstrap_stays_the_default_instance() {
        let dir = tempfile::tempdir().unwrap();
        let (cp, sh) = start(mesh(dir.path()), Arc::new(ManualClock::new()));
        let shared = Shared {
            cache: sh.cache.clone(),
            metrics: sh.metrics.clone(),
            status: sh.status.clone(),
            authorizer: Arc::new(AllowAnyCaller),
            max_stream_age: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener, shared));
        let node = |id: &str, cluster: &str| Node {
            id: id.into(),
            cluster: cluster.into(),
            ..Default::default()
        };
        assert_eq!(
            first_response(&url, node("b-7", "backend-sidecar"))
                .await
                .unwrap(),
            1
        );
        assert!(sh.cache.contains(&NodeId::new("backend-sidecar/b-7")));
        // Bootstraps of earlier releases: cluster = the workload's name.
        assert_eq!(
            first_response(&url, node("backend-sidecar", "backend"))
                .await
                .unwrap(),
            1
        );
        assert!(!sh.cache.contains(&NodeId::new("backend/backend-sidecar")));
        let e = first_response(&url, node("B_7", "backend-sidecar"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("instance name"), "{}", e.message());
        let e = first_response(&url, node("x-1", "nobody"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert_eq!(cp.instance_counts()["backend"], 2);
    }
}
