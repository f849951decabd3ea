/* finetune.h — supervised fine-tuning of LoRA adapters (engine/lora.h) on frozen base weights
 * from JSONL: the dataset reader, the config and the training loop behind `parity finetune`.
 *
 * Data (one JSON object per line; blank lines skipped):
 *   {"prompt": "...", "completion": "..."}
 *       tokens: [BOS] prompt | completion [EOS]; loss on the completion tokens and the EOS.
 *   {"messages": [{"role": "system"|"developer"|"user"|"assistant", "content": "..."}, ...]}
 *       rendered with the plain chat template (engine/chat.h), each piece tokenized on its
 *       own as the server does: [BOS] then per message prefix | text | "\n\n"; loss on the
 *       text and the "\n\n" of assistant messages only. content may be a string or an
 *       array of {"type": "text", "text": ...} parts.
 * Every other position's target is PT_IGNORE_INDEX. Examples longer than max_len tokens are
 * cut to max_len; an example with no loss token is skipped (counted).
 */
#ifndef PARITY_TRAIN_FINETUNE_H
#define PARITY_TRAIN_FINETUNE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct pt_tokenizer;

typedef struct pt_sft_example {
    int32_t *tokens;   /* n ids (owned by the set's block) */
    uint8_t *loss;     /* n flags: 1 if token i is a loss token (predicted from i-1) */
    int n;
} pt_sft_example;

typedef struct pt_sft_set {
    pt_sft_example *ex;
    size_t n, cap;
    size_t skipped_lines;   /* malformed lines skipped (on_error skip) */
    size_t empty;           /* examples without a loss token, dropped */
    size_t loss_tokens;
} pt_sft_set;

/* Reads a JSONL file into set (appending). A malformed line — not JSON, not an object,
 * neither prompt+completion strings nor a messages array of known roles with text — is an
 * error "FILE:LINE: message" (skip == 0) or is counted in skipped_lines and reported on
 * stderr for the first few (skip == 1). */
int pt_sft_load(pt_sft_set *set, const char *path, const struct pt_tokenizer *tok, int max_len, int skip,
                pt_err *err);
/* Tokenizes one line (exposed for the fuzzer). *ex is owned by the caller (free tokens and loss). */
int pt_sft_parse_line(const char *line, size_t len, const char *what, const struct pt_tokenizer *tok, int max_len,
                      pt_sft_example *ex, pt_err *err);
void pt_sft_free(pt_sft_set *set);

typedef struct pt_finetune_conf {
    char *model;          /* base model (HF dir or GGUF; Llama) */
    char *data;           /* JSONL file */
    char *out;            /* output directory */
    char *targets;        /* "q,v" ... (default "q,v") */
    char *init;           /* optional: an adapter to continue from (its rank, alpha, targets) */
    int rank;             /* default 8 */
    float alpha;          /* default 16 */
    float dropout;        /* default 0.05 */
    int batch_size, accum, max_len;
    int64_t steps, warmup;
    float lr, min_lr, weight_decay, clip, beta1, beta2, eps;
    uint64_t seed;
    int threads;
    int skip_errors;      /* --on-error skip */
    /* Optional hooks for a caller that runs training in the background (the server's
     * fine-tuning jobs); NULL for none. should_stop is checked before every step: a non-zero
     * answer ends the run with PT_ECANCELLED and nothing written but log.jsonl. on_step is
     * called after every step with its mean loss. Not read from config files. */
    int (*should_stop)(void *ctx);
    void (*on_step)(void *ctx, int64_t step, int64_t steps, double loss);
    void *hook_ctx;
} pt_finetune_conf;

void pt_finetune_conf_defaults(pt_finetune_conf *fc);
/* Reads a YAML (or JSON) config with the keys above (model, data, out, targets, rank,
 * alpha, dropout, batch_size, accum, max_len, steps, warmup, lr, min_lr, weight_decay, clip,
 * beta1, beta2, eps, seed, threads, on_error: skip|stop) over fc's current values; errors
 * "WHAT:LINE:COL: key: message" as parity train's. */
int pt_finetune_conf_parse(const char *text, size_t len, const char *what, pt_finetune_conf *fc, pt_err *err);
void pt_finetune_conf_free(pt_finetune_conf *fc);

typedef struct pt_finetune_result {
    int64_t steps;
    double first_loss, last_loss;   /* mean loss of the first and last step */
    size_t examples, skipped_lines, empty;
    size_t adapter_params;
    double tokens_per_s;
    int64_t trained_tokens;         /* input tokens of every step's examples, summed */
} pt_finetune_result;

/* Trains and writes OUT/adapter_config.json + OUT/adapter_model.safetensors (PEFT),
 * OUT/adapter.gguf (llama.cpp LoRA) and OUT/log.jsonl (one {"step","loss","lr","grad_norm"}
 * per step). Each step draws batch_size × accum examples in a shuffled order (reshuffled
 * per epoch, seeded); the loss is the mean over the step's loss tokens. */
int pt_finetune_run(const pt_finetune_conf *fc, int quiet, pt_finetune_result *res, pt_err *err);

#endif
