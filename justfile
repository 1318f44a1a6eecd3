# Warden tasks. Run them through ./dev (it installs Envoy, just and the wasm target first):
#   ./dev test | ./dev demo | ./dev bench
set shell := ["bash", "-euo", "pipefail", "-c"]

wasm := "target/wasm32-wasip1/wasm/warden_filter.wasm"
wasm_extended := "target/wasm32-wasip1/wasm-extended/warden_filter.wasm"

# List recipes.
default:
    @just --list

# The policy playground's browser module (playground/pkg/, embedded by `warden` for
# /ui/playground), then the warden CLI and the Envoy filter modules: core (core Rego
# builtins, served to most policies) and extended (also regex, glob, net, ... builtins).
# Build the playground module, the warden CLI and both filter modules.
build:
    scripts/playground.sh
    cargo build -p warden
    cargo build -p warden-filter --target wasm32-wasip1 --profile wasm --no-default-features
    cargo build -p warden-filter --target wasm32-wasip1 --profile wasm-extended
    @ls -l {{wasm}} {{wasm_extended}} | awk '{print "filter module: " $NF " (" $5 " bytes)"}'

# The whole test suite: lint, unit + property + end-to-end tests (real Envoy), policy tests.
test: build lint
    cargo test --workspace
    # The authorization scenarios again with every workload forced onto the Wasm filter
    # (the run above puts the sample policies on Envoy's RBAC filter where they compile).
    WARDEN_NATIVE_RBAC=off cargo test -p warden-e2e --test authz
    ./target/debug/warden validate examples/mesh
    # Kubernetes manifests and `warden inject` output, strict, offline (about 5 s).
    scripts/k8s-validate.sh target/debug/warden
    ./target/debug/warden policy test examples/mesh
    WARDEN_BIN=target/debug/warden python filter/tests/opa_differential.py
    python filter/tests/opa_generated.py --policies 3000 --seconds 120
    python tests/python/test_workload_api.py target/debug/warden
    python tests/browser/run.py target/debug/warden

# Clippy for the playground's wasm32-unknown-unknown build (its wasm-bindgen entry points).
lint-playground:
    cargo clippy -p warden-playground --target wasm32-unknown-unknown -- -D warnings

# The browser tests alone, in headless Debian Chromium via Playwright (./dev installs
# both): the dashboard of a harness mesh, and 28 playground cases against `warden policy eval`.
test-browser: build
    cargo build -p warden-e2e --bin warden-mesh
    python tests/browser/run.py target/debug/warden

# Formatting and clippy (native and wasm32-wasip1), warnings are errors.
lint:
    python3 scripts/import_cycles.py --self-test
    python3 scripts/import_cycles.py
    python3 scripts/size_limits.py
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p warden-filter --target wasm32-wasip1 -- -D warnings
    cargo clippy -p warden-filter --target wasm32-wasip1 --no-default-features -- -D warnings
    cargo clippy -p warden-spiffe --target wasm32-wasip1 -- -D warnings
    # Licences, duplicate versions (warned), sources; advisories need GitHub (deny.toml).
    cargo deny check bans licenses sources

# Run the demo mesh on 127.0.0.1 (Ctrl-C to stop; `--once` runs the tour and exits).
demo *ARGS: build
    cargo run -q -p warden-e2e --bin warden-demo -- {{ARGS}}

# Every benchmark (mint, xDS streams, filter overhead); writes bench-results/report.md.
bench: build
    command -v hey >/dev/null || (apt-get update -qq && apt-get install -y -qq hey)
    cargo build --release -p warden
    scripts/bench.sh
    python filter/tests/opa_generated.py --policies 20000 --seconds 1200 --seed 2323

# Offline Kubernetes checks: install manifests, kustomize renderings and `warden inject`
# output for examples/kubernetes, strictly against Kubernetes 1.30 and 1.37 schemas.
k8s-validate:
    cargo build -p warden
    scripts/k8s-validate.sh target/debug/warden
