//! Several control-plane replicas on 127.0.0.1: one generated config directory with a
//! `ca.upstream` root made at test time (openssl), N `warden serve` processes that differ
//! only in `--xds-listen`, `--admin-listen` and `--state-dir` (given through their
//! environment variables), and one Envoy sidecar + echo app per workload whose bootstrap
//! names the replica set in an order of the test's choice (`--xds-server a,b`).
//! Dropping the [`ReplicaSet`] stops everything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::app::EchoApp;
use crate::envoy::{self, Envoy};
use crate::mesh::{spiffe_id, DEFAULT_POLICY, TRUST_DOMAIN};
use crate::ports::free_addr;
use crate::warden::{self, Warden};

/// How the sidecars talk to the replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Channel {
    /// TLS + join token, state of the world (the default bootstrap).
    #[default]
    AttestedSotw,
    /// TLS + join token, incremental xDS (`--delta`).
    AttestedDelta,
    /// `--insecure-plaintext` bootstraps and `serve --insecure-plaintext-xds` (the
    /// `envoy_grpc` channel with its static cluster).
    Plaintext,
}

/// One workload: its addresses and the replica order its bootstrap lists.
#[derive(Debug, Clone)]
pub struct Member {
    /// Workload name (node id `<name>-sidecar`).
    pub name: String,
    /// Sidecar inbound (mTLS) listener.
    pub inbound: SocketAddr,
    /// The echo app.
    pub app: SocketAddr,
    /// Sidecar admin.
    pub admin: SocketAddr,
    /// Outbound listeners by upstream workload.
    pub upstreams: BTreeMap<String, SocketAddr>,
}

/// A running replica set. Field order is drop order.
#[derive(Debug)]
pub struct ReplicaSet {
    sidecars: BTreeMap<String, Envoy>,
    apps: BTreeMap<String, EchoApp>,
    replicas: Vec<Warden>,
    xds: Vec<SocketAddr>,
    /// Each replica's environment (its listen addresses and state dir), for restarts.
    replica_env: Vec<Vec<(String, String)>>,
    restarts: usize,
    channel: Channel,
    members: BTreeMap<String, Member>,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl ReplicaSet {
    /// Writes the config (workloads `(name, upstreams)`, `svid_ttl`), an upstream root, a
    /// join token per workload, and starts `replicas` servers (no sidecars yet).
    pub fn start(replicas: usize, workloads: &[(&str, &[&str])], svid_ttl: &str) -> Result<Self> {
        Self::start_with(replicas, workloads, svid_ttl, Channel::default())
    }

    /// Like [`ReplicaSet::start`] with the sidecars' channel chosen.
    pub fn start_with(
        replicas: usize,
        workloads: &[(&str, &[&str])],
        svid_ttl: &str,
        channel: Channel,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("warden-replicas-")
            .tempdir()?;
        std::fs::create_dir_all(dir.path().join("logs"))?;
        let mut members = BTreeMap::new();
        for (name, ups) in workloads {
            let mut upstreams = BTreeMap::new();
            for u in *ups {
                upstreams.insert((*u).to_owned(), free_addr()?);
            }
            let m = Member {
                name: (*name).to_owned(),
                inbound: free_addr()?,
                app: free_addr()?,
                admin: free_addr()?,
                upstreams,
            };
            members.insert(m.name.clone(), m);
        }
        let root = upstream_root(dir.path())?;
        write_config(&dir.path().join("config"), &members, svid_ttl, Some(&root))?;
        let env = crate::locate::filter_module_env().unwrap_or_default();
        let mut set = Self {
            sidecars: BTreeMap::new(),
            apps: BTreeMap::new(),
            replicas: Vec::new(),
            xds: Vec::new(),
            replica_env: Vec::new(),
            restarts: 0,
            channel,
            members,
            env,
            dir,
        };
        let names: Vec<String> = set.members.keys().cloned().collect();
        for name in &names {
            set.create_token(name, &set.token_file(name))?;
        }
        for i in 0..replicas {
            let (xds, admin) = (free_addr()?, free_addr()?);
            let mut env = set.env.clone();
            env.push(("WARDEN_XDS_LISTEN".into(), xds.to_string()));
            env.push(("WARDEN_ADMIN_LISTEN".into(), admin.to_string()));
            let state = set.dir.path().join(format!("state-{i}"));
            env.push(("WARDEN_STATE_DIR".into(), state.display().to_string()));
            if channel == Channel::Plaintext {
                env.push(("WARDEN_INSECURE_PLAINTEXT_XDS".into(), "true".into()));
            }
            let w = Warden::serve_as(
                &format!("warden-{i}"),
                &set.config_dir(),
                admin,
                &set.dir.path().join("logs"),
                &env,
            )?;
            set.replicas.push(w);
            set.xds.push(xds);
            set.replica_env.push(env);
        }
        for w in &mut set.replicas {
            w.wait_ready(warden::READY_TIMEOUT)?;
        }
        Ok(set)
    }

    /// Starts `name`'s app and sidecar with a bootstrap listing the replicas in `order`
    /// (indices), and waits until the sidecar is ready.
    pub fn start_sidecar(&mut self, name: &str, order: &[usize]) -> Result<()> {
        let servers: Vec<String> = order.iter().map(|i| self.xds[*i].to_string()).collect();
        let yaml = self.bootstrap(name, &servers.join(","))?;
        let path = self.dir.path().join(format!("bootstrap-{name}.yaml"));
        std::fs::write(&path, yaml)?;
        let m = self.member(name)?.clone();
        self.apps
            .insert(name.to_owned(), EchoApp::start(name, m.app)?);
        let mut envoy = Envoy::start(
            &format!("envoy-{name}"),
            &path,
            m.admin,
            &self.dir.path().join("logs"),
        )?;
        envoy.wait_ready(envoy::READY_TIMEOUT)?;
        self.sidecars.insert(name.to_owned(), envoy);
        Ok(())
    }

    /// `warden bootstrap --xds-server <servers>` for `name` (attested: the root file as
    /// `--ca-file`).
    pub fn bootstrap(&self, name: &str, servers: &str) -> Result<String> {
        let config = self.config_dir();
        let token = self.token_file(name);
        let root = self.root_pem_path();
        let mut args = vec![
            "bootstrap",
            "--config",
            utf8(&config)?,
            "--workload",
            name,
            "--xds-server",
            servers,
        ];
        match self.channel {
            Channel::Plaintext => args.push("--insecure-plaintext"),
            attested => {
                args.extend(["--token-file", utf8(&token)?, "--ca-file", utf8(&root)?]);
                if attested == Channel::AttestedDelta {
                    args.push("--delta");
                }
            }
        }
        warden::cli(&args, &self.env)
    }

    /// `warden token create --workload name --out <path>`.
    pub fn create_token(&self, name: &str, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out.parent().context("token path has a parent")?)?;
        let config = self.config_dir();
        warden::cli(
            &[
                "token",
                "create",
                "--config",
                utf8(&config)?,
                "--workload",
                name,
                "--ttl",
                "24h",
                "--out",
                utf8(out)?,
            ],
            &self.env,
        )?;
        Ok(())
    }

    /// Replica `i`.
    pub fn replica(&self, i: usize) -> &Warden {
        &self.replicas[i]
    }

    /// Replica `i`, mutably (kill, logs).
    pub fn replica_mut(&mut self, i: usize) -> &mut Warden {
        &mut self.replicas[i]
    }

    /// Starts replica `i` again (same addresses and state dir; log
    /// `warden-<i>-restart-<n>.log`) after it was killed, and waits for `/readyz`.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.restarts += 1;
        let admin = self.replicas[i].admin();
        let mut w = Warden::serve_as(
            &format!("warden-{i}-restart-{}", self.restarts),
            &self.config_dir(),
            admin,
            &self.dir.path().join("logs"),
            &self.replica_env[i],
        )?;
        w.wait_ready(warden::READY_TIMEOUT)?;
        drop(std::mem::replace(&mut self.replicas[i], w));
        Ok(())
    }

    /// Starts one more `warden serve` on replica `i`'s state dir (fresh listen
    /// addresses), as a misconfigured extra replica would; does not wait.
    pub fn serve_on_state_of(&self, i: usize, name: &str) -> Result<Warden> {
        let (xds, admin) = (free_addr()?, free_addr()?);
        let mut env = self.replica_env[i].clone();
        env.retain(|(k, _)| k != "WARDEN_XDS_LISTEN" && k != "WARDEN_ADMIN_LISTEN");
        env.push(("WARDEN_XDS_LISTEN".into(), xds.to_string()));
        env.push(("WARDEN_ADMIN_LISTEN".into(), admin.to_string()));
        Warden::serve_as(
            name,
            &self.config_dir(),
            admin,
            &self.dir.path().join("logs"),
            &env,
        )
    }

    /// Replica `i`'s ADS address.
    pub fn xds(&self, i: usize) -> SocketAddr {
        self.xds[i]
    }

    /// `name`'s sidecar.
    pub fn sidecar(&self, name: &str) -> Result<&Envoy> {
        self.sidecars
            .get(name)
            .with_context(|| format!("no sidecar {name}"))
    }

    /// A workload's addresses.
    pub fn member(&self, name: &str) -> Result<&Member> {
        self.members
            .get(name)
            .with_context(|| format!("no workload {name}"))
    }

    /// The config directory every replica reads.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// The shared upstream root certificate (PEM file).
    pub fn root_pem_path(&self) -> PathBuf {
        self.dir.path().join("upstream/root.pem")
    }

    /// Where `name`'s join token is.
    pub fn token_file(&self, name: &str) -> PathBuf {
        self.dir.path().join("tokens").join(name)
    }

    /// The test directory (logs, bootstraps).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The environment of every `warden` call.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }
}

impl Drop for ReplicaSet {
    /// With `WARDEN_E2E_KEEP=1` the directory (config, logs, bootstraps) is kept.
    fn drop(&mut self) {
        if std::env::var_os("WARDEN_E2E_KEEP").is_some() {
            if let Ok(placeholder) = tempfile::tempdir() {
                let kept = std::mem::replace(&mut self.dir, placeholder);
                eprintln!(
                    "WARDEN_E2E_KEEP: replica set directory kept at {}",
                    kept.keep().display()
                );
            }
        }
    }
}

/// The ADS state replica `w` has for `node`: `Some(streams)` once every type it sent is
/// ACKed at its current version, `None` before.
pub fn acked_streams(w: &Warden, node: &str) -> Result<Option<u64>> {
    let dump = w.config_dump()?;
    let n = &dump["nodes"][node];
    let streams = n["connected_streams"].as_u64().unwrap_or(0);
    let Some(types) = n["types"].as_object() else {
        return Ok(None);
    };
    let all_acked = types.values().all(|t| {
        let current = t["version_current"].as_str().unwrap_or("");
        current.is_empty() || t["version_acked"].as_str() == Some(current)
    });
    let sds_acked = n["types"]["sds"]["version_acked"].as_str().is_some();
    Ok((streams > 0 && all_acked && sds_acked).then_some(streams))
}

/// The certificate chain (PEM) of `spiffe_id`'s SVID as `envoy` holds it (from its
/// config dump; Envoy redacts only the private key).
pub fn svid_chain_pem(envoy: &Envoy, spiffe_id: &str) -> Result<String> {
    let dump = envoy.config_dump_resource("dynamic_active_secrets")?;
    for c in dump["configs"].as_array().into_iter().flatten() {
        if c["name"].as_str() != Some(spiffe_id) {
            continue;
        }
        let chain = &c["secret"]["tls_certificate"]["certificate_chain"];
        if let Some(s) = chain["inline_string"].as_str() {
            return Ok(s.to_owned());
        }
        if let Some(b) = chain["inline_bytes"].as_str() {
            return decode_base64(b);
        }
        bail!("secret {spiffe_id} has no inline chain: {c}");
    }
    bail!("no active secret {spiffe_id} in {dump}")
}

/// `openssl` on `args`; its stdout, or an error with its stderr.
pub fn openssl(args: &[&str], dir: &Path) -> Result<String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl")?;
    ensure!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The serial (lowercase hex, no leading zeros) of the first certificate in `pem`.
pub fn serial_of(pem: &str, dir: &Path) -> Result<String> {
    let file = dir.join(format!("serial-{}.pem", rand::random::<u64>()));
    std::fs::write(&file, pem)?;
    let out = openssl(&["x509", "-noout", "-serial", "-in", utf8(&file)?], dir)?;
    let hex = out
        .trim()
        .strip_prefix("serial=")
        .context("openssl serial output")?;
    Ok(hex.trim_start_matches('0').to_ascii_lowercase())
}

/// Splits a PEM bundle into its certificates.
pub fn pem_certs(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    pem.split_inclusive(END)
        .filter(|c| c.contains("BEGIN CERTIFICATE"))
        .map(|c| format!("{}\n", c.trim_start()))
        .collect()
}

fn decode_base64(text: &str) -> Result<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim())?;
    Ok(String::from_utf8(bytes)?)
}

fn utf8(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 temp dir")
}

/// A root CA (EC P-256, 30 days) made with openssl under `<dir>/upstream`; returns the
/// (cert, key) paths. Never committed: made fresh by every run.
fn upstream_root(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let up = dir.join("upstream");
    std::fs::create_dir_all(&up)?;
    let (cert, key) = (up.join("root.pem"), up.join("root.key"));
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/O=Warden e2e/CN=Shared Upstream Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            utf8(&key)?,
            "-out",
            utf8(&cert)?,
        ],
        &up,
    )?;
    Ok((cert, key))
}

/// The config directory: `warden.yaml` (with `ca.upstream` when given), one file per
/// workload, the default policy.
pub fn write_config(
    dir: &Path,
    members: &BTreeMap<String, Member>,
    svid_ttl: &str,
    upstream: Option<&(PathBuf, PathBuf)>,
) -> Result<()> {
    std::fs::create_dir_all(dir.join("workloads"))?;
    std::fs::create_dir_all(dir.join("policies"))?;
    let upstream = match upstream {
        Some((cert, key)) => format!(
            "  upstream:\n    cert: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ),
        None => String::new(),
    };
    let (xds, admin) = (free_addr()?, free_addr()?);
    std::fs::write(
        dir.join("warden.yaml"),
        format!(
            "trust_domain: {TRUST_DOMAIN}\n\
             ca:\n  key_type: ec-p256\n  ttl: 24h\n  svid_ttl: {svid_ttl}\n  state_dir: .warden\n{upstream}\
             server:\n  xds_listen: {xds}\n  admin_listen: {admin}\n\
             policy:\n  entrypoint: data.envoy.authz.allow\n  mode: enforce\n  deny_status: 403\n  expose_reason: false\n"
        ),
    )?;
    for m in members.values() {
        let mut yaml = format!(
            "name: {name}\nspiffe_id: {id}\nnode_id: {name}-sidecar\nsidecar:\n  admin: {admin}\n\
             inbound:\n  listen: {inbound}\n  app: {app}\n",
            name = m.name,
            id = spiffe_id(&m.name),
            admin = m.admin,
            inbound = m.inbound,
            app = m.app,
        );
        if m.upstreams.is_empty() {
            yaml.push_str("upstreams: []\n");
        } else {
            yaml.push_str("upstreams:\n");
            for (to, listen) in &m.upstreams {
                yaml.push_str(&format!("  - workload: {to}\n    listen: {listen}\n"));
            }
        }
        std::fs::write(dir.join(format!("workloads/{}.yaml", m.name)), yaml)?;
    }
    std::fs::write(dir.join("policies/authz.rego"), DEFAULT_POLICY)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_chains_decode_to_pem() {
        assert_eq!(decode_base64("LS0tLS1CRUdJTg==").unwrap(), "-----BEGIN");
        assert!(decode_base64("@@").is_err());
    }

    #[test]
    fn a_pem_bundle_splits_into_its_certificates() {
        let one = "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----";
        let two = format!("{one}\n{one}\n");
        assert_eq!(pem_certs(&two).len(), 2);
        assert!(pem_certs("").is_empty());
    }
}
