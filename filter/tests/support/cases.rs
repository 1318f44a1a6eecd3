//! Policy cases as YAML files (`note / policy / request|input / want`), found
//! automatically under `filter/tests/cases/`. Shared by the `cases` test and the
//! `opa_diff` example (the differential test against real OPA).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;
use warden_filter::{
    authorize, to_json, Action, DecisionIds, Peer, PluginConfig, PolicyModule, RequestAttributes,
    Value,
};

/// One YAML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub note: String,
    /// One module (package inside), or
    #[serde(default)]
    pub policy: Option<String>,
    /// several named modules, or
    #[serde(default)]
    pub modules: Vec<Module>,
    /// files relative to the workspace root (e.g. the sample mesh policy).
    #[serde(default)]
    pub policy_files: Vec<String>,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    #[serde(default)]
    pub entrypoint: Option<String>,
    /// A request, turned into input by the filter's own input builder, or
    #[serde(default)]
    pub request: Option<Request>,
    /// a raw input document.
    #[serde(default)]
    pub input: Option<serde_json::Value>,
    /// `allow` or `deny`.
    pub want: String,
    #[serde(default)]
    pub want_status: Option<u16>,
    #[serde(default)]
    pub want_reason: Option<String>,
    /// The exact value of the decision rule (`null` in YAML is JSON null; use
    /// `want_undefined: true` for undefined).
    #[serde(default)]
    pub want_result: Option<serde_json::Value>,
    #[serde(default)]
    pub want_undefined: bool,
    #[serde(default)]
    pub want_error: bool,
    /// The policy must be refused at compile time (what `warden validate` refuses), with
    /// a message containing this text: the filter's engine would not decide as OPA does.
    #[serde(default)]
    pub want_refused: Option<String>,
    /// The engine the policy must run on: `rvm` or `interpreter`.
    #[serde(default)]
    pub want_engine: Option<String>,
    /// Why OPA cannot be compared on this case (the case still runs in `cargo test`).
    #[serde(default)]
    pub skip_opa: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    pub name: String,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The verified peer's SPIFFE ID (omit: no verified peer).
    #[serde(default)]
    pub peer: Option<String>,
    /// The certificate was presented but did not validate.
    #[serde(default)]
    pub peer_invalid: bool,
    #[serde(default = "get")]
    pub method: String,
    #[serde(default = "slash")]
    pub path: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub destination: Option<String>,
}

fn get() -> String {
    "GET".into()
}

fn slash() -> String {
    "/".into()
}

/// Workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// All case files, sorted.
pub fn case_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses one case file.
pub fn load(path: &Path) -> anyhow::Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: CaseFile =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(file.cases)
}

/// What our engine did with a case.
#[derive(Debug)]
pub struct Outcome {
    pub config: PluginConfig,
    pub input: serde_json::Value,
    /// The full OPA-Envoy input for a request case (what OPA-Envoy would evaluate; ours
    /// may be leaner), the raw input otherwise.
    pub full_input: serde_json::Value,
    /// Raw value of the decision rule; `None` when undefined or on error.
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub allowed: bool,
    pub status: Option<u16>,
    pub reason: Option<String>,
    /// The compile-time refusal, when the case wants one and got one.
    pub refused: Option<String>,
    /// The engine the policy runs on (`rvm` or `interpreter`).
    pub engine: String,
}

impl Case {
    /// The plugin configuration of this case.
    pub fn config(&self) -> anyhow::Result<PluginConfig> {
        let mut modules: Vec<PolicyModule> = Vec::new();
        if let Some(source) = &self.policy {
            modules.push(PolicyModule {
                name: "policy.rego".into(),
                source: source.clone(),
            });
        }
        for m in &self.modules {
            modules.push(PolicyModule {
                name: m.name.clone(),
                source: m.source.clone(),
            });
        }
        for file in &self.policy_files {
            let path = workspace_root().join(file);
            let source = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            modules.push(PolicyModule {
                name: file.clone(),
                source,
            });
        }
        let mut config = PluginConfig::new(modules);
        if let Some(e) = &self.entrypoint {
            config.entrypoint = e.clone();
        }
        if let Some(data) = &self.data {
            config.data = data.clone();
        }
        config.destination_principal = self
            .request
            .as_ref()
            .and_then(|r| r.destination.clone())
            .unwrap_or_default();
        config.expose_reason = true;
        Ok(config)
    }

    fn attributes(&self) -> Option<RequestAttributes> {
        let r = self.request.as_ref()?;
        let peer = match &r.peer {
            Some(id) => Peer::from_connection(!r.peer_invalid, Some(id)),
            None => Peer::None,
        };
        let mut headers = vec![
            (":method".to_string(), r.method.clone()),
            (":path".to_string(), r.path.clone()),
            (
                ":authority".to_string(),
                r.host.clone().unwrap_or_else(|| "backend".into()),
            ),
            (":scheme".to_string(), "https".to_string()),
        ];
        headers.extend(r.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        Some(RequestAttributes::from_headers(peer, headers))
    }

    /// Runs the case through the filter core.
    pub fn run(&self) -> anyhow::Result<Outcome> {
        let mut config = self.config()?;
        let policy = match warden_filter::CompiledPolicy::compile(&config) {
            Ok(policy) => policy,
            Err(e) if self.want_refused.is_some() => {
                let input = self.input.clone().unwrap_or(serde_json::Value::Null);
                return Ok(Outcome {
                    full_input: input.clone(),
                    input,
                    result: None,
                    error: None,
                    allowed: false,
                    status: None,
                    reason: None,
                    refused: Some(e.summary()),
                    engine: String::new(),
                    config,
                });
            }
            Err(e) => anyhow::bail!("compile: {}", e.summary()),
        };
        // The rule the program evaluates (a package entrypoint resolves to its `allow`).
        config.entrypoint = policy.config().entrypoint.clone();
        let (attributes, input) = match (&self.request, &self.input) {
            (Some(_), None) => {
                let a = self.attributes().context("request")?;
                let input = policy.input_for(&a);
                (a, input)
            }
            (None, Some(raw)) => (
                RequestAttributes::from_headers(Peer::None, vec![]),
                Value::from(raw.clone()),
            ),
            _ => bail!("a case needs exactly one of `request` and `input`"),
        };
        let raw = policy.evaluate(input.clone());
        let (result, error) = match &raw {
            Ok(v) => (to_json(v), None),
            Err(e) => (None, Some(e.summary())),
        };
        // The decision itself goes through `authorize` when the case has a request;
        // a raw input is decided by the same result interpretation.
        let decision = if self.request.is_some() {
            authorize(&policy, &attributes, DecisionIds::new(0).next_id())
        } else {
            warden_filter::Verdict {
                id: DecisionIds::new(0).next_id(),
                decision: warden_filter::Decision::from_result(&config.entrypoint, raw),
                mode: config.mode,
            }
        };
        let status = match decision.action(&policy, &attributes) {
            Action::Respond { status, .. } => Some(status),
            Action::Continue { .. } => None,
        };
        let full_input = match &self.request {
            Some(_) => to_json(&attributes.to_input(&config.destination_principal)),
            None => to_json(&input),
        };
        Ok(Outcome {
            full_input: full_input.unwrap_or(serde_json::Value::Null),
            input: to_json(&input).unwrap_or(serde_json::Value::Null),
            result,
            error,
            allowed: decision.decision.is_allow(),
            status,
            reason: decision.reason_text(&policy, &attributes),
            refused: None,
            engine: match policy.config().engine {
                warden_filter::PolicyEngine::Rvm => "rvm".into(),
                warden_filter::PolicyEngine::Interpreter => "interpreter".into(),
            },
            config,
        })
    }

    /// Checks an outcome against the case's expectations; `Err` says what differs.
    pub fn check(&self, outcome: &Outcome) -> Result<(), String> {
        if let Some(part) = &self.want_refused {
            return match &outcome.refused {
                Some(message) if message.contains(part.as_str()) => Ok(()),
                Some(message) => Err(format!("refused, but not with {part:?}: {message}")),
                None => Err(format!(
                    "want refused ({part:?}), but it compiled: result {:?}, error {:?}",
                    outcome.result, outcome.error
                )),
            };
        }
        let want_allow = match self.want.as_str() {
            "allow" => true,
            "deny" => false,
            other => return Err(format!("want must be allow or deny, not {other:?}")),
        };
        let mut problems = Vec::new();
        if outcome.allowed != want_allow {
            problems.push(format!(
                "want {}, got {} (reason {:?}, result {:?}, error {:?})",
                self.want,
                if outcome.allowed { "allow" } else { "deny" },
                outcome.reason,
                outcome.result,
                outcome.error
            ));
        }
        if let Some(engine) = &self.want_engine {
            if outcome.engine != *engine {
                problems.push(format!("want engine {engine}, got {}", outcome.engine));
            }
        }
        if let Some(status) = self.want_status {
            if outcome.status != Some(status) {
                problems.push(format!("want status {status}, got {:?}", outcome.status));
            }
        }
        if let Some(part) = &self.want_reason {
            if !outcome
                .reason
                .as_deref()
                .unwrap_or("")
                .contains(part.as_str())
            {
                problems.push(format!(
                    "want reason containing {part:?}, got {:?}",
                    outcome.reason
                ));
            }
        }
        if let Some(want) = &self.want_result {
            if outcome.result.as_ref() != Some(want) {
                problems.push(format!("want result {want}, got {:?}", outcome.result));
            }
        }
        if self.want_undefined && (outcome.result.is_some() || outcome.error.is_some()) {
            problems.push(format!(
                "want undefined, got {:?} / {:?}",
                outcome.result, outcome.error
            ));
        }
        if self.want_error != outcome.error.is_some() {
            problems.push(format!(
                "want error: {}, got {:?}",
                self.want_error, outcome.error
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}
