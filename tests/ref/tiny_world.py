"""A tiny world for end-to-end tests of the server: a random-init Llama with a byte-level BPE
tokenizer, an access policy over it, and helpers to run parity commands. Debian's python3."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from ref_model import llama_config, write_model  # noqa: E402

PARITY = os.environ.get("PARITY_BIN", "build/parity")


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_tokenizer(dirname, merges=(("Ġ", "t"), ("h", "e"), ("Ġt", "he"))):
    """A byte-level BPE tokenizer.json: 256 byte tokens, a few merges, <|endoftext|>."""
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: i for i, b in enumerate(range(256))}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    eot = len(vocab)
    tok = {
        "version": "1.0",
        "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": [a + " " + b for a, b in merges]},
    }
    with open(os.path.join(dirname, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False)
    return eot + 1


def make_model(dirname, seed=0):
    os.makedirs(dirname, exist_ok=True)
    n_tok = write_tokenizer(dirname)
    cfg = llama_config(vocab=n_tok + 3, d=32, layers=2, heads=4, kv_heads=2, head_dim=8, d_ff=64)
    cfg["eos_token_id"] = n_tok - 1
    cfg["max_position_embeddings"] = 256
    write_model(dirname, cfg, seed=seed)
    return cfg


def run(*args, check=True, input=None):
    r = subprocess.run([PARITY, *args], capture_output=True, text=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError("parity %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
    return r
