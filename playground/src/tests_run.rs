//! `warden policy test` in the playground: every `test_*` rule of the `*_test.rego`
//! modules, run by the filter's own runner (without timings: browsers have no clock std
//! can read), after the same checks as `warden validate`.

use serde::Serialize;
use warden_filter::portable::run_tests_untimed;
use warden_filter::testing::TestStatus;

use crate::check::{check, Problem};
use crate::model::Workspace;
use crate::Refused;

/// One test's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestOutcome {
    /// The test module.
    pub module: String,
    /// Full rule path.
    pub rule: String,
    /// `pass`, `fail` or `error`.
    pub status: &'static str,
    /// The error, for `error`.
    pub message: Option<String>,
}

/// Every test's outcome and the totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestReport {
    /// In module order.
    pub results: Vec<TestOutcome>,
    /// How many passed.
    pub passed: usize,
    /// How many failed or errored.
    pub failed: usize,
}

/// Runs the tests of `ws` as `warden policy test` does.
pub fn run_tests(ws: &Workspace) -> Result<TestReport, Refused> {
    check(ws).map_err(|problems| Refused { problems })?;
    let results = run_tests_untimed(&ws.modules, &ws.tests, &ws.data).map_err(|e| Refused {
        problems: vec![Problem::from_error(&e)],
    })?;
    let results: Vec<TestOutcome> = results
        .into_iter()
        .map(|r| {
            let (status, message) = match r.status {
                TestStatus::Pass => ("pass", None),
                TestStatus::Fail => ("fail", None),
                TestStatus::Error(m) => ("error", Some(m)),
            };
            TestOutcome {
                module: r.module,
                rule: r.rule,
                status,
                message,
            }
        })
        .collect();
    let passed = results.iter().filter(|r| r.status == "pass").count();
    Ok(TestReport {
        failed: results.len() - passed,
        passed,
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_filter::PolicyModule;

    fn file(name: &str) -> PolicyModule {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/mesh/policies/");
        PolicyModule {
            name: format!("policies/{name}"),
            source: std::fs::read_to_string(format!("{dir}{name}")).unwrap_or_default(),
        }
    }

    #[test]
    fn the_sample_policy_tests_all_pass() {
        let ws = Workspace {
            modules: vec![file("authz.rego")],
            tests: vec![file("authz_test.rego")],
            ..Workspace::default()
        };
        let report = run_tests(&ws).unwrap_or_else(|r| panic!("{r}"));
        assert!(report.passed >= 5, "{report:?}");
        assert_eq!(report.failed, 0, "{report:?}");
    }

    #[test]
    fn a_failing_test_is_counted_and_a_broken_test_file_is_a_located_problem() {
        let mut ws = Workspace {
            modules: vec![file("authz.rego")],
            tests: vec![PolicyModule {
                name: "policies/x_test.rego".into(),
                source: "package envoy.authz\ntest_everyone if allow\n".into(),
            }],
            ..Workspace::default()
        };
        let report = run_tests(&ws).unwrap_or_else(|r| panic!("{r}"));
        assert_eq!((report.passed, report.failed), (0, 1));
        ws.tests[0].source = "package envoy.authz\n\ntest_x if {\n".into();
        let refused = run_tests(&ws).err().unwrap_or_else(|| panic!("accepted"));
        assert_eq!(
            refused.problems[0].module.as_deref(),
            Some("policies/x_test.rego")
        );
        assert!(refused.problems[0].line.is_some());
    }
}
