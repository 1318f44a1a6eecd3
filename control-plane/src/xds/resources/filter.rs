//! The ECDS resource for the authorization filter: a `TypedExtensionConfig` named
//! `warden-authz` holding the Wasm filter config. The module path is fixed per server
//! run; the policy travels in the plugin `configuration` (a `StringValue` with the JSON
//! of `warden_filter::PluginConfig`), so a policy change never changes the module bytes.

use xds_api::pb::envoy::config::core::v3::{
    async_data_source, data_source, AsyncDataSource, BackoffStrategy, DataSource,
    TypedExtensionConfig,
};
use xds_api::pb::google::protobuf::{Duration, StringValue};

use std::path::{Path, PathBuf};

use super::common::any;
use super::NodeInputs;
use crate::config::{Config, Workload};
use crate::xds::ext::{PluginConfig, ReloadConfig, VmConfig, Wasm, FAIL_RELOAD};

/// The two builds of the filter module, as Envoy should open them. A policy that calls
/// an extended builtin (regex, glob, net, ...: `warden_filter::EXTENDED_BUILTIN_PREFIXES`)
/// gets `extended`; every other policy gets the smaller `core` module, which V8 compiles
/// in about half the time (sidecar readiness).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterModules {
    /// Core Rego builtins only.
    pub core: PathBuf,
    /// Core plus the extended builtins.
    pub extended: PathBuf,
}

impl FilterModules {
    /// The module for a config's policy.
    pub fn for_config(&self, cfg: &Config) -> &Path {
        if cfg.policies.extended_builtins.is_empty() {
            &self.core
        } else {
            &self.extended
        }
    }
}

/// One module for every policy (it must be the extended build).
impl From<PathBuf> for FilterModules {
    fn from(path: PathBuf) -> Self {
        Self {
            core: path.clone(),
            extended: path,
        }
    }
}

impl From<&str> for FilterModules {
    fn from(path: &str) -> Self {
        PathBuf::from(path).into()
    }
}

/// Name of the filter in the HCM and of its ECDS resource.
pub const AUTHZ_FILTER_NAME: &str = "warden-authz";

/// A VM that traps (a bug, or a host status the SDK does not expect) is not left failing:
/// under `FAIL_RELOAD` Envoy answers requests with an error (fail closed) and creates a
/// fresh VM on the next request, at most once per backoff interval (200 ms doubling to
/// 5 s, so a client that can crash the VM on purpose cannot make it spin). Envoy counts
/// them in `wasm.warden-authz.vm_reload_{success,failure,backoff}` (see README).
const RELOAD_BASE_MS: u64 = 200;
const RELOAD_MAX_MS: u64 = 5_000;

fn duration(ms: u64) -> Duration {
    Duration {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from(ms % 1000 * 1_000_000).unwrap_or(0),
    }
}

/// The Wasm runtime (the only one compiled into stock Envoy, see REFERENCE.md).
const RUNTIME: &str = "envoy.wasm.runtime.v8";

/// The JSON the filter receives in `on_configure` for `workload`: the
/// `warden_filter::PluginConfig` built by [`crate::policy::plugin_config`].
pub fn filter_configuration(cfg: &Config, workload: &Workload) -> String {
    crate::policy::plugin_config(cfg, workload).to_json()
}

/// The `warden-authz` ECDS resource for one node: Envoy's RBAC filter when the policy
/// compiles to it for this workload (`crate::rbac`), else the Wasm filter. Both types are
/// allowed on the listener, so switching between them is one ECDS push (no drain).
pub(super) fn extension_config(inputs: &NodeInputs<'_>) -> TypedExtensionConfig {
    match crate::rbac::path_for(inputs.config, inputs.workload) {
        crate::rbac::AuthzPath::Native(rules) => {
            let dry_run = inputs.config.policy.mode == crate::config::PolicyMode::DryRun;
            let peers = crate::rbac::emit::Peers::from_federated(!inputs.federated.is_empty());
            TypedExtensionConfig {
                name: AUTHZ_FILTER_NAME.to_string(),
                typed_config: Some(any(&crate::rbac::emit::http_rbac(&rules, dry_run, peers))),
            }
        }
        crate::rbac::AuthzPath::Wasm(_) => wasm_extension_config(inputs),
    }
}

fn wasm_extension_config(inputs: &NodeInputs<'_>) -> TypedExtensionConfig {
    let configuration = StringValue {
        value: filter_configuration(inputs.config, inputs.workload),
    };
    let wasm = Wasm {
        config: Some(PluginConfig {
            name: AUTHZ_FILTER_NAME.to_string(),
            root_id: String::new(),
            vm_config: Some(VmConfig {
                vm_id: "warden".to_string(),
                runtime: RUNTIME.to_string(),
                code: Some(AsyncDataSource {
                    specifier: Some(async_data_source::Specifier::Local(DataSource {
                        specifier: Some(data_source::Specifier::Filename(
                            inputs.filter_module.display().to_string(),
                        )),
                        ..Default::default()
                    })),
                }),
            }),
            configuration: Some(any(&configuration)),
            failure_policy: FAIL_RELOAD,
            reload_config: Some(ReloadConfig {
                backoff: Some(BackoffStrategy {
                    base_interval: Some(duration(RELOAD_BASE_MS)),
                    max_interval: Some(duration(RELOAD_MAX_MS)),
                }),
            }),
        }),
    };
    TypedExtensionConfig {
        name: AUTHZ_FILTER_NAME.to_string(),
        typed_config: Some(any(&wasm)),
    }
}
