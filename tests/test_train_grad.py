"""Every parameter's gradient from `parity train grad` against PyTorch autograd (float64) on
random models of several shapes: Llama (GQA, biases, untied / tied) and GPT-2, with ignored
targets (-100) and with soft targets. Tolerance: 1e-4 relative (L2 norm per tensor)."""
import os

import torch

from train_common import check, finish, ref_model, run, scratch, write_safetensors_any, batch_loss, read_tokfile  # noqa

torch.manual_seed(0)
CASES = [
    ("llama-gqa-bias", ref_model.llama_config(61, 32, 2, 4, 2, 8, 48, tie=False, bias=True), 2, 9),
    ("llama-tied", ref_model.llama_config(50, 24, 2, 3, 1, 8, 40, tie=True), 2, 7),
    ("llama-mha", ref_model.llama_config(40, 16, 1, 2, 2, 8, 24), 1, 12),
    ("gpt2", ref_model.gpt2_config(57, 32, 2, 4, n_pos=32), 2, 10),
    ("gpt2-ff", ref_model.gpt2_config(33, 24, 1, 2, d_ff=40, n_pos=16), 3, 5),
]
tmp = scratch("train_grad_")
for name, cfg, B, T in CASES:
    for soft_mode in (False, True):
        if soft_mode and name not in ("llama-gqa-bias", "gpt2"):
            continue
        d = os.path.join(tmp, name)
        w = ref_model.write_model(d, cfg, "F32", seed=len(name))
        V = cfg["vocab_size"]
        tokens = torch.randint(0, V, (B, T), dtype=torch.int32)
        targets = torch.randint(0, V, (B, T), dtype=torch.int32)
        targets[0, 1] = -100
        targets[-1, -1] = -100
        batch = {"tokens": tokens, "targets": targets}
        soft = None
        if soft_mode:
            soft = torch.softmax(torch.randn(B, T, V) * 2, -1)
            batch["soft"] = soft.float()
        bp = os.path.join(tmp, name + ".batch.safetensors")
        gp = os.path.join(tmp, name + ".grads.safetensors")
        write_safetensors_any(bp, batch)
        run("train", "grad", "-m", d, "--batch", bp, "--out", gp, "--threads", "2")
        got = ref_model.read_safetensors(gp)
        w64 = {k: v.double().requires_grad_(True) for k, v in w.items()}
        loss = batch_loss(cfg, w64, tokens, targets, soft.double() if soft is not None else None)
        loss.backward()
        tag = name + (" soft" if soft_mode else "")
        check(abs(float(got["loss"][0]) - loss.item()) <= 1e-5 * max(1, abs(loss.item())),
              f"{tag}: loss {float(got['loss'][0]):.7f} == torch {loss.item():.7f}")
        worst, worst_name = 0.0, ""
        missing = [k for k in w64 if k not in got]
        check(not missing, f"{tag}: a gradient for every parameter (missing {missing})")
        for k, p in w64.items():
            if k not in got:
                continue
            ref = p.grad
            err = (got[k].double() - ref).norm().item() / max(ref.norm().item(), 1e-12)
            if err > worst:
                worst, worst_name = err, k
        check(worst <= 1e-4, f"{tag}: every gradient within 1e-4 relative (worst {worst:.2e} at {worst_name})")
finish()
