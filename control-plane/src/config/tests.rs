//! Config loading tests: the sample repo is valid, and each class of bad input is
//! reported at its file and line with a hint, all problems at once.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

pub(super) fn sample() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    let dst = tempfile::tempdir().unwrap();
    copy_dir(&src, dst.path());
    dst
}

fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap().flatten() {
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            fs::copy(e.path(), to).unwrap();
        }
    }
}

pub(super) fn edit(dir: &Path, file: &str, from: &str, to: &str) -> PathBuf {
    let p = dir.join(file);
    let text = fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    fs::write(&p, text.replacen(from, to, 1)).unwrap();
    p
}

/// Load and expect failure; return the diagnostics as printed.
pub(super) fn errors(dir: &Path) -> Vec<Diagnostic> {
    load(dir).expect_err("config should be invalid").0
}

pub(super) fn line_of(file: &Path, needle: &str) -> usize {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .unwrap()
        + 1
}

#[test]
fn sample_mesh_is_valid() {
    let dir = sample();
    let cfg = load(dir.path()).unwrap();
    assert_eq!(cfg.trust_domain.as_str(), "example.org");
    let names: Vec<_> = cfg.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["backend", "database", "frontend"]);
    let fe = cfg.workload_for_node("frontend-sidecar").unwrap();
    assert_eq!(fe.upstreams.len(), 2);
    assert_eq!(cfg.ca.svid_ttl, std::time::Duration::from_secs(3600));
    assert_eq!(cfg.ca.state_dir, dir.path().join(".warden"));
    assert_eq!(cfg.policies.modules[0].name, "policies/authz.rego");
    assert_eq!(cfg.policies.tests.len(), 1);
}

#[test]
fn bad_spiffe_id_is_reported_at_its_line_with_a_hint() {
    let dir = sample();
    let f = edit(
        dir.path(),
        "workloads/backend.yaml",
        "spiffe://example.org/ns/demo/sa/backend",
        "spiffe://example.org/ns//backend",
    );
    let errs = errors(dir.path());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].file, f);
    assert_eq!(errs[0].line, line_of(&f, "spiffe_id"));
    assert_eq!(errs[0].column, 12);
    assert!(errs[0].message.contains("empty segment"), "{}", errs[0]);
    assert!(errs[0]
        .hint
        .as_deref()
        .unwrap()
        .contains("spiffe://example.org/ns/"));
}

#[test]
fn id_outside_the_trust_domain_is_rejected() {
    let dir = sample();
    edit(
        dir.path(),
        "workloads/backend.yaml",
        "spiffe://example.org/ns",
        "spiffe://other.org/ns",
    );
    let errs = errors(dir.path());
    assert!(
        errs[0].message.contains("not in trust domain example.org"),
        "{}",
        errs[0]
    );
}

#[test]
fn duplicate_workload_and_node_id_are_rejected() {
    let dir = sample();
    let f = edit(
        dir.path(),
        "workloads/database.yaml",
        "node_id: database-sidecar",
        "node_id: backend-sidecar",
    );
    let errs = errors(dir.path());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0]
        .message
        .contains("duplicate node id `backend-sidecar`"));
    assert_eq!(errs[0].line, line_of(&f, "node_id"));
    assert!(errs[0].hint.as_deref().unwrap().contains("backend.yaml"));
    fs::copy(
        dir.path().join("workloads/backend.yaml"),
        dir.path().join("workloads/backend2.yaml"),
    )
    .unwrap();
    let errs = errors(dir.path());
    assert!(
        errs.iter()
            .any(|e| e.message.contains("duplicate workload name `backend`")),
        "{errs:?}"
    );
}

#[test]
fn unknown_upstream_gets_a_did_you_mean() {
    let dir = sample();
    let f = edit(
        dir.path(),
        "workloads/backend.yaml",
        "workload: database",
        "workload: databse",
    );
    let errs = errors(dir.path());
    assert_eq!(errs[0].line, line_of(&f, "databse"));
    assert!(errs[0]
        .message
        .contains("unknown upstream workload `databse`"));
    assert_eq!(errs[0].hint.as_deref(), Some("did you mean `database`?"));
}

#[test]
fn port_clash_names_both_users() {
    let dir = sample();
    let f = edit(
        dir.path(),
        "workloads/database.yaml",
        "listen: 127.0.0.1:15003",
        "listen: 0.0.0.0:15002",
    );
    let errs = errors(dir.path());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].file, f);
    assert!(errs[0].message.contains("port clash"), "{}", errs[0]);
    assert!(
        errs[0].message.contains("backend: inbound.listen"),
        "{}",
        errs[0]
    );
}

#[test]
fn unknown_key_is_rejected_with_did_you_mean() {
    let dir = sample();
    let f = edit(dir.path(), "warden.yaml", "svid_ttl: 1h", "svid_tll: 1h");
    let errs = errors(dir.path());
    assert_eq!(errs[0].file, f);
    assert_eq!(errs[0].line, line_of(&f, "svid_tll"));
    assert!(
        errs[0].message.contains("unknown field `svid_tll`"),
        "{}",
        errs[0]
    );
    assert_eq!(
        errs[0].hint.as_deref(),
        Some("did you mean `svid_ttl`?"),
        "{}",
        errs[0]
    );
}

#[test]
fn malformed_yaml_is_reported_with_position_and_other_files_still_checked() {
    let dir = sample();
    let f = edit(
        dir.path(),
        "workloads/frontend.yaml",
        "sidecar:\n",
        "sidecar: [\n",
    );
    edit(
        dir.path(),
        "workloads/backend.yaml",
        "workload: database",
        "workload: nowhere",
    );
    let errs = errors(dir.path());
    assert!(errs.iter().any(|e| e.file == f && e.line > 0), "{errs:?}");
    assert!(
        errs.iter().any(|e| e.message.contains("nowhere")),
        "{errs:?}"
    );
}

#[test]
fn svid_ttl_longer_than_the_ca_allows_is_rejected() {
    let dir = sample();
    let f = edit(dir.path(), "warden.yaml", "svid_ttl: 1h", "svid_ttl: 48h");
    let errs = errors(dir.path());
    assert_eq!(errs[0].line, line_of(&f, "svid_ttl"));
    assert!(
        errs[0].message.contains("longer than the CA's ttl 1d"),
        "{}",
        errs[0]
    );
}

#[test]
fn unreadable_or_wrong_type_upstream_files_are_reported() {
    let dir = sample();
    fs::write(
        dir.path().join("up.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("up.key"),
        "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    let f = edit(
        dir.path(),
        "warden.yaml",
        "  state_dir: .warden",
        "  state_dir: .warden\n  upstream: { cert: up.pem, key: up.key }",
    );
    let errs = errors(dir.path());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].message.contains("is not a PKCS#8 PEM key"),
        "{}",
        errs[0]
    );
    assert_eq!(errs[0].line, line_of(&f, "upstream"));
    edit(
        dir.path(),
        "warden.yaml",
        "cert: up.pem",
        "cert: missing.pem",
    );
    let errs = errors(dir.path());
    assert!(
        errs.iter()
            .any(|e| e.message.contains("cannot read") && e.message.contains("missing.pem")),
        "{errs:?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let dir = sample();
    edit(
        dir.path(),
        "warden.yaml",
        "trust_domain: example.org",
        "trust_domain: Example.org",
    );
    edit(dir.path(), "warden.yaml", "mode: enforce", "mode: strict");
    edit(
        dir.path(),
        "workloads/database.yaml",
        "app: 127.0.0.1:18083",
        "app: localhost",
    );
    let errs = errors(dir.path());
    let text = Diagnostics(errs.clone()).to_string();
    assert!(text.contains("invalid trust domain"), "{text}");
    assert!(text.contains("unknown mode `strict`"), "{text}");
    assert!(text.contains("`localhost` is not an IP:port"), "{text}");
}

#[test]
fn escaped_slashes_defaults_to_reject_and_refuses_unknown_actions() {
    let dir = sample();
    let config = crate::config::load(dir.path()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        config.policy.escaped_slashes,
        crate::config::EscapedSlashes::Reject
    );
    edit(
        dir.path(),
        "warden.yaml",
        "deny_status: 403",
        "deny_status: 403\n  escaped_slashes: keep_unchanged",
    );
    let text = Diagnostics(errors(dir.path())).to_string();
    assert!(
        text.contains("unknown escaped_slashes action `keep_unchanged`"),
        "{text}"
    );
    assert!(text.contains("unescape_and_redirect"), "{text}");
}

#[test]
fn missing_main_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let errs = errors(dir.path());
    assert!(errs[0].message.contains("file not found"));
    assert!(errs[0].file.ends_with("warden.yaml"));
}

#[test]
fn a_wildcard_address_clashes_with_a_later_specific_one_but_other_ips_do_not() {
    let dir = sample();
    edit(
        dir.path(),
        "workloads/backend.yaml",
        "listen: 127.0.0.1:15002",
        "listen: 0.0.0.0:15001",
    );
    let errs = errors(dir.path());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].file.ends_with("frontend.yaml"), "{}", errs[0]);
    assert!(
        errs[0]
            .message
            .contains("already used by backend: inbound.listen"),
        "{}",
        errs[0]
    );

    let dir = sample();
    edit(
        dir.path(),
        "workloads/backend.yaml",
        "listen: 127.0.0.1:15002",
        "listen: 127.0.0.2:15001",
    );
    assert!(
        crate::config::load(dir.path()).is_ok(),
        "same port on another IP is fine"
    );
}
