#!/usr/bin/env bash
# xDS load benchmark (issue 3): N simulated Envoy ADS streams against `warden serve`,
# one distinct node each; prints a markdown table. Usage: bench/xds/run.sh [N ...]
# (default: 1000 10000), then the largest N as N/10 workloads × 10 instances. Release builds; everything runs on 127.0.0.1 and stops by PID.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)

# Each stream is one TCP connection: the client and the server each need an fd per stream.
max=0
for n in "${sizes[@]}"; do [ "$n" -gt "$max" ] && max=$n; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((max + 1000)) ]; then
  echo "fd limit $(ulimit -n) is too low for $max streams; raise it (ulimit -n $((max + 1000)))" >&2
  exit 2
fi

cargo build --quiet --release -p warden -p warden-bench-xds
export WARDEN_BIN="$root/target/release/warden"

echo "### xDS load: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%dT%H:%MZ)"
echo
header=--header
for n in "${sizes[@]}"; do
  "$root/target/release/xds-bench" --streams "$n" $header
  header=
done
# The same stream count as workload instances: N/10 workloads × 10 instances each.
"$root/target/release/xds-bench" --streams "$max" --instances 10
echo
echo "RSS per stream = (server VmRSS with all streams in sync - VmRSS before) / streams."
echo "Push = policy change + SIGHUP until every stream ACKed the new config (client clock)."
