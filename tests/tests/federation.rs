//! SPIFFE federation end to end: two `warden serve` (trust domains `a.test` and
//! `b.test`) on loopback, each with Envoy sidecars. `a.test`'s frontend calls
//! `b.test`'s backend over mTLS, each side verifying the other's SVID with the other
//! trust domain's bundle, fetched from its bundle endpoint (`https_spiffe`). Then:
//! a forced CA rotation in `b.test` under load (no request fails), `b.test`'s control
//! plane (and so its bundle endpoint) down for a while (last good bundle kept, failure
//! visible), and an independent client (py-spiffe) checking the endpoint.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use warden_e2e::load::{Load, LoadSpec};
use warden_e2e::ports::free_addr;
use warden_e2e::process::report_failure;
use warden_e2e::tls;
use warden_e2e::{http, wait, warden, Mesh, MeshSpec, XdsMode};

const A: &str = "a.test";
const B: &str = "b.test";
/// A federated trust domain with a hostile CA (its bundle endpoint never answers).
const EVIL: &str = "evil.test";
/// `spiffe_refresh_hint` both endpoints serve.
const REFRESH_HINT: Duration = Duration::from_secs(2);

fn id(td: &str, name: &str) -> String {
    format!("spiffe://{td}/ns/demo/sa/{name}")
}

fn endpoint_id(td: &str) -> String {
    format!("spiffe://{td}/warden/control-plane")
}

/// `federation.yaml`: our endpoint, and a relationship to `peer` (trust domain, bundle
/// endpoint, bundle file name) when given.
fn federation_yaml(endpoint: SocketAddr, peers: &[(&str, SocketAddr, &str)]) -> String {
    let mut y = format!(
        "bundle_endpoint:\n  listen: {endpoint}\n  profile: https_spiffe\n  refresh_hint: {}s\n\
         refresh_floor: 1s\n",
        REFRESH_HINT.as_secs()
    );
    if peers.is_empty() {
        y.push_str("trust_domains: []\n");
        return y;
    }
    y.push_str("trust_domains:\n");
    for (td, addr, file) in peers {
        y.push_str(&format!(
            "  - trust_domain: {td}\n    url: https://{addr}/\n    profile: https_spiffe\n    \
             endpoint_spiffe_id: {}\n    bundle_file: {file}\n",
            endpoint_id(td)
        ));
    }
    y
}

/// A trust domain b.test federates with whose CA is hostile: it signs a certificate
/// whose SPIFFE ID (first URI SAN) is its own, `spiffe://evil.test/ns/x/sa/mallory`, but
/// which also carries `claim` as a second URI SAN and as a DNS SAN. Returns the CA's
/// bundle (SPIFFE format) and the certificate.
fn hostile_federated_ca(claim: &str) -> Result<(String, tls::PemIdentity)> {
    use base64::Engine as _;
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let bundle = serde_json::json!({
        "keys": [{
            "use": "x509-svid",
            "kty": "EC",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(ca_cert.der())],
        }],
        "spiffe_sequence": 1,
    });
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    leaf.subject_alt_names = vec![
        SanType::URI(id(EVIL, "mallory").try_into()?),
        SanType::URI(claim.try_into()?),
        SanType::DnsName(claim.try_into()?),
    ];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let cert = leaf.signed_by(&key, &issuer)?;
    let identity = tls::PemIdentity {
        cert_chain_pem: format!("{}{}", cert.pem(), ca_cert.pem()),
        key_pem: key.serialize_pem(),
    };
    Ok((bundle.to_string(), identity))
}

/// Only `a.test`'s frontend may call.
fn policy_b() -> String {
    format!(
        "package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n\n\
         allow if input.attributes.source.principal == \"{}\"\n",
        id(A, "frontend")
    )
}

fn bundle_of(mesh: &Mesh) -> Result<String> {
    let dir = mesh.config_dir();
    warden::cli(
        &[
            "bundle",
            "--config",
            dir.to_str().context("utf-8")?,
            "--format",
            "spiffe",
        ],
        mesh.env(),
    )
}

/// `a.test`'s view of its relationship with `b.test` (`/federation`).
fn relationship(a: &Mesh) -> Result<serde_json::Value> {
    relationship_with(a, B)
}

/// `mesh`'s view of its relationship with `td` (`/federation`).
fn relationship_with(mesh: &Mesh, td: &str) -> Result<serde_json::Value> {
    let all = mesh.warden().admin_get("/federation")?.json()?;
    all.as_array()
        .and_then(|r| r.iter().find(|r| r["trust_domain"] == td).cloned())
        .with_context(|| format!("no {td} relationship in {all}"))
}

fn ca_step(mesh: &Mesh, step: &str) -> Result<(u16, String)> {
    let r = http::request(mesh.warden().admin(), "POST", &format!("/ca/{step}"), &[])?;
    Ok((r.status, r.text()))
}

/// Both meshes, federated; also returns a.test's and b.test's bundle endpoints.
fn start_pair(
    hostile_bundle: &str,
    silent: SocketAddr,
) -> Result<(Mesh, Mesh, SocketAddr, SocketAddr)> {
    let (ep_a, ep_b) = (free_addr()?, free_addr()?);
    let mut spec_b = MeshSpec::new(XdsMode::Sotw).ttls("24h", "20s");
    spec_b.workloads.clear();
    spec_b.trust_domain = B.to_owned();
    spec_b.policy = policy_b();
    spec_b.files = vec![("federation.yaml".into(), federation_yaml(ep_b, &[]))];
    let b = Mesh::start(spec_b.workload("backend", &[]))?;
    let backend = b.workload("backend")?.inbound;

    let mut spec_a = MeshSpec::new(XdsMode::Sotw);
    spec_a.workloads.clear();
    spec_a.trust_domain = A.to_owned();
    spec_a.policy = "package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n".into();
    spec_a.wait_routes = false;
    spec_a.files = vec![
        ("b.bundle.json".into(), bundle_of(&b)?),
        (
            "federation.yaml".into(),
            federation_yaml(ep_a, &[(B, ep_b, "b.bundle.json")]),
        ),
    ];
    let spec_a = spec_a
        .workload("frontend", &[])
        .workload("intruder", &[])
        .foreign_upstream("frontend", "backend", &id(B, "backend"), backend)
        .foreign_upstream("intruder", "backend", &id(B, "backend"), backend);
    let a = Mesh::start(spec_a)?;

    // b.test learns a.test's bundle out of band and federates by a reload (no restart).
    let dir = b.config_dir();
    std::fs::write(dir.join("a.bundle.json"), bundle_of(&a)?)?;
    std::fs::write(dir.join("evil.bundle.json"), hostile_bundle)?;
    std::fs::write(
        dir.join("federation.yaml"),
        federation_yaml(
            ep_b,
            &[
                (A, ep_a, "a.bundle.json"),
                (EVIL, silent, "evil.bundle.json"),
            ],
        ),
    )?;
    b.warden().reload()?;
    Ok((a, b, ep_a, ep_b))
}

#[test]
fn workloads_of_two_federated_trust_domains_call_each_other_through_rotation_and_outage(
) -> Result<()> {
    report_failure(scenario())
}

fn scenario() -> Result<()> {
    let started = Instant::now();
    let (hostile_bundle, hostile) = hostile_federated_ca(&id(A, "frontend"))?;
    // evil.test's bundle endpoint accepts connections (the kernel's backlog) and never
    // answers: its fetches time out, and must not hold b.test's other relationship.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let (a, mut b, ep_a, ep_b) = start_pair(&hostile_bundle, silent.local_addr()?)?;
    let federated_at = Instant::now();
    wait::until_true(
        "a.test frontend → b.test backend",
        Duration::from_secs(30),
        || {
            Ok(a.call("frontend", "backend", "/hello", &[])
                .is_ok_and(|r| r.status == 200))
        },
    )?;
    let first_call = federated_at.elapsed();
    let echo = a.call("frontend", "backend", "/hello", &[])?.json()?;
    ensure!(echo["app"] == "backend", "unexpected echo {echo}");
    let xfcc = echo["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or("");
    ensure!(
        xfcc.contains(&format!("URI={}", id(A, "frontend"))),
        "backend saw {xfcc:?}"
    );

    // Another a.test workload, not named by the policy: denied by b.test's policy.
    let denied = a.call("intruder", "backend", "/hello", &[])?;
    ensure!(
        denied.status == 403,
        "intruder got {} {}",
        denied.status,
        denied.text()
    );

    // A third, unfederated trust domain is refused at the handshake; so is a claim of
    // an a.test ID with a certificate from a CA outside a.test's bundle.
    let inbound = b.workload("backend")?.inbound;
    for claimed in [id("c.test", "frontend"), id(A, "frontend")] {
        let foreign = tls::foreign_ca_identity(&claimed)?;
        let outcome = tls::attempt(inbound, Some(&foreign), "/hello")?;
        ensure!(
            outcome.refused(),
            "{claimed} from an unknown CA got through: {outcome:?}"
        );
    }

    // A federated but hostile CA signs its own ID plus an a.test ID as a second URI SAN
    // and a DNS SAN: the handshake passes (evil.test is federated), the policy sees
    // evil.test's ID (the first URI SAN) and denies, on native RBAC as in the filter.
    let hostile_outcome = tls::attempt(inbound, Some(&hostile), "/hello")?;
    match &hostile_outcome {
        tls::TlsOutcome::Answered(r) => ensure!(
            r.status == 403,
            "a second SAN impersonated {}: {} {}",
            id(A, "frontend"),
            r.status,
            r.text()
        ),
        tls::TlsOutcome::Refused(e) => anyhow::bail!("evil.test is federated, yet refused: {e}"),
    }

    // Independent client: py-spiffe parses the bundle, the endpoint's certificate is an
    // X509-SVID of b.test.
    let out = Command::new("python")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/check_bundle_endpoint.py"
        ))
        .args([ep_b.to_string(), B.to_owned(), endpoint_id(B)])
        .output()
        .context("running python (put .venv/bin on PATH, or use ./dev)")?;
    ensure!(
        out.status.success(),
        "py-spiffe check failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let py = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    // Forced CA rotation in b.test under load.
    let load = Load::start(&LoadSpec::new(vec![a.outbound("frontend", "backend")?]))?;
    load.wait_for_more(30, Duration::from_secs(20))?;
    let seq0 = relationship(&a)?["sequence"].as_u64().unwrap_or(0);
    let (code, body) = ca_step(&b, "prepare")?;
    ensure!(code == 200, "prepare: {code} {body}");
    let prepared = Instant::now();
    wait::until_true(
        "a.test to fetch b.test's prepared CA",
        Duration::from_secs(20),
        || {
            let r = relationship(&a)?;
            Ok(r["sequence"].as_u64().unwrap_or(0) > seq0 && r["authorities"] == 2)
        },
    )?;
    let picked_up = prepared.elapsed();
    ensure!(
        picked_up <= REFRESH_HINT + Duration::from_secs(2),
        "a.test took {picked_up:?} to see the new bundle (hint {REFRESH_HINT:?})"
    );
    // a.test's sidecars trust the new CA before it signs; b.test's activation waits for
    // its own sidecars' ACKs.
    wait::until_true("b.test activation", Duration::from_secs(30), || {
        let (code, body) = ca_step(&b, "activate")?;
        ensure!(code == 200 || code == 409, "activate: {code} {body}");
        Ok(code == 200)
    })?;
    load.wait_for_more(50, Duration::from_secs(20))?;
    wait::until_true("b.test's old CA to retire", Duration::from_secs(60), || {
        let status = b.warden().admin_get("/ca/status")?.json()?;
        if status["retired"].as_array().is_some_and(|r| r.is_empty()) {
            return Ok(true);
        }
        if status["refusals"]["retire"].is_null() {
            let (code, body) = ca_step(&b, "retire")?;
            ensure!(code == 200, "retire: {code} {body}");
            return Ok(true);
        }
        Ok(false)
    })?;
    wait::until_true(
        "a.test to drop b.test's old CA",
        Duration::from_secs(20),
        || Ok(relationship(&a)?["authorities"] == 1),
    )?;
    load.wait_for_more(50, Duration::from_secs(20))?;
    let rotation = load.stop();
    ensure!(
        rotation.failed == 0,
        "requests failed during b.test's CA rotation: {rotation}"
    );

    // While evil.test's endpoint hangs, b.test still refreshes a.test's bundle per hint.
    let evil = relationship_with(&b, EVIL)?;
    ensure!(
        evil["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("within")),
        "evil.test should be timing out: {evil}"
    );
    let fresh = relationship_with(&b, A)?["last_refresh"]
        .as_u64()
        .unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    ensure!(
        now.saturating_sub(fresh) <= 2 * REFRESH_HINT.as_secs() + 2,
        "b.test last refreshed a.test {}s ago while evil.test hung",
        now.saturating_sub(fresh)
    );

    // A relationship removed by a reload: evil.test's CA is no longer trusted at all.
    std::fs::write(
        b.config_dir().join("federation.yaml"),
        federation_yaml(ep_b, &[(A, ep_a, "a.bundle.json")]),
    )?;
    b.warden().reload()?;
    wait::until_true("b.test to drop evil.test", Duration::from_secs(20), || {
        Ok(tls::attempt(inbound, Some(&hostile), "/hello")?.refused())
    })?;
    ensure!(
        a.call("frontend", "backend", "/hello", &[])?.status == 200,
        "a.test lost access when evil.test was removed"
    );

    // An invalid federation.yaml is refused by the reload (counted), and the last good
    // relationships keep serving.
    let a_fed = a.config_dir().join("federation.yaml");
    let good = std::fs::read_to_string(&a_fed)?;
    let before = a
        .warden()
        .metric("warden_config_reload_failures_total", &[])?;
    std::fs::write(
        &a_fed,
        "trust_domains:\n- trust_domain: b.test\n  url: nope\n",
    )?;
    a.warden().reload()?;
    wait::until_true(
        "a.test to refuse the reload",
        Duration::from_secs(20),
        || {
            Ok(a.warden()
                .metric("warden_config_reload_failures_total", &[])?
                > before)
        },
    )?;
    ensure!(relationship(&a)?["sequence"].as_u64().is_some());
    ensure!(a.call("frontend", "backend", "/hello", &[])?.status == 200);
    std::fs::write(&a_fed, good)?;
    a.warden().reload()?;
    ensure!(
        a.warden().metric(
            "warden_federation_bundle_expiry_timestamp_seconds",
            &[("trust_domain", B)]
        )? > 0.0,
        "no expiry gauge for b.test"
    );

    // b.test's control plane (and bundle endpoint) down: a.test keeps the last good
    // bundle, counts and shows the failure, calls keep working.
    let a_config = a.config_dir();
    let mut outage = None;
    b.kill_and_restart_warden(1, |_| {
        let load = Load::start(&LoadSpec::new(vec![a.outbound("frontend", "backend")?]))?;
        wait::until_true(
            "a.test to notice the endpoint is down",
            Duration::from_secs(20),
            || {
                Ok(relationship(&a)?["consecutive_failures"]
                    .as_u64()
                    .unwrap_or(0)
                    >= 2)
            },
        )?;
        let failures = a.warden().metric(
            "warden_federation_refresh_failures_total",
            &[("trust_domain", B)],
        )?;
        ensure!(failures >= 2.0, "failures not in metrics: {failures}");
        let status = Command::new(warden_e2e::locate::warden()?)
            .args(["federation", "status", "--config"])
            .arg(&a_config)
            .output()?;
        let text = String::from_utf8_lossy(&status.stdout).to_string();
        ensure!(
            status.status.code() == Some(1) && text.contains("FAILING") && text.contains(B),
            "warden federation status: {:?} {text}",
            status.status
        );
        load.wait_for_more(50, Duration::from_secs(20))?;
        let report = load.stop();
        ensure!(
            report.failed == 0,
            "calls failed while b.test's endpoint was down: {report}"
        );
        outage = Some((report, failures, text));
        Ok(())
    })?;
    ensure!(
        a_config.join(".warden/federation/b.test.json").is_file(),
        "the last good bundle is not persisted in a.test's state dir"
    );
    wait::until_true("a.test to recover", Duration::from_secs(20), || {
        Ok(relationship(&a)?["last_error"].is_null())
    })?;
    let (report, failures, _) = outage.context("outage checks ran")?;
    println!(
        "federation: first cross-domain call {:.1} s after b.test's reload; rotation: new bundle \
         seen {:.1} s after prepare (hint {} s), {rotation}; outage: {report}, {failures} failed \
         fetches counted; py-spiffe: {py}; total {:.1} s",
        first_call.as_secs_f64(),
        picked_up.as_secs_f64(),
        REFRESH_HINT.as_secs(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
