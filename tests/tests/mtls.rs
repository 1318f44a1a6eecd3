//! The mesh path is mutual TLS with SPIFFE identities: frontend app → its sidecar
//! (outbound, plain HTTP) → mTLS → backend sidecar (inbound) → backend app, and the
//! inbound listener refuses peers without a certificate from the mesh's CA.

use anyhow::{ensure, Result};
use warden_e2e::mesh::spiffe_id;
use warden_e2e::tls::{self, TlsOutcome};
use warden_e2e::{warden, Mesh, MeshSpec, XdsMode};

warden_e2e::scenarios_for_both_xds_modes!(
    frontend_reaches_backend_over_mtls_and_backend_sees_the_frontend_identity,
    clients_without_a_certificate_or_with_one_from_another_ca_are_refused_at_the_handshake,
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

fn clients_without_a_certificate_or_with_one_from_another_ca_are_refused_at_the_handshake(
    mode: XdsMode,
) -> Result<()> {
    let mesh = Mesh::start(MeshSpec::new(mode))?;
    let inbound = mesh.workload("backend")?.inbound;

    // Positive control: a real SVID from the mesh CA gets through the handshake.
    let out = mesh.dir().join("svid");
    let config = mesh.config_dir();
    let frontend = spiffe_id("frontend");
    warden::cli(
        &[
            "mint",
            "--config",
            config.to_str().unwrap_or_default(),
            "--id",
            &frontend,
            "--out",
            out.to_str().unwrap_or_default(),
        ],
        &[],
    )?;
    let svid = tls::PemIdentity {
        cert_chain_pem: std::fs::read_to_string(out.join("svid.pem"))?,
        key_pem: std::fs::read_to_string(out.join("svid.key"))?,
    };
    let outcome = tls::attempt(inbound, Some(&svid), "/with-svid")?;
    ensure!(
        matches!(outcome, TlsOutcome::Answered(_)),
        "a valid SVID was refused: {outcome:?}"
    );
    let served_before = mesh.app("backend")?.served();

    let no_cert = tls::attempt(inbound, None, "/no-cert")?;
    let TlsOutcome::Refused(no_cert_reason) = no_cert else {
        anyhow::bail!("backend inbound answered a client without a certificate: {no_cert:?}");
    };
    // Same SPIFFE ID as the real frontend, signed by a CA the mesh does not trust.
    let forged = tls::foreign_ca_identity(&frontend)?;
    let foreign = tls::attempt(inbound, Some(&forged), "/forged")?;
    let TlsOutcome::Refused(foreign_reason) = foreign else {
        anyhow::bail!("backend inbound answered a foreign-CA client: {foreign:?}");
    };
    ensure!(
        mesh.app("backend")?.served() == served_before,
        "a refused request reached the backend app"
    );
    let no_cert_count = inbound_ssl_stat(&mesh, "backend", "fail_verify_no_cert")?;
    let foreign_count = inbound_ssl_stat(&mesh, "backend", "fail_verify_error")?;
    ensure!(
        no_cert_count >= 1,
        "Envoy counted no missing-certificate refusal (client saw: {no_cert_reason})"
    );
    ensure!(
        foreign_count >= 1,
        "Envoy counted no verification failure (client saw: {foreign_reason})"
    );
    // The mesh itself still works: the refusals are about the clients, not a dead listener.
    ensure!(mesh.call("frontend", "backend", "/", &[])?.status == 200);
    Ok(())
}
