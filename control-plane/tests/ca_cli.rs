//! `warden ca` as a user runs it without a control plane: `status` reads the state dir
//! (and says so), steps fail with exit 2 because only `warden serve` can run them.

mod common;
use common::warden;

use std::fs;

/// A private copy of the sample mesh whose admin address nobody listens on.
fn sample() -> tempfile::TempDir {
    let dir = common::sample();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let yaml = dir.path().join("warden.yaml");
    let text = fs::read_to_string(&yaml).unwrap();
    let text = text.replace("127.0.0.1:18001", &format!("127.0.0.1:{port}"));
    fs::write(&yaml, text).unwrap();
    dir
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn ca_status_reads_the_state_dir_when_the_control_plane_is_down() {
    let dir = sample();
    let cfg = dir.path().to_str().unwrap();
    let out = warden(&["ca", "status", "--config", cfg, "--offline"]);
    assert_eq!(out.status.code(), Some(1), "no CA yet");
    assert!(
        text(&out.stderr).contains("no CA in"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !dir.path().join(".warden/ca.json").exists(),
        "status never creates a CA"
    );

    assert!(warden(&["bundle", "--config", cfg]).status.success());
    let out = warden(&["ca", "status", "--config", cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not reachable"),
        "says it reads offline"
    );
    let words = text(&out.stdout);
    assert!(
        words.contains("current CA") && words.contains("signs SVIDs"),
        "{words}"
    );
    assert!(words.contains("no next CA yet"), "{words}");

    let out = warden(&["ca", "status", "--config", cfg, "--offline", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["phase"], "current_only");
    assert!(v["nodes"].is_null(), "node ACKs are unknown offline");
}

#[test]
fn ca_steps_need_the_running_control_plane() {
    let dir = sample();
    let cfg = dir.path().to_str().unwrap();
    let out = warden(&["ca", "prepare", "--config", cfg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("warden serve"),
        "{}",
        text(&out.stderr)
    );
}
