"""parity distill end to end on a tiny teacher (trained here on a Markov-chain dataset):
a student distilled from the teacher ends closer to it (KL(teacher‖student) on validation,
measured by parity eval) than the same student trained on hard labels for the same steps, in
forward and reverse KL; the top-k cache holds the teacher's top-k as PyTorch computes them;
with k = vocab the cached run (both fills) gives the on-the-fly run's weights; resume is
bit-identical; bad caches and configs fail with clear errors."""
import json
import os
import random
import struct

import torch

from train_common import check, finish, ref_model, run, scratch, write_tokfile

tmp = scratch("distill_run_")
V, SEQ = 48, 32

# A second-order Markov chain with a few likely successors per context: learnable structure.
rng = random.Random(5)
succ = {(a, b): rng.sample(range(V), 4) for a in range(V) for b in range(V)}
ids = [1, 2]
while len(ids) < 24000:
    s = succ[(ids[-2], ids[-1])]
    ids.append(s[0] if rng.random() < 0.6 else rng.choice(s[1:]) if rng.random() < 0.9 else rng.randrange(V))
data = os.path.join(tmp, "data")
os.makedirs(data)
write_tokfile(os.path.join(data, "train.bin"), ids[:22000], V)
write_tokfile(os.path.join(data, "val.bin"), ids[22000:], V)


def model_lines(d, layers, heads, kv, ff):
    return ["model:", "  model_type: llama", f"  vocab_size: {V}", f"  hidden_size: {d}", f"  intermediate_size: {ff}",
            f"  num_hidden_layers: {layers}", f"  num_attention_heads: {heads}", f"  num_key_value_heads: {kv}",
            "  max_position_embeddings: 64", "  tie_word_embeddings: true"]


def conf(name, lines, **kw):
    p = os.path.join(tmp, name + ".yaml")
    base = {"data": data, "out": os.path.join(tmp, name), "batch_size": 8, "seq_len": SEQ, "lr": 3e-3,
            "warmup": 5, "seed": 3, "threads": 2, "eval_batches": 2}
    base.update(kw)
    body = lines + [f"{k}: {v}" for k, v in base.items() if k != "distill"]
    if "distill" in kw:
        body += ["distill:"] + [f"  {k}: {v}" for k, v in kw["distill"].items()]
    with open(p, "w") as f:
        f.write("\n".join(body) + "\n")
    return p


def eval_kl(model):
    p = run("eval", "-m", model, "--teacher", teacher, "--data", os.path.join(data, "val.bin"), "--ctx", SEQ, "--json")
    return json.loads(p.stdout)


def weights(d):
    return ref_model.read_safetensors(os.path.join(d, "model.safetensors"))


# ---- the teacher ------------------------------------------------------------------------------
run("train", "--config", conf("teacher", model_lines(32, 2, 4, 2, 64), steps=100, lr=1e-2), "--quiet")
teacher = os.path.join(tmp, "teacher", "model")

student = model_lines(16, 1, 2, 1, 32)
STEPS = 40

# ---- 1. distilled beats hard labels, forward and reverse ------------------------------------------
run("train", "--config", conf("hard", student, steps=STEPS), "--quiet")
hard = eval_kl(os.path.join(tmp, "hard", "model"))
for mode in ("forward", "reverse"):
    c = conf("kd-" + mode, student, steps=STEPS, distill={"loss": mode, "temperature": 1.0})
    p = run("distill", "--teacher", teacher, "--student-config", c, "--quiet")
    kd = eval_kl(os.path.join(tmp, "kd-" + mode, "model"))
    check(kd["kl"] < hard["kl"],
          f"{mode} KL: distilled student's KL to the teacher {kd['kl']:.4f} < hard-label student's {hard['kl']:.4f} "
          f"(agreement {kd['top1_agreement']:.3f} vs {hard['top1_agreement']:.3f})")

# ---- 2. the cache holds the teacher's top-k as PyTorch computes it ---------------------------------
K = 5
run("distill", "cache", "--teacher", teacher, "--data", data, "--k", K, "--seq-len", SEQ, "--quiet")
raw = open(os.path.join(data, "train.topk.bin"), "rb").read()
magic, ver, hs, ntok, hsh, seq, k, vocab, flags, nw, res = struct.unpack("<8sIIQQIIIIQQ", raw[:64])
check(magic == b"PTTOPK\0\0" and ver == 1 and hs == 64 and ntok == 22000 and seq == SEQ and k == K and vocab == V
      and nw == (22000 - 1) // SEQ and len(raw) == 64 + nw * SEQ * K * 8, "top-k cache header and size")
tcfg = json.load(open(os.path.join(teacher, "config.json")))
tw = weights(teacher)
worst, same = 0.0, True
for w in (0, 17, nw - 1):
    logits, _ = ref_model.forward(tcfg, {k2: v.double() for k2, v in tw.items()}, ids[w * SEQ:w * SEQ + SEQ])
    lp = torch.log_softmax(logits, -1)
    for i in range(SEQ):
        off = 64 + ((w * SEQ + i) * K * 8)
        rid = struct.unpack(f"<{K}I", raw[off:off + 4 * K])
        rlp = struct.unpack(f"<{K}f", raw[off + 4 * K:off + 8 * K])
        top = torch.topk(lp[i], K)
        same &= set(rid[:K - 1]) <= set(top.indices.tolist())
        worst = max(worst, max(abs(rlp[j] - lp[i, rid[j]].item()) for j in range(K)))
check(same and worst < 1e-4, f"cached top-{K} ids and log-probs match PyTorch's teacher (worst {worst:.1e})")
c = conf("kd-topk", student, steps=4, distill={"cache": "true"})
run("distill", "--teacher", teacher, "--student-config", c, "--quiet")
check(os.path.exists(os.path.join(tmp, "kd-topk", "model", "model.safetensors")), f"distillation from a top-{K} cache runs")

# ---- 3. k = vocab: cached (uniform and renorm fills) == on the fly -----------------------------------
run("distill", "cache", "--teacher", teacher, "--data", data, "--k", V, "--seq-len", SEQ, "--quiet")
ref = None
for name, extra in (("fly", {}), ("cache-uniform", {"cache": "true"}), ("cache-renorm", {"cache": "true", "topk_fill": "renorm"})):
    c = conf("kv-" + name, student, steps=6, distill={"temperature": 2.0, "alpha": 0.2, **extra})
    run("distill", "--teacher", teacher, "--student-config", c, "--quiet")
    w = weights(os.path.join(tmp, "kv-" + name, "model"))
    if ref is None:
        ref = w
        continue
    diff = max((w[n] - ref[n]).abs().max().item() for n in ref)
    check(diff < 1e-4, f"k = vocab, {name}: weights equal the on-the-fly run's (max |diff| {diff:.1e})")

# ---- 4. resume is bit-identical ---------------------------------------------------------------
c = conf("straight", student, steps=8, distill={"temperature": 2.0})
run("distill", "--teacher", teacher, "--student-config", c, "--quiet")
c = conf("resumed", student, steps=8, checkpoint_interval=4, distill={"temperature": 2.0})
c4 = conf("resumed", student, steps=4, checkpoint_interval=4, distill={"temperature": 2.0})
run("distill", "--teacher", teacher, "--student-config", c4, "--quiet")
c = conf("resumed", student, steps=8, checkpoint_interval=4, distill={"temperature": 2.0})
run("distill", "--teacher", teacher, "--student-config", c, "--quiet", "--resume")
a, b = weights(os.path.join(tmp, "straight", "model")), weights(os.path.join(tmp, "resumed", "model"))
check(all(torch.equal(a[n], b[n]) for n in a), "4 steps, checkpoint, resume, 4 steps == 8 steps (bitwise)")

# ---- 5. errors ------------------------------------------------------------------------------
c = conf("badseq", student, steps=2, seq_len=16, distill={"cache": "true"})
p = run("distill", "--teacher", teacher, "--student-config", c, ok=False)
check(p.returncode == 1 and "seq_len 32" in p.stderr, f"a cache of another seq_len is refused ({p.stderr.strip()})")
with open(os.path.join(data, "train.topk.bin"), "r+b") as f:
    f.truncate(len(raw) - 3)
p = run("distill", "--teacher", teacher, "--student-config", conf("trunc", student, steps=2, distill={"cache": "true"}), ok=False)
check(p.returncode == 1 and "train.topk.bin: offset" in p.stderr, f"a truncated cache is refused ({p.stderr.strip()})")
p = run("distill", "--teacher", teacher, "--student-config",
        conf("rr", student, steps=2, distill={"cache": "true", "loss": "reverse", "topk_fill": "renorm"}), ok=False)
check(p.returncode == 1 and "reverse KL" in p.stderr, f"reverse KL with renormalised top-k is refused ({p.stderr.strip()})")
p = run("distill", "--teacher", teacher, "--student-config", conf("bad", student, distill={"temprature": 2}), ok=False)
check(p.returncode == 1 and "unknown key 'temprature'" in p.stderr and ".yaml:" in p.stderr,
      f"an unknown distill key names FILE:LINE:COL ({p.stderr.strip()})")
p = run("train", "--config", conf("kdtrain", student, distill={"alpha": 0.5}), ok=False)
check(p.returncode == 2 and "parity distill" in p.stderr, "parity train refuses a distill config")
p = run("distill", "--teacher", os.path.join(tmp, "nope"), "--student-config", conf("nt", student, steps=2), ok=False)
check(p.returncode == 1, "a missing teacher is an error")
check(run("distill", "--help").stdout.startswith("usage: parity distill"), "distill --help")
finish()
