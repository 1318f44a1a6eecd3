#!/usr/bin/env bash
# Runs every Warden benchmark and writes one markdown report (bench-results/report.md)
# with the machine it ran on. Each benchmark compares against its baseline in the same
# run, because shared machines drift. Bounded: each part stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-results
mkdir -p "$out"
report="$out/report.md"
{
    echo "# Warden benchmark report"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(nproc) cores)"
    echo "- memory: $(free -g | awk '/Mem:/ {print $2}') GiB; kernel $(uname -r)"
    echo "- envoy: $(${WARDEN_ENVOY:-envoy} --version 2>/dev/null | grep -o '1\.[0-9]*\.[0-9]*' | head -1)"
    echo
} > "$report"

section() {
    echo "## $1" >> "$report"
    echo >> "$report"
}

section "SVID minting (CA sign + fresh P-256 leaf key)"
cargo bench -q -p warden --bench mint 2>/dev/null | grep '^|' >> "$report"
echo >> "$report"

section "Audit trail: control-plane ingest (access-log entries to SQLite)"
cargo bench -q -p warden --bench audit_ingest 2>/dev/null | grep '^|' >> "$report"
echo >> "$report"

if [ -x bench/xds/run.sh ]; then
    section "xDS: simulated Envoy ADS streams"
    bench/xds/run.sh | tee -a "$report"
    echo >> "$report"
fi

if [ -x bench/xds/rotation.sh ]; then
    section "Rotation: SVID renewal and forced CA rotation over 1,000 ADS streams"
    bench/xds/rotation.sh 1000 | tee -a "$report"
    echo >> "$report"
fi

if [ -x bench/filter/run.sh ]; then
    section "Authorization filter: server Envoy, mTLS, 1 worker"
    bench/filter/run.sh | tee -a "$report"
    echo >> "$report"
fi

cat "$report"
