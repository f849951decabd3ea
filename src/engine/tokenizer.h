/* tokenizer.h — text ↔ token ids, for the tokenizers real checkpoints ship:
 *   - Hugging Face tokenizer.json with a byte-level BPE model (GPT-2, Llama-3 style): the
 *     pre-tokenizer's split regex runs through PCRE2, bytes map through the GPT-2 byte↔unicode
 *     table, then merges by rank;
 *   - SentencePiece-style BPE with byte fallback (Llama-2 style): from tokenizer.json
 *     (model.type "BPE" with byte_fallback, Metaspace/▁ handling) or from GGUF tokenizer.ggml.*;
 *   - added / special tokens, matched before the model runs.
 * A tokenizer is immutable after loading and safe to share between threads.
 */
#ifndef PARITY_ENGINE_TOKENIZER_H
#define PARITY_ENGINE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct pt_tokenizer pt_tokenizer;

/* GGUF tokenizer.ggml.token_type values. */
enum { PT_TOKTYPE_NORMAL = 1, PT_TOKTYPE_UNKNOWN = 2, PT_TOKTYPE_CONTROL = 3, PT_TOKTYPE_USER = 4,
       PT_TOKTYPE_UNUSED = 5, PT_TOKTYPE_BYTE = 6 };

/* Loads a tokenizer.json file (PATH may also be a model directory holding one); reads
 * tokenizer_config.json beside it when present (chat_template, bos/eos, add_bos_token).
 * A JSON file whose top level has "tokenizer.ggml.model" is read as GGUF tokenizer metadata
 * (the tokenizer.ggml.* keys as JSON) and built with pt_tokenizer_from_vocab. Malformed or unsupported files are errors naming the file
 * and the JSON path. *out is owned by the caller (pt_tokenizer_free). */
int pt_tokenizer_load(const char *path, pt_tokenizer **out, pt_err *err);
/* The same from a buffer; `what` names it in errors. */
int pt_tokenizer_parse(const char *json, size_t len, const char *what, pt_tokenizer **out, pt_err *err);

/* Builds a tokenizer from a vocabulary as GGUF stores it: model "gpt2" (byte-level BPE with
 * merges "a b") or "llama" (SentencePiece BPE by scores, byte fallback <0xXX>); pre is
 * tokenizer.ggml.pre ("default", "llama-bpe", "gpt2", ... selects the split regex). tokens,
 * scores (may be NULL), types (may be NULL) have n_tokens entries; merges n_merges. All
 * borrowed (copied in). bos/eos -1 if none. */
typedef struct pt_vocab_spec {
    const char *model;
    const char *pre;
    const char *const *tokens;
    const float *scores;
    const int32_t *types;
    size_t n_tokens;
    const char *const *merges;
    size_t n_merges;
    int32_t bos_id, eos_id, unk_id;
    int add_bos;
} pt_vocab_spec;
int pt_tokenizer_from_vocab(const pt_vocab_spec *spec, pt_tokenizer **out, pt_err *err);

void pt_tokenizer_free(pt_tokenizer *t); /* NULL-safe */

/* Encodes UTF-8 text (invalid UTF-8 is an error). add_special adds the tokenizer's BOS/
 * post-processor tokens as its tokenizer.json says. parse_special: text like "<|endoftext|>"
 * becomes the special token (else it is encoded as plain text). *ids is malloc'd (caller frees). */
int pt_tokenizer_encode(const pt_tokenizer *t, const char *text, size_t len, int add_special, int parse_special,
                        int32_t **ids, size_t *n_ids, pt_err *err);
/* Decodes ids to UTF-8 bytes (malloc'd, NUL-terminated; may contain partial UTF-8 at a
 * boundary when decoding token by token). skip_special drops control tokens. */
int pt_tokenizer_decode(const pt_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **out,
                        size_t *len, pt_err *err);
/* The bytes of one token as decoding emits them (for streaming and log-prob "bytes"). */
int pt_tokenizer_token_bytes(const pt_tokenizer *t, int32_t id, char *buf, size_t cap, size_t *len);

size_t pt_tokenizer_vocab_size(const pt_tokenizer *t);
int32_t pt_tokenizer_bos(const pt_tokenizer *t); /* -1 if none */
int32_t pt_tokenizer_eos(const pt_tokenizer *t); /* -1 if none */
/* Id of an exact token string (added tokens included), or -1. */
int32_t pt_tokenizer_token_id(const pt_tokenizer *t, const char *token);
/* The chat template from tokenizer_config.json, if the loader found one (borrowed), or NULL. */
const char *pt_tokenizer_chat_template(const pt_tokenizer *t);
/* The list form's "tool_use" template (borrowed), or NULL. */
const char *pt_tokenizer_chat_template_tools(const pt_tokenizer *t);
/* tokenizer_config.json's special tokens as a template sees them, as transformers.js passes
 * them: a JSON object of bos_token, eos_token, unk_token, sep_token, pad_token, cls_token,
 * mask_token (those set; an AddedToken as its content) — borrowed text, or NULL. */
const char *pt_tokenizer_chat_vars(const pt_tokenizer *t);

/* Extensions (tok branch). */
/* 1 if id is a special (control) token: decode with skip_special drops it. */
int pt_tokenizer_is_special(const pt_tokenizer *t, int32_t id);
/* The vocabulary string of id as the file spells it ("Ġthe", "▁the", "<0x0A>"), borrowed and
 * NUL-terminated, or NULL for an id without one. */
const char *pt_tokenizer_token_str(const pt_tokenizer *t, int32_t id);

/* The pre-tokenizer regexes of the common byte-level vocabularies (GPT-2's encoder.py, Llama 3's
 * and Qwen2's tokenizer.json), byte for byte as those files spell them. */
extern const char tk_gpt2_pattern[];
extern const char tk_llama3_pattern[];
extern const char tk_qwen2_pattern[];

#endif
