"""parity trace against the plain-PyTorch reference (tests/ref/ref_model.py): every hook point
and the logits of random-init Llama and GPT-2 models of several shapes (GQA, untied/tied,
head_dim != d/heads, biases, odd vocabularies), in F32, F16 and BF16; interventions (add, set,
ablate) against the same edits in the reference; activation patching."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ.get("PARITY_SRC", os.path.dirname(__file__) + "/.."), "tests", "ref"))
import torch  # noqa: E402
from checks import Checks, compare_caches, rel_err  # noqa: E402
from ref_model import (Hooks, forward, gpt2_config, llama_config, read_safetensors,  # noqa: E402
                       write_model, write_safetensors)

torch.set_num_threads(1)
PARITY = os.environ.get("PARITY_BIN", "build/parity")
TOL = 1e-4
check = Checks()


def trace(model, tokens, reads, extra=()):
    out = os.path.join(tmp, "out.safetensors")
    cmd = [PARITY, "trace", "-m", model, "--tokens", ",".join(map(str, tokens)), "-o", out] + list(extra)
    for r in reads:
        cmd += ["--read", r]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        print(" ".join(cmd), "\n", p.stderr)
        raise SystemExit(1)
    return read_safetensors(out)


def compare_all(name, cfg, model, w, tokens, ivs=(), extra=(), tol=TOL):
    _, ref = forward(cfg, w, tokens, Hooks(ivs))
    got = trace(model, tokens, ["all"], extra)
    compare_caches(check, name, got, ref.cache, tol)
    return got, ref


tmp = tempfile.mkdtemp(prefix="parity-engine-ref-")
g = torch.Generator().manual_seed(1)

shapes = [
    ("llama-gqa-untied", llama_config(1000, 64, 2, 4, 2, 16, 96)),
    ("llama-hd!=d/h-tied-bias", llama_config(1000, 48, 2, 4, 4, 16, 80, tie=True, bias=True, theta=500000.0)),
    ("llama-mqa-v517", llama_config(517, 64, 3, 8, 1, 8, 128)),
    ("gpt2-prefixed", gpt2_config(1000, 64, 2, 4)),
    ("gpt2-ninner-v517", gpt2_config(517, 48, 3, 3, d_ff=100)),
    ("gpt2-1layer", gpt2_config(1000, 96, 1, 6)),
]
models = {}
for i, (name, cfg) in enumerate(shapes):
    d = os.path.join(tmp, name)
    w = write_model(d, cfg, "F32", seed=i, prefix="transformer." if i != 4 else "")
    models[name] = (cfg, d, w)
    # 11 tokens: sgemm matmuls, per-row attention; 40 tokens: sgemm attention too.
    tokens = torch.randint(0, cfg["vocab_size"], (11 if i % 2 else 40,), generator=g).tolist()
    compare_all(name + f" F32 T={len(tokens)}", cfg, d, w, tokens)

for dt in ("F16", "BF16"):
    for name in ("llama-gqa-untied", "gpt2-prefixed"):
        cfg = models[name][0]
        d = os.path.join(tmp, f"{name}-{dt}")
        w = write_model(d, cfg, dt, seed=7)
        # The engine computes in F32 from the stored F16/BF16 weights; the reference uses the
        # same rounded weights, so the F32 tolerance holds. 5 tokens: the weight-streaming
        # (decode) kernels; 20: weights converted in tiles for sgemm.
        for n in (5, 20):
            tokens = torch.randint(0, cfg["vocab_size"], (n,), generator=g).tolist()
            compare_all(f"{name} {dt} T={n}", cfg, d, w, tokens)

# Interventions, against the same edits in the reference.
for name in ("llama-gqa-untied", "gpt2-prefixed"):
    cfg, d, w = models[name]
    dm = cfg.get("hidden_size", cfg.get("n_embd"))
    tokens = torch.randint(0, cfg["vocab_size"], (8,), generator=g).tolist()
    steer = torch.randn(dm, generator=g)
    write_safetensors(os.path.join(tmp, "steer.safetensors"), {"v": steer})
    compare_all(f"{name} add", cfg, d, w, tokens, [("blocks.1.hook_resid_pre", "add", steer, 3.0, None, False)],
                ["--add", "blocks.1.hook_resid_pre=" + os.path.join(tmp, "steer.safetensors") + ":3"])
    H, hd = (cfg["num_attention_heads"], cfg["head_dim"]) if "head_dim" in cfg else (cfg["n_head"], dm // cfg["n_head"])
    zfull = torch.randn(len(tokens), H, hd, generator=g)
    write_safetensors(os.path.join(tmp, "z.safetensors"), {"blocks.0.attn.hook_z": zfull})
    spec = {"interventions": [
        {"hook": "blocks.0.attn.hook_z", "op": "set", "file": "z.safetensors", "positions": [2, 3]},
        {"hook": "blocks.0.mlp.hook_post", "op": "ablate", "mode": "mean"},
        {"hook": "blocks.1.attn.hook_v", "op": "ablate", "positions": [0]},
        {"hook": "hook_embed", "op": "add", "values": steer.tolist(), "scale": -0.5, "positions": [1, 5]},
    ]}
    with open(os.path.join(tmp, "spec.json"), "w") as f:
        json.dump(spec, f)
    compare_all(f"{name} set+ablate+add(spec)", cfg, d, w, tokens,
                [("blocks.0.attn.hook_z", "set", zfull, 1.0, [2, 3], False),
                 ("blocks.0.mlp.hook_post", "ablate", None, 1.0, None, True),
                 ("blocks.1.attn.hook_v", "ablate", None, 1.0, [0], False),
                 ("hook_embed", "add", steer, -0.5, [1, 5], False)],
                ["--spec", os.path.join(tmp, "spec.json")])
    # Patching: the clean run's blocks.0.hook_resid_pre into a corrupted run reproduces the
    # clean logits.
    clean = tokens
    corrupt = [(t + 1) % cfg["vocab_size"] for t in tokens]
    c = trace(d, clean, ["blocks.0.hook_resid_pre", "logits"])
    write_safetensors(os.path.join(tmp, "clean.safetensors"), {"blocks.0.hook_resid_pre": c["blocks.0.hook_resid_pre"]})
    p = trace(d, corrupt, ["logits"], ["--set", "blocks.0.hook_resid_pre=" + os.path.join(tmp, "clean.safetensors")])
    u = trace(d, corrupt, ["logits"])
    e = rel_err(p["logits"], c["logits"])
    check(e <= 1e-6, f"{name}: patched logits differ from clean by {e:.2e}")
    check(rel_err(u["logits"], c["logits"]) > 1e-3, f"{name}: corrupted run should differ from clean")
    print(f"{name} patching: relative difference to clean logits {e:.2e}")

# Bad input: clear errors, no crash.
cfg, d, w = models["llama-gqa-untied"]
for args, needle in [
    (["--tokens", "1,2,1000", "--read", "logits"], "out of range"),
    (["--tokens", ",".join(["1"] * 300), "--read", "logits"], "context length"),
    (["--tokens", "1,2", "--read", "blocks.9.hook_resid_pre"], "valid hooks"),
    (["--tokens", "1,2", "--read", "blocks.0.hook_nope"], "unknown hook"),
    (["--tokens", "1,x", "--read", "logits"], "integers"),
]:
    p = subprocess.run([PARITY, "trace", "-m", d, "-o", os.path.join(tmp, "x.safetensors")] + args,
                       capture_output=True, text=True)
    check(p.returncode in (1, 2) and needle in p.stderr, f"bad input {args[:2]}: rc {p.returncode} {p.stderr!r}")
# a mis-shaped tensor names itself
bad = os.path.join(tmp, "bad")
wb = write_model(bad, llama_config(100, 32, 1, 2, 2, 16, 64), "F32")
from ref_model import random_weights  # noqa: E402
rw = random_weights(llama_config(100, 32, 1, 2, 2, 16, 64))
rw["model.layers.0.mlp.up_proj.weight"] = torch.zeros(63, 32)
write_safetensors(os.path.join(bad, "model.safetensors"), rw)
p = subprocess.run([PARITY, "trace", "-m", bad, "--tokens", "1", "--read", "logits", "-o", os.path.join(tmp, "x.st")],
                   capture_output=True, text=True)
check(p.returncode == 1 and "model.layers.0.mlp.up_proj.weight" in p.stderr and "[63, 32]" in p.stderr,
      f"mis-shaped tensor: {p.stderr!r}")
del rw["model.layers.0.mlp.up_proj.weight"]
write_safetensors(os.path.join(bad, "model.safetensors"), rw)
p = subprocess.run([PARITY, "trace", "-m", bad, "--tokens", "1", "--read", "logits", "-o", os.path.join(tmp, "x.st")],
                   capture_output=True, text=True)
check(p.returncode == 1 and "missing tensor 'model.layers.0.mlp.up_proj.weight'" in p.stderr, f"missing: {p.stderr!r}")

# every engine command answers --help
for cmd in ("trace", "generate", "score", "info", "bench"):
    p = subprocess.run([PARITY, cmd, "--help"], capture_output=True, text=True)
    check(p.returncode == 0 and "usage: parity " + cmd in p.stdout, f"{cmd} --help")
p = subprocess.run([PARITY, "bench", "-m", models["gpt2-prefixed"][1], "--prefill", "8", "--decode", "4", "--batch", "3"],
                   capture_output=True, text=True)
check(p.returncode == 0 and "decode, 3 sequences together:" in p.stdout, f"bench --batch: {p.stdout!r} {p.stderr!r}")
p = subprocess.run([PARITY, "bench", "-m", models["gpt2-prefixed"][1], "--prefill", "8", "--decode", "4", "--hooks", "16"],
                   capture_output=True, text=True)
check(p.returncode == 0 and "residual-stream hooks" in p.stdout and "steering vector" in p.stdout,
      f"bench --hooks: {p.stdout!r} {p.stderr!r}")
p = subprocess.run([PARITY, "bench", "-m", models["gpt2-prefixed"][1], "--batch", "0"], capture_output=True, text=True)
check(p.returncode == 2 and "--batch" in p.stderr, f"bench --batch 0 is a usage error: {p.stderr!r}")
p = subprocess.run([PARITY, "info", "-m", models["gpt2-prefixed"][1]], capture_output=True, text=True)
check(p.returncode == 0 and "hook_pos_embed" in p.stdout and "gpt2" in p.stdout, "info")
p = subprocess.run([PARITY, "score", "-m", models["gpt2-prefixed"][1], "--tokens", "5,6,7", "--json"],
                   capture_output=True, text=True)
sc = json.loads(p.stdout)
cfg, d, w = models["gpt2-prefixed"]
lg, _ = forward(cfg, w, [5, 6, 7])
lp = torch.log_softmax(lg.double(), -1)
check(abs(sc["logprobs"][1] - lp[0, 6].item()) < 1e-4 and abs(sc["logprobs"][2] - lp[1, 7].item()) < 1e-4,
      f"score log-probs {sc} vs reference")
p = subprocess.run([PARITY, "generate", "-m", d, "--tokens", "5,6,7", "--max-tokens", "4", "--json"],
                   capture_output=True, text=True)
gen = json.loads(p.stdout)["tokens"]
seq = [5, 6, 7]
for _ in range(4):
    lg, _ = forward(cfg, w, seq)
    seq.append(int(lg[-1].argmax()))
check(gen == seq[3:], f"greedy generation {gen} vs reference {seq[3:]}")

import shutil  # noqa: E402
shutil.rmtree(tmp, ignore_errors=True)
sys.exit(check.summary("test_engine_ref"))
