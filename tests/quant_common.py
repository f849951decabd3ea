"""Shared by the quantised-model tests (test_quant_model.py, test_quant_llama.py): the check
tally and the tiny Llama they convert."""
import os

import formats_ref as R

failed = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failed.append(what)


def summary():
    """Exit status: 1 if any check failed."""
    print(f"{len(failed)} failed" if failed else "all passed")
    return 1 if failed else 0


def tiny_llama(d, V=128):
    """A random Llama with rows of 256 and 512 values (whole K-quant blocks), weights ~ N(0, 0.05)
    so that activations stay of a sane size and logits spread over a few nats."""
    R.tiny_llama(d, V=V, D=256, L=2, H=4, KV=2, FF=512)
    sd = R.read_safetensors(os.path.join(d, "model.safetensors"))
    R.write_safetensors(os.path.join(d, "model.safetensors"),
                        {k: (v * 0.1 if v.dim() == 2 else v) for k, v in sd.items()}, {"format": "pt"})
