//! The checks `warden validate` makes on a policy before anything runs, on the
//! playground's sources: each module and test module must parse (every file with a syntax
//! error is reported), no module may read the request body (Envoy never sends it), no
//! `walk` (the filter's engine refuses it), and the modules must compile for the
//! entrypoint with the filter's own compiler ([`warden_filter::with_program`]). Each
//! problem is located at `file:line:col` when the engine says where.

use serde::Serialize;
use warden_filter::{
    body_references, call_sites, parse_modules, with_program, PluginConfig, PolicyError,
    PolicyModule,
};

use crate::model::Workspace;

/// One problem in the sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The module's name (`policies/authz.rego`), when known.
    pub module: Option<String>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when known.
    pub hint: Option<String>,
}

impl Problem {
    /// A problem with no location.
    pub fn plain(message: impl Into<String>) -> Self {
        Self {
            module: None,
            line: None,
            column: None,
            message: message.into(),
            hint: None,
        }
    }

    fn at(module: &str, line: usize, column: usize, message: String) -> Self {
        Self {
            module: Some(module.to_string()),
            line: Some(line),
            column: Some(column),
            message,
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A problem from a policy error, located when regorus said where.
    pub(crate) fn from_error(error: &PolicyError) -> Self {
        match error.located() {
            Some(l) => Self::at(&l.module, l.line, l.column, format!("Rego: {}", l.message)),
            None => {
                let mut p = Self::plain(format!("Rego: {}", error.summary()));
                if let PolicyError::Parse { module, .. } = error {
                    p.module = Some(module.clone());
                }
                p
            }
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.module, self.line, self.column) {
            (Some(m), Some(l), Some(c)) => write!(f, "{m}:{l}:{c}: {}", self.message)?,
            (Some(m), _, _) => write!(f, "{m}: {}", self.message)?,
            _ => write!(f, "{}", self.message)?,
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Checks the sources as `warden validate` does and, when they pass, returns the filter
/// configuration the control plane would build (program compiled, entrypoint resolved,
/// input needs analysed), without the per-workload fields.
pub fn check(ws: &Workspace) -> Result<PluginConfig, Vec<Problem>> {
    if ws.modules.is_empty() {
        return Err(vec![Problem::plain(
            "no policy modules: add a .rego module (tests alone decide nothing)",
        )]);
    }
    if !ws.data.is_object() {
        return Err(vec![Problem::plain(
            "the data document must be a JSON object (it becomes `data`)",
        )]);
    }
    let mut problems: Vec<Problem> = ws
        .modules
        .iter()
        .chain(&ws.tests)
        .filter_map(|m| parse_modules(std::slice::from_ref(m)).err())
        .map(|e| Problem::from_error(&e))
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    for module in &ws.modules {
        for reference in body_references(&module.source) {
            problems.push(
                Problem::at(
                    &module.name,
                    reference.line,
                    reference.column,
                    format!(
                        "Rego: {} is never provided: Envoy does not send request bodies to the \
                         sidecar filter, so the policy would always see it undefined",
                        reference.field
                    ),
                )
                .hint("decide on headers, path, query and identity instead"),
            );
        }
    }
    let walks = walk_problems(&ws.modules);
    if !walks.is_empty() {
        problems.extend(walks);
        return Err(problems);
    }
    let mut plugin = PluginConfig::new(ws.modules.clone());
    plugin.entrypoint = ws.settings.entrypoint.clone();
    plugin.data = ws.data.clone();
    let compiled = match with_program(plugin) {
        Ok(compiled) => Some(compiled),
        Err(error) => {
            problems.push(compile_problem(&error, &ws.settings.entrypoint));
            None
        }
    };
    if !ws.tests.is_empty() {
        let all: Vec<PolicyModule> = ws.modules.iter().chain(&ws.tests).cloned().collect();
        if let Err(error) = parse_modules(&all) {
            problems.push(Problem::from_error(&error));
        }
    }
    match compiled {
        Some(compiled) if problems.is_empty() => Ok(compiled),
        _ => Err(problems),
    }
}

fn compile_problem(error: &PolicyError, entrypoint: &str) -> Problem {
    let problem = Problem::from_error(error);
    match error {
        PolicyError::Compile { message, .. } if message.contains("is not defined") => {
            problem.hint(format!(
                "define the rule in a policy module, or change the entrypoint (now {entrypoint})"
            ))
        }
        PolicyError::Unsupported {
            hint: Some(hint), ..
        } => problem.hint(hint.clone()),
        PolicyError::Unsupported { .. } => problem.hint(
            "the sidecar filter runs policies on regorus's RVM; rewrite this construct \
             (`with` belongs in *_test.rego files)",
        ),
        _ => problem,
    }
}

fn walk_problems(modules: &[PolicyModule]) -> Vec<Problem> {
    let mut out = Vec::new();
    for module in modules {
        for (line, column) in call_sites(&module.source, "walk") {
            out.push(
                Problem::at(
                    &module.name,
                    line,
                    column,
                    "Rego: walk(...) is not supported by the sidecar filter's engine (regorus RVM)"
                        .into(),
                )
                .hint("iterate the levels you need with `some key, value in ...`"),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(modules: &[(&str, &str)], tests: &[(&str, &str)]) -> Workspace {
        let to = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(n, s)| PolicyModule {
                    name: n.to_string(),
                    source: s.to_string(),
                })
                .collect()
        };
        Workspace {
            modules: to(modules),
            tests: to(tests),
            ..Workspace::default()
        }
    }

    #[test]
    fn a_valid_policy_compiles_to_the_filter_configuration() {
        let plugin = check(&ws(
            &[(
                "policies/authz.rego",
                "package envoy.authz\ndefault allow := false\n",
            )],
            &[],
        ))
        .unwrap_or_else(|p| panic!("{p:?}"));
        assert!(!plugin.program.is_empty());
        assert_eq!(plugin.entrypoint, "data.envoy.authz.allow");
    }

    #[test]
    fn every_file_with_a_syntax_error_is_reported_at_its_line() {
        let problems = check(&ws(
            &[
                ("policies/a.rego", "package envoy.authz\n\nallow if {\n"),
                ("policies/b.rego", "package envoy.authz\nx := [\n"),
            ],
            &[(
                "policies/a_test.rego",
                "package envoy.authz\ntest_x if {{\n",
            )],
        ))
        .err()
        .unwrap_or_default();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(problems[0].module.as_deref(), Some("policies/a.rego"));
        assert_eq!(problems[0].line, Some(4));
        assert_eq!(problems[2].module.as_deref(), Some("policies/a_test.rego"));
    }

    #[test]
    fn a_body_reference_and_walk_are_refused_at_their_lines() {
        let problems = check(&ws(
            &[(
                "p.rego",
                "package envoy.authz\nallow if not input.parsed_body.admin\nx if walk(input, [_, _])\n",
            )],
            &[],
        ))
        .err()
        .unwrap_or_default();
        let at: Vec<_> = problems.iter().map(|p| (p.line, p.column)).collect();
        assert_eq!(
            at,
            vec![(Some(2), Some(14)), (Some(3), Some(6))],
            "{problems:?}"
        );
    }

    #[test]
    fn a_missing_entrypoint_rule_has_a_hint() {
        let problems = check(&ws(
            &[("p.rego", "package envoy.authz\ndeny if true\n")],
            &[],
        ))
        .err()
        .unwrap_or_default();
        assert_eq!(problems.len(), 1);
        assert!(problems[0]
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("entrypoint"));
    }

    #[test]
    fn data_that_is_not_an_object_and_no_modules_are_refused() {
        assert!(check(&ws(&[], &[])).is_err());
        let mut bad = ws(&[("p.rego", "package envoy.authz\nallow := true\n")], &[]);
        bad.data = serde_json::json!([1]);
        assert!(check(&bad).is_err());
    }
}
