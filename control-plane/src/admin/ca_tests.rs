//! `/ca/*` over a real socket: status JSON shape, 200 on a step, 409 with the reason.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::identity::SystemClock;
use crate::test_support::{sample_mesh, shared};

async fn call(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf[9..12].parse().unwrap();
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn ca_steps_answer_200_or_409_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sample_mesh(dir.path());
    let shared = shared();
    let (cp, _) = ControlPlane::start(
        cfg,
        "/m.wasm".into(),
        Arc::new(SystemClock),
        crate::test_support::handles(&shared),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::admin::serve_router(listener, router(Arc::new(cp))));

    let (code, st) = call(addr, "GET", "/ca/status").await;
    assert_eq!(code, 200);
    assert_eq!(st["phase"], "current_only");
    assert!(st["current"]["serial"].is_string() && st["current"]["not_after"].is_string());
    assert!(st["next"].is_null() && st["retired"].as_array().unwrap().is_empty());
    assert!(st["activation_blocked_by"].as_array().unwrap().is_empty());

    let (code, body) = call(addr, "POST", "/ca/activate").await;
    assert_eq!(code, 409);
    assert!(
        body["refused"].as_str().unwrap().contains("no next CA"),
        "{body}"
    );

    let (code, body) = call(addr, "POST", "/ca/prepare").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"]["phase"], "prepared");
    assert!(body["status"]["next"]["serial"].is_string());

    let (code, _) = call(addr, "POST", "/ca/prepare").await;
    assert_eq!(code, 409);
    let (code, body) = call(addr, "POST", "/ca/activate").await;
    assert_eq!(code, 200, "{body}");
    let old = st["current"]["serial"].clone();
    assert_eq!(body["status"]["retired"][0]["serial"], old);

    let (code, body) = call(addr, "POST", "/ca/retire").await;
    assert_eq!(code, 409, "the old CA's SVIDs are valid for an hour");
    assert!(
        body["refused"].as_str().unwrap().contains("valid until"),
        "{body}"
    );
    let (code, body) = call(addr, "POST", "/ca/retire?force=true").await;
    assert_eq!(code, 200, "{body}");
    assert!(body["status"]["retired"].as_array().unwrap().is_empty());
    assert_eq!(body["status"]["bundle_sequence"], 3);
}
