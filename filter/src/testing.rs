//! Policy test runner, like `opa test`: every rule named `test_*` in the test modules is
//! evaluated (with the policy modules and data loaded) and passes when it is defined and
//! not `false`.
//!
//! Tests run on regorus's interpreter because tests use `with input as …`, which the RVM
//! compiler does not support yet; the rules under test are the same modules the filter
//! compiles. Test rules are found by scanning the test sources for rule heads starting
//! with `test_` at the beginning of a line (after the `package` line). No I/O here.

use crate::config::PolicyModule;
use crate::policy::{engine_with, PolicyError};

/// How one test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestStatus {
    /// Defined and not `false`.
    Pass,
    /// `false` or undefined.
    Fail,
    /// Evaluation error (message).
    Error(String),
}

/// One test rule's result.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// Module the test lives in.
    pub module: String,
    /// Full rule path, e.g. `data.envoy.authz.test_frontend_may_call_backend`.
    pub rule: String,
    /// Outcome.
    pub status: TestStatus,
    /// Evaluation time.
    pub duration: std::time::Duration,
}

/// Runs every `test_*` rule of `tests` against `modules` + `data`. Fails (before running
/// anything) when a module does not parse.
pub fn run_tests(
    modules: &[PolicyModule],
    tests: &[PolicyModule],
    data: &serde_json::Value,
) -> Result<Vec<TestResult>, PolicyError> {
    run_tests_with(modules, tests, data, true)
}

/// [`run_tests`], reading the clock for each test's duration only when `timed` (hosts
/// without a clock pass false: every duration is zero).
pub(crate) fn run_tests_with(
    modules: &[PolicyModule],
    tests: &[PolicyModule],
    data: &serde_json::Value,
    timed: bool,
) -> Result<Vec<TestResult>, PolicyError> {
    let all: Vec<PolicyModule> = modules.iter().chain(tests).cloned().collect();
    let mut engine = engine_with(&all, data)?;
    let mut results = Vec::new();
    for test in tests {
        let Some(package) = package_of(&test.source) else {
            continue;
        };
        for name in test_rule_names(&test.source) {
            let rule = format!("data.{package}.{name}");
            let started = timed.then(std::time::Instant::now);
            let status = match engine.eval_rule(rule.clone()) {
                Ok(regorus::Value::Bool(false)) | Ok(regorus::Value::Undefined) => TestStatus::Fail,
                Ok(_) => TestStatus::Pass,
                Err(e) => TestStatus::Error(format!("{e:#}")),
            };
            results.push(TestResult {
                module: test.name.clone(),
                rule,
                status,
                duration: started.map(|t| t.elapsed()).unwrap_or_default(),
            });
        }
    }
    Ok(results)
}

/// The package path of a module (`package a.b` → `a.b`).
pub fn package_of(source: &str) -> Option<String> {
    source.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("package")?;
        let rest = rest.strip_prefix(|c: char| c.is_whitespace())?;
        let name = rest.split('#').next()?.trim();
        (!name.is_empty()).then(|| name.to_string())
    })
}

/// Names of `test_*` rules in the order they first appear, each once.
pub fn test_rule_names(source: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in source.lines() {
        if !line.starts_with("test_") {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // A function (`test_x(a) …`) is not a test.
        if line[name.len()..].trim_start().starts_with('(') {
            continue;
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, source: &str) -> PolicyModule {
        PolicyModule {
            name: name.into(),
            source: source.into(),
        }
    }

    const POLICY: &str = "package envoy.authz\n\ndefault allow := false\n\nallow if input.source_principal == \"spiffe://t/a\"\n";

    #[test]
    fn passing_failing_and_erroring_tests_are_told_apart() {
        let tests = module(
            "authz_test.rego",
            "package envoy.authz\n\
             test_a_is_allowed if allow with input as {\"source_principal\": \"spiffe://t/a\"}\n\
             test_b_is_allowed if allow with input as {\"source_principal\": \"spiffe://t/b\"}\n\
             test_conflict if { x := {1: 2}; x[1] == 2; 1 / 0 == 1 }\n\
             test_b_is_allowed if false\n",
        );
        let results = run_tests(
            &[module("authz.rego", POLICY)],
            &[tests],
            &serde_json::json!({}),
        )
        .unwrap_or_default();
        let by_name: Vec<(&str, &TestStatus)> = results
            .iter()
            .map(|r| (r.rule.as_str(), &r.status))
            .collect();
        assert_eq!(by_name.len(), 3);
        assert_eq!(
            by_name[0],
            ("data.envoy.authz.test_a_is_allowed", &TestStatus::Pass)
        );
        assert_eq!(
            by_name[1],
            ("data.envoy.authz.test_b_is_allowed", &TestStatus::Fail)
        );
        assert_ne!(by_name[2].1, &TestStatus::Pass);
    }

    #[test]
    fn a_test_module_that_does_not_parse_is_an_error() {
        let tests = module("bad_test.rego", "package x\ntest_a if {\n");
        assert!(run_tests(&[], &[tests], &serde_json::json!({})).is_err());
    }

    #[test]
    fn helper_functions_named_test_are_not_tests() {
        let names =
            test_rule_names("package p\ntest_f(x) := x\ntest_g if true\n  test_h if true\n");
        assert_eq!(names, vec!["test_g".to_string()]);
    }
}
