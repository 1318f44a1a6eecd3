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
    assert_eq!(
        cds.resources.len(),
        4,
        "local app + backend + database + warden-audit (the sample keeps an audit trail)"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_rejects_each_config_validate_refuses_on_reload_and_keeps_serving() {
    let s = start();
    let main = s.dir.path().join("warden.yaml");
    let backend = s.dir.path().join("workloads/backend.yaml");
    let good_main = fs::read_to_string(&main).unwrap();
    let good_backend = fs::read_to_string(&backend).unwrap();
    let cases = [
        (
            &main,
            "trust_domain: example.org",
            "trust_domain: example..org",
            "empty label",
        ),
        (
            &main,
            "trust_domain: example.org",
            "trust_domain: a-.org",
            "starts or ends with `-`",
        ),
        (&main, "ttl: 24h", "ttl: 87600000h", "maximum 3650d"),
        (&main, "svid_ttl: 1h", "svid_ttl: 5s", "minimum 10s"),
        (
            &main,
            "  state_dir: .warden",
            "  state_dir: .warden\n  upstream: { cert: .up/up.pem, key: .up/up.key }",
            "pathLenConstraint 0",
        ),
        (
            &main,
            "state_dir: .warden",
            "state_dir: policies",
            "among the config files",
        ),
        (
            &backend,
            "spiffe://example.org/ns/demo/sa/backend",
            "spiffe://example.org",
            "needs a path",
        ),
        (
            &backend,
            "node_id: backend-sidecar",
            "node_id: 'x\", admin: y'",
            "invalid node id",
        ),
    ];
    // An upstream root with pathlen:0: Warden's intermediate would not fit under it. In a
    // hidden folder, which the reload watcher skips: writing it triggers no reload.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut root = rcgen::CertificateParams::default();
    root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    root.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let root_pem = root.self_signed(&key).unwrap().pem();
    fs::create_dir(s.dir.path().join(".up")).unwrap();
    fs::write(s.dir.path().join(".up/up.pem"), root_pem).unwrap();
    fs::write(s.dir.path().join(".up/up.key"), key.serialize_pem()).unwrap();
    // Each bad state is written directly over the previous bad one (backend first, then
    // main), so the server never sees a good config in between.
    for (file, from, to, want) in cases {
        let good = if file == &main {
            &good_main
        } else {
            &good_backend
        };
        fs::write(file, good.replacen(from, to, 1)).unwrap();
        if file == &backend {
            fs::write(&main, &good_main).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, dump) = http_get(s.admin, "/config_dump").unwrap();
            let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
            let err = dump["config"]["last_reload_error"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if err.contains(want) {
                assert!(err.contains("hint:"), "{to}: {err}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{to}: reload error never said `{want}`: {err}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(http_get(s.admin, "/readyz").map(|r| r.0), Some(200));
    }
    assert!(metric(&s, "warden_config_reloads_total").ends_with(" 0"));
}

#[test]
fn serve_logs_the_svid_ttl_warning_that_validate_prints() {
    let dir = common::sample();
    let main = dir.path().join("warden.yaml");
    let (xds, admin) = (free_port(), free_port());
    edit(&main, "127.0.0.1:18000", &xds.to_string());
    edit(&main, "127.0.0.1:18001", &admin.to_string());
    edit(&main, "ttl: 24h", "ttl: 2h");
    let log = dir.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--config"])
        .arg(dir.path())
        .arg("--filter-module")
        .arg(common::fake_module(dir.path()))
        .arg("--filter-module-extended")
        .arg(common::fake_module(dir.path()))
        .arg("--insecure-plaintext-xds")
        .env("WARDEN_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains("svid_ttl 1h is more than 1/6") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("svid_ttl 1h is more than 1/6"), "{text}");
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
