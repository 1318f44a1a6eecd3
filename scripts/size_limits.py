#!/usr/bin/env python3
"""Fails when a production file of the control plane grows past 500 lines, or a function
of its core (`plane/`, `xds/`, `identity/`, `config/`) past 80 lines.

Production code only: `*_tests.rs`/`tests.rs` files and inline `#[cfg(test)]` modules
are left out; comments and string literals do not count as code structure (they are
blanked with the import-cycle checker's lexer), but every line counts towards a length.

Usage: scripts/size_limits.py
"""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from import_cycles import block_end, strip  # noqa: E402

SRC = "control-plane/src"
CORE = ("plane", "xds", "identity", "config")
MAX_FILE = 500
MAX_FN = 80

# Core functions allowed over the limit, each with its reason. Keep this list short.
ALLOWED = {
    # Not steps but a table: one entry (name, help, type) per metric, in exposition order.
    # Splitting it would scatter the one list an operator reads to learn the metrics.
    "control-plane/src/xds/metrics.rs: new",
}

FN = re.compile(r"\bfn\s+(\w+)[^;{]*\{")
TEST_MOD = re.compile(r"#\[cfg\(\s*test\s*\)\]\s*(?:#\[[^\]]*\]\s*)*mod\s+\w+\s*\{")


def without_test_modules(text: str) -> str:
    out, pos = [], 0
    for m in TEST_MOD.finditer(text):
        if m.start() < pos:
            continue
        end = block_end(text, m.end() - 1)
        out.append(text[pos:m.start()])
        out.append("\n" * text.count("\n", m.start(), end))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def problems() -> list[str]:
    found = []
    for dirpath, dirs, names in os.walk(SRC):
        # Code generated from .proto files (checked by its regenerate-and-diff test).
        dirs[:] = [d for d in dirs if d != "generated"]
        for name in sorted(names):
            if not name.endswith(".rs") or name == "tests.rs" or name.endswith("_tests.rs"):
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8") as f:
                text = without_test_modules(strip(f.read()))
            code_lines = len(text.rstrip("\n").split("\n"))
            if code_lines > MAX_FILE:
                found.append(f"{path}: {code_lines} lines of production code (limit {MAX_FILE}); split it")
            rel = os.path.relpath(path, SRC).split(os.sep)
            if rel[0] not in CORE:
                continue
            for m in FN.finditer(text):
                end = block_end(text, m.end() - 1)
                lines = text.count("\n", m.start(), end) + 1
                if lines > MAX_FN and f"{path}: {m.group(1)}" not in ALLOWED:
                    line = text.count("\n", 0, m.start()) + 1
                    found.append(f"{path}:{line}: fn {m.group(1)} is {lines} lines (limit {MAX_FN}); split it into steps")
    return found


def main() -> int:
    found = problems()
    for p in found:
        print(p)
    if found:
        return 1
    print(f"no production file over {MAX_FILE} lines, no core function over {MAX_FN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
