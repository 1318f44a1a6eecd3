//! `warden instances`: the instances of each workload as the running control plane sees
//! them (from its admin `/config_dump`): instance name, open streams, and whether the
//! instance has ACKed its current secrets. Read-only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use warden::xds::node::split_key;
use warden::xds::types::NodeId;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Config directory (its `server.admin_listen` is the default admin address).
    #[arg(long, env = "WARDEN_CONFIG", default_value = ".")]
    config: PathBuf,
    /// The control plane's admin address (default: from the config).
    #[arg(long, value_name = "IP:PORT")]
    admin: Option<SocketAddr>,
    /// Only this workload's node id.
    #[arg(long, value_name = "NODE_ID")]
    node: Option<String>,
}

/// A config dump of many thousands of instances is several MiB.
const MAX_BODY: usize = 64 << 20;

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let addr = match args.admin {
        Some(a) => a,
        None => match warden::config::load(&args.config) {
            Ok(c) => c.server.admin_listen,
            Err(diags) => {
                eprintln!("{diags}");
                return Ok(ExitCode::from(1));
            }
        },
    };
    let limits = warden::http_client::Limits {
        connect: Duration::from_secs(2),
        answer: Duration::from_secs(30),
        max_body: MAX_BODY,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (code, body) = runtime
        .block_on(warden::http_client::request(
            addr,
            "GET",
            "/config_dump",
            limits,
        ))
        .map_err(|e| anyhow::anyhow!("cannot read {addr}/config_dump: {e}"))?;
    if code != 200 {
        anyhow::bail!("{addr}/config_dump answered HTTP {code}");
    }
    let dump: serde_json::Value = serde_json::from_slice(&body)?;
    print!("{}", render(&dump, args.node.as_deref()));
    Ok(ExitCode::SUCCESS)
}

/// One line per instance, grouped by workload node id; a count per workload.
fn render(dump: &serde_json::Value, only: Option<&str>) -> String {
    let mut by_node: BTreeMap<String, Vec<(String, u64, bool)>> = BTreeMap::new();
    if let Some(nodes) = dump["nodes"].as_object() {
        for (key, n) in nodes {
            let key = NodeId::new(key.clone());
            let (node, instance) = split_key(&key);
            if only.is_some_and(|o| o != node) {
                continue;
            }
            let sds = &n["types"]["sds"];
            let synced =
                sds["version_acked"].is_string() && sds["version_acked"] == sds["version_current"];
            by_node.entry(node.to_string()).or_default().push((
                instance.unwrap_or("(default)").to_string(),
                n["connected_streams"].as_u64().unwrap_or(0),
                synced,
            ));
        }
    }
    let mut out = String::new();
    for (node, instances) in by_node {
        let connected = instances.iter().filter(|i| i.1 > 0).count();
        out.push_str(&format!(
            "{node}: {} instance(s), {connected} connected\n",
            instances.len()
        ));
        for (name, streams, synced) in instances {
            let state = if synced {
                "secrets ACKed"
            } else {
                "secrets not ACKed"
            };
            out.push_str(&format!("  {name:<40} streams {streams}  {state}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_grouped_under_their_workloads_node_id() {
        let dump = serde_json::json!({"nodes": {
            "backend-sidecar": {"connected_streams": 0, "types": {"sds": {"version_current": "a"}}},
            "backend-sidecar/b-1": {"connected_streams": 1, "types": {"sds": {"version_current": "x", "version_acked": "x"}}},
            "frontend-sidecar": {"connected_streams": 1, "types": {"sds": {"version_current": "y", "version_acked": "z"}}},
        }});
        let text = render(&dump, None);
        assert!(
            text.contains("backend-sidecar: 2 instance(s), 1 connected"),
            "{text}"
        );
        assert!(text.contains("b-1"), "{text}");
        assert!(text.contains("(default)"), "{text}");
        assert!(text.contains("secrets not ACKed"), "{text}");
        let only = render(&dump, Some("frontend-sidecar"));
        assert!(!only.contains("backend"), "{only}");
    }
}
