#!/usr/bin/env bash
# Builds the policy playground for browsers: the warden-playground crate (the
# warden-filter core) for wasm32-unknown-unknown, then its JS glue with wasm-bindgen-cli,
# into playground/pkg/, where `warden`'s build script embeds it (control-plane/build.rs).
#
# wasm-bindgen-cli must be exactly the version of the wasm-bindgen crate
# (playground/Cargo.toml pins it with `=`); .tools/bin/wasm-bindgen in this checkout (a
# stamp names the version) links to the per-machine build below. Files in playground/pkg/ are replaced only
# when their content changes, so an unchanged module does not rebuild `warden`.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)"$/\1/p' playground/Cargo.toml)
[ -n "$version" ] || { echo "playground: no pinned wasm-bindgen version in playground/Cargo.toml" >&2; exit 2; }
# Compiled once per machine (about 5 minutes on 2 cores) into a cache outside the checkout,
# so fresh clones (CI) reuse it; .tools/ in the checkout links to it.
cache="${WARDEN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/warden-tools}/wasm-bindgen-cli-$version"
tools="$PWD/.tools"
bindgen="$tools/bin/wasm-bindgen"
stamp="$tools/.wasm-bindgen-cli-$version"
if [ ! -f "$cache/.complete" ] || [ ! -x "$cache/bin/wasm-bindgen" ]; then
    echo "playground: installing wasm-bindgen-cli $version into $cache (once per machine)" >&2
    started=$(date +%s)
    # A build tool, not shipped: a quick build beats a fast binary.
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false \
        cargo install --quiet --locked --root "$cache" --version "$version" wasm-bindgen-cli
    echo "playground: wasm-bindgen-cli installed in $(( $(date +%s) - started )) s" >&2
    touch "$cache/.complete"
fi
if [ ! -f "$stamp" ] || [ ! -x "$bindgen" ]; then
    mkdir -p "$tools/bin"
    ln -sf "$cache/bin/wasm-bindgen" "$bindgen"
    touch "$stamp"
fi
[ "$("$bindgen" --version)" = "wasm-bindgen $version" ] || {
    echo "playground: $bindgen is not wasm-bindgen $version" >&2
    exit 2
}
if command -v rustup >/dev/null 2>&1; then
    rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
fi

cargo build -p warden-playground --target wasm32-unknown-unknown --profile wasm
wasm=target/wasm32-unknown-unknown/wasm/warden_playground.wasm
out=target/playground-bindgen
rm -rf "$out"
"$bindgen" --target web --no-typescript --out-dir "$out" "$wasm"
mkdir -p playground/pkg
for f in warden_playground.js warden_playground_bg.wasm; do
    if ! cmp -s "$out/$f" "playground/pkg/$f"; then
        cp "$out/$f" "playground/pkg/$f"
    fi
done
ls -l playground/pkg/warden_playground_bg.wasm playground/pkg/warden_playground.js \
    | awk '{print "playground module: " $NF " (" $5 " bytes)"}'
