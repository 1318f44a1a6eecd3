//! The `warden` CLI as a user runs it: exit codes, messages, and files that independent
//! tools (the `spiffe` crate, `openssl verify`) accept.

mod common;
use common::{sample, warden};

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn validate_accepts_the_sample_and_exits_zero() {
    let dir = sample();
    let out = warden(&["validate", s(dir.path())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn validate_prints_file_line_col_and_exits_one() {
    let dir = sample();
    let f = dir.path().join("workloads/backend.yaml");
    let text = fs::read_to_string(&f)
        .unwrap()
        .replace("workload: database", "workload: datbase");
    fs::write(&f, text).unwrap();
    let out = warden(&["validate", s(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:11:15: error: unknown upstream workload `datbase`",
            f.display()
        )),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `database`?"), "{err}");
}

#[test]
fn validate_reports_a_sidecar_whose_response_exceeds_the_ads_message_limit() {
    let dir = sample();
    // ~10 MB of policy data: over the 8 MiB ADS message limit once in the filter config.
    let ids: Vec<String> = (0..200_000)
        .map(|i| format!("\"spiffe://example.org/ns/bulk/sa/caller-{i:08}\""))
        .collect();
    let data = format!("{{\"ids\": [{}]}}", ids.join(","));
    fs::write(dir.path().join("policies/data.json"), &data).unwrap();
    // On the Wasm filter, whose configuration carries the data (the sample policy on
    // Envoy's RBAC filter does not read it, so nothing would be over the limit).
    let main = dir.path().join("warden.yaml");
    let yaml = fs::read_to_string(&main).unwrap();
    let yaml = yaml.replace(
        "  deny_status: 403\n",
        "  deny_status: 403\n  native_rbac: off\n",
    );
    fs::write(&main, yaml).unwrap();
    let out = warden(&["validate", s(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for w in ["backend", "frontend", "database"] {
        assert!(
            err.contains(&format!("workload `{w}`: the ecds response would be ")),
            "{err}"
        );
    }
    assert!(
        err.contains("over the ADS message limit of 8388608 bytes")
            && err.contains("largest resource `warden-authz`"),
        "{err}"
    );
}

#[test]
fn mint_writes_an_svid_that_independent_tools_accept() {
    let dir = sample();
    let out_dir = dir.path().join("out");
    let out = warden(&[
        "mint",
        "--config",
        s(dir.path()),
        "--id",
        "spiffe://example.org/ns/jobs/sa/report",
        "--out",
        s(&out_dir),
        "--ttl",
        "10m",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_mode = fs::metadata(out_dir.join("svid.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    // The spiffe crate enforces the X509-SVID leaf rules.
    let chain_pem = fs::read(out_dir.join("svid.pem")).unwrap();
    let key_pem = fs::read(out_dir.join("svid.key")).unwrap();
    let chain: Vec<u8> = x509_parser::pem::Pem::iter_from_buffer(&chain_pem)
        .flat_map(|p| p.unwrap().contents)
        .collect();
    let key = x509_parser::pem::parse_x509_pem(&key_pem)
        .unwrap()
        .1
        .contents;
    let svid = spiffe::X509Svid::parse_from_der(&chain, &key).expect("valid X509-SVID");
    assert_eq!(
        svid.spiffe_id().to_string(),
        "spiffe://example.org/ns/jobs/sa/report"
    );

    // openssl verifies the chain against the bundle.
    let verify = Command::new("openssl")
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(out_dir.join("bundle.pem"))
        .arg(out_dir.join("svid.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // The requested 10 minute lifetime (plus the 30 s backdate) is what the leaf says.
    let (_, pem) = x509_parser::pem::parse_x509_pem(&chain_pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(life, 600 + 30);
}

#[test]
fn mint_refuses_an_id_outside_the_trust_domain() {
    let dir = sample();
    let out_dir: PathBuf = dir.path().join("out");
    let out = warden(&[
        "mint",
        "--config",
        s(dir.path()),
        "--id",
        "spiffe://evil.org/x",
        "--out",
        s(&out_dir),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in trust domain example.org"));
    assert!(!out_dir.exists(), "nothing is written for a refused ID");
    let out = warden(&[
        "mint",
        "--config",
        s(dir.path()),
        "--id",
        "spiffe://example.org/a/../b",
        "--out",
        s(&out_dir),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bundle_prints_pem_and_jwks_of_the_same_ca() {
    let dir = sample();
    let pem = warden(&["bundle", "--config", s(dir.path())]);
    assert!(pem.status.success());
    assert!(String::from_utf8_lossy(&pem.stdout).starts_with("-----BEGIN CERTIFICATE-----"));
    let jwks = warden(&["bundle", "--config", s(dir.path()), "--format", "jwks"]);
    let doc: serde_json::Value = serde_json::from_slice(&jwks.stdout).unwrap();
    assert_eq!(doc["keys"][0]["use"], "x509-svid");
    // Same CA both times: the x5c is the PEM's DER.
    let der = x509_parser::pem::parse_x509_pem(&pem.stdout)
        .unwrap()
        .1
        .contents;
    use base64::Engine;
    let x5c = base64::engine::general_purpose::STANDARD.encode(der);
    assert_eq!(doc["keys"][0]["x5c"][0], x5c);
}

#[test]
fn policy_config_prints_what_the_sidecar_filter_receives() {
    let dir = sample();
    let out = warden(&[
        "policy",
        "config",
        "--config",
        s(dir.path()),
        "--workload",
        "backend",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        config["destination_principal"],
        "spiffe://example.org/ns/demo/sa/backend"
    );
    assert!(
        config["program"].as_str().is_some_and(|p| p.len() > 100),
        "{config}"
    );
    // The filter loads it as is.
    let plugin = warden_filter::PluginConfig::from_json(&out.stdout).unwrap();
    assert!(warden_filter::CompiledPolicy::load(&plugin).is_ok());
}

#[test]
fn help_lists_every_verb() {
    let out = warden(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for verb in ["validate", "mint", "bundle", "serve", "bootstrap", "policy"] {
        assert!(text.contains(verb), "{verb} missing from --help");
    }
}
