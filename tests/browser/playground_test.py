"""Browser test 2: the policy playground (the warden-filter core compiled to WebAssembly)
decides as `warden policy eval` on the same input.

A `warden serve` runs a copy of examples/mesh; the page loads its live policy, then each
case sets the policy and data (sample, headers, parsed_path / parsed_query, data
documents, object results) and the request (source, destination, method, path, host,
headers) through the form and clicks Evaluate. The decision, the deny reason (which
names the policy version, so module names, sources and data must hash alike) and the
filter's status must equal the CLI's `--json` answer on a config directory holding the
same files. Then a syntax error must be shown at the line `warden validate` reports, and
"Run tests" must count what `warden policy test` counts."""

import json
import re
import subprocess
import tempfile
from pathlib import Path

from common import ARTIFACTS, VIEWPORT, Serve, browser, sample_config

FRONTEND = "spiffe://example.org/ns/demo/sa/frontend"
BACKEND = "spiffe://example.org/ns/demo/sa/backend"
DATABASE = "spiffe://example.org/ns/demo/sa/database"

HEADERS = """package envoy.authz

import rego.v1

default allow := false

allow if {
	input.attributes.request.http.headers["x-team"] == "blue"
	input.attributes.request.http.host == "backend.internal"
}

allow if {
	input.attributes.request.http.headers["x-debug"] == "1"
	input.attributes.source.principal == "spiffe://example.org/ns/demo/sa/frontend"
}
"""

PATHS = """package envoy.authz

import rego.v1

default allow := false

allow if {
	input.parsed_path[0] == "v1"
	input.parsed_path[1] == "users"
	count(input.parsed_path) == 3
	input.parsed_path[2] != "admin"
}

allow if input.parsed_query.preview[0] == "yes"
"""

DATA = """package envoy.authz

import rego.v1

default allow := false

allow if {
	some method in data.acl[input.attributes.source.principal][input.attributes.destination.principal]
	method == input.attributes.request.http.method
}
"""
ACL = {"acl": {FRONTEND: {BACKEND: ["GET"]}, BACKEND: {DATABASE: ["GET", "POST"]}}}

OBJECT = """package envoy.authz

import rego.v1

default allow := {"allowed": false, "http_status": 451, "body": "unavailable\\n"}

allow := {"allowed": true, "headers": {"x-checked": "yes"}} if {
	input.attributes.source.principal == "spiffe://example.org/ns/demo/sa/frontend"
}
"""

SAMPLE = None  # the live config's policy
VARIANTS = {"sample": (SAMPLE, None), "headers": (HEADERS, None), "paths": (PATHS, None),
            "data": (DATA, ACL), "object": (OBJECT, None)}


def case(variant, source, workload, method="GET", path="/", host=None, headers=()):
    return dict(variant=variant, source=source, workload=workload, method=method, path=path,
                host=host, headers=list(headers))


CASES = [
    case("sample", FRONTEND, "backend", "GET", "/api/items"),
    case("sample", FRONTEND, "backend", "DELETE", "/api/items"),
    case("sample", BACKEND, "database", "POST", "/query?q=1"),
    case("sample", FRONTEND, "database", "GET", "/query"),
    case("sample", None, "backend", "GET", "/healthz"),
    case("sample", DATABASE, "frontend", "GET", "/healthz"),
    case("sample", "spiffe://other.org/ns/x", "backend", "GET", "/healthz"),
    case("sample", FRONTEND, "backend", "GET", "/api/%zz"),
    case("sample", FRONTEND, "backend", "GET", "/api/items;x=1"),
    case("sample", FRONTEND, "backend", "HEAD", "/api/"),
    case("headers", FRONTEND, "backend", host="backend.internal", headers=[("x-team", "blue")]),
    case("headers", FRONTEND, "backend", host="backend.internal", headers=[("X-Team", "blue")]),
    case("headers", FRONTEND, "backend", host="backend.internal"),
    case("headers", FRONTEND, "backend", headers=[("x-team", "blue")]),
    case("headers", FRONTEND, "backend", headers=[("x-debug", "1")]),
    case("headers", None, "backend", headers=[("x-debug", "1"), ("x-spiffe-id", FRONTEND)]),
    case("paths", None, "backend", path="/v1/users/42"),
    case("paths", None, "backend", path="/v1/users/admin"),
    case("paths", None, "backend", path="/v1/users/a%2Fb"),
    case("paths", None, "backend", path="/v1/users/42/x"),
    case("paths", None, "backend", path="/docs?preview=yes"),
    case("paths", None, "backend", path="/docs?preview=yes;x=1"),
    case("data", FRONTEND, "backend", "GET", "/"),
    case("data", FRONTEND, "backend", "POST", "/"),
    case("data", BACKEND, "database", "POST", "/query"),
    case("data", None, "backend", "GET", "/"),
    case("object", FRONTEND, "backend"),
    case("object", BACKEND, "backend"),
]


def cli_eval(warden, config, c):
    args = [str(warden), "policy", "eval", "--json", "--config", str(config),
            "--workload", c["workload"], "--method", c["method"], "--path", c["path"]]
    if c["source"]:
        args += ["--source", c["source"]]
    if c["host"]:
        args += ["--host", c["host"]]
    for name, value in c["headers"]:
        args += ["--header", f"{name}={value}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if out.returncode not in (0, 1):
        raise AssertionError(f"warden policy eval failed ({out.returncode}): {out.stderr}")
    return json.loads(out.stdout)


def set_policy(page, source, data):
    page.select_option("#file-select", label="policies/authz.rego")
    page.fill("#module-source", source)
    page.fill("#data-source", json.dumps(data if data is not None else {}))


def browser_eval(page, c):
    page.fill("#req-source", c["source"] or "")
    page.select_option("#req-workload", c["workload"])
    page.fill("#req-method", c["method"])
    page.fill("#req-path", c["path"])
    page.fill("#req-host", c["host"] or "")
    page.fill("#req-headers", "\n".join(f"{n}: {v}" for n, v in c["headers"]))
    page.click("#evaluate")
    return page.evaluate("window.lastResult")


def run(warden, check):
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="warden-playground-") as tmp:
        tmp = Path(tmp)
        admin = sample_config(tmp / "live")
        sample_source = (tmp / "live" / "policies" / "authz.rego").read_text()
        configs = {"sample": tmp / "live"}
        for name, (policy, data) in VARIANTS.items():
            if policy is not None:
                sample_config(tmp / name, policy, data)
                configs[name] = tmp / name
        with Serve(warden, tmp / "live", admin, ARTIFACTS / "playground-serve.log"), \
                sync_playwright() as p:
            b = browser(p)
            page = b.new_page(viewport=VIEWPORT)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{admin}/ui/playground")
            page.wait_for_selector("body[data-ready='true'][data-live='true']", timeout=60000)
            print(f"  playground module fetched and instantiated in {page.get_attribute('body', 'data-engine-ms')} ms", flush=True)

            current = None
            for i, c in enumerate(CASES, 1):
                if c["variant"] != current:
                    policy, data = VARIANTS[c["variant"]]
                    set_policy(page, policy or sample_source, data)
                    current = c["variant"]
                want = cli_eval(warden, configs[c["variant"]], c)
                got = browser_eval(page, c)
                label = f"case {i} ({c['variant']} {c['source']} {c['method']} {c['path']} -> {c['workload']})"
                check(got and got.get("ok"), f"{label}: the page refused it: {got}")
                if not (got and got.get("ok")):
                    continue
                for key in ("decision", "reason", "status", "filter_action", "policy_version"):
                    check(got[key] == want[key], f"{label}: {key}: page {got[key]!r} != CLI {want[key]!r}")
                check(got["input"] == want["input"], f"{label}: input differs:\npage {got['input']}\ncli  {want['input']}")
            page.screenshot(path=str(ARTIFACTS / "playground-decision.png"))

            # A syntax error: shown at the line `warden validate` reports.
            broken = sample_source.replace('frontend := "spiffe://example.org/ns/demo/sa/frontend"',
                                           'frontend := "spiffe://example.org/ns/demo/sa/frontend" +')
            check(broken != sample_source, "the sample policy changed; update the broken line")
            (configs["sample"] / "policies" / "authz.rego").write_text(broken)
            validate = subprocess.run([str(warden), "validate", str(configs["sample"])],
                                      capture_output=True, text=True, timeout=60)
            m = re.search(r"policies/authz\.rego:(\d+):(\d+)", validate.stdout + validate.stderr)
            check(validate.returncode == 1 and m is not None, f"warden validate: {validate.stdout}{validate.stderr}")
            (configs["sample"] / "policies" / "authz.rego").write_text(sample_source)
            set_policy(page, broken, None)
            page.click("#evaluate")
            problem = page.locator("#problems li.problem").first
            problem.wait_for(timeout=10000)
            text = problem.inner_text()
            check(m and text.startswith(f"policies/authz.rego:{m.group(1)}:"),
                  f"syntax error shown as {text!r}, warden validate says line {m and m.group(1)}")
            check(problem.get_attribute("data-line") == (m and m.group(1)), "the problem's line attribute")
            page.screenshot(path=str(ARTIFACTS / "playground-syntax-error.png"))

            # The live tests: the same count as `warden policy test`.
            page.click("#load-live")
            page.wait_for_function("document.querySelector('#module-source').value.includes('default allow')")
            page.click("#run-tests")
            summary = page.locator("#tests-summary").inner_text()
            cli = subprocess.run([str(warden), "policy", "test", str(configs["sample"])],
                                 capture_output=True, text=True, timeout=60)
            m = re.search(r"^PASS: (\d+/\d+)$", cli.stdout, re.M)
            check(m and summary.startswith(f"PASS: {m.group(1)}"), f"tests: page {summary!r}, CLI {cli.stdout[-200:]!r}")
            page.screenshot(path=str(ARTIFACTS / "playground-tests.png"))
            check(not errors, f"page errors: {errors}")
            b.close()
    return len(CASES)
