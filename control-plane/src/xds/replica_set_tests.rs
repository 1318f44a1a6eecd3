use super::*;

fn parse(s: &str) -> Result<XdsServers, XdsServersError> {
    XdsServers::parse(s)
}

#[test]
fn a_list_of_addresses_keeps_its_order_in_the_grpc_target() {
    let s = parse("127.0.0.1:18000, 127.0.0.2:18001").unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s.grpc_target_uri(), "ipv4:127.0.0.1:18000,127.0.0.2:18001");
    assert_eq!(s.cluster_type(), "STATIC");
    let eps = s.endpoints_yaml(2);
    let yaml: serde_yaml::Value = serde_yaml::from_str(&eps).unwrap();
    let second = &yaml[1]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
    assert_eq!(second["address"], "127.0.0.2");
    assert_eq!(second["port_value"], 18001);
    assert_eq!(yaml[0]["priority"], 0);
    assert_eq!(
        yaml[1]["priority"], 1,
        "the list order is the failover order"
    );
}

#[test]
fn one_ipv4_address_renders_as_before() {
    let s = XdsServers::single("127.0.0.1:18000".parse().unwrap());
    assert_eq!(s, parse("127.0.0.1:18000").unwrap());
    assert_eq!(s.grpc_target_uri(), "127.0.0.1:18000");
}

#[test]
fn ipv6_addresses_get_the_ipv6_scheme_and_brackets() {
    let s = parse("[::1]:18000,[::2]:18000").unwrap();
    assert_eq!(s.grpc_target_uri(), "ipv6:[::1]:18000,[::2]:18000");
    let one = parse("[::1]:18000").unwrap();
    assert_eq!(one.grpc_target_uri(), "ipv6:[::1]:18000");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&one.endpoints_yaml(0)).unwrap();
    assert_eq!(
        yaml[0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"],
        "::1"
    );
}

#[test]
fn a_dns_name_is_resolved_by_the_sidecar() {
    let s = parse("Warden.Warden-System.svc.cluster.local.:18000").unwrap();
    assert_eq!(
        s,
        XdsServers::Dns {
            host: "warden.warden-system.svc.cluster.local".into(),
            port: 18000
        }
    );
    assert_eq!(
        s.grpc_target_uri(),
        "dns:///warden.warden-system.svc.cluster.local:18000"
    );
    assert_eq!(s.cluster_type(), "STRICT_DNS");
}

/// An input and the check its error must pass.
type Case = (&'static str, fn(&XdsServersError) -> bool);

#[test]
fn bad_replica_sets_are_refused_with_the_reason() {
    use XdsServersError as E;
    let cases: &[Case] = &[
        ("", |e| matches!(e, E::Empty(_))),
        ("127.0.0.1:1,", |e| matches!(e, E::Empty(_))),
        ("127.0.0.1", |e| matches!(e, E::NotHostPort(_))),
        ("127.0.0.1:0", |e| matches!(e, E::BadPort(_))),
        ("warden:0", |e| matches!(e, E::BadPort(_))),
        ("warden:99999", |e| matches!(e, E::BadPort(_))),
        ("warden:http", |e| matches!(e, E::BadPort(_))),
        ("war_den:1", |e| matches!(e, E::BadHost(_))),
        ("-warden:1", |e| matches!(e, E::BadHost(_))),
        ("a..b:1", |e| matches!(e, E::BadHost(_))),
        ("::1:18000", |e| matches!(e, E::BadHost(_))),
        ("wärden:1", |e| matches!(e, E::BadHost(_))),
        ("127.0.0.1:1,warden:1", |e| matches!(e, E::NameInList(_))),
        ("127.0.0.1:1,[::1]:1", |e| matches!(e, E::MixedFamilies)),
        ("127.0.0.1:1,127.0.0.1:1", |e| matches!(e, E::Duplicate(_))),
    ];
    for (input, want) in cases {
        let err = parse(input).expect_err(input);
        assert!(want(&err), "{input:?}: {err:?}");
        assert!(err.to_string().contains("--xds-server"), "{err}");
    }
    let long = format!("{}:1", "a".repeat(254));
    assert!(matches!(parse(&long), Err(E::BadHost(_))));
    let many: Vec<String> = (1..=MAX_REPLICAS + 1)
        .map(|i| format!("127.0.0.1:{i}"))
        .collect();
    assert!(matches!(parse(&many.join(",")), Err(E::TooMany(17))));
}

#[test]
fn several_replicas_need_a_shared_upstream_root() {
    let two = parse("127.0.0.1:1,127.0.0.1:2").unwrap();
    assert!(matches!(
        two.check_trust(false),
        Err(XdsServersError::ReplicasNeedUpstream(2))
    ));
    assert!(two.check_trust(true).is_ok());
    assert!(parse("127.0.0.1:1").unwrap().check_trust(false).is_ok());
    assert!(parse("warden:1").unwrap().check_trust(false).is_ok());
}

/// Envoy as the project locates it: `WARDEN_ENVOY`, `<workspace>/.venv/bin/envoy`.
fn envoy() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("WARDEN_ENVOY") {
        return Some(p.into());
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/envoy");
    venv.is_file().then_some(venv)
}

#[test]
fn envoy_accepts_replica_set_bootstraps_in_validate_mode() {
    use crate::xds::bootstrap::{render_for, AdsFlavor, Channel, RootCerts};
    let Some(envoy) = envoy() else {
        eprintln!("SKIPPED: no Envoy found (set WARDEN_ENVOY)");
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    let cfg = crate::config::load(&root).unwrap_or_else(|d| panic!("{d}"));
    let w = cfg.workload("frontend").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    let attested = Channel::Attested {
        roots: RootCerts::Inline(ca.cert.pem()),
        token_file: dir.path().join("token"),
    };
    for servers in ["127.0.0.1:18000,127.0.0.2:18000", "warden.example:18000"] {
        let servers = parse(servers).unwrap();
        for channel in [&attested, &Channel::InsecurePlaintext] {
            let text = render_for(&cfg, w, AdsFlavor::Sotw, channel, &servers);
            let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            let ads = &yaml["dynamic_resources"]["ads_config"]["grpc_services"][0];
            if channel == &attested {
                assert_eq!(
                    ads["google_grpc"]["target_uri"],
                    servers.grpc_target_uri().as_str()
                );
            } else {
                let cluster = &yaml["static_resources"]["clusters"][0];
                assert_eq!(cluster["type"], servers.cluster_type());
                let eps = &cluster["load_assignment"]["endpoints"];
                assert_eq!(eps.as_sequence().unwrap().len(), servers.len());
            }
            let file = dir.path().join("bootstrap.yaml");
            std::fs::write(&file, &text).unwrap();
            let out = std::process::Command::new(&envoy)
                .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{servers:?} {channel:?}: {}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
