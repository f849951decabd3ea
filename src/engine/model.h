/* model.h — a loaded model: config, weights (borrowed from the mapped files), nothing else.
 *
 * llama2.c's split: pt_config (config.h) / pt_model_weights (here, read-only after load) /
 * run state (forward.c, per engine) / per-sequence KV caches (engine.h, pt_seq). Large
 * matrices are pt_weight views into the mmapped file in its own dtype (F32, F16, BF16,
 * Q8_0) and layout; only the small vectors (norm weights, biases) are converted to F32, all
 * in one allocation.
 *
 * Both architectures are described by the same struct. Shapes below use
 *   d = d_model, V = vocab, H = n_heads, KV = n_kv_heads, hd = head_dim, F = d_ff.
 * A pt_weight is the logical matrix (out, in); its layout says how it is stored. Phi-3's fused
 * qkv_proj (H*hd + 2*KV*hd, d) and gate_up_proj (2F, d) are viewed as row slices: Q, K, V and
 * GATE, UP are ordinary weights whose data points into the fused matrix.
 *
 * LoRA: a projection's output is computed in forward.c:proj() — the one place where a
 * delta x·Aᵀ·Bᵀ·scale is to be added (see the comment there).
 */
#ifndef PARITY_ENGINE_MODEL_H
#define PARITY_ENGINE_MODEL_H

#include "engine/backend.h"
#include "engine/config.h"
#include "engine/modelfile.h"

typedef enum pt_proj {
    PT_PROJ_Q = 0, PT_PROJ_K, PT_PROJ_V, PT_PROJ_O, PT_PROJ_GATE, PT_PROJ_UP, PT_PROJ_DOWN, PT_PROJ_COUNT
} pt_proj;

typedef struct pt_layer_weights {
    const float *ln1_w;   /* (d)  input_layernorm / ln_1 weight */
    const float *ln1_b;   /* (d)  ln_1 bias (GPT-2), NULL for Llama */
    const float *ln2_w;   /* (d)  post_attention_layernorm / ln_2 weight */
    const float *ln2_b;   /* (d)  ln_2 bias (GPT-2), NULL for Llama */
    /* proj[PT_PROJ_Q] (H*hd, d), K (KV*hd, d), V (KV*hd, d), O (d, H*hd),
     * GATE (F, d) (Llama only; n == 0 for GPT-2), UP (F, d), DOWN (d, F).
     * GPT-2: Q, K, V are column slices of the fused Conv1D c_attn (d, 3d). */
    pt_weight proj[PT_PROJ_COUNT];
    const float *bias[PT_PROJ_COUNT]; /* (out) each, or NULL when the model has none */
    const float *q_norm, *k_norm; /* (hd) Qwen3's and Gemma 3's per-head RMSNorm weights, else NULL */
    /* Gemma: ln1_w is input_layernorm, ln1_post_w post_attention_layernorm (on the attention
     * output), ln2_w pre_feedforward_layernorm, ln2_post_w post_feedforward_layernorm (on the
     * MLP output); every Gemma norm weight here is already (1 + w). NULL for other families. */
    const float *ln1_post_w, *ln2_post_w; /* (d) */
} pt_layer_weights;

typedef struct pt_model_weights {
    pt_weight tok_emb;        /* (V, d)  embed_tokens / wte */
    pt_weight pos_emb;        /* (max_pos, d)  wpe (GPT-2); n == 0 for Llama */
    pt_layer_weights *layers; /* [n_layers] */
    const float *lnf_w;       /* (d)  model.norm / ln_f weight */
    const float *lnf_b;       /* (d)  ln_f bias (GPT-2), NULL for Llama */
    pt_weight lm_head;        /* (V, d)  lm_head, or the same view as tok_emb when tied */
    float *rope_inv;          /* (hd/2) RoPE inverse frequencies under rope_scaling (not "dynamic"
                               * past the original context: forward.c derives those per step) */
    float rope_mscale;        /* cos and sin are multiplied by it (yarn's attention factor, else 1) */
    float *small;             /* owned: the one allocation all F32 vectors above point into */
} pt_model_weights;

typedef struct pt_model {
    pt_config c;
    pt_model_weights w;
    pt_model_files files;     /* owned: the mapping the weights borrow from */
    size_t n_params;          /* parameters in the file's tensors (tied counted once) */
    size_t weight_bytes;      /* bytes of the large matrices a decode step reads */
} pt_model;

/* Opens a model directory (or anything pt_model_files_open accepts) and builds the weight
 * views. Every tensor is checked: missing, mis-shaped or wrong-dtype tensors are errors
 * that name the tensor and the expected shape. *out is owned by the caller. */
int pt_model_load(const char *path, pt_model **out, pt_err *err);
/* The same from files already open (takes them over, even on failure). */
int pt_model_from_files(pt_model_files *mf, pt_model **out, pt_err *err);
void pt_model_free(pt_model *m); /* NULL-safe */

/* Converts every large matrix (projections, embeddings, LM head) to dtype `to` (Q8_0, F16,
 * BF16 or F32) in memory owned by the model: how a Q8_0 model is built from an F32/F16
 * checkpoint without a GGUF file (benchmarks, tests). Matrices whose rows are not whole
 * Q8_0 blocks stay as they are. */
int pt_model_convert(pt_model *m, pt_dtype to, pt_err *err);

/* Writes a random-init model directory (config.json + model.safetensors, weights ~N(0, 0.02),
 * norms 1, dtype F32/F16/BF16) for tests and benchmarks. Deterministic in seed. */
int pt_model_write_random(const char *dir, const pt_config *c, pt_dtype dtype, uint64_t seed, pt_err *err);

#endif
