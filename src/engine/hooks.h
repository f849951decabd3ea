/* hooks.h — hook points: read (cache) and write (add, set, ablate) internal activations by
 * their TransformerLens names, during prefill and generation.
 *
 * Hook names (i is a layer index, shapes per sequence, pos = positions in this run):
 *   hook_embed                     [pos, d_model]
 *   hook_pos_embed                 [pos, d_model]           (GPT-2 only)
 *   blocks.{i}.hook_resid_pre      [pos, d_model]
 *   blocks.{i}.attn.hook_q         [pos, n_heads, head_dim] (Llama: before RoPE)
 *   blocks.{i}.attn.hook_k         [pos, n_kv_heads, head_dim] (Llama: before RoPE)
 *   blocks.{i}.attn.hook_v         [pos, n_kv_heads, head_dim]
 *   blocks.{i}.attn.q_norm.hook_normalized [pos, n_heads, head_dim]    (Qwen3, Gemma 3: after the
 *   blocks.{i}.attn.k_norm.hook_normalized [pos, n_kv_heads, head_dim]  per-head RMSNorm, before RoPE)
 *   blocks.{i}.attn.hook_z         [pos, n_heads, head_dim]
 *   blocks.{i}.attn.hook_pattern   [n_heads, q_pos, k_pos]  (read only)
 *   blocks.{i}.ln1_post.hook_normalized [pos, d_model] (Gemma only: the attention output divided
 *                                  by its RMS, before the post-attention norm's weight)
 *   blocks.{i}.hook_attn_out       [pos, d_model] (what is added to the residual stream; Gemma: after
 *                                  the post-attention norm)
 *   blocks.{i}.hook_resid_mid      [pos, d_model]
 *   blocks.{i}.mlp.hook_pre        [pos, d_ff]  (Llama: the gate projection before SiLU; Gemma: GELU)
 *   blocks.{i}.mlp.hook_post       [pos, d_ff]  (Llama: silu(gate)·up; Gemma: gelu_tanh(gate)·up)
 *   blocks.{i}.ln2_post.hook_normalized [pos, d_model] (Gemma only: the MLP output over its RMS)
 *   blocks.{i}.hook_mlp_out        [pos, d_model] (Gemma: after the post-feedforward norm)
 *   blocks.{i}.hook_resid_post     [pos, d_model]
 *   ln_final.hook_normalized       [pos, d_model] (after the final norm's weight and bias)
 *   logits                         [pos, vocab] (Gemma 2: after the final soft-capping)
 *
 * A pt_hooks object belongs to one sequence (pt_seq_set_hooks) and lives as long as the
 * caller wants: its interventions apply to every forward step of that sequence, and its
 * read cache grows by the rows of every step (so prefill then decode gives all positions).
 * Positions are absolute (0 is the sequence's first token). At one hook, the interventions
 * run in the order they were added, then the reads record the result.
 */
#ifndef PARITY_ENGINE_HOOKS_H
#define PARITY_ENGINE_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "engine/config.h"

typedef enum pt_hook_kind {
    /* global sites */
    PT_HOOK_EMBED = 0, PT_HOOK_POS_EMBED, PT_HOOK_LN_FINAL, PT_HOOK_LOGITS,
    /* per-layer sites */
    PT_HOOK_RESID_PRE, PT_HOOK_Q, PT_HOOK_K, PT_HOOK_V, PT_HOOK_Q_NORM, PT_HOOK_K_NORM, PT_HOOK_Z, PT_HOOK_PATTERN,
    PT_HOOK_LN1_POST, PT_HOOK_ATTN_OUT, PT_HOOK_RESID_MID, PT_HOOK_MLP_PRE, PT_HOOK_MLP_POST, PT_HOOK_LN2_POST,
    PT_HOOK_MLP_OUT, PT_HOOK_RESID_POST,
    PT_HOOK_KIND_COUNT
} pt_hook_kind;

#define PT_HOOK_N_GLOBAL 4
#define PT_HOOK_N_LAYER (PT_HOOK_KIND_COUNT - PT_HOOK_N_GLOBAL)

/* Site index of (kind, layer): one flat numbering, pt_hook_n_sites(c) in all. */
static inline int pt_hook_site(pt_hook_kind k, int layer) {
    return (int)k < PT_HOOK_N_GLOBAL ? (int)k : PT_HOOK_N_GLOBAL + layer * PT_HOOK_N_LAYER + ((int)k - PT_HOOK_N_GLOBAL);
}
int pt_hook_n_sites(const pt_config *c);

/* 1 if the model has the site (hook_pos_embed only on GPT-2, the q/k norm hooks only with qk_norm,
 * ln1_post/ln2_post only on Gemma): the one rule that pt_hook_parse,
 * pt_hook_row_shape and so every listing of hooks follow. */
int pt_hook_site_exists(const pt_config *c, int site);
/* Parses a hook name. Unknown names (or a layer out of range, or hook_pos_embed on Llama)
 * are PT_ENOTFOUND with a message listing the valid names compactly. */
int pt_hook_parse(const pt_config *c, const char *name, int *site, pt_err *err);
/* The name of a site into buf (returns buf). */
char *pt_hook_name(const pt_config *c, int site, char *buf, size_t cap);
/* Width of one position's row at a site (pattern: n_heads · k_pos varies: returns n_heads),
 * and its per-position shape (dims after pos; pattern: [n_heads]); -1 for a site the model does
 * not have (pt_hook_site_exists). */
int pt_hook_width(const pt_config *c, int site);
int pt_hook_row_shape(const pt_config *c, int site, int64_t *dims);

typedef struct pt_hooks pt_hooks;

/* A hook set for sequences of model config c (borrowed: must outlive the set). */
int pt_hooks_new(const pt_config *c, pt_hooks **out, pt_err *err);
void pt_hooks_free(pt_hooks *h); /* NULL-safe */

/* Caches the hook `name` at the given absolute positions (NULL, 0: all positions). The
 * position list is copied. Reading the same hook twice is an error. */
int pt_hooks_read(pt_hooks *h, const char *name, const int32_t *positions, size_t n_positions, pt_err *err);

/* Interventions. `v` (copied) is either one row (numel == the hook's row width; broadcast
 * to every position) or whole rows [rows, width] where row p applies to absolute position p
 * (positions beyond the last row are left alone). positions (copied; NULL, 0: all) restricts
 * the edit further. Not allowed on hook_pattern. A value (times the scale) that is not a finite
 * float32 is PT_EINVAL naming the hook. */
int pt_hooks_add(pt_hooks *h, const char *name, const float *v, size_t numel, float scale, const int32_t *positions,
                 size_t n_positions, pt_err *err);
int pt_hooks_set(pt_hooks *h, const char *name, const float *v, size_t numel, const int32_t *positions,
                 size_t n_positions, pt_err *err);
/* mean = 0: zero the activation; mean = 1: replace it by its mean over the sequence's
 * positions seen so far at this hook (within the restricted positions; in one prefill that is
 * the mean over the prompt's positions, as TransformerLens' mean ablation of one prompt). */
int pt_hooks_ablate(pt_hooks *h, const char *name, int mean, const int32_t *positions, size_t n_positions,
                    pt_err *err);

/* A cached read: data [n_rows, dims...] (pattern: [n_heads, n_rows, k_len], zero where
 * masked). Borrowed from h, valid until the next forward step or clear. PT_ENOTFOUND if the
 * hook was not asked for; n_rows 0 when nothing was recorded yet. */
typedef struct pt_hook_tensor {
    const float *data;
    int ndim;
    int64_t shape[4];
} pt_hook_tensor;
int pt_hooks_get(pt_hooks *h, const char *name, pt_hook_tensor *out, pt_err *err);
/* Number of read hooks and the name of the i-th (in the order asked). */
size_t pt_hooks_n_reads(const pt_hooks *h);
const char *pt_hooks_read_name(const pt_hooks *h, size_t i);
/* Forgets cached rows (reads stay registered) and the mean-ablation statistics. */
void pt_hooks_clear_cache(pt_hooks *h);
/* 1 if the set reads or writes the logits (the engine then computes every row's logits). */
int pt_hooks_wants_logits(const pt_hooks *h);

/* Reads a tensor for an intervention on hook `hook` from a .safetensors file: the tensor
 * named `tensor` if not NULL, else the one named like the hook, else the file's only
 * tensor. Any float dtype; converted to F32 into *out (malloc'd, caller frees). */
int pt_hooks_tensor_from_file(const char *path, const char *tensor, const char *hook, float **out, size_t *numel,
                              pt_err *err);

/* Registers the reads and interventions of an interventions document (schema in
 * docs/engine.md):
 *   {"read": ["NAME" | {"hook": NAME, "positions": [..]}, ...],
 *    "interventions": [{"hook": NAME, "op": "add"|"set"|"ablate",
 *                       "file": PATH, "tensor": NAME | "values": [numbers...],
 *                       "scale": NUMBER (add), "mode": "zero"|"mean" (ablate),
 *                       "positions": [ints]}, ...]}
 * Relative file paths are resolved against base_dir (NULL: the current directory). Errors
 * name `what` and the JSON path ("spec.json: interventions[2].scale: ..."). */
int pt_hooks_load_spec(pt_hooks *h, const json_t *spec, const char *base_dir, const char *what, pt_err *err);

/* Used by the forward pass: 1 if anything is registered at the site. */
int pt_hooks_active(const pt_hooks *h, int site);
/* Runs the interventions then the reads at a site on rows x[n, width] at absolute positions
 * p0 .. p0+n-1. Returns PT_ENOMEM if the cache could not grow. */
int pt_hooks_apply(pt_hooks *h, int site, float *x, int n, int p0, pt_err *err);
/* Records attention probabilities pattern[n_heads, n, k_len] of rows at p0.. (k_len = p0+n). */
int pt_hooks_record_pattern(pt_hooks *h, int site, const float *pattern, int n, int p0, pt_err *err);

#endif
