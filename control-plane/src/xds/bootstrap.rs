//! Renders the stock-Envoy bootstrap for one workload's sidecar from the template
//! `envoy/bootstrap.yaml`: node id and cluster, admin address, the static `warden-xds`
//! cluster (HTTP/2) and ADS (SotW `GRPC` or `DELTA_GRPC`). Pure string rendering.

use std::net::SocketAddr;

use crate::config::{Config, Workload};

const TEMPLATE: &str = include_str!("../../../envoy/bootstrap.yaml");

/// Which ADS variant the sidecar speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdsFlavor {
    /// State of the world (`StreamAggregatedResources`).
    Sotw,
    /// Incremental (`DeltaAggregatedResources`).
    Delta,
}

/// The bootstrap YAML for `workload`'s sidecar.
pub fn render(config: &Config, workload: &Workload, flavor: AdsFlavor) -> String {
    let ip = |a: SocketAddr| a.ip().to_string();
    let port = |a: SocketAddr| a.port().to_string();
    let api = match flavor {
        AdsFlavor::Sotw => "GRPC",
        AdsFlavor::Delta => "DELTA_GRPC",
    };
    let vars = [
        ("node_id", workload.node_id.clone()),
        ("node_cluster", workload.name.clone()),
        ("admin_address", ip(workload.sidecar_admin)),
        ("admin_port", port(workload.sidecar_admin)),
        ("ads_api_type", api.to_string()),
        ("xds_address", ip(config.server.xds_listen)),
        ("xds_port", port(config.server.xds_listen)),
    ];
    vars.iter().fold(TEMPLATE.to_string(), |acc, (k, v)| {
        acc.replace(&format!("{{{{{k}}}}}"), v)
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn mesh() -> Config {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
        crate::config::load(&root).unwrap_or_else(|d| panic!("{d}"))
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
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&render(&cfg, w, AdsFlavor::Delta)).unwrap();
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
        assert!(
            !render(&cfg, w, AdsFlavor::Sotw).contains("{{"),
            "every placeholder is filled"
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
        for flavor in [AdsFlavor::Sotw, AdsFlavor::Delta] {
            let file = dir.path().join("bootstrap.yaml");
            std::fs::write(
                &file,
                render(&cfg, cfg.workload("frontend").unwrap(), flavor),
            )
            .unwrap();
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
}
