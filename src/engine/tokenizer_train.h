/* tokenizer_train.h — trains a byte-level BPE tokenizer (GPT-2 / Llama-3 style) from text and
 * writes it as a Hugging Face tokenizer.json that pt_tokenizer_load reads.
 *
 * The algorithm (the same as Hugging Face's BpeTrainer, and as the Python reference in
 * tests/test_tokenizer_train.py):
 *   1. the text is split at special-token occurrences, then by the pre-tokenizer regex (GPT-2's
 *      or Llama-3's, through PCRE2 as the loader runs it); each piece is a word, counted;
 *   2. every word starts as its bytes (token id = byte value, 0..255);
 *   3. repeatedly, the adjacent pair with the highest count (summed over words, weighted by the
 *      word's count, counting every adjacent position) is merged everywhere, left to right;
 *      ties go to the smallest (left id, right id). A merge whose bytes equal an existing token
 *      reuses its id; a pair merged before is not written twice;
 *   4. it stops when the vocabulary (learned tokens + specials) has vocab_size entries, or no
 *      pair occurs at least min_frequency times.
 * Specials get the ids after the learned tokens, in the order given.
 *
 * Cost: a pair → count index with per-pair occurrence lists (positions in the word symbols)
 * and a lazily updated max-heap, so a merge costs O(occurrences · log) instead of a pass over
 * the corpus; words are deduplicated first.
 */
#ifndef PARITY_ENGINE_TOKENIZER_TRAIN_H
#define PARITY_ENGINE_TOKENIZER_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct pt_bpe_trainer pt_bpe_trainer;

typedef struct pt_bpe_train_opts {
    size_t vocab_size;           /* entries in the written vocabulary, specials included; >= 256 + n_specials */
    const char *const *specials; /* special tokens (borrowed; copied by _new): non-empty UTF-8, distinct */
    size_t n_specials;
    uint64_t min_frequency;      /* pairs seen fewer times are never merged (0 and 1: any pair) */
    const char *pattern;         /* "gpt2" (NULL means this) or "llama3" */
    /* Called after each merge (may be NULL): done merges, the most that can be done. */
    void (*progress)(void *ud, size_t done, size_t total);
    void *progress_ud;
} pt_bpe_train_opts;

/* Checks the options and makes an empty trainer (*out owned by the caller: pt_bpe_trainer_free).
 * PT_EINVAL for a vocab_size below 256 + n_specials, an empty/duplicate/invalid special, an
 * unknown pattern. */
int pt_bpe_trainer_new(const pt_bpe_train_opts *o, pt_bpe_trainer **out, pt_err *err);

/* Adds training text (borrowed, read during the call). `what` names it in errors (a file
 * name). PT_EFORMAT with the byte offset for invalid UTF-8; PT_EINVAL after _run. */
int pt_bpe_trainer_feed(pt_bpe_trainer *tr, const char *text, size_t len, const char *what, pt_err *err);

/* Learns the merges. PT_EINVAL if no text was fed (or it was only special tokens). Stopping
 * early (too few distinct pairs) is not an error: see pt_bpe_trainer_vocab_size. */
int pt_bpe_trainer_run(pt_bpe_trainer *tr, pt_err *err);

/* After _run: the vocabulary size (learned tokens + specials), the merges in rank order as
 * tokenizer.json spells them ("Ġ t"), borrowed until _free; NULL past the end. */
size_t pt_bpe_trainer_vocab_size(const pt_bpe_trainer *tr);
size_t pt_bpe_trainer_n_merges(const pt_bpe_trainer *tr);
const char *pt_bpe_trainer_merge(const pt_bpe_trainer *tr, size_t i);
/* Distinct words seen, and pre-tokenized words in total (for reports). */
size_t pt_bpe_trainer_n_words(const pt_bpe_trainer *tr);
uint64_t pt_bpe_trainer_n_pieces(const pt_bpe_trainer *tr);

/* After _run: the Hugging Face tokenizer.json (ByteLevel pre-tokenizer/decoder/post-processor,
 * BPE model with vocab and merges, specials as added_tokens), malloc'd, NUL-terminated; the
 * caller frees *json. Byte-identical for identical inputs and options. */
int pt_bpe_trainer_tokenizer_json(const pt_bpe_trainer *tr, char **json, size_t *len, pt_err *err);

/* The tokenizer_config.json to go beside it: bos_token the first special (or null), eos_token
 * <|im_end|> with chat, else the first special (or null); neither is added by encode; with chat, a ChatML chat_template, which needs <|im_start|>
 * and <|im_end|> among the specials (PT_EINVAL otherwise). Caller frees *json. */
int pt_bpe_trainer_config_json(const pt_bpe_trainer *tr, int chat, char **json, size_t *len, pt_err *err);

void pt_bpe_trainer_free(pt_bpe_trainer *tr); /* NULL-safe */

/* The ChatML template written by pt_bpe_trainer_config_json (static). */
extern const char pt_chatml_template[];

#endif
