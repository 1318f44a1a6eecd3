//! Regression tests for the cases a hostile review found where the emitted RBAC config
//! decided otherwise than Rego; each policy is the reviewer's text, and each must now
//! keep the Wasm filter and say why.

use warden_filter::{PluginConfig, PolicyModule};

use super::*;

fn plugin_with(source: &str, data: serde_json::Value) -> PluginConfig {
    let mut plugin = PluginConfig::new(vec![PolicyModule {
        name: "policies/authz.rego".into(),
        source: source.into(),
    }]);
    plugin.destination_principal = "spiffe://example.org/ns/demo/sa/backend".into();
    plugin.data = data;
    warden_filter::with_program(plugin).unwrap_or_else(|e| panic!("{e}"))
}

/// Compiling `body` (after the usual header) fails; returns the reason.
fn refused_with(body: &str, data: serde_json::Value) -> NotNative {
    let source = format!("package envoy.authz\nimport rego.v1\ndefault allow := false\n{body}\n");
    compile_plugin(&plugin_with(&source, data)).expect_err(body)
}

fn refused(body: &str) -> NotNative {
    refused_with(body, serde_json::json!({}))
}

#[test]
fn a_header_value_comparison_keeps_wasm_since_repeated_headers_are_joined_in_rego() {
    for body in [
        "allow if input.attributes.request.http.headers[\"x-a\"] == \"1,2\"",
        "allow if input.attributes.request.http.headers[\"x-b\"] == \"1\"",
        "allow if startswith(input.attributes.request.http.headers[\"x-p\"], \"ok\")",
        "allow if {\n\tinput.attributes.request.http.headers[\"x-n\"]\n\tinput.attributes.request.http.headers[\"x-n\"] != \"blocked\"\n}",
        "allow if input.attributes.request.http.headers[\"x-b\"] in {\"1\", \"2\"}",
        "allow if regex.match(`^a$`, input.attributes.request.http.headers[\"x-b\"])",
    ] {
        let err = refused(body);
        assert!(err.what.contains("value of header"), "{body}: {err}");
        assert!(err.at.is_some(), "{body}: {err}");
    }
}

#[test]
fn header_presence_and_absence_still_compile() {
    let source = "package envoy.authz\nimport rego.v1\ndefault allow := false\n\
                  allow if input.attributes.request.http.headers[\"x-a\"]\n\
                  allow if not input.attributes.request.http.headers[\"x-b\"]\n";
    let rules = compile_plugin(&plugin_with(source, serde_json::json!({}))).unwrap();
    assert_eq!(rules.len(), 2);
}

#[test]
fn a_key_bound_over_a_set_keeps_wasm() {
    let err = refused(
        "allow if {\n\tsome k, _ in {\"DELETE\"}\n\tnot input.attributes.request.http.method == k\n}",
    );
    assert!(err.what.contains("over a set"), "{err}");
    assert_eq!(err.at.map(|l| l.line), Some(5));
}

#[test]
fn indexing_a_set_keeps_wasm() {
    let err = refused(
        "readers := {\"GET\"}\nallow if input.attributes.request.http.method == readers[0]",
    );
    assert!(err.what.contains("lookup in a set"), "{err}");
}

#[test]
fn membership_in_a_set_stays_native() {
    let source = "package envoy.authz\nimport rego.v1\ndefault allow := false\n\
                  readers := {\"GET\", \"HEAD\"}\n\
                  allow if input.attributes.request.http.method in readers\n\
                  allow if {\n\tsome m in {\"PUT\"}\n\tinput.attributes.request.http.method == m\n}\n";
    let rules = compile_plugin(&plugin_with(source, serde_json::json!({}))).unwrap();
    assert_eq!(rules.len(), 2);
}

#[test]
fn class_set_operators_in_a_regex_keep_wasm() {
    for body in [
        "allow if regex.match(`^/[ab&&b]$`, input.attributes.request.http.path)",
        "allow if regex.match(`^/[a-z--x]+$`, input.attributes.request.http.path)",
        "allow if regex.match(`^/[ab~~b]$`, input.attributes.request.http.path)",
    ] {
        let err = refused(body);
        assert!(err.what.contains("outside the subset"), "{body}: {err}");
    }
}

#[test]
fn a_regex_too_large_for_envoys_re2_limit_keeps_wasm() {
    let alternatives: Vec<String> = (0..400).map(|i| format!("seg{i}")).collect();
    let pattern = format!("^/({})/[a-z0-9_-]+$", alternatives.join("|"));
    let err = refused_with(
        "allow if regex.match(data.pat, input.attributes.request.http.path)",
        serde_json::json!({ "pat": pattern }),
    );
    assert!(err.what.contains("too large"), "{err}");
    let eight = "allow if regex.match(`^/(alpha|bravo|charlie|delta|echo|foxtrot|golf|hotel)/[a-z0-9_-]+$`, input.attributes.request.http.path)";
    assert!(refused(eight).what.contains("too large"));
    let source = "package envoy.authz\nimport rego.v1\ndefault allow := false\n\
                  allow if regex.match(`^/(api|query)/[a-z0-9_-]+$`, input.attributes.request.http.path)\n";
    assert!(compile_plugin(&plugin_with(source, serde_json::json!({}))).is_ok());
}

#[test]
fn unifying_input_or_data_with_a_constant_keeps_wasm() {
    for (body, name) in [
        ("allow if {\n\tinput = \"x\"\n}", "input"),
        ("allow if {\n\tdata = \"x\"\n}", "data"),
    ] {
        let err = refused(body);
        assert!(err.what.contains(&format!("`{name}`")), "{body}: {err}");
        assert_eq!(err.at.map(|l| l.line), Some(5));
    }
}

#[test]
fn mutually_recursive_helper_rules_keep_wasm_instead_of_overflowing() {
    let err = refused("a := b\nb := a\nallow if input.attributes.request.http.method == a");
    assert!(err.what.contains("recursive rule"), "{err}");
}

#[test]
fn data_defining_a_rule_path_of_the_decision_package_keeps_wasm() {
    let body = "allow if input.attributes.request.http.method == \"PUT\"";
    let err = refused_with(
        body,
        serde_json::json!({"envoy": {"authz": {"allow": true}}}),
    );
    assert!(
        err.what
            .contains("data also defines rule path envoy.authz.allow"),
        "{err}"
    );
    let err = refused_with(body, serde_json::json!({"envoy": {"authz": 5}}));
    assert!(err.what.contains("data also defines"), "{err}");
    let source = format!("package envoy.authz\nimport rego.v1\ndefault allow := false\n{body}\n");
    let ok = plugin_with(
        &source,
        serde_json::json!({"envoy": {"authz": {"other": 1}}}),
    );
    assert!(compile_plugin(&ok).is_ok());
}
