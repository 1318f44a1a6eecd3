//! Bulk evaluation through the filter's exact path, for the generated differential test
//! against real OPA (`filter/tests/opa_generated.py`): reads JSON lines
//! `{"id", "modules": [{name, source}], "data", "entrypoint", "inputs": [...]}` on stdin
//! and prints one JSON line per case: `{"id", "refused": "..."}` when the policy does not
//! compile (what `warden validate` refuses), else
//! `{"id", "results": [{"value", "error", "allowed"}]}` (one per input; `value` is absent
//! when undefined). Compile → RVM program (binary) → load → evaluate → decision, as the
//! filter does. Usage: `cargo run -q -p warden-filter --example policy_batch < cases.jsonl`.

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
    serde_json::json!({"id": batch.id, "results": results})
}

fn main() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let out = match serde_json::from_str::<Batch>(&line) {
            Ok(batch) => run(batch),
            Err(e) => serde_json::json!({"bad_line": e.to_string()}),
        };
        writeln!(stdout, "{out}")?;
    }
    stdout.flush()?;
    Ok(())
}
