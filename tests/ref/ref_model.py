"""Plain-PyTorch reference for parity's engine: the Llama and GPT-2 architectures written out
in a few dozen lines each (no transformers package), random-init HF model directories
(config.json + model.safetensors written with struct+json), a safetensors reader, and the
same hook points and interventions as the engine (TransformerLens names).

Run with Debian's /usr/bin/python3 (python3-torch)."""
import json
import math
import os
import struct

import torch

DT = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> torch tensor (F32/F16/BF16), written in insertion order."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        dt = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[t.dtype]
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype != torch.float32 else t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = bytearray(data[8 + n + b:8 + n + e])
        if info["dtype"] == "F32":
            t = torch.frombuffer(raw, dtype=torch.float32) if raw else torch.zeros(0)
        else:
            t = torch.frombuffer(raw, dtype=torch.int16).view(DT[info["dtype"]][0]).float()
        out[name] = t.reshape(info["shape"]).clone()
    return out


def llama_config(vocab, d, layers, heads, kv_heads, head_dim, d_ff, tie=False, bias=False, theta=10000.0):
    return {"model_type": "llama", "vocab_size": vocab, "hidden_size": d, "intermediate_size": d_ff,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "head_dim": head_dim, "rms_norm_eps": 1e-5, "rope_theta": theta, "tie_word_embeddings": tie,
            "attention_bias": bias, "mlp_bias": bias, "max_position_embeddings": 256, "hidden_act": "silu",
            "bos_token_id": 1, "eos_token_id": 2}


def gpt2_config(vocab, d, layers, heads, d_ff=None, n_pos=128):
    c = {"model_type": "gpt2", "vocab_size": vocab, "n_embd": d, "n_layer": layers, "n_head": heads,
         "n_positions": n_pos, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}
    if d_ff:
        c["n_inner"] = d_ff
    return c


LLAMA_LIKE = ("llama", "qwen2", "qwen3", "mistral")


def qwen_config(family, vocab, d, layers, heads, kv_heads, d_ff, head_dim=None, tie=False, theta=10000.0):
    """Qwen2 (q/k/v biases, no o bias, head_dim = d/heads) or Qwen3 (explicit head_dim,
    per-head q/k RMSNorm, no biases) as their config.json files spell them."""
    c = {"model_type": family, "architectures": ["Qwen2ForCausalLM" if family == "qwen2" else "Qwen3ForCausalLM"],
         "vocab_size": vocab, "hidden_size": d, "intermediate_size": d_ff, "num_hidden_layers": layers,
         "num_attention_heads": heads, "num_key_value_heads": kv_heads, "rms_norm_eps": 1e-6, "rope_theta": theta,
         "tie_word_embeddings": tie, "max_position_embeddings": 256, "hidden_act": "silu", "use_sliding_window": False,
         "sliding_window": 64, "bos_token_id": 1, "eos_token_id": 2}
    if family == "qwen3":
        c["head_dim"] = head_dim or d // heads
        c["attention_bias"] = False
    return c


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def random_weights(cfg, seed=0, prefix="transformer."):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=0.08):
        return torch.randn(*shape, generator=g) * s

    def norm(n):
        return 1.0 + r(n, s=0.1)

    w = {}
    if cfg["model_type"] in LLAMA_LIKE:
        d, hd = cfg["hidden_size"], head_dim(cfg)
        H, KV, F, V = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"], cfg["vocab_size"]
        w["model.embed_tokens.weight"] = r(V, d, s=0.5)
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            w[p + "input_layernorm.weight"] = norm(d)
            w[p + "self_attn.q_proj.weight"] = r(H * hd, d)
            w[p + "self_attn.k_proj.weight"] = r(KV * hd, d)
            w[p + "self_attn.v_proj.weight"] = r(KV * hd, d)
            w[p + "self_attn.o_proj.weight"] = r(d, H * hd)
            if cfg.get("attention_bias"):
                for n, o in (("q", H * hd), ("k", KV * hd), ("v", KV * hd), ("o", d)):
                    w[p + f"self_attn.{n}_proj.bias"] = r(o)
            if cfg["model_type"] == "qwen2":
                for n, o in (("q", H * hd), ("k", KV * hd), ("v", KV * hd)):
                    w[p + f"self_attn.{n}_proj.bias"] = r(o, s=0.3)
            if cfg["model_type"] == "qwen3":
                w[p + "self_attn.q_norm.weight"], w[p + "self_attn.k_norm.weight"] = norm(hd), norm(hd)
            w[p + "post_attention_layernorm.weight"] = norm(d)
            w[p + "mlp.gate_proj.weight"] = r(F, d)
            w[p + "mlp.up_proj.weight"] = r(F, d)
            w[p + "mlp.down_proj.weight"] = r(d, F)
            if cfg.get("mlp_bias"):
                w[p + "mlp.gate_proj.bias"], w[p + "mlp.up_proj.bias"], w[p + "mlp.down_proj.bias"] = r(F), r(F), r(d)
        w["model.norm.weight"] = norm(d)
        if not cfg.get("tie_word_embeddings"):
            w["lm_head.weight"] = r(V, d)
    else:
        d, V, P = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
        F = cfg.get("n_inner") or 4 * d
        w[prefix + "wte.weight"] = r(V, d, s=0.5)
        w[prefix + "wpe.weight"] = r(P, d, s=0.2)
        for i in range(cfg["n_layer"]):
            p = f"{prefix}h.{i}."
            w[p + "ln_1.weight"], w[p + "ln_1.bias"] = norm(d), r(d)
            w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"] = r(d, 3 * d), r(3 * d)
            w[p + "attn.c_proj.weight"], w[p + "attn.c_proj.bias"] = r(d, d), r(d)
            w[p + "ln_2.weight"], w[p + "ln_2.bias"] = norm(d), r(d)
            w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"] = r(d, F), r(F)
            w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"] = r(F, d), r(d)
        w[prefix + "ln_f.weight"], w[prefix + "ln_f.bias"] = norm(d), r(d)
    return w


def write_model(dirname, cfg, dtype="F32", seed=0, prefix="transformer."):
    """Writes an HF model directory; returns the weights as F32 exactly as stored (rounded
    through dtype), keyed without the GPT-2 prefix."""
    os.makedirs(dirname, exist_ok=True)
    w = random_weights(cfg, seed, prefix)
    tdt = DT[dtype][0]
    stored = {k: v.to(tdt) for k, v in w.items()}
    with open(os.path.join(dirname, "config.json"), "w") as f:
        json.dump(cfg, f)
    write_safetensors(os.path.join(dirname, "model.safetensors"), stored)
    return {k[len(prefix):] if k.startswith(prefix) else k: v.float() for k, v in stored.items()}


class Hooks:
    """Reads everything; applies interventions: list of (hook, op, tensor or None, scale,
    positions or None, mean)."""

    def __init__(self, interventions=()):
        self.cache = {}
        self.iv = list(interventions)

    def __call__(self, name, x):
        # x: [pos, ...] for one sequence
        for hook, op, v, scale, pos, mean in self.iv:
            if hook != name:
                continue
            x = x.clone()
            sel = list(range(x.shape[0])) if pos is None else [p for p in pos if p < x.shape[0]]
            if op == "ablate":
                repl = x[sel].mean(0) if mean else torch.zeros_like(x[0])
                for p in sel:
                    x[p] = repl
            else:
                v = v.reshape(-1, *x.shape[1:]) if v.numel() != x[0].numel() else v.reshape(1, *x.shape[1:])
                for p in sel:
                    row = v[0] if v.shape[0] == 1 else (v[p] if p < v.shape[0] else None)
                    if row is None:
                        continue
                    x[p] = x[p] + scale * row if op == "add" else row
        self.cache[name] = x.detach().clone()
        return x


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, theta, inv=None, mscale=1.0):
    # x: [T, heads, hd], rotate-half layout
    T, _, hd = x.shape
    if inv is None:
        inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)).float()
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos()] * 2, -1)[:, None, :], torch.cat([ang.sin()] * 2, -1)[:, None, :]
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * (cos * mscale) + torch.cat([-x2, x1], -1) * (sin * mscale)


def rope_inv_freq(cfg, seq_len):
    """RoPE inverse frequencies and the cos/sin factor under cfg["rope_scaling"], from the
    published descriptions: linear (positions divided by the factor), dynamic NTK (the base
    raised for sequences past the original context), YaRN (Peng et al. 2023: a ramp between
    interpolated and original frequencies over the dimensions whose rotations over the
    original context lie between beta_slow and beta_fast, and cos/sin scaled by
    0.1 ln(factor) + 1), Llama 3.1 (low frequencies divided by the factor, high ones kept, a
    smooth blend between the two wavelengths)."""
    hd = head_dim(cfg)
    base = float(cfg["rope_theta"])
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    factor = float(rs.get("factor", 1.0))
    orig = rs.get("original_max_position_embeddings", cfg["max_position_embeddings"])
    exps = torch.arange(0, hd, 2, dtype=torch.float64) / hd
    if kind == "default":
        return (1.0 / base ** exps).float(), 1.0
    if kind == "dynamic" and seq_len > orig:
        base = base * ((factor * seq_len / orig) - (factor - 1)) ** (hd / (hd - 2))
    pos_freqs = (base ** exps).float()
    inv = 1.0 / pos_freqs
    mscale = 1.0
    if kind == "linear":
        inv = inv / factor
    elif kind == "yarn":
        if "original_max_position_embeddings" in rs:
            factor = cfg["max_position_embeddings"] / orig
        mscale = rs.get("attention_factor") or (0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0)

        def dim_of(rot):
            return hd * math.log(orig / (rot * 2 * math.pi)) / (2 * math.log(base))
        lo, hi = dim_of(rs.get("beta_fast", 32)), dim_of(rs.get("beta_slow", 1))
        if rs.get("truncate", True):
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, hd - 1)
        if lo == hi:
            hi += 0.001
        ramp = ((torch.arange(hd // 2, dtype=torch.float32) - lo) / (hi - lo)).clamp(0, 1)
        keep = 1 - ramp
        inv = (1.0 / (factor * pos_freqs)) * (1 - keep) + inv * keep
    elif kind == "llama3":
        lo_wl, hi_wl = orig / rs["low_freq_factor"], orig / rs["high_freq_factor"]
        wl = 2 * math.pi / inv
        scaled = torch.where(wl > lo_wl, inv / factor, inv)
        smooth = (orig / wl - rs["low_freq_factor"]) / (rs["high_freq_factor"] - rs["low_freq_factor"])
        mid = (wl <= lo_wl) & (wl >= hi_wl)
        inv = torch.where(mid, (1 - smooth) * scaled / factor + smooth * scaled, scaled)
    return inv, mscale


def attention(q, k, v, hook, i, window=None):
    # q [T, H, hd], k/v [T, KV, hd]; window: query p sees keys p-window+1 .. p (Mistral)
    T, H, hd = q.shape
    rep = H // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    s = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd)
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    if window:
        s = s.masked_fill(torch.tril(torch.ones(T, T, dtype=torch.bool), -window), float("-inf"))
    p = hook(f"blocks.{i}.attn.hook_pattern", s.softmax(-1))
    return torch.einsum("hqk,khd->qhd", p, v)


def forward(cfg, w, tokens, hook=None):
    hook = hook or Hooks()
    tokens = torch.tensor(tokens)
    T = len(tokens)
    if cfg["model_type"] in LLAMA_LIKE:
        d, hd, eps = cfg["hidden_size"], head_dim(cfg), cfg["rms_norm_eps"]
        inv, msc = rope_inv_freq(cfg, T)
        # Mistral: transformers' default window is 4096 when the key is absent, null is none.
        window = cfg.get("sliding_window", 4096) if cfg["model_type"] == "mistral" else None
        H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]

        def lin(x, p):
            y = x @ w[p + ".weight"].T
            return y + w[p + ".bias"] if p + ".bias" in w else y

        x = hook("hook_embed", w["model.embed_tokens.weight"][tokens])
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            x = hook(f"blocks.{i}.hook_resid_pre", x)
            h = rms(x, w[p + "input_layernorm.weight"], eps)
            q = hook(f"blocks.{i}.attn.hook_q", lin(h, p + "self_attn.q_proj").view(T, H, hd))
            k = hook(f"blocks.{i}.attn.hook_k", lin(h, p + "self_attn.k_proj").view(T, KV, hd))
            v = hook(f"blocks.{i}.attn.hook_v", lin(h, p + "self_attn.v_proj").view(T, KV, hd))
            if cfg["model_type"] == "qwen3":
                q = hook(f"blocks.{i}.attn.q_norm.hook_normalized", rms(q, w[p + "self_attn.q_norm.weight"], eps))
                k = hook(f"blocks.{i}.attn.k_norm.hook_normalized", rms(k, w[p + "self_attn.k_norm.weight"], eps))
            z = hook(f"blocks.{i}.attn.hook_z", attention(rope(q, None, inv, msc), rope(k, None, inv, msc), v, hook, i,
                                                           window))
            a = hook(f"blocks.{i}.hook_attn_out", lin(z.reshape(T, H * hd), p + "self_attn.o_proj"))
            x = hook(f"blocks.{i}.hook_resid_mid", x + a)
            h = rms(x, w[p + "post_attention_layernorm.weight"], eps)
            g = hook(f"blocks.{i}.mlp.hook_pre", lin(h, p + "mlp.gate_proj"))
            post = hook(f"blocks.{i}.mlp.hook_post", torch.nn.functional.silu(g) * lin(h, p + "mlp.up_proj"))
            m = hook(f"blocks.{i}.hook_mlp_out", lin(post, p + "mlp.down_proj"))
            x = hook(f"blocks.{i}.hook_resid_post", x + m)
        x = hook("ln_final.hook_normalized", rms(x, w["model.norm.weight"], eps))
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        return hook("logits", x @ head.T), hook
    d, H, eps = cfg["n_embd"], cfg["n_head"], cfg["layer_norm_epsilon"]
    hd = d // H

    def ln(x, p):
        return torch.nn.functional.layer_norm(x, (d,), w[p + ".weight"], w[p + ".bias"], eps)

    def conv(x, p):
        return x @ w[p + ".weight"] + w[p + ".bias"]

    def gelu(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    e = hook("hook_embed", w["wte.weight"][tokens])
    pe = hook("hook_pos_embed", w["wpe.weight"][torch.arange(T)])
    x = e + pe
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        x = hook(f"blocks.{i}.hook_resid_pre", x)
        qkv = conv(ln(x, p + "ln_1"), p + "attn.c_attn")
        q = hook(f"blocks.{i}.attn.hook_q", qkv[:, :d].reshape(T, H, hd))
        k = hook(f"blocks.{i}.attn.hook_k", qkv[:, d:2 * d].reshape(T, H, hd))
        v = hook(f"blocks.{i}.attn.hook_v", qkv[:, 2 * d:].reshape(T, H, hd))
        z = hook(f"blocks.{i}.attn.hook_z", attention(q, k, v, hook, i))
        a = hook(f"blocks.{i}.hook_attn_out", conv(z.reshape(T, d), p + "attn.c_proj"))
        x = hook(f"blocks.{i}.hook_resid_mid", x + a)
        pre = hook(f"blocks.{i}.mlp.hook_pre", conv(ln(x, p + "ln_2"), p + "mlp.c_fc"))
        post = hook(f"blocks.{i}.mlp.hook_post", gelu(pre))
        m = hook(f"blocks.{i}.hook_mlp_out", conv(post, p + "mlp.c_proj"))
        x = hook(f"blocks.{i}.hook_resid_post", x + m)
    x = hook("ln_final.hook_normalized", ln(x, "ln_f"))
    return hook("logits", x @ w["wte.weight"].T), hook
