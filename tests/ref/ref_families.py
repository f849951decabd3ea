"""Plain-PyTorch float64 reference for Gemma 2, Gemma 3 (its text model) and Phi-3, written
from the published architecture descriptions (Gemma 2 and Gemma 3 technical reports, the
Phi-3 report, and the shapes their Hugging Face config.json and safetensors files use):

Gemma 2 / 3:
  - RMSNorm scales by (1 + w) (the stored weight is an offset from 1),
  - the embeddings are multiplied by √d_model, a constant of the checkpoint's dtype,
  - each layer norms its input (input_layernorm), attends, norms the attention output
    (post_attention_layernorm) before the residual add, then norms again
    (pre_feedforward_layernorm), runs a GeGLU MLP down(gelu_tanh(gate x) · up x) and norms its
    output (post_feedforward_layernorm) before the residual add,
  - attention scores are q·k / √query_pre_attn_scalar; Gemma 2 soft-caps them,
    cap·tanh(s / cap), before the causal mask, and soft-caps the final logits the same way,
  - local layers attend to the last sliding_window positions: Gemma 2 alternates local and
    global from layer 0, Gemma 3 has five local layers then a global one
    (sliding_window_pattern 6); Gemma 3's local layers use RoPE base rope_local_base_freq
    without rope_scaling, its global ones rope_theta with it,
  - Gemma 3 RMS-normalises each head's q and k (also with 1 + w) before RoPE,
  - the LM head is the embedding matrix.
Phi-3: a Llama-style decoder whose q, k, v projections are one matrix qkv_proj (rows q, then
k, then v) and whose gate and up projections are one matrix gate_up_proj (rows gate, then up);
its long-context models' RoPE is "longrope" (per-frequency short and long factors).

Hook points are parity's TransformerLens names; Gemma adds ln1_post.hook_normalized and
ln2_post.hook_normalized (the attention / MLP output divided by its RMS, before the post-norm's
weight). Everything is computed in float64 from the stored weights."""
import json
import math
import os

import torch

from ref_model import DT, Hooks, head_dim, write_safetensors


def gemma_config(family, vocab, d, layers, heads, kv_heads, hd, d_ff, window, **kw):
    """Gemma 2 ("gemma2") or Gemma 3's text model ("gemma3_text") as their config.json files
    spell them."""
    c = {"model_type": family, "vocab_size": vocab, "hidden_size": d, "intermediate_size": d_ff,
         "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
         "head_dim": hd, "rms_norm_eps": 1e-6, "max_position_embeddings": 256, "sliding_window": window,
         "query_pre_attn_scalar": hd, "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True,
         "bos_token_id": 2, "eos_token_id": 1, "torch_dtype": "float32"}
    if family == "gemma2":
        c.update(architectures=["Gemma2ForCausalLM"], rope_theta=10000.0, attn_logit_softcapping=50.0,
                 final_logit_softcapping=30.0)
    else:
        c.update(architectures=["Gemma3ForCausalLM"], rope_theta=1000000.0, rope_local_base_freq=10000.0,
                 sliding_window_pattern=6, attn_logit_softcapping=None, final_logit_softcapping=None)
    c.update(kw)
    return c


def phi3_config(vocab, d, layers, heads, kv_heads, d_ff, **kw):
    c = {"model_type": "phi3", "architectures": ["Phi3ForCausalLM"], "vocab_size": vocab, "hidden_size": d,
         "intermediate_size": d_ff, "num_hidden_layers": layers, "num_attention_heads": heads,
         "num_key_value_heads": kv_heads, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
         "hidden_act": "silu", "tie_word_embeddings": False, "sliding_window": None, "rope_scaling": None,
         "bos_token_id": 1, "eos_token_id": 2}
    c.update(kw)
    return c


def is_gemma(cfg):
    return cfg["model_type"] in ("gemma2", "gemma3_text")


def random_weights(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=0.08):
        return torch.randn(*shape, generator=g) * s

    d, hd = cfg["hidden_size"], head_dim(cfg)
    H, KV, F, V = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"], cfg["vocab_size"]
    gemma = is_gemma(cfg)

    def norm(n):  # Gemma stores the offset from 1
        return r(n, s=0.1) if gemma else 1.0 + r(n, s=0.1)

    w = {"model.embed_tokens.weight": r(V, d, s=0.5 if not gemma else 0.08)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(d)
        if cfg["model_type"] == "phi3":
            w[p + "self_attn.qkv_proj.weight"] = r((H + 2 * KV) * hd, d)
        else:
            w[p + "self_attn.q_proj.weight"] = r(H * hd, d)
            w[p + "self_attn.k_proj.weight"] = r(KV * hd, d)
            w[p + "self_attn.v_proj.weight"] = r(KV * hd, d)
        if cfg["model_type"] == "gemma3_text":
            w[p + "self_attn.q_norm.weight"], w[p + "self_attn.k_norm.weight"] = norm(hd), norm(hd)
        w[p + "self_attn.o_proj.weight"] = r(d, H * hd)
        w[p + "post_attention_layernorm.weight"] = norm(d)
        if gemma:
            w[p + "pre_feedforward_layernorm.weight"] = norm(d)
            w[p + "post_feedforward_layernorm.weight"] = norm(d)
        if cfg["model_type"] == "phi3":
            w[p + "mlp.gate_up_proj.weight"] = r(2 * F, d)
        else:
            w[p + "mlp.gate_proj.weight"] = r(F, d)
            w[p + "mlp.up_proj.weight"] = r(F, d)
        w[p + "mlp.down_proj.weight"] = r(d, F)
    w["model.norm.weight"] = norm(d)
    if not cfg.get("tie_word_embeddings"):
        w["lm_head.weight"] = r(V, d)
    return w


def write_model(dirname, cfg, dtype="F32", seed=0):
    """An HF model directory; returns the weights as stored (rounded through dtype), in F32."""
    os.makedirs(dirname, exist_ok=True)
    stored = {k: v.to(DT[dtype][0]) for k, v in random_weights(cfg, seed).items()}
    with open(os.path.join(dirname, "config.json"), "w") as f:
        json.dump(cfg, f)
    write_safetensors(os.path.join(dirname, "model.safetensors"), stored)
    return {k: v.float() for k, v in stored.items()}


def windowed(cfg, i):
    """Whether layer i attends through the sliding window."""
    if not cfg.get("sliding_window"):
        return False
    if cfg.get("layer_types"):
        return cfg["layer_types"][i] == "sliding_attention"
    if cfg["model_type"] == "gemma2":
        return i % 2 == 0
    if cfg["model_type"] == "gemma3_text":
        return (i + 1) % cfg.get("sliding_window_pattern", 6) != 0
    return True  # Phi-3: every layer


def _rms(x, w, eps, gemma):
    n = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return n * (1.0 + w) if gemma else n * w


def _inv_freq(base, hd, factor=1.0):
    return (1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))) / factor


def _gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _embed_scale(cfg):
    dt = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.get("torch_dtype"), torch.float32)
    return torch.tensor(math.sqrt(cfg["hidden_size"]), dtype=dt).double().item()


def _attention(cfg, q, k, v, hook, i):
    T, H, hd = q.shape
    rep = H // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    scalar = cfg.get("query_pre_attn_scalar") if is_gemma(cfg) else hd
    s = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(scalar)
    cap = cfg.get("attn_logit_softcapping") if is_gemma(cfg) else None
    if cap:
        s = cap * torch.tanh(s / cap)
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    if windowed(cfg, i):
        s = s.masked_fill(torch.tril(torch.ones(T, T, dtype=torch.bool), -cfg["sliding_window"]), float("-inf"))
    p = hook(f"blocks.{i}.attn.hook_pattern", s.softmax(-1))
    return torch.einsum("hqk,khd->qhd", p, v)


def forward(cfg, w, tokens, hook=None):
    """Logits [T, vocab] and the hooks object (its cache holds every hook point)."""
    hook = hook or Hooks()
    w = {k: v.double() for k, v in w.items()}
    tokens = torch.tensor(tokens)
    T = len(tokens)
    gemma, eps = is_gemma(cfg), cfg["rms_norm_eps"]
    d, hd, H, KV, F = (cfg["hidden_size"], head_dim(cfg), cfg["num_attention_heads"], cfg["num_key_value_heads"],
                       cfg["intermediate_size"])
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type"))
    inv_global = _inv_freq(cfg["rope_theta"], hd, rs.get("factor", 1.0) if kind == "linear" else 1.0)
    inv_local = _inv_freq(cfg.get("rope_local_base_freq", cfg["rope_theta"]), hd)
    msc = 1.0
    if kind in ("longrope", "su"):
        # Phi-3's long-context RoPE: frequencies divided by short_factor, or by long_factor when
        # the sequence is longer than the original context; cos and sin scaled by
        # √(1 + ln(factor) / ln(original)), factor = max_position_embeddings / original.
        orig = cfg.get("original_max_position_embeddings", cfg["max_position_embeddings"])
        factor = cfg["max_position_embeddings"] / orig
        msc = rs.get("attention_factor") or (math.sqrt(1 + math.log(factor) / math.log(orig)) if factor > 1 else 1.0)
        ext = torch.tensor(rs["long_factor"] if T > orig else rs["short_factor"], dtype=torch.float64)
        inv_global = _inv_freq(cfg["rope_theta"], hd) / ext

    def lin(x, name):
        return x @ w[name].T

    def rot(x, inv):  # rotate-half RoPE in float64
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
        cos, sin = torch.cat([ang.cos()] * 2, -1)[:, None, :], torch.cat([ang.sin()] * 2, -1)[:, None, :]
        cos, sin = cos * msc, sin * msc
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    x = w["model.embed_tokens.weight"][tokens]
    if gemma:
        x = x * _embed_scale(cfg)
    x = hook("hook_embed", x)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = hook(f"blocks.{i}.hook_resid_pre", x)
        h = _rms(x, w[p + "input_layernorm.weight"], eps, gemma)
        if cfg["model_type"] == "phi3":
            qkv = lin(h, p + "self_attn.qkv_proj.weight")
            q, k, v = qkv[:, :H * hd], qkv[:, H * hd:(H + KV) * hd], qkv[:, (H + KV) * hd:]
        else:
            q, k, v = (lin(h, p + f"self_attn.{n}_proj.weight") for n in "qkv")
        q = hook(f"blocks.{i}.attn.hook_q", q.reshape(T, H, hd))
        k = hook(f"blocks.{i}.attn.hook_k", k.reshape(T, KV, hd))
        v = hook(f"blocks.{i}.attn.hook_v", v.reshape(T, KV, hd))
        if cfg["model_type"] == "gemma3_text":
            q = hook(f"blocks.{i}.attn.q_norm.hook_normalized", _rms(q, w[p + "self_attn.q_norm.weight"], eps, True))
            k = hook(f"blocks.{i}.attn.k_norm.hook_normalized", _rms(k, w[p + "self_attn.k_norm.weight"], eps, True))
        local = cfg["model_type"] == "gemma3_text" and windowed(cfg, i)
        inv = inv_local if local else inv_global
        z = hook(f"blocks.{i}.attn.hook_z", _attention(cfg, rot(q, inv), rot(k, inv), v, hook, i))
        a = lin(z.reshape(T, H * hd), p + "self_attn.o_proj.weight")
        if gemma:
            a = hook(f"blocks.{i}.ln1_post.hook_normalized", _rms(a, torch.zeros(d, dtype=torch.float64), eps, True))
            a = a * (1.0 + w[p + "post_attention_layernorm.weight"])
        a = hook(f"blocks.{i}.hook_attn_out", a)
        x = hook(f"blocks.{i}.hook_resid_mid", x + a)
        if gemma:
            h = _rms(x, w[p + "pre_feedforward_layernorm.weight"], eps, True)
            gate, up = lin(h, p + "mlp.gate_proj.weight"), lin(h, p + "mlp.up_proj.weight")
        else:
            h = _rms(x, w[p + "post_attention_layernorm.weight"], eps, False)
            gu = lin(h, p + "mlp.gate_up_proj.weight")
            gate, up = gu[:, :F], gu[:, F:]
        gate = hook(f"blocks.{i}.mlp.hook_pre", gate)
        act = _gelu_tanh(gate) if gemma else torch.nn.functional.silu(gate)
        post = hook(f"blocks.{i}.mlp.hook_post", act * up)
        m = lin(post, p + "mlp.down_proj.weight")
        if gemma:
            m = hook(f"blocks.{i}.ln2_post.hook_normalized", _rms(m, torch.zeros(d, dtype=torch.float64), eps, True))
            m = m * (1.0 + w[p + "post_feedforward_layernorm.weight"])
        m = hook(f"blocks.{i}.hook_mlp_out", m)
        x = hook(f"blocks.{i}.hook_resid_post", x + m)
    x = hook("ln_final.hook_normalized", _rms(x, w["model.norm.weight"], eps, gemma))
    logits = x @ w.get("lm_head.weight", w["model.embed_tokens.weight"]).T
    cap = cfg.get("final_logit_softcapping") if gemma else None
    if cap:
        logits = cap * torch.tanh(logits / cap)
    return hook("logits", logits), hook
