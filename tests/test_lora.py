"""LoRA against a plain-torch reference: `parity score --lora` equals W x + s·B A x in
tests/ref/ref_model.py; one `parity finetune` step's gradient equals torch autograd's; training
reduces the loss; the adapter equals the merged model (1e-5); PEFT names/config; the LoRA GGUF
read by @huggingface/gguf; JSONL errors name FILE:LINE."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_common import BIN, SRC, check, finish, run, byte_tokenizer, ref_model  # noqa: E402

torch.manual_seed(0)
MODS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def parent(m):
    return "self_attn" if m in MODS[:4] else "mlp"


def lora_weights(w, ad, scale):
    """Base weights with W + s·B·A folded in (the reference LoRA: W x + s·B A x)."""
    out = dict(w)
    for n, t in ad.items():
        if ".lora_A." in n:
            base = n.replace("base_model.model.", "").replace(".lora_A.weight", ".weight")
            B = ad[n.replace("lora_A", "lora_B")]
            out[base] = w[base] + scale * (B.double() @ t.double()).float()
    return out


def score(model, ids, lora=None):
    args = ["score", "-m", model, "--tokens", ",".join(map(str, ids)), "--json"]
    if lora:
        args += ["--lora", lora]
    return json.loads(run(*args).stdout)["logprobs"][1:]


def ref_logprobs(cfg, w, ids):
    logits, _ = ref_model.forward(cfg, {k: v.double() for k, v in w.items()}, ids)
    lp = torch.log_softmax(logits, -1)
    return [float(lp[i - 1, ids[i]]) for i in range(1, len(ids))]


def main():
    tmp = tempfile.mkdtemp(prefix="parity-lora-")
    try:
        md = os.path.join(tmp, "base")
        V, eot = byte_tokenizer(os.path.join(tmp, "tok.json"))
        cfg = ref_model.llama_config(V, 32, 2, 4, 2, 8, 48)
        w = ref_model.write_model(md, cfg, seed=3)
        shutil.copy(os.path.join(tmp, "tok.json"), os.path.join(md, "tokenizer.json"))
        L = cfg["num_hidden_layers"]
        shapes = {"q_proj": (32, 32), "k_proj": (16, 32), "v_proj": (16, 32), "o_proj": (32, 32),
                  "gate_proj": (48, 32), "up_proj": (48, 32), "down_proj": (32, 48)}

        # a random adapter (B != 0) on every target, written as PEFT
        r, alpha = 4, 8.0
        ad = {}
        for i in range(L):
            for m in MODS:
                o, n = shapes[m]
                p = f"base_model.model.model.layers.{i}.{parent(m)}.{m}"
                ad[p + ".lora_A.weight"] = torch.randn(r, n) * 0.2
                ad[p + ".lora_B.weight"] = torch.randn(o, r) * 0.2
        ad_dir = os.path.join(tmp, "init")
        os.makedirs(ad_dir)
        ref_model.write_safetensors(os.path.join(ad_dir, "adapter_model.safetensors"), ad)
        json.dump({"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": MODS, "bias": "none",
                   "lora_dropout": 0.0, "task_type": "CAUSAL_LM"}, open(os.path.join(ad_dir, "adapter_config.json"), "w"))

        # 1. forward with the adapter at scale 0.7 vs the torch reference
        ids = [ord(c) for c in "xyzQRSxyzk"]
        got = score(md, ids, ad_dir + ":0.7")
        want = ref_logprobs(cfg, lora_weights(w, ad, alpha / r * 0.7), ids)
        err = max(abs(a - b) for a, b in zip(got, want))
        check(err < 1e-4, f"score --lora equals torch W x + s·B A x (max |diff| {err:.2e})")
        base = score(md, ids)
        check(max(abs(a - b) for a, b in zip(got, base)) > 1e-3, "the adapter changes the output")

        # 2. the gradient of one step: lr 1, eps 1, beta1 0 → ΔA = -g/(|g|+1) per element
        data = os.path.join(tmp, "one.jsonl")
        with open(data, "w") as f:
            f.write(json.dumps({"prompt": "xyz", "completion": "QRSk"}) + "\n")
        out1 = os.path.join(tmp, "step1")
        p1 = run("finetune", "-m", md, "--data", data, "--out", out1, "--init", ad_dir, "--steps", "1", "--lr", "1",
            "--eps", "1", "--beta1", "0", "--beta2", "0", "--clip", "0", "--dropout", "0", "--batch-size", "1",
            "--quiet")
        after = ref_model.read_safetensors(os.path.join(out1, "adapter_model.safetensors"))
        toks = [ord(c) for c in "xyzQRSk"] + [eot]
        params = {k: v.clone().double().requires_grad_(True) for k, v in ad.items()}
        wd = {k: v.double() for k, v in w.items()}
        for n, A in params.items():
            if ".lora_A." in n:
                base_n = n.replace("base_model.model.", "").replace(".lora_A.weight", ".weight")
                wd[base_n] = wd[base_n] + (alpha / r) * (params[n.replace("lora_A", "lora_B")] @ A)
        logits, _ = ref_model.forward(cfg, wd, toks[:-1])
        lp = torch.log_softmax(logits, -1)
        loss = -sum(lp[i - 1, toks[i]] for i in range(3, len(toks))) / (len(toks) - 3)
        first = json.loads(p1.stdout.strip().splitlines()[-1])["first_loss"]
        check(abs(first - float(loss)) < 1e-5, f"the LoRA training loss equals torch's ({first:.7f} vs {float(loss):.7f})")
        loss.backward()
        worst = 0.0
        for n, p in params.items():
            d = (after[n].double() - ad[n].double())
            g_parity = -d / (1 - d.abs())
            g = p.grad
            rel = float((g_parity - g).norm() / (g.norm() + 1e-12))
            worst = max(worst, rel)
        check(worst < 2e-3, f"LoRA gradients equal torch autograd's (worst relative L2 {worst:.2e})")

        # 3. training reduces the loss on its data (prompt/completion + chat lines)
        data2 = os.path.join(tmp, "train.jsonl")
        with open(data2, "w") as f:
            for i in range(6):
                f.write(json.dumps({"prompt": f"Q{i}:", "completion": f" answer {i % 3}"}) + "\n")
                f.write(json.dumps({"messages": [{"role": "system", "content": "be brief"},
                                                 {"role": "user", "content": f"ping {i}"},
                                                 {"role": "assistant", "content": "pong"}]}) + "\n")
        out2 = os.path.join(tmp, "trained")
        p = run("finetune", "-m", md, "--data", data2, "--out", out2, "--targets", "q,k,v,o,gate,up,down",
                "--rank", "4", "--steps", "30", "--lr", "1e-2", "--batch-size", "4", "--quiet")
        res = json.loads(p.stdout.strip().splitlines()[-1])
        check(res["last_loss"] < 0.7 * res["first_loss"],
              f"training reduces the loss ({res['first_loss']:.3f} -> {res['last_loss']:.3f})")
        check(res["examples"] == 12, "12 examples read")

        # 4. PEFT layout
        cf = json.load(open(os.path.join(out2, "adapter_config.json")))
        check(cf["peft_type"] == "LORA" and cf["r"] == 4 and cf["lora_alpha"] == 16 and
              sorted(cf["target_modules"]) == sorted(MODS), "adapter_config.json keys")
        t2 = ref_model.read_safetensors(os.path.join(out2, "adapter_model.safetensors"))
        check(set(t2) == set(ad) and all(tuple(t2[k].shape) == tuple(ad[k].shape) for k in t2),
              "PEFT tensor names and shapes (lora_A [r, in], lora_B [out, r])")

        # 5. adapter == merged model
        merged = os.path.join(tmp, "merged")
        run("finetune", "merge", "-m", md, "--lora", out2, "--out", merged)
        a_lp, m_lp = score(md, ids, out2), score(merged, ids)
        err = max(abs(a - b) for a, b in zip(a_lp, m_lp))
        check(err < 1e-5, f"adapter output equals the merged model's (max |diff| {err:.2e})")
        check(max(abs(a - b) for a, b in zip(m_lp, score(md, ids))) > 1e-3, "the merged model differs from the base")
        g_lp = score(md, ids, os.path.join(out2, "adapter.gguf"))
        err = max(abs(a - b) for a, b in zip(a_lp, g_lp))
        check(err < 1e-6, f"the LoRA GGUF scores as the PEFT adapter (max |diff| {err:.2e})")

        # 6. @huggingface/gguf reads the LoRA GGUF
        if shutil.which("node") and shutil.which("npm"):
            js_dir = os.path.join(SRC, "tests", "js-gguf")
            subprocess.run(["bash", os.path.join(SRC, "tests", "npm-install.sh"), "js-gguf"], check=True)
            js = json.loads(subprocess.run(["node", os.path.join(js_dir, "dump_gguf.mjs"), os.path.join(out2, "adapter.gguf")],
                                           check=True, capture_output=True, text=True).stdout)
            md_ = js["metadata"]
            check(md_["general.type"]["value"] == "adapter" and md_["adapter.type"]["value"] == "lora" and
                  abs(md_["adapter.lora.alpha"]["value"] - 16) < 1e-6 and md_["general.architecture"]["value"] == "llama",
                  "GGUF adapter keys (general.type, adapter.type, adapter.lora.alpha)")
            names = {t["name"]: t["shape"] for t in js["tensors"]}
            gg = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
                  "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
            ok = len(names) == 2 * L * 7
            for i in range(L):
                for m in MODS:
                    o, n = shapes[m]
                    ok &= names.get(f"blk.{i}.{gg[m]}.weight.lora_a") == [n, 4]  # ne order: [in, r]
                    ok &= names.get(f"blk.{i}.{gg[m]}.weight.lora_b") == [4, o]  # [r, out]
            check(ok, "GGUF LoRA tensor names and shapes (blk.N.attn_q.weight.lora_a ne [in, r], lora_b [r, out])")
        else:
            print("skip: node/npm missing (GGUF read by @huggingface/gguf)")

        # 7. malformed JSONL lines: stop names FILE:LINE, skip counts them
        bad = os.path.join(tmp, "bad.jsonl")
        with open(bad, "w") as f:
            f.write(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
            f.write("{not json\n")
            f.write(json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n")
        p = run("finetune", "-m", md, "--data", bad, "--out", os.path.join(tmp, "b1"), "--steps", "1", "--quiet", ok=False)
        check(p.returncode == 1 and f"{bad}:2" in p.stderr, "a malformed line stops the job naming FILE:LINE")
        p = run("finetune", "-m", md, "--data", bad, "--out", os.path.join(tmp, "b2"), "--steps", "1", "--quiet",
                "--on-error", "skip")
        check(json.loads(p.stdout.strip().splitlines()[-1])["skipped_lines"] == 2, "--on-error skip counts 2 lines")
        p = run("finetune", "-m", md, "--data", data2, "--out", os.path.join(tmp, "b3"), "--targets", "q,wq",
                "--quiet", ok=False)
        check(p.returncode == 1 and "unknown LoRA target 'wq'" in p.stderr, "an unknown target is a clear error")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
