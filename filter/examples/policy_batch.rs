//! Bulk evaluation through the filter's exact path, for the generated differential test
//! against real OPA (`filter/tests/opa_generated.py`): reads JSON lines
//! `{"id", "modules": [{name, source}], "data", "entrypoint", "inputs": [...]}` on stdin
//! and prints one JSON line per case: `{"id", "refused": "..."}` when the policy does not
//! compile (what `warden validate` refuses), else
//! `{"id", "results": [{"value", "error", "allowed"}]}` (one per input; `value` is absent
//! when undefined). Compile → RVM program (binary) → load → evaluate → decision, as the
//! filter does. Usage: `cargo run -q -p warden-filter --example policy_batch < cases.jsonl`.
//!
//! `--interpreter` evaluates with regorus's interpreter (`Engine`) instead, with no
//! refusals: to measure what that engine would do on the same cases (it is not what the
//! filter runs).

use std::io::{BufRead, Write};

use serde::Deserialize;
use warden_filter::{to_json, CompiledPolicy, Decision, PluginConfig, PolicyModule, Value};

#[derive(Deserialize)]
struct Batch {
    id: serde_json::Value,
    modules: Vec<PolicyModule>,
    #[serde(default)]
    data: Option<serde_json::Value>,
    entrypoint: String,
    inputs: Vec<serde_json::Value>,
}

fn run(batch: Batch) -> serde_json::Value {
    let mut config = PluginConfig::new(batch.modules);
    config.entrypoint = batch.entrypoint;
    if let Some(data) = batch.data {
        config.data = data;
    }
    let policy = match CompiledPolicy::compile(&config) {
        Ok(p) => p,
        Err(e) => return serde_json::json!({"id": batch.id, "refused": e.summary()}),
    };
    let results: Vec<serde_json::Value> = batch
        .inputs
        .into_iter()
        .map(|input| {
            let raw = policy.evaluate(Value::from(input));
            let mut out = serde_json::Map::new();
            match &raw {
                Ok(v) => {
                    if let Some(json) = to_json(v) {
                        out.insert("value".into(), json);
                    }
                }
                Err(e) => {
                    out.insert("error".into(), e.summary().into());
                }
            }
            let decision = Decision::from_result(&config.entrypoint, raw);
            out.insert("allowed".into(), decision.is_allow().into());
            serde_json::Value::Object(out)
        })
        .collect();
    let engine = match policy.config().engine {
        warden_filter::PolicyEngine::Rvm => "rvm",
        warden_filter::PolicyEngine::Interpreter => "interpreter",
    };
    serde_json::json!({"id": batch.id, "engine": engine, "results": results})
}

/// The same batch on regorus's interpreter (parse + compile + `eval_rule` per input).
fn run_interpreter(batch: Batch) -> serde_json::Value {
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(false);
    let setup = batch
        .modules
        .iter()
        .try_for_each(|m| {
            engine
                .add_policy(m.name.clone(), m.source.clone())
                .map(|_| ())
        })
        .and_then(|()| engine.add_data(Value::from(batch.data.clone().unwrap_or_default())));
    if let Err(e) = setup {
        return serde_json::json!({"id": batch.id, "refused": format!("{e:#}")});
    }
    let results: Vec<serde_json::Value> = batch
        .inputs
        .into_iter()
        .map(|input| {
            engine.set_input(Value::from(input));
            let mut out = serde_json::Map::new();
            let raw = engine.eval_rule(batch.entrypoint.clone());
            match &raw {
                Ok(v) => {
                    if let Some(json) = to_json(v) {
                        out.insert("value".into(), json);
                    }
                }
                Err(e) => {
                    out.insert("error".into(), format!("{e:#}").into());
                }
            }
            let raw = raw.map_err(|e| warden_filter::PolicyError::Eval {
                message: e.to_string(),
            });
            let decision = Decision::from_result(&batch.entrypoint, raw);
            out.insert("allowed".into(), decision.is_allow().into());
            serde_json::Value::Object(out)
        })
        .collect();
    serde_json::json!({"id": batch.id, "results": results})
}

fn main() -> anyhow::Result<()> {
    let interpreter = std::env::args().any(|a| a == "--interpreter");
    let stdin = std::io::stdin();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let out = match serde_json::from_str::<Batch>(&line) {
            Ok(batch) if interpreter => run_interpreter(batch),
            Ok(batch) => run(batch),
            Err(e) => serde_json::json!({"bad_line": e.to_string()}),
        };
        writeln!(stdout, "{out}")?;
    }
    stdout.flush()?;
    Ok(())
}
