use std::time::Duration;

use super::*;
use crate::identity::TrustBundle;

fn doc(sequence: u64) -> String {
    // A real certificate, so the document parses; only the sequence differs.
    let dir = tempfile::tempdir().unwrap();
    let params = crate::identity::CaParams {
        trust_domain: "b.test".parse().unwrap(),
        key_type: crate::identity::KeyType::EcP256,
        ttl: Duration::from_secs(3600),
        state_dir: dir.path().to_path_buf(),
        upstream: None,
    };
    let ca = crate::identity::Ca::load_or_init(&params, &crate::identity::SystemClock).unwrap();
    TrustBundle {
        sequence,
        ..ca.bundle()
    }
    .to_jwks_json()
}

fn relationship(bundle_file: Option<PathBuf>) -> Relationship {
    Relationship {
        trust_domain: "b.test".parse().unwrap(),
        url: "https://127.0.0.1:1/".parse().unwrap(),
        auth: PeerAuth::Web { ca_file: None },
        bundle_file,
    }
}

#[test]
fn after_a_restart_the_persisted_bundle_wins_over_an_older_bundle_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.json");
    std::fs::write(&file, doc(3)).unwrap();
    persist(&dir.path().join("state"), "b.test", doc(7).as_bytes());
    let got = initial_bundle(&relationship(Some(file)), &dir.path().join("state")).unwrap();
    assert_eq!(got.bundle.sequence, 7);
}

#[test]
fn a_newer_bundle_file_wins_and_a_damaged_persisted_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("b.json");
    std::fs::write(&file, doc(9)).unwrap();
    persist(&state, "b.test", doc(7).as_bytes());
    let rel = relationship(Some(file.clone()));
    assert_eq!(initial_bundle(&rel, &state).unwrap().bundle.sequence, 9);
    persist(&state, "b.test", b"{\"keys\": [garbage");
    std::fs::write(&file, doc(2)).unwrap();
    assert_eq!(initial_bundle(&rel, &state).unwrap().bundle.sequence, 2);
    assert!(initial_bundle(&relationship(None), &dir.path().join("none")).is_none());
}
