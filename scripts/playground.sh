#!/usr/bin/env bash
# Builds the policy playground for browsers: the warden-playground crate (the
# warden-filter core) for wasm32-unknown-unknown, then its JS glue with wasm-bindgen-cli,
# into playground/pkg/, where `warden`'s build script embeds it (control-plane/build.rs).
#
# wasm-bindgen-cli must be exactly the version of the wasm-bindgen crate
# (playground/Cargo.toml pins it with `=`); it is installed once into .tools/ inside
# this checkout (a stamp names the version). Files in playground/pkg/ are replaced only
# when their content changes, so an unchanged module does not rebuild `warden`.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)"$/\1/p' playground/Cargo.toml)
[ -n "$version" ] || { echo "playground: no pinned wasm-bindgen version in playground/Cargo.toml" >&2; exit 2; }
tools="$PWD/.tools"
bindgen="$tools/bin/wasm-bindgen"
stamp="$tools/.wasm-bindgen-cli-$version"
if [ ! -f "$stamp" ] || [ ! -x "$bindgen" ]; then
    echo "playground: installing wasm-bindgen-cli $version into .tools (first run only)" >&2
    started=$(date +%s)
    cargo install --quiet --locked --root "$tools" --version "$version" wasm-bindgen-cli
    echo "playground: wasm-bindgen-cli installed in $(( $(date +%s) - started )) s" >&2
    touch "$stamp"
fi
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
