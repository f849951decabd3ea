"""parity data (text paragraphs and JSONL into token files, the split, malformed lines) and
parity eval (loss, perplexity, KL(teacher||student), top-1 agreement) against PyTorch; then the
whole path: data -> train from scratch -> eval on the written model directory."""
import json
import math
import os
import shutil

import torch

from train_common import byte_tokenizer, check, finish, read_tokfile, ref_model, run, scratch

tmp = scratch("train_data_")
tokp = os.path.join(tmp, "tokenizer.json")
V, EOT = byte_tokenizer(tokp)
words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "in", "there"]
g = torch.Generator().manual_seed(1)
paras = [" ".join(words[int(i)] for i in torch.randint(0, len(words), (int(n),), generator=g))
         for n in torch.randint(5, 30, (24,), generator=g)]
corpus = os.path.join(tmp, "corpus.txt")
with open(corpus, "w") as f:
    f.write("\n\n".join(p if k % 3 else p[:len(p) // 2] + "\n" + p[len(p) // 2:] for k, p in enumerate(paras)) + "\n")


def enc(text):
    p = run("tokenizer", "encode", "-m", tokp, "--text", text, "--json", "--no-add-special", "--no-parse-special")
    return json.loads(p.stdout)["ids"]


# ---- data: plain text ----------------------------------------------------------------------
out = os.path.join(tmp, "data")
p = run("data", "--tokenizer", tokp, "--input", corpus, "--out", out, "--val-fraction", "0.2", "--seed", "3")
meta = json.loads(p.stdout)
tr, vtr = read_tokfile(os.path.join(out, "train.bin"))
va, _ = read_tokfile(os.path.join(out, "val.bin"))
check(meta["documents"] == 24 and vtr == V, f"24 paragraphs became 24 documents ({meta['documents']}), vocab {vtr}")
check(1 <= meta["val_documents"] < 24 and va.count(EOT) == meta["val_documents"],
      f"a validation split of {meta['val_documents']} documents, each ending in EOS")
docs = []
for part in (tr, va):
    cur = []
    for t in part:
        cur.append(t)
        if t == EOT:
            docs.append(cur)
            cur = []
expect = [enc(p.replace("\n", "\n")) + [EOT] for p in paras]
# paragraphs that were split over two lines keep the newline inside the document
expect = []
for k, p in enumerate(paras):
    txt = p if k % 3 else p[:len(p) // 2] + "\n" + p[len(p) // 2:]
    expect.append(enc(txt) + [EOT])
check(sorted(map(tuple, docs)) == sorted(map(tuple, expect)),
      "train + val documents are exactly the tokenizer's encoding of each paragraph + EOS")
p2 = run("data", "--tokenizer", tokp, "--input", corpus, "--out", out + "2", "--val-fraction", "0.2", "--seed", "3")
with open(os.path.join(out, "train.bin"), "rb") as f1, open(os.path.join(out + "2", "train.bin"), "rb") as f2:
    check(f1.read() == f2.read(), "the split is deterministic for a seed")
check(os.path.exists(os.path.join(out, "tokenizer.json")), "the tokenizer is copied into the dataset")

# ---- data: JSONL ---------------------------------------------------------------------------
jl = os.path.join(tmp, "a.jsonl")
with open(jl, "w") as f:
    f.write(json.dumps({"text": paras[0]}) + "\n" + json.dumps({"text": paras[1], "id": 2}) + "\n")
    f.write('{"text": "broken\n')
    f.write(json.dumps({"body": "no text"}) + "\n\n" + json.dumps({"text": paras[2]}) + "\n")
p = run("data", "--tokenizer", tokp, "--input", jl, "--jsonl", "--out", os.path.join(tmp, "j1"), ok=False)
check(p.returncode == 1 and "a.jsonl:3" in p.stderr, f"a malformed line stops the job, naming file:line: {p.stderr.strip()}")
p = run("data", "--tokenizer", tokp, "--input", jl, "--jsonl", "--field", "text", "--on-error", "skip",
        "--val-fraction", "0", "--out", os.path.join(tmp, "j2"))
meta = json.loads(p.stdout)
check(meta["skipped_lines"] == 2 and meta["documents"] == 3, f"--on-error skip counts 2 skipped lines: {meta}")
tr, _ = read_tokfile(os.path.join(tmp, "j2", "train.bin"))
check(tr == enc(paras[0]) + [EOT] + enc(paras[1]) + [EOT] + enc(paras[2]) + [EOT], "JSONL documents in order")
empty = os.path.join(tmp, "empty.txt")
open(empty, "w").close()
p = run("data", "--tokenizer", tokp, "--input", empty, "--out", os.path.join(tmp, "j3"), ok=False)
check(p.returncode == 1 and "no text" in p.stderr, f"empty input is an error: {p.stderr.strip()}")

# ---- eval against torch --------------------------------------------------------------------
cfg = ref_model.llama_config(V, 32, 2, 4, 2, 8, 48)
sd, td = os.path.join(tmp, "student"), os.path.join(tmp, "teacher")
ws = ref_model.write_model(sd, cfg, "F32", seed=1)
wt = ref_model.write_model(td, cfg, "F32", seed=2)
for d in (sd, td):
    shutil.copy(tokp, os.path.join(d, "tokenizer.json"))
evt = os.path.join(tmp, "eval.txt")
with open(evt, "w") as f:
    f.write(" ".join(paras[:3]))
ids = json.loads(run("tokenizer", "encode", "-m", sd, "--json", "--no-parse-special", "--text", " ".join(paras[:3])).stdout)["ids"]
ctx = 16
r = json.loads(run("eval", "-m", sd, "--teacher", td, "--text", evt, "--ctx", ctx, "--json").stdout)
nll = tnll = kl = 0.0
agree = pred = 0
with torch.no_grad():
    for w0 in range(0, len(ids), ctx):
        win = ids[w0:w0 + ctx]
        if len(win) < 2:
            break
        ls = torch.log_softmax(ref_model.forward(cfg, {k: v.double() for k, v in ws.items()}, win)[0], -1)
        lt = torch.log_softmax(ref_model.forward(cfg, {k: v.double() for k, v in wt.items()}, win)[0], -1)
        for i in range(len(win) - 1):
            nll -= ls[i, win[i + 1]].item()
            tnll -= lt[i, win[i + 1]].item()
            kl += (lt[i].exp() * (lt[i] - ls[i])).sum().item()
            agree += int(ls[i].argmax() == lt[i].argmax())
            pred += 1
close = lambda a, b: abs(a - b) <= 1e-4 * max(1.0, abs(b))  # noqa: E731
check(r["predicted"] == pred and r["tokens"] == len(ids), f"eval predicts {pred} tokens in windows of {ctx}")
check(close(r["loss"], nll / pred) and close(r["perplexity"], math.exp(nll / pred)),
      f"loss/perplexity match torch ({r['loss']:.6f} vs {nll / pred:.6f})")
check(close(r["teacher_loss"], tnll / pred) and close(r["teacher_perplexity"], math.exp(tnll / pred)),
      "teacher loss/perplexity match torch")
check(close(r["kl"], kl / pred), f"KL(teacher||student) matches torch ({r['kl']:.6f} vs {kl / pred:.6f})")
check(abs(r["top1_agreement"] - agree / pred) < 1e-9, f"top-1 agreement matches torch ({agree}/{pred})")
r2 = json.loads(run("eval", "-m", sd, "--teacher", sd, "--text", evt, "--json").stdout)
check(abs(r2["kl"]) < 1e-6 and r2["top1_agreement"] == 1.0, "a model against itself: KL 0, agreement 1")

# ---- data -> train -> eval -----------------------------------------------------------------
conf = os.path.join(tmp, "scratch.yaml")
with open(conf, "w") as f:
    f.write(f"""# a tiny GPT-2 from scratch
model:
  model_type: gpt2
  vocab_size: {V}
  n_embd: 32
  n_layer: 2
  n_head: 4
  n_positions: 64
data: {out}
out: {tmp}/scratch
batch_size: 4
seq_len: 32
steps: 15
lr: 0.01
warmup: 5
eval_interval: 10
checkpoint_interval: 10
seed: 1
threads: 2
""")
run("train", "--config", conf, "--quiet")
md = os.path.join(tmp, "scratch", "model")
check(sorted(os.listdir(md)) == ["config.json", "model.safetensors", "tokenizer.json"], "an HF model directory")
r = json.loads(run("eval", "-m", md, "--text", corpus, "--json").stdout)
r0 = json.loads(run("eval", "-m", sd, "--text", corpus, "--json").stdout)
check(r["loss"] < math.log(V) and r["loss"] < r0["loss"],
      f"the trained model beats uniform ({math.log(V):.3f}) and a random model ({r0['loss']:.3f}): {r['loss']:.3f}")
for c in ("data", "eval"):
    p = run(c, "--help")
    check(p.returncode == 0 and "usage" in p.stdout, f"parity {c} --help")
finish()
