//! The plugin configuration: the JSON contract between the control plane and the filter.
//!
//! The control plane serialises a [`PluginConfig`] into the Wasm plugin's `configuration`
//! (a `google.protobuf.StringValue`); the filter parses it in `on_configure`. This module
//! only describes and parses that document; compiling the policy lives in `policy`.

use serde::{Deserialize, Serialize};

use crate::needs::InputNeeds;

/// Default decision rule, as in OPA-Envoy.
pub const DEFAULT_ENTRYPOINT: &str = "data.envoy.authz.allow";

/// Whether a deny is enforced or only logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A deny answers the request with `deny_status`.
    #[default]
    Enforce,
    /// A deny is logged and counted as `dry_run_denied`; the request goes through.
    #[serde(alias = "dry-run")]
    DryRun,
}

/// One Rego module: a name (used in error messages, e.g. `policies/authz.rego`) and its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyModule {
    /// Name shown in diagnostics; by convention the path relative to the config directory.
    pub name: String,
    /// Rego source text.
    pub source: String,
}

/// Everything the filter needs to authorize requests for one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Opaque version of the policy (shown in logs and deny reasons).
    #[serde(default)]
    pub policy_version: String,
    /// The rule whose value decides, e.g. `data.envoy.authz.allow`.
    #[serde(default = "default_entrypoint")]
    pub entrypoint: String,
    /// Enforce or dry-run.
    #[serde(default)]
    pub mode: Mode,
    /// HTTP status of a deny (unless the policy's object result sets `http_status`).
    #[serde(default = "default_deny_status")]
    pub deny_status: u16,
    /// Put the deny reason in the response body (it is always logged).
    #[serde(default)]
    pub expose_reason: bool,
    /// Log one structured line per decision (denies are always logged).
    #[serde(default)]
    pub log_decisions: bool,
    /// Leave a decision record in the request's filter state (`wasm.warden_decision`)
    /// for Envoy's gRPC access log to carry to the control plane's audit trail.
    #[serde(default)]
    pub audit_records: bool,
    /// This workload's SPIFFE ID: `input.attributes.destination.principal`.
    #[serde(default)]
    pub destination_principal: String,
    /// Rego modules (policy tests excluded). The filter does not compile them (it runs
    /// `program`); it scans them to read only the request parts the policy can look at.
    #[serde(default)]
    pub modules: Vec<PolicyModule>,
    /// The modules compiled for `entrypoint` to a regorus RVM program, in regorus's binary
    /// form, base64. Filled by the control plane (`CompiledPolicy::compile` in the CLI);
    /// the filter rejects a configuration without it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub program: String,
    /// Which request fields the policy can read (analysed once by the control plane
    /// from the modules). Absent: the filter builds every field and caches nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_needs: Option<InputNeeds>,
    /// Which regorus evaluator runs the policy: the RVM `program` (default), or the
    /// interpreter on `modules` for policies the RVM would decide differently from OPA.
    #[serde(default, skip_serializing_if = "PolicyEngine::is_rvm")]
    pub engine: PolicyEngine,
    /// The data document (`data.*` next to the rules).
    #[serde(default = "empty_object")]
    pub data: serde_json::Value,
}

/// The regorus evaluator of a policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyEngine {
    /// The precompiled RVM program (fast; most policies).
    #[default]
    Rvm,
    /// regorus's interpreter on the modules (extended filter module only).
    Interpreter,
}

impl PolicyEngine {
    /// True for the default.
    pub fn is_rvm(&self) -> bool {
        *self == Self::Rvm
    }
}

fn default_entrypoint() -> String {
    DEFAULT_ENTRYPOINT.to_string()
}

fn default_deny_status() -> u16 {
    403
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// Errors reading a plugin configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration is not the JSON of a [`PluginConfig`].
    #[error("plugin configuration is not valid JSON for PluginConfig: {source}")]
    Json {
        /// The parse error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The deny status is not an HTTP status code.
    #[error("deny_status {status} is not an HTTP status (100..=599)")]
    BadStatus {
        /// The rejected value.
        status: u16,
    },
    /// The data document must be an object, as `data` in OPA.
    #[error("data must be a JSON object")]
    DataNotObject,
}

impl PluginConfig {
    /// A configuration with defaults for everything but the modules.
    pub fn new(modules: Vec<PolicyModule>) -> Self {
        Self {
            policy_version: String::new(),
            entrypoint: default_entrypoint(),
            mode: Mode::Enforce,
            deny_status: default_deny_status(),
            expose_reason: false,
            log_decisions: false,
            audit_records: false,
            destination_principal: String::new(),
            modules,
            program: String::new(),
            input_needs: None,
            engine: PolicyEngine::Rvm,
            data: empty_object(),
        }
    }

    /// Parses and checks the JSON document the control plane sends.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: Self =
            serde_json::from_slice(bytes).map_err(|source| ConfigError::Json { source })?;
        config.check()?;
        Ok(config)
    }

    /// Serialises to the JSON the filter expects.
    pub fn to_json(&self) -> String {
        // Serialising plain structs with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks the fields serde cannot.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(100..=599).contains(&self.deny_status) {
            return Err(ConfigError::BadStatus {
                status: self.deny_status,
            });
        }
        if !self.data.is_object() {
            return Err(ConfigError::DataNotObject);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_json_gets_opa_envoy_defaults() {
        let config = PluginConfig::from_json(br#"{"modules": []}"#).unwrap_or_else(|e| {
            unreachable!("{e}");
        });
        assert_eq!(config.entrypoint, "data.envoy.authz.allow");
        assert_eq!(config.mode, Mode::Enforce);
        assert_eq!(config.deny_status, 403);
        assert!(config.data.is_object());
    }

    #[test]
    fn dry_run_is_accepted_with_dash_or_underscore() {
        for text in [
            r#"{"modules": [], "mode": "dry_run"}"#,
            r#"{"modules": [], "mode": "dry-run"}"#,
        ] {
            let config = PluginConfig::from_json(text.as_bytes()).ok();
            assert_eq!(config.map(|c| c.mode), Some(Mode::DryRun));
        }
    }

    #[test]
    fn unknown_field_and_bad_status_are_rejected() {
        assert!(PluginConfig::from_json(br#"{"modules": [], "modes": "x"}"#).is_err());
        assert!(PluginConfig::from_json(br#"{"modules": [], "deny_status": 42}"#).is_err());
        assert!(PluginConfig::from_json(br#"{"modules": [], "data": [1]}"#).is_err());
    }

    #[test]
    fn json_round_trips() {
        let mut config = PluginConfig::new(vec![PolicyModule {
            name: "a.rego".into(),
            source: "package a".into(),
        }]);
        config.mode = Mode::DryRun;
        let back = PluginConfig::from_json(config.to_json().as_bytes()).ok();
        assert_eq!(back, Some(config));
    }
}
