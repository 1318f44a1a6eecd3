//! Renders the stock-Envoy bootstrap for one workload's sidecar from the templates in
//! `envoy/`: node id and cluster, admin address, ADS (SotW `GRPC` or `DELTA_GRPC`) and
//! the channel to `warden serve`. By default the channel is attested: `google_grpc` over
//! TLS that verifies the control plane's certificate against the trust bundle and its
//! SPIFFE ID, plus the workload's credential read from a file for every new stream. The
//! plaintext channel (`envoy_grpc` to a static cluster) exists only for local
//! development. Pure string rendering.
//!
//! Instances: `node.cluster` is always the workload's node id and `node.id` the instance
//! name ([`NodeOptions::instance`]; the node id when unset, i.e. the default instance,
//! or whatever `--service-node` says on Envoy's command line). `INSTANCE_IP` goes into
//! the node metadata, and a DNS resolver for `inbound.service` names can be set.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::config::{Config, Workload};
use crate::xds::replica_set::XdsServers;
use crate::xds::server::tls::control_plane_dns_name;

const TEMPLATE: &str = include_str!("../../../envoy/bootstrap.yaml");
const ADS_ATTESTED: &str = include_str!("../../../envoy/ads-attested.yaml");
const ADS_PLAINTEXT: &str = include_str!("../../../envoy/ads-plaintext.yaml");
const STATIC_PLAINTEXT: &str = include_str!("../../../envoy/static-plaintext.yaml");

/// Where the sidecar reads its credential when `--token-file` is not given: mount the
/// join token or the projected service-account token (audience `warden`) here.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/warden/token";

/// Which ADS variant the sidecar speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdsFlavor {
    /// State of the world (`StreamAggregatedResources`).
    Sotw,
    /// Incremental (`DeltaAggregatedResources`).
    Delta,
}

/// The trust anchors the sidecar verifies the control plane with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file on the sidecar's host (read once when Envoy starts).
    File(PathBuf),
    /// PEM inlined into the bootstrap.
    Inline(String),
}

/// How the sidecar connects to `warden serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// TLS + credential (the default).
    Attested {
        /// Trust anchors for the server's certificate.
        roots: RootCerts,
        /// The credential file (join token or service-account token), absolute.
        token_file: PathBuf,
    },
    /// Plaintext and no credential: local development only.
    InsecurePlaintext,
}

/// Per-instance settings of a bootstrap (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeOptions {
    /// `node.id`: the instance name (`None`: the workload's node id, its default
    /// instance; a `--service-node` on Envoy's command line overrides it either way).
    pub instance: Option<String>,
    /// The instance's own address, sent as node metadata `INSTANCE_IP`.
    pub instance_ip: Option<IpAddr>,
    /// The DNS server Envoy resolves `inbound.service` names with (c-ares `resolvers`;
    /// default: the system's resolv.conf).
    pub dns_resolver: Option<SocketAddr>,
    /// The sidecar's admin address (default: `sidecar.admin` of the workload file; set
    /// it when several instances share a host).
    pub admin: Option<SocketAddr>,
}

/// The bootstrap YAML for `workload`'s sidecar (its default instance).
pub fn render(
    config: &Config,
    workload: &Workload,
    flavor: AdsFlavor,
    channel: &Channel,
) -> String {
    render_for(
        config,
        workload,
        flavor,
        channel,
        &XdsServers::single(config.server.xds_listen),
    )
}

/// Like [`render`], connecting to the replica set `servers` (see `replica_set.rs`).
pub fn render_for(
    config: &Config,
    workload: &Workload,
    flavor: AdsFlavor,
    channel: &Channel,
    servers: &XdsServers,
) -> String {
    render_node(
        config,
        workload,
        flavor,
        channel,
        &NodeOptions::default(),
        servers,
    )
}

fn node_metadata(node: &NodeOptions) -> String {
    match node.instance_ip {
        Some(ip) => format!(
            "  metadata: {{ {}: \"{ip}\" }}",
            crate::xds::node::INSTANCE_IP_FIELD
        ),
        None => String::new(),
    }
}

fn dns_resolver(node: &NodeOptions) -> String {
    let Some(r) = node.dns_resolver else {
        return String::new();
    };
    format!(
        "typed_dns_resolver_config:
  name: envoy.network.dns_resolver.cares
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
    resolvers:
    - socket_address: {{ address: \"{}\", port_value: {} }}
    use_resolvers_as_fallback: false
    dns_resolver_options: {{ no_default_search_domain: true }}",
        r.ip(),
        r.port()
    )
}

/// The bootstrap YAML for one instance of `workload`'s sidecar.
pub fn render_node(
    config: &Config,
    workload: &Workload,
    flavor: AdsFlavor,
    channel: &Channel,
    node: &NodeOptions,
    servers: &XdsServers,
) -> String {
    let ip = |a: SocketAddr| a.ip().to_string();
    let port = |a: SocketAddr| a.port().to_string();
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    let api = match flavor {
        AdsFlavor::Sotw => "GRPC",
        AdsFlavor::Delta => "DELTA_GRPC",
    };
    let (grpc, statics) = match channel {
        Channel::Attested { .. } => (ADS_ATTESTED.trim_end(), ""),
        Channel::InsecurePlaintext => (ADS_PLAINTEXT.trim_end(), STATIC_PLAINTEXT.trim_end()),
    };
    let template = TEMPLATE
        .replace("{{grpc_services}}", grpc)
        .replace("{{static_resources}}", statics);
    let admin = node.admin.unwrap_or(workload.sidecar_admin);
    let mut vars = vec![
        (
            "node_id",
            node.instance
                .clone()
                .unwrap_or_else(|| workload.node_id.clone()),
        ),
        ("node_cluster", workload.node_id.clone()),
        ("node_metadata", node_metadata(node)),
        ("dns_resolver", dns_resolver(node)),
        ("admin_address", ip(admin)),
        ("admin_port", port(admin)),
        ("ads_api_type", api.to_string()),
        ("xds_target_uri", servers.grpc_target_uri()),
        ("xds_cluster_type", servers.cluster_type().to_string()),
        ("xds_endpoints", servers.endpoints_yaml(10)),
        (
            "ads_message_limit",
            crate::xds::limits::ADS_MESSAGE_LIMIT.to_string(),
        ),
    ];
    if let Channel::Attested { roots, token_file } = channel {
        let roots = match roots {
            RootCerts::File(p) => format!("{{ filename: {} }}", quoted(&p.to_string_lossy())),
            RootCerts::Inline(pem) => format!("{{ inline_string: {} }}", quoted(pem)),
        };
        vars.push(("root_certs", roots));
        vars.push(("token_file", quoted(&token_file.to_string_lossy())));
        vars.push(("server_name", control_plane_dns_name(&config.trust_domain)));
    }
    let out = vars.iter().fold(template, |acc, (k, v)| {
        acc.replace(&format!("{{{{{k}}}}}"), v)
    });
    // Placeholders with nothing to say leave empty lines.
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    format!("{}\n", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn mesh() -> Config {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
        crate::config::load(&root).unwrap_or_else(|d| panic!("{d}"))
    }

    fn attested() -> Channel {
        Channel::Attested {
            roots: RootCerts::Inline(
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            ),
            token_file: PathBuf::from("/run/warden/token"),
        }
    }

    /// Envoy as the project locates it: `WARDEN_ENVOY`, `<workspace>/.venv/bin/envoy`, PATH.
    fn envoy() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("WARDEN_ENVOY") {
            return Some(PathBuf::from(p));
        }
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/envoy");
        if venv.is_file() {
            return Some(venv);
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("envoy"))
                .find(|p| p.is_file())
        })
    }

    #[test]
    fn the_bootstrap_names_the_node_admin_and_ads_server() {
        let cfg = mesh();
        let w = cfg.workload("backend").unwrap();
        let plain = render(&cfg, w, AdsFlavor::Delta, &Channel::InsecurePlaintext);
        let yaml: serde_yaml::Value = serde_yaml::from_str(&plain).unwrap();
        assert_eq!(yaml["node"]["id"], "backend-sidecar");
        assert_eq!(
            yaml["admin"]["address"]["socket_address"]["port_value"],
            19002
        );
        assert_eq!(
            yaml["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        let xds = &yaml["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
            ["lb_endpoints"][0];
        assert_eq!(
            xds["endpoint"]["address"]["socket_address"]["port_value"],
            18000
        );
        for channel in [Channel::InsecurePlaintext, attested()] {
            assert!(
                !render(&cfg, w, AdsFlavor::Sotw, &channel).contains("{{"),
                "every placeholder is filled"
            );
        }
    }

    #[test]
    fn the_attested_bootstrap_verifies_the_control_plane_and_sends_the_token_file() {
        let cfg = mesh();
        let w = cfg.workload("frontend").unwrap();
        let text = render(&cfg, w, AdsFlavor::Sotw, &attested());
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let g = &yaml["dynamic_resources"]["ads_config"]["grpc_services"][0]["google_grpc"];
        assert_eq!(g["target_uri"], "127.0.0.1:18000");
        assert_eq!(
            g["channel_credentials"]["ssl_credentials"]["root_certs"]["inline_string"],
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(
            g["channel_args"]["args"]["grpc.ssl_target_name_override"]["string_value"],
            "warden-control-plane.example.org"
        );
        assert_eq!(
            g["credentials_factory_name"],
            "envoy.grpc_credentials.file_based_metadata"
        );
        let plugin = &g["call_credentials"][0]["from_plugin"]["typed_config"];
        assert_eq!(plugin["secret_data"]["filename"], "/run/warden/token");
        assert_eq!(plugin["header_prefix"], "Bearer ");
        assert!(
            yaml["static_resources"].is_null(),
            "no plaintext cluster in an attested bootstrap"
        );
    }

    #[test]
    fn both_channels_raise_the_receive_limit_to_the_ads_message_limit() {
        let cfg = mesh();
        let w = cfg.workload("frontend").unwrap();
        let limit = crate::xds::limits::ADS_MESSAGE_LIMIT as u64;
        let grpc = |channel: &Channel| {
            let text = render(&cfg, w, AdsFlavor::Sotw, channel);
            let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            yaml["dynamic_resources"]["ads_config"]["grpc_services"][0].clone()
        };
        let plain = grpc(&Channel::InsecurePlaintext);
        assert_eq!(
            plain["envoy_grpc"]["max_receive_message_length"].as_u64(),
            Some(limit)
        );
        let tls = grpc(&attested());
        assert_eq!(
            tls["google_grpc"]["channel_args"]["args"]["grpc.max_receive_message_length"]
                ["int_value"]
                .as_u64(),
            Some(limit)
        );
    }

    #[test]
    fn envoy_accepts_the_bootstrap_in_validate_mode() {
        let Some(envoy) = envoy() else {
            eprintln!("SKIPPED: no Envoy found (set WARDEN_ENVOY)");
            return;
        };
        let cfg = mesh();
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "wdn.00000000.x").unwrap();
        let roots = dir.path().join("roots.pem");
        let ca = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        std::fs::write(&roots, ca.cert.pem()).unwrap();
        let channels = [
            Channel::InsecurePlaintext,
            Channel::Attested {
                roots: RootCerts::File(roots.clone()),
                token_file: token.clone(),
            },
            Channel::Attested {
                roots: RootCerts::Inline(ca.cert.pem()),
                token_file: token,
            },
        ];
        for flavor in [AdsFlavor::Sotw, AdsFlavor::Delta] {
            for channel in &channels {
                let file = dir.path().join("bootstrap.yaml");
                let w = cfg.workload("frontend").unwrap();
                std::fs::write(&file, render(&cfg, w, flavor, channel)).unwrap();
                let out = std::process::Command::new(&envoy)
                    .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
                    .arg(&file)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{channel:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    #[test]
    fn an_instance_bootstrap_names_the_workload_as_cluster_and_envoy_accepts_it() {
        let cfg = mesh();
        let w = cfg.workload("backend").unwrap();
        let node = NodeOptions {
            instance: Some("backend-7f9c-x2".into()),
            instance_ip: Some("127.0.0.12".parse().unwrap()),
            dns_resolver: Some("127.0.0.1:5353".parse().unwrap()),
            admin: Some("127.0.0.12:19002".parse().unwrap()),
        };
        let text = render_node(
            &cfg,
            w,
            AdsFlavor::Sotw,
            &Channel::InsecurePlaintext,
            &node,
            &XdsServers::single(cfg.server.xds_listen),
        );
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(yaml["node"]["id"], "backend-7f9c-x2");
        assert_eq!(yaml["node"]["cluster"], "backend-sidecar");
        assert_eq!(yaml["node"]["metadata"]["INSTANCE_IP"], "127.0.0.12");
        assert_eq!(
            yaml["admin"]["address"]["socket_address"]["address"],
            "127.0.0.12"
        );
        let r = &yaml["typed_dns_resolver_config"]["typed_config"]["resolvers"][0];
        assert_eq!(r["socket_address"]["port_value"], 5353);
        let default = render(&cfg, w, AdsFlavor::Sotw, &Channel::InsecurePlaintext);
        let yaml: serde_yaml::Value = serde_yaml::from_str(&default).unwrap();
        assert_eq!(yaml["node"]["id"], "backend-sidecar");
        assert_eq!(yaml["node"]["cluster"], "backend-sidecar");
        assert!(yaml["node"]["metadata"].is_null());
        assert!(yaml["typed_dns_resolver_config"].is_null());
        let Some(envoy) = envoy() else {
            eprintln!("SKIPPED: no Envoy found (set WARDEN_ENVOY)");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bootstrap.yaml");
        std::fs::write(&file, &text).unwrap();
        let out = std::process::Command::new(&envoy)
            .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
