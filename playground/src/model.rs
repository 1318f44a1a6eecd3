//! The playground's input: policy sources, settings and one request, as the page sends
//! them (JSON). Mirrors a config directory's `policies/` and `warden.yaml`'s `policy:`
//! section, and `warden policy eval`'s flags.

use serde::{Deserialize, Serialize};
use warden_filter::{PolicyModule, DEFAULT_ENTRYPOINT};

/// Policy sources and settings (what a config directory holds), plus a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workspace {
    /// Rego modules, named as in a config directory (`policies/authz.rego`).
    #[serde(default)]
    pub modules: Vec<PolicyModule>,
    /// `*_test.rego` modules.
    #[serde(default)]
    pub tests: Vec<PolicyModule>,
    /// The data document (`policies/data.json`); `{}` when absent.
    #[serde(default = "empty_object")]
    pub data: serde_json::Value,
    /// `warden.yaml`'s `policy:` settings.
    #[serde(default)]
    pub settings: Settings,
    /// The request to authorize (for `evaluate`).
    #[serde(default)]
    pub request: RequestSpec,
}

impl Default for Workspace {
    fn default() -> Self {
        Self {
            modules: Vec::new(),
            tests: Vec::new(),
            data: empty_object(),
            settings: Settings::default(),
            request: RequestSpec::default(),
        }
    }
}

/// `warden.yaml`'s `policy:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The decision rule (or package path).
    pub entrypoint: String,
    /// `enforce` or `dry-run`.
    pub mode: warden_filter::Mode,
    /// HTTP status of a deny.
    pub deny_status: u16,
    /// Put the deny reason in the response body.
    pub expose_reason: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            entrypoint: DEFAULT_ENTRYPOINT.to_string(),
            mode: warden_filter::Mode::Enforce,
            deny_status: 403,
            expose_reason: false,
        }
    }
}

/// One request, as `warden policy eval` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestSpec {
    /// The caller's verified SPIFFE ID; `None` (or empty) for no verified peer.
    pub source: Option<String>,
    /// The receiving workload's name (the default `:authority`).
    pub workload: String,
    /// The receiving workload's SPIFFE ID (`input.attributes.destination.principal`).
    pub destination: String,
    /// HTTP method.
    pub method: String,
    /// Path with query string.
    pub path: String,
    /// `:authority`; the workload name when absent.
    pub host: Option<String>,
    /// Extra request headers, in order.
    pub headers: Vec<Header>,
}

impl Default for RequestSpec {
    fn default() -> Self {
        Self {
            source: None,
            workload: String::new(),
            destination: String::new(),
            method: "GET".into(),
            path: "/".into(),
            host: None,
            headers: Vec::new(),
        }
    }
}

/// A request header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Name (lowercased before use, as `warden policy eval --header` does).
    pub name: String,
    /// Value.
    pub value: String,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}
