//! Property test of the input analysis: for generated policies (reading the request in
//! every way Rego allows: literal keys, computed keys, whole objects as values, imports,
//! iteration) and generated requests, the lean input the filter builds gives exactly the
//! decision the full input gives; and when a policy is marked cacheable, requests that
//! share peer, method and path get the same decision. `PROPTEST_CASES` raises the count
//! (default 48 policies × 12 requests, a few seconds).

use proptest::prelude::*;
use warden_filter::{CompiledPolicy, Peer, PluginConfig, PolicyModule, RequestAttributes, Value};

const DESTINATION: &str = "spiffe://example.org/ns/demo/sa/backend";

/// Conditions (one line each; `;`-separated statements allowed) and helper rules some
/// of them use.
const CONDITIONS: &[&str] = &[
    "input.attributes.request.http.headers[\"x-a\"] == \"1\"",
    "not input.attributes.request.http.headers[\"x-blocked\"]",
    "input.attributes.request.http.host == \"backend\"",
    "input.attributes.request.http.scheme == \"https\"",
    "input.attributes.request.http.method == \"GET\"",
    "startswith(input.attributes.request.http.path, \"/api\")",
    "input.parsed_path[0] == \"api\"",
    "input.parsed_query.q[0] == \"1\"",
    "input.source_principal == \"spiffe://example.org/a\"",
    "input.attributes.source.principal == \"spiffe://example.org/a\"",
    "input.attributes.destination.principal == \"spiffe://example.org/ns/demo/sa/backend\"",
    "not input.attributes.request.http[k][\"x-blocked\"]",
    "input.attributes.request.http[h][\"x-a\"] == \"1\"",
    "not contains(json.marshal(input.attributes.request.http), \"evil\")",
    "some name, _ in input.attributes.request.http.headers; name == \"x-evil\"",
    "some key, _ in input.attributes.request.http; key == \"host\"",
    "count(input.attributes.request.http) > 3",
    "object.get(input, [\"attributes\", \"request\", \"http\", \"headers\", \"x-a\"], \"\") == \"1\"",
    "r := input.attributes.request; r.http.host == \"backend\"",
    "hdrs[\"x-a\"] == \"1\"",
    "whole.attributes.request.http.scheme == \"http\"",
    "input.attributes.request.http.id == \"abc\"",
    "input.attributes.request.time != \"\"",
    "input.attributes.source.address.socketAddress.portValue > 4000",
    "input.version.ext_authz == \"v3\"",
    "not input.parsed_body.admin",
    "f(input.attributes.request.http)",
    "walk_free(input.attributes)",
];

const HELPERS: &str = r#"
k := concat("", ["head", "ers"])
h := "headers"
f(http) if http.host == "backend"
walk_free(a) if count(a.request.http.headers) > 1
"#;

fn policy(rules: &[Vec<usize>], imports: bool) -> String {
    let mut text = String::from("package envoy.authz\n\nimport rego.v1\n");
    if imports {
        text.push_str(
            "import input.attributes.request.http.headers as hdrs\nimport input as whole\n",
        );
    } else {
        text.push_str("hdrs := input.attributes.request.http.headers\nwhole := {\"attributes\": {\"request\": {\"http\": {\"scheme\": \"x\"}}}}\n");
    }
    text.push_str(HELPERS);
    text.push_str("\ndefault allow := false\n");
    for rule in rules {
        text.push_str("\nallow if {\n");
        for &i in rule {
            for statement in CONDITIONS[i % CONDITIONS.len()].split("; ") {
                text.push_str(&format!("\t{statement}\n"));
            }
        }
        text.push_str("}\n");
    }
    text
}

#[derive(Debug, Clone)]
struct Req {
    verified: bool,
    method: &'static str,
    path: &'static str,
    host: &'static str,
    scheme: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    port: u16,
}

fn request_strategy() -> impl Strategy<Value = Req> {
    let header = prop::sample::select(vec![
        ("x-a", "1"),
        ("x-a", "2"),
        ("x-blocked", "1"),
        ("x-evil", "y"),
        ("x-note", "evil"),
        ("x-request-id", "abc"),
    ]);
    (
        any::<bool>(),
        prop::sample::select(vec!["GET", "POST"]),
        prop::sample::select(vec![
            "/api/items",
            "/api/x?q=1",
            "/other?q=2&q=1",
            "/",
            "/api",
        ]),
        prop::sample::select(vec!["backend", "other"]),
        prop::sample::select(vec!["https", "http"]),
        prop::collection::vec(header, 0..4),
        prop::sample::select(vec![3000u16, 5000]),
    )
        .prop_map(
            |(verified, method, path, host, scheme, headers, port)| Req {
                verified,
                method,
                path,
                host,
                scheme,
                headers,
                port,
            },
        )
}

fn attributes(req: &Req) -> RequestAttributes {
    let peer = Peer::from_connection(req.verified, Some("spiffe://example.org/a"));
    let mut headers = vec![
        (":method".to_string(), req.method.to_string()),
        (":path".to_string(), req.path.to_string()),
        (":authority".to_string(), req.host.to_string()),
        (":scheme".to_string(), req.scheme.to_string()),
    ];
    headers.extend(
        req.headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let mut attributes = RequestAttributes::from_headers(peer, headers);
    attributes.source_address = Some(format!("127.0.0.1:{}", req.port));
    attributes.destination_address = Some("127.0.0.1:8443".into());
    attributes.time_micros = Some(1_700_000_000_000_000);
    attributes
}

fn compile(source: &str) -> Option<CompiledPolicy> {
    let mut config = PluginConfig::new(vec![PolicyModule {
        name: "authz.rego".into(),
        source: source.into(),
    }]);
    config.destination_principal = DESTINATION.into();
    CompiledPolicy::compile(&config).ok()
}

fn decide(policy: &CompiledPolicy, input: Value) -> String {
    format!("{:?}", policy.evaluate(input).map_err(|e| e.to_string()))
}

/// `PROPTEST_CASES` when set (a long campaign), else the bounded CI count.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn the_lean_input_and_the_full_input_always_give_the_same_decision(
        rules in prop::collection::vec(prop::collection::vec(0..CONDITIONS.len(), 1..4), 1..4),
        imports in any::<bool>(),
        requests in prop::collection::vec(request_strategy(), 12),
    ) {
        let source = policy(&rules, imports);
        let Some(policy) = compile(&source) else {
            // Not every combination is valid Rego; the analysis is only for policies
            // that compile.
            return Ok(());
        };
        let mut first_by_key: Vec<(String, String)> = Vec::new();
        for req in &requests {
            let attributes = attributes(req);
            let lean = decide(&policy, policy.input_for(&attributes));
            let full = decide(&policy, attributes.to_input(DESTINATION));
            prop_assert_eq!(&lean, &full, "policy:\n{}\nrequest: {:?}\nneeds: {:?}", source, req, policy.needs());
            if policy.decisions_cacheable() {
                let key = format!("{}|{}|{}", req.verified, req.method, req.path);
                match first_by_key.iter().find(|(k, _)| *k == key) {
                    Some((_, earlier)) => prop_assert_eq!(earlier, &full, "cached decision would be wrong:\n{}", source),
                    None => first_by_key.push((key, full)),
                }
            }
        }
    }
}

/// The policies of the issue's finding 3: a computed key, `json.marshal` of an object
/// above the headers, iteration over it. Each must see the headers.
#[test]
fn headers_reached_without_spelling_headers_are_given_to_the_policy() {
    let blocked = Req {
        verified: true,
        method: "GET",
        path: "/api/items",
        host: "backend",
        scheme: "https",
        headers: vec![("x-blocked", "1"), ("x-note", "evil")],
        port: 3000,
    };
    for condition in [
        "not input.attributes.request.http[k][\"x-blocked\"]",
        "not contains(json.marshal(input.attributes.request.http), \"evil\")",
        "not bad\n}\nbad if {\n\tsome x in input.attributes.request.http\n\tcontains(json.marshal(x), \"evil\")",
    ] {
        let source = format!(
            "package envoy.authz\nimport rego.v1\nk := concat(\"\", [\"head\", \"ers\"])\ndefault allow := false\nallow if {{\n\tinput.attributes.source.principal == \"spiffe://example.org/a\"\n\t{condition}\n}}\n"
        );
        let policy = compile(&source).unwrap_or_else(|| panic!("compiles:\n{source}"));
        let attributes = attributes(&blocked);
        assert_eq!(
            decide(&policy, policy.input_for(&attributes)),
            "Ok(Bool(false))",
            "{source}"
        );
        assert!(!policy.decisions_cacheable(), "{source}");
    }
}
