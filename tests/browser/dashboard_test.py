"""Browser test 1: the dashboard of a running mesh (the e2e harness's, through
`warden-mesh`: real Envoy sidecars, real TLS). It must list every workload and every
sidecar with its xDS versions, show the CA's rotation phase, and show a denied call
appear (with its reason) after the test makes one through the frontend's sidecar.
Screenshots of every page are saved in target/browser-artifacts/."""

import json
import urllib.error
import urllib.request

from common import ARTIFACTS, VIEWPORT, MeshProcess, browser


def call(addr, method, path):
    req = urllib.request.Request(f"http://{addr}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def run(mesh_binary, check):
    from playwright.sync_api import sync_playwright

    with MeshProcess(mesh_binary, ARTIFACTS / "dashboard-mesh.log") as mesh, sync_playwright() as p:
        info = mesh.info
        url = f"http://{info['admin']}/ui/"
        b = browser(p)
        page = b.new_page(viewport=VIEWPORT)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("body[data-loaded='true']", timeout=30000)

        # Mesh: every workload, with its SPIFFE ID; the configured call edges.
        for name, w in info["workloads"].items():
            row = page.locator(f"#workloads tr[data-workload='{name}']")
            check(row.count() == 1, f"workload {name} listed")
            check(w["id"] in row.inner_text(), f"{name}'s SPIFFE ID shown")
        page.wait_for_selector("#edges tr[data-edge='frontend->backend']", timeout=15000)
        check(page.locator("#edges tr").count() >= 4, "call edges listed")

        # An allowed call, then a denied one; the deny must appear with its reason.
        front = info["workloads"]["frontend"]["outbound"]
        status, _ = call(front["backend"], "GET", "/api/items")
        check(status == 200, f"frontend GET /api/items -> backend: {status}")
        page.wait_for_timeout(2500)  # one poll with the baseline counters
        status, body = call(front["backend"], "DELETE", "/api/items")
        check(status == 403, f"frontend DELETE /api/items -> backend: {status} {body}")
        deny = page.locator(".deny-event[data-from='frontend'][data-to='backend']").first
        deny.wait_for(timeout=15000)
        reason = deny.inner_text()
        check("DENY" in reason and info["workloads"]["frontend"]["id"] in reason,
              f"the deny names the caller: {reason!r}")
        check("data.envoy.authz.allow" in reason, f"the deny names the rule: {reason!r}")
        edge = page.locator("#edges tr[data-edge='frontend->backend']").inner_text()
        check("1" in edge, f"edge counts: {edge!r}")
        page.screenshot(path=str(ARTIFACTS / "dashboard-mesh.png"))

        # Sidecars: every node connected, with versions sent and ACKed.
        page.goto(url + "#sidecars")
        for name in info["workloads"]:
            row = page.locator(f"#sidecars tr[data-workload='{name}']")
            row.wait_for(timeout=10000)
            text = row.inner_text()
            check("sotw" in text or "delta" in text, f"sidecar {name} connected: {text!r}")
        check(page.locator("#sidecars td.warn").count() == 0, "no sidecar is behind on config")
        page.screenshot(path=str(ARTIFACTS / "dashboard-sidecars.png"))

        # Identity: the CA's phase and what activation waits for; every SVID's expiry.
        page.goto(url + "#identity")
        phase = page.locator("#ca-phase")
        phase.wait_for(timeout=10000)
        check(phase.inner_text() == "current_only", f"CA phase {phase.inner_text()!r}")
        check(page.locator("#svids tr[data-svid]").count() == 3, "an SVID expiry per workload")
        page.screenshot(path=str(ARTIFACTS / "dashboard-identity.png"))

        # Config: the policy version the filter reports.
        page.goto(url + "#config")
        version = page.locator("td[data-key='policy version']").inner_text()
        check(len(version) == 12, f"policy version {version!r}")
        page.screenshot(path=str(ARTIFACTS / "dashboard-config.png"))

        page.goto(url + "#mesh")
        page.wait_for_selector("body[data-loaded='true']")
        check(not errors, f"page errors: {errors}")
        b.close()
    return 1
