//! Helper for the differential test against real OPA (`filter/tests/opa_differential.py`):
//! runs every YAML policy case through the filter core and prints one JSON line per case
//! with the modules, data, entrypoint, the full OPA-Envoy input document (ours may have
//! evaluated a leaner one: the comparison checks the input analysis too), our raw result
//! and our decision. Usage: `cargo run -q -p warden-filter --example opa_diff -- DIR`.

#[path = "../tests/support/cases.rs"]
mod cases;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| cases::workspace_root().join("filter/tests/cases"));
    for file in cases::case_files(&dir)? {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for case in cases::load(&file)? {
            let line = match case.run() {
                Ok(outcome) => serde_json::json!({
                    "file": name,
                    "refused": outcome.refused,
                    "note": case.note,
                    "skip_opa": case.skip_opa,
                    "entrypoint": outcome.config.entrypoint,
                    "modules": outcome.config.modules,
                    "data": outcome.config.data,
                    // OPA evaluates the full OPA-Envoy input; ours used the lean one.
                    "input": outcome.full_input,
                    "result": outcome.result,
                    "error": outcome.error,
                    "allowed": outcome.allowed,
                }),
                Err(error) => serde_json::json!({
                    "file": name,
                    "note": case.note,
                    "skip_opa": case.skip_opa,
                    "setup_error": format!("{error:#}"),
                }),
            };
            println!("{line}");
        }
    }
    Ok(())
}
