/* lora.h — low-rank adapters (LoRA) for the Llama architecture: the adapter in memory, its
 * two file layouts, and merging it into base weights.
 *
 * An adapter on projection W (out, in) of layer l is a pair A (r, in), B (out, r); the
 * adapted projection computes y = W x + s · B (A x) with s = alpha / r × a user scale
 * (PEFT's `scaling`). The engine applies it per sequence in forward.c:proj()
 * (pt_seq_set_lora, engine.h); the trainer trains A and B on frozen base weights
 * (pt_trainer_attach_lora, train/train.h).
 *
 * Files:
 *   - PEFT (Hugging Face): DIR/adapter_config.json (peft_type LORA, r, lora_alpha,
 *     lora_dropout, target_modules, ...) and DIR/adapter_model.safetensors with tensors
 *     base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight [r, in] and
 *     ....lora_B.weight [out, r] (mlp.gate_proj / up_proj / down_proj for the MLP).
 *   - llama.cpp LoRA GGUF (convert_lora_to_gguf.py): general.architecture llama,
 *     general.type "adapter", adapter.type "lora", adapter.lora.alpha; tensors
 *     blk.N.attn_q.weight.lora_a [r, in] and .lora_b [out, r] (PyTorch order; GGUF ne is
 *     reversed). B of q/k has its rows permuted as llama.cpp permutes the base Q/K weights.
 *
 * Only the Llama architecture is supported (GPT-2's fused c_attn is not split into q/k/v).
 */
#ifndef PARITY_ENGINE_LORA_H
#define PARITY_ENGINE_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/config.h"
#include "engine/model.h"

typedef struct pt_lora_mat {
    float *A;      /* (r, in)  NULL when this projection is not adapted */
    float *B;      /* (out, r) */
    int in, out;
} pt_lora_mat;

typedef struct pt_lora {
    int rank;              /* r */
    float alpha;           /* lora_alpha: the scaling is alpha / r */
    float dropout;         /* lora_dropout (training only; recorded in the config) */
    unsigned targets;      /* bit p set: projection pt_proj p is adapted in every layer */
    int n_layers;
    pt_lora_mat *m;        /* owned: [n_layers * PT_PROJ_COUNT], m[l * PT_PROJ_COUNT + p] */
    float *block;          /* owned: every A and B, one allocation, layer by layer, A then B */
    size_t n_params;       /* floats in block */
    char *base_model;      /* owned, may be NULL: base_model_name_or_path */
} pt_lora;

/* "q".."down" (the short target names) and the HF module names "q_proj".."down_proj". */
const char *pt_lora_target_name(pt_proj p);
const char *pt_lora_module_name(pt_proj p);

/* Parses a comma-separated target list ("q,v", "q_proj,v_proj" or "all") for config c into
 * a bit mask. Errors: an unknown name, a target the architecture does not have, an empty
 * list, a model that is not Llama. */
int pt_lora_parse_targets(const char *list, const pt_config *c, unsigned *mask, pt_err *err);

/* A new adapter for c: rank >= 1, alpha > 0, a non-empty target mask. A is initialised as
 * PEFT does (kaiming_uniform(a=√5): uniform in ±1/√in, from seed), B is zero, so the new
 * adapter changes nothing. *out owned by the caller. */
int pt_lora_new(const pt_config *c, int rank, float alpha, unsigned targets, uint64_t seed, pt_lora **out,
                pt_err *err);
void pt_lora_free(pt_lora *l); /* NULL-safe */

/* alpha / r */
float pt_lora_scaling(const pt_lora *l);

/* Reads an adapter for a model of config c: a PEFT directory (or its
 * adapter_model.safetensors beside adapter_config.json) or a llama.cpp LoRA GGUF file.
 * Every tensor must be present with the shape c implies; unknown tensors, other PEFT
 * options that change the computation (use_dora, use_rslora, fan_in_fan_out, bias,
 * rank/alpha patterns, layers_to_transform) are errors naming the file. */
int pt_lora_load(const char *path, const pt_config *c, pt_lora **out, pt_err *err);

/* Writes DIR/adapter_config.json and DIR/adapter_model.safetensors (F32), creating DIR. */
int pt_lora_save_peft(const pt_lora *l, const pt_config *c, const char *dir, pt_err *err);
/* Writes a llama.cpp LoRA GGUF (F32 tensors), atomically. */
int pt_lora_save_gguf(const pt_lora *l, const pt_config *c, const char *path, pt_err *err);

/* Merges the adapter (scaling alpha/r × scale) into the model at base (HF dir or GGUF) and
 * writes an HF directory out_dir: adapted weights become F32 W + s·B·A, every other tensor
 * keeps its dtype; config.json and the tokenizer files are copied. */
int pt_lora_merge(const char *base, const pt_lora *l, float scale, const char *out_dir, pt_err *err);

/* Parses "DIR[:SCALE]" (scale default 1). *path malloc'd. */
int pt_lora_parse_spec(const char *spec, char **path, float *scale, pt_err *err);

#endif
