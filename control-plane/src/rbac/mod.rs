//! Rego compiled to Envoy's native RBAC filter, per destination workload. When the
//! policy's decision for a workload depends only on the verified source principal, the
//! method, the path and request headers, compared with constants (see `compile` for the
//! exact subset), the workload's inbound listener gets an RBAC filter config making the
//! same decisions; otherwise it keeps the Wasm filter, and [`AuthzPath::Wasm`] names the
//! first construct that kept it there (`file:line`). Conservative: anything the compiler
//! does not fully understand means Wasm. Pure: no I/O; the xDS builders deliver the
//! result over ECDS.
//!
//! What it relies on, from the inbound listener (`xds::resources::listener`): a verified
//! client certificate on every connection (so a principal is always there), paths
//! normalized and slashes merged before any filter, and `x-forwarded-client-cert` /
//! `x-spiffe-id` never compared (the filter hides them from the policy).

mod calls;
mod compile;
pub mod emit;
#[cfg(test)]
mod eval;
pub mod ir;
pub mod json;
mod ops;
pub mod proto;
mod refs;

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod review_tests;
#[cfg(test)]
mod tests;

use warden_filter::PluginConfig;

use crate::config::{Config, Workload};

/// A place in a Rego file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    /// Module name, e.g. `policies/authz.rego`.
    pub file: String,
    /// 1-based line.
    pub line: u32,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Why a policy stays on the Wasm filter for a workload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}{}", at.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
pub struct NotNative {
    /// The construct, e.g. "a call to `regex.match`".
    pub what: String,
    /// Where, when known.
    pub at: Option<Loc>,
}

/// One RBAC policy: a Rego `allow` rule body and when it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRule {
    /// The RBAC policy name (`file:line`, `#n` for the n-th body of one rule).
    pub name: String,
    /// The Rego rule it came from.
    pub at: Loc,
    /// When it allows.
    pub cond: ir::Cond,
}

/// Which filter enforces a workload's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthzPath {
    /// Envoy's RBAC filter with these policies (empty: everything is denied).
    Native(Vec<NamedRule>),
    /// The Wasm filter (Rego in regorus).
    Wasm(WasmReason),
}

/// Why the Wasm filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WasmReason {
    /// `policy.native_rbac: off` in warden.yaml.
    #[error("policy.native_rbac is off")]
    Disabled,
    /// Dry-run mode: Envoy's RBAC shadow rules count `shadow_denied`, not the
    /// `dry_run_denied` dashboards and alerts watch, so dry-run stays on the filter.
    #[error("policy.mode is dry-run (RBAC shadow rules cannot count `dry_run_denied`)")]
    DryRun,
    /// The policy does not compile to RBAC for this workload.
    #[error("not compilable to RBAC: {0}")]
    NotNative(#[from] NotNative),
}

impl AuthzPath {
    /// One line for `warden validate` / `warden policy config`.
    pub fn describe(&self) -> String {
        match self {
            AuthzPath::Native(rules) => {
                let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
                format!(
                    "native RBAC ({} policies: {})",
                    rules.len(),
                    names.join(", ")
                )
            }
            AuthzPath::Wasm(reason) => format!("Wasm ({reason})"),
        }
    }
}

/// Compiles a filter configuration (modules, data, entrypoint, destination principal, as
/// `crate::policy::plugin_config` assembles them) to RBAC rules.
pub fn compile_plugin(plugin: &PluginConfig) -> Result<Vec<NamedRule>, NotNative> {
    let mut engine = regorus::Engine::new();
    for module in &plugin.modules {
        engine
            .add_policy(module.name.clone(), module.source.clone())
            .map_err(|e| NotNative {
                what: format!("module does not parse: {e:#}"),
                at: None,
            })?;
    }
    let rules = compile::compile(
        engine.get_modules(),
        &plugin.data,
        &plugin.entrypoint,
        &plugin.destination_principal,
    )?;
    Ok(name_rules(rules))
}

/// Names rule bodies `file:line`, adding `#n` where one rule has several.
fn name_rules(rules: Vec<compile::CompiledRule>) -> Vec<NamedRule> {
    let mut out: Vec<NamedRule> = Vec::new();
    let mut seen: std::collections::HashMap<Loc, usize> = std::collections::HashMap::new();
    for rule in rules {
        let same = *seen
            .entry(rule.at.clone())
            .and_modify(|n| *n += 1)
            .or_insert(0);
        let name = if same == 0 {
            rule.at.to_string()
        } else {
            format!("{}#{}", rule.at, same + 1)
        };
        if rule.cond == ir::Cond::False {
            continue;
        }
        out.push(NamedRule {
            name,
            at: rule.at,
            cond: rule.cond,
        });
    }
    out
}

/// The path a workload's policy takes under the config (`policy.native_rbac`).
pub fn path_for(config: &Config, workload: &Workload) -> AuthzPath {
    if !config.policy.native_rbac {
        return AuthzPath::Wasm(WasmReason::Disabled);
    }
    if config.policy.mode == crate::config::PolicyMode::DryRun {
        return AuthzPath::Wasm(WasmReason::DryRun);
    }
    let plugin = crate::policy::plugin_config(config, workload);
    match compile_plugin(&plugin) {
        Ok(rules) => AuthzPath::Native(rules),
        Err(e) => AuthzPath::Wasm(e.into()),
    }
}
