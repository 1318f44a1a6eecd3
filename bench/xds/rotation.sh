#!/usr/bin/env bash
# Rotation benchmark (issue 5): N simulated Envoy ADS streams (default 1000) against
# `warden serve`; times (1) one SVID renewal round, from the server signing until every
# stream ACKed its new SVID, and (2) a forced CA rotation, from `prepare` until every
# stream ACKed the bundle with both CAs and from `activate` until every stream ACKed an
# SVID from the new CA; with the server's CPU time over each window (/proc/<pid>/stat).
# Release builds; everything on 127.0.0.1, stopped by PID. Usage: bench/xds/rotation.sh [N]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
n=${1:-1000}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((n + 1000)) ]; then
  echo "fd limit $(ulimit -n) is too low for $n streams; raise it (ulimit -n $((n + 1000)))" >&2
  exit 2
fi

cargo build --quiet --release -p warden -p warden-bench-xds
export WARDEN_BIN="$root/target/release/warden"

echo "### Rotation: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "SVID renewal round (svid_ttl 60s; signing times sampled every 20 ms from warden_svids_issued_total):"
echo
"$root/target/release/xds-bench" --streams "$n" --svid-rotation --header
echo
echo "Forced CA rotation through the admin endpoint (POST /ca/prepare, then /ca/activate, retried while refused):"
echo
"$root/target/release/xds-bench" --streams "$n" --ca-activation --header \
  || echo "(CA rotation not measured: the server refused or lacks /ca/* endpoints)"
