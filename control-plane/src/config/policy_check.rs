//! Rego checks for `config::load` (and so `warden validate`): every policy and test
//! module must parse, and the policy must compile for the configured entrypoint with the
//! filter's own core, so what validates is what the filter will accept. Each problem is
//! reported at `file:line:col`.

use std::path::{Path, PathBuf};

use regorus::unstable::{Expr, Rule, RuleHead};

use warden_filter::{
    body_references, call_sites, parse_modules, with_program, CompiledPolicy, PluginConfig,
    PolicyError, PolicyModule,
};

use super::{Diagnostic, PolicySettings, PolicySources, Pos, RegoFile};

/// Compile the policy modules (and parse the test modules) and report every error. On
/// success `sources.program` holds the compiled program the filter will receive.
pub(crate) fn check(sources: &mut PolicySources, settings: &PolicySettings) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    if sources.modules.is_empty() {
        // config::load reports missing policies itself.
        return diags;
    }
    // Parse each file alone first, so every file with a syntax error is reported.
    let mut parse_failed = false;
    for file in sources.modules.iter().chain(&sources.tests) {
        if let Err(error) = parse_modules(&[module_of(file)]) {
            parse_failed = true;
            diags.push(diagnostic(sources, &error, None));
        }
    }
    if parse_failed {
        return diags;
    }
    diags.extend(body_reference_diagnostics(sources));
    // Neither form of walk runs on the RVM (and regorus refuses the relation form as
    // "unsafe", its other form prints scheduler noise): refuse it by name first.
    let walks = walk_diagnostics(sources);
    if !walks.is_empty() {
        diags.extend(walks);
        return diags;
    }
    diags.extend(compile(sources, settings));
    if !parse_failed && !sources.tests.is_empty() {
        let all: Vec<PolicyModule> = sources
            .modules
            .iter()
            .chain(&sources.tests)
            .map(module_of)
            .collect();
        if let Err(error) = parse_modules(&all) {
            diags.push(diagnostic(sources, &error, None));
        }
    }
    diags
}

/// Every reference to the request body, which the sidecar never provides.
fn body_reference_diagnostics(sources: &PolicySources) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for file in &sources.modules {
        for reference in body_references(&file.source) {
            diags.push(
                Diagnostic::at(
                    &file.path,
                    Pos {
                        line: reference.line,
                        column: reference.column,
                    },
                    format!(
                        "Rego: {} is never provided: Envoy does not send request bodies to the \
                         sidecar filter, so the policy would always see it undefined",
                        reference.field
                    ),
                )
                .hint("decide on headers, path, query and identity instead (see README, OPA-Envoy compatibility)"),
            );
        }
    }
    diags
}

/// Compiles the policy the way the filter loads it and records the program, its input
/// needs and engine in `sources`; a diagnostic with a hint when it does not compile.
fn compile(sources: &mut PolicySources, settings: &PolicySettings) -> Option<Diagnostic> {
    let mut plugin = PluginConfig::new(sources.modules.iter().map(module_of).collect());
    plugin.entrypoint = settings.entrypoint.clone();
    if sources.data.is_object() {
        plugin.data = sources.data.clone();
    }
    match with_program(plugin) {
        Ok(compiled) => {
            // Loading what was just compiled cannot fail; if it did, assume the worst.
            sources.extended_builtins = CompiledPolicy::load(&compiled)
                .map(|p| p.extended_builtins())
                .unwrap_or_else(|_| vec!["(unknown)".into()]);
            sources.program = compiled.program;
            sources.input_needs = compiled.input_needs;
            sources.entrypoint = compiled.entrypoint;
            sources.engine = compiled.engine;
        }
        Err(error) => {
            let hint = match &error {
            PolicyError::Compile { message, .. } if message.contains("is not defined") => Some(format!(
                "define the rule in a policy module, or set policy.entrypoint in warden.yaml (now {})",
                settings.entrypoint
            )),
            PolicyError::Unsupported { hint: Some(hint), .. } => Some(hint.clone()),
            PolicyError::Unsupported { .. } => Some(
                "the sidecar filter runs policies on regorus's RVM; rewrite this construct \
                 (`with` belongs in *_test.rego files, which run on the interpreter)"
                    .to_string(),
            ),
            _ => None,
        };
            return Some(diagnostic(sources, &error, hint));
        }
    }
    None
}

/// Rule paths the data document also defines (a value at the path, or a non-object on
/// the way to it): OPA and regorus fail every evaluation with a conflict there, while
/// the native RBAC compiler (which reads rules) would not. Reported at `data_file`.
pub(crate) fn data_rule_conflicts(sources: &PolicySources, data_file: &Path) -> Vec<Diagnostic> {
    let mut engine = regorus::Engine::new();
    for file in &sources.modules {
        if engine
            .add_policy(file.name.clone(), file.source.clone())
            .is_err()
        {
            return Vec::new(); // reported by `check`
        }
    }
    let mut paths = std::collections::BTreeSet::new();
    for module in engine.get_modules() {
        let Some(package) = ref_path(&module.package.refr) else {
            continue;
        };
        let package = package
            .strip_prefix(&["data".to_string()])
            .unwrap_or(&package);
        for rule in &module.policy {
            let head = match rule.as_ref() {
                Rule::Spec {
                    head:
                        RuleHead::Compr { refr, .. }
                        | RuleHead::Set { refr, .. }
                        | RuleHead::Func { refr, .. },
                    ..
                } => refr,
                Rule::Default { refr, .. } => refr,
            };
            let mut path = package.to_vec();
            path.extend(ref_path(head).unwrap_or_default());
            paths.insert(path);
        }
    }
    paths
        .into_iter()
        .filter(|path| data_defines(&sources.data, path))
        .map(|path| {
            Diagnostic::file(
                data_file,
                format!("data also defines rule path {}", path.join(".")),
            )
            .hint("rename the data key or the rule: a path is either data or rules, never both")
        })
        .collect()
}

/// Whether `data` has a value at `path`, or a non-object at a proper prefix of it.
fn data_defines(data: &serde_json::Value, path: &[String]) -> bool {
    let mut at = data;
    for key in path {
        match at {
            serde_json::Value::Object(map) => match map.get(key) {
                Some(next) => at = next,
                None => return false,
            },
            _ => return true,
        }
    }
    true
}

/// A rule head or package reference with constant parts (`a.b["c"]`), up to the first
/// computed part.
fn ref_path(expr: &Expr) -> Option<Vec<String>> {
    let text = |v: &regorus::Value| v.as_string().ok().map(|s| s.to_string());
    match expr {
        Expr::Var { value, .. } => Some(vec![text(value)?]),
        Expr::RefDot { refr, field, .. } => {
            let mut p = ref_path(refr)?;
            p.push(text(&field.1)?);
            Some(p)
        }
        Expr::RefBrack { refr, index, .. } => {
            let mut p = ref_path(refr)?;
            if let Expr::String { value, .. } | Expr::RawString { value, .. } = index.as_ref() {
                p.push(text(value)?);
            }
            Some(p)
        }
        _ => None,
    }
}

/// regorus's RVM compiler refuses `walk` without a location: point at every call.
fn walk_diagnostics(sources: &PolicySources) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for file in &sources.modules {
        for (line, column) in call_sites(&file.source, "walk") {
            diags.push(
                Diagnostic::at(
                    &file.path,
                    Pos { line, column },
                    "Rego: walk(...) is not supported by the sidecar filter's engine (regorus RVM)",
                )
                .hint(
                    "iterate the levels you need with `some key, value in ...` (each level \
                     named), or test the policy with `warden policy test`, which runs walk",
                ),
            );
        }
    }
    diags
}

fn module_of(file: &RegoFile) -> PolicyModule {
    PolicyModule {
        name: file.name.clone(),
        source: file.source.clone(),
    }
}

fn path_of(sources: &PolicySources, name: &str) -> Option<PathBuf> {
    sources
        .modules
        .iter()
        .chain(&sources.tests)
        .find(|f| f.name == name)
        .map(|f| f.path.clone())
}

fn diagnostic(sources: &PolicySources, error: &PolicyError, hint: Option<String>) -> Diagnostic {
    let fallback = sources
        .modules
        .first()
        .map(|f| f.path.clone())
        .unwrap_or_default();
    let diag = match error.located() {
        Some(located) => Diagnostic::at(
            &path_of(sources, &located.module).unwrap_or(fallback),
            Pos {
                line: located.line,
                column: located.column,
            },
            format!("Rego: {}", located.message),
        ),
        None => {
            let file = match error {
                PolicyError::Parse { module, .. } => path_of(sources, module).unwrap_or(fallback),
                _ => fallback,
            };
            Diagnostic::file(&file, format!("Rego: {}", error.summary()))
        }
    };
    match hint {
        Some(hint) => diag.hint(hint),
        None => diag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyMode;

    fn rego(name: &str, source: &str) -> RegoFile {
        RegoFile {
            path: PathBuf::from(format!("/cfg/{name}")),
            name: name.to_string(),
            source: source.to_string(),
        }
    }

    fn settings() -> PolicySettings {
        PolicySettings {
            entrypoint: "data.envoy.authz.allow".into(),
            mode: PolicyMode::Enforce,
            deny_status: 403,
            expose_reason: false,
            escaped_slashes: Default::default(),
            native_rbac: true,
        }
    }

    fn sources(modules: Vec<RegoFile>, tests: Vec<RegoFile>) -> PolicySources {
        PolicySources {
            modules,
            tests,
            data: serde_json::json!({}),
            program: String::new(),
            input_needs: None,
            extended_builtins: Vec::new(),
            entrypoint: String::new(),
            engine: warden_filter::PolicyEngine::Rvm,
        }
    }

    #[test]
    fn valid_policy_has_no_diagnostics() {
        let mut s = sources(
            vec![rego(
                "policies/authz.rego",
                "package envoy.authz\ndefault allow := false\n",
            )],
            vec![rego(
                "policies/authz_test.rego",
                "package envoy.authz\ntest_x if not allow\n",
            )],
        );
        assert_eq!(check(&mut s, &settings()), vec![]);
        assert!(
            !s.program.is_empty(),
            "a valid policy carries its compiled program"
        );
        assert!(s.extended_builtins.is_empty());
    }

    #[test]
    fn a_policy_calling_glob_is_marked_for_the_extended_module() {
        let mut s = sources(
            vec![rego(
                "policies/authz.rego",
                "package envoy.authz\nallow if glob.match(\"spiffe://example.org/*\", [\"/\"], input.source_principal)\n",
            )],
            vec![],
        );
        assert_eq!(check(&mut s, &settings()), vec![]);
        assert_eq!(s.extended_builtins, vec!["glob.match".to_string()]);
    }

    #[test]
    fn a_construct_the_rvm_cannot_run_validates_for_the_interpreter_and_the_extended_module() {
        let mut s = sources(
            vec![rego(
                "policies/authz.rego",
                "package envoy.authz\n\nallow if {\n  x with input as {}\n}\n\nx if input.a\n",
            )],
            vec![],
        );
        assert_eq!(check(&mut s, &settings()), vec![]);
        assert!(
            s.program.is_empty(),
            "no RVM program: the interpreter runs it"
        );
        assert!(
            !s.extended_builtins.is_empty(),
            "the interpreter is only in the extended module"
        );
    }

    #[test]
    fn a_construct_opa_would_decide_differently_is_refused_with_its_own_hint() {
        let mut s = sources(
            vec![rego(
                "policies/authz.rego",
                "package envoy.authz\n\np.a contains 1 if input.x\nallow if count(p) > 0\n",
            )],
            vec![],
        );
        let diags = check(&mut s, &settings());
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!((diags[0].line, diags[0].column), (3, 1));
        assert!(diags[0].message.contains("leaf is a set"), "{}", diags[0]);
        assert!(
            diags[0]
                .hint
                .as_deref()
                .unwrap_or("")
                .contains("without a dot"),
            "{:?}",
            diags[0].hint
        );
        assert!(s.program.is_empty());
    }

    #[test]
    fn a_policy_reading_the_request_body_is_refused_at_its_line_with_a_hint() {
        let mut s = sources(
            vec![rego(
                "policies/authz.rego",
                "package envoy.authz\n\nallow if not input.parsed_body.admin\n",
            )],
            vec![],
        );
        let diags = check(&mut s, &settings());
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!((diags[0].line, diags[0].column), (3, 14));
        assert!(diags[0].message.contains("input.parsed_body"), "{diags:?}");
        assert!(diags[0]
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("compatibility"));
    }

    #[test]
    fn walk_is_refused_at_its_line_and_some_in_over_an_alias_runs_on_the_interpreter() {
        let mut s = sources(
            vec![rego(
                "policies/authz.rego",
                "package envoy.authz\nimport rego.v1\n\nallow if {\n  walk(input, [p, v])\n  v == \"x\"\n}\n",
            )],
            vec![],
        );
        let diags = check(&mut s, &settings());
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!((diags[0].line, diags[0].column), (5, 3), "{diags:?}");
        assert!(diags[0].hint.is_some(), "{diags:?}");
        // The RVM cannot hoist `some … in` over an import alias; the interpreter runs it
        // (the YAML cases compare its decisions with OPA's).
        let mut s = sources(
            vec![rego(
                "policies/authz.rego",
                "package envoy.authz\nimport rego.v1\nimport input.attributes.request.http as h\n\nallow if {\n  some v in h[_]\n  v == \"x\"\n}\n",
            )],
            vec![],
        );
        assert_eq!(check(&mut s, &settings()), vec![]);
        assert_eq!(s.engine, warden_filter::PolicyEngine::Interpreter);
    }

    #[test]
    fn the_analysed_input_needs_are_kept_with_the_program() {
        let mut s = sources(
            vec![rego(
                "policies/authz.rego",
                "package envoy.authz\nallow if input.attributes.request.http.headers.x == \"1\"\n",
            )],
            vec![],
        );
        assert_eq!(check(&mut s, &settings()), vec![]);
        let needs = s.input_needs.expect("analysed");
        assert!(needs.headers && !needs.host && !needs.parsed_path);
    }

    #[test]
    fn a_package_entrypoint_compiles_its_allow_rule() {
        let mut s = sources(
            vec![rego(
                "policies/authz.rego",
                "package envoy.authz\ndefault allow := false\n",
            )],
            vec![],
        );
        let mut package = settings();
        package.entrypoint = "envoy/authz".into();
        assert_eq!(check(&mut s, &package), vec![]);
        assert_eq!(s.entrypoint, "data.envoy.authz.allow");
    }

    #[test]
    fn syntax_errors_in_every_file_are_reported_at_line_and_column() {
        let mut s = sources(
            vec![
                rego("policies/a.rego", "package envoy.authz\n\nallow if {\n"),
                rego("policies/b.rego", "package envoy.authz\nx := [\n"),
            ],
            vec![rego(
                "policies/a_test.rego",
                "package envoy.authz\n\ntest_x if {{\n",
            )],
        );
        let diags = check(&mut s, &settings());
        assert_eq!(diags.len(), 3, "{diags:?}");
        assert_eq!(diags[0].file, PathBuf::from("/cfg/policies/a.rego"));
        assert_eq!(diags[0].line, 4);
        assert!(
            diags[0].to_string().starts_with("/cfg/policies/a.rego:4:"),
            "{}",
            diags[0]
        );
        assert_eq!(diags[2].file, PathBuf::from("/cfg/policies/a_test.rego"));
    }

    #[test]
    fn unsafe_variable_is_reported_where_it_is_used() {
        let mut s = sources(
            vec![rego(
                "policies/authz.rego",
                "package envoy.authz\n\nallow if {\n  z == 1\n}\n",
            )],
            vec![],
        );
        let diags = check(&mut s, &settings());
        assert_eq!(diags.len(), 1);
        // Spaces: regorus expands tabs when it counts columns.
        assert_eq!((diags[0].line, diags[0].column), (4, 3));
        assert!(diags[0].message.contains("undefined variable `z`"));
    }

    #[test]
    fn missing_entrypoint_rule_has_a_hint() {
        let mut s = sources(
            vec![rego(
                "policies/authz.rego",
                "package envoy.authz\ndeny if true\n",
            )],
            vec![],
        );
        let diags = check(&mut s, &settings());
        assert_eq!(diags.len(), 1);
        assert!(diags[0]
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("policy.entrypoint"));
    }

    #[test]
    fn data_defining_a_rule_path_is_an_error_at_the_data_file() {
        let mut s = sources(
            vec![rego(
                "policies/authz.rego",
                "package envoy.authz\nimport rego.v1\ndefault allow := false\nallow if input.attributes.request.http.method == \"PUT\"\n",
            )],
            vec![],
        );
        s.data = serde_json::json!({"envoy": {"authz": {"allow": true}}});
        let file = Path::new("/cfg/policies/data.json");
        let diags = data_rule_conflicts(&s, file);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].file, file);
        assert!(diags[0]
            .message
            .contains("data also defines rule path envoy.authz.allow"));
        s.data = serde_json::json!({"envoy": {"authz": {"other": 1}}, "x": 2});
        assert!(data_rule_conflicts(&s, file).is_empty());
        s.data = serde_json::json!({"envoy": 5});
        assert_eq!(data_rule_conflicts(&s, file).len(), 1);
    }
}
