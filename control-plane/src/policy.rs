//! The per-workload filter configuration: turns a validated [`Config`] and one
//! [`Workload`] into the `warden_filter::PluginConfig` the Wasm filter receives (inside
//! the ECDS Wasm config's plugin `configuration`), and compiles it with the filter's own
//! core so nothing that fails to compile is ever pushed. Used by the xDS builders and by
//! `warden policy eval`. No I/O.

use sha2::{Digest, Sha256};
use warden_filter::{CompiledPolicy, Mode, PluginConfig, PolicyError, PolicyModule};

use crate::config::{Config, PolicyMode, PolicySources, Workload};

/// Policy version: the first 12 hex digits of SHA-256 over the entrypoint, the modules
/// (name and source, in order) and the data document. Equal policies, equal versions;
/// it does not depend on the workload.
pub fn policy_version(entrypoint: &str, sources: &PolicySources) -> String {
    let mut hash = Sha256::new();
    hash.update(entrypoint.as_bytes());
    hash.update([0]);
    for module in &sources.modules {
        hash.update(module.name.as_bytes());
        hash.update([0]);
        hash.update(module.source.as_bytes());
        hash.update([0]);
    }
    hash.update(sources.data.to_string().as_bytes());
    hex::encode(&hash.finalize()[..6])
}

/// The filter configuration for one workload's inbound sidecar.
pub fn plugin_config(config: &Config, workload: &Workload) -> PluginConfig {
    let settings = &config.policy;
    let modules = config
        .policies
        .modules
        .iter()
        .map(|m| PolicyModule {
            name: m.name.clone(),
            source: m.source.clone(),
        })
        .collect();
    let mut plugin = PluginConfig::new(modules);
    plugin.policy_version = policy_version(&settings.entrypoint, &config.policies);
    // The rule the compiled program evaluates (a package path resolved to its `allow`).
    plugin.entrypoint = if config.policies.entrypoint.is_empty() {
        settings.entrypoint.clone()
    } else {
        config.policies.entrypoint.clone()
    };
    plugin.mode = match settings.mode {
        PolicyMode::Enforce => Mode::Enforce,
        PolicyMode::DryRun => Mode::DryRun,
    };
    plugin.deny_status = settings.deny_status;
    plugin.expose_reason = settings.expose_reason;
    plugin.destination_principal = workload.spiffe_id.to_string();
    plugin.audit_records = config.audit.listen.is_some();
    plugin.data = if config.policies.data.is_object() {
        config.policies.data.clone()
    } else {
        serde_json::Value::Object(serde_json::Map::new())
    };
    // Compiled once when the config was loaded (a config that loaded has one).
    plugin.program = config.policies.program.clone();
    plugin.input_needs = config.policies.input_needs;
    plugin.engine = config.policies.engine;
    plugin
}

/// Builds the filter configuration for one workload and loads its program exactly as the
/// filter will in `on_configure`. An error means: do not push this policy.
pub fn compile_for(
    config: &Config,
    workload: &Workload,
) -> Result<(PluginConfig, CompiledPolicy), PolicyError> {
    let plugin = plugin_config(config, workload);
    let compiled = CompiledPolicy::load(&plugin)?;
    Ok((plugin, compiled))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sample() -> Config {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
        crate::config::load(&dir).unwrap_or_else(|d| panic!("{d}"))
    }

    #[test]
    fn sample_mesh_policy_compiles_for_every_workload() {
        let config = sample();
        for workload in &config.workloads {
            let (plugin, _) = compile_for(&config, workload).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(plugin.destination_principal, workload.spiffe_id.to_string());
            assert_eq!(plugin.policy_version.len(), 12);
            // The filter parses what the control plane sends.
            let back = PluginConfig::from_json(plugin.to_json().as_bytes()).ok();
            assert_eq!(back.as_ref(), Some(&plugin));
        }
    }

    #[test]
    fn policy_version_changes_with_the_policy_but_not_the_workload() {
        let config = sample();
        let a = plugin_config(&config, &config.workloads[0]).policy_version;
        let b = plugin_config(&config, &config.workloads[1]).policy_version;
        assert_eq!(a, b);
        let mut changed = config.policies.clone();
        changed.modules[0].source.push_str("\n# changed\n");
        assert_ne!(policy_version(&config.policy.entrypoint, &changed), a);
    }
}
