#!/usr/bin/env python3
"""The module order of docs/dev.md ("Module order"): every `#include "MODULE/..."` in src/*/
names the file's own module or one of the modules it may use, and a header named
*_internal.h is included only from its own module.

  common                     (nothing)
  tlog, store, engine        common
  policy                     common, tlog
  train                      common, engine
  gap                        common, policy
  server                     all of the above
  cli                        all of the above and server

Inside src/server/ the files call each other in one direction only (docs/server.md, "Source
layout"): no cycle of calls between files, where file A calls file B when A names a function or
table that B defines without `static` (calls through an ops table are not edges: that is what
the interfaces are for).

And one way of each (docs/dev.md, Conventions): `cblas_sgemm(` is called only in
engine/blas.h (pt_sgemm), and splitmix64's constant appears only in common/rng.h.

A new folder under src/ must be added here (and to the doc) before it passes. The checker is
first run on a small tree with known faults, so a checker that finds nothing fails.
"""
import os
import re
import sys
import tempfile

ALLOWED = {
    "common": set(),
    "tlog": {"common"},
    "store": {"common"},
    "engine": {"common"},
    "policy": {"common", "tlog"},
    "train": {"common", "engine"},
    "gap": {"common", "policy"},
    "server": {"common", "tlog", "store", "engine", "policy", "train", "gap"},
    "cli": {"common", "tlog", "store", "engine", "policy", "train", "gap", "server"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
# (pattern, the one file under src/ that may contain it): the single entry points.
ONLY_IN = [
    (re.compile(r"\bcblas_sgemm\s*\("), "engine/blas.h"),
    (re.compile(r"0x9e3779b97f4a7c15", re.I), "common/rng.h"),
]


def table_is_acyclic(allowed):
    """The order itself must have no cycle (a module's allowed set, followed, never leads back)."""
    state = {}

    def visit(m):
        if state.get(m) == 1:
            return False
        if state.get(m) == 2:
            return True
        state[m] = 1
        ok = all(visit(d) for d in allowed[m])
        state[m] = 2
        return ok

    return all(visit(m) for m in allowed)


def violations(src):
    """Lines "FILE:LINE: message" for every include that breaks the order."""
    out = []
    internal = set()
    for mod in sorted(os.listdir(src)):
        d = os.path.join(src, mod)
        if not os.path.isdir(d):
            continue
        if mod not in ALLOWED:
            out.append(f"{d}: module '{mod}' is not in the module order (tests/test_module_order.py, docs/dev.md)")
            continue
        internal.update(f"{mod}/{name}" for name in os.listdir(d) if name.endswith("_internal.h"))
    for mod in sorted(ALLOWED):
        d = os.path.join(src, mod)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(d, name)
            with open(path, encoding="utf-8") as f:
                for ln, line in enumerate(f, 1):
                    for pat, home in ONLY_IN:
                        if pat.search(line) and f"{mod}/{name}" != home and not line.lstrip().startswith("*"):
                            out.append(f"{path}:{ln}: '{pat.pattern}' belongs only in src/{home}")
                    m = INCLUDE.match(line)
                    if not m or "/" not in m.group(1):
                        continue
                    inc = m.group(1)
                    dep = inc.split("/", 1)[0]
                    if dep == mod:
                        continue
                    if dep not in ALLOWED[mod]:
                        out.append(f"{path}:{ln}: {mod} includes {inc}: {mod} may include only "
                                   f"{', '.join(sorted(ALLOWED[mod])) or 'nothing'}")
                    elif inc in internal:
                        out.append(f"{path}:{ln}: {mod} includes {inc}, internal to module {dep}")
    return out


def write_file(root, rel, text):
    """Writes root/rel (making its folders): the self-checks' small trees."""
    os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
    with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
        f.write(text)


def self_check():
    """The checker finds an upward include, an internal header used from outside, and an
    unknown module; and passes a clean tree."""
    with tempfile.TemporaryDirectory() as t:
        def put(rel, text):
            write_file(t, rel, text)
        put("policy/policy.h", "/* policy.h */\n#include \"common/err.h\"\n")
        put("policy/inner_internal.h", "\n")
        put("gap/gap.h", "#include \"policy/policy.h\"\n")
        if violations(t):
            return "a clean tree was reported: " + "; ".join(violations(t))
        put("policy/history.h", "#include \"gap/gap.h\"\n")
        put("gap/gap.c", "#include \"policy/inner_internal.h\"\n")
        put("extra/x.c", "\n")
        put("gap/gemm.c", "    cblas_sgemm(CblasRowMajor, 0);\n")
        v = violations(t)
        want = ["history.h:1: policy includes gap/gap.h", "gap.c:1: gap includes policy/inner_internal.h, internal",
                "module 'extra' is not in the module order", "gemm.c:1: '\\bcblas_sgemm"]
        missing = [w for w in want if not any(w in x for x in v)]
        if missing:
            return "the checker missed: " + "; ".join(missing)
    return None


DEFINES = re.compile(r"^(?!static\b|typedef\b|extern\b|struct\b|enum\b)[A-Za-z_][\w \t\*]*?\b(\w+)\s*(\(|\[\])", re.M)
IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


# Files that make one component together (they share a private header), checked as one.
UNITS = {"http.c": "http", "http_door.c": "http", "http_head.c": "http"}  # server/http_internal.h


def call_cycle(folder):
    """A cycle of calls between the .c files of folder (UNITS merged), as ["a.c", "b.c",
    "a.c"], or None."""
    text, owner = {}, {}
    for file in sorted(os.listdir(folder)):
        if file.endswith(".c"):
            name = UNITS.get(file, file)
            with open(os.path.join(folder, file), encoding="utf-8") as f:
                text[name] = text.get(name, "") + "\n" + COMMENT.sub(" ", f.read())
            for m in DEFINES.finditer(text[name]):
                line_end = text[name].find("\n", m.end())
                rest = text[name][m.end():line_end if line_end >= 0 else None]
                if m.group(2) == "[]" or not rest.rstrip().endswith(";"):
                    owner.setdefault(m.group(1), name)
    edges = {n: sorted({owner[w] for w in set(IDENT.findall(t)) if w in owner and owner[w] != n})
             for n, t in text.items()}
    state, path = {}, []

    def visit(n):
        state[n] = 1
        path.append(n)
        for d in edges[n]:
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if not state.get(d):
                found = visit(d)
                if found:
                    return found
        state[n] = 2
        path.pop()
        return None

    for n in sorted(text):
        if not state.get(n):
            found = visit(n)
            if found:
                return found
    return None


def cycle_self_check():
    """The call-cycle check finds a circle of three files and passes a tree without one."""
    with tempfile.TemporaryDirectory() as t:
        def put(name, body):
            write_file(t, name, body)
        put("a.c", "int a_run(void) { return b_run(); }\n")
        put("b.c", "/* c_run( in a comment is no call */\nint b_run(void) { return c_table[0]; }\n")
        put("c.c", "const int c_table[] = {1};\nstatic int helper(void) { return 0; }\n")
        if call_cycle(t):
            return "a tree without a cycle was reported: %s" % call_cycle(t)
        put("c.c", "const int c_table[] = {1};\nint c_run(void) { return a_run(); }\n")
        if call_cycle(t) != ["a.c", "b.c", "c.c", "a.c"]:
            return "the cycle a.c -> b.c -> c.c -> a.c was not found: %s" % call_cycle(t)
    return None


def main():
    fail = 0
    if not table_is_acyclic(ALLOWED):
        print("FAIL - the module order has a cycle")
        fail = 1
    problem = self_check()
    if problem:
        print(f"FAIL - checker self-check: {problem}")
        fail = 1
    else:
        print("ok - checker self-check")
    src = os.path.join(os.environ.get("PARITY_SRC") or os.path.join(os.path.dirname(__file__), ".."), "src")
    v = violations(src)
    for line in v:
        print(line)
    print(("FAIL" if v else "ok") + f" - src/ follows the module order and its single entry points ({len(v)} violations)")
    problem = cycle_self_check()
    if problem:
        print(f"FAIL - call-cycle self-check: {problem}")
        fail = 1
    cycle = call_cycle(os.path.join(src, "server"))
    if cycle:
        print("FAIL - src/server/ files call each other in a circle: " + " -> ".join(cycle))
        fail = 1
    else:
        print("ok - src/server/ files call each other in one direction (no cycle)")
    return 1 if fail or v else 0


if __name__ == "__main__":
    sys.exit(main())
