//! The Wasm filter authorizes each request on the caller's verified SPIFFE ID: allowed
//! and denied calls, forged identity headers, a policy hot reload on a live keep-alive
//! connection, an invalid policy that is never pushed, and dry-run mode.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use warden_e2e::mesh::spiffe_id;
use warden_e2e::{wait, Mesh, MeshSpec, XdsMode};

warden_e2e::scenarios_for_both_xds_modes!(
    allowed_call_reaches_the_app_with_a_trusted_identity_header,
    denied_call_gets_403_with_a_decision_id_and_never_reaches_the_app,
    forged_identity_headers_do_not_change_the_decision,
    policy_hot_reload_turns_a_deny_into_an_allow_on_a_keep_alive_connection,
    invalid_policy_is_not_pushed_and_the_old_policy_keeps_enforcing,
    dry_run_lets_a_denied_call_through_and_counts_it,
    a_policy_calling_glob_gets_the_extended_module_and_is_enforced,
    a_policy_on_the_rego_interpreter_gets_the_extended_module_and_a_conflict_denies,
);

const TIMEOUT: Duration = Duration::from_secs(20);

/// frontend may call backend except under `/admin`; only `admin` may call `/admin`.
const POLICY: &str = r#"package envoy.authz

import rego.v1

default allow := false

allow if {
	input.attributes.source.principal == "spiffe://example.org/ns/demo/sa/frontend"
	not startswith(input.attributes.request.http.path, "/admin")
}

allow if {
	input.attributes.source.principal == "spiffe://example.org/ns/demo/sa/admin"
}
"#;

/// [`POLICY`] plus frontend on `/admin`.
const POLICY_ADMIN_OPEN: &str = r#"package envoy.authz

import rego.v1

default allow := false

allow if {
	input.attributes.source.principal == "spiffe://example.org/ns/demo/sa/frontend"
}
"#;

/// frontend (matched with `glob.match`, an extended builtin) may call anything but
/// `/forbidden`.
const POLICY_GLOB: &str = r#"package envoy.authz

import rego.v1

default allow := false

allow if {
	glob.match("spiffe://example.org/ns/*/sa/frontend", ["/"], input.source_principal)
	input.attributes.request.http.path != "/forbidden"
}
"#;

/// Two definitions of `allow` with different values: the RVM would answer undefined where
/// OPA stops with a conflict, so this runs on regorus's interpreter (extended module).
/// frontend is allowed, except under `/conflict`, where both definitions hold: a conflict,
/// which denies.
const POLICY_CONFLICT: &str = r#"package envoy.authz

import rego.v1

default allow := false

allow := true if {
	input.attributes.source.principal == "spiffe://example.org/ns/demo/sa/frontend"
}

allow := false if {
	startswith(input.attributes.request.http.path, "/conflict")
}
"#;

fn mesh(mode: XdsMode, policy_mode: &str) -> Result<Mesh> {
    let mut spec = MeshSpec::new(mode);
    spec.policy = POLICY.to_owned();
    spec.policy_mode = policy_mode.to_owned();
    Mesh::start(spec)
}

/// Sum of the backend sidecar's stats matching `pattern`.
fn backend_stat_sum(mesh: &Mesh, pattern: &str) -> Result<u64> {
    let stats = mesh.sidecar("backend")?.stats(pattern)?;
    Ok(stats.values().filter_map(|v| v.parse::<u64>().ok()).sum())
}

/// True once the backend's `warden_authz` counter matching `pattern` is at least 1. The
/// filter flushes its counters to Envoy once a second, so this waits up to 5 s.
fn counted(mesh: &Mesh, pattern: &str) -> Result<bool> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if backend_stat_sum(mesh, pattern)? >= 1 {
            return Ok(true);
        }
        if std::time::Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn allowed_call_reaches_the_app_with_a_trusted_identity_header(mode: XdsMode) -> Result<()> {
    let mesh = mesh(mode, "enforce")?;
    let response = mesh.call("frontend", "backend", "/orders", &[])?;
    ensure!(
        response.status == 200,
        "status {}: {}",
        response.status,
        response.text()
    );
    let echo = response.json()?;
    ensure!(
        echo["headers"]["x-spiffe-id"] == spiffe_id("frontend"),
        "no trusted x-spiffe-id: {echo}"
    );
    ensure!(
        counted(&mesh, "warden_authz\\.allowed$")?,
        "allow not counted"
    );
    Ok(())
}

fn denied_call_gets_403_with_a_decision_id_and_never_reaches_the_app(mode: XdsMode) -> Result<()> {
    let mesh = mesh(mode, "enforce")?;
    let served = mesh.app("backend")?.served();
    let response = mesh.call("frontend", "backend", "/admin/users", &[])?;
    ensure!(
        response.status == 403,
        "status {}: {}",
        response.status,
        response.text()
    );
    let id = response
        .header("x-warden-decision-id")
        .context("403 without x-warden-decision-id")?
        .to_owned();
    ensure!(!id.is_empty(), "empty decision id");
    ensure!(
        mesh.app("backend")?.served() == served,
        "a denied request reached the app"
    );
    ensure!(
        counted(&mesh, "warden_authz\\.denied$")?,
        "deny not counted"
    );
    let sidecar = mesh.sidecar("backend")?;
    wait::until_true(
        "the decision id in the backend sidecar's log",
        Duration::from_secs(5),
        || {
            Ok(
                std::fs::read_to_string(format!(
                    "{}/logs/envoy-backend.log",
                    mesh.dir().display()
                ))?
                .contains(&id),
            )
        },
    )
    .with_context(|| format!("admin {}", sidecar.admin()))?;
    Ok(())
}

fn forged_identity_headers_do_not_change_the_decision(mode: XdsMode) -> Result<()> {
    let mesh = mesh(mode, "enforce")?;
    let admin = spiffe_id("admin");
    let xfcc = format!("By={};URI={admin}", spiffe_id("backend"));
    let forged = [
        ("x-spiffe-id", admin.as_str()),
        ("x-forwarded-client-cert", xfcc.as_str()),
    ];
    let response = mesh.call("frontend", "backend", "/admin/users", &forged)?;
    ensure!(
        response.status == 403,
        "forged headers changed the decision: status {}",
        response.status
    );

    let response = mesh.call("frontend", "backend", "/orders", &forged)?;
    ensure!(response.status == 200, "status {}", response.status);
    let echo = response.json()?;
    ensure!(
        echo["headers"]["x-spiffe-id"] == spiffe_id("frontend"),
        "forged x-spiffe-id reached the app: {echo}"
    );
    let seen_xfcc = echo["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or("");
    ensure!(
        !seen_xfcc.contains(&admin),
        "forged XFCC reached the app: {seen_xfcc}"
    );
    Ok(())
}

fn policy_hot_reload_turns_a_deny_into_an_allow_on_a_keep_alive_connection(
    mode: XdsMode,
) -> Result<()> {
    let mut mesh = mesh(mode, "enforce")?;
    let mut conn = mesh.connect("frontend", "backend")?;
    ensure!(
        conn.get("/admin/1", &[])?.status == 403,
        "not denied before the change"
    );
    mesh.set_policy(POLICY_ADMIN_OPEN);
    mesh.apply()?;
    let mut last = 0;
    wait::until_true("the new policy on the same connection", TIMEOUT, || {
        last = conn.get("/admin/2", &[])?.status;
        Ok(last == 200)
    })
    .with_context(|| format!("last status {last}"))?;
    Ok(())
}

fn invalid_policy_is_not_pushed_and_the_old_policy_keeps_enforcing(mode: XdsMode) -> Result<()> {
    let mut mesh = mesh(mode, "enforce")?;
    let ecds = "extension_config_discovery\\..*warden-authz.*update_(success|rejected)$";
    let updates_before = backend_stat_sum(&mesh, ecds)?;
    let failures_before = mesh
        .warden()
        .metric("warden_config_reload_failures_total", &[])?;
    mesh.set_policy("package envoy.authz\n\nimport rego.v1\n\nallow if {\n");
    mesh.apply()?;
    wait::until_true("the server refuses the invalid policy", TIMEOUT, || {
        Ok(mesh
            .warden()
            .metric("warden_config_reload_failures_total", &[])?
            > failures_before)
    })?;
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        backend_stat_sum(&mesh, ecds)? == updates_before,
        "an invalid policy reached Envoy"
    );
    ensure!(
        mesh.call("frontend", "backend", "/admin/x", &[])?.status == 403,
        "old deny no longer enforced"
    );
    ensure!(
        mesh.call("frontend", "backend", "/orders", &[])?.status == 200,
        "old allow no longer enforced"
    );
    Ok(())
}

fn dry_run_lets_a_denied_call_through_and_counts_it(mode: XdsMode) -> Result<()> {
    let mesh = mesh(mode, "dry-run")?;
    let response = mesh.call("frontend", "backend", "/admin/users", &[])?;
    ensure!(
        response.status == 200,
        "dry-run refused: status {}",
        response.status
    );
    ensure!(response.json()?["app"] == "backend");
    ensure!(
        counted(&mesh, "warden_authz\\.dry_run_denied$")?,
        "dry-run deny not counted"
    );
    Ok(())
}

fn a_policy_calling_glob_gets_the_extended_module_and_is_enforced(mode: XdsMode) -> Result<()> {
    let mut mesh = mesh(mode, "enforce")?;
    let module_of = |mesh: &Mesh| -> Result<String> {
        let dump = mesh.sidecar("backend")?.config_dump()?.to_string();
        Ok(if dump.contains("wasm-extended/warden_filter.wasm") {
            "extended".into()
        } else {
            "core".into()
        })
    };
    ensure!(
        module_of(&mesh)? == "core",
        "the sample policy needs only the core module"
    );
    ensure!(mesh.call("frontend", "backend", "/admin/1", &[])?.status == 403);
    mesh.set_policy(POLICY_GLOB);
    mesh.apply()?;
    let mut last = 0;
    wait::until_true("the glob policy allows frontend on /admin", TIMEOUT, || {
        last = mesh.call("frontend", "backend", "/admin/2", &[])?.status;
        Ok(last == 200)
    })
    .with_context(|| format!("last status {last}"))?;
    ensure!(
        module_of(&mesh)? == "extended",
        "glob.match needs the extended module"
    );
    let forbidden = mesh.call("frontend", "backend", "/forbidden", &[])?.status;
    ensure!(
        forbidden == 403,
        "the glob policy is not enforced: {forbidden}"
    );
    Ok(())
}

fn a_policy_on_the_rego_interpreter_gets_the_extended_module_and_a_conflict_denies(
    mode: XdsMode,
) -> Result<()> {
    let mut mesh = mesh(mode, "enforce")?;
    mesh.set_policy(POLICY_CONFLICT);
    mesh.apply()?;
    let mut last = 0;
    wait::until_true(
        "the interpreter policy allows frontend on /admin",
        TIMEOUT,
        || {
            last = mesh.call("frontend", "backend", "/admin/2", &[])?.status;
            Ok(last == 200)
        },
    )
    .with_context(|| format!("last status {last}"))?;
    let dump = mesh.sidecar("backend")?.config_dump()?.to_string();
    ensure!(
        dump.contains("wasm-extended/warden_filter.wasm"),
        "the interpreter is only in the extended module"
    );
    let conflict = mesh.call("frontend", "backend", "/conflict/1", &[])?.status;
    ensure!(conflict == 403, "a conflict must deny: {conflict}");
    ensure!(
        counted(&mesh, "warden_authz\\.errors$")?,
        "the conflict is counted as an error"
    );
    Ok(())
}
