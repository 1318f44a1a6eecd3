//! The attestor over a real config directory: join tokens written by the token file code,
//! node id checks, and service-account tokens mapped to workloads.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::{self, tokens_file};

fn sample() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    for sub in ["", "workloads", "policies"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap().flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), dir.path().join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    dir
}

fn with_token(dir: &Path, workload: &str) -> NewToken {
    let t = generate_token();
    let rec = tokens_file::NewRecord {
        id: &t.id,
        workload,
        sha256_hex: &t.sha256_hex,
        expires: SystemTime::now() + Duration::from_secs(3600),
    };
    tokens_file::add(dir, &rec).unwrap();
    t
}

#[test]
fn join_token_attests_its_workload_for_its_node_id() {
    let dir = sample();
    let t = with_token(dir.path(), "frontend");
    let text = std::fs::read_to_string(dir.path().join("tokens.yaml")).unwrap();
    assert!(!text.contains(t.token.as_str()), "only the hash is stored");
    let cfg = config::load(dir.path()).unwrap();
    let a = Attestor::new(cfg, None);
    let bearer = format!("Bearer {}", t.token.as_str());
    let ok = a
        .attest(Some(&bearer), "frontend-sidecar", SystemTime::now())
        .unwrap();
    assert_eq!(
        ok,
        Attested {
            workload: "frontend".into(),
            instance: None,
            method: "join_token"
        }
    );
}

#[test]
fn an_instance_of_the_tokens_workload_is_attested_with_its_name() {
    use super::node::NodeClaim;
    let dir = sample();
    let t = with_token(dir.path(), "frontend");
    let a = Attestor::new(config::load(dir.path()).unwrap(), None);
    let bearer = format!("Bearer {}", t.token.as_str());
    let now = SystemTime::now();
    let claim = NodeClaim::instance("frontend-sidecar", "frontend-7f9c-x2");
    let ok = a.attest_node(Some(&bearer), &claim, now).unwrap();
    assert_eq!(ok.instance.as_deref(), Some("frontend-7f9c-x2"));
    let other = NodeClaim::instance("database-sidecar", "frontend-7f9c-x2");
    let e = a.attest_node(Some(&bearer), &other, now).unwrap_err();
    assert_eq!(e.reason(), "node_mismatch");
    let bad = NodeClaim::instance("frontend-sidecar", "Frontend_1");
    let e = a.attest_node(Some(&bearer), &bad, now).unwrap_err();
    assert_eq!(e.reason(), "bad_node");
    assert!(e.to_string().contains("instance name"), "{e}");
}

#[test]
fn claiming_another_workloads_node_id_is_refused() {
    let dir = sample();
    let t = with_token(dir.path(), "frontend");
    let a = Attestor::new(config::load(dir.path()).unwrap(), None);
    let bearer = format!("Bearer {}", t.token.as_str());
    let err = a
        .attest(Some(&bearer), "database-sidecar", SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(err, AttestError::NodeMismatch { ref claimed, .. } if claimed == "database-sidecar"),
        "{err}"
    );
    assert!(
        !err.to_string().contains(t.token.as_str()),
        "errors never echo the credential"
    );
}

#[test]
fn missing_or_revoked_credentials_are_refused() {
    let dir = sample();
    let t = with_token(dir.path(), "backend");
    tokens_file::revoke(dir.path(), &t.id).unwrap();
    let a = Attestor::new(config::load(dir.path()).unwrap(), None);
    let now = SystemTime::now();
    assert_eq!(
        a.attest(None, "backend-sidecar", now).unwrap_err(),
        AttestError::NoCredential
    );
    assert_eq!(
        a.attest(Some("Bearer "), "backend-sidecar", now)
            .unwrap_err(),
        AttestError::NoCredential
    );
    let bearer = format!("Bearer {}", t.token.as_str());
    assert_eq!(
        a.attest(Some(&bearer), "backend-sidecar", now).unwrap_err(),
        AttestError::Token(TokenError::Revoked(t.id.clone()))
    );
    assert_eq!(
        a.attest(Some("Bearer eyJ.x.y"), "backend-sidecar", now)
            .unwrap_err(),
        AttestError::K8sNotConfigured
    );
}

#[test]
fn tokens_for_unknown_workloads_make_the_config_invalid() {
    let dir = sample();
    with_token(dir.path(), "frontend");
    let text = std::fs::read_to_string(dir.path().join("tokens.yaml")).unwrap();
    std::fs::write(
        dir.path().join("tokens.yaml"),
        text.replace("workload: frontend", "workload: ghost"),
    )
    .unwrap();
    let errs = config::load(dir.path()).unwrap_err();
    assert!(errs.to_string().contains("tokens.yaml:"), "{errs}");
    assert!(
        errs.to_string().contains("unknown workload `ghost`"),
        "{errs}"
    );
}

#[test]
fn a_workload_that_allows_only_kubernetes_refuses_its_join_token() {
    let dir = sample();
    let t = with_token(dir.path(), "frontend");
    let file = dir.path().join("workloads/frontend.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text + "attestation: [kubernetes]\n").unwrap();
    let cfg = config::load(dir.path()).unwrap_or_else(|d| panic!("{d}"));
    let a = Attestor::new(cfg, None);
    let bearer = format!("Bearer {}", t.token.as_str());
    let err = a
        .attest(Some(&bearer), "frontend-sidecar", SystemTime::now())
        .unwrap_err();
    assert_eq!(err.reason(), "method_not_allowed", "{err}");
}

#[test]
fn an_unknown_attestation_method_is_a_config_error_at_its_line() {
    let dir = sample();
    let file = dir.path().join("workloads/frontend.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text + "attestation: [password]\n").unwrap();
    let errs = config::load(dir.path()).unwrap_err().to_string();
    assert!(errs.contains("frontend.yaml:"), "{errs}");
    assert!(
        errs.contains("unknown attestation method `password`"),
        "{errs}"
    );
}
