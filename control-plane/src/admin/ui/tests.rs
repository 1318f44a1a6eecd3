//! The dashboard over a real socket: pages and assets with their content types, the JSON
//! API built from the live config, sidecars that do not answer reported (not waited
//! for), and nothing but GET.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::identity::SystemClock;
use crate::test_support::sample_mesh;

/// (status, headers, body) of one request.
async fn call(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let at = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    (status, head, buf[at + 4..].to_vec())
}

async fn json(addr: std::net::SocketAddr, path: &str) -> Value {
    let (code, _, body) = call(addr, "GET", path).await;
    assert_eq!(code, 200, "{path}");
    serde_json::from_slice(&body).unwrap()
}

async fn start() -> (std::net::SocketAddr, tempfile::TempDir) {
    start_with(|_| {}).await
}

async fn start_with(
    edit: impl FnOnce(&mut crate::config::Config),
) -> (std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sample_mesh(dir.path());
    edit(&mut cfg);
    let (cp, _) = ControlPlane::start(
        cfg,
        "/m.wasm".into(),
        Arc::new(SystemClock),
        crate::plane::XdsHandles::default(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::admin::serve_router(listener, router(Arc::new(cp))));
    (addr, dir)
}

#[tokio::test]
async fn pages_and_assets_are_served_with_their_types_and_ui_redirects() {
    let (addr, _dir) = start().await;
    let (code, head, _) = call(addr, "GET", "/ui").await;
    assert_eq!(code, 308);
    assert!(head.contains("location: /ui/"), "{head}");
    for (path, kind, needle) in [
        ("/ui/", "text/html", "Recent denies"),
        ("/ui/playground", "text/html", "Run tests"),
        ("/ui/dashboard.js", "text/javascript", "parseMetrics"),
        ("/ui/playground.js", "text/javascript", "runTests"),
        ("/ui/style.css", "text/css", "--deny"),
    ] {
        let (code, head, body) = call(addr, "GET", path).await;
        assert_eq!(code, 200, "{path}");
        assert!(
            head.contains(&format!("content-type: {kind}")),
            "{path}: {head}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{path}");
        assert!(String::from_utf8_lossy(&body).contains(needle), "{path}");
    }
    let (code, head, body) = call(addr, "GET", "/ui/pkg/warden_playground_bg.wasm").await;
    if HAS_PLAYGROUND {
        assert_eq!(code, 200);
        assert!(head.contains("content-type: application/wasm"));
        assert_eq!(&body[..4], b"\0asm");
    } else {
        assert_eq!(code, 404);
        assert!(String::from_utf8_lossy(&body).contains("./dev build"));
    }
}

#[tokio::test]
async fn the_api_describes_the_live_mesh_and_its_policy() {
    let (addr, _dir) = start().await;
    let mesh = json(addr, "/ui/api/mesh").await;
    let names: Vec<&str> = mesh["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["backend", "database", "frontend"]);
    assert_eq!(mesh["workloads"][2]["upstreams"][0], "backend");
    assert_eq!(mesh["policy_version"].as_str().unwrap().len(), 12);
    assert_eq!(mesh["playground"], HAS_PLAYGROUND);

    let policy = json(addr, "/ui/api/policy").await;
    assert_eq!(policy["modules"][0]["name"], "policies/authz.rego");
    assert!(policy["modules"][0]["source"]
        .as_str()
        .unwrap()
        .contains("package envoy.authz"));
    assert_eq!(policy["settings"]["entrypoint"], "data.envoy.authz.allow");
    assert_eq!(
        policy["workloads"]["backend"],
        "spiffe://example.org/ns/demo/sa/backend"
    );
}

#[tokio::test]
async fn traffic_reports_sidecars_that_do_not_answer_without_waiting_for_them() {
    // One sidecar admin accepts and never answers; the others refuse connections (a port
    // bound then closed). Nothing else on the machine can answer for them.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let hold = tokio::spawn(async move {
        let _conn = silent.accept().await;
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    });
    let (addr, _dir) = start_with(|cfg| {
        for (i, w) in cfg.workloads.iter_mut().enumerate() {
            w.sidecar_admin = if i == 0 { silent_addr } else { closed_addr };
        }
    })
    .await;
    let started = std::time::Instant::now();
    let traffic = json(addr, "/ui/api/traffic").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // No sidecar runs in this test: every one is reported with its error, edges are zero.
    for sidecar in traffic["sidecars"].as_array().unwrap() {
        assert!(sidecar["error"].is_string(), "{sidecar}");
    }
    assert!(!traffic["edges"].as_array().unwrap().is_empty());
    assert_eq!(traffic["deny_status"], 403);
    hold.abort();
}

#[tokio::test]
async fn the_dashboard_is_read_only() {
    let (addr, _dir) = start().await;
    for path in ["/ui/", "/ui/api/mesh", "/ui/api/policy", "/ui/api/traffic"] {
        let (code, _, _) = call(addr, "POST", path).await;
        assert_eq!(code, 405, "{path}");
    }
    let (code, _, _) = call(addr, "GET", "/ui/../config_dump").await;
    assert_ne!(code, 500);
}
