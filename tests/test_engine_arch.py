"""The Llama-family variants against the plain-PyTorch reference (tests/ref/ref_model.py):
rope_scaling (llama3, linear, dynamic, yarn), Qwen2 (q/k/v biases, no o bias), Qwen3
(per-head q/k RMSNorm, explicit head_dim), Mistral (sliding-window attention), with random
small weights: every hook point of a trace, greedy generation and score log-probs, Qwen2/Qwen3
through GGUF with llama.cpp's naming; and clear errors for what is not supported yet.
Gemma 2, Gemma 3 (text) and Phi-3 against the float64 reference of tests/ref/ref_families.py:
every hook (with Gemma's ln1_post/ln2_post), interventions on the new hooks, generation,
log-probs, GGUF with llama.cpp's gemma2/gemma3/phi3 naming and back to HF."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ.get("PARITY_SRC", os.path.dirname(__file__) + "/.."), "tests", "ref"))
import torch  # noqa: E402
from checks import Checks, compare_caches, rel_err  # noqa: E402
from ref_model import Hooks, forward, llama_config, qwen_config, read_safetensors, write_model  # noqa: E402
from ref_model import write_safetensors  # noqa: E402
import ref_families as fam  # noqa: E402

torch.set_num_threads(1)
PARITY = os.environ.get("PARITY_BIN", "build/parity")
TOL = 1e-4
check = Checks()


def run(args):
    return subprocess.run([PARITY] + args, capture_output=True, text=True)


def compare_all(name, cfg, model, w, tokens, fwd=forward, ivs=(), extra=()):
    _, ref = fwd(cfg, w, tokens, Hooks(ivs))
    out = os.path.join(tmp, "out.safetensors")
    p = run(["trace", "-m", model, "--tokens", ",".join(map(str, tokens)), "-o", out, "--read", "all"] + list(extra))
    if p.returncode:
        check(False, f"{name}: trace failed: {p.stderr}")
        return
    got = read_safetensors(out)
    compare_caches(check, name, got, ref.cache, TOL)


def check_generate_score(name, cfg, model, w, forward=forward):
    """Greedy generation (prefill, then decode through the KV cache) and log-probs."""
    prompt = [5, 6, 7, 8]
    p = run(["generate", "-m", model, "--tokens", ",".join(map(str, prompt)), "--max-tokens", "5", "--json"])
    gen = json.loads(p.stdout)["tokens"] if p.returncode == 0 else p.stderr
    seq = list(prompt)
    for _ in range(5):
        lg, _ = forward(cfg, w, seq)
        seq.append(int(lg[-1].argmax()))
    check(gen == seq[len(prompt):], f"{name}: greedy generation {gen} vs reference {seq[len(prompt):]}")
    p = run(["score", "-m", model, "--tokens", ",".join(map(str, seq)), "--json"])
    sc = json.loads(p.stdout) if p.returncode == 0 else {"logprobs": []}
    lp = torch.log_softmax(forward(cfg, w, seq)[0].double(), -1)
    want = [lp[i - 1, seq[i]].item() for i in range(1, len(seq))]
    got = sc["logprobs"][1:]
    check(len(got) == len(want) and all(abs(a - b) < 1e-4 for a, b in zip(got, want)),
          f"{name}: score log-probs {got} vs reference {want}")


tmp = tempfile.mkdtemp(prefix="parity-engine-arch-")
g = torch.Generator().manual_seed(3)


def scaled(rs, **kw):
    c = llama_config(700, 64, 2, 4, 2, 16, 96, theta=kw.pop("theta", 10000.0))
    c.update(kw)
    c["rope_scaling"] = rs
    return c


cases = [
    # Llama 3.1's own shape of rope_scaling (8192 -> long context), scaled down: with an
    # original context of 32 and head_dim 16, frequencies fall in all three bands.
    ("llama3-rope", scaled({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 32}, theta=500000.0)),
    ("linear-rope", scaled({"type": "linear", "factor": 4.0})),
    # dynamic NTK: past the original context of 24 positions the base grows with the length.
    ("dynamic-rope", scaled({"rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 24})),
    # yarn with factor = max_position_embeddings / original (as Qwen's long-context configs).
    ("yarn-rope", scaled({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})),
    ("yarn-rope-attn-factor", scaled({"rope_type": "yarn", "factor": 2.0, "attention_factor": 1.3,
                                      "beta_fast": 16, "beta_slow": 2})),
    ("qwen2-untied", qwen_config("qwen2", 600, 64, 2, 4, 2, 96)),
    ("qwen2-tied-mqa", qwen_config("qwen2", 600, 48, 2, 4, 1, 80, tie=True, theta=1000000.0)),
    ("qwen3-hd!=d/h", qwen_config("qwen3", 600, 48, 2, 4, 2, 80, head_dim=16)),
    # windows of 3 and 8 positions: T=40 runs the sgemm (prefill) attention, T=7 and the
    # generation's decode steps the per-row one, reading the KV cache past the window.
    ("mistral-window3", dict(llama_config(600, 64, 2, 4, 2, 16, 96), model_type="mistral", sliding_window=3)),
    ("mistral-window8-gqa", dict(llama_config(600, 64, 2, 8, 2, 8, 96), model_type="mistral", sliding_window=8)),
    ("qwen3-tied-yarn", dict(qwen_config("qwen3", 600, 64, 2, 4, 4, 96, tie=True),
                             rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                           "original_max_position_embeddings": 64})),
]
weights = {}
for i, (name, cfg) in enumerate(cases):
    d = os.path.join(tmp, name)
    w = weights[name] = write_model(d, cfg, "F32", seed=10 + i)
    for n in (7, 40):  # decode kernels and per-row attention; sgemm
        tokens = torch.randint(0, cfg["vocab_size"], (n,), generator=g).tolist()
        compare_all(f"{name} T={n}", cfg, d, w, tokens)
    if name != "dynamic-rope":  # its cached keys keep the frequencies they were written with
        check_generate_score(name, cfg, d, w)
    if name == "qwen3-hd!=d/h":
        p = run(["info", "-m", d])
        check(p.returncode == 0 and "qwen3" in p.stdout and "q_norm.hook_normalized" in p.stdout,
              f"info names the family and the q/k norm hooks: {p.stdout!r}")
    if name == "qwen3-tied-yarn":
        # HF -> HF (BF16) keeps the family and rope_scaling; GGUF is refused until its naming is done.
        out = os.path.join(tmp, "conv")
        p = run(["convert", d, out, "--dtype", "bf16", "--quiet"])
        with open(os.path.join(out, "config.json")) as f:
            cc = json.load(f)
        check(p.returncode == 0 and cc["model_type"] == "qwen3" and cc["rope_scaling"]["rope_type"] == "yarn",
              f"convert to hf: {p.stderr!r} {cc}")
        p = run(["info", "-m", out])
        check(p.returncode == 0 and "rope_scaling yarn" in p.stdout, f"info of the converted model: {p.stdout!r}")
        p = run(["convert", d, os.path.join(tmp, "q.gguf"), "--quiet"])
        check(p.returncode != 0 and "rope_scaling" in p.stderr, f"convert qwen3+yarn to gguf: {p.stderr!r}")
    if name.startswith("mistral-window"):
        p = run(["convert", d, os.path.join(tmp, "m.gguf"), "--quiet"])
        check(p.returncode != 0 and "sliding window" in p.stderr, f"convert windowed mistral to gguf: {p.stderr!r}")
    if name.startswith("qwen") and "rope_scaling" not in cfg:
        # GGUF with llama.cpp's qwen2/qwen3 naming (general.architecture, blk.N.attn_q.bias,
        # blk.N.attn_q_norm.weight, q/k unpermuted), read back: the same hooks; and back to HF.
        gg = os.path.join(tmp, name + ".gguf")
        p = run(["convert", d, gg, "--quiet"])
        check(p.returncode == 0, f"{name}: convert to gguf: {p.stderr!r}")
        with open(gg, "rb") as f:
            head = f.read(1 << 16)
        check(cfg["model_type"].encode() in head and b"blk.0.attn_q.bias" in head if name.startswith("qwen2")
              else b"blk.0.attn_q_norm.weight" in head, f"{name}: llama.cpp names in the GGUF")
        compare_all(f"{name} GGUF T=12", cfg, gg, w, torch.randint(0, cfg["vocab_size"], (12,), generator=g).tolist())
        back = os.path.join(tmp, name + "-back")
        p = run(["convert", gg, back, "--quiet"])
        with open(os.path.join(back, "config.json")) as f:
            cb = json.load(f)
        check(p.returncode == 0 and cb["model_type"] == cfg["model_type"], f"{name}: gguf -> hf: {p.stderr!r} {cb}")
    if name == "qwen2-untied":
        p = run(["trace", "-m", d, "--tokens", "1,2", "--read", "blocks.0.attn.q_norm.hook_normalized",
                 "-o", os.path.join(tmp, "x.st")])
        check(p.returncode != 0 and "unknown hook" in p.stderr, f"q_norm hook on qwen2: {p.stderr!r}")

# dynamic NTK below its original context is plain RoPE: the same logits as the unscaled model.
cfg_plain = llama_config(700, 64, 2, 4, 2, 16, 96)
wd = write_model(os.path.join(tmp, "plain"), cfg_plain, "F32", seed=12)
tokens = torch.randint(0, 700, (20,), generator=g).tolist()
a, _ = forward(cfg_plain, wd, tokens)
b, _ = forward(cases[2][1], wd, tokens)
check(rel_err(a, b) < 1e-6, "reference: dynamic rope under the original context is plain RoPE")
# ... and every scaling changes the logits of a long enough sequence (the checks above can fail).
tokens = torch.randint(0, 700, (40,), generator=g).tolist()
a, _ = forward(cfg_plain, wd, tokens)
for name, cfg in cases[:5]:
    check(rel_err(forward(cfg, wd, tokens)[0], a) > 1e-3, f"reference: {name} changes the logits")
mc = dict(cases[8][1])
tokens = [t % 600 for t in tokens]
a, _ = forward(mc, weights["mistral-window3"], tokens)
mc["sliding_window"] = None
check(rel_err(forward(mc, weights["mistral-window3"], tokens)[0], a) > 1e-3, "reference: the window changes the logits")

# Configurations not supported yet: clear errors that name the field.
bad = [
    (dict(cases[0][1], rope_scaling={"rope_type": "longrope", "factor": 2.0}), "short_factor"),
    (dict(cases[0][1], rope_scaling={"rope_type": "ntk-by-parts", "factor": 2.0}), "ntk-by-parts"),
    (dict(cases[0][1], rope_scaling={"rope_type": "llama3", "factor": 8.0}), "original_max_position_embeddings"),
    (dict(cases[0][1], rope_scaling={"rope_type": "linear", "factor": "x"}), "factor"),
    (dict(cases[5][1], use_sliding_window=True), "use_sliding_window"),
    (dict(cases[5][1], model_type="mistral", sliding_window=0), "sliding_window"),
    (dict(cases[5][1], model_type="gemma9"), "gemma9"),
]
for cfg, needle in bad:
    d = os.path.join(tmp, "bad")
    write_model(d, cases[0][1] if cfg["model_type"] == "llama" else cases[5][1], "F32")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    p = run(["trace", "-m", d, "--tokens", "1", "--read", "logits", "-o", os.path.join(tmp, "x.st")])
    check(p.returncode in (1, 2) and needle in p.stderr, f"bad config ({needle}): rc {p.returncode} {p.stderr!r}")

# ---- Gemma 2, Gemma 3, Phi-3 -----------------------------------------------------------
# Soft-caps of 1 and 2 (Gemma 2's real 50 and 30 would leave these small scores untouched),
# windows of 3 positions (T=40 crosses them in prefill, generation in decode).
G2 = fam.gemma_config("gemma2", 300, 64, 2, 4, 2, 16, 96, 3, attn_logit_softcapping=1.0, final_logit_softcapping=2.0)
G3 = fam.gemma_config("gemma3_text", 300, 64, 6, 4, 2, 16, 96, 3)
P3 = fam.phi3_config(300, 64, 2, 4, 2, 96)
family_cases = [
    ("gemma2", G2),
    # query_pre_attn_scalar other than head_dim; BF16 weights and torch_dtype: √48 is rounded
    # to BF16 (6.9375) as transformers multiplies by a tensor of the model's dtype.
    ("gemma2-qpas24-bf16", dict(fam.gemma_config("gemma2", 300, 48, 2, 4, 1, 16, 80, 4, attn_logit_softcapping=1.0),
                                query_pre_attn_scalar=24, torch_dtype="bfloat16")),
    ("gemma3", G3),
    # a global layer every third (layer_types), linear rope_scaling on the global layers only,
    # local layers on their own base
    ("gemma3-types-linear", dict(fam.gemma_config("gemma3_text", 300, 64, 3, 4, 4, 16, 96, 4),
                                 layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                                 rope_scaling={"rope_type": "linear", "factor": 4.0}, rope_local_base_freq=500.0)),
    ("phi3", P3),
    ("phi3-window5-tied", fam.phi3_config(300, 64, 2, 8, 2, 96, sliding_window=5, tie_word_embeddings=True)),
    # Phi-3 128k's longrope, scaled down: an original context of 16, so T=7 (and generation)
    # rotates by the short factors, T=40 by the long ones, both × √(1 + ln 16 / ln 16)
    ("phi3-longrope", fam.phi3_config(300, 64, 2, 4, 4, 96, original_max_position_embeddings=16, rope_scaling={
        "type": "longrope", "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.0, 3.5],
        "long_factor": [1.0, 1.5, 2.5, 4.0, 6.0, 9.0, 12.0, 16.0]})),
]
fam_weights = {}
for i, (name, cfg) in enumerate(family_cases):
    d = os.path.join(tmp, name)
    w = fam_weights[name] = fam.write_model(d, cfg, "BF16" if "bf16" in name else "F32", seed=30 + i)
    for n in (7, 40):
        tokens = torch.randint(0, cfg["vocab_size"], (n,), generator=g).tolist()
        compare_all(f"{name} T={n}", cfg, d, w, tokens, fam.forward)
    check_generate_score(name, cfg, d, w, fam.forward)

# Interventions on Gemma's own hooks and on the hooks whose meaning the post-norms change.
d, w = os.path.join(tmp, "gemma2"), fam_weights["gemma2"]
tokens = torch.randint(0, 300, (9,), generator=g).tolist()
steer = torch.randn(64, generator=g)
write_safetensors(os.path.join(tmp, "steer.safetensors"), {"v": steer})
spec = {"interventions": [
    {"hook": "blocks.0.ln1_post.hook_normalized", "op": "add", "values": steer.tolist(), "scale": 0.5},
    {"hook": "blocks.1.ln2_post.hook_normalized", "op": "ablate", "mode": "mean", "positions": [1, 2, 3]},
    {"hook": "blocks.0.hook_mlp_out", "op": "ablate", "positions": [4]},
    {"hook": "blocks.1.mlp.hook_post", "op": "add", "values": torch.ones(96).tolist(), "scale": 0.1}]}
with open(os.path.join(tmp, "spec.json"), "w") as f:
    json.dump(spec, f)
compare_all("gemma2 interventions", G2, d, w, tokens, fam.forward,
            [("blocks.0.ln1_post.hook_normalized", "add", steer, 0.5, None, False),
             ("blocks.1.ln2_post.hook_normalized", "ablate", None, 1.0, [1, 2, 3], True),
             ("blocks.0.hook_mlp_out", "ablate", None, 1.0, [4], False),
             ("blocks.1.mlp.hook_post", "add", torch.ones(96), 0.1, None, False)],
            ["--spec", os.path.join(tmp, "spec.json")])
compare_all("phi3 add", P3, os.path.join(tmp, "phi3"), fam_weights["phi3"], tokens, fam.forward,
            [("blocks.1.hook_resid_pre", "add", steer, 3.0, None, False)],
            ["--add", "blocks.1.hook_resid_pre=" + os.path.join(tmp, "steer.safetensors") + ":3"])
p = run(["trace", "-m", os.path.join(tmp, "phi3"), "--tokens", "1,2", "--read", "blocks.0.ln1_post.hook_normalized",
         "-o", os.path.join(tmp, "x.st")])
check(p.returncode != 0 and "unknown hook" in p.stderr, f"ln1_post hook on phi3: {p.stderr!r}")
p = run(["info", "-m", os.path.join(tmp, "gemma3")])
check(p.returncode == 0 and "gemma3_text" in p.stdout and "ln2_post.hook_normalized" in p.stdout and
      "sliding window 3 positions on 5 of 6 layers" in p.stdout, f"info of gemma3: {p.stdout!r}")

# GGUF with llama.cpp's names and keys (norms written as 1 + w, Phi-3's fused matrices kept
# fused), read back: the same hooks; and back to HF.
for name, cfg, needles in [
        ("gemma2", G2, [b"gemma2", b"blk.0.post_attention_norm.weight", b"blk.0.post_ffw_norm.weight",
                        b"gemma2.attn_logit_softcapping", b"gemma2.attention.sliding_window"]),
        ("gemma3", G3, [b"gemma3", b"blk.0.attn_q_norm.weight", b"blk.0.post_ffw_norm.weight"]),
        ("phi3", P3, [b"phi3", b"blk.0.attn_qkv.weight", b"blk.1.ffn_up.weight"])]:
    d, w = os.path.join(tmp, name), fam_weights[name]
    gg = os.path.join(tmp, name + ".gguf")
    p = run(["convert", d, gg, "--quiet"])
    check(p.returncode == 0, f"{name}: convert to gguf: {p.stderr!r}")
    with open(gg, "rb") as f:
        head = f.read(1 << 16)
    check(all(n in head for n in needles), f"{name}: llama.cpp names and keys in the GGUF")
    tokens = torch.randint(0, 300, (12,), generator=g).tolist()
    compare_all(f"{name} GGUF T=12", cfg, gg, w, tokens, fam.forward)
    if name == "gemma2":  # a hostile value in a key parity reads: an error naming it
        key = b"gemma2.attn_logit_softcapping"
        at = head.index(key) + len(key)
        with open(gg, "rb") as f:
            raw = bytearray(f.read())
        raw[at + 4:at + 8] = struct.pack("<f", -1.0)
        with open(os.path.join(tmp, "neg.gguf"), "wb") as f:
            f.write(raw)
        p = run(["trace", "-m", os.path.join(tmp, "neg.gguf"), "--tokens", "1", "--read", "logits", "-o",
                 os.path.join(tmp, "x.st")])
        check(p.returncode == 1 and "attn_logit_softcapping" in p.stderr, f"negative soft-cap in GGUF: {p.stderr!r}")
    back = os.path.join(tmp, name + "-back")
    p = run(["convert", gg, back, "--quiet"])
    check(p.returncode == 0, f"{name}: gguf -> hf: {p.stderr!r}")
    if p.returncode == 0:
        with open(os.path.join(back, "config.json")) as f:
            check(json.load(f)["model_type"] == cfg["model_type"], f"{name}: model_type kept")
        # GGUF stores Gemma's norms as 1 + w rounded to F32; transformers computes the same
        # 1.0 + w.float() at run time, so what is multiplied by is bit-identical either way.
        back_w = read_safetensors(os.path.join(back, "model.safetensors"))
        same = set(back_w) == set(w) and all(
            torch.equal(back_w[k] + 1, w[k] + 1) if k.endswith("norm.weight") and name != "phi3"
            else torch.equal(back_w[k], w[k]) for k in w)
        check(same, f"{name}: HF -> GGUF -> HF gives back the same tensors (Gemma's 1 + w the same in F32)")

# The reference's features matter (so the checks above can fail): soft-capping, (1 + w),
# the window, Gemma 3's local base, Phi-3's gate/up order.
tokens = torch.randint(0, 300, (30,), generator=g).tolist()
a = fam.forward(G2, fam_weights["gemma2"], tokens)[0]
for what, cfg in [("attention soft-cap", dict(G2, attn_logit_softcapping=None)),
                  ("final soft-cap", dict(G2, final_logit_softcapping=None)),
                  ("window", dict(G2, sliding_window=None)),
                  ("query_pre_attn_scalar", dict(G2, query_pre_attn_scalar=64))]:
    check(rel_err(fam.forward(cfg, fam_weights["gemma2"], tokens)[0], a) > 1e-3, f"reference: gemma2 {what} matters")
a = fam.forward(G3, fam_weights["gemma3"], tokens)[0]
check(rel_err(fam.forward(dict(G3, rope_local_base_freq=1e6), fam_weights["gemma3"], tokens)[0], a) > 1e-3,
      "reference: gemma3's local rope base matters")
cb = family_cases[1][1]
check(rel_err(fam.forward(dict(cb, torch_dtype="float32"), fam_weights["gemma2-qpas24-bf16"], tokens)[0],
              fam.forward(cb, fam_weights["gemma2-qpas24-bf16"], tokens)[0]) > 1e-4,
      "reference: the BF16 rounding of the embedding scale matters")
lc = family_cases[-1][1]
a = fam.forward(lc, fam_weights["phi3-longrope"], tokens)[0]
check(rel_err(fam.forward(dict(lc, rope_scaling=None), fam_weights["phi3-longrope"], tokens)[0], a) > 1e-3 and
      rel_err(fam.forward(lc, fam_weights["phi3-longrope"], tokens[:10])[0],
              fam.forward(dict(lc, rope_scaling=None), fam_weights["phi3-longrope"], tokens[:10])[0]) > 1e-3,
      "reference: longrope's long and short factors matter")
wsw = dict(fam_weights["phi3"])
for k in [k for k in wsw if k.endswith("gate_up_proj.weight")]:
    wsw[k] = torch.cat([wsw[k][96:], wsw[k][:96]])
check(rel_err(fam.forward(P3, wsw, tokens)[0], fam.forward(P3, fam_weights["phi3"], tokens)[0]) > 1e-3,
      "reference: phi3's gate/up order matters")

# What is not supported: clear errors naming the field.
bad_fam = [
    (dict(P3, rope_scaling={"rope_type": "longrope", "short_factor": [1.0] * 8, "long_factor": [2.0] * 7}),
     "long_factor", "phi3"),
    (dict(P3, partial_rotary_factor=0.75), "partial_rotary_factor", "phi3"),
    (dict(G3, model_type="gemma3"), "gemma3_text", "gemma3"),
    (dict(G3, layer_types=["sliding_attention", "full_attention", "sliding_attention", "sliding_attention",
                           "full_attention", "full_attention"]), "layer_types", "gemma3"),
    (dict(G2, hidden_activation="gelu"), "hidden_activation", "gemma2"),
    (dict(G2, rope_scaling={"rope_type": "linear", "factor": 2.0}), "rope_scaling", "gemma2"),
]
for cfg, needle, src in bad_fam:
    d = os.path.join(tmp, "bad-" + src)
    fam.write_model(d, family_cases[[n for n, _ in family_cases].index(src)][1], "F32")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    p = run(["trace", "-m", d, "--tokens", "1", "--read", "logits", "-o", os.path.join(tmp, "x.st")])
    check(p.returncode in (1, 2) and needle in p.stderr, f"bad config ({needle}): rc {p.returncode} {p.stderr!r}")
for name, needle in [("gemma3-types-linear", "sliding-window pattern"), ("gemma2-qpas24-bf16", "query_pre_attn_scalar")]:
    p = run(["convert", os.path.join(tmp, name), os.path.join(tmp, "x.gguf"), "--quiet"])
    check(p.returncode != 0 and needle in p.stderr, f"{name} to GGUF is refused naming {needle}: {p.stderr!r}")

shutil.rmtree(tmp, ignore_errors=True)
sys.exit(check.summary("test_engine_arch"))
