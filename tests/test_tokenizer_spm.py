"""SentencePiece-style BPE with byte fallback against SentencePiece itself (python3-sentencepiece).

Trains a small BPE model with byte_fallback on a Debian license text, then exports it two ways
parity reads: (1) as GGUF tokenizer metadata (tokenizer.ggml.tokens/scores/token_type, the
"llama" model: merges by score), (2) as a Llama-2-style tokenizer.json (merges derived from the
vocabulary as Hugging Face's converter does; Prepend/Replace normalizer; ByteFallback decoder;
TemplateProcessing BOS). Both must give SentencePiece's ids on held-out text with characters the
vocabulary lacks (byte fallback), and decode back to the text.
"""
import json
import os
import subprocess
import sys

import sentencepiece as spm

BUILD = os.environ["PARITY_BUILD"]
BIN = os.environ["PARITY_BIN"]
D = os.path.join(BUILD, "spm_test")
os.makedirs(D, exist_ok=True)

TYPES = {"normal": 1, "unknown": 2, "control": 3, "user": 4, "unused": 5, "byte": 6}


def train():
    spm.SentencePieceTrainer.train(
        input="/usr/share/common-licenses/GPL-3", model_prefix=os.path.join(D, "m"), model_type="bpe",
        vocab_size=1200, byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, character_coverage=1.0, seed_sentencepiece_size=100000, num_threads=1,
        minloglevel=2)
    return spm.SentencePieceProcessor(model_file=os.path.join(D, "m.model"))


def piece_type(sp, i):
    if sp.is_unknown(i):
        return TYPES["unknown"]
    if sp.is_control(i):
        return TYPES["control"]
    if sp.is_byte(i):
        return TYPES["byte"]
    if sp.is_unused(i):
        return TYPES["unused"]
    return TYPES["normal"]


def export_gguf(sp, path):
    n = sp.get_piece_size()
    meta = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": [sp.id_to_piece(i) for i in range(n)],
        "tokenizer.ggml.scores": [sp.get_score(i) for i in range(n)],
        "tokenizer.ggml.token_type": [piece_type(sp, i) for i in range(n)],
        "tokenizer.ggml.bos_token_id": sp.bos_id(), "tokenizer.ggml.eos_token_id": sp.eos_id(),
        "tokenizer.ggml.unknown_token_id": sp.unk_id(), "tokenizer.ggml.add_bos_token": True,
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False)


def export_hf(sp, path):
    n = sp.get_piece_size()
    vocab = {sp.id_to_piece(i): i for i in range(n)}
    merges = []
    for piece, pid in vocab.items():
        if piece_type(sp, pid) != TYPES["normal"]:
            continue
        for k in range(1, len(piece)):
            l, r = piece[:k], piece[k:]
            if l in vocab and r in vocab:
                merges.append((pid, vocab[l], vocab[r], l, r))
    merges.sort()
    special = [{"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True} for i in (sp.unk_id(), sp.bos_id(), sp.eos_id())]
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": special,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [sp.bos_id()], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [[l, r] for _, _, _, l, r in merges]},
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)


TEXTS = [
    "Hello world", "The licenses for most software and other practical works are designed",
    "  two leading spaces and  double  spaces", "tabs\tand\nnewlines\n", "Ünïcödé façade naïve",
    "日本語のテキスト 中文", "emoji 😀 👍🏽 🇫🇷", "copyright © 2007 Free Software Foundation, Inc. <https://fsf.org/>",
    "x" * 200, "a", " ", "GNU GENERAL PUBLIC LICENSE Version 3, 29 June 2007",
]


def main():
    sp = train()
    with open("/usr/share/common-licenses/Apache-2.0", encoding="utf-8") as f:
        held_out = [p for p in f.read().split("\n\n") if p.strip()][:40]
    texts = TEXTS + held_out
    gg = os.path.join(D, "gguf_vocab.json")
    hf = os.path.join(D, "tokenizer.json")
    export_gguf(sp, gg)
    export_hf(sp, hf)
    fails = 0
    def batch(model, action, items, *extra):
        r = subprocess.run([BIN, "tokenizer", action, "-m", model, "--batch"] + list(extra),
                           input=json.dumps(items).encode(), capture_output=True, check=True)
        return json.loads(r.stdout)

    for model in (gg, hf):
        name = os.path.basename(model)
        got_all = batch(model, "encode", texts, "--no-add-special")
        bos_all = batch(model, "encode", texts)
        dec_all = batch(model, "decode", got_all)
        for t, got, withbos, out in zip(texts, got_all, bos_all, dec_all):
            want = sp.encode(t)
            if got != want:
                fails += 1
                print("MISMATCH %s %r:\n parity %s\n spm    %s" % (name, t[:50], got[:20], want[:20]))
                continue
            if withbos != [sp.bos_id()] + want:
                fails += 1
                print("BOS missing", name, withbos[:3])
            if out != sp.decode(want) or out != t:
                fails += 1
                print("DECODE %s %r -> %r (spm %r)" % (name, t[:40], (out or "")[:40], sp.decode(want)[:40]))
    print("spm: %d texts x 2 exports, %d failures" % (len(texts), fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
