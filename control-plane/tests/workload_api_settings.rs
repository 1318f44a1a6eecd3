//! `workload-api.yaml` parsing against the sample config: strict keys, clear messages.

use std::path::Path;
use std::time::Duration;

use warden::config::{self, Config};
use warden::workload_api::attest::Selector;
use warden::workload_api::Settings;

fn mesh() -> Config {
    config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh")).unwrap()
}

fn parse(text: &str) -> Result<Settings, String> {
    Settings::parse(text, &mesh(), Path::new("workload-api.yaml")).map_err(|e| e.to_string())
}

#[test]
fn a_known_workload_takes_its_spiffe_id_from_the_config() {
    let s = parse("socket: run/wl.sock\nworkloads:\n  - name: backend\n    selectors: [unix:uid:1000, unix:path:/usr/bin/backend]\n").unwrap();
    assert_eq!(
        s.entries[0].spiffe_id.as_str(),
        "spiffe://example.org/ns/demo/sa/backend"
    );
    assert_eq!(
        s.entries[0].selectors[1],
        Selector::Path("/usr/bin/backend".into())
    );
    assert!(s.socket.is_absolute() && s.socket.ends_with("run/wl.sock"));
    assert_eq!(s.jwt_ttl, Duration::from_secs(300));
    assert_eq!(s.x509_ttl, mesh().ca.svid_ttl);
    assert_eq!(s.renew_fraction, 0.5);
}

#[test]
fn a_workload_without_a_sidecar_gives_its_own_spiffe_id() {
    let s = parse("socket: /tmp/x.sock\njwt_ttl: 2m\nworkloads:\n  - name: job\n    spiffe_id: spiffe://example.org/jobs/nightly\n    selectors: [unix:gid:2000]\n").unwrap();
    assert_eq!(
        s.entries[0].spiffe_id.as_str(),
        "spiffe://example.org/jobs/nightly"
    );
    assert_eq!(s.jwt_ttl, Duration::from_secs(120));
}

#[test]
fn mistakes_are_reported_with_the_file_and_what_to_fix() {
    let cases = [
        ("socket: a\nworkloads: []\nsockt: b\n", "unknown field `sockt`"),
        ("socket: a\nworkloads:\n  - name: nope\n    selectors: [unix:uid:1]\n", "workload `nope`: not a workload"),
        ("socket: a\nworkloads:\n  - name: backend\n    selectors: [uid:1]\n", "selector `uid:1`"),
        ("socket: a\nworkloads:\n  - name: backend\n    selectors: []\n", "at least one selector"),
        ("socket: a\nworkloads:\n  - name: j\n    spiffe_id: spiffe://other.org/j\n    selectors: [unix:uid:1]\n", "not in trust domain"),
        ("socket: a\njwt_ttl: 5s\nworkloads:\n  - name: backend\n    selectors: [unix:uid:1]\n", "minimum 10s"),
        ("socket: a\nworkloads:\n  - name: j\n    spiffe_id: spiffe://example.org\n    selectors: [unix:uid:1]\n", "needs a path"),
        ("socket: a\nrenew_fraction: 1.5\nworkloads:\n  - name: backend\n    selectors: [unix:uid:1]\n", "renew_fraction"),
        ("socket: a\nworkloads: []\n", "at least one workload"),
    ];
    for (text, expected) in cases {
        let err = parse(text).unwrap_err();
        assert!(err.starts_with("workload-api.yaml:"), "{err}");
        assert!(err.contains("hint:"), "{err}");
        assert!(err.contains(expected), "expected `{expected}` in `{err}`");
    }
}
