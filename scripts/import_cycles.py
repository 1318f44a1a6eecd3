#!/usr/bin/env python3
"""Fails when the modules of a Warden crate import each other in a circle, or a layer
rule (FORBIDDEN: the core never uses the ADS server, xds never uses the core) is broken.

Reads every production module of the control-plane and filter crates (test modules,
`#[cfg(test)]`, are skipped), collects each reference to another module of the same crate
(`use crate::..`, `use super::..`, `use self::..`, `use child::..` and `crate::`/`super::`
paths in code), resolves it through `pub use` re-exports to the module that defines the
item, and builds the module graph at every level of the module tree: a reference from
`a::x::y` to `a::z::w` is an edge `a::x -> a::z` between the two siblings under their
lowest common ancestor. A module and its own submodules are one unit (a parent using its
child, or a child its parent, is not an edge). Every strongly connected set of siblings is
reported with one reference (file:line) per edge of a cycle through it, and the script
exits 1.

Usage: scripts/import_cycles.py [crate_root.rs ...]   (default: the two crates)
"""

from __future__ import annotations

import os
import re
import sys
from collections import defaultdict

ROOTS = [
    "control-plane/src/lib.rs",
    "control-plane/src/main.rs",
    "filter/src/lib.rs",
    "spiffe-id/src/lib.rs",
]

# Edges allowed for now, as "crate_root: from -> to". Keep this list empty; an entry
# needs a comment naming who removes it and when.
ALLOWED: set[str] = set()

# Layering rules beyond "no circle": (crate root, from, to) means no module under `from`
# may refer to one under `to`. The core (`plane`) only writes to the xDS cache and reads
# ACK state; it never reaches into the ADS server, and nothing in `xds` knows the core.
FORBIDDEN = [
    ("control-plane/src/lib.rs", ("plane",), ("xds", "server")),
    ("control-plane/src/lib.rs", ("xds",), ("plane",)),
]

MOD_DECL = re.compile(
    r"((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*(;|\{)")
USE_STMT = re.compile(r"(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);")
PUB_USE = re.compile(r"^\s*pub(?:\([^)]*\))?\s+use\s+")
CHAR = re.compile(r"'(\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'\n])'")
CODE_PATH = re.compile(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)")


def strip(text: str) -> str:
    """Blanks comments, string and char literals, keeping line numbers."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and CHAR.match(text, i):
            out.append("' '")
            i = CHAR.match(text, i).end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def block_end(text: str, open_brace: int) -> int:
    depth = 0
    for j in range(open_brace, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


def is_test(attrs: str) -> bool:
    return re.search(r"#\[cfg\(\s*test\s*\)\]", attrs) is not None


class Crate:
    def __init__(self, root: str):
        self.root = root
        self.files: dict[tuple, str] = {}      # module path -> file
        self.text: dict[tuple, str] = {}       # module path -> stripped text (own part)
        self.children: dict[tuple, set] = defaultdict(set)
        self.reexports: dict[tuple, dict] = defaultdict(dict)
        self.load((), root, is_mod_rs=True)

    def load(self, mod: tuple, path: str, is_mod_rs: bool):
        with open(path, encoding="utf-8") as f:
            text = strip(f.read())
        self.files[mod] = path
        here = os.path.dirname(path)
        sub_dir = here if is_mod_rs else os.path.join(here, os.path.splitext(os.path.basename(path))[0])
        kept, pos = [], 0
        for m in MOD_DECL.finditer(text):
            if m.start() < pos:
                continue
            attrs, name, kind = m.group(1), m.group(2), m.group(3)
            if kind == "{":
                end = block_end(text, m.end() - 1)
                if is_test(attrs):  # an inline test module: not production code
                    kept.append(text[pos:m.start()])
                    kept.append("\n" * text.count("\n", m.start(), end))
                    pos = end
                continue  # other inline modules count as part of this file
            if is_test(attrs):
                continue
            explicit = self.path_attr(path, m.start(), name)
            if explicit:
                child = os.path.join(here, explicit)
                child_is_mod_rs = os.path.basename(child) == "mod.rs"
            else:
                child = os.path.join(sub_dir, name + ".rs")
                child_is_mod_rs = False
                if not os.path.exists(child):
                    child = os.path.join(sub_dir, name, "mod.rs")
                    child_is_mod_rs = True
            if not os.path.exists(child):
                continue  # e.g. a module generated at build time
            self.children[mod].add(name)
            self.load(mod + (name,), child, child_is_mod_rs)
        kept.append(text[pos:])
        self.text[mod] = "".join(kept)

    @staticmethod
    def path_attr(path: str, decl_at: int, name: str):
        """The `#[path = ".."]` on the declaration of `name` (read from the raw file,
        since strings are blanked in the stripped text)."""
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        m = re.search(r'#\[path\s*=\s*"([^"]*)"\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+' + name + r'\s*;', raw)
        return m.group(1) if m else None

    # --- use trees -------------------------------------------------------------
    @staticmethod
    def flatten(tree: str) -> list[list[str]]:
        tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+", "@", tree))
        out: list[list[str]] = []

        def walk(prefix: list[str], s: str):
            if s.startswith("::"):
                s = s[2:]
            brace = s.find("{")
            if brace < 0:
                segs = [x for x in re.split(r"::", s) if x]
                if segs:
                    segs[-1] = segs[-1].split("@")[0]
                out.append(prefix + segs)
                return
            head = [x for x in s[:brace].split("::") if x]
            inner = s[brace + 1:s.rfind("}")]
            depth, start = 0, 0
            parts = []
            for i, ch in enumerate(inner):
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                elif ch == "," and depth == 0:
                    parts.append(inner[start:i])
                    start = i + 1
            parts.append(inner[start:])
            for p in parts:
                if p:
                    walk(prefix + head, p)

        walk([], tree)
        return out

    def absolute(self, mod: tuple, segs: list[str]):
        """`segs` as an absolute path from the crate root, or None (another crate)."""
        cur = list(mod)
        if not segs:
            return None
        if segs[0] == "crate":
            return [] + segs[1:]
        if segs[0] in ("super", "self"):
            i = 0
            while i < len(segs) and segs[i] in ("super", "self"):
                if segs[i] == "super":
                    if not cur:
                        return None
                    cur.pop()
                i += 1
            return cur + segs[i:]
        if segs[0] in self.children[mod]:
            return cur + segs
        return None

    def resolve(self, segs: list[str], depth: int = 0) -> tuple:
        """The module that defines what the absolute path `segs` names."""
        mod: tuple = ()
        i = 0
        while i < len(segs) and segs[i] in self.children[mod]:
            mod = mod + (segs[i],)
            i += 1
        if i < len(segs) and depth < 8:
            target = self.reexports_of(mod).get(segs[i])
            if target is not None:
                return self.resolve(target + segs[i + 1:], depth + 1)
        return mod

    def reexports_of(self, mod: tuple) -> dict:
        if mod not in self.reexports:
            table = {}
            for m in USE_STMT.finditer(self.text.get(mod, "")):
                if not PUB_USE.match(self.text[mod][m.start():m.end()]):
                    continue
                for segs in self.flatten(m.group(1)):
                    name = segs[-1] if segs else None
                    absolute = self.absolute(mod, segs)
                    if name and name != "*" and absolute is not None:
                        if name == "self":
                            absolute = absolute[:-1]
                            name = absolute[-1] if absolute else None
                        if name:
                            table[name] = absolute
            self.reexports[mod] = table
        return self.reexports[mod]

    def references(self):
        """(from module, to module, file, line) for each reference to a crate module."""
        for mod, text in self.text.items():
            line_of = lambda at: text.count("\n", 0, at) + 1
            spans = []
            for m in USE_STMT.finditer(text):
                if PUB_USE.match(text[m.start():m.end()]):
                    continue  # re-exports are followed, not counted
                spans.append((m.start(), m.end()))
                for segs in self.flatten(m.group(1)):
                    if segs and segs[-1] == "self":
                        segs = segs[:-1]
                    absolute = self.absolute(mod, segs)
                    if absolute is not None:
                        yield mod, self.resolve(absolute), self.files[mod], line_of(m.start())
            for m in CODE_PATH.finditer(text):
                if any(a <= m.start() < b for a, b in spans):
                    continue
                absolute = self.absolute(mod, m.group(1).split("::"))
                if absolute is not None:
                    yield mod, self.resolve(absolute), self.files[mod], line_of(m.start())


def sibling_edge(a: tuple, b: tuple):
    """The edge between the children of the lowest common ancestor, or None when one
    module contains the other."""
    i = 0
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    if i == len(a) or i == len(b):
        return None
    return a[:i], a[i], b[i]


def sccs(nodes, edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def cycle_through(comp, edges):
    """One cycle inside the strongly connected `comp`, as a list of nodes."""
    start = comp[0]
    inside = set(comp)
    path, seen = [start], {start}
    # Breadth-first back to start.
    from collections import deque
    prev = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(edges.get(v, ())):
            if w not in inside:
                continue
            if w == start:
                cyc = [v]
                while prev[cyc[-1]] is not None:
                    cyc.append(prev[cyc[-1]])
                return list(reversed(cyc)) + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return path + [start]


def check(root: str) -> list[str]:
    crate = Crate(root)
    # level (parent module) -> child -> child -> [(file, line)]
    graph: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for src, dst, file, line in crate.references():
        e = sibling_edge(src, dst)
        if e is None:
            continue
        parent, a, b = e
        key = f"{root}: {'::'.join(parent + (a,))} -> {'::'.join(parent + (b,))}"
        if key in ALLOWED:
            continue
        graph[parent][a][b].append(f"{file}:{line} ({'::'.join(src) or 'crate'} uses {'::'.join(dst) or 'crate'})")
    problems = []
    for src, dst, file, line in crate.references():
        for r, a, b in FORBIDDEN:
            if r == root and src[:len(a)] == a and dst[:len(b)] == b:
                problems.append(f"{root}: {'::'.join(src)} must not use {'::'.join(dst)} ({file}:{line}): `{'::'.join(a)}` may not depend on `{'::'.join(b)}`")
    for parent, edges in sorted(graph.items()):
        nodes = set(edges) | {b for a in edges.values() for b in a}
        adj = {a: set(bs) for a, bs in edges.items()}
        for comp in sccs(nodes, adj):
            if len(comp) < 2:
                continue
            where = "::".join(parent) or "crate"
            cyc = cycle_through(comp, adj)
            lines = [f"{root}: import cycle among {where}::{{{', '.join(comp)}}}: " + " -> ".join(cyc)]
            for a, b in zip(cyc, cyc[1:]):
                refs = edges[a][b]
                lines.append(f"    {a} -> {b}: {refs[0]}" + (f" (+{len(refs) - 1} more)" if len(refs) > 1 else ""))
            problems.append("\n".join(lines))
    return problems


def self_test():
    """The checker on small crates written to a temporary directory."""
    import tempfile

    def crate(files):
        d = tempfile.mkdtemp()
        for name, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(d, name)), exist_ok=True)
            with open(os.path.join(d, name), "w", encoding="utf-8") as f:
                f.write(text)
        return os.path.join(d, "lib.rs")

    circle = crate({
        "lib.rs": "mod a;\nmod b;\nmod c;\npub use c::Z;\n",
        "a.rs": "use crate::b::X;\n",
        "b.rs": "pub struct X;\nfn f() -> crate::Z { todo!() }\n",
        "c/mod.rs": "mod inner;\npub use inner::Z;\nfn g() { let _ = super::a::Y; }\n",
        "c/inner.rs": "pub struct Z;\n",
    })
    found = check(circle)
    assert len(found) == 1 and "crate::{a, b, c}" in found[0], found
    clean = crate({
        "lib.rs": "mod a;\nmod b;\n",
        "a.rs": "use crate::b::X; // crate::a in a comment\n",
        "b.rs": 'pub struct X;\nconst S: &str = "crate::a::Y";\n#[cfg(test)]\nmod tests { use crate::a::*; }\n#[cfg(test)]\n#[path = "t.rs"]\nmod more;\n',
        "t.rs": "use crate::a::Q;\n",
    })
    assert check(clean) == [], check(clean)
    nested = crate({
        "lib.rs": "mod p;\nmod q;\n",
        "p/mod.rs": "mod x;\nuse x::A;\n",
        "p/x.rs": "use super::super::q::{self, B as Bee};\npub struct A;\n",
        "q.rs": "pub struct B;\nuse crate::p::X2;\n",
    })
    found = check(nested)
    # A submodule's use lifts to its ancestor: p::x -> q and q -> p is a circle p <-> q.
    assert len(found) == 1 and "p -> q -> p" in found[0], found
    nested2 = crate({
        "lib.rs": "mod p;\nmod q;\n",
        "p/mod.rs": "mod x;\n",
        "p/x.rs": "use crate::q::B;\n",
        "q.rs": "pub struct B;\nfn f() { crate::p::x::g(); }\n",
    })
    found = check(nested2)
    assert len(found) == 1 and "p -> q" in found[0].split("\n")[1], found
    layered = crate({
        "lib.rs": "mod plane;\nmod xds;\n",
        "plane.rs": "use crate::xds::cache::Cache;\nfn f() { crate::xds::server::serve(); }\n",
        "xds/mod.rs": "pub mod cache;\npub mod server;\n",
        "xds/cache.rs": "pub struct Cache;\n",
        "xds/server.rs": "pub fn serve() {}\n",
    })
    saved = list(FORBIDDEN)
    FORBIDDEN[:] = [(layered, ("plane",), ("xds", "server"))]
    try:
        found = check(layered)
    finally:
        FORBIDDEN[:] = saved
    assert len(found) == 1 and "plane must not use xds::server" in found[0], found
    print("self-test passed")


def main(argv):
    if argv[1:] == ["--self-test"]:
        self_test()
        return 0
    roots = argv[1:] or ROOTS
    problems = []
    for root in roots:
        if os.path.exists(root):
            problems += check(root)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} import problem(s): break a circle by moving the shared item down a layer")
        return 1
    print(f"no import cycles in {', '.join(r for r in roots if os.path.exists(r))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
