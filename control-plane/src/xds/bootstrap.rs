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
    vars.iter().fold(TEMPLATE.to_string(), |acc, (k, v)| acc.replace(&format!("{{{{{k}}}}}"), v))
}
