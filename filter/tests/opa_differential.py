#!/usr/bin/env python3
"""Differential test: Warden's filter core (regorus) against the real OPA engine.

For every case in filter/tests/cases/*.yaml the Rust helper (`opa_diff` example) prints
the modules, data, entrypoint, the exact input document the filter built, our raw result
and our decision. This script evaluates the same entrypoint with OPA 1.20 (Go engine via
opa-golib-python-bindings==0.4.4) and compares:
  * the raw value of the decision rule (undefined == undefined, JSON-equal otherwise),
    unless OPA raised an error (then ours must not allow);
  * the allow/deny decision (true, or an object with allowed == true, allows).
Also runs the `test_*` rules of examples/mesh/policies/*_test.rego on OPA and on
`warden policy test` semantics (our runner) and compares pass/fail per test.
Exits 1 on any mismatch. Run from the repo root:
  .venv/bin/python filter/tests/opa_differential.py        (or /work/main/.venv/bin/python)
"""

import json
import os
import subprocess
import sys

from opa_bindings.engine import OpaEngine, OpaError, OpaUndefinedError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def norm(v):
    """Numbers: 2.0 == 2 as in Rego."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    return v


def allows(value):
    if value is True:
        return True
    if isinstance(value, dict):
        return value.get("allowed") is True
    return False


def opa_eval(case):
    """Returns ("value", v) | ("undefined", None) | ("error", message)."""
    eng = OpaEngine()
    try:
        for m in case["modules"]:
            eng.add_policy(m["name"], m["source"])
        if case["data"]:
            eng.add_data(case["data"])
        path = case["entrypoint"]
        path = path[len("data."):] if path.startswith("data.") else path
        try:
            return ("value", eng.eval_document(path, input=case["input"]))
        except OpaUndefinedError:
            return ("undefined", None)
        except OpaError as e:
            return ("error", str(e))
    except OpaError as e:
        return ("error", str(e))
    finally:
        eng.close()


def run_cases():
    cmd = ["cargo", "run", "-q", "-p", "warden-filter", "--example", "opa_diff", "--",
           os.path.join(ROOT, "filter", "tests", "cases")]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    mismatches, compared, skipped = [], 0, 0
    areas = {}
    for line in out.splitlines():
        case = json.loads(line)
        name = f'{case["file"]}: {case["note"]}'
        if case.get("skip_opa"):
            skipped += 1
            continue
        if "setup_error" in case:
            mismatches.append(f"{name}: our setup failed: {case['setup_error']}")
            continue
        compared += 1
        area = areas.setdefault(case["file"], {"cases": 0, "agree": 0, "refused": 0, "errs": 0, "wrong": 0, "builtin": 0, "opa_refuses": 0})
        area["cases"] += 1
        if case.get("refused"):
            # Refused at compile time (warden validate): safe, not an agreement.
            area["refused"] += 1
            continue
        kind, value = opa_eval(case)
        ours = case["result"]
        before = len(mismatches)
        if kind == "error" and ("prepare_error" in value or "parse_error" in value):
            # OPA's compiler refuses the policy (e.g. an unused declared variable): there
            # is no OPA answer to agree with; ours must not allow.
            area["opa_refuses"] += 1
            if case["allowed"]:
                mismatches.append(f"{name}: OPA refuses the policy ({value}) but we allow")
            continue
        if kind == "error" and ("eval_builtin_error" in value or "eval_type_error" in value):
            # The bindings run OPA with strict builtin errors; OPA-Envoy's default (and
            # ours) makes a failing builtin call undefined: no reference answer here.
            area["builtin"] += 1
            continue
        if kind == "error":
            # OPA stops with an error (conflict, ...): ours must be an error too.
            if case["error"] is None:
                mismatches.append(f"{name}: OPA errors ({value}), ours {ours!r}")
        elif kind == "undefined":
            if ours is not None or case["error"]:
                mismatches.append(f"{name}: OPA undefined, ours {ours!r} / error {case['error']!r}")
        elif case["error"] is not None and not case["allowed"]:
            area["errs"] += 1
            continue
        elif norm(ours) != norm(value):
            mismatches.append(f"{name}: OPA {value!r}, ours {ours!r} (error {case['error']!r})")
        if kind != "error" and allows(value) != case["allowed"]:
            mismatches.append(f"{name}: decision differs: OPA allow={allows(value)}, ours allow={case['allowed']}")
        if len(mismatches) > before:
            area["wrong"] += 1
        else:
            area["agree"] += 1
    print_areas(areas)
    return mismatches, compared, skipped


def print_areas(areas):
    """Per case file (language area): agreement with OPA, refusals, wrong answers."""
    total = {"cases": 0, "agree": 0, "refused": 0, "errs": 0, "wrong": 0, "builtin": 0, "opa_refuses": 0}
    print("| area (case file) | cases | agree with OPA | refused at validate | error (deny) where OPA has a value | builtin error (no reference) | OPA refuses | wrong |")
    print("|---|---|---|---|---|---|---|---|")
    for name, a in sorted(areas.items()):
        for k in total:
            total[k] += a[k]
        print(f"| {name} | {a['cases']} | {a['agree']} ({100 * a['agree'] // max(a['cases'], 1)} %) "
              f"| {a['refused']} | {a['errs']} | {a['builtin']} | {a['opa_refuses']} | {a['wrong']} |")
    t = total
    print(f"| **total** | {t['cases']} | {t['agree']} ({100 * t['agree'] / max(t['cases'], 1):.1f} %) "
          f"| {t['refused']} | {t['errs']} | {t['builtin']} | {t['opa_refuses']} | {t['wrong']} |")


def run_policy_tests(warden):
    """Compare pass/fail of the sample repo's policy tests: OPA vs `warden policy test`."""
    pol = os.path.join(ROOT, "examples", "mesh", "policies")
    files = sorted(f for f in os.listdir(pol) if f.endswith(".rego"))
    eng = OpaEngine()
    for f in files:
        with open(os.path.join(pol, f)) as fh:
            eng.add_policy(f, fh.read())
    res = subprocess.run([warden, "policy", "test", os.path.join(ROOT, "examples", "mesh")],
                         capture_output=True, text=True)
    ours = {}
    for line in res.stdout.splitlines():
        if line.startswith("data.") and ": " in line:
            rule, rest = line.split(": ", 1)
            ours[rule] = rest.split(" ")[0] == "PASS"
    mismatches = []
    for rule, passed in ours.items():
        try:
            v = eng.eval_document(rule[len("data."):])
            opa_pass = v is not False
        except OpaUndefinedError:
            opa_pass = False
        except OpaError:
            opa_pass = False
        if opa_pass != passed:
            mismatches.append(f"policy test {rule}: OPA {'PASS' if opa_pass else 'FAIL'}, ours {'PASS' if passed else 'FAIL'}")
    eng.close()
    if not ours:
        mismatches.append(f"`warden policy test` printed no results: {res.stderr.strip()}")
    return mismatches, len(ours)


def main():
    mismatches, compared, skipped = run_cases()
    warden = os.environ.get("WARDEN_BIN")
    tests_compared = 0
    if warden:
        more, tests_compared = run_policy_tests(warden)
        mismatches += more
    for m in mismatches:
        print("MISMATCH", m)
    print(f"differential vs OPA: {compared} cases compared, {skipped} skipped, "
          f"{tests_compared} policy tests compared, {len(mismatches)} mismatches")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
