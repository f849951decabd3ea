"""PyTorch CPU reference for bench_train: the same model shape (GPT-2 or Llama, F32), batch,
sequence length, thread count and optimiser (AdamW), written with torch.nn modules
(F.scaled_dot_product_attention where the torch version has it). Prints JSON {"tokens_per_s", "peak_rss_bytes", "losses"}.
Run with /usr/bin/python3: train_torch_ref.py CONFIG.json B T STEPS THREADS

With --serve as a sixth argument it runs one warm-up step, prints {"ready": true}, then reads
lines from stdin: "N" runs N more steps and prints {"step_s": [seconds of each]}; "q" (or end
of input) exits. bench_train uses this to interleave its own steps with torch's in one run.
The timed region is the same in both modes: forward, loss, zero_grad, backward, clipping,
AdamW step and loss.item() (which waits for the step to finish)."""
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F

cfg_path, B, T, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = json.load(open(cfg_path))
llama = cfg["model_type"] == "llama"
if llama:
    d, L, H, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["vocab_size"]
    KV, Fd, eps = cfg.get("num_key_value_heads", H), cfg["intermediate_size"], cfg.get("rms_norm_eps", 1e-6)
else:
    d, L, H, V = cfg["n_embd"], cfg["n_layer"], cfg["n_head"], cfg["vocab_size"]
    KV, Fd, eps = H, cfg.get("n_inner") or 4 * d, cfg.get("layer_norm_epsilon", 1e-5)
hd = d // H


class RMS(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.w


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        b = not llama
        self.n1 = RMS() if llama else torch.nn.LayerNorm(d, eps=eps)
        self.n2 = RMS() if llama else torch.nn.LayerNorm(d, eps=eps)
        self.qkv = torch.nn.Linear(d, (H + 2 * KV) * hd, bias=b)
        self.o = torch.nn.Linear(H * hd, d, bias=b)
        self.up = torch.nn.Linear(d, Fd, bias=b)
        self.gate = torch.nn.Linear(d, Fd, bias=False) if llama else None
        self.down = torch.nn.Linear(Fd, d, bias=b)

    def forward(self, x, cos, sin):
        Bn, Tn, _ = x.shape
        q, k, v = self.qkv(self.n1(x)).split([H * hd, KV * hd, KV * hd], -1)
        q, k, v = (t.view(Bn, Tn, -1, hd).transpose(1, 2) for t in (q, k, v))
        if llama:
            def rot(t):
                t1, t2 = t[..., :hd // 2], t[..., hd // 2:]
                return t * cos + torch.cat([-t2, t1], -1) * sin
            q, k = rot(q), rot(k)
            if KV != H:
                k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
        if hasattr(F, "scaled_dot_product_attention"):
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch < 2.0 (Debian 12 ships 1.13)
            s = (q @ k.transpose(-1, -2)) / hd ** 0.5
            s = s.masked_fill(torch.ones(Tn, Tn, dtype=torch.bool).triu(1), float("-inf"))
            z = s.softmax(-1) @ v
        z = z.transpose(1, 2).reshape(Bn, Tn, d)
        x = x + self.o(z)
        h = self.n2(x)
        a = F.silu(self.gate(h)) * self.up(h) if llama else F.gelu(self.up(h), approximate="tanh")
        return x + self.down(a)


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(V, d)
        self.pos = None if llama else torch.nn.Embedding(T, d)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(L))
        self.nf = RMS() if llama else torch.nn.LayerNorm(d, eps=eps)
        for p in self.parameters():
            if p.ndim == 2:
                torch.nn.init.normal_(p, std=0.02)

    def forward(self, idx, tgt):
        x = self.emb(idx)
        if self.pos is not None:
            x = x + self.pos(torch.arange(idx.shape[1]))
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.arange(idx.shape[1]).float()[:, None] * inv[None]
        cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
        for b in self.blocks:
            x = b(x, cos, sin)
        logits = self.nf(x) @ self.emb.weight.T
        return F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1))


m = Model()
opt = torch.optim.AdamW(m.parameters(), lr=3e-4, weight_decay=0.1)
gen = torch.Generator().manual_seed(1)


def step():
    x = torch.randint(0, V, (B, T + 1), generator=gen)
    t0 = time.perf_counter()
    loss = m(x[:, :-1], x[:, 1:])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    lv = loss.item()
    return time.perf_counter() - t0, lv


if len(sys.argv) > 6 and sys.argv[6] == "--serve":
    step()  # warm-up: allocations and kernels
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line or line == "q":
            break
        times = [step()[0] for _ in range(int(line))]
        print(json.dumps({"step_s": times, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}),
              flush=True)
    sys.exit(0)

losses = []
el = 0.0
for s in range(steps + 1):
    dt, lv = step()
    if s >= 1:  # step 0 warms up allocations and kernels
        el += dt
    losses.append(lv)
print(json.dumps({"tokens_per_s": steps * B * T / el, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "losses": losses}))
