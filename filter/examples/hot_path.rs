//! Times the filter core's per-request path natively (input building, evaluation,
//! decision, action) on the sample mesh policy: `cargo run --release -p warden-filter
//! --example hot_path`. Compare with the in-Envoy cost from bench/filter/.

use std::time::Instant;

use warden_filter::{
    authorize, CompiledPolicy, DecisionIds, Peer, PluginConfig, PolicyModule, RequestAttributes,
};

fn main() -> anyhow::Result<()> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/mesh/policies/authz.rego"
    );
    let mut config = PluginConfig::new(vec![PolicyModule {
        name: "authz.rego".into(),
        source: std::fs::read_to_string(path)?,
    }]);
    config.destination_principal = "spiffe://example.org/ns/demo/sa/backend".into();
    let started = Instant::now();
    let policy = CompiledPolicy::compile(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "compile: {:?} (RVM program {} base64 chars, needs {:?})",
        started.elapsed(),
        policy.config().program.len(),
        policy.needs()
    );
    let headers: Vec<(String, String)> = [
        (":method", "GET"),
        (":path", "/api/items"),
        (":authority", "127.0.0.1:21080"),
        (":scheme", "https"),
        ("user-agent", "hey/0.0.1"),
        ("accept", "*/*"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "6c1f3a52-7d1e-4e1b-9d2a-1f0b8f0c2f6e"),
        ("x-envoy-expected-rq-timeout-ms", "15000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut ids = DecisionIds::new(1);
    let n = 20_000u32;
    let mut build = std::time::Duration::ZERO;
    let mut eval = std::time::Duration::ZERO;
    // Parsed once, as the filter does per connection (its peer cache).
    let peer = Peer::from_connection(true, Some("spiffe://example.org/ns/demo/sa/frontend"));
    let started = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        let request = RequestAttributes::from_headers(peer.clone(), headers.clone());
        let input = policy.input_for(&request);
        build += t0.elapsed();
        let t1 = Instant::now();
        let _ = policy.evaluate(input);
        eval += t1.elapsed();
        let verdict = authorize(&policy, &request, ids.next_id());
        assert!(verdict.decision.is_allow());
        let _ = verdict.action(&policy, &request);
    }
    let total = started.elapsed();
    println!(
        "per request: input {:.2} µs, evaluate {:.2} µs, full authorize loop {:.2} µs",
        build.as_secs_f64() * 1e6 / f64::from(n),
        eval.as_secs_f64() * 1e6 / f64::from(n),
        (total - build - eval).as_secs_f64() * 1e6 / f64::from(n)
    );
    // The same policy on regorus's interpreter (what `engine: interpreter` policies cost).
    let mut interpreted = policy.config().clone();
    interpreted.engine = warden_filter::PolicyEngine::Interpreter;
    interpreted.program.clear();
    let interpreter = CompiledPolicy::load(&interpreted).map_err(|e| anyhow::anyhow!("{e}"))?;
    let request = RequestAttributes::from_headers(peer, headers.clone());
    let input = policy.input_for(&request);
    let timed = |p: &CompiledPolicy| {
        let started = Instant::now();
        for _ in 0..n {
            let _ = p.evaluate(input.clone());
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    };
    println!(
        "evaluate only: RVM {:.2} µs, interpreter {:.2} µs",
        timed(&policy),
        timed(&interpreter)
    );
    Ok(())
}
