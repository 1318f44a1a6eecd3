//! Entry points for hosts without a clock (the browser playground, built for
//! `wasm32-unknown-unknown`, where `std::time::Instant::now` panics): the `opa test`-like
//! runner without timings, and the regorus interpreter loaded exactly as `testing` and
//! `policy::compile` load it. Same semantics as [`crate::testing::run_tests`]; no I/O.

use crate::config::PolicyModule;
use crate::policy::{engine_with, PolicyError};
use crate::testing::{run_tests_with, TestResult};

/// regorus's interpreter with `modules` and `data` loaded (non-strict builtin errors, as
/// the filter evaluates). Fails when a module does not parse or the data is rejected.
pub fn interpreter(
    modules: &[PolicyModule],
    data: &serde_json::Value,
) -> Result<regorus::Engine, PolicyError> {
    engine_with(modules, data)
}

/// [`crate::testing::run_tests`] without reading a clock: every duration is zero.
pub fn run_tests_untimed(
    modules: &[PolicyModule],
    tests: &[PolicyModule],
    data: &serde_json::Value,
) -> Result<Vec<TestResult>, PolicyError> {
    run_tests_with(modules, tests, data, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_tests;

    fn module(name: &str, source: &str) -> PolicyModule {
        PolicyModule {
            name: name.into(),
            source: source.into(),
        }
    }

    #[test]
    fn the_untimed_runner_agrees_with_the_cli_runner() {
        let policy = module(
            "authz.rego",
            "package envoy.authz\ndefault allow := false\nallow if input.x == data.want\n",
        );
        let tests = module(
            "authz_test.rego",
            "package envoy.authz\ntest_ok if allow with input as {\"x\": 1}\ntest_no if allow with input as {\"x\": 2}\ntest_err if { 1 / 0 == 1 }\n",
        );
        let data = serde_json::json!({"want": 1});
        let key = |r: &TestResult| (r.module.clone(), r.rule.clone(), r.status.clone());
        let cli: Vec<_> = run_tests(
            std::slice::from_ref(&policy),
            std::slice::from_ref(&tests),
            &data,
        )
        .map(|v| v.iter().map(key).collect())
        .unwrap_or_default();
        let untimed: Vec<_> = run_tests_untimed(&[policy], &[tests], &data)
            .map(|v| v.iter().map(key).collect())
            .unwrap_or_default();
        assert_eq!(cli.len(), 3);
        assert_eq!(cli, untimed);
    }

    #[test]
    fn the_interpreter_refuses_a_module_that_does_not_parse() {
        let bad = module("bad.rego", "package x\nallow if {\n");
        assert!(interpreter(&[bad], &serde_json::json!({})).is_err());
    }
}
