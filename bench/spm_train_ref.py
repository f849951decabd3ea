#!/usr/bin/env python3
"""Reference for bench_tokenizer_train: SentencePiece's BPE trainer (python3-sentencepiece, C++)
on the same file and vocabulary size. Prints the best wall time of RUNS runs in seconds."""
import os
import sys
import tempfile
import time

import sentencepiece as spm

path, vocab, runs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
best = float("inf")
with tempfile.TemporaryDirectory() as tmp:
    for _ in range(runs):
        t = time.perf_counter()
        spm.SentencePieceTrainer.train(input=path, model_prefix=os.path.join(tmp, "m"), vocab_size=vocab, model_type="bpe",
                                       byte_fallback=True, character_coverage=1.0, num_threads=threads, minloglevel=2)
        best = min(best, time.perf_counter() - t)
print(f"{best:.4f}")
