/* loop.h — from-scratch training driven by a YAML config: data windows, AdamW with warmup +
 * cosine, clipping, accumulation, validation, checkpoints that resume bit-identically, and
 * the final HF model directory.
 *
 * Output directory layout:
 *   OUT/log.jsonl               one JSON object per step {"step","loss","lr","grad_norm","tokens"}
 *                               and per evaluation {"step","val_loss"}
 *   OUT/checkpoint-NNNNNNNN/    config.json, model.safetensors (F32), optim.safetensors
 *                               (adam.m, adam.v), state.json (step, rng, data cursor, adam
 *                               step count), tokenizer.json — an engine-loadable model too
 *   OUT/latest                  the name of the newest complete checkpoint (written last,
 *                               atomically: a crash leaves the previous one in force)
 *   OUT/model/                  the final model: config.json, model.safetensors, tokenizer.json
 */
#ifndef PARITY_TRAIN_LOOP_H
#define PARITY_TRAIN_LOOP_H

#include <stdint.h>

#include "common/err.h"
#include "engine/config.h"
#include "train/train.h"

/* The `distill:` map (parity distill only; see distill.h). */
typedef struct pt_distill_conf {
    char *teacher;          /* teacher model directory (owned); --teacher overrides */
    int reverse;            /* loss: forward (0, default) | reverse (1) */
    float temperature;      /* default 1 */
    float alpha;            /* weight of the hard-label cross-entropy, default 0 */
    int cache;              /* 1: teacher from DATA/train.topk.bin; 0 (default): on the fly */
    int topk_renorm;        /* topk_fill: uniform (0, default) | renorm (1) */
    int teacher_threads;    /* engine threads for the teacher (default: threads) */
} pt_distill_conf;

typedef struct pt_train_conf {
    pt_config model;        /* the `model:` map, read as a config.json */
    char *init;             /* optional: an HF model directory to start from (owned) */
    char *data;             /* dataset directory: train.bin, val.bin, tokenizer.json (owned) */
    char *tokenizer;        /* tokenizer.json to copy into the model (default DATA/tokenizer.json) */
    char *out;              /* output directory (owned) */
    int batch_size, seq_len, accum;
    int64_t steps, warmup;
    float lr, min_lr, weight_decay, clip, beta1, beta2, eps;
    int64_t eval_interval, eval_batches, checkpoint_interval, keep_checkpoints;
    uint64_t seed;
    int threads;
    int shuffle;            /* 1: random windows (PRNG); 0: consecutive windows */
    int has_distill;        /* a `distill:` map was given */
    pt_distill_conf distill;
} pt_train_conf;

/* Parses a config (YAML; JSON works too). Unknown keys, wrong types and out-of-range values
 * are errors "WHAT:LINE:COL: message". Relative paths are taken as given (relative to the
 * working directory). pt_train_conf_free releases the strings. */
int pt_train_conf_parse(const char *text, size_t len, const char *what, pt_train_conf *tc, pt_err *err);
int pt_train_conf_load(const char *path, pt_train_conf *tc, pt_err *err);
void pt_train_conf_free(pt_train_conf *tc);

typedef struct pt_train_result {
    int64_t steps;
    double last_train_loss, last_val_loss;  /* NAN when none */
    double tokens_per_s;
    char model_dir[1024];
} pt_train_result;

/* Runs training (resume = 1: from OUT/latest). quiet = 1: no progress bar. A NaN or infinite
 * loss stops with PT_EINVAL, naming the step and the last good checkpoint. */
int pt_train_run(const pt_train_conf *tc, int resume, int quiet, pt_train_result *res, pt_err *err);

/* The loss of each micro-batch from a caller (distillation): with a hook, windows start at
 * multiples of seq_len (shuffle draws a window index), and before each training micro-batch
 * targets() fills dl (teacher log-probabilities for the B windows starting at token offsets
 * starts[b], tokens their inputs); the step then uses pt_trainer_forward_backward_distill.
 * Validation stays the hard-label loss. */
typedef struct pt_train_hook {
    int (*targets)(void *ctx, const int32_t *tokens, const uint64_t *starts, int B, int T, pt_distill_loss *dl,
                   pt_err *err);
    void *ctx;
} pt_train_hook;
int pt_train_run_hook(const pt_train_conf *tc, const pt_train_hook *hook, int resume, int quiet,
                      pt_train_result *res, pt_err *err);

#endif
