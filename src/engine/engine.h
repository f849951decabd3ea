/* engine.h — the inference engine's public API: a model on a backend, sequences with their
 * own KV cache, and one step function over any set of sequences (continuous batching).
 *
 *   pt_engine *e;  pt_engine_open("models/x", 2, &e, &err);
 *   pt_seq *a = pt_seq_new(e, 0), *b = pt_seq_new(e, 0);
 *   pt_step st[2] = {{a, prompt_a, na, 0, logits_a}, {b, prompt_b, nb, 0, logits_b}};
 *   pt_engine_forward(e, st, 2, &err);          // batched prefill, different lengths
 *   ... pick next tokens, then a decode step for both (or for a, and a prefill for c) ...
 *
 * A step appends its tokens to its sequence (at positions seq->pos ..) and writes logits.
 * Sequences join and leave between steps freely. Each sequence may carry a pt_hooks set
 * (hooks.h) whose reads and interventions apply to its rows only. Deterministic: the same
 * steps give the same bits (kernels do not depend on thread timing), but the batch a
 * sequence runs in may change the last bits of its results (different kernel paths).
 *
 * Thread safety: one pt_engine runs one forward at a time (it owns the run state and the
 * thread pool); several engines may share nothing but read-only weights.
 */
#ifndef PARITY_ENGINE_ENGINE_H
#define PARITY_ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"
#include "engine/hooks.h"
#include "engine/model.h"

typedef struct pt_engine pt_engine;

/* Loads the model at path (see modelfile.h) and starts a CPU backend with n_threads
 * (<= 0: all CPUs). *out owned by the caller. */
int pt_engine_open(const char *path, int n_threads, pt_engine **out, pt_err *err);
/* Wraps a loaded model (taken over) and a backend (taken over). */
int pt_engine_new(pt_model *m, pt_backend *b, pt_engine **out, pt_err *err);
void pt_engine_free(pt_engine *e); /* NULL-safe; free sequences first */

const pt_model *pt_engine_model(const pt_engine *e);
const pt_config *pt_engine_config(const pt_engine *e);
pt_backend *pt_engine_backend(pt_engine *e);

/* A sequence: its KV cache and its length. */
typedef struct pt_seq {
    int pos;            /* tokens in the cache (the next token's position) */
    int cap;            /* positions the cache holds before it must grow */
    int max_ctx;        /* hard limit (≤ the model's max_position_embeddings) */
    float **k, **v;     /* [n_layers] each (cap, n_kv_heads*head_dim), owned */
    pt_hooks *hooks;    /* borrowed, may be NULL */
    int n_layers, kv_dim;
    const struct pt_lora *lora; /* borrowed, may be NULL: the adapter this sequence runs with */
    float lora_scale;   /* effective scale: alpha / r × the user's scale */
    struct pt_engine *owner; /* whose pool of kept KV caches pt_seq_free returns it to */
} pt_seq;

/* A new empty sequence; max_ctx <= 0 means the model's context length. NULL on OOM. The KV
 * cache grows on demand up to max_ctx (so short sequences stay small); it may be one a freed
 * sequence of this engine left (pt_seq_free). Thread-safe against other pt_seq_new and
 * pt_seq_free calls on the same engine. */
pt_seq *pt_seq_new(pt_engine *e, int max_ctx);
void pt_seq_free(pt_seq *s); /* NULL-safe */
/* Forgets the cache (pos = 0); keeps the memory and the hooks. */
void pt_seq_reset(pt_seq *s);
/* Drops positions >= n (n <= pos), e.g. to rewind after speculative tokens. */
void pt_seq_truncate(pt_seq *s, int n);
/* Attaches a hook set (borrowed; NULL detaches). */
void pt_seq_set_hooks(pt_seq *s, pt_hooks *h);
/* Attaches a LoRA adapter (lora.h; borrowed, must outlive the sequence's steps; NULL
 * detaches) with a user scale: each adapted projection of this sequence's rows adds
 * (alpha/r × scale)·(x·Aᵀ)·Bᵀ. Sequences in one batch may carry different adapters. The
 * adapter must have been loaded for this model's config. */
void pt_seq_set_lora(pt_seq *s, const struct pt_lora *lora, float scale);
/* An adapter every sequence created afterwards starts with (pt_seq_new), e.g. from
 * `--lora DIR[:SCALE]`. Borrowed; NULL: none. */
void pt_engine_set_default_lora(pt_engine *e, const struct pt_lora *lora, float scale);

/* Bytes of KV cache one position takes. */
size_t pt_seq_bytes_per_pos(const pt_engine *e);

typedef struct pt_step {
    pt_seq *seq;
    const int32_t *tokens;  /* borrowed, n_tokens ids, appended at seq->pos */
    int n_tokens;           /* >= 1 */
    int all_logits;         /* 1: logits of every token; 0: of the last token only */
    float *logits;          /* out (caller-owned): [n_tokens or 1, vocab], or NULL for none */
} pt_step;

/* Runs one forward step over n steps (distinct sequences). Errors (nothing is changed
 * then): a token id out of range, a sequence that would pass its max_ctx, the same
 * sequence twice, out of memory. Messages name the step and the token. */
int pt_engine_forward(pt_engine *e, pt_step *steps, int n, pt_err *err);

/* Index of the largest value (the first one on ties). */
int pt_argmax(const float *row, int n);

#endif
