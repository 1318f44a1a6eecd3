//! The browser entry points (`wasm-bindgen`): JSON text in, JSON text out, so the page
//! needs no generated types. A panic (none is expected: the core fails closed with errors)
//! would trap the instance; the page then reloads the module.

use wasm_bindgen::prelude::wasm_bindgen;

/// Authorizes the workspace's request: `{"ok": true, decision, reason, ...}` or
/// `{"ok": false, "problems": [...]}`.
#[wasm_bindgen]
pub fn evaluate(workspace_json: &str) -> String {
    crate::evaluate_json(workspace_json)
}

/// Runs the workspace's `*_test.rego` tests: `{"ok": true, results, passed, failed}`.
#[wasm_bindgen(js_name = runTests)]
pub fn run_tests(workspace_json: &str) -> String {
    crate::run_tests_json(workspace_json)
}

/// The playground's version (the warden crates' version).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
