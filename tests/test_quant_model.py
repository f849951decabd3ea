# ctest-labels: slow
"""Models in Q4_0 / Q4_K / Q5_K / Q6_K run: a tiny random Llama (rows of 256 values, so every
2-D weight is whole K-quant blocks) is converted with `parity convert --dtype q4_0|q4_k|q5_k|
q6_k`; the GGUF holds those ggml types (1-D tensors F32); `parity score` (prefill: weights
converted to F32 a tile at a time) gives log-probs close to the F32 file's, closer the more
bits; `parity generate` (decode kernels, one row at a time) gives the log-probs score gives
for the same tokens; an ablation (hooks) changes the quantised model's outputs as it changes
the F32 model's; --dtype q4_k_m / q5_k_m give each tensor the type llama-quantize gives it.
The tolerances are stated at each check (measured: see the printout)."""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import formats_ref as R  # noqa: E402
from quant_common import check, summary, tiny_llama  # noqa: E402

PARITY = os.environ.get("PARITY_BIN", "build/parity")
GGML = {"q4_0": 2, "q4_k": 12, "q5_k": 13, "q6_k": 14}
# max |log-prob - F32's| allowed, and measured on this model (seed 0): see the printout
TOL = {"q4_0": 0.6, "q4_k": 0.6, "q5_k": 0.3, "q6_k": 0.1}
TOKENS = [1, 17, 42, 99, 3, 64, 5, 120, 7, 88, 11, 30]

def run(*args, isa=None):
    env = dict(os.environ, **({"PARITY_CPU_ISA": isa} if isa else {}))
    p = subprocess.run([PARITY, *args], capture_output=True, text=True, timeout=300, env=env)
    if p.returncode:
        print(p.stdout[-2000:], p.stderr[-2000:])
        raise SystemExit(f"parity {args[0]} failed ({p.returncode})")
    return p.stdout


def score(model, *extra):
    toks = ",".join(map(str, TOKENS))
    return json.loads(run("score", "-m", model, "--tokens", toks, "--json", *extra))["logprobs"][1:]


def trace_logprobs(model, *extra):
    """log-softmax of the logits hook at every position, with interventions."""
    out = os.path.join(tempfile.mkdtemp(prefix="parity-qk-t-"), "t.safetensors")
    run("trace", "-m", model, "--tokens", ",".join(map(str, TOKENS)), "--read", "logits", "-o", out, *extra)
    return R.read_safetensors(out)["logits"].float().log_softmax(-1)


def generate(model, *extra, isa=None):
    toks = ",".join(map(str, TOKENS[:4]))
    return json.loads(run("generate", "-m", model, "--tokens", toks, "--max-tokens", "8", "--ignore-eos", "--json",
                          *extra, isa=isa))


def main():
    tmp = tempfile.mkdtemp(prefix="parity-qk-")
    d = os.path.join(tmp, "m")
    tiny_llama(d)
    f32 = os.path.join(tmp, "f32.gguf")
    run("convert", d, f32, "--dtype", "f32", "--quiet")
    ref = score(f32)
    ablate = ["--ablate", "blocks.1.hook_mlp_out"]
    ref_ab, ref_plain = trace_logprobs(f32, *ablate), trace_logprobs(f32)
    for dt, gt in GGML.items():
        g = os.path.join(tmp, dt + ".gguf")
        run("convert", d, g, "--dtype", dt, "--quiet")
        kv, tensors, _, _ = R.read_gguf(g)
        types = {n: t["type"] for n, t in tensors.items()}
        check(all(t == gt for n, t in types.items() if n.endswith(".weight") and "norm" not in n),
              f"{dt}: every 2-D weight is ggml type {gt}")
        check(all(t == 0 for n, t in types.items() if "norm" in n), f"{dt}: norms are F32")
        lp = score(g)
        err = max(abs(a - b) for a, b in zip(lp, ref))
        print(f"{dt}: max |log-prob - F32's| = {err:.4f} over {len(lp)} tokens")
        check(err < TOL[dt], f"{dt}: score within {TOL[dt]} of F32's")
        gen = generate(g)
        toks = gen["tokens"]
        lp_dec = gen["logprobs"]
        full = TOKENS[:4] + toks
        lp_pre = json.loads(run("score", "-m", g, "--tokens", ",".join(map(str, full)), "--json"))["logprobs"][4:]
        derr = max(abs(a - b) for a, b in zip(lp_dec, lp_pre))
        print(f"{dt}: decode vs prefill log-probs: max diff {derr:.2e}")
        check(len(toks) == 8 and derr < 1e-3, f"{dt}: generate (decode kernels) agrees with score (prefill)")
        for isa in ("scalar", "avx2"):  # (an ISA the CPU lacks falls back to the best it has)
            other = generate(g, isa=isa)
            oerr = max(abs(a - b) for a, b in zip(other["logprobs"], lp_dec))
            check(other["tokens"] == toks and oerr < 1e-3, f"{dt}: decode with PARITY_CPU_ISA={isa} agrees ({oerr:.1e})")
        ab, plain = trace_logprobs(g, *ablate), trace_logprobs(g)
        moved = (ab - plain).abs().max().item()
        # the ablation's effect on every log-prob of the vocabulary, against its effect on F32
        effect_err = ((ab - plain) - (ref_ab - ref_plain)).abs().max().item()
        check(moved > 0.5 and effect_err < TOL[dt] * 2, f"{dt}: ablating blocks.1.hook_mlp_out moves log-probs by up "
              f"to {moved:.3f}, as on F32 within {effect_err:.3f} (< {TOL[dt] * 2})")
    # llama.cpp's mixes (llama-quant.cpp, llama_tensor_get_type for a dense Llama without an
    # importance matrix): output Q6_K; attn_v and ffn_down Q6_K where use_more_bits(layer)
    def more(i, n):
        return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2
    for mix, base, ftype, tol in (("q4_k_m", 12, 15, TOL["q4_k"]), ("q5_k_m", 13, 17, TOL["q5_k"])):
        g = os.path.join(tmp, mix + ".gguf")
        run("convert", d, g, "--dtype", mix, "--quiet")
        kv, tensors, _, _ = R.read_gguf(g)
        want = {}
        for n in tensors:
            if "norm" in n:
                want[n] = 0
            elif n == "output.weight":
                want[n] = 14
            elif ".attn_v." in n or ".ffn_down." in n:
                want[n] = 14 if more(int(n.split(".")[1]), 2) else base
            else:
                want[n] = base
        got = {n: t["type"] for n, t in tensors.items()}
        check(got == want and kv["general.file_type"][1] == ftype,
              f"{mix}: per-tensor types and file_type {ftype} as llama-quantize chooses them")
        if got != want:
            print({n: (got[n], want[n]) for n in got if got[n] != want[n]})
        err = max(abs(a - b) for a, b in zip(score(g), ref))
        print(f"{mix}: max |log-prob - F32's| = {err:.4f}")
        check(err < tol, f"{mix}: score within {tol} of F32's")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
