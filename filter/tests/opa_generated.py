#!/usr/bin/env python3
"""Generated differential test: small random policies, data and inputs, evaluated through
Warden's exact filter path (compile -> RVM program -> load -> evaluate -> decision, via the
`policy_batch` example, in bulk) and by the real OPA engine (Go, opa-golib-python-bindings).

Each case must either match OPA or be refused at compile time (what `warden validate`
refuses). Compared per input:
  * OPA value      -> ours the same value (sets compare as sorted lists) and decision;
  * OPA undefined  -> ours undefined;
  * OPA error (conflict, ...) -> ours an error (which denies with a reason).
A runtime error of ours where OPA has a value fails closed (deny) and is counted apart
("ours errs"), it is not a wrong answer, unless OPA's decision would deny anyway.
A mismatch prints a minimal reproduction (policy, data, input, both answers) and exits 1.

  python filter/tests/opa_generated.py [--seed N] [--policies N] [--seconds S] [--batch FILE]

Defaults: seed 23, 3000 policies x 5 inputs (15,000 cases), stop after 90 s; CI (`./dev
test`) runs that. `./dev bench` runs the long form (--policies 20000 = 100,000 cases).
"""

import argparse
import collections
import json
import os
import random
import re
import subprocess
import sys
import time

from opa_bindings.engine import OpaEngine, OpaError, OpaUndefinedError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# ---------------------------------------------------------------------------- generator

K = [0, 1, 2, 3, 5]
STR = ["a", "b", "ab", "x"]


class Gen:
    def __init__(self, rng):
        self.r = rng
        self.n = 0

    def pick(self, xs):
        return self.r.choice(xs)

    def k(self):
        return str(self.pick(K))

    def num(self):
        """A number-valued expression (may be undefined)."""
        return self.pick([
            self.k(), "input.a", "input.b", "count(input.xs)", "data.n",
            "input.a + 1", "sum(input.xs)", "object.get(input.m, \"a\", 0)",
            "data.nested[input.s]", "max(input.xs)", "abs(input.b - 3)",
        ])

    def cond(self):
        """A condition (may be undefined)."""
        c = self.pick([
            f"{self.num()} > {self.k()}", f"{self.num()} == {self.num()}",
            "input.f", "input.g", "not input.f", f"input.s == \"{self.pick(STR)}\"",
            f"startswith(input.s, \"{self.pick(STR)}\")", f"{self.k()} in input.xs",
            f"input.m[\"{self.pick(STR)}\"] > {self.k()}", "count(input.m) > 1",
            f"some x in input.xs; x > {self.k()}", f"every x in input.xs {{ x < {self.k()} }}",
            f"lower(input.s) == \"{self.pick(STR)}\"",
        ])
        return c

    def val(self):
        """A value expression for a rule head."""
        return self.pick([
            self.k(), "true", "false", f"\"{self.pick(STR)}\"", self.num(),
            "[1, 2]", "{\"k\": input.a}", "input.xs", "sprintf(\"%v-%v\", [input.a, input.s])",
            "concat(\",\", [input.s, \"z\"])", "[x | some x in input.xs; x > 1]",
            "{x | some x in input.xs}", "{k: v | some k, v in input.m}",
            "array.concat(input.xs, [9])", "split(input.s, \"b\")",
        ])

    def body(self, n=None):
        n = n or self.pick([1, 1, 2])
        return "; ".join(self.cond() for _ in range(n))

    # Each construct defines rule `p` (possibly with helpers) and returns (rules, tags).
    def c_default(self):
        d = self.pick([self.k(), "[x | some x in input.xs]", "{x | some x in input.xs}",
                       "{k: v | some k, v in input.m}", "input.a", "count(input.xs)",
                       "{\"a\": input.a}", "[input.a]"])
        return [f"default p := {d}", f"p := {self.val()} if {{ {self.body()} }}"], ["default"]

    def c_complete(self):
        rules = [f"p := {self.val()} if {{ {self.body()} }}" for _ in range(self.pick([1, 2, 2, 3]))]
        if self.r.random() < 0.3:
            rules.append(f"p := {self.val()}")
        return rules, ["complete"]

    def c_partial_set(self):
        rules = [f"p contains {self.pick(['x', 'x + 1', '[x]', 'input.s'])} if {{ some x in input.xs; {self.body(1)} }}"]
        if self.r.random() < 0.5:
            rules.append(f"p contains \"{self.pick(STR)}\" if {{ {self.body(1)} }}")
        return rules, ["partial-set"]

    def c_partial_obj(self):
        rules = []
        for _ in range(self.pick([1, 2, 3])):
            if self.r.random() < 0.5:
                rules.append(f"p[\"{self.pick(STR)}\"] := {self.val()} if {{ {self.body(1)} }}")
            elif self.r.random() < 0.8:
                rules.append(f"p[k] := {self.pick(['v', 'v + 1', self.k()])} if {{ some k, v in input.m; {self.body(1)} }}")
            else:
                rules.append(f"p[k] := x if {{ some k in object.keys(input.m); some x in input.xs; {self.body(1)} }}")
        return rules, ["partial-object"]

    def c_ref_head(self):
        rules = []
        for _ in range(self.pick([1, 2, 3])):
            kind = self.pick(["const", "var", "set", "deep"])
            if kind == "const":
                rules.append(f"p.{self.pick(['a', 'b'])}.{self.pick(['c', 'd'])} := {self.val()} if {{ {self.body(1)} }}")
            elif kind == "var":
                rules.append(f"p[k].{self.pick(['c', 'd'])} := v if {{ some k, v in input.m; {self.body(1)} }}")
            elif kind == "set":
                rules.append(f"p.{self.pick(['a', 'b'])} contains x if {{ some x in input.xs; {self.body(1)} }}")
            else:
                rules.append(f"p.a[x] := true if {{ some x in input.xs; {self.body(1)} }}")
        if self.r.random() < 0.4:
            rules.append(f"q := p{self.pick(['.a', '.a.c', '[input.s]', '[input.s].c', '.b.d', '.a[1]'])}")
            return rules, ["ref-head", "ref-head-lookup"]
        return rules, ["ref-head"]

    def c_else(self):
        head = f"p := {self.val()} if {{ {self.body(1)} }}"
        for _ in range(self.pick([1, 2])):
            head += f" else := {self.val()} if {{ {self.body(1)} }}"
        if self.r.random() < 0.6:
            head += f" else := {self.val()}"
        rules = [head]
        if self.r.random() < 0.3:
            rules.append(f"p := {self.val()} if {{ {self.body(1)} }}")
        return rules, ["else"]

    def c_function(self):
        rules = []
        for _ in range(self.pick([1, 2, 2])):
            rules.append(f"f(x) := {self.pick(['x + 1', 'x', self.k(), '[x]', 'x * 2'])} if {{ x > {self.k()} }}")
        if self.r.random() < 0.4:
            rules.append(f"default f(_) := {self.k()}")
        if self.r.random() < 0.3:
            rules.append(f"g(x, y) := x + y")
            rules.append(f"p := g(f({self.num()}), 1)")
        else:
            rules.append(f"p := f({self.num()})")
        return rules, ["function"]

    def c_every(self):
        dom = self.pick(["input.xs", "input.m", "data.list", "[1, 2, 3]"])
        return [f"p if {{ every v in {dom} {{ v {self.pick(['>', '<', '!='])} {self.k()} }} }}",
                f"p := false if {{ not input.g }}"] if self.r.random() < 0.2 else \
               [f"p if {{ every v in {dom} {{ v {self.pick(['>', '<', '!='])} {self.k()} }} }}"], ["every"]

    def c_some_in(self):
        return [f"p contains k if {{ some k, v in {self.pick(['input.m', 'input.xs', 'data.nested'])}; {self.body(1)} }}",
                ], ["some-in"]

    def c_compr(self):
        return [f"p := {self.pick(['[x | some x in input.xs; x > ' + self.k() + ']', '{x | some x in input.xs}', '{k: v | some k, v in input.m; v > ' + self.k() + '}', 'count([x | some x in input.xs])', '[k | input.m[k]]'])}"], ["comprehension"]

    def c_data(self):
        rules = [self.pick([
            "p := data.nested[input.s]", "p := data.nested[2]", "p := data.t.sub",
            "p := data.list[input.a]", "p := data.nested", "p := data.t.sub.y",
            "p := [x | some x in data.list]", "p := data.t.q",
            "p := data.t.sub.z",
        ])]
        return rules, ["data"]

    def c_with(self):
        return [f"h if {{ {self.body(1)} }}",
                f"p if {{ h with input.a as {self.k()} }}"], ["with"]

    def c_early_exit(self):
        return [f"p := input.xs[_]", "q := x if { x := input.xs[_]; x > 1 }"], ["early-exit"]

    BUILTINS = ['upper(input.s)', 'trim(input.s, "a")', 'numbers.range(1, input.a)',
                'to_number(input.s)', 'json.marshal(input.m)', 'object.keys(input.m)',
                'sort(input.xs)', 'min(input.xs)', 'replace(input.s, "a", "b")',
                'format_int(input.a, 2)', 'is_number(input.a)', 'type_name(input.m)',
                'substring(input.s, 1, 1)', 'indexof(input.s, "b")', 'union({{1}, {input.a}})',
                'object.union(input.m, {"z": 1})', 'array.slice(input.xs, 1, 2)',
                'object.remove(input.m, ["a"])', 'product(input.xs)', 'intersection({{1, 2}, {input.a}})']

    def c_builtin(self):
        return ["p := " + self.pick(self.BUILTINS)], ["builtin"]

    CONSTRUCTS = ["c_default", "c_complete", "c_partial_set", "c_partial_obj", "c_ref_head",
                  "c_else", "c_function", "c_every", "c_some_in", "c_compr", "c_data",
                  "c_with", "c_early_exit", "c_builtin"]

    def policy(self):
        name = self.pick(self.CONSTRUCTS)
        rules, tags = getattr(self, name)()
        shape = self.pick(["value", "value", "bool", "object", "deny"])
        entry = "data.t.p"
        if shape == "bool":
            rules.append(self.pick(["allow if p", "allow if not p", "allow if { p == " + self.val() + " }",
                                    "default allow := false\nallow if { count(p) > 0 }"]))
            entry = "data.t.allow"
        elif shape == "object":
            rules.append("default allowed := false\nallowed if p\n"
                         "decision := {\"allowed\": allowed, \"headers\": {\"x-p\": sprintf(\"%v\", [p])}, "
                         "\"http_status\": 403}")
            entry = "data.t.decision"
        elif shape == "deny":
            rules.append("deny contains msg if { p; msg := \"p holds\" }\n"
                         "deny contains sprintf(\"x=%v\", [x]) if { some x in input.xs; x > 2 }")
            entry = "data.t.deny"
        tags = tags + ["shape-" + shape]
        source = "package t\n\n" + "\n".join(rules) + "\n"
        modules = [{"name": "t.rego", "source": source}]
        if self.r.random() < 0.3 or "data.t.sub" in source:
            modules.append({"name": "sub.rego", "source": "package t.sub\n\ny := 1\nz := input.nope\nw contains 1\n"})
        return modules, entry, tags

    def data(self):
        d = {"n": self.pick(K), "list": self.r.sample([1, 2, 3, 5], self.pick([0, 2, 3])),
             "nested": {"2": "bar", "a": self.pick([1, "s", [1], {"c": 1}]), "b": 3}}
        return d if self.r.random() < 0.9 else {}

    def input(self):
        i = {}
        for key, make in [("a", lambda: self.pick(K + [-1])), ("b", lambda: self.pick(K)),
                          ("s", lambda: self.pick(STR)), ("f", lambda: self.pick([True, False])),
                          ("g", lambda: self.pick([True, False])),
                          ("xs", lambda: self.r.sample([1, 2, 3, 5], self.pick([0, 1, 2, 3]))),
                          ("m", lambda: {k: self.pick(K) for k in self.r.sample(STR, self.pick([0, 1, 2]))})]:
            if self.r.random() < 0.85:
                i[key] = make()
        return i


# ---------------------------------------------------------------------------- comparison

def norm(v):
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    return v


def canon(v):
    """Sets come back as lists from both engines; compare order-insensitively as well."""
    return json.dumps(norm(v), sort_keys=True)


def allows(value):
    return value is True or (isinstance(value, dict) and value.get("allowed") is True)


def opa_eval(modules, data, entry, inputs):
    eng = OpaEngine()
    try:
        for m in modules:
            eng.add_policy(m["name"], m["source"])
        eng.add_data(data)
    except OpaError as e:
        eng.close()
        return [("refused", str(e))] * len(inputs)
    out = []
    path = entry[len("data."):]
    for i in inputs:
        try:
            out.append(("value", eng.eval_document(path, input=i)))
        except OpaUndefinedError:
            out.append(("undefined", None))
        except OpaError as e:
            # prepare_error: OPA's compiler (type checker) refuses the policy.
            kind = "refused" if e.code in ("prepare_error", "parse_error") else "error"
            out.append((kind, str(e)))
    eng.close()
    return out


def builtin_error(message):
    """The bindings run OPA with strict builtin errors; OPA-Envoy (and Warden) do not, and
    there a failing builtin call is undefined. Such cases have no reference answer."""
    return "eval_builtin_error" in message or "eval_type_error" in message


def explained(opa_value, our_value):
    """Known, documented divergence (README, Known limits): regorus's sprintf("%v") prints
    an empty set as `{}` where OPA prints `set()`."""
    a, b = json.dumps(norm(opa_value)), json.dumps(norm(our_value))
    return "set()" in a and a.replace("set()", "{}") == b


def judge(opa, ours):
    """Returns 'agree', 'ours-errs' (safe: deny where OPA has a value), 'opa-builtin-error'
    (no reference, see builtin_error) or a mismatch text."""
    kind, value = opa
    if kind == "error" and builtin_error(value):
        return "opa-builtin-error"
    if "error" in ours:
        if kind == "error":
            return "agree"
        return "ours-errs" if not ours["allowed"] else "we error yet allow"
    if kind == "error":
        return "OPA errors (%s), ours %r" % (value, ours.get("value", "<undefined>"))
    if kind == "undefined":
        return "agree" if "value" not in ours else "OPA undefined, ours %r" % (ours["value"],)
    if "value" not in ours:
        return "OPA %r, ours undefined" % (value,)
    if canon(value) != canon(ours["value"]) and explained(value, ours["value"]):
        return "explained"
    if canon(value) != canon(ours["value"]):
        a, b = norm(value), norm(ours["value"])
        if isinstance(a, list) and isinstance(b, list) and sorted(map(canon, a)) == sorted(map(canon, b)):
            return "agree"
        return "OPA %r, ours %r" % (value, ours["value"])
    if allows(value) != ours["allowed"]:
        return "decision differs: OPA allow=%s ours allow=%s" % (allows(value), ours["allowed"])
    return "agree"


def reason_of(message):
    """The refusal without its location and names, to count refusals by kind."""
    text = message.split(": ", 1)[-1]
    for cut in (" (the sidecar", "; "):
        text = text.split(cut)[0]
    return re.sub(r"`[^`]*`|data\.[\w.\[\]_]+", "X", text)[:110]


def batch_binary():
    subprocess.run(["cargo", "build", "-q", "-p", "warden-filter", "--example", "policy_batch"],
                   cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "debug", "examples", "policy_batch")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--policies", type=int, default=3000)
    ap.add_argument("--inputs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=90)
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--dump", help="write every mismatch (JSON lines) to this file")
    ap.add_argument("--interpreter", action="store_true",
                    help="measure regorus's interpreter instead of the filter's path (not what the filter runs)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    gen = Gen(rng)
    binary = batch_binary()
    start = time.time()
    stats = collections.Counter()
    mix = collections.Counter()
    refused_by = collections.Counter()
    why = collections.Counter()
    mismatches = []
    done = 0
    while done < args.policies and time.time() - start < args.seconds:
        chunk = []
        for i in range(min(args.chunk, args.policies - done)):
            modules, entry, tags = gen.policy()
            chunk.append({"id": done + i, "modules": modules, "data": gen.data(), "entrypoint": entry,
                          "inputs": [gen.input() for _ in range(args.inputs)], "tags": tags})
        done += len(chunk)
        text = "".join(json.dumps(c) + "\n" for c in chunk)
        res = subprocess.run([binary] + (["--interpreter"] if args.interpreter else []), input=text, capture_output=True, text=True, check=True)
        for case, line in zip(chunk, res.stdout.splitlines()):
            ours = json.loads(line)
            for t in case["tags"]:
                mix[t] += len(case["inputs"])
            if "refused" in ours:
                stats["refused"] += len(case["inputs"])
                refused_by[case["tags"][0]] += len(case["inputs"])
                why[reason_of(ours["refused"])] += len(case["inputs"])
                continue
            opa = opa_eval(case["modules"], case["data"], case["entrypoint"], case["inputs"])
            for inp, o, w in zip(case["inputs"], opa, ours["results"]):
                if o[0] == "refused":
                    # Not an OPA policy at all (parse or type error): nothing to agree with.
                    stats["opa-refuses"] += 1
                    continue
                else:
                    verdict = judge(o, w)
                if verdict in ("agree", "ours-errs", "opa-builtin-error", "explained"):
                    stats[verdict] += 1
                    continue
                stats["MISMATCH"] += 1
                mismatches.append((case, inp, verdict))
    total = sum(stats.values())
    if args.dump:
        with open(args.dump, "w") as f:
            for case, inp, verdict in mismatches:
                f.write(json.dumps({"verdict": verdict, "modules": case["modules"], "entrypoint": case["entrypoint"],
                                    "data": case["data"], "input": inp, "tags": case["tags"]}) + "\n")
    for case, inp, verdict in mismatches[:10]:
        print("MISMATCH:", verdict)
        for m in case["modules"]:
            print("  --- %s\n%s" % (m["name"], "\n".join("  " + l for l in m["source"].splitlines())))
        print("  entrypoint:", case["entrypoint"])
        print("  data:", json.dumps(case["data"]))
        print("  input:", json.dumps(inp))
    print("generated differential vs OPA: seed %d, %d policies, %d cases in %.0f s: %s"
          % (args.seed, done, total, time.time() - start, dict(stats)))
    print("construct mix (cases):", dict(sorted(mix.items())))
    print("refused (cases, by construct):", dict(sorted(refused_by.items())))
    print("refused (cases, by reason):")
    for reason, n in why.most_common():
        print("  %6d  %s" % (n, reason))
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
