#!/usr/bin/env python3
"""The Warden Workload API against the Python `spiffe` package (py-spiffe), from a
separate process: starts `warden serve` on a copy of examples/mesh (xDS and admin on
OS-chosen ports), then fetches an
X.509-SVID, waits for a rotation push, fetches/validates a JWT-SVID (remotely and offline
against the JWT bundle), and checks that a request without the security header is refused
with INVALID_ARGUMENT.

Usage: python tests/python/test_workload_api.py [path/to/warden]   (default target/debug/warden)
Exit 0 when every check passes.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from spiffe import JwtSvid, TrustDomain, WorkloadApiClient

ROOT = Path(__file__).resolve().parents[2]
BACKEND = "spiffe://example.org/ns/demo/sa/backend"


def start_warden(binary: Path, workdir: Path) -> "tuple[subprocess.Popen, Path]":
    cfg = workdir / "mesh"
    shutil.copytree(ROOT / "examples" / "mesh", cfg, ignore=shutil.ignore_patterns(".warden"))
    socket = workdir / "run" / "workload.sock"
    exe = os.path.realpath(sys.executable)
    (cfg / "workload-api.yaml").write_text(
        f"socket: {socket}\n"
        "x509_ttl: 1m\n"
        "renew_fraction: 0.05\n"  # re-mint after ~3 s
        "workloads:\n"
        "  - name: backend\n"
        f"    selectors: [\"unix:uid:{os.getuid()}\", \"unix:path:{exe}\"]\n"
    )
    yaml = cfg / "warden.yaml"
    text = yaml.read_text().replace("127.0.0.1:18000", "127.0.0.1:0").replace("127.0.0.1:18001", "127.0.0.1:0")
    yaml.write_text(text)
    env = dict(os.environ, WARDEN_LOG="warn")
    # `warden serve` checks the filter modules exist and are WebAssembly; no Envoy runs
    # here, so the Wasm header alone stands in (hidden: not a config file).
    module = cfg / ".warden_filter.wasm"
    module.write_bytes(b"\0asm\x01\0\0\0")
    proc = subprocess.Popen(
        [str(binary), "serve", "--config", str(cfg), "--filter-module", str(module),
         "--filter-module-extended", str(module)],
        env=env,
    )
    for _ in range(200):
        if socket.exists():
            return proc, socket
        if proc.poll() is not None:
            raise SystemExit(f"warden exited with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("socket never appeared")


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")
    if not ok:
        raise SystemExit(1)


def run_checks(socket: Path) -> None:
    # grpc-core sends the %-encoded socket path as `:authority` for an absolute
    # `unix:/path`, which the Rust h2 server rejects (PROTOCOL_ERROR; grpc/grpc#38142,
    # hyperium/h2#487). A relative socket path gives a valid authority, so connect from
    # the socket's directory.
    os.chdir(socket.parent)
    client = WorkloadApiClient(f"unix:{socket.name}", default_timeout=10)
    td = TrustDomain("example.org")

    svid = client.fetch_x509_svid()
    check("x509_svid_has_the_workload_id", str(svid.spiffe_id) == BACKEND, str(svid.spiffe_id))
    ctx = client.fetch_x509_context()
    check("x509_context_has_the_trust_bundle", ctx.x509_bundle_set.get_bundle_for_trust_domain(td) is not None)

    updates: list = []
    errors: list = []
    got_two = threading.Event()

    def on_update(c) -> None:
        updates.append(c.default_svid.leaf.serial_number)
        if len(updates) >= 2:
            got_two.set()

    handle = client.stream_x509_contexts(on_update, errors.append, retry_connect=False)
    got_two.wait(timeout=20)
    handle.cancel()
    check("x509_stream_pushes_a_rotated_svid", len(updates) >= 2 and updates[0] != updates[1], f"serials={updates} errors={errors}")

    jwt = client.fetch_jwt_svid(audience={"database"})
    check("jwt_svid_has_the_workload_id", str(jwt.spiffe_id) == BACKEND, str(jwt.spiffe_id))
    validated = client.validate_jwt_svid(jwt.token, "database")
    check("jwt_svid_validates_remotely", str(validated.spiffe_id) == BACKEND)
    try:
        client.validate_jwt_svid(jwt.token, "frontend")
        check("jwt_svid_with_wrong_audience_is_rejected", False)
    except Exception as err:  # py-spiffe raises ValidateJwtSvidError
        check("jwt_svid_with_wrong_audience_is_rejected", True, type(err).__name__)
    bundle = client.fetch_jwt_bundles().get_bundle_for_trust_domain(td)
    offline = JwtSvid.parse_and_validate(jwt.token, bundle, {"database"})
    check("jwt_svid_validates_offline_against_the_jwt_bundle", str(offline.spiffe_id) == BACKEND)
    client.close()

    with grpc.insecure_channel(f"unix:{socket.name}") as channel:
        call = channel.unary_unary("/SpiffeWorkloadAPI/FetchJWTSVID")
        try:
            call(b"", timeout=10)  # empty request, no `workload.spiffe.io` metadata
            check("request_without_security_header_is_refused", False)
        except grpc.RpcError as err:
            check("request_without_security_header_is_refused", err.code() == grpc.StatusCode.INVALID_ARGUMENT, str(err.code()))


def main() -> None:
    binary = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "debug" / "warden"
    with tempfile.TemporaryDirectory() as tmp:
        proc, socket = start_warden(binary, Path(tmp))
        try:
            run_checks(socket)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print("all Workload API checks passed")


if __name__ == "__main__":
    main()
