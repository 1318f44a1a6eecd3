"""Shared helpers of the browser tests: free ports, a `warden serve` on a config dir, the
`warden-mesh` harness process, headless Chromium (Debian's, driven by Playwright; nothing
is downloaded), artifacts. Every process started here is stopped by its PID."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "target" / "browser-artifacts"
CHROMIUM = os.environ.get("WARDEN_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 800}


def free_port():
    """A port below Linux's ephemeral range (an outgoing connection cannot take it)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in 20000..32000")


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_http(url, timeout=60.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            status, _ = http_get(url, timeout=2)
            if status == 200:
                return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def stop(proc, timeout=15.0):
    """SIGINT (so the process stops what it started), then SIGKILL, by PID."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def sample_config(dest, policy=None, data=None):
    """A copy of examples/mesh in `dest` (no CA state), optionally with another
    policies/authz.rego and a policies/data.json; server ports freshly picked."""
    src = ROOT / "examples" / "mesh"
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".warden"))
    if policy is not None:
        (dest / "policies" / "authz.rego").write_text(policy)
    if data is not None:
        (dest / "policies" / "data.json").write_text(json.dumps(data))
    yaml = (dest / "warden.yaml").read_text()
    yaml = yaml.replace("127.0.0.1:18000", f"127.0.0.1:{free_port()}")
    admin = free_port()
    yaml = yaml.replace("127.0.0.1:18001", f"127.0.0.1:{admin}")
    (dest / "warden.yaml").write_text(yaml)
    return admin


class Serve:
    """`warden serve --config DIR`; stopped on exit."""

    def __init__(self, warden, config, admin, log):
        self.admin = admin
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [str(warden), "serve", "--config", str(config)],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )

    def __enter__(self):
        try:
            wait_http(f"http://127.0.0.1:{self.admin}/readyz", timeout=60)
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        stop(self.proc)
        self.log.close()


class MeshProcess:
    """`warden-mesh` (tests/src/bin/warden-mesh.rs): real sidecars; stopped by closing
    its stdin, then by PID."""

    def __init__(self, binary, log):
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [str(binary)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log,
        )

    def __enter__(self):
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            raise RuntimeError(f"warden-mesh exited ({self.proc.returncode}); see {self.log.name}")
        self.info = json.loads(line)
        return self

    def __exit__(self, *exc):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except Exception:
            stop(self.proc)
        self.log.close()


def browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
