//! The ECDS resource for the authorization filter: a `TypedExtensionConfig` named
//! `warden-authz` holding the Wasm filter config. The module path is fixed per server
//! run; the policy travels in the plugin `configuration` (a `StringValue` with the JSON
//! of `warden_filter::PluginConfig`), so a policy change never changes the module bytes.

use xds_api::pb::envoy::config::core::v3::{
    async_data_source, data_source, AsyncDataSource, DataSource, TypedExtensionConfig,
};
use xds_api::pb::google::protobuf::StringValue;

use super::common::any;
use super::NodeInputs;
use crate::config::{Config, PolicyMode, Workload};
use crate::xds::ext::{PluginConfig, VmConfig, Wasm, FAIL_CLOSED};
use crate::xds::types::Version;

/// Name of the filter in the HCM and of its ECDS resource.
pub const AUTHZ_FILTER_NAME: &str = "warden-authz";

/// The Wasm runtime (the only one compiled into stock Envoy, see REFERENCE.md).
const RUNTIME: &str = "envoy.wasm.runtime.v8";

/// The JSON the filter receives in `on_configure` for `workload`.
///
/// TODO(filter merge): replace the body with `crate::policy::plugin_config(cfg, workload)`
/// once the filter work lands on main; the field names below follow
/// `warden_filter::PluginConfig` (which denies unknown fields).
pub fn filter_configuration(cfg: &Config, workload: &Workload) -> String {
    let modules: Vec<serde_json::Value> = cfg
        .policies
        .modules
        .iter()
        .map(|m| serde_json::json!({ "name": m.name, "source": m.source }))
        .collect();
    let data = cfg.policies.data.to_string();
    let policy_version = Version::of_bytes(
        cfg.policies
            .modules
            .iter()
            .flat_map(|m| [m.name.as_bytes(), m.source.as_bytes()])
            .chain([data.as_bytes()]),
    );
    let mode = match cfg.policy.mode {
        PolicyMode::Enforce => "enforce",
        PolicyMode::DryRun => "dry_run",
    };
    serde_json::json!({
        "policy_version": policy_version.as_str(),
        "entrypoint": cfg.policy.entrypoint,
        "mode": mode,
        "deny_status": cfg.policy.deny_status,
        "expose_reason": cfg.policy.expose_reason,
        "destination_principal": workload.spiffe_id.to_string(),
        "modules": modules,
        "data": cfg.policies.data,
    })
    .to_string()
}

/// The `warden-authz` ECDS resource for one node.
pub(super) fn extension_config(inputs: &NodeInputs<'_>) -> TypedExtensionConfig {
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
            failure_policy: FAIL_CLOSED,
        }),
    };
    TypedExtensionConfig {
        name: AUTHZ_FILTER_NAME.to_string(),
        typed_config: Some(any(&wasm)),
    }
}
