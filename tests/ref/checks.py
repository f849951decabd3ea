"""Counting checks and the relative error the reference tests share."""


class Checks:
    def __init__(self):
        self.failures = self.count = 0

    def __call__(self, cond, what):
        self.count += 1
        if not cond:
            self.failures += 1
            print("FAIL:", what)

    def summary(self, name):
        print(f"{name}: {self.count - self.failures} passed, {self.failures} failed")
        return 1 if self.failures else 0


def rel_err(a, b):
    """max |a - b| / max |b| (1 when b is all zeros)."""
    scale = b.abs().max().item() or 1.0
    return (a - b).abs().max().item() / scale


def compare_caches(check, name, got, want, tol):
    """Every tensor of want (hook name -> tensor) against got: the same names, shapes, and a
    relative error within tol. Prints the worst."""
    check(set(got) == set(want), f"{name}: hook set differs: {sorted(set(got) ^ set(want))}")
    worst = (-1.0, "")
    for k, v in want.items():
        if k not in got:
            continue
        if tuple(got[k].shape) != tuple(v.shape):
            check(False, f"{name}: {k} shape {tuple(got[k].shape)} != {tuple(v.shape)}")
            continue
        e = rel_err(got[k], v)
        worst = max(worst, (e, k))
        check(e <= tol, f"{name}: {k} relative error {e:.2e} > {tol}")
    print(f"{name}: {len(want)} hooks, worst relative error {worst[0]:.2e} ({worst[1]})")
