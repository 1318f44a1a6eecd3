#!/usr/bin/env python3
"""Side-by-side cost of authorization in a server Envoy (1 worker, mTLS).

Variants: no authz | native RBAC (principal rule) | Warden (native RBAC: the sample policy
compiled to RBAC by the control plane) | empty Wasm filter | Warden filter
(core and extended module) | with BENCH_BASELINE=DIR, the Warden core module of an earlier
checkout DIR (its target/wasm32-wasip1/wasm/warden_filter.wasm and target/debug/warden must
be built), so a change is measured before/after in one run.
For each: time from Envoy start to the first request served, server CPU per request
(utime+stime of the server Envoy from /proc/<pid>/stat around each load phase) and
client-observed p50/p99 at a fixed rate and at maximum rate.

Load path: hey (plain HTTP) -> client Envoy (mTLS origination with the frontend's
SVID) -> server Envoy (mTLS, SPIFFE validation, filter under test, direct response).
Only the server Envoy's CPU is counted. Certificates are generated at run time with the
openssl CLI in a temp dir. Everything binds 127.0.0.1; all processes are ours and are
stopped by PID. Usage: see run.sh.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
TICK = os.sysconf("SC_CLK_TCK")

FRONTEND = "spiffe://example.org/ns/demo/sa/frontend"
BACKEND = "spiffe://example.org/ns/demo/sa/backend"

SERVER_PORT, SERVER_ADMIN = 21443, 21901
CLIENT_PORT, CLIENT_ADMIN = 21080, 21902


def envoy_bin():
    if os.environ.get("WARDEN_ENVOY"):
        return os.environ["WARDEN_ENVOY"]
    local = os.path.join(ROOT, ".venv", "bin", "envoy")
    if os.path.exists(local):
        return local
    return shutil.which("envoy") or "/work/main/.venv/bin/envoy"


def sh(*args, cwd=None):
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(d):
    """CA + backend server SVID + frontend client SVID (EC P-256, URI SANs)."""
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/O=bench CA",
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
       "-addext", "subjectAltName=URI:spiffe://example.org", cwd=d)
    for name, uri in (("server", BACKEND), ("client", FRONTEND)):
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName=URI:{uri}\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n")
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/O={name}", cwd=d)
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
           "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=d)


def tls_context(d, kind):
    validator = {
        "name": "envoy.tls.cert_validator.spiffe",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig",
            "trust_domains": [{"name": "example.org", "trust_bundle": {"filename": f"{d}/ca.pem"}}],
        },
    }
    name = "server" if kind == "server" else "client"
    common = {
        "tls_certificates": [{"certificate_chain": {"filename": f"{d}/{name}.pem"},
                              "private_key": {"filename": f"{d}/{name}.key"}}],
        "validation_context": {"custom_validator_config": validator},
    }
    if kind == "server":
        # No TLS session resumption: on a resumed session Envoy does not re-validate the
        # peer certificate, so `connection.peer_certificate_valid` is false and the Warden
        # filter (rightly) sees no identity. Sidecar listeners must set the same.
        return {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": True, "common_tls_context": common,
                "disable_stateless_session_resumption": True,
                "disable_stateful_session_resumption": True}
    return {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": common}


def wasm_filter(path, configuration):
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "authz", "root_id": "authz",
                "vm_config": {"vm_id": "authz", "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": path}}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": configuration},
            },
        },
    }


def rbac_filter():
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "ALLOW", "policies": {"frontend": {
                "permissions": [{"any": True}],
                "principals": [{"authenticated": {"principal_name": {"exact": FRONTEND}}}],
            }}},
        },
    }


def warden_config(warden=None, root=ROOT):
    """What the control plane sends the backend's sidecar for the sample mesh (settings,
    Rego sources, compiled RVM program), from `warden policy config` of the checkout at
    `root` (its `warden` binary unless given)."""
    warden = warden or os.environ.get("WARDEN_BIN", os.path.join(ROOT, "target", "release", "warden"))
    out = subprocess.run([warden, "policy", "config", "--config", os.path.join(root, "examples", "mesh"),
                          "--workload", "backend"], check=True, capture_output=True, text=True).stdout
    config = json.loads(out)
    assert config["destination_principal"] == BACKEND, config["destination_principal"]
    return json.dumps(config)


def with_audit_records(config):
    """`config` with the filter's decision records for the audit trail turned on."""
    c = json.loads(config)
    c["audit_records"] = True
    return json.dumps(c)


def warden_rbac_filter(warden=None):
    """The RBAC filter config the control plane compiles the sample policy to for the
    backend (`warden policy config --rbac`): what a native-path sidecar gets over ECDS."""
    warden = warden or os.environ.get("WARDEN_BIN", os.path.join(ROOT, "target", "release", "warden"))
    out = subprocess.run([warden, "policy", "config", "--config", os.path.join(ROOT, "examples", "mesh"),
                          "--workload", "backend", "--rbac"], check=True, capture_output=True, text=True).stdout
    return {"name": "envoy.filters.http.rbac", "typed_config": json.loads(out)}


def hcm(stat, filters, route):
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat,
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]},
            "http_filters": filters + [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        },
    }


def server_bootstrap(d, filters):
    route = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": SERVER_ADMIN}}},
        "static_resources": {"listeners": [{
            "name": "inbound", "enable_reuse_port": False,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": SERVER_PORT}},
            "filter_chains": [{
                "filters": [hcm("inbound", filters, route)],
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls_context(d, "server")},
            }],
        }]},
    }


def client_bootstrap(d):
    route = {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": CLIENT_ADMIN}}},
        "static_resources": {
            "listeners": [{
                "name": "outbound", "enable_reuse_port": False,
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": CLIENT_PORT}},
                "filter_chains": [{"filters": [hcm("outbound", [], route)]}],
            }],
            "clusters": [{
                "name": "backend", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": SERVER_PORT}}}}]}]},
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls_context(d, "client")},
            }],
        },
    }


def start_envoy(d, name, bootstrap, base_id):
    path = os.path.join(d, f"{name}.json")
    with open(path, "w") as f:
        json.dump(bootstrap, f)
    log = open(os.path.join(d, f"{name}.log"), "w")
    return subprocess.Popen([envoy_bin(), "-c", path, "--concurrency", "1", "--base-id", str(base_id),
                             "-l", os.environ.get("BENCH_LOG", "warning"), "--disable-hot-restart"], stdout=log, stderr=log)


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get_status(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:
        return None


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def hey(args):
    out = subprocess.run(["hey"] + args + [f"http://127.0.0.1:{CLIENT_PORT}/api/items"],
                         capture_output=True, text=True, timeout=120).stdout
    lat = dict(re.findall(r"(\d+)% in ([\d.]+) secs", out))
    codes = dict((int(c), int(n)) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {"p50_ms": float(lat.get("50", "nan")) * 1000, "p99_ms": float(lat.get("99", "nan")) * 1000,
            "codes": codes, "rps": float(rps.group(1)) if rps else 0.0}


def phase(server, args):
    before = cpu_ticks(server.pid)
    result = hey(args)
    after = cpu_ticks(server.pid)
    n = sum(result["codes"].values())
    result["requests"] = n
    result["cpu_us_per_req"] = (after - before) / TICK * 1e6 / n if n else float("nan")
    return result


def run_variant(d, name, filters, seconds, rate):
    server = start_envoy(d, f"server-{name}", server_bootstrap(d, filters), 61)
    started = time.monotonic()
    ready = None
    try:
        deadline = started + 60
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"server Envoy for {name} exited; see {d}/server-{name}.log")
            if get_status(f"http://127.0.0.1:{CLIENT_PORT}/api/items", 0.5) == 200:
                ready = time.monotonic() - started
                break
            time.sleep(0.01)
        if ready is None:
            raise RuntimeError(f"{name}: no 200 within 60 s")
        # Warm-up: connections, and V8 finishing its compile work in background threads
        # (counted as server CPU if it overlaps the measured phases).
        hey(["-z", os.environ.get("BENCH_WARMUP", "5s"), "-c", "4"])
        fixed = phase(server, ["-z", f"{seconds}s", "-c", "10", "-q", str(rate // 10)])
        maxr = phase(server, ["-z", f"{seconds}s", "-c", "16"])
        return {"ready_s": ready, "fixed": fixed, "max": maxr}
    finally:
        stop(server)


def median_run(runs):
    """Per-field median over rounds (codes are summed, so no failure is hidden)."""
    def med(values):
        values = sorted(values)
        return values[len(values) // 2]
    out = {"ready_s": med([r["ready_s"] for r in runs])}
    for phase_name in ("fixed", "max"):
        phases = [r[phase_name] for r in runs]
        merged = {k: med([p[k] for p in phases]) for k in ("p50_ms", "p99_ms", "rps", "cpu_us_per_req")}
        codes = {}
        for p in phases:
            for c, n in p["codes"].items():
                codes[c] = codes.get(c, 0) + n
        merged["codes"] = codes
        out[phase_name] = merged
    return out


def main():
    seconds = int(os.environ.get("BENCH_SECONDS", "5"))
    rate = int(os.environ.get("BENCH_RATE", "1000"))
    warden_wasm = sys.argv[1]
    empty_wasm = sys.argv[2]
    extended_wasm = sys.argv[3] if len(sys.argv) > 3 else None
    d = tempfile.mkdtemp(prefix="warden-bench-")
    client = None
    try:
        make_certs(d)
        client = start_envoy(d, "client", client_bootstrap(d), 62)
        for _ in range(200):
            if get_status(f"http://127.0.0.1:{CLIENT_ADMIN}/ready") == 200:
                break
            time.sleep(0.05)
        variants = [
            ("no authz", []),
            ("RBAC (principal)", [rbac_filter()]),
            ("Warden (native RBAC)", [warden_rbac_filter()]),
            ("empty Wasm", [wasm_filter(empty_wasm, "")]),
            ("Warden", [wasm_filter(warden_wasm, warden_config())]),
            # The same with decision records for the audit trail (filter state per request).
            ("Warden + audit records", [wasm_filter(warden_wasm, with_audit_records(warden_config()))]),
        ]
        if extended_wasm:
            variants.append(("Warden extended", [wasm_filter(extended_wasm, warden_config())]))
        baseline = os.environ.get("BENCH_BASELINE")
        if baseline:  # an earlier checkout, built: before/after in the same run
            variants.append(("Warden baseline", [wasm_filter(
                os.path.join(baseline, "target", "wasm32-wasip1", "wasm", "warden_filter.wasm"),
                warden_config(os.path.join(baseline, "target", "debug", "warden"), baseline))]))
        only = [v.strip() for v in os.environ.get("BENCH_ONLY", "").split(",") if v.strip()]
        if only:  # e.g. BENCH_ONLY="empty Wasm,Warden"; the baseline always runs
            variants = [v for v in variants if v[0] == "no authz" or v[0] in only]
        rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
        runs = {name: [] for name, _ in variants}
        for round_no in range(rounds):  # interleaved, so drift hits every variant alike
            for name, filters in variants:
                runs[name].append(run_variant(d, name.replace(" ", "-").lower(), filters, seconds, rate))
                print(f"# round {round_no + 1}/{rounds} {name}: done", file=sys.stderr)
        results = {name: median_run(r) for name, r in runs.items()}
        base = results["no authz"]
        print(f"\nServer Envoy, 1 worker, mTLS; fixed rate {rate} rps and max rate (16 conns), {seconds} s each; "
              f"median of {rounds} interleaved rounds; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.\n")
        print("| variant | ready (s) | CPU µs/req @fixed | +µs | p50 / p99 ms @fixed | CPU µs/req @max | +µs | max rps | p50 / p99 ms @max | non-200 |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, r in results.items():
            f, m = r["fixed"], r["max"]
            bad = sum(n for c, n in list(f["codes"].items()) + list(m["codes"].items()) if c != 200)
            print(f"| {name} | {r['ready_s']:.2f} | {f['cpu_us_per_req']:.1f} | "
                  f"{f['cpu_us_per_req'] - base['fixed']['cpu_us_per_req']:+.1f} | "
                  f"{f['p50_ms']:.2f} / {f['p99_ms']:.2f} | {m['cpu_us_per_req']:.1f} | "
                  f"{m['cpu_us_per_req'] - base['max']['cpu_us_per_req']:+.1f} | {m['rps']:.0f} | "
                  f"{m['p50_ms']:.2f} / {m['p99_ms']:.2f} | {bad} |")
        print(f"\nWarden core module .wasm: {os.path.getsize(warden_wasm) / 1e6:.2f} MB; empty .wasm: "
              f"{os.path.getsize(empty_wasm) / 1e6:.2f} MB"
              + (f"; Warden extended module .wasm: {os.path.getsize(extended_wasm) / 1e6:.2f} MB" if extended_wasm else ""))
    finally:
        stop(client)
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {d}", file=sys.stderr)
        else:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
