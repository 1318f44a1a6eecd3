//! The xDS channel is TLS and every sidecar must prove its workload: real Envoy with its
//! join token gets its SVID and serves mTLS; real Envoy presenting another workload's
//! token (or a revoked one) gets nothing, and `warden serve` counts and audits the
//! refusal; a plaintext client never reaches gRPC on the TLS port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use warden_e2e::envoy::Envoy;
use warden_e2e::mesh::spiffe_id;
use warden_e2e::ports::free_addr;
use warden_e2e::{warden, Mesh, MeshSpec, XdsMode};

warden_e2e::scenarios_for_both_xds_modes!(envoy_with_its_join_token_gets_its_svid_and_serves_mtls,);

fn envoy_with_its_join_token_gets_its_svid_and_serves_mtls(mode: XdsMode) -> Result<()> {
    let mesh = Mesh::start(MeshSpec::new(mode))?;
    let response = mesh.call("frontend", "backend", "/attested", &[])?;
    ensure!(response.status == 200, "status {}", response.status);
    let certs = mesh.sidecar("frontend")?.certs()?.to_string();
    ensure!(
        certs.contains(&spiffe_id("frontend")),
        "frontend SVID missing: {certs}"
    );
    let attested = mesh
        .warden()
        .metric("warden_xds_attestations_total", &[("method", "join_token")])?;
    ensure!(
        attested >= 2.0,
        "two sidecars attested, metric says {attested}"
    );
    Ok(())
}

/// Counts `reason` refusals on the mesh's server.
fn refusals(mesh: &Mesh, reason: &str) -> Result<f64> {
    mesh.warden().metric(
        "warden_xds_attestation_failures_total",
        &[("reason", reason)],
    )
}

/// Starts an Envoy for `workload` (a fresh admin port) presenting `token_file`, waits
/// until the server has refused it `reason` at least once more, and checks that the
/// sidecar holds no certificate.
fn refused_sidecar(
    mesh: &mut Mesh,
    workload: &str,
    token_file: &std::path::Path,
    reason: &str,
) -> Result<()> {
    let before = refusals(mesh, reason)?;
    let config = mesh.config_dir();
    let yaml = warden::cli(
        &[
            "bootstrap",
            "--config",
            config.to_str().context("utf-8")?,
            "--workload",
            workload,
            "--token-file",
            token_file.to_str().context("utf-8")?,
        ],
        &[],
    )?;
    // Its own admin port: the real sidecar of `workload` is running.
    let admin = free_addr()?;
    let real_admin = mesh.workload(workload)?.admin.port();
    let yaml = yaml.replace(
        &format!("port_value: {real_admin}"),
        &format!("port_value: {}", admin.port()),
    );
    let path = mesh
        .dir()
        .join(format!("bootstrap-impostor-{workload}-{reason}.yaml"));
    std::fs::write(&path, yaml)?;
    let envoy = Envoy::start(
        &format!("impostor-{workload}-{reason}"),
        &path,
        admin,
        &mesh.dir().join("logs"),
    )?;
    warden_e2e::wait::until_true(
        &format!("refusal {reason}"),
        Duration::from_secs(30),
        || Ok(refusals(mesh, reason)? > before),
    )?;
    let certs = envoy.certs()?;
    ensure!(
        certs["certificates"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "a refused sidecar holds certificates: {certs}"
    );
    let log = mesh.warden_mut().process().log();
    let line = log
        .lines()
        .rfind(|l| l.contains("xds_attestation_refused") && l.contains(reason))
        .with_context(|| format!("no audit line for {reason}"))?;
    ensure!(
        line.contains("remote=127.0.0.1:"),
        "audit line lacks the caller: {line}"
    );
    let token = std::fs::read_to_string(token_file)?;
    ensure!(
        !log.contains(token.trim()),
        "the token leaked into the server log"
    );
    Ok(())
}

#[test]
fn sidecars_with_a_foreign_or_revoked_token_get_no_secret() -> Result<()> {
    let mut mesh = Mesh::start(MeshSpec::new(XdsMode::Sotw))?;
    // The backend's token presented as the frontend: node id of another workload.
    let backend_token = mesh.token_file("backend");
    refused_sidecar(&mut mesh, "frontend", &backend_token, "node_mismatch")?;
    // A revoked token.
    let spare = mesh.dir().join("tokens/spare");
    let config = mesh.config_dir();
    let out = warden::cli(
        &[
            "token",
            "create",
            "--config",
            config.to_str().context("utf-8")?,
            "--workload",
            "frontend",
            "--out",
            spare.to_str().context("utf-8")?,
        ],
        &[],
    )?;
    ensure!(out.is_empty(), "--out prints nothing");
    let token = std::fs::read_to_string(&spare)?;
    let id = token.split('.').nth(1).context("token id")?.to_owned();
    warden::cli(
        &[
            "token",
            "revoke",
            "--config",
            config.to_str().context("utf-8")?,
            &id,
        ],
        &[],
    )?;
    let reloads = mesh.warden().metric("warden_config_reloads_total", &[])?;
    mesh.warden().reload()?;
    warden_e2e::wait::until_true("reload after revoke", Duration::from_secs(20), || {
        Ok(mesh.warden().metric("warden_config_reloads_total", &[])? > reloads)
    })?;
    refused_sidecar(&mut mesh, "frontend", &spare, "token_revoked")?;
    // The real sidecars are unaffected.
    ensure!(mesh.call("frontend", "backend", "/still-fine", &[])?.status == 200);
    Ok(())
}

#[test]
fn a_plaintext_client_gets_no_grpc_from_the_tls_port() -> Result<()> {
    let mut mesh = Mesh::start(MeshSpec::new(XdsMode::Sotw))?;
    let mut tcp = TcpStream::connect(mesh.xds_addr())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    // The HTTP/2 client preface and an empty SETTINGS frame, as a plaintext gRPC client sends.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")?;
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    // An HTTP/2 server would answer with its SETTINGS frame (type 4 in byte 3).
    ensure!(
        answer.len() < 9 || answer[3] != 4,
        "the TLS port answered plaintext HTTP/2: {answer:?}"
    );
    let warden = mesh.warden_mut();
    warden_e2e::wait::until_true("handshake failure logged", Duration::from_secs(5), || {
        Ok(warden.process().log().contains("xDS TLS handshake failed"))
    })?;
    Ok(())
}
