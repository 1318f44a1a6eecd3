//! `warden serve` as a process: start-up diagnostics, readiness, ADS for a real node,
//! live reload of a changed file, rejected reloads that keep the last good config.
//! Ports are bound at 127.0.0.1:0 and read back; the child is killed by PID on drop.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use xds_api::pb::envoy::config::core::v3::Node;
use xds_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const SDS: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

struct Server {
    child: Child,
    admin: SocketAddr,
    xds: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} not in {}", path.display());
    fs::write(path, text.replace(from, to)).unwrap();
}

fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.get(9..12)?.parse().ok()?;
    Some((status, buf.split_once("\r\n\r\n")?.1.to_string()))
}

fn start() -> Server {
    // A port picked by `free_port` can be taken by someone else before warden binds it;
    // then warden exits at once, and a fresh pair of ports is tried.
    for _ in 0..3 {
        if let Some(server) = try_start() {
            return server;
        }
    }
    panic!("warden serve did not start on three pairs of free ports");
}

fn try_start() -> Option<Server> {
    let dir = common::sample();
    let (xds, admin) = (free_port(), free_port());
    let main = dir.path().join("warden.yaml");
    edit(&main, "127.0.0.1:18000", &xds.to_string());
    edit(&main, "127.0.0.1:18001", &admin.to_string());
    let child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--config"])
        .arg(dir.path())
        .arg("--filter-module")
        .arg(common::fake_module(dir.path()))
        .arg("--filter-module-extended")
        .arg(common::fake_module(dir.path()))
        // These tests drive the ADS protocol and reloads with a bare tonic client; TLS
        // and attestation are covered by xds::server::secure_tests and the e2e suite.
        .arg("--insecure-plaintext-xds")
        .env("WARDEN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        admin,
        xds,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(admin, "/readyz").map(|r| r.0) != Some(200) {
        if server.child.try_wait().unwrap().is_some() {
            return None;
        }
        assert!(Instant::now() < deadline, "warden serve not ready in 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

fn metric(s: &Server, name: &str) -> String {
    let (_, text) = http_get(s.admin, "/metrics").unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_default()
        .to_string()
}

async fn wait_metric(s: &Server, name: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metric(s, name).ends_with(&format!(" {value}")) {
        assert!(Instant::now() < deadline, "{name} never reached {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn request(
    node: &str,
    type_url: &str,
    names: &[&str],
    last: Option<&DiscoveryResponse>,
) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: node.into(),
            ..Default::default()
        }),
        type_url: type_url.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        version_info: last.map(|r| r.version_info.clone()).unwrap_or_default(),
        response_nonce: last.map(|r| r.nonce.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

async fn next(s: &mut tonic::Streaming<DiscoveryResponse>) -> DiscoveryResponse {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("a response within 10 s")
        .unwrap()
        .unwrap()
}

#[test]
fn serve_with_an_invalid_config_exits_one_with_diagnostics() {
    let dir = common::sample();
    edit(
        &dir.path().join("workloads/backend.yaml"),
        "workload: database",
        "workload: datbase",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("workloads/backend.yaml:") && err.contains("datbase"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_streams_a_node_its_config_and_reloads_changes_live() {
    let s = start();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.xds))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    tx.send(request("frontend-sidecar", CDS, &[], None))
        .await
        .unwrap();
    let mut stream = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let cds = next(&mut stream).await;
    assert_eq!(cds.resources.len(), 3, "local app + backend + database");
    tx.send(request("frontend-sidecar", CDS, &[], Some(&cds)))
        .await
        .unwrap();

    // Only the node's own secrets: the backend's SVID is not served to the frontend.
    let own = "spiffe://example.org/ns/demo/sa/frontend";
    let other = "spiffe://example.org/ns/demo/sa/backend";
    tx.send(request("frontend-sidecar", SDS, &[own, other], None))
        .await
        .unwrap();
    let sds = next(&mut stream).await;
    assert_eq!(sds.resources.len(), 1);
    tx.send(request("frontend-sidecar", SDS, &[own, other], Some(&sds)))
        .await
        .unwrap();
    tx.send(request("frontend-sidecar", LDS, &[], None))
        .await
        .unwrap();
    let lds = next(&mut stream).await;
    assert_eq!(lds.type_url, LDS);
    tx.send(request("frontend-sidecar", LDS, &[], Some(&lds)))
        .await
        .unwrap();

    // A changed port reaches the stream as an LDS push only.
    edit(
        &s.dir.path().join("workloads/frontend.yaml"),
        "127.0.0.1:16003",
        "127.0.0.1:16004",
    );
    let pushed = next(&mut stream).await;
    assert_eq!(pushed.type_url, LDS);
    assert_ne!(pushed.version_info, lds.version_info);
    tx.send(request("frontend-sidecar", LDS, &[], Some(&pushed)))
        .await
        .unwrap();
    wait_metric(&s, "warden_config_reloads_total", "1").await;

    // A broken file is rejected; the server keeps serving the last good config.
    fs::write(s.dir.path().join("workloads/frontend.yaml"), "name: [").unwrap();
    wait_metric(&s, "warden_config_reload_failures_total", "1").await;
    let (_, dump) = http_get(s.admin, "/config_dump").unwrap();
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert!(dump["config"]["last_reload_error"]
        .as_str()
        .unwrap()
        .contains("frontend.yaml"));
    let lds_state = &dump["nodes"]["frontend-sidecar"]["types"]["lds"];
    assert_eq!(lds_state["version_acked"], pushed.version_info.as_str());
    assert_eq!(lds_state["version_current"], pushed.version_info.as_str());
}

#[test]
fn serve_refuses_a_node_that_is_not_in_the_config() {
    let s = start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.xds))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(8);
        tx.send(request("stranger", CDS, &[], None)).await.unwrap();
        let mut stream = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let err = stream.message().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    });
    assert!(metric(&s, "warden_xds_streams_refused_total").ends_with(" 1"));
}

#[test]
fn serve_refuses_to_start_with_a_filter_module_that_is_missing_or_not_wasm() {
    let dir = common::sample();
    let not_wasm = dir.path().join(".not.wasm");
    std::fs::write(&not_wasm, "plain text").unwrap();
    let cases = [
        (dir.path().join(".nonexistent.wasm"), "No such file"),
        (not_wasm, "not a WebAssembly module"),
    ];
    for (module, why) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["serve", "--config"])
            .arg(dir.path())
            .arg("--filter-module")
            .arg(common::fake_module(dir.path()))
            .arg("--filter-module-extended")
            .arg(&module)
            .arg("--insecure-plaintext-xds")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{module:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&module.display().to_string())
                && err.contains(why)
                && err.contains("--filter-module-extended"),
            "{err}"
        );
    }
}
