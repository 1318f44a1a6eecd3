//! Workload instances end to end, on loopback with real Envoy: the backend runs as three
//! instances on 127.0.0.11/12/13 (own sidecar, own app, own SVID key), found by the
//! frontend's sidecar through a real DNS server (`inbound.service`). Under steady load
//! one instance is SIGKILLed and a fourth added (DNS updated): no request fails and the
//! new instance gets traffic. A forced CA rotation with several instances activates
//! only once every connected instance (one of them paused) has ACKed the new bundle.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;

use warden_e2e::app::EchoApp;
use warden_e2e::dns::DnsServer;
use warden_e2e::envoy::{self, Envoy};
use warden_e2e::load::{Load, LoadSpec};
use warden_e2e::mesh::{spiffe_id, DEFAULT_POLICY, TRUST_DOMAIN};
use warden_e2e::ports::{free_addr, free_port};
use warden_e2e::process::report_failure;
use warden_e2e::warden::{self as wd, Warden};
use warden_e2e::{http, locate, wait};

/// The DNS zone the backend's service name lives in.
const ZONE: &str = "demo.test";

/// One backend instance: its app and sidecar on its own loopback address.
struct Instance {
    sidecar: Envoy,
    app: EchoApp,
}

/// The scenario's fixed parts: config, control plane, DNS, the frontend's sidecar.
struct World {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    warden: Warden,
    dns: DnsServer,
    frontend: Option<Envoy>,
    outbound: SocketAddr,
    backend_ports: (u16, u16, u16),
}

fn instance_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 10 + n)
}

impl World {
    fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    fn bootstrap(&self, name: &str, extra: &[&str]) -> Result<PathBuf> {
        let config = self.config();
        let token = self.dir.path().join("tokens").join(workload_of(name));
        let mut args = vec![
            "bootstrap",
            "--config",
            config.to_str().context("non-UTF-8 temp dir")?,
            "--workload",
            workload_of(name),
            "--token-file",
            token.to_str().context("non-UTF-8 temp dir")?,
        ];
        args.extend_from_slice(extra);
        let yaml = wd::cli(&args, &self.env)?;
        let path = self.dir.path().join(format!("bootstrap-{name}.yaml"));
        std::fs::write(&path, yaml)?;
        Ok(path)
    }

    /// Starts backend instance `n` (app and sidecar on 127.0.0.1<n>) and waits until its
    /// sidecar is ready.
    fn start_instance(&self, n: u8) -> Result<Instance> {
        let ip = instance_ip(n);
        let (listen, app, admin) = self.backend_ports;
        let name = format!("backend-{n}");
        let app = EchoApp::start(&name, SocketAddr::new(IpAddr::V4(ip), app))?;
        let admin = SocketAddr::new(IpAddr::V4(ip), admin);
        let (ip_s, admin_s) = (ip.to_string(), admin.to_string());
        let path = self.bootstrap(
            &name,
            &[
                "--instance",
                &name,
                "--instance-ip",
                &ip_s,
                "--admin",
                &admin_s,
            ],
        )?;
        let mut sidecar = Envoy::start(&format!("envoy-{name}"), &path, admin, &self.logs())?;
        sidecar.wait_ready(envoy::READY_TIMEOUT)?;
        let inbound = SocketAddr::new(IpAddr::V4(ip), listen);
        wait::until_true(
            &format!("{name} inbound listener"),
            Duration::from_secs(30),
            || Ok(std::net::TcpStream::connect(inbound).is_ok()),
        )?;
        Ok(Instance { sidecar, app })
    }
}

fn workload_of(name: &str) -> &str {
    if name.starts_with("backend") {
        "backend"
    } else {
        "frontend"
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Config, tokens, `warden serve`, the DNS server and the frontend's sidecar.
fn world() -> Result<World> {
    let dir = tempfile::Builder::new()
        .prefix("warden-instances-")
        .tempdir()?;
    let config = dir.path().join("config");
    let (xds, admin) = (free_addr()?, free_addr()?);
    let backend_ports = (free_port()?, free_port()?, free_port()?);
    let (f_admin, f_listen, f_app, f_out) =
        (free_addr()?, free_addr()?, free_addr()?, free_addr()?);
    let dns = DnsServer::start(ZONE)?;
    write(
        &config.join("warden.yaml"),
        &format!(
            "trust_domain: {TRUST_DOMAIN}\n\
             ca:\n  key_type: ec-p256\n  ttl: 24h\n  svid_ttl: 1h\n  state_dir: .warden\n\
             server:\n  xds_listen: {xds}\n  admin_listen: {admin}\n\
             policy:\n  entrypoint: data.envoy.authz.allow\n  mode: enforce\n  deny_status: 403\n  expose_reason: false\n"
        ),
    )?;
    write(
        &config.join("workloads/frontend.yaml"),
        &format!(
            "name: frontend\nspiffe_id: {}\nnode_id: frontend-sidecar\nsidecar:\n  admin: {f_admin}\n\
             inbound:\n  listen: {f_listen}\n  app: {f_app}\n\
             upstreams:\n  - workload: backend\n    listen: {f_out}\n",
            spiffe_id("frontend")
        ),
    )?;
    let (listen, app, _) = backend_ports;
    write(
        &config.join("workloads/backend.yaml"),
        &format!(
            "name: backend\nspiffe_id: {}\nnode_id: backend-sidecar\nsidecar:\n  admin: {}\n\
             inbound:\n  listen: ${{INSTANCE_IP}}:{listen}\n  app: ${{INSTANCE_IP}}:{app}\n  service: {}:{listen}\n\
             upstreams: []\n",
            spiffe_id("backend"),
            free_addr()?,
            dns.fqdn("backend"),
        ),
    )?;
    write(&config.join("policies/authz.rego"), DEFAULT_POLICY)?;
    let env = locate::filter_module_env().unwrap_or_default();
    for w in ["frontend", "backend"] {
        let out = dir.path().join("tokens").join(w);
        std::fs::create_dir_all(dir.path().join("tokens"))?;
        wd::cli(
            &[
                "token",
                "create",
                "--config",
                config.to_str().context("non-UTF-8 temp dir")?,
                "--workload",
                w,
                "--ttl",
                "1h",
                "--out",
                out.to_str().context("non-UTF-8 temp dir")?,
            ],
            &env,
        )?;
    }
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut warden = Warden::serve(&config, admin, &logs, &env)?;
    warden.wait_ready(wd::READY_TIMEOUT)?;
    let mut w = World {
        dir,
        env,
        warden,
        dns,
        frontend: None,
        outbound: f_out,
        backend_ports,
    };
    let dns_addr = w.dns.addr().to_string();
    let path = w.bootstrap("frontend", &["--dns-resolver", &dns_addr])?;
    let mut frontend = Envoy::start("envoy-frontend", &path, f_admin, &logs)?;
    frontend.wait_ready(envoy::READY_TIMEOUT)?;
    w.frontend = Some(frontend);
    Ok(w)
}

/// The public key (SPKI DER) of the SVID a sidecar serves, from its config dump (the
/// certificate chain is shown, the private key redacted): distinct public keys mean
/// distinct private keys.
fn svid_public_key(sidecar: &Envoy) -> Result<Vec<u8>> {
    let dump = sidecar.config_dump_resource("dynamic_active_secrets")?;
    let secrets = dump["configs"]
        .as_array()
        .context("no secrets in the dump")?;
    let uri = spiffe_id("backend");
    let default = secrets
        .iter()
        .find(|s| s["name"] == uri.as_str())
        .with_context(|| format!("no `{uri}` secret: {dump}"))?;
    let b64 = default["secret"]["tls_certificate"]["certificate_chain"]["inline_bytes"]
        .as_str()
        .context("no inline certificate chain")?;
    let pem = base64::engine::general_purpose::STANDARD.decode(b64)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).context("PEM")?;
    let cert = pem.parse_x509().context("X.509")?;
    if !cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .is_some_and(|s| format!("{:?}", s.value).contains(&uri))
    {
        bail!("the SVID does not carry {uri}");
    }
    Ok(cert.public_key().raw.to_vec())
}

fn served(instances: &BTreeMap<u8, Instance>) -> BTreeMap<u8, u64> {
    instances
        .iter()
        .map(|(n, i)| (*n, i.app.served()))
        .collect()
}

#[test]
fn losing_and_adding_backend_instances_under_load_fails_no_request() -> Result<()> {
    report_failure(scenario())
}

fn scenario() -> Result<()> {
    let w = world()?;
    let mut instances = BTreeMap::new();
    for n in 1..=3 {
        instances.insert(n, w.start_instance(n)?);
    }
    w.dns
        .set_a("backend", &[instance_ip(1), instance_ip(2), instance_ip(3)])?;
    // Each instance holds its own key (same SPIFFE ID).
    let keys: BTreeSet<Vec<u8>> = instances
        .values()
        .map(|i| svid_public_key(&i.sidecar))
        .collect::<Result<_>>()?;
    assert_eq!(keys.len(), 3, "three instances, three SVID keys");
    // The control plane shows them as instances of one workload.
    let dump = w.warden.config_dump()?;
    for n in 1..=3 {
        let key = format!("backend-sidecar/backend-{n}");
        assert_eq!(
            dump["nodes"][&key]["connected_streams"], 1,
            "{key} in the config dump"
        );
    }
    let config = w.config();
    let view = wd::cli(
        &[
            "instances",
            "--config",
            config.to_str().context("non-UTF-8 temp dir")?,
        ],
        &w.env,
    )?;
    if !view.contains("backend-sidecar: 3 instance(s), 3 connected") {
        bail!("`warden instances` shows the three instances: {view}");
    }
    let connected = w.warden.metric(
        "warden_workload_instances_connected",
        &[("node", "backend-sidecar")],
    )?;
    assert_eq!(connected, 3.0);
    // Traffic reaches every instance.
    wait::until_true("every instance serving", Duration::from_secs(30), || {
        let _ = http::get(w.outbound, "/warm");
        Ok(served(&instances).values().all(|s| *s > 0))
    })?;
    let mut spec = LoadSpec::new(vec![w.outbound]);
    spec.max_requests = 20_000;
    spec.deadline = Duration::from_secs(90);
    let load = Load::start(&spec)?;
    load.wait_for_more(200, Duration::from_secs(20))?;
    // Instance 2 dies (SIGKILL of its sidecar, its app gone) without a DNS change first.
    let Instance {
        sidecar: mut dead,
        app: dead_app,
    } = instances.remove(&2).context("instance 2")?;
    dead.process().signal("KILL")?;
    drop(dead_app);
    let killed_at = Instant::now();
    load.wait_for_more(300, Duration::from_secs(20))?;
    // Instance 4 comes up and DNS follows: 2 out, 4 in.
    let fourth = w.start_instance(4)?;
    let key4 = svid_public_key(&fourth.sidecar)?;
    assert!(!keys.contains(&key4), "the new instance has its own key");
    instances.insert(4, fourth);
    w.dns
        .set_a("backend", &[instance_ip(1), instance_ip(3), instance_ip(4)])?;
    let before = served(&instances);
    wait::until_true("instance 4 gets traffic", Duration::from_secs(30), || {
        Ok(instances[&4].app.served() > 0)
    })?;
    load.wait_for_more(500, Duration::from_secs(30))?;
    let report = load.stop();
    let after = served(&instances);
    let frontend = w.frontend.as_ref().context("frontend sidecar")?;
    let stat = |name: &str| frontend.stat(&format!("cluster.upstream-backend.{name}"));
    let (retries, connect_fails, ejections) = (
        stat("upstream_rq_retry")?,
        stat("upstream_cx_connect_fail")?,
        stat("outlier_detection.ejections_enforced_total")?,
    );
    eprintln!(
        "load: {report}; served before {before:?} after {after:?}; kill-to-end {:?}; \
         frontend: {retries} retries, {connect_fails} connect failures, {ejections} ejections",
        killed_at.elapsed()
    );
    assert!(
        retries > 0 || connect_fails > 0,
        "the kill was seen by the caller (else the test proves nothing)"
    );
    assert_eq!(report.failed, 0, "no request fails: {report}");
    assert!(after[&4] > 0, "the new instance served requests");
    for n in [1, 3] {
        assert!(after[&n] > before[&n], "instance {n} kept serving");
    }
    drop(dead);
    Ok(())
}

/// `POST /ca/<step>` on the control plane's admin; the status code and body.
fn ca_step(w: &World, step: &str) -> Result<(u16, String)> {
    let r = http::request(w.warden.admin(), "POST", &format!("/ca/{step}"), &[])?;
    Ok((r.status, r.text()))
}

#[test]
fn a_forced_ca_rotation_waits_for_every_instance_and_fails_no_request() -> Result<()> {
    report_failure(rotation())
}

fn rotation() -> Result<()> {
    let w = world()?;
    let mut instances = BTreeMap::new();
    for n in 1..=3 {
        instances.insert(n, w.start_instance(n)?);
    }
    // Instance 4 is connected but gets no traffic (not in DNS): it is paused below.
    let mut paused = w.start_instance(4)?;
    w.dns
        .set_a("backend", &[instance_ip(1), instance_ip(2), instance_ip(3)])?;
    wait::until_true("every instance serving", Duration::from_secs(30), || {
        let _ = http::get(w.outbound, "/warm");
        Ok(served(&instances).values().all(|s| *s > 0))
    })?;
    let before: BTreeMap<u8, Vec<u8>> = instances
        .iter()
        .map(|(n, i)| Ok((*n, svid_public_key(&i.sidecar)?)))
        .collect::<Result<_>>()?;
    let mut spec = LoadSpec::new(vec![w.outbound]);
    spec.max_requests = 20_000;
    spec.deadline = Duration::from_secs(120);
    let load = Load::start(&spec)?;
    load.wait_for_more(100, Duration::from_secs(20))?;
    // SIGSTOP: its stream stays open, but it cannot ACK the next bundle.
    paused.sidecar.process().signal("STOP")?;
    let (code, body) = ca_step(&w, "prepare")?;
    ensure_code(code, 200, "prepare", &body)?;
    std::thread::sleep(Duration::from_secs(2));
    let (code, body) = ca_step(&w, "activate")?;
    ensure_code(code, 409, "activate while instance 4 is paused", &body)?;
    if !body.contains("backend-sidecar/backend-4") {
        bail!("the refusal names the lagging instance: {body}");
    }
    let status = w.warden.admin_get("/ca/status")?.json()?;
    let connected = status.to_string();
    for n in 1..=4 {
        if !connected.contains(&format!("backend-sidecar/backend-{n}")) {
            bail!("instance {n} is counted as connected: {status}");
        }
    }
    paused.sidecar.process().signal("CONT")?;
    let refused_at = Instant::now();
    wait::until(
        "activation once instance 4 ACKed",
        Duration::from_secs(30),
        || {
            let (code, body) = ca_step(&w, "activate")?;
            match code {
                200 => Ok(Some(())),
                409 => Ok(None),
                _ => bail!("activate: {code} {body}"),
            }
        },
    )?;
    let activated_after = refused_at.elapsed();
    // Every instance is re-minted with its own new key under the new CA.
    wait::until_true(
        "every instance holds a new SVID",
        Duration::from_secs(30),
        || {
            for (n, i) in &instances {
                if svid_public_key(&i.sidecar)? == before[n] {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )?;
    let after: BTreeSet<Vec<u8>> = instances
        .values()
        .map(|i| svid_public_key(&i.sidecar))
        .collect::<Result<_>>()?;
    assert_eq!(after.len(), 3, "still one key per instance");
    load.wait_for_more(300, Duration::from_secs(30))?;
    let report = load.stop();
    eprintln!(
        "rotation: {report}; activation allowed {activated_after:?} after resuming instance 4"
    );
    assert_eq!(report.failed, 0, "no request fails: {report}");
    drop(paused);
    Ok(())
}

fn ensure_code(code: u16, want: u16, what: &str, body: &str) -> Result<()> {
    if code != want {
        bail!("{what}: HTTP {code} (want {want}): {body}");
    }
    Ok(())
}
