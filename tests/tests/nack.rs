//! Bad configuration never takes a mesh down: a resource Envoy rejects is NACKed, the
//! server records the NACK (metrics and config dump) and the last good config keeps
//! serving; an invalid config directory is refused by the server itself.

use std::net::TcpListener;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use warden_e2e::{wait, Mesh, MeshSpec, XdsMode};

warden_e2e::scenarios_for_both_xds_modes!(
    listener_envoy_cannot_bind_is_nacked_recorded_and_traffic_keeps_flowing,
    invalid_config_is_refused_by_the_server_and_the_last_good_config_keeps_serving,
);

const TIMEOUT: Duration = Duration::from_secs(20);

fn listener_envoy_cannot_bind_is_nacked_recorded_and_traffic_keeps_flowing(
    mode: XdsMode,
) -> Result<()> {
    let mut mesh = Mesh::start(MeshSpec::new(mode))?;
    let frontend = mesh.sidecar("frontend")?;
    let rejected_before = frontend.stat("listener_manager.lds.update_rejected")?;
    let nacks_before = mesh
        .warden()
        .metric("warden_xds_nacks_total", &[("type", "lds")])?;

    // A valid config (the server cannot know the port is taken), but Envoy cannot bind
    // the new outbound listener: someone else holds the port.
    let squatter = TcpListener::bind("127.0.0.1:0")?;
    let busy = squatter.local_addr()?;
    mesh.add_workload("database", &[])?;
    mesh.set_upstream_addr("frontend", "database", busy)?;
    mesh.apply()?;

    let frontend = mesh.sidecar("frontend")?;
    wait::until_true("Envoy rejects the LDS update", TIMEOUT, || {
        Ok(frontend.stat("listener_manager.lds.update_rejected")? > rejected_before)
    })?;
    wait::until_true("server counts the LDS NACK", TIMEOUT, || {
        Ok(mesh
            .warden()
            .metric("warden_xds_nacks_total", &[("type", "lds")])?
            > nacks_before)
    })?;
    let dump = mesh.warden().config_dump()?;
    let lds = dump
        .get("nodes")
        .and_then(|n| n.get("frontend-sidecar"))
        .or_else(|| dump.get("frontend-sidecar"))
        .and_then(|n| n["types"].get("lds"))
        .with_context(|| format!("no lds status for frontend-sidecar: {dump}"))?;
    ensure!(
        lds["rejected"] == true,
        "server dump does not mark LDS rejected: {lds}"
    );
    let detail = lds["last_nack"]["error_detail"].as_str().unwrap_or("");
    ensure!(
        detail.contains(&busy.port().to_string()),
        "NACK detail does not name the busy port: {detail:?}"
    );

    // Traffic on the last good config keeps flowing.
    for _ in 0..5 {
        let response = mesh.call("frontend", "backend", "/still-up", &[])?;
        ensure!(
            response.status == 200,
            "status {} after NACK",
            response.status
        );
    }
    drop(squatter);
    Ok(())
}

fn invalid_config_is_refused_by_the_server_and_the_last_good_config_keeps_serving(
    mode: XdsMode,
) -> Result<()> {
    let mesh = Mesh::start(MeshSpec::new(mode))?;
    let failures_before = mesh
        .warden()
        .metric("warden_config_reload_failures_total", &[])?;
    let lds_before = mesh
        .sidecar("frontend")?
        .stat("listener_manager.lds.update_attempt")?;
    mesh.write_raw(
        "workloads/frontend.yaml",
        "name: frontend\nspiffe_id: not-a-spiffe-id\n",
    )?;
    wait::until_true("server refuses the broken config", TIMEOUT, || {
        Ok(mesh
            .warden()
            .metric("warden_config_reload_failures_total", &[])?
            > failures_before)
    })?;
    let response = mesh.call("frontend", "backend", "/still-up", &[])?;
    ensure!(
        response.status == 200,
        "status {} after a refused reload",
        response.status
    );
    ensure!(
        mesh.sidecar("frontend")?
            .stat("listener_manager.lds.update_attempt")?
            == lds_before,
        "a refused config still produced an LDS push"
    );
    Ok(())
}
