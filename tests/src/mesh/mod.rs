//! A whole mesh on 127.0.0.1: a generated config directory (format of ARCHITECTURE.md,
//! every port freshly allocated), `warden serve`, one Envoy sidecar and one echo app per
//! workload. Every sidecar is attested like in production: a join token per workload
//! (`warden token create --out`, kept outside the config dir) and the default TLS
//! bootstrap of `warden bootstrap --token-file`. Dropping the [`Mesh`] stops everything; on a panic the logs are printed and,
//! with `WARDEN_E2E_KEEP=1`, the directory is kept.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::app::EchoApp;
use crate::envoy::{self, Envoy};
use crate::http::{self, Conn, Response};
use crate::ports::free_addr;
use crate::wait;
use crate::warden::{self, Warden};

mod files;
use files::{allocate, create_token, harness_env, token_path, write_config};

/// The trust domain of every generated mesh.
pub const TRUST_DOMAIN: &str = "example.org";

/// The SPIFFE ID the generated config gives workload `name`.
pub fn spiffe_id(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/demo/sa/{name}")
}

/// Which ADS variant the sidecars use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdsMode {
    /// State of the world (`StreamAggregatedResources`).
    Sotw,
    /// Incremental (`DeltaAggregatedResources`).
    Delta,
}

/// A workload to create: its name and the workloads it may call.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Workload name (also the app's name in echoes).
    pub name: String,
    /// Names of the workloads it has an outbound listener for.
    pub upstreams: Vec<String>,
    /// Upstreams in another trust domain: local name, SPIFFE ID, inbound address.
    pub foreign: Vec<(String, String, SocketAddr)>,
}

/// What mesh to build.
#[derive(Debug, Clone)]
pub struct MeshSpec {
    /// SotW or delta for every sidecar.
    pub mode: XdsMode,
    /// The workloads.
    pub workloads: Vec<WorkloadSpec>,
    /// Source of `policies/authz.rego`.
    pub policy: String,
    /// `enforce` or `dry-run`.
    pub policy_mode: String,
    /// Whether deny responses carry the reason.
    pub expose_reason: bool,
    /// `ca.ttl` (the CA certificate's lifetime), e.g. `24h`.
    pub ca_ttl: String,
    /// `ca.svid_ttl` (each X.509-SVID's lifetime), e.g. `1h`; rotation tests shorten it.
    pub svid_ttl: String,
    /// Extra environment for `warden` (e.g. another `WARDEN_FILTER_MODULE_EXTENDED`).
    pub env: Vec<(String, String)>,
    /// The trust domain (default [`TRUST_DOMAIN`]).
    pub trust_domain: String,
    /// Extra files in the config directory (path relative to it, contents).
    pub files: Vec<(String, String)>,
    /// Whether [`Mesh::start`] waits for every outbound route (off when an upstream
    /// in another trust domain cannot answer yet).
    pub wait_routes: bool,
    /// Extra top-level sections appended to warden.yaml (e.g. `audit:`).
    pub extra_warden_yaml: String,
}

/// Allows frontend → backend and backend → database, denies everything else.
pub const DEFAULT_POLICY: &str = r#"package envoy.authz

import rego.v1

default allow := false

callers := {
	"spiffe://example.org/ns/demo/sa/backend": {"spiffe://example.org/ns/demo/sa/frontend"},
	"spiffe://example.org/ns/demo/sa/database": {"spiffe://example.org/ns/demo/sa/backend"},
}

allow if {
	input.attributes.source.principal in callers[input.attributes.destination.principal]
}
"#;

impl MeshSpec {
    /// frontend → backend, the default policy, enforce mode.
    pub fn new(mode: XdsMode) -> Self {
        Self {
            mode,
            workloads: Vec::new(),
            policy: DEFAULT_POLICY.to_owned(),
            policy_mode: "enforce".to_owned(),
            expose_reason: false,
            ca_ttl: "24h".to_owned(),
            svid_ttl: "1h".to_owned(),
            env: Vec::new(),
            trust_domain: TRUST_DOMAIN.to_owned(),
            files: Vec::new(),
            wait_routes: true,
            extra_warden_yaml: String::new(),
        }
        .workload("frontend", &["backend"])
        .workload("backend", &[])
    }

    /// Adds (or replaces) a workload.
    pub fn workload(mut self, name: &str, upstreams: &[&str]) -> Self {
        self.workloads.retain(|w| w.name != name);
        self.workloads.push(WorkloadSpec {
            name: name.to_owned(),
            upstreams: upstreams.iter().map(|s| (*s).to_owned()).collect(),
            foreign: Vec::new(),
        });
        self
    }

    /// Gives workload `from` (already added) an upstream `name` in another trust domain:
    /// the workload `spiffe_id` whose sidecar's inbound listener is `address`.
    pub fn foreign_upstream(
        mut self,
        from: &str,
        name: &str,
        spiffe_id: &str,
        address: SocketAddr,
    ) -> Self {
        if let Some(w) = self.workloads.iter_mut().find(|w| w.name == from) {
            w.foreign
                .push((name.to_owned(), spiffe_id.to_owned(), address));
        }
        self
    }

    /// The SPIFFE ID the generated config gives workload `name` in this mesh's trust
    /// domain.
    pub fn id(&self, name: &str) -> String {
        format!("spiffe://{}/ns/demo/sa/{name}", self.trust_domain)
    }

    /// Sets `ca.ttl` and `ca.svid_ttl` (duration text such as `2m`, `30s`).
    pub fn ttls(mut self, ca_ttl: &str, svid_ttl: &str) -> Self {
        self.ca_ttl = ca_ttl.to_owned();
        self.svid_ttl = svid_ttl.to_owned();
        self
    }
}

/// A workload with its allocated addresses.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Name.
    pub name: String,
    /// Sidecar inbound (mTLS) listener.
    pub inbound: SocketAddr,
    /// The echo app behind it.
    pub app: SocketAddr,
    /// Sidecar admin.
    pub admin: SocketAddr,
    /// Outbound listeners, by upstream workload name.
    pub upstreams: BTreeMap<String, SocketAddr>,
}

/// A running mesh. Field order is drop order: sidecars, apps, server, then the directory.
#[derive(Debug)]
pub struct Mesh {
    sidecars: BTreeMap<String, Envoy>,
    apps: BTreeMap<String, EchoApp>,
    warden: Warden,
    spec: MeshSpec,
    workloads: BTreeMap<String, Workload>,
    xds: SocketAddr,
    admin: SocketAddr,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Mesh {
    /// Writes the config, starts `warden serve`, the apps and every sidecar, and waits
    /// until each outbound route answers.
    pub fn start(spec: MeshSpec) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("warden-e2e-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("logs"))?;
        let mut workloads = BTreeMap::new();
        for w in &spec.workloads {
            workloads.insert(w.name.clone(), allocate(w)?);
        }
        let (xds, admin) = (free_addr()?, free_addr()?);
        let mut env = harness_env();
        env.retain(|(k, _)| !spec.env.iter().any(|(o, _)| o == k));
        env.extend(spec.env.iter().cloned());
        write_config(&dir.path().join("config"), &spec, &workloads, xds, admin)?;
        for name in workloads.keys() {
            create_token(dir.path(), name, &env)?;
        }
        let mut warden = Warden::serve(
            &dir.path().join("config"),
            admin,
            &dir.path().join("logs"),
            &env,
        )?;
        warden.wait_ready(warden::READY_TIMEOUT)?;
        let mut mesh = Self {
            sidecars: BTreeMap::new(),
            apps: BTreeMap::new(),
            warden,
            spec,
            workloads,
            xds,
            admin,
            env,
            dir,
        };
        let names: Vec<String> = mesh.workloads.keys().cloned().collect();
        for name in &names {
            mesh.start_app(name)?;
            mesh.start_sidecar(name)?;
        }
        for name in &names {
            if let Some(envoy) = mesh.sidecars.get_mut(name) {
                envoy.wait_ready(envoy::READY_TIMEOUT)?;
            }
        }
        if mesh.spec.wait_routes {
            mesh.wait_routes(Duration::from_secs(60))?;
        }
        Ok(mesh)
    }

    /// Starts the echo app of `name`.
    pub fn start_app(&mut self, name: &str) -> Result<()> {
        let app = EchoApp::start(name, self.workload(name)?.app)?;
        self.apps.insert(name.to_owned(), app);
        Ok(())
    }

    /// Renders `warden bootstrap` for `name` and starts its Envoy (does not wait). A
    /// workload added after start gets its join token here (and the server reloads).
    pub fn start_sidecar(&mut self, name: &str) -> Result<()> {
        self.ensure_token(name)?;
        let config = self.config_dir();
        let token = self.token_file(name);
        let mut args = vec![
            "bootstrap",
            "--config",
            config.to_str().context("non-UTF-8 temp dir")?,
            "--workload",
            name,
            "--token-file",
            token.to_str().context("non-UTF-8 temp dir")?,
        ];
        if self.spec.mode == XdsMode::Delta {
            args.push("--delta");
        }
        let yaml = warden::cli(&args, &self.env)?;
        let path = self.dir.path().join(format!("bootstrap-{name}.yaml"));
        std::fs::write(&path, yaml)?;
        let admin = self.workload(name)?.admin;
        let envoy = Envoy::start(
            &format!("envoy-{name}"),
            &path,
            admin,
            &self.dir.path().join("logs"),
        )?;
        self.sidecars.insert(name.to_owned(), envoy);
        Ok(())
    }

    /// Creates `name`'s join token if it has none (the server reloads to learn it); for
    /// sidecars started later and for raw ADS clients.
    pub fn ensure_token(&mut self, name: &str) -> Result<PathBuf> {
        if !self.token_file(name).is_file() {
            let before = self.warden.metric("warden_config_reloads_total", &[])?;
            create_token(self.dir.path(), name, &self.env)?;
            self.warden.reload()?;
            let warden = &self.warden;
            wait::until_true(
                "warden reload (new join token)",
                Duration::from_secs(20),
                || Ok(warden.metric("warden_config_reloads_total", &[])? > before),
            )?;
        }
        Ok(self.token_file(name))
    }

    /// The environment every `warden` call of this mesh gets.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Waits until every outbound listener of every running sidecar gets an answer from
    /// the other side (any status but 503: 403 from a policy counts as connected).
    pub fn wait_routes(&self, timeout: Duration) -> Result<()> {
        for w in self
            .workloads
            .values()
            .filter(|w| self.sidecars.contains_key(&w.name))
        {
            for (to, addr) in &w.upstreams {
                wait::until_true(
                    &format!("route {} → {to} via {addr}", w.name),
                    timeout,
                    || Ok(http::get(*addr, "/warmup").is_ok_and(|r| r.status != 503)),
                )?;
            }
        }
        Ok(())
    }

    /// The config directory given to `warden serve`.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// The join token file `name`'s sidecar presents (created at start, or by
    /// [`Mesh::start_sidecar`] for workloads added later).
    pub fn token_file(&self, name: &str) -> PathBuf {
        token_path(self.dir.path(), name)
    }

    /// The directory holding logs and bootstraps.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A workload's addresses.
    pub fn workload(&self, name: &str) -> Result<&Workload> {
        self.workloads
            .get(name)
            .with_context(|| format!("no workload {name} in this mesh"))
    }

    /// The outbound listener `from`'s app calls to reach `to`.
    pub fn outbound(&self, from: &str, to: &str) -> Result<SocketAddr> {
        self.workload(from)?
            .upstreams
            .get(to)
            .copied()
            .with_context(|| format!("{from} has no upstream {to}"))
    }

    /// `name`'s sidecar.
    pub fn sidecar(&self, name: &str) -> Result<&Envoy> {
        self.sidecars
            .get(name)
            .with_context(|| format!("no sidecar for {name}"))
    }

    /// The echo app of `name`.
    pub fn app(&self, name: &str) -> Result<&EchoApp> {
        self.apps
            .get(name)
            .with_context(|| format!("no app for {name}"))
    }

    /// The control plane.
    pub fn warden(&self) -> &Warden {
        &self.warden
    }

    /// The control plane, mutably (process control).
    pub fn warden_mut(&mut self) -> &mut Warden {
        &mut self.warden
    }

    /// SIGKILLs `warden serve`, then starts a new one on the same config directory,
    /// state directory and ports (log `warden-restart-<n>.log`) and waits for `/readyz`.
    /// `while_down` runs between the two (e.g. to check traffic still flows).
    pub fn kill_and_restart_warden(
        &mut self,
        restart: u32,
        while_down: impl FnOnce(&Self) -> Result<()>,
    ) -> Result<()> {
        self.warden.kill()?;
        while_down(self)?;
        let mut warden = Warden::serve_as(
            &format!("warden-restart-{restart}"),
            &self.config_dir(),
            self.admin,
            &self.dir.path().join("logs"),
            &self.env,
        )?;
        warden.wait_ready(warden::READY_TIMEOUT)?;
        // The killed server's guard only reaps it (and keeps its log tail for reports).
        drop(std::mem::replace(&mut self.warden, warden));
        Ok(())
    }

    /// The ADS address.
    pub fn xds_addr(&self) -> SocketAddr {
        self.xds
    }

    /// `GET path` from `from`'s app through its sidecar to `to`.
    pub fn call(
        &self,
        from: &str,
        to: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        http::request(self.outbound(from, to)?, "GET", path, headers)
    }

    /// A keep-alive connection from `from`'s app to its outbound listener for `to`.
    pub fn connect(&self, from: &str, to: &str) -> Result<Conn<std::net::TcpStream>> {
        Conn::connect(self.outbound(from, to)?)
    }

    /// Gives `from` an outbound listener for `to` on a fresh port (new upstream or port
    /// change); call [`Mesh::apply`] to push it. Returns the new address.
    pub fn set_upstream(&mut self, from: &str, to: &str) -> Result<SocketAddr> {
        let addr = free_addr()?;
        self.set_upstream_addr(from, to, addr)?;
        Ok(addr)
    }

    /// Like [`Mesh::set_upstream`] with a chosen address.
    pub fn set_upstream_addr(&mut self, from: &str, to: &str, addr: SocketAddr) -> Result<()> {
        let w = self
            .workloads
            .get_mut(from)
            .with_context(|| format!("no workload {from}"))?;
        w.upstreams.insert(to.to_owned(), addr);
        Ok(())
    }

    /// Adds a workload to the config (no sidecar or app yet); returns its addresses.
    pub fn add_workload(&mut self, name: &str, upstreams: &[&str]) -> Result<Workload> {
        let spec = WorkloadSpec {
            name: name.to_owned(),
            upstreams: upstreams.iter().map(|s| (*s).to_owned()).collect(),
            foreign: Vec::new(),
        };
        let w = allocate(&spec)?;
        self.spec.workloads.push(spec);
        self.workloads.insert(name.to_owned(), w.clone());
        Ok(w)
    }

    /// Replaces the policy source and/or mode (call [`Mesh::apply`] to push it).
    pub fn set_policy(&mut self, source: &str) {
        self.spec.policy = source.to_owned();
    }

    /// Sets `enforce` or `dry-run` (call [`Mesh::apply`] to push it).
    pub fn set_policy_mode(&mut self, mode: &str) {
        self.spec.policy_mode = mode.to_owned();
    }

    /// Rewrites the config directory from the current model and tells `warden serve` to
    /// reload it (SIGHUP).
    pub fn apply(&self) -> Result<()> {
        write_config(
            &self.config_dir(),
            &self.spec,
            &self.workloads,
            self.xds,
            self.admin,
        )?;
        self.warden.reload()
    }

    /// Writes raw files into the config directory (for deliberately broken configs),
    /// then reloads.
    pub fn write_raw(&self, relative: &str, contents: &str) -> Result<()> {
        std::fs::write(self.config_dir().join(relative), contents)?;
        self.warden.reload()
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("WARDEN_E2E_KEEP").is_some() {
            if let Ok(placeholder) = tempfile::tempdir() {
                let kept = std::mem::replace(&mut self.dir, placeholder);
                eprintln!(
                    "WARDEN_E2E_KEEP: mesh directory kept at {}",
                    kept.keep().display()
                );
            }
        }
    }
}
