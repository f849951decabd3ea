"""The normalizers of Hugging Face tokenizer.json files (NFC, NFD, NFKC, NFKD, Lowercase, Strip,
StripAccents, Replace with a string or a regex, Prepend, Sequence) against Python as the
reference (unicodedata.normalize, str.lower, str.strip over Unicode White_Space, re.sub):
a byte-level BPE tokenizer without merges and without a pre-tokenizer regex turns the normalized
text into one token per byte, so `parity tokenizer encode` then `decode` gives back exactly the
normalized text. Strings with combining marks in non-canonical order, Hangul syllables and
conjoining jamo, compatibility forms, singletons, composition exclusions, Greek final sigma and
dotted capital I."""
import json
import os
import re
import subprocess
import sys
import tempfile
import unicodedata

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
from tiny_world import bytes_to_unicode  # noqa: E402

PARITY = os.environ.get("PARITY_BIN", "build/parity")
FAILED = []

TEXTS = [
    "e\u0301 a\u0308 o\u0302\u0300 A\u030a \u212b \u2126 K\u0301",
    "a\u0302\u0323 a\u0323\u0302 q\u0307\u0323 \u1ec7 \u1e69",  # canonical reordering, Vietnamese
    "\u1100\u1161\u11a8 \uac01 \uac00\u11a8 \u1112\u1161\u11ab\u1100\u1173\u11af \ud55c\uae00",  # Hangul
    "\ufb01 \ufb02 \u2460 \u338f \u216b \uff46\uff55\uff4c\uff4c x\u00b2 \u00bd \u2126 \u00b5 \u017f\u0307",  # compat
    "\u0958 \u2adc \u0344 \u0f73",  # composition exclusions and singletons
    "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3 \u03a3 \u0391\u03a3. \u0130stanbul \u0049\u0307 \u1e9e \u0130",
    "Hello, World! \u00c9COLE caf\u00e9 na\u00efve \u00c5ngstr\u00f6m",
    "  \u3000\u00a0\ttext with spaces\u2003 \n\u2028",
    "",
    "plain ascii only",
    "\u65e5\u672c\u8a9e \u4e2d\u6587 emoji \U0001f44d\U0001f3fd \u200d",
]
WHITE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"


def lower(s):
    return s.lower()


def strip_accents(s):
    return "".join(c for c in s if unicodedata.category(c) != "Mn")


CASES = [
    ({"type": "NFC"}, lambda s: unicodedata.normalize("NFC", s)),
    ({"type": "NFD"}, lambda s: unicodedata.normalize("NFD", s)),
    ({"type": "NFKC"}, lambda s: unicodedata.normalize("NFKC", s)),
    ({"type": "NFKD"}, lambda s: unicodedata.normalize("NFKD", s)),
    ({"type": "Lowercase"}, lower),
    ({"type": "Strip", "strip_left": True, "strip_right": True}, lambda s: s.strip(WHITE)),
    ({"type": "Strip", "strip_left": False, "strip_right": True}, lambda s: s.rstrip(WHITE)),
    ({"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}, {"type": "Lowercase"}]},
     lambda s: lower(strip_accents(unicodedata.normalize("NFD", s)))),
    ({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                          {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
     lambda s: ("\u2581" + s).replace(" ", "\u2581") if s else s),
    ({"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}, lambda s: re.sub(r"[" + WHITE + "]+", " ", s)),
    ({"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"},
                                          {"type": "Replace", "pattern": {"Regex": "[0-9]"}, "content": "#"}]},
     lambda s: re.sub("[0-9]", "#", lower(unicodedata.normalize("NFKC", s)))),
]


def byte_level_vocab():
    return {c: i for i, c in enumerate(bytes_to_unicode().values())}


def main():
    tmp = tempfile.mkdtemp(prefix="parity-norm-")
    vocab = byte_level_vocab()
    for norm, ref in CASES:
        path = os.path.join(tmp, "tokenizer.json")
        json.dump({"model": {"type": "BPE", "vocab": vocab, "merges": []}, "normalizer": norm,
                   "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
                   "decoder": {"type": "ByteLevel"}, "added_tokens": []}, open(path, "w"))
        p = subprocess.run([PARITY, "tokenizer", "encode", "-m", path, "--batch"], input=json.dumps(TEXTS),
                           capture_output=True, text=True)
        tag = json.dumps(norm)[:90]
        if p.returncode != 0:
            FAILED.append(f"{tag}: encode failed: {p.stderr.strip()}")
            continue
        d = subprocess.run([PARITY, "tokenizer", "decode", "-m", path, "--batch"], input=p.stdout,
                           capture_output=True, text=True)
        got = json.loads(d.stdout) if d.returncode == 0 else [None] * len(TEXTS)
        bad = [(t, g, ref(t)) for t, g in zip(TEXTS, got) if g != ref(t)]
        for t, g, w in bad:
            FAILED.append(f"{tag}: {t!r}: parity {g!r} vs Python {w!r}")
        print(("ok   " if not bad else "FAIL ") + f"{tag}: {len(TEXTS) - len(bad)}/{len(TEXTS)} texts as Python")
    # invalid UTF-8 where Unicode is needed: an error, not a crash
    p = subprocess.run([PARITY, "tokenizer", "encode", "-m", path], input=b"ab\xff\xfe", capture_output=True)
    if p.returncode == 0 or b"UTF-8" not in p.stderr:
        FAILED.append(f"invalid UTF-8 through a normalizer: exit {p.returncode}, {p.stderr!r}")
    # an unknown normalizer is still an error naming the JSON path
    json.dump({"model": {"type": "BPE", "vocab": vocab, "merges": []}, "normalizer": {"type": "Precompiled"},
               "added_tokens": []}, open(path, "w"))
    p = subprocess.run([PARITY, "tokenizer", "encode", "-m", path, "--text", "a"], capture_output=True, text=True)
    if p.returncode == 0 or "normalizer" not in p.stderr or "Precompiled" not in p.stderr:
        FAILED.append(f"unknown normalizer: {p.stderr.strip()}")
    for f in FAILED:
        print("FAIL " + f)
    print("all checks passed" if not FAILED else f"{len(FAILED)} checks failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
