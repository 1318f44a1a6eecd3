//! The mesh's files: the generated config directory (`warden.yaml`, one file per
//! workload, the policy), join tokens, and the ports each workload gets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{MeshSpec, Workload, WorkloadSpec};
use crate::ports::free_addr;
use crate::warden;

/// Environment passed to every `warden` call: the filter modules when they are built.
pub(super) fn harness_env() -> Vec<(String, String)> {
    crate::locate::filter_module_env().unwrap_or_default()
}

pub(super) fn token_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("tokens").join(name)
}

/// `warden token create --workload name --out <dir>/tokens/<name>` (1 day).
pub(super) fn create_token(dir: &Path, name: &str, env: &[(String, String)]) -> Result<()> {
    let out = token_path(dir, name);
    std::fs::create_dir_all(out.parent().context("token path has a parent")?)?;
    let config = dir.join("config");
    warden::cli(
        &[
            "token",
            "create",
            "--config",
            config.to_str().context("non-UTF-8 temp dir")?,
            "--workload",
            name,
            "--ttl",
            "24h",
            "--out",
            out.to_str().context("non-UTF-8 temp dir")?,
        ],
        env,
    )?;
    Ok(())
}

pub(super) fn allocate(spec: &WorkloadSpec) -> Result<Workload> {
    let mut upstreams = BTreeMap::new();
    for to in spec
        .upstreams
        .iter()
        .chain(spec.foreign.iter().map(|(name, _, _)| name))
    {
        upstreams.insert(to.clone(), free_addr()?);
    }
    Ok(Workload {
        name: spec.name.clone(),
        inbound: free_addr()?,
        app: free_addr()?,
        admin: free_addr()?,
        upstreams,
    })
}

pub(super) fn write_config(
    dir: &Path,
    spec: &MeshSpec,
    workloads: &BTreeMap<String, Workload>,
    xds: SocketAddr,
    admin: SocketAddr,
) -> Result<()> {
    std::fs::create_dir_all(dir.join("workloads"))?;
    std::fs::create_dir_all(dir.join("policies"))?;
    let trust_domain = &spec.trust_domain;
    let mut warden_yaml = format!(
        "trust_domain: {trust_domain}\n\
         ca:\n  key_type: ec-p256\n  ttl: {}\n  svid_ttl: {}\n  state_dir: .warden\n\
         server:\n  xds_listen: {xds}\n  admin_listen: {admin}\n\
         policy:\n  entrypoint: data.envoy.authz.allow\n  mode: {}\n  deny_status: 403\n  expose_reason: {}\n",
        spec.ca_ttl, spec.svid_ttl, spec.policy_mode, spec.expose_reason
    );
    warden_yaml.push_str(&spec.extra_warden_yaml);
    write_if_changed(&dir.join("warden.yaml"), &warden_yaml)?;
    for w in workloads.values() {
        let mut yaml = format!(
            "name: {name}\nspiffe_id: {id}\nnode_id: {name}-sidecar\nsidecar:\n  admin: {admin}\n\
             inbound:\n  listen: {inbound}\n  app: {app}\n",
            name = w.name,
            id = spec.id(&w.name),
            admin = w.admin,
            inbound = w.inbound,
            app = w.app,
        );
        if w.upstreams.is_empty() {
            yaml.push_str("upstreams: []\n");
        } else {
            yaml.push_str("upstreams:\n");
            let foreign = spec
                .workloads
                .iter()
                .find(|s| s.name == w.name)
                .map(|s| s.foreign.as_slice())
                .unwrap_or_default();
            for (to, listen) in &w.upstreams {
                yaml.push_str(&format!("  - workload: {to}\n    listen: {listen}\n"));
                if let Some((_, id, address)) = foreign.iter().find(|(n, _, _)| n == to) {
                    yaml.push_str(&format!("    spiffe_id: {id}\n    address: {address}\n"));
                }
            }
        }
        write_if_changed(&dir.join(format!("workloads/{}.yaml", w.name)), &yaml)?;
    }
    write_if_changed(&dir.join("policies/authz.rego"), &spec.policy)?;
    for (path, contents) in &spec.files {
        write_if_changed(&dir.join(path), contents)?;
    }
    if spec.workloads.is_empty() {
        bail!("a mesh needs at least one workload");
    }
    Ok(())
}

fn write_if_changed(path: &Path, contents: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    // Write then rename, so a watching server never reads a half-written file.
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
