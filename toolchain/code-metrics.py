#!/usr/bin/env python3
"""Structure metrics of forge's Rust code, for reviews and issue notes.

    python3 toolchain/code-metrics.py [--json] [--top N]

Prints the largest source files, the longest functions, the unit tests per crate (tests
inside `src/`; integration tests under `tests/` counted apart) and the import cycles
between files of one crate (file A names `crate::b`, file B names `crate::a`).

Functions are found by `fn NAME` and measured to their matching closing brace, skipping
strings, characters and comments: a lexer, not a parser, so macro bodies count as code.
"""

import json
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLCHAIN = os.path.join(ROOT, "toolchain")


def rust_files(base):
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in ("target", "snapshots"))
        for f in sorted(filenames):
            if f.endswith(".rs"):
                yield os.path.join(dirpath, f)


def strip(text):
    """The text with comments, strings and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
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
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'" and re.match(r"'(\\.|[^\\'])[^']{0,8}'", text[i:i + 12]) and not re.match(r"'[a-z_]+[^a-z_']", text[i:i + 12]):
            m = re.match(r"'(\\[^']*|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


FN = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")


def functions(path):
    text = strip(open(path, encoding="utf-8").read())
    lines_at = [0]
    for idx, ch in enumerate(text):
        if ch == "\n":
            lines_at.append(idx + 1)

    def line_of(pos):
        lo, hi = 0, len(lines_at) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if lines_at[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    for m in FN.finditer(text):
        # The body starts at the first `{` before any `;` (a declaration has no body).
        j = m.end()
        depth_paren = 0
        while j < len(text):
            ch = text[j]
            if ch in "(<[":
                depth_paren += 1
            elif ch in ")>]":
                depth_paren -= 1
            elif ch == ";" and depth_paren <= 0:
                j = -1
                break
            elif ch == "{" and depth_paren <= 0:
                break
            j += 1
        if j < 0 or j >= len(text):
            continue
        depth, k = 0, j
        while k < len(text):
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        start, end = line_of(m.start()), line_of(k)
        yield m.group(1), start, end - start + 1


def crate_of(path):
    rel = os.path.relpath(path, TOOLCHAIN).split(os.sep)
    return rel[0]


def module_path(src, path):
    """`crate::a::b` path segments of a file under `src/`."""
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("lib", "main", "mod"):
        rel = rel[:-1]
    return tuple(rel)


def cycles():
    found = []
    for crate in sorted(os.listdir(TOOLCHAIN)):
        src = os.path.join(TOOLCHAIN, crate, "src")
        if not os.path.isdir(src):
            continue
        mods = {}
        for f in rust_files(src):
            mods[module_path(src, f)] = f
        edges = defaultdict(set)
        for mp, f in mods.items():
            text = strip(open(f, encoding="utf-8").read())
            # `use crate::a::{b, c}` and paths written in code (`crate::a::f()`).
            for m in re.finditer(r"\bcrate((?:::[a-z_][a-z0-9_]*)+)", text):
                segs = tuple(m.group(1).strip(":").split("::"))
                # The longest prefix that is a module file.
                target = None
                for k in range(len(segs), 0, -1):
                    if segs[:k] in mods:
                        target = segs[:k]
                        break
                if target is not None and target != mp and target != ():
                    # A child naming its parent module (`super`-like) is not a cycle
                    # between files unless the parent names it back.
                    edges[mp].add(target)
            for m in re.finditer(r"\bsuper((?:::[a-z_][a-z0-9_]*)+)", text):
                base = mp[:-1] if os.path.basename(f) not in ("mod.rs",) else mp[:-1]
                segs = base + tuple(m.group(1).strip(":").split("::"))
                for k in range(len(segs), 0, -1):
                    if segs[:k] in mods and segs[:k] != mp:
                        edges[mp].add(segs[:k])
                        break
        # Tarjan's strongly connected components.
        index, low, on, stack, out = {}, {}, set(), [], []
        counter = [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in edges.get(v, ()):
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
                if len(comp) > 1:
                    out.append(comp)

        for v in list(mods):
            if v not in index:
                visit(v)
        for comp in out:
            found.append(
                sorted(os.path.relpath(mods[c], ROOT) for c in comp)
            )
    return found


def main():
    as_json = "--json" in sys.argv
    top = 10
    if "--top" in sys.argv:
        top = int(sys.argv[sys.argv.index("--top") + 1])
    files = []
    fns = []
    unit = defaultdict(int)
    integration = defaultdict(int)
    test_re = re.compile(r"#\[(?:tokio::)?test\b")
    for f in rust_files(TOOLCHAIN):
        text = open(f, encoding="utf-8").read()
        rel = os.path.relpath(f, ROOT)
        files.append((text.count("\n"), rel))
        crate = crate_of(f)
        n = len(test_re.findall(text))
        if os.sep + "src" + os.sep in rel:
            unit[crate] += n
        else:
            integration[crate] += n
        for name, line, length in functions(f):
            fns.append((length, f"{rel}:{line}", name))
    for f in rust_files(os.path.join(ROOT, "tests")):
        integration["tests/ (root)"] += len(test_re.findall(open(f, encoding="utf-8").read()))
    files.sort(reverse=True)
    fns.sort(reverse=True)
    cyc = cycles()
    crates = sorted(set(unit) | {c for c in os.listdir(TOOLCHAIN) if os.path.isdir(os.path.join(TOOLCHAIN, c, "src"))})
    if as_json:
        print(json.dumps({
            "largest_files": [{"lines": n, "file": f} for n, f in files[:top]],
            "files_over_800": [{"lines": n, "file": f} for n, f in files if n > 800],
            "longest_functions": [{"lines": n, "at": at, "fn": name} for n, at, name in fns[:top]],
            "functions_over_100": sum(1 for n, _, _ in fns if n > 100),
            "unit_tests": {c: unit.get(c, 0) for c in crates},
            "integration_tests": dict(integration),
            "import_cycles": cyc,
        }, indent=2))
        return
    print(f"largest files (lines; {sum(1 for n, _ in files if n > 800)} over 800):")
    for n, f in files[:top]:
        print(f"  {n:6}  {f}")
    print(f"longest functions (lines; {sum(1 for n, _, _ in fns if n > 100)} over 100):")
    for n, at, name in fns[:top]:
        print(f"  {n:6}  {name}  {at}")
    print("unit tests per crate (in src/):")
    for c in crates:
        print(f"  {unit.get(c, 0):6}  {c}")
    print("integration tests:")
    for c, n in sorted(integration.items()):
        print(f"  {n:6}  {c}")
    print(f"import cycles between files: {len(cyc)}")
    for comp in cyc:
        print("  " + " <-> ".join(comp))


if __name__ == "__main__":
    main()
