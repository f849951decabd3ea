/* config.h — a model's hyper-parameters, read from a Hugging Face config.json (or built from
 * GGUF metadata by the GGUF reader). One struct for both architectures. */
#ifndef PARITY_ENGINE_CONFIG_H
#define PARITY_ENGINE_CONFIG_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"

typedef enum pt_arch { PT_ARCH_LLAMA = 0, PT_ARCH_GPT2 = 1 } pt_arch;

/* The config.json model_type. Qwen2, Qwen3, Mistral, Gemma 2, Gemma 3 (its text model,
 * "gemma3_text") and Phi-3 run the Llama code path (arch PT_ARCH_LLAMA) with the differences
 * below switched on by fields of pt_config. */
typedef enum pt_family {
    PT_FAM_LLAMA = 0, PT_FAM_GPT2, PT_FAM_QWEN2, PT_FAM_QWEN3, PT_FAM_MISTRAL, PT_FAM_GEMMA2, PT_FAM_GEMMA3,
    PT_FAM_PHI3, PT_FAM_COUNT
} pt_family;

/* rope_scaling (Hugging Face modeling_rope_utils): how the inverse frequencies of RoPE are
 * derived from rope_theta. */
typedef enum pt_rope_type {
    PT_ROPE_DEFAULT = 0, PT_ROPE_LINEAR, PT_ROPE_DYNAMIC, PT_ROPE_YARN, PT_ROPE_LLAMA3, PT_ROPE_LONGROPE
} pt_rope_type;

/* longrope's per-frequency factors: head_dim/2 of each, head_dim up to twice this. */
#define PT_MAX_ROPE_FACTORS 256

typedef struct pt_rope_scaling {
    pt_rope_type type;
    float factor;           /* all but default */
    float low_freq_factor;  /* llama3 */
    float high_freq_factor; /* llama3 */
    int orig_max_pos;       /* original_max_position_embeddings (llama3, yarn, dynamic, longrope) */
    float attn_factor;      /* yarn, longrope: attention_factor (cos and sin are scaled by it) */
    /* longrope (Phi-3's long-context models; "su" is its older name): the inverse frequencies
     * are divided by short_factor, or by long_factor for a sequence longer than orig_max_pos */
    float short_factor[PT_MAX_ROPE_FACTORS], long_factor[PT_MAX_ROPE_FACTORS];
    float beta_fast, beta_slow; /* yarn */
    int truncate;           /* yarn: round the correction range to whole dimensions */
} pt_rope_scaling;

#define PT_MAX_EOS 8

typedef struct pt_config {
    pt_arch arch;
    int vocab_size;
    int d_model;        /* hidden_size / n_embd */
    int n_layers;
    int n_heads;
    int n_kv_heads;     /* == n_heads without GQA; GPT-2: n_heads */
    int head_dim;       /* explicit or d_model / n_heads */
    int d_ff;           /* intermediate_size / n_inner (GPT-2 default 4·d_model) */
    int max_pos;        /* max_position_embeddings / n_positions */
    float norm_eps;     /* rms_norm_eps / layer_norm_epsilon */
    float rope_theta;   /* Llama only */
    pt_rope_scaling rope; /* Llama only */
    pt_family family;
    int o_bias;         /* o_proj has a bias (Llama: attention_bias; Qwen2: no) */
    int qk_norm;        /* Qwen3: per-head RMSNorm of q and k before RoPE */
    int sliding_window; /* Mistral, Phi-3, Gemma: a query sees the last sliding_window positions; 0: all */
    int swa_pattern;    /* 0: every layer is windowed; P: layer i is windowed unless (i + 1) % P == 0
                         * (Gemma 2: 2, every other layer from layer 0; Gemma 3: 6, five local : one global) */
    /* Gemma 2 / 3 (pt_config_gemma): RMSNorm weights are used as (1 + w), the embeddings are
     * multiplied by embed_scale, the MLP is GeGLU (gelu, tanh approximation), and the outputs
     * of attention and MLP are RMS-normed again before the residual add. */
    float embed_scale;    /* √d_model rounded to the checkpoint's torch_dtype, as HF computes it; 0: none */
    float attn_scale;     /* scores = q·k · attn_scale: query_pre_attn_scalar^-1/2 (Gemma); 0: 1/√head_dim */
    float attn_softcap;   /* Gemma 2: scores = c·tanh(scores / c) before the mask; 0: none */
    float final_softcap;  /* Gemma 2: logits = c·tanh(logits / c); 0: none */
    float rope_local_theta; /* Gemma 3: RoPE base (unscaled) of the windowed layers; 0: as the others */
    int query_pre_attn_scalar; /* Gemma: as config.json has it (0: none) */
    int tie_embeddings; /* Llama: tie_word_embeddings (default 0); GPT-2: always 1 */
    int attn_bias;      /* q/k/v biases. Llama: attention_bias; Qwen2: 1; GPT-2: 1 */
    int mlp_bias;       /* Llama: mlp_bias; GPT-2: 1 */
    int bos_token_id;   /* -1 if none */
    int eos_token_ids[PT_MAX_EOS];
    int n_eos;
} pt_config;

/* Limits that keep every derived size far from overflow and from absurd allocations. */
#define PT_MAX_VOCAB (1 << 22)
#define PT_MAX_DMODEL (1 << 16)
#define PT_MAX_LAYERS 1024
#define PT_MAX_HEADS 1024
#define PT_MAX_DFF (1 << 20)
#define PT_MAX_POS (1 << 22)

/* Reads config.json (or the JSON already parsed). Unknown keys are ignored (HF configs carry
 * many); missing required ones, wrong types and out-of-range values are errors that name the
 * file and the key. Checks the architecture's invariants (heads divisible by kv heads, ...). */
int pt_config_load(const char *path, pt_config *c, pt_err *err);
int pt_config_from_json(const json_t *j, const char *what, pt_config *c, pt_err *err);
/* A Hugging Face config.json object for c (new reference). */
json_t *pt_config_to_json(const pt_config *c);
/* Checks ranges and invariants; used by both readers. */
int pt_config_validate(const pt_config *c, const char *what, pt_err *err);

/* RoPE's inverse frequencies for head_dim hd (hd/2 of them) as rope_scaling defines them, for
 * a sequence whose longest position is seq_len - 1 (only "dynamic" depends on it), and the
 * factor cos and sin are multiplied by (1 but for yarn). */
float pt_rope_inv_freq(const pt_config *c, int seq_len, float *inv, int hd);
/* The model_type of a family ("llama", "qwen2", ...). */
const char *pt_family_name(pt_family f);
/* 1 for Gemma 2 and Gemma 3 (see the fields above); 1 for Phi-3 (fused qkv_proj and
 * gate_up_proj in the file, split into the engine's q/k/v and gate/up views at load). */
int pt_config_gemma(const pt_config *c);
int pt_config_fused(const pt_config *c);
/* 1 if layer i attends through the sliding window (sliding_window and swa_pattern). */
int pt_config_layer_windowed(const pt_config *c, int layer);

#endif
