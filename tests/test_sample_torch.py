"""The sampler against plain PyTorch (Debian's python3-torch).

For random logit rows and several settings, `parity sample` must give:
  - the log-softmax of the raw logits equal to torch.log_softmax;
  - the filtered distribution equal to Hugging Face's processors written out in plain torch
    (repetition penalty, temperature, top-k, top-p, min-p, in HF's order), zeros included;
  - seeded draws whose histogram fits that distribution (chi-square at p = 0.001, a fixed seed
    so the test is deterministic) and that repeat exactly for the same seed;
  - greedy (temperature 0) = argmax of the penalised logits.
"""
import json
import math
import os
import subprocess
import sys

import torch

BIN = os.environ["PARITY_BIN"]
D = os.path.join(os.environ["PARITY_BUILD"], "sample_test")
os.makedirs(D, exist_ok=True)


def reference(logits, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, penalty=1.0, seen=()):
    s = logits.clone().unsqueeze(0)
    if penalty != 1.0 and seen:
        ids = torch.tensor([list(seen)])
        score = torch.gather(s, 1, ids)
        score = torch.where(score < 0, score * penalty, score / penalty)
        s.scatter_(1, ids, score)
    if temperature == 0:
        out = torch.zeros_like(logits)
        out[int(torch.argmax(s))] = 1
        return out
    s = s / temperature
    if top_k:
        kth = torch.topk(s, min(top_k, s.size(-1)))[0][..., -1, None]
        s = s.masked_fill(s < kth, -float("inf"))
    if top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(s, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cum <= (1 - top_p)
        remove[..., -1:] = 0
        s = s.masked_fill(remove.scatter(1, sorted_idx, remove), -float("inf"))
    if min_p > 0:
        probs = torch.softmax(s, dim=-1)
        top = probs.amax(dim=-1, keepdim=True)
        s = s.masked_fill(probs < min_p * top, -float("inf"))
    return torch.softmax(s, dim=-1)[0]


def chi2_critical(df, z=3.090232):  # z for p = 0.001, Wilson-Hilferty
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def run(path, args):
    r = subprocess.run([BIN, "sample", "--logits", path] + args, capture_output=True, check=True)
    return json.loads(r.stdout)


def main():
    g = torch.Generator().manual_seed(1234)
    cases = [
        dict(temperature=1.0),
        dict(temperature=0.7, top_k=40),
        dict(temperature=1.0, top_p=0.9),
        dict(temperature=1.3, min_p=0.05),
        dict(temperature=0.8, top_k=100, top_p=0.95, min_p=0.02, penalty=1.3, seen=(0, 3, 7, 11, 500)),
        dict(temperature=0.0, penalty=1.5, seen=(1, 2, 3)),
        dict(temperature=1.0, top_k=1),
        dict(temperature=2.0, top_p=0.5),
    ]
    fails = 0
    for ci, c in enumerate(cases):
        n = 1000 if ci % 2 == 0 else 1500
        logits = torch.randn(n, generator=g) * 3
        path = os.path.join(D, "row%d.f32" % ci)
        logits.numpy().astype("<f4").tofile(path)
        args = ["--temperature", str(c.get("temperature", 1.0)), "--top-k", str(c.get("top_k", 0)),
                "--top-p", str(c.get("top_p", 1.0)), "--min-p", str(c.get("min_p", 0.0)),
                "--repetition-penalty", str(c.get("penalty", 1.0)), "--seen", ",".join(map(str, c.get("seen", ()))),
                "--seed", "42", "--draws", "6000", "--top", "5"]
        out = run(path, args)
        ref = reference(logits, c.get("temperature", 1.0), c.get("top_k", 0), c.get("top_p", 1.0),
                        c.get("min_p", 0.0), c.get("penalty", 1.0), c.get("seen", ()))
        probs = torch.tensor(out["probs"], dtype=torch.float64)
        lsm = torch.log_softmax(logits.double(), dim=-1)
        e_lp = (torch.tensor(out["logprobs"], dtype=torch.float64) - lsm).abs().max().item()
        e_p = (probs - ref.double()).abs().max().item()
        zeros_ok = bool(((probs == 0) == (ref == 0)).all())
        kept = int((ref > 0).sum())
        # chi-square over bins with expected >= 5 (the rest pooled)
        counts = torch.tensor(out["counts"], dtype=torch.float64)
        N = counts.sum().item()
        exp_ = ref.double() * N
        big = exp_ >= 5
        obs_b, exp_b = counts[big], exp_[big]
        rest_o, rest_e = counts[~big].sum().item(), exp_[~big].sum().item()
        chi = ((obs_b - exp_b) ** 2 / exp_b).sum().item()
        df = int(big.sum()) - 1
        if rest_e >= 5:
            chi += (rest_o - rest_e) ** 2 / rest_e
            df += 1
        drawn_outside = counts[ref == 0].sum().item()
        chi_ok = df == 0 or chi < chi2_critical(df)
        # log-prob of the chosen token and the top alternatives from the raw log-softmax
        lp_ok = True
        for f in out["first"]:
            lp_ok &= abs(f["logprob"] - lsm[f["token"]].item()) < 1e-4
            want_top = torch.topk(lsm, 5).indices.tolist()
            lp_ok &= [a["token"] for a in f["top"]] == want_top
        again = run(path, args[:-4] + ["--draws", "32", "--top", "5"])
        same = again["first"] == out["first"]
        ok = e_lp < 1e-5 and e_p < 2e-6 and zeros_ok and chi_ok and drawn_outside == 0 and lp_ok and same
        print("case %d %s: kept %d, |dlogprob| %.2g, |dp| %.2g, chi2 %.1f (df %d, crit %.1f)%s" %
              (ci, c, kept, e_lp, e_p, chi, df, chi2_critical(df) if df else 0, "" if ok else "  FAIL"))
        if not ok:
            print("  zeros_ok", zeros_ok, "outside", drawn_outside, "lp_ok", lp_ok, "same", same)
            fails += 1
    # a different seed gives different draws
    out2 = run(os.path.join(D, "row0.f32"), ["--seed", "43", "--draws", "1000"])
    out1 = run(os.path.join(D, "row0.f32"), ["--seed", "42", "--draws", "1000"])
    if out1["counts"] == out2["counts"]:
        print("different seeds gave identical draws")
        fails += 1
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
