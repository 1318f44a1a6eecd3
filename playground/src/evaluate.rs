//! One request through the filter's core, as `warden policy eval --json` runs it: the
//! request built from the same pseudo-headers, [`warden_filter::authorize`] with the
//! compiled policy, the same reason text and filter action. Then an explanation the CLI
//! does not give: the rules of the decision's package that hold for this input.

use serde::Serialize;
use warden_filter::{
    authorize, portable, to_json, Action, CompiledPolicy, DecisionIds, Peer, PluginConfig,
    RequestAttributes, Value,
};

use crate::check::{check, Problem};
use crate::model::Workspace;
use crate::version::policy_version;
use crate::Refused;

/// The outcome, with the fields of `warden policy eval --json` plus the explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The deny reason as the filter logs it (and returns it with `expose_reason`).
    pub reason: Option<String>,
    /// `continue` (the request goes on) or `respond` (the filter answers).
    pub filter_action: &'static str,
    /// The status the filter answers with.
    pub status: Option<u16>,
    /// The response body the filter sends.
    pub body: Option<String>,
    /// The entrypoint's value (`null` when undefined).
    pub result: serde_json::Value,
    /// Whether the entrypoint is defined for this input.
    pub result_defined: bool,
    /// The evaluation error, if any.
    pub error: Option<String>,
    /// The input document the policy saw (only the fields it can read).
    pub input: serde_json::Value,
    /// The policy version.
    pub policy_version: String,
    /// The decision rule, resolved.
    pub entrypoint: String,
    /// `rvm` or `interpreter`.
    pub engine: warden_filter::PolicyEngine,
    /// Rules of the entrypoint's package that hold (defined, not `false`) for this input.
    pub matched_rules: Vec<MatchedRule>,
}

/// A rule that holds for the input, and where it is defined.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedRule {
    /// Full path, e.g. `data.envoy.authz.allow`.
    pub rule: String,
    /// Its value.
    pub value: serde_json::Value,
    /// `module:line` of each definition of the rule.
    pub defined_at: Vec<String>,
}

/// Authorizes `ws.request` with `ws`'s policy exactly as `warden policy eval` does.
pub fn evaluate(ws: &Workspace) -> Result<Evaluation, Refused> {
    let refused = |problems: Vec<Problem>| Refused { problems };
    let compiled = check(ws).map_err(refused)?;
    let request = request_of(ws).map_err(|p| refused(vec![p]))?;
    let plugin = plugin_for(ws, compiled);
    let policy =
        CompiledPolicy::load(&plugin).map_err(|e| refused(vec![Problem::from_error(&e)]))?;
    let input = policy.input_for(&request);
    let result = policy.evaluate(input.clone());
    let verdict = authorize(&policy, &request, DecisionIds::new(0).next_id());
    let reason = verdict.reason_text(&policy, &request);
    let (filter_action, status, body) = match verdict.action(&policy, &request) {
        Action::Continue { .. } => ("continue", None, None),
        Action::Respond { status, body, .. } => ("respond", Some(status), Some(body)),
    };
    let json = |v: &Value| to_json(v).unwrap_or(serde_json::Value::Null);
    Ok(Evaluation {
        decision: if verdict.decision.is_allow() {
            "allow"
        } else {
            "deny"
        },
        reason,
        filter_action,
        status,
        body,
        result: result.as_ref().map_or(serde_json::Value::Null, json),
        result_defined: matches!(&result, Ok(v) if *v != Value::Undefined),
        error: result.as_ref().err().map(|e| e.summary()),
        input: json(&input),
        matched_rules: matched_rules(ws, &plugin.entrypoint, &input),
        policy_version: plugin.policy_version,
        entrypoint: plugin.entrypoint,
        engine: plugin.engine,
    })
}

/// The configuration `warden::policy::plugin_config` builds for the receiving workload.
fn plugin_for(ws: &Workspace, mut plugin: PluginConfig) -> PluginConfig {
    let settings = &ws.settings;
    plugin.policy_version = policy_version(&settings.entrypoint, &ws.modules, &ws.data);
    plugin.mode = settings.mode;
    plugin.deny_status = settings.deny_status;
    plugin.expose_reason = settings.expose_reason;
    plugin.destination_principal = ws.request.destination.clone();
    plugin
}

/// The request `warden policy eval` builds from its flags.
fn request_of(ws: &Workspace) -> Result<RequestAttributes, Problem> {
    let spec = &ws.request;
    let peer = match spec.source.as_deref().map(str::trim) {
        None | Some("") => Peer::None,
        Some(id) => match id.parse::<warden_filter::SpiffeId>() {
            Ok(parsed) => Peer::Verified(parsed),
            Err(why) => {
                return Err(Problem::plain(format!(
                    "source {id:?} is not a SPIFFE ID: {why}"
                )))
            }
        },
    };
    if !(100..=599).contains(&ws.settings.deny_status) {
        return Err(Problem::plain(
            "deny_status must be an HTTP status (100..=599)",
        ));
    }
    let mut headers = vec![
        (":method".to_string(), spec.method.clone()),
        (":path".to_string(), spec.path.clone()),
        (
            ":authority".to_string(),
            spec.host.clone().unwrap_or_else(|| spec.workload.clone()),
        ),
        (":scheme".to_string(), "https".to_string()),
    ];
    for header in &spec.headers {
        let name = header.name.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err(Problem::plain(format!(
                "a header with value {:?} has no name",
                header.value
            )));
        }
        headers.push((name, header.value.clone()));
    }
    Ok(RequestAttributes::from_headers(peer, headers))
}

/// Evaluates the entrypoint's package with regorus's interpreter and keeps the rules whose
/// value is defined and not `false`. Functions and rules that fail to evaluate are left out.
fn matched_rules(ws: &Workspace, entrypoint: &str, input: &Value) -> Vec<MatchedRule> {
    let Some((package, _)) = entrypoint.rsplit_once('.') else {
        return Vec::new();
    };
    let Ok(mut engine) = portable::interpreter(&ws.modules, &ws.data) else {
        return Vec::new();
    };
    engine.set_input(input.clone());
    let Ok(results) = engine.eval_query(package.to_string(), false) else {
        return Vec::new();
    };
    let value = results
        .result
        .first()
        .and_then(|r| r.expressions.first())
        .map(|e| e.value.clone());
    let Some(Value::Object(rules)) = value else {
        return Vec::new();
    };
    let package_name = package.trim_start_matches("data.");
    rules
        .iter()
        .filter(|(_, v)| !matches!(v, Value::Bool(false) | Value::Undefined))
        .filter_map(|(k, v)| {
            let Value::String(name) = k else { return None };
            let value = to_json(v)?;
            Some(MatchedRule {
                rule: format!("{package}.{name}"),
                value,
                defined_at: definitions(ws, package_name, name),
            })
        })
        .collect()
}

/// `module:line` of each line starting a definition of `name` (or its `default`) in the
/// modules of `package`, in order.
fn definitions(ws: &Workspace, package: &str, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for module in &ws.modules {
        if warden_filter::testing::package_of(&module.source).as_deref() != Some(package) {
            continue;
        }
        for (i, line) in module.source.lines().enumerate() {
            let head = line.strip_prefix("default ").map_or(line, str::trim_start);
            let defines = head.strip_prefix(name).is_some_and(|rest| {
                rest.is_empty()
                    || rest.starts_with(|c: char| {
                        c.is_whitespace() || matches!(c, ':' | '=' | '{' | '[' | '.')
                    })
            });
            if defines {
                out.push(format!("{}:{}", module.name, i + 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
