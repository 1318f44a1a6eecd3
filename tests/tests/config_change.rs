//! Config changes reach running Envoys live: a new upstream and a moved outbound port are
//! pushed after a reload, Envoy ACKs them (its own `update_success` counters and the
//! server's config dump agree), and traffic uses the new listeners.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use warden_e2e::{http, wait, Mesh, MeshSpec, XdsMode};

warden_e2e::scenarios_for_both_xds_modes!(
    new_upstream_reaches_envoy_live_and_is_acked,
    changed_outbound_port_reaches_envoy_live_and_is_acked,
);

/// Lets every verified peer in the trust domain through, so routing is what is tested.
const ALLOW_MESH: &str = "package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n\n\
allow if {\n\tstartswith(input.attributes.source.principal, \"spiffe://example.org/\")\n}\n";

const PUSH_TIMEOUT: Duration = Duration::from_secs(20);

/// The server's view of one node and type: (version sent, version ACKed, rejected).
pub fn server_type_status(
    mesh: &Mesh,
    node: &str,
    short_type: &str,
) -> Result<(String, String, bool)> {
    let dump = mesh.warden().config_dump()?;
    let status = find_node(&dump, node)
        .and_then(|n| n.get("types"))
        .and_then(|t| t.get(short_type))
        .with_context(|| {
            format!("no {short_type} status for node {node} in server config dump: {dump}")
        })?;
    let text = |k: &str| {
        status
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    Ok((
        text("version_sent"),
        text("version_acked"),
        status["rejected"].as_bool().unwrap_or(false),
    ))
}

/// Finds a node's entry wherever the dump nests it (`{nodes: {id: ..}}` or `{id: ..}`).
fn find_node<'a>(dump: &'a serde_json::Value, node: &str) -> Option<&'a serde_json::Value> {
    dump.get("nodes")
        .and_then(|n| n.get(node))
        .or_else(|| dump.get(node))
}

/// Waits until the server records an ACK of its latest `short_type` response to `node`.
fn wait_server_ack(mesh: &Mesh, node: &str, short_type: &str, newer_than: &str) -> Result<()> {
    wait::until_true(
        &format!("server sees {node} ACK a new {short_type}"),
        PUSH_TIMEOUT,
        || {
            let (sent, acked, rejected) = server_type_status(mesh, node, short_type)?;
            Ok(!rejected && !sent.is_empty() && sent == acked && acked != newer_than)
        },
    )
}

fn new_upstream_reaches_envoy_live_and_is_acked(mode: XdsMode) -> Result<()> {
    let mut spec = MeshSpec::new(mode);
    spec.policy = ALLOW_MESH.to_owned();
    let mut mesh = Mesh::start(spec)?;
    let frontend = mesh.sidecar("frontend")?;
    let (cds_before, lds_before) = (
        frontend.stat("cluster_manager.cds.update_success")?,
        frontend.stat("listener_manager.lds.update_success")?,
    );
    let (_, lds_acked_before, _) = server_type_status(&mesh, "frontend-sidecar", "lds")?;

    mesh.add_workload("database", &[])?;
    let route = mesh.set_upstream("frontend", "database")?;
    mesh.apply()?;
    mesh.start_app("database")?;
    mesh.start_sidecar("database")?;

    let response = wait::until(
        "frontend → database over the new listener",
        PUSH_TIMEOUT,
        || Ok(http::get(route, "/new").ok().filter(|r| r.status == 200)),
    )?;
    ensure!(
        response.json()?["app"] == "database",
        "wrong app answered: {}",
        response.text()
    );
    let frontend = mesh.sidecar("frontend")?;
    ensure!(
        frontend.stat("cluster_manager.cds.update_success")? > cds_before,
        "CDS update not counted by Envoy"
    );
    ensure!(
        frontend.stat("listener_manager.lds.update_success")? > lds_before,
        "LDS update not counted by Envoy"
    );
    let dump = frontend
        .config_dump_resource("dynamic_listeners")?
        .to_string();
    ensure!(
        dump.contains(&format!("\"port_value\":{}", route.port())),
        "new listener not in Envoy config_dump"
    );
    wait_server_ack(&mesh, "frontend-sidecar", "lds", &lds_acked_before)?;
    ensure!(
        mesh.call("frontend", "backend", "/", &[])?.status == 200,
        "the old route broke"
    );
    Ok(())
}

fn changed_outbound_port_reaches_envoy_live_and_is_acked(mode: XdsMode) -> Result<()> {
    let mut spec = MeshSpec::new(mode);
    spec.policy = ALLOW_MESH.to_owned();
    let mut mesh = Mesh::start(spec)?;
    let old = mesh.outbound("frontend", "backend")?;
    let lds_before = mesh
        .sidecar("frontend")?
        .stat("listener_manager.lds.update_success")?;
    let (_, lds_acked_before, _) = server_type_status(&mesh, "frontend-sidecar", "lds")?;

    let new = mesh.set_upstream("frontend", "backend")?;
    mesh.apply()?;
    let response = wait::until(
        "frontend → backend on the moved port",
        PUSH_TIMEOUT,
        || Ok(http::get(new, "/moved").ok().filter(|r| r.status == 200)),
    )?;
    ensure!(response.json()?["app"] == "backend");
    ensure!(
        mesh.sidecar("frontend")?
            .stat("listener_manager.lds.update_success")?
            > lds_before,
        "LDS update not counted by Envoy"
    );
    wait_server_ack(&mesh, "frontend-sidecar", "lds", &lds_acked_before)?;
    // The old listener drains away (drain time 1 s).
    wait::until_true("old outbound port closed", PUSH_TIMEOUT, || {
        Ok(http::get(old, "/old").is_err())
    })?;
    Ok(())
}
