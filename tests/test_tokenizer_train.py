#!/usr/bin/env python3
"""`parity tokenizer train` against a plain Python BPE trainer written from the algorithm's
definition (no incremental counts, no heap: every step recounts all pairs of all words).

The same pre-tokenizer patterns run through the `regex` module (python3-regex); the corpora
stay clear of the few code points where PCRE2 and `regex` disagree on \\s. For each corpus and
setting the merges list and the vocabulary must be identical, the ids of the specials too, and
the trained tokenizer must round-trip text through `parity tokenizer encode/decode --batch`.
"""
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter

import regex

PARITY = os.environ.get("PARITY_BIN", "build/parity")

GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
          r"""\s*[\r\n]+|\s+(?!\S)|\s+""")


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


B2U = bytes_to_unicode()


def spell(b):
    return "".join(B2U[x] for x in b)


def pretokenize(text, pattern, specials):
    """Split at specials (leftmost, then longest), then regex matches and the gaps between them."""
    rx = regex.compile(pattern)
    words = Counter()
    pos = 0
    while True:
        best, blen = len(text), 0
        for s in specials:
            i = text.find(s, pos)
            if i >= 0 and (i < best or (i == best and len(s) > blen)):
                best, blen = i, len(s)
        seg = text[pos:best]
        last = 0
        for m in rx.finditer(seg):
            if m.start() == m.end():
                continue
            for piece in (seg[last:m.start()], m.group()):
                if piece:
                    words[piece.encode()] += 1
            last = m.end()
        if seg[last:]:
            words[seg[last:].encode()] += 1
        if not blen:
            return words
        pos = best + blen


def train_reference(text, vocab_size, specials, min_frequency, pattern):
    words = {tuple(w): c for w, c in pretokenize(text, pattern, specials).items()}
    toks = [bytes([b]) for b in range(256)]
    index = {t: i for i, t in enumerate(toks)}
    merges, merged, reused = [], set(), 0
    target = vocab_size - len(specials)
    while len(toks) < target:
        counts = Counter()
        for w, c in words.items():
            for i in range(len(w) - 1):
                counts[(w[i], w[i + 1])] += c
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        if counts[best] < max(min_frequency, 1):
            break
        a, b = best
        new = toks[a] + toks[b]
        if new in index:
            reused += 1
            z = index[new]
        else:
            z = index[new] = len(toks)
            toks.append(new)
        if best not in merged:
            merged.add(best)
            merges.append(spell(toks[a]) + " " + spell(toks[b]))
        nw = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(z)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] += c
        words = nw
    vocab = {spell(t): i for i, t in enumerate(toks)}
    for k, s in enumerate(specials):
        vocab[s] = len(toks) + k
    return merges, vocab, reused


def run(args, stdin=None):
    return subprocess.run([PARITY] + args, input=stdin, capture_output=True, check=False)


UNICODE = ("Überprüfung der Größe: naïve café, façade — «quotes» and “curly” ones. 数据 数据 数据 测试 测试. "
           "Ελληνικά κείμενα, русский текст и ещё раз русский текст. 🤖🤖 emoji 🤖 again, 3.14 and 2718281828.\n")


def corpora():
    gpl = open("/usr/share/common-licenses/GPL-3", encoding="utf-8").read()
    apache = open("/usr/share/common-licenses/Apache-2.0", encoding="utf-8").read()
    return [
        ("GPL-3[:6000] gpt2", gpl[:6000], 600, ["<|endoftext|>"], 2, "gpt2"),
        ("Apache-2.0[:5000]+unicode llama3", apache[:5000] + UNICODE * 3, 560, ["<|endoftext|>", "<|im_end|>"], 1, "llama3"),
        ("unicode+specials gpt2", (UNICODE + "<|endoftext|>") * 4 + "aaaa aaa aaaaa a", 420, ["<|endoftext|>"], 1, "gpt2"),
    ]


def main():
    failures = 0
    total_reused = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, text, vocab_size, specials, minf, pattern in corpora():
            src = os.path.join(tmp, "corpus.txt")
            with open(src, "w", encoding="utf-8") as f:
                f.write(text)
            out = os.path.join(tmp, name.replace(" ", "_"), "tokenizer.json")
            os.makedirs(os.path.dirname(out))
            args = ["tokenizer", "train", "--vocab-size", str(vocab_size), "--min-frequency", str(minf), "--pattern", pattern,
                    "-o", out, src]
            for s in specials:
                args += ["--special", s]
            r = run(args)
            if r.returncode:
                print(f"FAIL {name}: train exited {r.returncode}: {r.stderr.decode()}")
                failures += 1
                continue
            tj = json.load(open(out, encoding="utf-8"))
            merges, vocab, reused = train_reference(text, vocab_size, specials, minf,
                                                    GPT2 if pattern == "gpt2" else LLAMA3)
            total_reused += reused
            got_merges, got_vocab = tj["model"]["merges"], tj["model"]["vocab"]
            if got_merges != merges:
                i = next((k for k, (x, y) in enumerate(zip(got_merges, merges)) if x != y), min(len(got_merges), len(merges)))
                print(f"FAIL {name}: merges differ at {i}: parity {got_merges[i:i+3]} reference {merges[i:i+3]} "
                      f"({len(got_merges)} vs {len(merges)})")
                failures += 1
                continue
            if got_vocab != vocab:
                print(f"FAIL {name}: vocabularies differ")
                failures += 1
                continue
            added = {a["content"]: a["id"] for a in tj["added_tokens"]}
            if added != {s: vocab[s] for s in specials} or not all(a["special"] for a in tj["added_tokens"]):
                print(f"FAIL {name}: added_tokens {added}")
                failures += 1
                continue
            texts = [text[:2000], UNICODE, "unseen: zyzzyva 🦜🦜 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \t\r\n  x", specials[0] + "hi" + specials[-1]]
            enc = run(["tokenizer", "encode", "-m", out, "--batch"], json.dumps(texts).encode())
            dec = run(["tokenizer", "decode", "-m", out, "--batch"], enc.stdout) if enc.returncode == 0 else enc
            if dec.returncode or json.loads(dec.stdout) != texts:
                print(f"FAIL {name}: round trip: {dec.stderr.decode()}")
                failures += 1
                continue
            print(f"ok - {name}: {len(merges)} merges, vocab {len(vocab)}, {reused} merges reused an existing token")
    print(f"{total_reused} merges reached an existing token (id reuse exercised: {'yes' if total_reused else 'no'})")
    print("test_tokenizer_train.py:", "FAILED" if failures else "passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
