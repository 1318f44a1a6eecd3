use super::*;
use crate::model::{Header, RequestSpec, Settings};
use warden_filter::PolicyModule;

const SAMPLE: &str = include_str!("../../../examples/mesh/policies/authz.rego");
const BACKEND: &str = "spiffe://example.org/ns/demo/sa/backend";
const FRONTEND: &str = "spiffe://example.org/ns/demo/sa/frontend";

fn sample(source: Option<&str>, method: &str, path: &str) -> Workspace {
    Workspace {
        modules: vec![PolicyModule {
            name: "policies/authz.rego".into(),
            source: SAMPLE.into(),
        }],
        request: RequestSpec {
            source: source.map(str::to_string),
            workload: "backend".into(),
            destination: BACKEND.into(),
            method: method.into(),
            path: path.into(),
            ..RequestSpec::default()
        },
        ..Workspace::default()
    }
}

fn run(ws: &Workspace) -> Evaluation {
    evaluate(ws).unwrap_or_else(|r| panic!("{r}"))
}

#[test]
fn the_frontend_reading_the_api_is_allowed_and_the_allow_rule_is_shown_where_defined() {
    let out = run(&sample(Some(FRONTEND), "GET", "/api/items"));
    assert_eq!(out.decision, "allow");
    assert_eq!(out.reason, None);
    assert_eq!(out.filter_action, "continue");
    assert_eq!(out.engine, warden_filter::PolicyEngine::Rvm);
    let allow = out
        .matched_rules
        .iter()
        .find(|r| r.rule == "data.envoy.authz.allow")
        .unwrap_or_else(|| panic!("{:?}", out.matched_rules));
    assert_eq!(allow.value, serde_json::json!(true));
    assert!(
        allow
            .defined_at
            .contains(&"policies/authz.rego:9".to_string()),
        "{allow:?}"
    );
    assert!(allow.defined_at.len() >= 4, "{allow:?}");
}

#[test]
fn a_deny_carries_the_filters_reason_status_and_body() {
    let mut ws = sample(Some(FRONTEND), "DELETE", "/api/items");
    ws.settings.expose_reason = true;
    let out = run(&ws);
    assert_eq!(out.decision, "deny");
    let reason = out.reason.unwrap_or_default();
    assert!(
        reason.starts_with("data.envoy.authz.allow is false (policy version \""),
        "{reason}"
    );
    assert!(reason.ends_with(&format!("peer {FRONTEND})")), "{reason}");
    assert_eq!(out.status, Some(403));
    assert!(out.body.unwrap_or_default().contains(&reason));
    assert!(!out.matched_rules.iter().any(|r| r.rule.ends_with(".allow")));
}

#[test]
fn no_peer_leaves_the_principal_out_of_the_input() {
    let out = run(&sample(None, "GET", "/healthz"));
    assert_eq!(out.decision, "deny");
    assert!(out
        .reason
        .unwrap_or_default()
        .contains("none (no verified mTLS peer)"));
    assert_eq!(out.input["attributes"]["source"].get("principal"), None);
}

#[test]
fn dry_run_lets_a_deny_through() {
    let mut ws = sample(Some(FRONTEND), "DELETE", "/api/items");
    ws.settings = Settings {
        mode: warden_filter::Mode::DryRun,
        ..Settings::default()
    };
    let out = run(&ws);
    assert_eq!((out.decision, out.filter_action), ("deny", "continue"));
}

#[test]
// OPA-Envoy decodes the path before splitting it: `%2F` separates segments.
fn headers_parsed_path_and_data_reach_the_policy() {
    let mut ws = sample(Some(FRONTEND), "GET", "/v1/a%2Fb/c?x=1");
    ws.modules[0].source = "package envoy.authz\n\
        allow if {\n\
          input.parsed_path == [\"v1\", \"a\", \"b\", \"c\"]\n\
          input.attributes.request.http.headers[\"x-team\"] == data.teams[_]\n\
        }\n"
    .into();
    ws.data = serde_json::json!({"teams": ["blue"]});
    ws.request.headers = vec![Header {
        name: "X-Team".into(),
        value: "blue".into(),
    }];
    let out = run(&ws);
    assert_eq!(out.decision, "allow", "{out:?}");
    ws.data = serde_json::json!({"teams": ["red"]});
    assert_eq!(run(&ws).decision, "deny");
}

#[test]
fn a_path_go_cannot_parse_is_a_bad_request_before_the_policy() {
    let out = run(&sample(Some(FRONTEND), "GET", "/api/%zz"));
    assert_eq!((out.decision, out.status), ("deny", Some(400)));
    assert!(out.reason.unwrap_or_default().starts_with("bad request:"));
}

#[test]
fn a_bad_source_id_or_a_nameless_header_is_refused_like_the_cli() {
    assert!(evaluate(&sample(Some("spiffe://Example.org/x"), "GET", "/")).is_err());
    let mut ws = sample(Some(FRONTEND), "GET", "/");
    ws.request.headers = vec![Header {
        name: " ".into(),
        value: "v".into(),
    }];
    assert!(evaluate(&ws).is_err());
}

#[test]
fn json_in_json_out_reports_ok_or_problems() {
    let ws = sample(Some(FRONTEND), "GET", "/api/x");
    let out: serde_json::Value = serde_json::from_str(&crate::evaluate_json(
        &serde_json::to_string(&ws).unwrap_or_default(),
    ))
    .unwrap_or_default();
    assert_eq!(out["ok"], true);
    assert_eq!(out["decision"], "allow");
    let bad: serde_json::Value =
        serde_json::from_str(&crate::evaluate_json("{\"modules\": 1}")).unwrap_or_default();
    assert_eq!(bad["ok"], false);
    assert!(bad["problems"][0]["message"].is_string());
}

#[test]
fn hostile_pages_get_problems_or_decisions_never_a_panic() {
    let inputs = [
        "",
        "null",
        "[]",
        "{}",
        "{\"modules\": null}",
        "{\"modules\": [{\"name\": 1, \"source\": 2}]}",
        "{\"modules\": [{\"name\": \"a.rego\", \"source\": \"\"}]}",
        "{\"modules\": [{\"name\": \"a.rego\", \"source\": \"package envoy.authz\\nallow := 1 / 0\"}]}",
        "{\"modules\": [{\"name\": \"a.rego\", \"source\": \"package envoy.authz\\nallow := true\"}], \"settings\": {\"deny_status\": 0}}",
        "{\"modules\": [{\"name\": \"a.rego\", \"source\": \"package envoy.authz\\nallow := true\"}], \"settings\": {\"entrypoint\": \"\"}}",
        "{\"modules\": [{\"name\": \"a.rego\", \"source\": \"package envoy.authz\\nallow := true\"}], \"unknown\": 1}",
        "{\"modules\": [{\"name\": \"a.rego\", \"source\": \"package envoy.authz\\nallow := true\"}], \"request\": {\"method\": \"\\u0000\", \"path\": \"\\u00ff\\u0000/%\"}}",
    ];
    for text in inputs {
        let out: serde_json::Value =
            serde_json::from_str(&crate::evaluate_json(text)).unwrap_or_default();
        assert!(out["ok"].is_boolean(), "{text:?} -> {out}");
        if out["ok"] == false {
            assert!(
                out["problems"].as_array().is_some_and(|p| !p.is_empty()),
                "{text:?}"
            );
        }
        let tests: serde_json::Value =
            serde_json::from_str(&crate::run_tests_json(text)).unwrap_or_default();
        assert!(tests["ok"].is_boolean(), "{text:?} -> {tests}");
    }
    // A huge path and header are just a request.
    let mut ws = sample(
        Some(FRONTEND),
        "GET",
        &format!("/api/{}", "a".repeat(100_000)),
    );
    ws.request.headers = vec![Header {
        name: "x-big".into(),
        value: "v".repeat(1 << 20),
    }];
    assert_eq!(run(&ws).decision, "allow");
}
