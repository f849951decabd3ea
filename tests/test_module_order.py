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


def self_check():
    """The checker finds an upward include, an internal header used from outside, and an
    unknown module; and passes a clean tree."""
    with tempfile.TemporaryDirectory() as t:
        def put(rel, text):
            os.makedirs(os.path.dirname(os.path.join(t, rel)), exist_ok=True)
            with open(os.path.join(t, rel), "w", encoding="utf-8") as f:
                f.write(text)
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
    return 1 if fail or v else 0


if __name__ == "__main__":
    sys.exit(main())
