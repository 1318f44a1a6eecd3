use std::path::Path;

use super::*;

fn config(dir: &Path) -> Config {
    let mut cfg = crate::test_support::sample_mesh(&dir.join(".warden"));
    cfg.dir = dir.to_path_buf();
    cfg
}

fn parse_in(dir: &Path, text: &str) -> Result<FederationSettings, FederationConfigError> {
    FederationSettings::parse(text, &config(dir), &dir.join(FILE_NAME))
}

fn errors(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    match parse_in(dir.path(), text) {
        Ok(s) => panic!("accepted: {s:?}"),
        Err(e) => e.into_diagnostics().to_string(),
    }
}

#[test]
fn a_full_file_resolves_paths_against_the_config_dir_and_sorts_relationships() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.json"), "{}").unwrap();
    let s = parse_in(
        dir.path(),
        "bundle_endpoint:\n  listen: 127.0.0.1:8443\n  profile: https_spiffe\n  refresh_hint: 2s\n\
         refresh_floor: 1s\n\
         trust_domains:\n\
         - trust_domain: z.test\n  url: https://z.test/bundle\n  profile: https_web\n\
         - trust_domain: b.test\n  url: https://127.0.0.1:9443/\n  profile: https_spiffe\n  \
           endpoint_spiffe_id: spiffe://b.test/warden/control-plane\n  bundle_file: b.json\n",
    )
    .unwrap();
    let ep = s.bundle_endpoint.unwrap();
    assert_eq!(ep.refresh_hint, Duration::from_secs(2));
    assert_eq!(ep.profile, EndpointProfile::HttpsSpiffe);
    assert_eq!(s.refresh_floor, Duration::from_secs(1));
    let tds: Vec<&str> = s
        .relationships
        .iter()
        .map(|r| r.trust_domain.as_str())
        .collect();
    assert_eq!(tds, vec!["b.test", "z.test"]);
    assert_eq!(
        s.relationships[0].bundle_file,
        Some(dir.path().join("b.json"))
    );
    assert_eq!(s.relationships[1].auth, PeerAuth::Web { ca_file: None });
}

#[test]
fn unknown_keys_are_errors_at_their_line() {
    let msg = errors("refresh_floor: 1s\ntrust_domain: []\n");
    assert!(msg.contains("federation.yaml:2"), "{msg}");
    assert!(msg.contains("unknown field"), "{msg}");
}

#[test]
fn every_bad_relationship_is_reported_at_once_with_a_hint() {
    let msg = errors(
        "trust_domains:\n\
         - trust_domain: example.org\n  url: https://x.test/\n  profile: https_web\n\
         - trust_domain: b.test\n  url: http://b.test/\n  profile: https_spiffe\n\
         - trust_domain: c.test\n  url: https://c.test/\n  profile: https_spiffe\n  \
           endpoint_spiffe_id: spiffe://other.test/warden\n\
         - trust_domain: d.test\n  url: https://d.test/\n  profile: ftp\n\
         - trust_domain: e.test\n  url: https://e.test/\n  profile: https_web\n  bundle_file: missing.json\n",
    );
    for want in [
        "own trust domain",
        "not an https:// URL",
        "needs endpoint_spiffe_id",
        "is not in trust domain `c.test`",
        "unknown profile `ftp`",
        "does not exist",
    ] {
        assert!(msg.contains(want), "missing {want:?} in:\n{msg}");
    }
}

#[test]
fn a_trust_domain_listed_twice_is_an_error() {
    let rel = "- trust_domain: b.test\n  url: https://b.test/\n  profile: https_web\n";
    let msg = errors(&format!("trust_domains:\n{rel}{rel}"));
    assert!(msg.contains("listed twice"), "{msg}");
}

#[test]
fn endpoint_profiles_need_their_own_settings() {
    assert!(
        errors("bundle_endpoint:\n  listen: 127.0.0.1:1\n  profile: https_web\n")
            .contains("needs cert_file and key_file")
    );
    assert!(errors(
        "bundle_endpoint:\n  listen: 127.0.0.1:1\n  profile: https_spiffe\n  cert_file: a\n"
    )
    .contains("only used with profile https_web"));
    assert!(
        errors("bundle_endpoint:\n  listen: nowhere\n  profile: https_spiffe\n")
            .contains("not an IP:port")
    );
    assert!(errors("refresh_floor: 0s\n").contains("outside 1s"));
}
