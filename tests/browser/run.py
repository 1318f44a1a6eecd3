"""Runs the browser tests (real headless Chromium: Debian's `chromium` driven by
Playwright for Python, installed by ./dev) and prints `N passed, N failed`.

    python tests/browser/run.py target/debug/warden

Test 1 (dashboard_test): the dashboard of a running mesh (`warden-mesh`, next to the
warden binary). Test 2 (playground_test): playground cases against `warden policy eval`.
Screenshots and logs go to target/browser-artifacts/."""

import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dashboard_test  # noqa: E402
import playground_test  # noqa: E402
from common import ARTIFACTS  # noqa: E402


class Checks:
    def __init__(self):
        self.failures = []

    def __call__(self, ok, message):
        if not ok:
            self.failures.append(message)
            print(f"  FAIL: {message}", flush=True)


def main():
    warden = Path(sys.argv[1] if len(sys.argv) > 1 else "target/debug/warden").resolve()
    mesh = warden.with_name("warden-mesh")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tests = [
        ("dashboard of a running mesh", lambda c: dashboard_test.run(mesh, c)),
        ("playground cases equal warden policy eval", lambda c: playground_test.run(warden, c)),
    ]
    passed = failed = 0
    for name, test in tests:
        checks = Checks()
        started = time.monotonic()
        try:
            detail = test(checks)
        except Exception:
            traceback.print_exc()
            checks.failures.append("raised")
            detail = None
        took = time.monotonic() - started
        if checks.failures:
            failed += 1
            print(f"FAIL {name} ({took:.1f}s)", flush=True)
        else:
            passed += 1
            extra = f", {detail} cases" if detail and detail > 1 else ""
            print(f"ok   {name} ({took:.1f}s{extra})", flush=True)
    print(f"browser: {passed} passed, {failed} failed")
    print(f"artifacts: {ARTIFACTS}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
