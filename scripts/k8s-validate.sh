#!/usr/bin/env bash
# Offline checks of everything Warden ships for Kubernetes (no cluster needed):
#   - every manifest in deploy/ and examples/kubernetes/, the kustomize renderings, and
#     `warden inject`'s output for the sample apps, validated with kubernetes-validate
#     (installed into .venv by ./dev) in strict mode against Kubernetes 1.30 (and the
#     newest schemas it has), rejecting unknown fields;
#   - the injected output equals the committed golden files (injecting it again too).
# `kubectl kustomize` renders the bases when kubectl is on PATH; without it that step
# is skipped (said so), the other checks still run.
# Usage: scripts/k8s-validate.sh [path/to/warden]
set -euo pipefail
cd "$(dirname "$0")/.."
warden="${1:-target/debug/warden}"
versions=(1.30.0 1.37.0)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

validate() {
    for v in "${versions[@]}"; do
        kubernetes-validate --strict --quiet -k "$v" "$@"
    done
}

# The config the sample's control plane reads, with the files a cluster supplies made up
# here (a throwaway upstream CA, an operator token, an empty JWKS).
cp -r examples/kubernetes/config "$tmp/config"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=k8s-validate upstream" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$tmp/config/upstream-ca.key" -out "$tmp/config/upstream-ca.crt" 2>/dev/null
head -c 32 /dev/urandom | base64 >"$tmp/config/admin-token"
echo '{"keys":[]}' >"$tmp/config/jwks.json"
"$warden" validate "$tmp/config" >/dev/null

for app in frontend backend database; do
    "$warden" inject --config "$tmp/config" -f "examples/kubernetes/$app.yaml" >"$tmp/$app.yaml"
    cmp -s "$tmp/$app.yaml" "examples/kubernetes/injected/$app.yaml" || {
        echo "k8s-validate: warden inject output for $app differs from examples/kubernetes/injected/$app.yaml" >&2
        diff -u "examples/kubernetes/injected/$app.yaml" "$tmp/$app.yaml" | head -40 >&2
        exit 1
    }
    "$warden" inject --config "$tmp/config" -f "$tmp/$app.yaml" | cmp -s - "$tmp/$app.yaml" || {
        echo "k8s-validate: injecting $app twice changed it" >&2
        exit 1
    }
done

manifests=(deploy/base/[!k]*.yaml examples/kubernetes/{frontend,backend,database}.yaml
    examples/kubernetes/injected/*.yaml "$tmp"/{frontend,backend,database}.yaml)
if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize deploy/base >"$tmp/base.yaml"
    kubectl kustomize examples/kubernetes >"$tmp/install.yaml"
    manifests+=("$tmp/base.yaml" "$tmp/install.yaml")
else
    echo "k8s-validate: no kubectl on PATH: kustomize rendering skipped" >&2
fi
validate "${manifests[@]}"
echo "k8s-validate: ${#manifests[@]} files valid (strict) against Kubernetes ${versions[*]}"
