#!/usr/bin/env bash
# Filter benchmark: builds the Warden filter and the empty filter for wasm32-wasip1, then
# runs bench.py (no authz vs RBAC vs empty Wasm vs Warden, with and without decision records
# for the audit trail) and prints a markdown table.
# Bounded: BENCH_ROUNDS (default 3) × 5 variants × (startup + 5 s warm-up + 2 × BENCH_SECONDS)
# ≈ 4–5 min; the table shows per-variant medians. Needs `hey`.
# Env: BENCH_SECONDS (default 5), BENCH_RATE (default 1000), BENCH_ROUNDS, WARDEN_ENVOY, BENCH_ONLY
# (comma-separated variant names; "no authz" always runs), BENCH_BASELINE (a built checkout of
# an earlier commit: adds "Warden baseline", its core module and its compiled sample policy).
set -euo pipefail
cd "$(dirname "$0")/../.."
# The core module (what the sample policy is served) and the extended one (regex, glob,
# net, ... builtins), both run with the same policy for the size/readiness/CPU rows.
cargo build -q -p warden-filter --target wasm32-wasip1 --profile wasm --no-default-features
cargo build -q -p warden-filter --target wasm32-wasip1 --profile wasm-extended
# `warden policy config` compiles the sample policy into the filter configuration.
cargo build -q --release -p warden
cargo build -q --offline --release --target wasm32-wasip1 \
  --manifest-path bench/filter/empty-filter/Cargo.toml --target-dir target/bench-empty
exec python3 bench/filter/bench.py \
  target/wasm32-wasip1/wasm/warden_filter.wasm \
  target/bench-empty/wasm32-wasip1/release/empty_filter.wasm \
  target/wasm32-wasip1/wasm-extended/warden_filter.wasm
