"""llama.cpp's prebuilt libllama (npm @node-llama-cpp/linux-x64 3.21.1, pinned in tests/js-ggml)
and the C harness tests/js-ggml/llama_logits.c that loads a GGUF with it and prints the logits
after each token; shared by test_quant_llama.py and test_families_llama.py."""
import json
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BINS = os.path.join(HERE, "js-ggml", "node_modules", "@node-llama-cpp", "linux-x64", "bins", "linux-x64")


def build(test, prefix):
    """Installs the package and builds the harness into a new temporary directory: (exe, tmp),
    or None after printing why the test is skipped."""
    inst = subprocess.run(["bash", os.path.join(HERE, "npm-install.sh"), "js-ggml"])
    if inst.returncode != 0 or not os.path.exists(os.path.join(BINS, "libllama.v0.4.0.so")):
        print(f"{test}: SKIPPED: npm could not install @node-llama-cpp/linux-x64 (llama.cpp's prebuilt "
              "libraries); needs npm and linux-x64 glibc")
        return None
    tmp = tempfile.mkdtemp(prefix=prefix)
    exe = os.path.join(tmp, "llama_logits")
    subprocess.run(["cc", "-O1", "-o", exe, os.path.join(HERE, "js-ggml", "llama_logits.c")], check=True)
    return exe, tmp


def logits(exe, gguf, n_vocab, tokens):
    """llama.cpp's logits after each token (a list of rows), or None when it failed (its stderr printed)."""
    p = subprocess.run([exe, BINS, gguf, str(n_vocab), *map(str, tokens)], capture_output=True, text=True,
                       timeout=300)
    if p.returncode:
        print(p.stderr[-3000:])
        return None
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("[")]
