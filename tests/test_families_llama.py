# ctest-labels: slow
"""llama.cpp runs the Gemma 2, Gemma 3 and Phi-3 GGUFs `parity convert` writes (general.architecture
gemma2 / gemma3 / phi3, llama.cpp's tensor names and keys, Gemma's norms as 1 + w) and its logits
match parity's on the same file and the float64 PyTorch reference (tests/ref/ref_families.py):
the independent check of both the file and the architecture. tests/js-ggml/llama_logits.c (built
here with cc) dlopens the prebuilt libllama of node-llama-cpp 3.21.1 (npm @node-llama-cpp/linux-x64,
installed by tests/npm-install.sh js-ggml). llama.cpp keeps its KV cache in F16 at its default
context parameters, so the logits agree to about 1e-3, not exactly. Skipped (exit 0, with a
message) only where npm cannot install the package."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "ref"))
import llama_harness  # noqa: E402
import torch  # noqa: E402
import ref_families as fam  # noqa: E402
from checks import Checks  # noqa: E402
from ref_model import read_safetensors  # noqa: E402

PARITY = os.environ.get("PARITY_BIN", "build/parity")
V = 128
TOKENS = [1, 17, 42, 99, 3, 64, 5, 120, 7, 8, 9, 10]
TOL_LLAMA = 0.01  # max |logit - llama.cpp's| (logits span about ±2.5; measured 0.0005-0.002)
TOL_REF = 1e-4    # against the float64 reference
check = Checks()

CASES = [
    # soft-caps small enough to change these logits; llama.cpp's query scale is 1/√head_dim
    ("gemma2", fam.gemma_config("gemma2", V, 64, 2, 4, 2, 16, 96, 3, attn_logit_softcapping=2.0,
                                final_logit_softcapping=3.0)),
    ("gemma3", fam.gemma_config("gemma3_text", V, 64, 6, 4, 2, 16, 96, 3)),  # five local layers, one global
    ("phi3", fam.phi3_config(V, 64, 2, 4, 2, 96)),
]


def tokenizer(d):
    """A SentencePiece-style vocabulary (llama.cpp needs tokenizer.ggml.*; only ids matter here).
    llama.cpp's loader looks Phi-3's <|end|> and <|endoftext|> up by text and fails without them."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<|end|>": 3, "<|endoftext|>": 4, "<0x0A>": 5,
             **{f"t{i}": i for i in range(6, V)}}
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump({"model": {"type": "BPE", "vocab": vocab, "merges": [], "byte_fallback": True, "unk_token": "<unk>"},
                   "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}]},
                   "added_tokens": [{"id": i, "content": t, "special": True}
                                    for i, t in ((1, "<s>"), (2, "</s>"), (3, "<|end|>"), (4, "<|endoftext|>"))]}, f)


def main():
    built = llama_harness.build("test_families_llama", "parity-families-llama-")
    if not built:
        return 0
    exe, tmp = built
    for i, (name, cfg) in enumerate(CASES):
        d = os.path.join(tmp, name)
        w = fam.write_model(d, cfg, "F32", seed=50 + i)
        tokenizer(d)
        gg = os.path.join(tmp, name + ".gguf")
        p = subprocess.run([PARITY, "convert", d, gg, "--dtype", "f32", "--quiet"], capture_output=True, text=True)
        check(p.returncode == 0, f"{name}: convert to GGUF: {p.stderr}")
        if p.returncode:
            continue
        out = os.path.join(tmp, name + ".safetensors")
        subprocess.run([PARITY, "trace", "-m", gg, "--tokens", ",".join(map(str, TOKENS)), "--read", "logits", "-o",
                        out], check=True, capture_output=True)
        ours = read_safetensors(out)["logits"].double()
        ref = fam.forward(cfg, w, TOKENS)[0]
        e_ref = (ours - ref).abs().max().item() / ref.abs().max().item()
        check(e_ref < TOL_REF, f"{name}: parity's logits on its GGUF within {TOL_REF} of the reference ({e_ref:.2e})")
        rows = llama_harness.logits(exe, gg, V, TOKENS)
        check(rows is not None, f"{name}: llama.cpp loads parity's file and decodes")
        rows = rows or []
        check(len(rows) == len(TOKENS), f"{name}: llama.cpp decodes {len(TOKENS)} tokens")
        if len(rows) != len(TOKENS):
            continue
        theirs = torch.tensor(rows, dtype=torch.float64)
        err, err_ref = (theirs - ours).abs().max().item(), (theirs - ref).abs().max().item()
        print(f"{name}: max |logit - llama.cpp's| = {err:.5f} (reference: {err_ref:.5f}; logits up to "
              f"{ours.abs().max().item():.2f})")
        check(err < TOL_LLAMA and err_ref < TOL_LLAMA, f"{name}: logits within {TOL_LLAMA} of llama.cpp's")
    return check.summary("test_families_llama")


if __name__ == "__main__":
    sys.exit(main())
