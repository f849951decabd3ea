"""Helpers the training tests share: the token-file format, int32 safetensors, running the
binary, and a torch model whose parameters are the HF tensors (via tests/ref/ref_model.py)."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import torch

SRC = os.environ["PARITY_SRC"]
BUILD = os.environ["PARITY_BUILD"]
BIN = os.environ["PARITY_BIN"]
sys.path.insert(0, os.path.join(SRC, "tests", "ref"))
import ref_model  # noqa: E402

FAILED = []
SCRATCH = []


def scratch(prefix):
    """A scratch directory under the build tree: removed by finish() when every check passed,
    kept (and named) when one failed."""
    d = tempfile.mkdtemp(dir=BUILD, prefix=prefix)
    SCRATCH.append(d)
    return d


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILED.append(what)


def finish():
    if FAILED:
        print(f"{len(FAILED)} checks failed; scratch kept in " + ", ".join(SCRATCH))
        sys.exit(1)
    for d in SCRATCH:
        shutil.rmtree(d, ignore_errors=True)
    print("all checks passed")


def run(*args, ok=True):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise SystemExit(f"parity {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def write_tokfile(path, ids, vocab):
    with open(path, "wb") as f:
        f.write(b"PTTOKENS" + struct.pack("<IIQII", 1, 32, len(ids), vocab, 0))
        f.write(struct.pack(f"<{len(ids)}I", *ids))


def read_tokfile(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"PTTOKENS"
    _, _, n, vocab, _ = struct.unpack("<IIQII", data[8:32])
    return list(struct.unpack(f"<{n}I", data[32:32 + 4 * n])), vocab


def write_safetensors_any(path, tensors):
    """name -> torch tensor of float32 or int32."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        dt = {torch.float32: "F32", torch.int32: "I32"}[t.dtype]
        raw = t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def byte_tokenizer(path):
    """A byte-level BPE tokenizer.json: the 256 byte symbols, a few merges, <|endoftext|>."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    sym = dict(zip(bs, map(chr, cs)))
    vocab = {sym[b]: b for b in range(256)}
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
    for m in merges:
        vocab[m.replace(" ", "")] = len(vocab)
    eot = len(vocab)
    vocab["<|endoftext|>"] = eot
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": True, "special": True}],
           "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
           "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                     "end_of_word_suffix": "", "fuse_unk": False, "vocab": vocab, "merges": merges}}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tok, f)
    return len(vocab), eot


def batch_loss(cfg, w, tokens, targets, soft=None):
    """Mean cross-entropy over targets != -100 (soft: per-row distributions), with ref_model."""
    total, count = 0.0, 0
    for b in range(tokens.shape[0]):
        logits, _ = ref_model.forward(cfg, w, tokens[b].tolist())
        lp = torch.log_softmax(logits, -1)
        for i in range(tokens.shape[1]):
            t = int(targets[b, i])
            if t == -100:
                continue
            total = total + (-(soft[b, i] * lp[i]).sum() if soft is not None else -lp[i, t])
            count += 1
    return total / count


def decay_name(name, ndim):
    return ndim == 2 and not any(k in name for k in ("embed_tokens", "wte", "wpe"))
