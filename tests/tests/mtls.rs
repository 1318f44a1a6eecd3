//! The mesh path is mutual TLS with SPIFFE identities: frontend app → its sidecar
//! (outbound, plain HTTP) → mTLS → backend sidecar (inbound) → backend app, and the
//! inbound listener refuses peers without a certificate from the mesh's CA.

use anyhow::{ensure, Result};
use warden_e2e::mesh::spiffe_id;
use warden_e2e::tls::{self, TlsOutcome};
use warden_e2e::{Mesh, MeshSpec, XdsMode};

warden_e2e::scenarios_for_both_xds_modes!(
    frontend_reaches_backend_over_mtls_and_backend_sees_the_frontend_identity,
    client_without_a_certificate_is_refused_at_the_handshake,
    client_with_a_certificate_from_another_ca_is_refused_at_the_handshake,
);

/// Sum of the inbound listener's TLS stats ending in `suffix` on `workload`'s sidecar.
fn inbound_ssl_stat(mesh: &Mesh, workload: &str, suffix: &str) -> Result<u64> {
    let port = mesh.workload(workload)?.inbound.port();
    let stats = mesh
        .sidecar(workload)?
        .stats(&format!("listener\\.127\\.0\\.0\\.1_{port}\\.ssl\\."))?;
    Ok(stats
        .iter()
        .filter(|(name, _)| name.ends_with(suffix))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum())
}

fn frontend_reaches_backend_over_mtls_and_backend_sees_the_frontend_identity(
    mode: XdsMode,
) -> Result<()> {
    let mesh = Mesh::start(MeshSpec::new(mode))?;
    let response = mesh.call("frontend", "backend", "/orders/42", &[])?;
    ensure!(
        response.status == 200,
        "status {}: {}",
        response.status,
        response.text()
    );
    let echo = response.json()?;
    ensure!(
        echo["app"] == "backend" && echo["path"] == "/orders/42",
        "unexpected echo {echo}"
    );

    let frontend = spiffe_id("frontend");
    let xfcc = echo["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or("");
    let spiffe_header = echo["headers"]["x-spiffe-id"].as_str().unwrap_or("");
    ensure!(
        xfcc.contains(&format!("URI={frontend}")) || spiffe_header == frontend,
        "backend app did not see the frontend's SPIFFE ID (xfcc {xfcc:?}, x-spiffe-id {spiffe_header:?})"
    );
    ensure!(
        inbound_ssl_stat(&mesh, "backend", "ssl.handshake")? >= 1,
        "no TLS handshake on backend inbound"
    );

    // Each sidecar holds its own SVID, delivered over SDS.
    for name in ["frontend", "backend"] {
        let certs = mesh.sidecar(name)?.certs()?.to_string();
        ensure!(
            certs.contains(&spiffe_id(name)),
            "{name} sidecar /certs lacks its SVID: {certs}"
        );
    }
    Ok(())
}

fn client_without_a_certificate_is_refused_at_the_handshake(mode: XdsMode) -> Result<()> {
    let mesh = Mesh::start(MeshSpec::new(mode))?;
    let inbound = mesh.workload("backend")?.inbound;
    let served_before = mesh.app("backend")?.served();
    let outcome = tls::attempt(inbound, None, "/no-cert")?;
    let TlsOutcome::Refused(reason) = outcome else {
        anyhow::bail!("backend inbound answered a client without a certificate: {outcome:?}");
    };
    ensure!(
        mesh.app("backend")?.served() == served_before,
        "the request reached the backend app"
    );
    let refused = inbound_ssl_stat(&mesh, "backend", "fail_verify_no_cert")?
        + inbound_ssl_stat(&mesh, "backend", "connection_error")?;
    ensure!(
        refused >= 1,
        "Envoy counted no refused handshake (client saw: {reason})"
    );
    // The mesh itself still works: the refusal is about the client, not a dead listener.
    ensure!(mesh.call("frontend", "backend", "/", &[])?.status == 200);
    Ok(())
}

fn client_with_a_certificate_from_another_ca_is_refused_at_the_handshake(
    mode: XdsMode,
) -> Result<()> {
    let mesh = Mesh::start(MeshSpec::new(mode))?;
    let inbound = mesh.workload("backend")?.inbound;
    let served_before = mesh.app("backend")?.served();
    // Same SPIFFE ID as the real frontend, signed by a CA the mesh does not trust.
    let forged = tls::foreign_ca_identity(&spiffe_id("frontend"))?;
    let outcome = tls::attempt(inbound, Some(&forged), "/forged")?;
    let TlsOutcome::Refused(reason) = outcome else {
        anyhow::bail!("backend inbound answered a foreign-CA client: {outcome:?}");
    };
    ensure!(
        mesh.app("backend")?.served() == served_before,
        "the request reached the backend app"
    );
    let refused = inbound_ssl_stat(&mesh, "backend", "fail_verify_error")?
        + inbound_ssl_stat(&mesh, "backend", "connection_error")?;
    ensure!(
        refused >= 1,
        "Envoy counted no refused handshake (client saw: {reason})"
    );
    ensure!(mesh.call("frontend", "backend", "/", &[])?.status == 200);
    Ok(())
}
