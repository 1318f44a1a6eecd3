//! Requests an attacker or a buggy client sends, through real Envoy sidecars: header
//! bytes that are not UTF-8 must not take the filter down, and every path trick must be
//! refused or reach the app only in the canonical form the policy judged.

use std::time::Duration;

use anyhow::{ensure, Result};
use warden_e2e::{Mesh, MeshSpec, XdsMode};

/// frontend may `GET` under `/api/`; the policy also records what it judged in a header
/// (object result), so the test can compare it with what the app received.
const POLICY: &str = r#"package envoy.authz

import rego.v1

default allow := {"allowed": false}

judged := {
	"x-policy-path": input.attributes.request.http.path,
	"x-policy-xa": object.get(input.attributes.request.http.headers, "x-a", ""),
}

allow := {"allowed": true, "headers": judged} if {
	input.attributes.source.principal == "spiffe://example.org/ns/demo/sa/frontend"
	input.attributes.request.http.method == "GET"
	startswith(input.attributes.request.http.path, "/api/")
	not input.parsed_path[0] == "admin"
}
"#;

fn mesh() -> Result<Mesh> {
    let mut spec = MeshSpec::new(XdsMode::Sotw);
    spec.policy = POLICY.to_owned();
    Mesh::start(spec)
}

fn backend_log(mesh: &Mesh) -> String {
    let path = mesh.dir().join("logs/envoy-backend.log");
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Lines of both sidecars' logs that tell what went wrong, for failure messages.
fn sidecar_trouble(mesh: &Mesh) -> String {
    let mut out = String::new();
    for name in ["frontend", "backend"] {
        let path = mesh.dir().join(format!("logs/envoy-{name}.log"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| !l.contains("server.cc"))
            .filter(|l| {
                ["wasm", "panic", "error", "reset", "invalid", "protocol"]
                    .iter()
                    .any(|w| l.to_ascii_lowercase().contains(w))
            })
        {
            out.push_str(&format!("\n  [{name}] {line}"));
        }
        if let Ok(stats) = mesh
            .sidecar(name)
            .and_then(|s| s.stats("protocol|reset|invalid|rejected|wasm|http1|downstream_rq_[45]|destroy|codec|rq_error"))
        {
            for (k, v) in stats.iter().filter(|(_, v)| v.trim() != "0") {
                out.push_str(&format!("\n  [{name} stat] {k}: {v}"));
            }
        }
    }
    out
}

#[test]
fn a_non_utf8_header_gets_a_normal_decision_and_the_next_20_requests_get_200() -> Result<()> {
    warden_e2e::process::report_failure(non_utf8_header(&mesh()?))
}

fn non_utf8_header(mesh: &Mesh) -> Result<()> {
    let mut conn = mesh.connect("frontend", "backend")?;
    let raw =
        b"GET /api/items HTTP/1.1\r\nhost: backend\r\nx-a: \xc0\xa7\r\ncontent-length: 0\r\n\r\n";
    let first = conn.send_raw(raw)?;
    ensure!(
        first.status == 200,
        "first request: {} {}{}",
        first.status,
        first.text(),
        sidecar_trouble(mesh)
    );
    // The policy saw the value, with each invalid byte as U+FFFD; the app got the bytes.
    let echo = first.json()?;
    ensure!(
        echo["headers"]["x-policy-xa"] == "\u{fffd}\u{fffd}",
        "the policy saw {}",
        echo["headers"]["x-policy-xa"]
    );
    // A large value of nothing but invalid bytes (Envoy's default header limit is 60 KiB).
    let mut big = b"GET /api/items HTTP/1.1\r\nhost: backend\r\nx-a: ".to_vec();
    big.extend(std::iter::repeat_n(0xffu8, 40 * 1024));
    big.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
    let large = mesh.connect("frontend", "backend")?.send_raw(&big)?;
    ensure!(
        large.status == 200,
        "40 KiB of 0xff: {}{}",
        large.status,
        sidecar_trouble(mesh)
    );
    // A header *name* that is not a token: Envoy must refuse it itself (the filter's
    // byte-map read relies on names being tokens).
    let mut other = mesh.connect("frontend", "backend")?;
    let bad_name =
        b"GET /api/items HTTP/1.1\r\nhost: backend\r\nx-\xc0: 1\r\ncontent-length: 0\r\n\r\n";
    if let Ok(response) = other.send_raw(bad_name) {
        ensure!(
            response.status != 503,
            "bad header name: 503 {}",
            response.text()
        );
    }
    for i in 0..20 {
        let response = mesh.call("frontend", "backend", "/api/items", &[])?;
        ensure!(
            response.status == 200,
            "request {i} after the bad bytes: {} {}",
            response.status,
            response.text()
        );
    }
    let log = backend_log(mesh);
    for sign in ["panicked", "unreachable", "proxy_on_request_headers failed"] {
        ensure!(!log.contains(sign), "the backend sidecar logged {sign:?}");
    }
    Ok(())
}

#[test]
fn every_path_trick_is_refused_or_reaches_the_app_only_in_canonical_form() -> Result<()> {
    warden_e2e::process::report_failure(path_tricks(&mesh()?))
}

fn path_tricks(mesh: &Mesh) -> Result<()> {
    let ok = mesh.call("frontend", "backend", "/api/items", &[])?;
    ensure!(ok.status == 200, "baseline: {} {}", ok.status, ok.text());
    let admin = mesh.call("frontend", "backend", "/admin", &[])?;
    ensure!(admin.status == 403, "/admin: {}", admin.status);
    let tricks = [
        "/api/../admin",
        "/api/%2e%2e/admin",
        "/api/%2E%2E/admin",
        "/api//..//admin",
        "/api/./../admin",
        "/admin;x=1",
        "/api/x/..;/../admin",
        "/a%2Fb",
        "/api/%2Fadmin",
        "/api/..%2Fadmin",
        "/api/..%5Cadmin",
        "/api/%252e%252e/admin",
        "/files/100%",
        "//admin/x",
        "/api/items/../../admin",
        "/api/\\..\\admin",
    ];
    let served_before = mesh.app("backend")?.served();
    let mut reached = 0;
    for path in tricks {
        let response = mesh.call("frontend", "backend", path, &[])?;
        eprintln!("{path} → {}", response.status);
        match response.status {
            // Refused by the filter (403 policy, 400 bad path) or by Envoy (400, redirect).
            400 | 403 | 404 | 301 | 307 | 308 => {}
            200 => {
                reached += 1;
                let echo = response.json()?;
                let got = echo["path"].as_str().unwrap_or_default();
                let judged = echo["headers"]["x-policy-path"]
                    .as_str()
                    .unwrap_or_default();
                eprintln!("  the app got {got:?}");
                ensure!(
                    got == judged,
                    "{path}: the app got {got:?} but the policy judged {judged:?}"
                );
                // Canonical: no dot segments, no empty segments, no escaped dots or
                // slashes, no parameters. (`/api//..//admin` is `/api/admin` for Envoy:
                // dot segments first, then merged slashes; the app gets that path too.)
                let lower = got.to_ascii_lowercase();
                ensure!(
                    ["/../", "/./", "//", "%2e", "%2f", "%5c", ";", "\\"]
                        .iter()
                        .all(|bad| !lower.contains(bad))
                        && !lower.ends_with("/.."),
                    "{path}: reached the app as {got:?}"
                );
            }
            other => anyhow::bail!("{path}: unexpected {other} {}", response.text()),
        }
    }
    let served = mesh.app("backend")?.served() - served_before;
    ensure!(
        served == reached,
        "the app served {served}, expected {reached}"
    );
    // Envoy's own refusals show up in its stats, the filter's as denies; neither crashes.
    std::thread::sleep(Duration::from_millis(100));
    let log = backend_log(mesh);
    ensure!(!log.contains("panicked"), "the backend sidecar panicked");
    Ok(())
}
