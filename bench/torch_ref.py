"""PyTorch CPU reference for bench_engine: the same model directory (Llama, F32), the same
thread count; prints JSON {"decode_tps", "prefill_tps"}. Plain torch (tests/ref/ref_model.py
reads the weights); decode uses a KV cache like the engine. Run with /usr/bin/python3."""
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "ref"))
import torch  # noqa: E402
from ref_model import read_safetensors  # noqa: E402

model, threads, n_decode, n_prefill = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
cfg = json.load(open(os.path.join(model, "config.json")))
w = read_safetensors(os.path.join(model, "model.safetensors"))
d, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
hd, L, eps, theta = cfg.get("head_dim", d // H), cfg["num_hidden_layers"], cfg.get("rms_norm_eps", 1e-6), cfg.get("rope_theta", 1e4)
head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
inv = 1.0 / (theta ** (torch.arange(0, hd, 2).float() / hd))


def rms(x, g):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g


def rope(x, pos):
    ang = pos[:, None].float() * inv[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1)[:, None], torch.cat([ang.sin()] * 2, -1)[:, None]
    return x * cos + torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1) * sin


@torch.inference_mode()
def step(tokens, cache, p0):
    T = len(tokens)
    pos = torch.arange(p0, p0 + T)
    x = w["model.embed_tokens.weight"][tokens]
    for i in range(L):
        p = f"model.layers.{i}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = rope((h @ w[p + "self_attn.q_proj.weight"].T).view(T, H, hd), pos)
        k = rope((h @ w[p + "self_attn.k_proj.weight"].T).view(T, KV, hd), pos)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(T, KV, hd)
        if cache[i] is not None:
            k, v = torch.cat([cache[i][0], k]), torch.cat([cache[i][1], v])
        cache[i] = (k, v)
        kk, vv = k.repeat_interleave(H // KV, 1).transpose(0, 1), v.repeat_interleave(H // KV, 1).transpose(0, 1)
        s = q.transpose(0, 1) @ kk.transpose(1, 2) / math.sqrt(hd)
        if T > 1:
            s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        z = s.softmax(-1) @ vv
        x = x + z.transpose(0, 1).reshape(T, H * hd) @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g = torch.nn.functional.silu(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T)
        x = x + g @ w[p + "mlp.down_proj.weight"].T
    return rms(x[-1:], w["model.norm.weight"]) @ head.T


toks = torch.arange(n_prefill) % cfg["vocab_size"]
step(toks[:8], [None] * L, 0)  # warm up
best = 1e9
for _ in range(2):
    t0 = time.perf_counter()
    step(toks, [None] * L, 0)
    best = min(best, time.perf_counter() - t0)
prefill_tps = n_prefill / best
cache = [None] * L
logits = step(toks[:16], cache, 0)
t0 = time.perf_counter()
for j in range(n_decode):
    logits = step(torch.tensor([int(logits.argmax())]), cache, 16 + j)
decode_tps = n_decode / (time.perf_counter() - t0)
print(json.dumps({"decode_tps": decode_tps, "prefill_tps": prefill_tps}))
