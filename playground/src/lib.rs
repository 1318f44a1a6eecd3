//! Warden's policy playground: the `warden-filter` core behind a JSON-in, JSON-out API,
//! compiled for browsers (`wasm32-unknown-unknown`, `wasm-bindgen`) and served by the
//! dashboard at `/ui/playground`.
//!
//! It runs what `warden policy eval` and `warden policy test` run: the same compile step
//! ([`warden_filter::with_program`]), the same checks `warden validate` makes on the Rego
//! (a syntax error, a request-body reference or a `walk` is a problem at `file:line:col`),
//! the same policy version, input, decision, deny reason and filter action. What it adds
//! is an explanation: which rules of the decision's package hold for the request (read
//! with regorus's interpreter). No I/O: the page passes sources and the request in.

mod check;
mod evaluate;
mod model;
mod tests_run;
mod version;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub mod bindings;

pub use check::{check, Problem};
pub use evaluate::{evaluate, Evaluation, MatchedRule};
pub use model::{Header, RequestSpec, Settings, Workspace};
pub use tests_run::{run_tests, TestOutcome, TestReport};
pub use version::policy_version;

/// What the page asked for could not be run: the problems, located when possible.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refused {
    /// Every problem found (each policy file with a syntax error is reported).
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

/// `evaluate` for JSON text: a [`Workspace`] with a request in, an [`Evaluation`] (or
/// `{"ok": false, "problems": [...]}`) out.
pub fn evaluate_json(text: &str) -> String {
    let answer = parse(text).and_then(|ws| evaluate(&ws));
    to_answer(answer)
}

/// `run_tests` for JSON text: a [`Workspace`] in, a [`TestReport`] out.
pub fn run_tests_json(text: &str) -> String {
    let answer = parse(text).and_then(|ws| run_tests(&ws));
    to_answer(answer)
}

fn parse(text: &str) -> Result<Workspace, Refused> {
    serde_json::from_str(text).map_err(|e| Refused {
        problems: vec![Problem::plain(format!(
            "the playground request is not valid: {e}"
        ))],
    })
}

fn to_answer<T: serde::Serialize>(answer: Result<T, Refused>) -> String {
    let value = match answer {
        Ok(value) => {
            let mut json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
            if let Some(object) = json.as_object_mut() {
                object.insert("ok".into(), true.into());
            }
            json
        }
        Err(refused) => serde_json::json!({"ok": false, "problems": refused.problems}),
    };
    value.to_string()
}
