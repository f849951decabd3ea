"""PyTorch CPU reference for bench_engine: the same model directory (Llama, F32), the same
thread count. Prints JSON {"decode_tps", "prefill_tps", "variants": {...}}.
Run with /usr/bin/python3: torch_ref.py MODEL_DIR THREADS N_DECODE N_PREFILL [--one | --serve]

With --serve it loads the model, warms up, prints {"ready": true}, then reads lines from
stdin: "d" runs one decode measurement (a fresh 16-token prompt, then N_DECODE steps) and
prints {"decode_tps": ...}; "p" the better of two prefills of N_PREFILL tokens (as
bench_engine takes for its own), {"prefill_tps": ...}; "q"
(or end of input) exits. bench_engine starts one such process per thread setup (below) and
interleaves their measurements with its own, round after round, in the same run.

It is meant to be a fair *plain-PyTorch* reference, written as a researcher would write it
without special tooling: F.linear for the projections (torch.mv for the one-row decode
case, which is what F.linear lowers to less directly), a KV cache preallocated to the context
length and written in place (no torch.cat per step), F.scaled_dot_product_attention where
the torch version has it (else matmul, softmax, matmul),
inference_mode. Thread setup matters as much as the code on a small machine, so the
measurement runs twice, each in its own subprocess: torch.set_num_threads(THREADS) with
OpenMP's default wait policy (threads spin between parallel regions), and the same with
OMP_WAIT_POLICY=passive (threads sleep). The reported figures are the better of the two
for each of decode and prefill; both variants are in "variants"."""
import json
import math
import os
import subprocess
import sys
import time


def setup(model, threads, n_decode, n_prefill):
    """Loads the model; returns (decode_tps(), prefill_tps()) measuring functions."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
    import torch
    import torch.nn.functional as F
    from ref_model import read_safetensors

    torch.set_num_threads(threads)
    cfg = json.load(open(os.path.join(model, "config.json")))
    w = read_safetensors(os.path.join(model, "model.safetensors"))
    d, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, L = cfg.get("head_dim", d // H), cfg["num_hidden_layers"]
    eps, theta = cfg.get("rms_norm_eps", 1e-6), cfg.get("rope_theta", 1e4)
    emb = w["model.embed_tokens.weight"]
    head = w.get("lm_head.weight", emb)
    lw = []
    for i in range(L):
        p = f"model.layers.{i}."
        lw.append({k: w[p + n] for k, n in (("ln1", "input_layernorm.weight"), ("q", "self_attn.q_proj.weight"),
                                             ("k", "self_attn.k_proj.weight"), ("v", "self_attn.v_proj.weight"),
                                             ("o", "self_attn.o_proj.weight"),
                                             ("ln2", "post_attention_layernorm.weight"),
                                             ("gate", "mlp.gate_proj.weight"), ("up", "mlp.up_proj.weight"),
                                             ("down", "mlp.down_proj.weight"))})
    lnf = w["model.norm.weight"]
    max_ctx = max(n_prefill, 16 + n_decode)
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.arange(max_ctx).float()[:, None] * inv[None]
    cos_t, sin_t = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def lin(x, W):
        return torch.mv(W, x[0])[None] if x.shape[0] == 1 else F.linear(x, W)

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    def rope(x, p0, T):  # x (T, heads, hd)
        cos, sin = cos_t[p0:p0 + T, None], sin_t[p0:p0 + T, None]
        return x * cos + torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1) * sin

    sdpa = getattr(F, "scaled_dot_product_attention", None)  # torch >= 2.0
    causal_mask = torch.triu(torch.ones(max_ctx, max_ctx, dtype=torch.bool), 1)

    def attend(q, k, v, causal):  # q (heads, T, hd), k, v (heads, S, hd)
        if sdpa is not None:
            return sdpa(q, k, v, is_causal=causal)
        s = torch.matmul(q, k.transpose(1, 2)) * (1.0 / math.sqrt(hd))
        if causal:
            T = q.shape[1]
            s.masked_fill_(causal_mask[:T, :T], float("-inf"))
        return torch.matmul(s.softmax(-1), v)

    def new_cache():
        return [(torch.empty(KV, max_ctx, hd), torch.empty(KV, max_ctx, hd)) for _ in range(L)]

    @torch.inference_mode()
    def step(tokens, cache, p0):
        T = len(tokens)
        x = emb[tokens]
        for i, l in enumerate(lw):
            h = rms(x, l["ln1"])
            q = rope(lin(h, l["q"]).view(T, H, hd), p0, T).transpose(0, 1)
            k = rope(lin(h, l["k"]).view(T, KV, hd), p0, T).transpose(0, 1)
            kc, vc = cache[i]
            kc[:, p0:p0 + T] = k
            vc[:, p0:p0 + T] = lin(h, l["v"]).view(T, KV, hd).transpose(0, 1)
            kk, vv = kc[:, :p0 + T], vc[:, :p0 + T]
            if KV != H:
                kk, vv = kk.repeat_interleave(H // KV, 0), vv.repeat_interleave(H // KV, 0)
            z = attend(q, kk, vv, T > 1 and p0 == 0)
            x = x + lin(z.transpose(0, 1).reshape(T, H * hd), l["o"])
            h = rms(x, l["ln2"])
            x = x + lin(F.silu(lin(h, l["gate"])) * lin(h, l["up"]), l["down"])
        return lin(rms(x[-1:], lnf), head)

    toks = torch.arange(n_prefill) % cfg["vocab_size"]
    step(toks[:8], new_cache(), 0)  # warm up

    def prefill_tps():
        cache = new_cache()
        t0 = time.perf_counter()
        step(toks, cache, 0)
        return n_prefill / (time.perf_counter() - t0)

    def decode_tps():
        cache = new_cache()
        logits = step(toks[:16], cache, 0)
        step(torch.tensor([int(logits.argmax())]), cache, 16)  # warm the one-row path
        t0 = time.perf_counter()
        for j in range(n_decode):
            logits = step(torch.tensor([int(logits.argmax())]), cache, 16 + j)
        return n_decode / (time.perf_counter() - t0)

    return decode_tps, prefill_tps


def measure(model, threads, n_decode, n_prefill):
    decode_tps, prefill_tps = setup(model, threads, n_decode, n_prefill)
    return {"decode_tps": decode_tps(), "prefill_tps": max(prefill_tps(), prefill_tps())}


def serve(model, threads, n_decode, n_prefill):
    decode_tps, prefill_tps = setup(model, threads, n_decode, n_prefill)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "d":
            print(json.dumps({"decode_tps": decode_tps()}), flush=True)
        elif cmd == "p":
            print(json.dumps({"prefill_tps": max(prefill_tps(), prefill_tps())}), flush=True)
        else:
            break


def main():
    model, threads, n_decode, n_prefill = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if len(sys.argv) > 5 and sys.argv[5] == "--one":
        print(json.dumps(measure(model, threads, n_decode, n_prefill)))
        return
    if len(sys.argv) > 5 and sys.argv[5] == "--serve":
        serve(model, threads, n_decode, n_prefill)
        return
    variants = {}
    for name, extra in (("omp_default", {}), ("omp_passive", {"OMP_WAIT_POLICY": "passive"})):
        env = dict(os.environ, **extra)
        env.pop("OMP_NUM_THREADS", None)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), model, str(threads), str(n_decode),
                              str(n_prefill), "--one"], env=env, capture_output=True, text=True, check=True)
        variants[name] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({"decode_tps": max(v["decode_tps"] for v in variants.values()),
                      "prefill_tps": max(v["prefill_tps"] for v in variants.values()), "variants": variants}))


if __name__ == "__main__":
    main()
