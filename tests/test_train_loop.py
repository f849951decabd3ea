"""parity train end to end: ten AdamW steps (warmup + cosine, clipping, accumulation, weight
decay groups) give the losses torch.optim.AdamW gives; resuming from a checkpoint continues
bit-identically; the engine scores the trained model with the trainer's validation loss;
bad configs and datasets fail with clear errors; a NaN loss stops with the step."""
import json
import math
import os
import shutil

import torch

from train_common import (check, finish, ref_model, run, scratch, write_tokfile, batch_loss, decay_name)

tmp = scratch("train_loop_")


def conf(path, model_cfg, **kw):
    lines = ["model:"] + [f"  {k}: {json.dumps(v)}" for k, v in model_cfg.items()
                          if k not in ("hidden_act", "activation_function")]
    lines += [f"{k}: {json.dumps(v) if not isinstance(v, str) else v}" for k, v in kw.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def read_log(out):
    steps, evals = [], []
    with open(os.path.join(out, "log.jsonl")) as f:
        for line in f:
            o = json.loads(line)
            (evals if "val_loss" in o else steps).append(o)
    return steps, evals


def lr_at(step, warmup, total, lr, min_lr):
    if step < warmup:
        return lr * (step + 1) / warmup
    prog = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * prog))


def torch_losses(cfg, w, data, B, T, accum, steps, lr, min_lr, warmup, wd, clip, b1, b2, eps):
    params = {k: v.double().clone().requires_grad_(True) for k, v in w.items()}
    dec = [p for k, p in params.items() if decay_name(k, p.ndim)]
    nodec = [p for k, p in params.items() if not decay_name(k, p.ndim)]
    opt = torch.optim.AdamW([{"params": dec, "weight_decay": wd}, {"params": nodec, "weight_decay": 0.0}],
                            lr=lr, betas=(b1, b2), eps=eps, foreach=False)
    cursor, losses = 0, []
    for s in range(steps):
        opt.zero_grad()
        total = 0.0
        for _ in range(accum):
            toks, tgts = [], []
            for _ in range(B):
                if cursor + T + 1 > len(data):
                    cursor = 0
                toks.append(data[cursor:cursor + T])
                tgts.append(data[cursor + 1:cursor + T + 1])
                cursor += T
            loss = batch_loss(cfg, params, torch.tensor(toks), torch.tensor(tgts)) / accum
            loss.backward()
            total += loss.item()
        losses.append(total)
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(list(params.values()), clip)
        for g in opt.param_groups:
            g["lr"] = lr_at(s, warmup, steps, lr, min_lr)
        opt.step()
    return losses


# ---- 1. AdamW steps against torch ----------------------------------------------------------
g = torch.Generator().manual_seed(3)
for name, cfg in (("llama", ref_model.llama_config(64, 32, 2, 4, 2, 8, 48, tie=False)),
                  ("gpt2", ref_model.gpt2_config(64, 32, 2, 4, n_pos=32))):
    d = os.path.join(tmp, name + "-init")
    w = ref_model.write_model(d, cfg, "F32", seed=7)
    data_dir = os.path.join(tmp, name + "-data")
    os.makedirs(data_dir)
    data = torch.randint(0, 64, (300,), generator=g).tolist()
    write_tokfile(os.path.join(data_dir, "train.bin"), data, 64)
    write_tokfile(os.path.join(data_dir, "val.bin"), data[:40], 64)
    hp = dict(batch_size=2, seq_len=8, accum=2, steps=10, lr=0.01, min_lr=0.001, warmup=3, weight_decay=0.1,
              clip=0.5, beta1=0.9, beta2=0.95, eps=1e-8)
    out = os.path.join(tmp, name + "-out")
    c = conf(os.path.join(tmp, name + ".yaml"), cfg, init=d, data=data_dir, out=out, shuffle=False, seed=1,
             threads=2, **hp)
    run("train", "--config", c, "--quiet")
    got = [s["loss"] for s in read_log(out)[0]]
    ref = torch_losses(cfg, w, data, hp["batch_size"], hp["seq_len"], hp["accum"], hp["steps"], hp["lr"],
                       hp["min_lr"], hp["warmup"], hp["weight_decay"], hp["clip"], hp["beta1"], hp["beta2"], hp["eps"])
    worst = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(got, ref))
    check(len(got) == 10 and worst <= 1e-4,
          f"{name}: 10 AdamW steps match torch.optim.AdamW (worst {worst:.2e}; {got[0]:.5f}->{got[-1]:.5f})")
    check(got[-1] < got[0], f"{name}: the loss goes down")

# ---- 2. resume is bit-identical ----------------------------------------------------------
cfg = ref_model.llama_config(64, 32, 2, 4, 2, 8, 48)
data_dir = os.path.join(tmp, "llama-data")
hp = dict(data=data_dir, batch_size=2, seq_len=16, steps=8, lr=0.003, warmup=2, seed=5, threads=2,
          checkpoint_interval=3, keep_checkpoints=10, eval_interval=4, eval_batches=2)
a_out, b_out = os.path.join(tmp, "straight"), os.path.join(tmp, "resumed")
run("train", "--config", conf(os.path.join(tmp, "a.yaml"), cfg, out=a_out, **hp), "--quiet")
cb = conf(os.path.join(tmp, "b.yaml"), cfg, out=b_out, **hp)
run("train", "--config", cb, "--quiet")
check(sorted(x for x in os.listdir(b_out) if x.startswith("checkpoint-")) ==
      ["checkpoint-00000003", "checkpoint-00000006"], "checkpoints at steps 3 and 6")
shutil.rmtree(os.path.join(b_out, "model"))
with open(os.path.join(b_out, "latest"), "w") as f:
    f.write("checkpoint-00000003\n")
os.rename(os.path.join(b_out, "log.jsonl"), os.path.join(b_out, "log.first"))
run("train", "--config", cb, "--resume", "--quiet")
with open(os.path.join(a_out, "model", "model.safetensors"), "rb") as f:
    wa = f.read()
with open(os.path.join(b_out, "model", "model.safetensors"), "rb") as f:
    wb = f.read()
check(wa == wb, "8 steps straight == 3 steps, checkpoint, resume, 5 steps (weights bitwise)")
la = [s["loss"] for s in read_log(a_out)[0]]
lb = [s["loss"] for s in read_log(b_out)[0]]
check(la[3:] == lb, "the resumed run logs the same losses for steps 4..8")
with open(os.path.join(a_out, "checkpoint-00000006", "model.safetensors"), "rb") as f:
    c6 = f.read()
check(c6 != wa, "the weights change between checkpoints (the test can fail)")

# ---- 3. the engine agrees with the trainer's validation loss -----------------------------
_, evals = read_log(a_out)
val_loss = evals[-1]["val_loss"]
val, _ = __import__("train_common").read_tokfile(os.path.join(data_dir, "val.bin"))
T = 16
total, count = 0.0, 0
for k in range(4):  # eval_batches 2 x batch_size 2 windows
    s = k * T
    if s + T + 1 > len(val):
        break
    out = run("score", "-m", os.path.join(a_out, "model"), "--tokens", ",".join(map(str, val[s:s + T + 1])), "--json")
    lps = json.loads(out.stdout)["logprobs"][1:]
    total -= sum(lps)
    count += len(lps)
check(count > 0 and abs(total / count - val_loss) <= 1e-4 * max(1, val_loss),
      f"parity score on the trained model gives the trainer's val loss ({total / max(count, 1):.6f} vs {val_loss:.6f})")

# the trained model converts to GGUF and the engine gives the same scores from it
gguf = os.path.join(tmp, "trained.gguf")
run("convert", os.path.join(a_out, "model"), gguf, "--quiet")
win = ",".join(map(str, val[:T + 1]))
lp_hf = json.loads(run("score", "-m", os.path.join(a_out, "model"), "--tokens", win, "--json").stdout)["total"]
lp_gg = json.loads(run("score", "-m", gguf, "--tokens", win, "--json").stdout)["total"]
check(abs(lp_hf - lp_gg) <= 1e-4 * max(1, abs(lp_hf)), f"parity convert -> GGUF scores the same ({lp_gg:.6f} vs {lp_hf:.6f})")

# ---- 4. errors ---------------------------------------------------------------------------
def fails(args, needle, what):
    p = run(*args, ok=False)
    check(p.returncode == 1 and needle in p.stderr, f"{what}: exit 1, '{needle}' in: {p.stderr.strip()}")


bad = os.path.join(tmp, "bad.yaml")
conf(bad, cfg, out=os.path.join(tmp, "x"), data=data_dir, learning_rate=0.1)
fails(["train", "--config", bad], "unknown key 'learning_rate'", "unknown key")
with open(bad) as f:
    nlines = len(f.read().splitlines())
fails(["train", "--config", bad], f"bad.yaml:{nlines}:1", "unknown key names line:col")
conf(bad, cfg, out=os.path.join(tmp, "x"), data=data_dir, seq_len=1000)
fails(["train", "--config", bad], "beyond the model's context", "seq_len beyond max_position_embeddings")
conf(bad, dict(cfg, hidden_sizes=3), out=os.path.join(tmp, "x"), data=data_dir)
fails(["train", "--config", bad], "unknown key 'hidden_sizes'", "unknown model key")
short = os.path.join(tmp, "short")
os.makedirs(short)
write_tokfile(os.path.join(short, "train.bin"), [1, 2, 3], 64)
conf(bad, cfg, out=os.path.join(tmp, "x"), data=short, seq_len=16)
fails(["train", "--config", bad], "too short a dataset", "too-short dataset")
write_tokfile(os.path.join(short, "train.bin"), [], 64)
fails(["train", "--config", bad], "too short a dataset", "empty dataset")
# NaN: an init with an infinite norm weight
nan_init = os.path.join(tmp, "nan-init")
w = ref_model.write_model(nan_init, cfg, "F32", seed=1)
w["model.norm.weight"][0] = float("inf")
ref_model.write_safetensors(os.path.join(nan_init, "model.safetensors"), w)
conf(bad, cfg, out=os.path.join(tmp, "nan"), data=data_dir, init=nan_init, seq_len=16, batch_size=2)
fails(["train", "--config", bad], "step 1: the loss is NaN", "NaN loss stops with the step")
fails(["train", "--config", bad], "Last good checkpoint: none", "NaN loss names the last checkpoint")
p = run("train", "--help")
check(p.returncode == 0 and "--config" in p.stdout, "parity train --help")
finish()
