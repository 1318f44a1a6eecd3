//! A pod's sidecar exactly as `warden inject` writes it, run for real on loopback: the
//! injected Envoy arguments (inline bootstrap, `--service-node` = the pod name), with
//! what the kubelet would do done by hand (expand `$(POD_IP)`, mount the projected token
//! and the trust anchor), against a real `warden serve` with Kubernetes attestation.
//! The pod's own token gets the pod its SVID; another pod's token for this pod's stream
//! is refused (`pod_mismatch`) and gets nothing.
//!
//! Until workload instances land, the instance name (the pod name) is also the
//! workload's node id here.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use warden_e2e::http;
use warden_e2e::locate;
use warden_e2e::ports::free_addr;
use warden_e2e::process::{Process, ProcessSpec};
use warden_e2e::wait::until_true;
use warden_e2e::warden::{self, Warden};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const POD: &str = "backend-7c9d8f5b4-x2x7q";
const SIBLING: &str = "backend-7c9d8f5b4-zz9k2";
const BACKEND: &str = "spiffe://example.org/ns/demo/sa/backend";

struct Addrs {
    xds: SocketAddr,
    admin: SocketAddr,
    sidecar_admin: SocketAddr,
    inbound: SocketAddr,
    app: SocketAddr,
}

/// A config dir with one workload, `backend`, attested by Kubernetes tokens only.
/// `inbound_host` is `0.0.0.0` for `warden inject` (a pod listens on its IP) and
/// `127.0.0.1` for the server run here (loopback only).
fn write_config(dir: &Path, a: &Addrs, inbound_host: &str, jwks: &str) -> Result<()> {
    std::fs::create_dir_all(dir.join("workloads"))?;
    std::fs::create_dir_all(dir.join("policies"))?;
    let src = locate::workspace_root().join("examples/mesh/policies/authz.rego");
    std::fs::copy(src, dir.join("policies/authz.rego"))?;
    std::fs::write(dir.join("jwks.json"), jwks)?;
    std::fs::write(
        dir.join("warden.yaml"),
        format!(
            "trust_domain: example.org\nca: {{ ttl: 24h, svid_ttl: 1h, state_dir: .warden }}\n\
             server: {{ xds_listen: \"{}\", admin_listen: \"{}\" }}\n\
             attestation: {{ kubernetes: {{ issuer: \"{ISSUER}\", jwks_file: jwks.json }} }}\n\
             policy: {{ entrypoint: data.envoy.authz.allow }}\n",
            a.xds, a.admin
        ),
    )?;
    std::fs::write(
        dir.join("workloads/backend.yaml"),
        format!(
            "name: backend\nspiffe_id: {BACKEND}\nnode_id: {POD}\nattestation: [kubernetes]\n\
             sidecar: {{ admin: \"{}\" }}\ninbound: {{ listen: \"{inbound_host}:{}\", app: \"{}\" }}\n",
            a.sidecar_admin,
            a.inbound.port(),
            a.app
        ),
    )?;
    Ok(())
}

struct Issuer {
    pem: String,
    jwks: String,
}

fn issuer() -> Result<Issuer> {
    let key = rcgen::KeyPair::generate()?;
    let point = key.public_key_raw();
    let jwk = json!({
        "use": "sig", "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    });
    Ok(Issuer {
        pem: key.serialize_pem(),
        jwks: json!({ "keys": [jwk] }).to_string(),
    })
}

/// A projected token of `demo/backend` for pod `pod`, as a 1.30 API server issues it.
fn token(iss: &Issuer, pod: &str) -> Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = json!({
        "aud": ["warden"], "exp": now + 600, "iat": now, "nbf": now, "iss": ISSUER,
        "jti": "5f0c7d1e-9a2b-4c3d-8e4f-a1b2c3d4e5f6",
        "sub": "system:serviceaccount:demo:backend",
        "kubernetes.io": {
            "namespace": "demo",
            "node": { "name": "kind-worker", "uid": "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b" },
            "pod": { "name": pod, "uid": "9d8c7b6a-5f4e-4d3c-9b2a-1f0e9d8c7b6a" },
            "serviceaccount": { "name": "backend", "uid": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d" }
        }
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    header.typ = None;
    let key = jsonwebtoken::EncodingKey::from_ec_pem(iss.pem.as_bytes())?;
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

/// The sidecar's `--config-yaml` argument from `warden inject`'s output for a pod.
fn injected_bootstrap(
    config: &Path,
    dir: &Path,
    xds: SocketAddr,
    app: SocketAddr,
) -> Result<String> {
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{ name: {POD}, namespace: demo }}\nspec:\n  \
         serviceAccountName: backend\n  containers:\n  - name: app\n    image: busybox\n    \
         ports: [{{ containerPort: {} }}]\n",
        app.port()
    );
    let file = dir.join("pod.yaml");
    std::fs::write(&file, pod)?;
    let out = warden::cli(
        &[
            "inject",
            "--config",
            config.to_str().context("utf-8")?,
            "-f",
            file.to_str().context("utf-8")?,
            "--xds-address",
            &xds.to_string(),
        ],
        &[],
    )?;
    let mut lines = out.lines().map(str::trim);
    lines
        .by_ref()
        .find(|l| *l == "- \"--config-yaml\"")
        .context("no --config-yaml argument in the injected pod")?;
    let arg = lines.next().context("no bootstrap after --config-yaml")?;
    let json: String = serde_json::from_str(arg.trim_start_matches("- "))?;
    Ok(json)
}

/// Starts the sidecar of pod `instance` as the kubelet would, with `token` mounted.
fn sidecar(
    name: &str,
    boot: &str,
    files: (&Path, &Path),
    admin: SocketAddr,
    logs: &Path,
) -> Result<Process> {
    let (token_file, ca_file) = files;
    let boot = boot
        .replace("$(POD_IP)", "127.0.0.1")
        .replace(
            "/var/run/secrets/warden/token",
            token_file.to_str().context("utf-8")?,
        )
        .replace("/etc/warden/ca/ca.crt", ca_file.to_str().context("utf-8")?);
    let mut boot: serde_json::Value = serde_json::from_str(&boot)?;
    boot["admin"]["address"]["socket_address"]["port_value"] = json!(admin.port());
    let spec = ProcessSpec::new(name, locate::envoy()?).args([
        "--config-yaml".to_owned(),
        boot.to_string(),
        "--service-node".to_owned(),
        POD.to_owned(),
        "--service-cluster".to_owned(),
        POD.to_owned(),
        "--disable-hot-restart".to_owned(),
        "--concurrency".to_owned(),
        "1".to_owned(),
    ]);
    Process::spawn(&spec, logs)
}

fn certs(admin: SocketAddr) -> String {
    http::get(admin, "/certs")
        .map(|r| r.text())
        .unwrap_or_default()
}

#[test]
fn an_injected_pods_sidecar_attests_with_its_own_token_and_not_with_a_siblings() -> Result<()> {
    let work = tempfile::tempdir()?;
    let a = Addrs {
        xds: free_addr()?,
        admin: free_addr()?,
        sidecar_admin: free_addr()?,
        inbound: free_addr()?,
        app: free_addr()?,
    };
    let iss = issuer()?;
    let (for_inject, for_serve) = (work.path().join("inject"), work.path().join("serve"));
    write_config(&for_inject, &a, "0.0.0.0", &iss.jwks)?;
    write_config(&for_serve, &a, "127.0.0.1", &iss.jwks)?;
    let boot = injected_bootstrap(&for_inject, work.path(), a.xds, a.app)?;

    let mut server = Warden::serve(
        &for_serve,
        a.admin,
        work.path(),
        &locate::filter_module_env()?,
    )?;
    server.wait_ready(Duration::from_secs(60))?;
    let bundle = warden::cli(
        &["bundle", "--config", for_serve.to_str().context("utf-8")?],
        &[],
    )?;
    let ca_file = work.path().join("ca.crt");
    std::fs::write(&ca_file, bundle)?;

    let own = work.path().join("token-own");
    std::fs::write(&own, token(&iss, POD)?)?;
    let mut pod = sidecar(
        "sidecar-pod",
        &boot,
        (&own, &ca_file),
        a.sidecar_admin,
        work.path(),
    )?;
    until_true(
        "the pod's SVID in its sidecar",
        Duration::from_secs(60),
        || {
            pod.ensure_running()?;
            Ok(certs(a.sidecar_admin).contains(BACKEND))
        },
    )?;

    let stolen = work.path().join("token-sibling");
    std::fs::write(&stolen, token(&iss, SIBLING)?)?;
    let other_admin = free_addr()?;
    let mut impostor = sidecar(
        "sidecar-impostor",
        &boot,
        (&stolen, &ca_file),
        other_admin,
        work.path(),
    )?;
    let refused = || {
        server.metric(
            "warden_xds_attestation_failures_total",
            &[("reason", "pod_mismatch")],
        )
    };
    until_true("a pod_mismatch refusal", Duration::from_secs(30), || {
        impostor.ensure_running()?;
        Ok(refused()? >= 1.0)
    })?;
    if certs(other_admin).contains(BACKEND) {
        bail!("the sibling's token got an SVID: {}", certs(other_admin));
    }
    Ok(())
}
