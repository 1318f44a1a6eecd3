//! Bounded fuzzing with proptest (cargo-fuzz needs a nightly toolchain, which this
//! project does not use): request targets, header bytes, plugin configurations and
//! policy sources are generated at random and fed to the code that parses them; none
//! may panic, and a few invariants must hold. Each target also replays the committed
//! regression corpus in `tests/fuzz_corpus/` (one input per line, `\xNN` escapes for
//! raw bytes). `PROPTEST_CASES=100000 cargo test -p warden-filter --test fuzz` runs a
//! long campaign; CI runs 2,048 cases per target (about a second in all).

use proptest::prelude::*;
use warden_filter::input::url;
use warden_filter::{CompiledPolicy, InputNeeds, Peer, PluginConfig, RequestAttributes};

/// Lines of a corpus file, with `\xNN` turned into bytes.
fn corpus(name: &str) -> Vec<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with("#!"))
        .map(|line| {
            let mut out = Vec::new();
            let bytes = line.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i..].starts_with(b"\\x") && i + 4 <= bytes.len() {
                    if let Ok(b) = u8::from_str_radix(&line[i + 2..i + 4], 16) {
                        out.push(b);
                        i += 4;
                        continue;
                    }
                }
                out.push(bytes[i]);
                i += 1;
            }
            out
        })
        .collect()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check_target(target: &str) {
    // The per-request check and the full parse never disagree.
    assert_eq!(
        url::validate(target).is_ok(),
        url::parse(target).is_ok(),
        "{target:?}"
    );
    if let Ok((segments, query)) = url::parse(target) {
        assert!(!segments.is_empty(), "{target:?}");
        for (name, values) in &query {
            assert!(!values.is_empty(), "{target:?}: {name}");
        }
    }
    let _ = url::parse_query(target);
}

fn check_request(path: &[u8], headers: Vec<(String, Vec<u8>)>) {
    let mut all = vec![
        (":method".to_string(), b"GET".to_vec()),
        (":path".to_string(), path.to_vec()),
    ];
    all.extend(headers);
    let peer = Peer::from_connection(true, Some("spiffe://example.org/a"));
    let request = RequestAttributes::from_raw_headers(peer, all);
    let _ = request.check();
    let input = request.to_input("spiffe://example.org/b");
    // The input is always valid JSON text (Rego strings are UTF-8).
    let text = input.to_json_str().unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{e}"));
}

fn check_config(bytes: &[u8]) {
    if let Ok(config) = PluginConfig::from_json(bytes) {
        let _ = CompiledPolicy::load(&config);
    }
}

fn check_policy(source: &str) {
    let needs = InputNeeds::scan([source]);
    let _ = warden_filter::body_references(source);
    let _ = warden_filter::call_sites(source, "walk");
    // A policy that needs nothing cannot mention a request group by name.
    if needs == InputNeeds::NONE && !source.contains(['#', '"', '`']) {
        assert!(
            !source.contains("input.attributes.request.http.headers"),
            "{source}"
        );
    }
}

#[test]
fn the_regression_corpus_runs_clean() {
    for target in corpus("targets.txt") {
        check_target(&lossy(&target));
        check_request(&target, vec![]);
    }
    for value in corpus("header_values.txt") {
        check_request(b"/", vec![("x-a".into(), value)]);
    }
    for config in corpus("configs.txt") {
        check_config(&config);
    }
    for policy in corpus("policies.txt") {
        check_policy(&lossy(&policy));
    }
}

fn target_strategy() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/", "//", "..", ".", "%", "%2F", "%2e", "%zz", "%c0%a7", "?", "&", "=", ";", "#", "+",
        "a", "admin", "@", ":", "[", "]", "\u{7f}", "\t", "é", "%25",
    ]);
    prop::collection::vec(piece, 0..16).prop_map(|p| p.concat())
}

/// `PROPTEST_CASES` when set (a long campaign), else the bounded CI count.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2048), ..ProptestConfig::default() })]

    #[test]
    fn request_targets_never_panic(target in target_strategy()) {
        check_target(&target);
        check_request(target.as_bytes(), vec![]);
    }

    #[test]
    fn arbitrary_target_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        check_target(&lossy(&bytes));
        check_request(&bytes, vec![]);
    }

    #[test]
    fn header_bytes_never_panic(
        headers in prop::collection::vec(("[a-z:-]{0,8}", prop::collection::vec(any::<u8>(), 0..24)), 0..8),
    ) {
        check_request(b"/x?y=1", headers);
    }

    #[test]
    fn plugin_configurations_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        check_config(&bytes);
    }

    #[test]
    fn plugin_configuration_fields_never_panic(
        needs in "\\{(\"[a-z_]{1,12}\": (true|false|1|null),? ?){0,4}\\}",
        program in "[A-Za-z0-9+/=]{0,24}",
        status in 0u32..70000,
    ) {
        let json = format!(
            r#"{{"modules": [], "program": "{program}", "deny_status": {status}, "input_needs": {needs}}}"#
        );
        check_config(json.as_bytes());
    }

    #[test]
    fn policy_sources_never_panic(source in "(input|\\.|\\[|\\]|\"[a-z]{0,6}\"|`x`|#|\n|headers|attributes|request|http|with|import|as|some|in|walk|\\(|\\)| ){0,24}") {
        check_policy(&source);
    }
}
