# ctest-labels: slow
"""llama.cpp loads the GGUFs `parity convert --dtype f32|q4_k|q6_k|q4_k_m` writes and computes
logits close to parity's on the same file: tests/js-ggml/llama_logits.c (built here with cc)
dlopens the prebuilt libllama of node-llama-cpp 3.21.1 (npm @node-llama-cpp/linux-x64, pinned
in tests/js-ggml, installed by tests/npm-install.sh js-ggml) and prints the logits after each
token; `parity trace --read logits` gives parity's. llama.cpp quantises the activations to
8 bits for K-quant weights (ggml's Q8_K) and keeps its KV cache in F16, parity does neither, so
the logits agree to a tolerance, not exactly (stated per type below; the printout says what was
measured). Skipped (exit 0, with a message) only where npm cannot install the package."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import formats_ref as R  # noqa: E402
import llama_harness  # noqa: E402
from quant_common import check, summary, tiny_llama  # noqa: E402

PARITY = os.environ.get("PARITY_BIN", "build/parity")
V = 128
TOKENS = [1, 17, 42, 99, 3, 64, 5, 120]
# max |logit - llama.cpp's| allowed (logits here span about ±3)
TOL = {"f32": 0.01, "q6_k": 0.15, "q4_k": 0.15, "q4_k_m": 0.15}

def main():
    built = llama_harness.build("test_quant_llama", "parity-llama-")
    if not built:
        return 0
    exe, tmp = built
    d = os.path.join(tmp, "m")
    tiny_llama(d, V)
    # a SentencePiece-style vocabulary (llama.cpp needs tokenizer.ggml.*; ids are what matter)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, V)}}
    json.dump({"model": {"type": "BPE", "vocab": vocab, "merges": [], "byte_fallback": True, "unk_token": "<unk>"},
               "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}]},
               "added_tokens": [{"id": 1, "content": "<s>", "special": True},
                                {"id": 2, "content": "</s>", "special": True}]},
              open(os.path.join(d, "tokenizer.json"), "w"))
    f32_logits = None
    for dt, tol in TOL.items():
        g = os.path.join(tmp, dt + ".gguf")
        subprocess.run([PARITY, "convert", d, g, "--dtype", dt, "--quiet"], check=True)
        out = os.path.join(tmp, dt + ".safetensors")
        subprocess.run([PARITY, "trace", "-m", g, "--tokens", ",".join(map(str, TOKENS)), "--read", "logits", "-o",
                        out], check=True, capture_output=True)
        ours = R.read_safetensors(out)["logits"].float()
        rows = llama_harness.logits(exe, g, V, TOKENS)
        if rows is None:
            check(False, f"{dt}: llama.cpp loads parity's file and decodes")
            continue
        check(len(rows) == len(TOKENS), f"{dt}: llama.cpp loads parity's file and decodes {len(TOKENS)} tokens")
        if len(rows) != len(TOKENS):
            continue
        err = max(abs(a - b) for r, row in enumerate(rows) for a, b in zip(row, ours[r].tolist()))
        span = ours.abs().max().item()
        print(f"{dt}: max |logit - llama.cpp's| = {err:.4f} (logits up to {span:.2f})")
        check(err < tol, f"{dt}: logits within {tol} of llama.cpp's on the same file")
        if f32_logits is None:
            f32_logits = ours
        else:  # llama.cpp decodes the blocks as parity does: it is nearer parity's run of this file than F32
            far = max(abs(a - b) for r, row in enumerate(rows) for a, b in zip(row, f32_logits[r].tolist()))
            check(err < far / 2, f"{dt}: llama.cpp's logits are nearer parity's on this file ({err:.4f}) than on "
                  f"F32 ({far:.4f})")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
