/* train.h — training for the engine's two architectures (Llama, GPT-2): an F32 parameter
 * block, the forward pass with saved activations, the backward pass, cross-entropy (hard
 * targets with an ignore label, or soft targets), AdamW, and HF-layout save/load.
 *
 * llm.c's layout: every parameter tensor lives in one allocation (params), and so do the
 * gradients (grads), Adam's m and v, and the activations; each tensor pointer in
 * pt_train_params is commented with its shape. Parameter tensors are also listed in a
 * table (pt_train_tensor) with their Hugging Face names, so that saving, loading, weight
 * decay and freezing are table-driven: a later LoRA trainer freezes the base tensors
 * (frozen = 1: no gradient is accumulated, AdamW leaves them alone) and adds its own.
 *
 * Matrix layout follows the HF checkpoint exactly (Linear [out, in]; GPT-2 Conv1D [in, out])
 * so that the block can be written as model.safetensors without a copy.
 *
 *   pt_trainer *t;  pt_trainer_new(&cfg, &opt, &t, &err);   // random init (seed)
 *   pt_trainer_load_weights(t, "models/x", &err);           // or start from a checkpoint
 *   pt_trainer_zero_grad(t);
 *   pt_trainer_forward_backward(t, tokens, targets, B, T, NULL, 1.f / n_targets, &loss, &err);
 *   pt_trainer_adamw_step(t, lr, &gnorm);
 */
#ifndef PARITY_TRAIN_TRAIN_H
#define PARITY_TRAIN_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/rng.h"
#include "engine/config.h"

/* Targets equal to this are ignored by the loss (PyTorch's ignore_index default). */
#define PT_IGNORE_INDEX (-100)

/* ---- parameters ------------------------------------------------------------------------ */

typedef struct pt_train_layer {
    float *ln1_w;   /* (d)  input_layernorm / ln_1 weight */
    float *ln1_b;   /* (d)  ln_1 bias (GPT-2), NULL for Llama */
    /* Llama: wq (H*hd, d), wk (KV*hd, d), wv (KV*hd, d) — Linear [out, in].
     * GPT-2: wqkv (d, 3d) — Conv1D c_attn [in, out]; wq/wk/wv are NULL. */
    float *wq, *wk, *wv;
    float *wqkv;
    float *bq, *bk, *bv; /* (H*hd), (KV*hd), (KV*hd) when attention_bias (Llama); NULL otherwise */
    float *bqkv;    /* (3d)  GPT-2 c_attn bias */
    float *wo;      /* Llama (d, H*hd) Linear; GPT-2 (d, d) Conv1D c_proj [in, out] */
    float *bo;      /* (d) or NULL */
    float *ln2_w;   /* (d) */
    float *ln2_b;   /* (d) GPT-2, NULL for Llama */
    float *wg;      /* (F, d)  Llama gate_proj; NULL for GPT-2 */
    float *wu;      /* Llama (F, d) up_proj; GPT-2 (d, F) Conv1D c_fc [in, out] */
    float *wd;      /* Llama (d, F) down_proj; GPT-2 (F, d) Conv1D c_proj [in, out] */
    float *bg, *bu, *bd; /* (F), (F), (d) when the MLP has biases; NULL otherwise */
} pt_train_layer;

typedef struct pt_train_params {
    float *tok_emb;        /* (V, d)  embed_tokens / wte */
    float *pos_emb;        /* (max_pos, d)  wpe (GPT-2); NULL for Llama */
    pt_train_layer *layers;/* [n_layers] */
    float *lnf_w;          /* (d)  model.norm / ln_f weight */
    float *lnf_b;          /* (d)  ln_f bias (GPT-2); NULL for Llama */
    float *lm_head;        /* (V, d)  lm_head, == tok_emb when tied */
} pt_train_params;

/* One parameter tensor of the block. */
typedef struct pt_train_tensor {
    char name[96];         /* Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight" */
    int ndim;
    int64_t shape[2];
    size_t offset, numel;  /* into the parameter block (floats) */
    int decay;             /* 1: weight decay applies (matrices; not norms, biases, embeddings) */
    int frozen;            /* 1: no gradient, no update (LoRA base weights) */
} pt_train_tensor;

typedef struct pt_train_opts {
    int max_batch;         /* B: sequences per micro-batch the activations are sized for */
    int max_seq;           /* T: tokens per sequence (<= the model's max_pos) */
    int n_threads;         /* BLAS threads (<= 0: leave OpenBLAS's default) */
    uint64_t seed;         /* initialisation */
    /* AdamW */
    float beta1, beta2, eps, weight_decay;
} pt_train_opts;

typedef struct pt_trainer pt_trainer;

/* A trainer for model shape c, parameters initialised from seed (normal(0, 0.02), residual
 * output projections scaled by 1/sqrt(2·n_layers), norm weights 1, biases 0). Allocates
 * parameters, gradients, m, v and the activations for opt->max_batch × opt->max_seq. Errors:
 * PT_EINVAL for a bad shape or max_seq beyond the model's context; PT_ENOMEM. */
int pt_trainer_new(const pt_config *c, const pt_train_opts *opt, pt_trainer **out, pt_err *err);
void pt_trainer_free(pt_trainer *t); /* NULL-safe */

const pt_config *pt_trainer_config(const pt_trainer *t);
const pt_train_params *pt_trainer_params(const pt_trainer *t);
const pt_train_params *pt_trainer_grads(const pt_trainer *t);   /* same shapes */
/* The tensor table (n entries) and the whole blocks (n_params floats each). */
const pt_train_tensor *pt_trainer_tensors(const pt_trainer *t, size_t *n);
size_t pt_trainer_n_params(const pt_trainer *t);
float *pt_trainer_param_block(pt_trainer *t);
float *pt_trainer_grad_block(pt_trainer *t);
/* Adam state (n_params floats each) and the number of steps taken. */
float *pt_trainer_adam_m(pt_trainer *t);
float *pt_trainer_adam_v(pt_trainer *t);
int64_t pt_trainer_adam_step_count(const pt_trainer *t);
void pt_trainer_set_adam_step_count(pt_trainer *t, int64_t n);
/* Bytes allocated for parameters, gradients, Adam state and activations. */
size_t pt_trainer_bytes(const pt_trainer *t, size_t *params, size_t *grads, size_t *adam, size_t *acts);
/* Marks the tensors whose name contains `substr` (NULL: all) frozen or not. Returns the count. */
size_t pt_trainer_freeze(pt_trainer *t, const char *substr, int frozen);

/* Sets every gradient to 0. */
void pt_trainer_zero_grad(pt_trainer *t);

/* Forward, loss and (when backward != 0) backward over a micro-batch of B sequences of T
 * tokens: tokens[b*T + i] is the input at position i, targets[b*T + i] its label
 * (PT_IGNORE_INDEX: no loss). With soft != NULL (B*T rows of V probabilities), row r's loss
 * is the cross-entropy −Σ soft·log p against that distribution instead (rows whose target
 * is PT_IGNORE_INDEX still count for nothing). Gradients are ADDED to the gradient block
 * (accumulation), each row's scaled by loss_scale (e.g. 1 / targets in the whole step).
 * *loss_sum gets the unscaled sum of the row losses, *n_counted the rows counted.
 * Errors: token ids out of range, B/T above the trainer's maxima. */
int pt_trainer_forward_backward(pt_trainer *t, const int32_t *tokens, const int32_t *targets, int B, int T,
                                const float *soft, float loss_scale, int backward, double *loss_sum,
                                size_t *n_counted, pt_err *err);
/* Distillation loss (train/distill.h documents the formula): per counted row
 *   alpha·CE(target, softmax(z)) + (1 − alpha)·T²·KL
 * with KL = KL(q_T‖p_T) (forward, reverse = 0) or KL(p_T‖q_T) (reverse = 1), p_T =
 * softmax(z / T) the student's tempered distribution and q_T the teacher's, given as
 * log-probabilities (-INFINITY allowed for zero mass; reverse KL is then infinite where the
 * student puts mass). */
typedef struct pt_distill_loss {
    const float *teacher;  /* (B*T, V) log q_T, borrowed */
    float temperature;     /* T > 0 */
    float alpha;           /* weight of the hard-label cross-entropy, 0..1 */
    int reverse;           /* 0: KL(teacher‖student); 1: KL(student‖teacher) */
} pt_distill_loss;

/* pt_trainer_forward_backward with the distillation loss instead of the cross-entropy.
 * Rows whose target is PT_IGNORE_INDEX count for nothing. */
int pt_trainer_forward_backward_distill(pt_trainer *t, const int32_t *tokens, const int32_t *targets, int B, int T,
                                        const pt_distill_loss *dl, float loss_scale, int backward, double *loss_sum,
                                        size_t *n_counted, pt_err *err);
/* The logits of the last forward ((B*T, V), borrowed until the next call). Only valid after a
 * forward with backward == 0 (backward overwrites them with their gradient). */
const float *pt_trainer_logits(const pt_trainer *t);

/* Global L2 norm of the gradients of the tensors that are not frozen. */
double pt_trainer_grad_norm(pt_trainer *t);
/* Multiplies every gradient by s. */
void pt_trainer_scale_grads(pt_trainer *t, float s);

/* One AdamW step with learning rate lr (torch.optim.AdamW's update: decoupled decay
 * p -= lr·wd·p on `decay` tensors, bias-corrected moments). Frozen tensors are skipped. */
void pt_trainer_adamw_step(pt_trainer *t, float lr);

/* Weights as an HF layout model.safetensors (the engine loads it) / read back from an HF
 * model directory or safetensors file of the same shape (any float dtype; every tensor must
 * be present with the right shape: errors name the tensor). */
int pt_trainer_save_weights(const pt_trainer *t, const char *path, pt_err *err);
int pt_trainer_load_weights(pt_trainer *t, const char *path, pt_err *err);

/* ---- LoRA ------------------------------------------------------------------------------ */

struct pt_lora;
/* Trains adapter lora (engine/lora.h; borrowed, updated in place, must outlive t) on the
 * frozen base: every base tensor is frozen, the adapted projections compute
 * W x + (alpha/r)·B A dropout(x) in the forward (dropout with probability `dropout` on the
 * adapter's input in training forwards, i.e. backward != 0; masks from a PRNG seeded by
 * seed), and pt_trainer_zero_grad / grad_norm / scale_grads / adamw_step act on the
 * adapter's A and B (AdamW with decay on both) instead of the base. Errors: a GPT-2 model,
 * an adapter of another shape, dropout outside [0, 1), PT_ENOMEM. */
int pt_trainer_attach_lora(pt_trainer *t, struct pt_lora *lora, float dropout, uint64_t seed, pt_err *err);
/* The attached adapter (NULL if none) and its gradients (lora->n_params floats, same layout
 * as lora->block). */
struct pt_lora *pt_trainer_lora(const pt_trainer *t);
float *pt_trainer_lora_grads(pt_trainer *t);

/* Learning rate at step (0-based): linear warmup over `warmup` steps to lr, then cosine
 * decay to min_lr at step `total`. */
float pt_lr_schedule(int64_t step, int64_t warmup, int64_t total, float lr, float min_lr);

#endif
