//! `warden validate`, `warden bundle --format spiffe` and `warden federation status` as a
//! user runs them on a config with federation.

mod common;
use common::{sample, warden};

use std::fs;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn validate_reports_federation_yaml_problems_at_file_line_col() {
    let dir = sample();
    let f = dir.path().join("federation.yaml");
    fs::write(
        &f,
        "trust_domains:\n- trust_domain: b.test\n  url: http://b.test/\n  profile: https_spiffe\n",
    )
    .unwrap();
    let out = warden(&["validate", s(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3:8: error:", f.display())),
        "{err}"
    );
    assert!(err.contains("not an https:// URL"), "{err}");
    assert!(err.contains("needs endpoint_spiffe_id"), "{err}");
}

#[test]
fn validate_warns_about_an_upstream_in_a_trust_domain_nobody_federates() {
    let dir = sample();
    let f = dir.path().join("workloads/frontend.yaml");
    let text = fs::read_to_string(&f).unwrap().replace(
        "upstreams:\n",
        "upstreams:\n  - workload: partner\n    listen: 127.0.0.1:16999\n    spiffe_id: spiffe://b.test/ns/x/sa/api\n    address: 10.0.0.9:15002\n",
    );
    fs::write(&f, text).unwrap();
    let out = warden(&["validate", s(dir.path())]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("trust domain `b.test`, which federation.yaml does not federate with"),
        "{err}"
    );
}

#[test]
fn a_foreign_upstream_needs_both_its_id_and_its_address() {
    let dir = sample();
    let f = dir.path().join("workloads/frontend.yaml");
    let text = fs::read_to_string(&f).unwrap().replace(
        "upstreams:\n",
        "upstreams:\n  - workload: partner\n    listen: 127.0.0.1:16999\n    spiffe_id: spiffe://b.test/ns/x/sa/api\n",
    );
    fs::write(&f, text).unwrap();
    let out = warden(&["validate", s(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs both spiffe_id and address"), "{err}");
}

#[test]
fn bundle_format_spiffe_is_a_bundle_a_peer_can_use_as_its_bundle_file() {
    let dir = sample();
    let out = warden(&["bundle", "--config", s(dir.path()), "--format", "spiffe"]);
    assert!(out.status.success());
    let parsed =
        warden::identity::bundle_document::parse(&"example.org".parse().unwrap(), &out.stdout)
            .unwrap();
    assert_eq!(parsed.bundle.x509_authorities_der.len(), 1);
    assert!(parsed.refresh_hint.is_some());
}

#[test]
fn federation_status_without_a_running_server_says_so_and_exits_two() {
    let dir = sample();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = warden(&[
        "federation",
        "status",
        "--config",
        s(dir.path()),
        "--admin",
        &port.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("asking the control plane"));
}
