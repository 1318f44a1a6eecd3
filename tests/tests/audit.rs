//! The audit trail end to end with real Envoy sidecars: a denied call's decision id is
//! found by `warden audit show` within 2 s with source, destination, path, reason and
//! rule; an allowed call is recorded; the sidecars' SVID issuance and attestation, a CA
//! rotation step and a refused reload are in the trail; the chain verifies.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use warden_e2e::mesh::spiffe_id;
use warden_e2e::ports::free_addr;
use warden_e2e::warden::cli;
use warden_e2e::{http, tls, Mesh, MeshSpec, XdsMode};

/// frontend may call backend except under `/admin`.
const POLICY: &str = r#"package envoy.authz

import rego.v1

default allow := false

allow if {
	input.attributes.source.principal == "spiffe://example.org/ns/demo/sa/frontend"
	not startswith(input.attributes.request.http.path, "/admin")
}
"#;

fn audit(mesh: &Mesh, args: &[&str]) -> Result<String> {
    let config = mesh.config_dir();
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config.to_str().context("non-UTF-8 dir")?]);
    cli(&all, mesh.env())
}

/// Polls `warden audit <args> --json` until a line contains every one of `needles`.
fn wait_for(mesh: &Mesh, args: &[&str], needles: &[&str], within: Duration) -> Result<String> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut a = args.to_vec();
        a.push("--json");
        last = audit(mesh, &a)?;
        if let Some(line) = last.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return Ok(line.to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("no record with {needles:?} after {within:?} for `warden audit {args:?}`; last output:\n{last}")
}

fn mesh(policy_engine: &str) -> Result<(Mesh, std::net::SocketAddr)> {
    let mut spec = MeshSpec::new(XdsMode::Sotw);
    spec.policy = POLICY.to_owned();
    let als = free_addr()?;
    spec.extra_warden_yaml = format!("audit:\n  listen: {als}\n");
    if policy_engine == "wasm" {
        // Keep the Wasm filter (native RBAC is the default for simple policies).
        spec.env.push(("WARDEN_NATIVE_RBAC".into(), "off".into()));
    }
    Ok((Mesh::start(spec)?, als))
}

fn a_denied_call_is_found_by_its_decision_id(mesh: &Mesh, engine: &str) -> Result<()> {
    let denied = mesh.call("frontend", "backend", "/admin/users?secret=1", &[])?;
    ensure!(denied.status == 403, "expected 403, got {}", denied.status);
    let id = denied
        .header("x-warden-decision-id")
        .context("no decision id on the deny")?
        .to_owned();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(2);
    let story = loop {
        let config = mesh.config_dir();
        let out = std::process::Command::new(warden_e2e::locate::warden()?)
            .args([
                "audit",
                "show",
                &id,
                "--config",
                config.to_str().unwrap_or_default(),
            ])
            .output()?;
        if out.status.success() {
            break String::from_utf8(out.stdout)?;
        }
        ensure!(
            Instant::now() < deadline,
            "decision {id} not in the trail within 2 s ({engine})"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "decision {id} found after {:?}:\n{story}",
        started.elapsed()
    );
    let field = |name: &str| -> String {
        story
            .lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap_or_default()
            .to_string()
    };
    for (name, want) in [
        ("source", spiffe_id("frontend")),
        ("destination", spiffe_id("backend")),
        ("request", "/admin/users".to_string()),
        ("decision", "deny".to_string()),
    ] {
        ensure!(
            field(name).contains(&want),
            "{name} is not `{want}` in:\n{story}"
        );
    }
    ensure!(
        !story.contains("secret=1"),
        "the query string was recorded:\n{story}"
    );
    let reason = story
        .lines()
        .find(|l| l.starts_with("reason:"))
        .unwrap_or_default();
    let rule = story
        .lines()
        .find(|l| l.starts_with("rule:"))
        .unwrap_or_default();
    ensure!(reason.len() > "reason:".len() + 6, "no reason in:\n{story}");
    if engine == "wasm" {
        ensure!(
            rule.contains("policies/authz.rego:"),
            "no rule file:line in:\n{story}"
        );
    }
    Ok(())
}

fn the_trail(engine: &str) -> Result<()> {
    let (mut mesh, als) = mesh(engine)?;
    // Only sidecars with an SVID of this trust domain may write decisions.
    ensure!(
        tls::attempt(als, None, "/")?.refused(),
        "ALS accepted a client without a certificate"
    );
    let foreign = tls::foreign_ca_identity(&spiffe_id("backend"))?;
    ensure!(
        tls::attempt(als, Some(&foreign), "/")?.refused(),
        "ALS accepted a foreign CA's certificate"
    );
    a_denied_call_is_found_by_its_decision_id(&mesh, engine)?;

    let allowed = mesh.call("frontend", "backend", "/hello", &[])?;
    ensure!(
        allowed.status == 200,
        "expected 200, got {}",
        allowed.status
    );
    let backend = spiffe_id("backend");
    wait_for(
        &mesh,
        &[
            "--decision",
            "allow",
            "--destination",
            &backend,
            "--path-prefix",
            "/hello",
        ],
        &["\"allow\""],
        Duration::from_secs(5),
    )?;

    wait_for(
        &mesh,
        &["--kind", "svid_issued"],
        &[&backend],
        Duration::from_secs(2),
    )?;
    wait_for(
        &mesh,
        &["--kind", "attest_accepted"],
        &["backend-sidecar", "join_token"],
        Duration::from_secs(2),
    )?;

    let r = http::request(mesh.warden().admin(), "POST", "/ca/prepare", &[])?;
    ensure!(r.status == 200, "ca prepare: {} {}", r.status, r.text());
    wait_for(
        &mesh,
        &["--kind", "ca_step"],
        &["\"prepare\"", "\"forced\":true"],
        Duration::from_secs(2),
    )?;

    mesh.write_raw("warden.yaml", "trust_domain: [not, a, name]\n")?;
    wait_for(
        &mesh,
        &["--kind", "reload_refused"],
        &["warden.yaml"],
        Duration::from_secs(10),
    )?;

    let verified = audit(&mesh, &["verify"])?;
    ensure!(verified.starts_with("ok:"), "verify: {verified}");
    if engine == "wasm" {
        survives_a_killed_control_plane(&mut mesh)?;
    }
    Ok(())
}

/// SIGKILL `warden serve` right after a burst of denies; after the restart the chain
/// still verifies and continues, and new decisions arrive again.
fn survives_a_killed_control_plane(mesh: &mut Mesh) -> Result<()> {
    mesh.apply()?; // the good config back (the refused one would stop the restart)
    wait_for(
        mesh,
        &["--kind", "reload_accepted"],
        &["reload_accepted"],
        Duration::from_secs(10),
    )?;
    for _ in 0..20 {
        mesh.call("frontend", "backend", "/admin/burst", &[])?;
    }
    mesh.kill_and_restart_warden(1, |_| Ok(()))?;
    let verified = audit(mesh, &["verify"])?;
    ensure!(
        verified.starts_with("ok:"),
        "verify after SIGKILL: {verified}"
    );
    let denied = mesh.call("frontend", "backend", "/admin/after-restart", &[])?;
    let id = denied
        .header("x-warden-decision-id")
        .context("no decision id")?
        .to_owned();
    wait_for(
        mesh,
        &["--decision-id", &id],
        &["/admin/after-restart"],
        Duration::from_secs(15),
    )?;
    let verified = audit(mesh, &["verify"])?;
    ensure!(
        verified.starts_with("ok:"),
        "verify after restart: {verified}"
    );
    Ok(())
}

#[test]
fn audit_trail_with_the_wasm_filter() -> Result<()> {
    warden_e2e::process::report_failure(the_trail("wasm"))
}

#[test]
fn audit_trail_with_native_rbac() -> Result<()> {
    warden_e2e::process::report_failure(the_trail("native"))
}
