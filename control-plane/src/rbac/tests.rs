use std::path::Path;

use prost::Message;
use warden_filter::{authorize, CompiledPolicy, DecisionIds, Peer, PluginConfig, PolicyModule};

use super::eval::{allows, Seen};
use super::ir::{Attr, Cond, Test};
use super::*;

fn sample() -> Config {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    crate::config::load(&dir).unwrap_or_else(|d| panic!("{d}"))
}

fn plugin(body: &str) -> PluginConfig {
    let source =
        format!("package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n\n{body}\n");
    let mut plugin = PluginConfig::new(vec![PolicyModule {
        name: "policies/p.rego".into(),
        source,
    }]);
    plugin.destination_principal = "spiffe://example.org/ns/demo/sa/backend".into();
    plugin.data = serde_json::json!({"paths": ["/a", "/b"], "n": {"x": 1}});
    warden_filter::with_program(plugin).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn sample_mesh_workloads_all_get_native_rbac_named_after_their_rules() {
    let config = sample();
    for workload in &config.workloads {
        let AuthzPath::Native(rules) = path_for(&config, workload) else {
            panic!(
                "{} stays on Wasm: {:?}",
                workload.name,
                path_for(&config, workload)
            );
        };
        // The destination checks are decided here: the health rule, plus the one rule
        // (if any) written for this destination.
        let want = if workload.name == "frontend" { 1 } else { 2 };
        assert_eq!(rules.len(), want, "{}: {rules:#?}", workload.name);
        assert!(rules
            .iter()
            .all(|r| r.name.starts_with("policies/authz.rego:")));
    }
}

#[test]
fn native_rbac_off_keeps_every_workload_on_wasm() {
    let mut config = sample();
    config.policy.native_rbac = false;
    for workload in &config.workloads {
        assert_eq!(
            path_for(&config, workload),
            AuthzPath::Wasm(WasmReason::Disabled)
        );
    }
}

/// Every sample workload, a grid of requests: the emitted RBAC and the filter agree.
#[test]
fn sample_mesh_rbac_decides_as_the_filter_on_a_request_grid() {
    let config = sample();
    let mut callers: Vec<String> = config
        .workloads
        .iter()
        .map(|w| w.spiffe_id.to_string())
        .collect();
    callers.extend([
        "spiffe://example.org/ns/demo/sa/unknown".into(),
        "spiffe://other.org/x".into(),
    ]);
    let methods = ["GET", "HEAD", "POST", "PUT", "get"];
    let paths = [
        "/api/",
        "/api",
        "/api/x",
        "/API/x",
        "/apix",
        "/healthz",
        "/healthz/",
        "/healthz?x=1",
        "/healthzx",
        "/query",
        "/query/",
        "/queryx",
        "/Query",
        "/",
        "/api/;x",
        "/api/%zz",
        "/query?a=%zz",
        "/x",
    ];
    for workload in &config.workloads {
        let plugin = crate::policy::plugin_config(&config, workload);
        let compiled = CompiledPolicy::load(&plugin).unwrap();
        let AuthzPath::Native(rules) = path_for(&config, workload) else {
            panic!()
        };
        let rbac = emit::rules(&rules, emit::Peers::Federated);
        let mut allowed = 0;
        for caller in &callers {
            for method in methods {
                for path in paths {
                    let headers = vec![
                        (":method".to_string(), method.to_string()),
                        (":path".to_string(), path.to_string()),
                    ];
                    let request = warden_filter::RequestAttributes {
                        peer: Peer::Verified(caller.parse().expect("callers are SPIFFE IDs")),
                        method: method.into(),
                        path: path.into(),
                        host: "h".into(),
                        scheme: "https".into(),
                        headers: headers.clone(),
                        source_address: None,
                        destination_address: None,
                        time_micros: None,
                    };
                    let want = authorize(&compiled, &request, DecisionIds::new(1).next_id())
                        .decision
                        .is_allow();
                    let got = allows(&rbac, &Seen::new(Some(caller.clone()), headers));
                    assert_eq!(got, want, "{} {caller} {method} {path}", workload.name);
                    allowed += usize::from(got);
                }
            }
        }
        assert!(
            allowed > 0,
            "{}: nothing allowed, the grid tests nothing",
            workload.name
        );
    }
}

#[test]
fn constructs_outside_the_subset_stay_on_wasm_and_name_their_line() {
    let cases = [
        (
            "allow if regex.match(\"^/a\\\\d\", input.attributes.request.http.path)",
            "outside the subset",
            7,
        ),
        (
            "allow if {\n\tinput.attributes.request.http.headers[\"x-spiffe-id\"] == \"a\"\n}",
            "x-spiffe-id",
            8,
        ),
        (
            "allow if input.attributes.request.http.host == \"a\"",
            "input.attributes.request.http.host",
            7,
        ),
        (
            "allow if input.parsed_path[0] == \"a\"",
            "input.parsed_path",
            7,
        ),
        (
            "allow if input.attributes.request.http.headers[\":path\"] == \"/\"",
            "pseudo-header",
            7,
        ),
        (
            "allow := {\"allowed\": true}",
            "decision value other than `true`",
            7,
        ),
        (
            "allow if {\n\tsome x\n\tx == 1\n}",
            "`some x` without `in`",
            8,
        ),
        (
            "allow if {\n\tevery p in data.paths { startswith(p, \"/\") }\n}",
            "`every`",
            8,
        ),
        (
            "allow if count(input.attributes.request.http.path) > 3",
            "expression form",
            7,
        ),
        (
            "allow if endswith(input.attributes.source.principal, \"/frontend\")",
            "certificate subject",
            7,
        ),
        ("allow if data.n.x == 1", "numbers", 7),
        (
            "allow if input.attributes.request.http.method == input.attributes.request.http.path",
            "two request fields",
            7,
        ),
        ("allow if f(1)\n\nf(x) := true", "package's own `f`", 7),
        ("allow if {\n\tx := 1\n} else := false", "`else`", 9),
    ];
    for (body, what, line) in cases {
        let err = compile_plugin(&plugin(body)).expect_err(body);
        assert!(err.what.contains(what), "{body}: {err}");
        assert_eq!(err.at.as_ref().map(|l| l.line), Some(line), "{body}: {err}");
        assert_eq!(
            err.at.as_ref().map(|l| l.file.as_str()),
            Some("policies/p.rego")
        );
    }
}

#[test]
fn supported_forms_compile_to_the_expected_conditions() {
    let exact = |a: Attr, s: &str| Cond::Match(a, Test::Exact(s.into()));
    let cases: Vec<(&str, Cond)> = vec![
        (
            "allow if input.attributes.request.http.method == \"GET\"",
            exact(Attr::Method, "GET"),
        ),
        (
            "allow if input.attributes.destination.principal == \"spiffe://example.org/x\"",
            Cond::False,
        ),
        (
            "allow if {\n\tsome p in data.paths\n\tinput.attributes.request.http.path == p\n}",
            Cond::Or(vec![exact(Attr::Path, "/a"), exact(Attr::Path, "/b")]),
        ),
        (
            "allow if not input.attributes.request.http.headers[\"x-a\"]",
            Cond::Not(Box::new(Cond::Match(
                Attr::Header("x-a".into()),
                Test::Present,
            ))),
        ),
        (
            "allow if input.attributes.request.http.headers[\"X-A\"]",
            Cond::False,
        ),
        (
            "allow if startswith(input.source_principal, \"spiffe://e/\")",
            Cond::Match(Attr::Principal, Test::Prefix("spiffe://e/".into())),
        ),
        (
            "allow if input.attributes.source.principal == \"O=Warden\"",
            Cond::False,
        ),
        (
            "allow if input.attributes.request.http.headers[\"x y\"]",
            Cond::False,
        ),
        ("allow if data.missing.key == \"a\"", Cond::False),
    ];
    for (body, want) in cases {
        let rules = compile_plugin(&plugin(body)).unwrap_or_else(|e| panic!("{body}: {e}"));
        let got = rules.first().map_or(Cond::False, |r| r.cond.clone());
        assert_eq!(got, want, "{body}");
    }
}

#[test]
fn equal_policies_encode_to_equal_bytes() {
    let config = sample();
    let w = &config.workloads[0];
    let AuthzPath::Native(a) = path_for(&config, w) else {
        panic!()
    };
    let AuthzPath::Native(b) = path_for(&config, w) else {
        panic!()
    };
    assert_eq!(
        emit::http_rbac(&a, false, emit::Peers::Federated).encode_to_vec(),
        emit::http_rbac(&b, false, emit::Peers::Federated).encode_to_vec()
    );
}

#[test]
fn dry_run_moves_the_rules_to_shadow_rules() {
    let rules = compile_plugin(&plugin(
        "allow if input.attributes.request.http.method == \"GET\"",
    ))
    .unwrap();
    let enforce = emit::http_rbac(&rules, false, emit::Peers::Federated);
    let dry = emit::http_rbac(&rules, true, emit::Peers::Federated);
    assert!(enforce.rules.is_some() && enforce.shadow_rules.is_none());
    assert_eq!(dry.rules, None);
    assert_eq!(dry.shadow_rules, enforce.rules);
}

#[test]
fn a_parent_package_that_may_define_the_decision_keeps_wasm() {
    let mut p = plugin("allow if input.attributes.request.http.method == \"GET\"");
    p.modules.push(PolicyModule {
        name: "policies/parent.rego".into(),
        source: "package envoy\n\nimport rego.v1\n\nx := 1\n".into(),
    });
    let err = compile_plugin(&p).expect_err("parent package");
    assert!(err.what.contains("package `envoy`"), "{err}");
}

#[test]
fn a_replacement_character_in_a_constant_keeps_wasm() {
    let err = compile_plugin(&plugin(
        "allow if input.attributes.request.http.path == \"/a\u{FFFD}\"",
    ))
    .expect_err("U+FFFD");
    assert!(err.what.contains("U+FFFD"), "{err}");
}

/// A copy of the sample mesh with `extra` appended to warden.yaml's `policy:` block.
fn sample_with_policy_line(extra: &str) -> Result<Config, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    let dir = tempfile::tempdir().unwrap();
    for sub in ["", "policies", "workloads"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(src.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    let main = dir.path().join("warden.yaml");
    let text = std::fs::read_to_string(&main).unwrap();
    let text = text.replace(
        "  deny_status: 403\n",
        &format!("  deny_status: 403\n  {extra}\n"),
    );
    std::fs::write(&main, text).unwrap();
    crate::config::load(dir.path()).map_err(|d| d.to_string())
}

#[test]
fn native_rbac_is_read_from_warden_yaml_and_unknown_values_are_refused() {
    let off = sample_with_policy_line("native_rbac: off").unwrap();
    assert!(!off.policy.native_rbac);
    let auto = sample_with_policy_line("native_rbac: auto").unwrap();
    assert!(auto.policy.native_rbac);
    let err = sample_with_policy_line("native_rbac: sometimes").unwrap_err();
    assert!(err.contains("unknown native_rbac `sometimes`"), "{err}");
}

#[test]
fn dry_run_keeps_the_wasm_filter_and_says_why() {
    let mut config = sample();
    config.policy.mode = crate::config::PolicyMode::DryRun;
    let path = path_for(&config, &config.workloads[0]);
    assert_eq!(path, AuthzPath::Wasm(WasmReason::DryRun));
    assert!(path.describe().contains("dry_run_denied"));
}

#[test]
fn only_regexes_both_engines_read_alike_are_compiled() {
    use super::ops::portable_regex;
    for p in [
        "^/api/[a-z0-9]+$",
        "^/(api|query)(/|$)",
        "a",
        "^x*?y+z?$",
        "\\.json$",
        "[-a-z_]",
    ] {
        assert!(portable_regex(p, false), "{p}");
    }
    for p in ["^G.T$", "[^P]"] {
        assert!(portable_regex(p, true), "{p}");
        assert!(
            !portable_regex(p, false),
            "{p}: any-char on a path or header"
        );
    }
    for p in [
        "\\d", "\\w+", "(?i)get", "a{2}", "a**", "*a", "(a", "[a", "[]a]", "é", "\\p{L}", "a|*",
    ] {
        assert!(!portable_regex(p, true), "{p}");
    }
}

/// The XFCC regex a principal test emits (the header half of its `and_ids`).
fn xfcc_regex(test: Test) -> regex::Regex {
    use xds_api::pb::envoy::config::rbac::v3::principal::Identifier as I;
    use xds_api::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier as H;
    use xds_api::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern as P;
    let p = super::emit::principal(
        &Cond::Match(Attr::Principal, test),
        super::emit::Peers::Federated,
    );
    let Some(I::AndIds(set)) = p.identifier else {
        panic!("not and_ids: {p:?}")
    };
    let header = set
        .ids
        .iter()
        .find_map(|i| match &i.identifier {
            Some(I::Header(h)) if h.name == super::emit::XFCC => Some(h.clone()),
            _ => None,
        })
        .expect("an XFCC header matcher");
    let Some(H::StringMatch(m)) = header.header_match_specifier else {
        panic!("not a string match")
    };
    let Some(P::SafeRegex(r)) = m.match_pattern else {
        panic!("not a regex")
    };
    // Envoy's safe_regex matches the whole value.
    regex::Regex::new(&format!("^(?:{})$", r.regex)).unwrap()
}

#[test]
fn a_principal_test_holds_only_for_the_first_uri_san_never_a_later_one() {
    let head = "By=spiffe://b.test/ns/demo/sa/backend;Hash=0a1b2c3d";
    let exact = xfcc_regex(Test::Exact("spiffe://a.test/ns/demo/sa/frontend".into()));
    assert!(exact.is_match(&format!("{head};URI=spiffe://a.test/ns/demo/sa/frontend")));
    assert!(exact.is_match(&format!(
        "{head};URI=spiffe://a.test/ns/demo/sa/frontend;URI=spiffe://x.test/y"
    )));
    for no in [
        "URI=spiffe://evil.test/m;URI=spiffe://a.test/ns/demo/sa/frontend",
        "URI=spiffe://a.test/ns/demo/sa/frontend2",
        "URI=spiffe://a.test/ns/demo/sa/frontend,By=x;Hash=00;URI=y",
    ] {
        assert!(!exact.is_match(&format!("{head};{no}")), "{no}");
    }
    assert!(
        !exact.is_match("URI=spiffe://a.test/ns/demo/sa/frontend"),
        "no Hash: no peer certificate"
    );
    let prefix = xfcc_regex(Test::Prefix("spiffe://a.test/".into()));
    assert!(prefix.is_match(&format!("{head};URI=spiffe://a.test/anything")));
    for no in [
        "URI=spiffe://evil.test/m;URI=spiffe://a.test/x",
        "URI=spiffe://a.test.evil/x",
    ] {
        assert!(!prefix.is_match(&format!("{head};{no}")), "{no}");
    }
}

#[test]
fn a_principal_test_is_envoys_authenticated_matcher_alone_while_only_our_ca_vouches_for_peers() {
    use xds_api::pb::envoy::config::rbac::v3::principal::Identifier as I;
    let test = Test::Exact("spiffe://example.org/ns/demo/sa/frontend".into());
    let own = super::emit::principal(
        &Cond::Match(Attr::Principal, test.clone()),
        super::emit::Peers::OwnTrustDomain,
    );
    assert!(
        matches!(own.identifier, Some(I::Authenticated(_))),
        "{own:?}"
    );
    let federated = super::emit::principal(
        &Cond::Match(Attr::Principal, test),
        super::emit::Peers::Federated,
    );
    assert!(
        matches!(federated.identifier, Some(I::AndIds(_))),
        "{federated:?}"
    );
    // The size that matters for large ID sets (120,000 IDs must fit one ADS message).
    assert!(own.encoded_len() * 2 < federated.encoded_len());
}
