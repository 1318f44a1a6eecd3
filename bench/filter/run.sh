#!/usr/bin/env bash
# Filter benchmark: builds the Warden filter and the empty filter for wasm32-wasip1, then
# runs bench.py (no authz vs RBAC vs empty Wasm vs Warden) and prints a markdown table.
# Bounded: ~4 × (startup + 1 s warm-up + 2 × BENCH_SECONDS) ≈ 1–2 min. Needs `hey`.
# Env: BENCH_SECONDS (default 5), BENCH_RATE (default 1000), WARDEN_ENVOY.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p warden-filter --target wasm32-wasip1 --profile wasm
cargo build -q --offline --release --target wasm32-wasip1 \
  --manifest-path bench/filter/empty-filter/Cargo.toml --target-dir target/bench-empty
exec python3 bench/filter/bench.py \
  target/wasm32-wasip1/wasm/warden_filter.wasm \
  target/bench-empty/wasm32-wasip1/release/empty_filter.wasm
