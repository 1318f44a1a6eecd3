//! Unit tests of the parent module (kept apart so that module reads in one sitting).

use super::*;
use crate::config::PolicyModule;

fn config(source: &str) -> PluginConfig {
    PluginConfig::new(vec![PolicyModule {
        name: "authz.rego".into(),
        source: source.into(),
    }])
}

#[test]
fn simple_policy_compiles_to_the_rvm_and_evaluates() {
    let policy = CompiledPolicy::compile(&config(
        "package envoy.authz\ndefault allow := false\nallow if input.source_principal == \"a\"\n",
    ));
    let policy = policy.unwrap_or_else(|e| unreachable!("{e}"));
    let yes = Value::from_json_str(r#"{"source_principal": "a"}"#).unwrap();
    let no = Value::from_json_str(r#"{"source_principal": "b"}"#).unwrap();
    for _ in 0..3 {
        assert_eq!(policy.evaluate(yes.clone()).ok(), Some(Value::Bool(true)));
        assert_eq!(policy.evaluate(no.clone()).ok(), Some(Value::Bool(false)));
    }
}

#[test]
fn syntax_error_names_the_module_line_and_column() {
    let err = CompiledPolicy::compile(&config("package envoy.authz\nallow if {\n"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("authz.rego:"), "{err}");
    let unsafe_var = "package envoy.authz\n\nallow if {\n  y == 2\n}\n";
    let located = CompiledPolicy::compile(&config(unsafe_var))
        .err()
        .and_then(|e| e.located());
    assert_eq!(
        located,
        Some(Located {
            module: "authz.rego".into(),
            line: 4,
            column: 3,
            message: "use of undefined variable `y` is unsafe".into()
        })
    );
}

#[test]
fn missing_entrypoint_rule_does_not_compile() {
    let result = CompiledPolicy::compile(&config("package envoy.authz\ndeny if true\n"));
    let message = result.err().map(|e| e.summary()).unwrap_or_default();
    assert!(
        message.contains("data.envoy.authz.allow is not defined"),
        "{message}"
    );
}

#[test]
fn the_same_sources_compile_to_the_same_program() {
    let source = "package envoy.authz\nallow if input.source_principal in {\"a\", \"b\"}\n";
    let a = with_program(config(source)).map(|c| c.program).ok();
    let b = with_program(config(source)).map(|c| c.program).ok();
    assert!(a.as_ref().is_some_and(|p| !p.is_empty()));
    assert_eq!(
        a, b,
        "a reload must not change every sidecar's configuration"
    );
}

#[test]
fn a_construct_the_rvm_cannot_run_runs_on_the_interpreter_as_opa() {
    let source = "package envoy.authz\n\nallow if {\n  x with input.a as true\n}\n\nx if input.a\n";
    let policy = CompiledPolicy::compile(&config(source)).unwrap();
    assert_eq!(policy.config().engine, PolicyEngine::Interpreter);
    assert!(policy.config().program.is_empty());
    let input = Value::from_json_str(r#"{"a": false}"#).unwrap();
    assert_eq!(policy.evaluate(input).ok(), Some(Value::Bool(true)));
    assert!(!policy.decisions_cacheable());
    assert!(
        !policy.extended_builtins().is_empty(),
        "needs the extended module"
    );
}

#[test]
fn loading_needs_a_program_and_refuses_a_bad_one() {
    let mut plain = config("package envoy.authz\nallow := true\n");
    assert!(matches!(
        CompiledPolicy::load(&plain),
        Err(PolicyError::Program { .. })
    ));
    plain.program = BASE64_STANDARD.encode(b"RVM? no");
    assert!(matches!(
        CompiledPolicy::load(&plain),
        Err(PolicyError::Program { .. })
    ));
}

#[test]
fn a_policy_calling_regex_or_glob_needs_the_extended_module() {
    let core =
        "package envoy.authz\nallow if startswith(input.attributes.request.http.path, \"/a\")\n";
    let policy = CompiledPolicy::compile(&config(core)).unwrap();
    assert!(policy.extended_builtins().is_empty());
    let extended = "package envoy.authz\nallow if glob.match(\"spiffe://*/a\", [\"/\"], input.source_principal)\nallow if regex.match(\"^/x\", input.attributes.request.http.path)\n";
    let policy = CompiledPolicy::compile(&config(extended)).unwrap();
    let mut names = policy.extended_builtins();
    names.sort();
    assert_eq!(names, vec!["glob.match", "regex.match"]);
}

#[test]
fn a_decision_with_an_undefined_part_is_an_error_naming_where() {
    let mut value = Value::from_json_str(r#"{"y": 1, "h": [1, 2]}"#).unwrap();
    value
        .as_object_mut()
        .unwrap()
        .insert(Value::from("z"), Value::Undefined);
    let message = refuse_undefined_parts(value).err().map(|e| e.to_string());
    assert!(
        message
            .as_deref()
            .unwrap_or("")
            .contains("undefined part at .z"),
        "{message:?}"
    );
    let whole = Value::from_json_str(r#"{"allowed": true, "headers": {"a": "b"}}"#).unwrap();
    assert!(refuse_undefined_parts(whole).is_ok());
}

#[test]
fn a_runaway_policy_on_the_interpreter_fails_closed() {
    let source = "package t\n\ndefault p := 0\np := 1 if input.a\np := 2 if { some x in numbers.range(1, 10000000); x < 0 }\n";
    let mut c = config(source);
    c.entrypoint = "data.t.p".into();
    let policy = CompiledPolicy::compile(&c).unwrap();
    assert_eq!(policy.config().engine, PolicyEngine::Interpreter);
    let started = std::time::Instant::now();
    let result = policy.evaluate(Value::from_json_str("{}").unwrap());
    assert!(
        matches!(result, Err(PolicyError::Eval { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn possibly_conflicting_definitions_run_on_the_interpreter_and_a_conflict_is_an_error() {
    let source = "package t\n\np := 1 if input.a\np := 2 if input.b\n";
    let mut c = config(source);
    c.entrypoint = "data.t.p".into();
    let policy = CompiledPolicy::compile(&c).unwrap();
    assert_eq!(policy.config().engine, PolicyEngine::Interpreter);
    let one = Value::from_json_str(r#"{"a": true}"#).unwrap();
    assert_eq!(policy.evaluate(one).ok(), Some(Value::from(1u64)));
    let both = Value::from_json_str(r#"{"a": true, "b": true}"#).unwrap();
    assert!(matches!(
        policy.evaluate(both),
        Err(PolicyError::Eval { .. })
    ));
}

#[test]
fn a_construct_neither_engine_runs_as_opa_is_refused_where_it_is() {
    let source = "package t\n\np.a contains 1 if input.x\np.b contains 2 if input.x\n";
    let mut c = config(source);
    c.entrypoint = "data.t.q".into();
    let error = CompiledPolicy::compile(&c).err();
    let located = error.as_ref().and_then(PolicyError::located);
    assert_eq!(located.as_ref().map(|l| (l.line, l.column)), Some((3, 1)));
    let summary = error.map(|e| e.summary()).unwrap_or_default();
    assert!(summary.contains("leaf is a set"), "{summary}");
    assert!(summary.contains("without a dot"), "the hint: {summary}");
}

#[test]
fn no_modules_is_an_error() {
    assert!(matches!(
        CompiledPolicy::compile(&PluginConfig::new(vec![])),
        Err(PolicyError::NoModules)
    ));
}

mod reuse_tests {
    use super::super::*;
    use crate::config::PolicyModule;

    #[test]
    fn a_reused_vm_gives_the_same_answer_every_time() {
        let source = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/mesh/policies/authz.rego"
        ))
        .unwrap();
        let policy = CompiledPolicy::compile(&PluginConfig::new(vec![PolicyModule {
            name: "authz.rego".into(),
            source,
        }]))
        .unwrap();
        let deny = Value::from_json_str(
            r#"{"attributes": {"source": {"principal": "spiffe://example.org/ns/demo/sa/frontend"},
                "destination": {"principal": "spiffe://example.org/ns/demo/sa/database"},
                "request": {"http": {"method": "GET", "path": "/api/items", "headers": {}}}}}"#,
        )
        .unwrap();
        for i in 0..2000 {
            let varied = Value::from_json_str(&format!(
                r#"{{"attributes": {{"source": {{"principal": "spiffe://example.org/ns/demo/sa/frontend"}},
                    "destination": {{"principal": "spiffe://example.org/ns/demo/sa/backend"}},
                    "request": {{"http": {{"method": "GET", "path": "/api/items", "headers": {{"x-request-id": "{i}"}}}}}}}}}}"#
            ))
            .unwrap();
            let got = policy.evaluate(varied).unwrap();
            assert_eq!(got, Value::Bool(true), "evaluation {i}");
            assert_eq!(
                policy.evaluate(deny.clone()).unwrap(),
                Value::Bool(false),
                "evaluation {i}"
            );
        }
    }
}
