/* see convert.h — llama.cpp's naming and layout conventions, and format conversion. */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/json.h"
#include "engine/convert.h"

/* Name tables ------------------------------------------------------------------------ */

typedef struct {
    const char *hf, *gguf;
} name_pair;

static const name_pair llama_names[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
    {"model.layers.%d.input_layernorm.weight", "blk.%d.attn_norm.weight"},
    {"model.layers.%d.self_attn.q_proj.weight", "blk.%d.attn_q.weight"},
    {"model.layers.%d.self_attn.q_proj.bias", "blk.%d.attn_q.bias"},
    {"model.layers.%d.self_attn.k_proj.weight", "blk.%d.attn_k.weight"},
    {"model.layers.%d.self_attn.k_proj.bias", "blk.%d.attn_k.bias"},
    {"model.layers.%d.self_attn.v_proj.weight", "blk.%d.attn_v.weight"},
    {"model.layers.%d.self_attn.v_proj.bias", "blk.%d.attn_v.bias"},
    {"model.layers.%d.self_attn.o_proj.weight", "blk.%d.attn_output.weight"},
    {"model.layers.%d.self_attn.o_proj.bias", "blk.%d.attn_output.bias"},
    {"model.layers.%d.self_attn.q_norm.weight", "blk.%d.attn_q_norm.weight"}, /* Qwen3 */
    {"model.layers.%d.self_attn.k_norm.weight", "blk.%d.attn_k_norm.weight"},
    {"model.layers.%d.post_attention_layernorm.weight", "blk.%d.ffn_norm.weight"},
    {"model.layers.%d.mlp.gate_proj.weight", "blk.%d.ffn_gate.weight"},
    {"model.layers.%d.mlp.gate_proj.bias", "blk.%d.ffn_gate.bias"},
    {"model.layers.%d.mlp.up_proj.weight", "blk.%d.ffn_up.weight"},
    {"model.layers.%d.mlp.up_proj.bias", "blk.%d.ffn_up.bias"},
    {"model.layers.%d.mlp.down_proj.weight", "blk.%d.ffn_down.weight"},
    {"model.layers.%d.mlp.down_proj.bias", "blk.%d.ffn_down.bias"},
    {NULL, NULL},
};

/* Gemma 2 / 3 (llama.cpp's gemma2, gemma3): four norms a layer; norm weights stored as 1 + w. */
static const name_pair gemma_names[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
    {"model.layers.%d.input_layernorm.weight", "blk.%d.attn_norm.weight"},
    {"model.layers.%d.self_attn.q_proj.weight", "blk.%d.attn_q.weight"},
    {"model.layers.%d.self_attn.k_proj.weight", "blk.%d.attn_k.weight"},
    {"model.layers.%d.self_attn.v_proj.weight", "blk.%d.attn_v.weight"},
    {"model.layers.%d.self_attn.o_proj.weight", "blk.%d.attn_output.weight"},
    {"model.layers.%d.self_attn.q_norm.weight", "blk.%d.attn_q_norm.weight"}, /* Gemma 3 */
    {"model.layers.%d.self_attn.k_norm.weight", "blk.%d.attn_k_norm.weight"},
    {"model.layers.%d.post_attention_layernorm.weight", "blk.%d.post_attention_norm.weight"},
    {"model.layers.%d.pre_feedforward_layernorm.weight", "blk.%d.ffn_norm.weight"},
    {"model.layers.%d.post_feedforward_layernorm.weight", "blk.%d.post_ffw_norm.weight"},
    {"model.layers.%d.mlp.gate_proj.weight", "blk.%d.ffn_gate.weight"},
    {"model.layers.%d.mlp.up_proj.weight", "blk.%d.ffn_up.weight"},
    {"model.layers.%d.mlp.down_proj.weight", "blk.%d.ffn_down.weight"},
    {NULL, NULL},
};

/* Phi-3 (llama.cpp's phi3): the fused matrices keep their fusion (ffn_up holds gate then up). */
static const name_pair phi3_names[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
    {"model.layers.%d.input_layernorm.weight", "blk.%d.attn_norm.weight"},
    {"model.layers.%d.self_attn.qkv_proj.weight", "blk.%d.attn_qkv.weight"},
    {"model.layers.%d.self_attn.o_proj.weight", "blk.%d.attn_output.weight"},
    {"model.layers.%d.post_attention_layernorm.weight", "blk.%d.ffn_norm.weight"},
    {"model.layers.%d.mlp.gate_up_proj.weight", "blk.%d.ffn_up.weight"},
    {"model.layers.%d.mlp.down_proj.weight", "blk.%d.ffn_down.weight"},
    {NULL, NULL},
};

static const name_pair gpt2_names[] = {
    {"wte.weight", "token_embd.weight"},
    {"wpe.weight", "position_embd.weight"},
    {"ln_f.weight", "output_norm.weight"},
    {"ln_f.bias", "output_norm.bias"},
    {"h.%d.ln_1.weight", "blk.%d.attn_norm.weight"},
    {"h.%d.ln_1.bias", "blk.%d.attn_norm.bias"},
    {"h.%d.attn.c_attn.weight", "blk.%d.attn_qkv.weight"},
    {"h.%d.attn.c_attn.bias", "blk.%d.attn_qkv.bias"},
    {"h.%d.attn.c_proj.weight", "blk.%d.attn_output.weight"},
    {"h.%d.attn.c_proj.bias", "blk.%d.attn_output.bias"},
    {"h.%d.ln_2.weight", "blk.%d.ffn_norm.weight"},
    {"h.%d.ln_2.bias", "blk.%d.ffn_norm.bias"},
    {"h.%d.mlp.c_fc.weight", "blk.%d.ffn_up.weight"},
    {"h.%d.mlp.c_fc.bias", "blk.%d.ffn_up.bias"},
    {"h.%d.mlp.c_proj.weight", "blk.%d.ffn_down.weight"},
    {"h.%d.mlp.c_proj.bias", "blk.%d.ffn_down.bias"},
    {NULL, NULL},
};

/* Matches name against a pattern with at most one "%d" (a decimal layer index without
 * leading zeros); stores the index (-1 when the pattern has none). */
static int match(const char *pat, const char *name, int *layer) {
    const char *pd = strstr(pat, "%d");
    *layer = -1;
    if (!pd) return strcmp(pat, name) == 0;
    size_t pre = (size_t)(pd - pat);
    if (strncmp(pat, name, pre)) return 0;
    const char *p = name + pre;
    if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9')) return 0;
    long v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        if (v > 1000000) return 0;
    }
    if (strcmp(p, pd + 2)) return 0;
    *layer = (int)v;
    return 1;
}

static int map_name(const name_pair *tab, int to_gguf, const char *name, char *out, size_t cap) {
    for (const name_pair *e = tab; e->hf; e++) {
        const char *from = to_gguf ? e->hf : e->gguf, *to = to_gguf ? e->gguf : e->hf;
        int layer;
        if (!match(from, name, &layer)) continue;
        int n = layer >= 0 ? snprintf(out, cap, to, layer) : snprintf(out, cap, "%s", to);
        return n > 0 && (size_t)n < cap ? 0 : -1;
    }
    return -1;
}

static const name_pair *names_of(const pt_config *c) {
    if (c->arch == PT_ARCH_GPT2) return gpt2_names;
    if (pt_config_gemma(c)) return gemma_names;
    return c->family == PT_FAM_PHI3 ? phi3_names : llama_names;
}

int pt_name_hf_to_gguf(const pt_config *c, const char *hf, char *out, size_t cap) {
    return map_name(names_of(c), 1, hf, out, cap);
}

int pt_name_gguf_to_hf(const pt_config *c, const char *gguf, char *out, size_t cap) {
    return map_name(names_of(c), 0, gguf, out, cap);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Layout transforms ------------------------------------------------------------------ */

/* Which transform a tensor (internal name) needs between internal and GGUF layout. */
enum { XF_NONE, XF_PERMUTE_Q, XF_PERMUTE_K, XF_TRANSPOSE, XF_NORM_SHIFT };

static int transform_of(const pt_config *c, const char *hf) {
    /* llama.cpp rotates llama's q/k in interleaved pairs (so its converter permutes them);
     * qwen2, qwen3, gemma2, gemma3 and phi3 keep transformers' rotate-half layout (NEOX),
     * unpermuted. Gemma's norm weights are written as 1 + w (llama.cpp's converter adds the 1
     * that Gemma's RMSNorm adds at run time). */
    if (pt_config_gemma(c)) return ends_with(hf, "norm.weight") ? XF_NORM_SHIFT : XF_NONE;
    if (c->arch == PT_ARCH_LLAMA && (c->family == PT_FAM_QWEN2 || c->family == PT_FAM_QWEN3 || c->family == PT_FAM_PHI3))
        return XF_NONE;
    if (c->arch == PT_ARCH_LLAMA) {
        if (ends_with(hf, "self_attn.q_proj.weight") || ends_with(hf, "self_attn.q_proj.bias")) return XF_PERMUTE_Q;
        if (ends_with(hf, "self_attn.k_proj.weight") || ends_with(hf, "self_attn.k_proj.bias")) return XF_PERMUTE_K;
    } else if (ends_with(hf, ".weight") && (strstr(hf, ".attn.c_attn.") || strstr(hf, ".attn.c_proj.") ||
                                           strstr(hf, ".mlp.c_fc.") || strstr(hf, ".mlp.c_proj."))) {
        return XF_TRANSPOSE;
    }
    return XF_NONE;
}

/* llama.cpp's permute: rows of head h in HF order [s*hd/2 + j] go to GGUF order [2j + s]
 * (w.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2)). to_gguf=0 undoes it. Whole rows move, so
 * any dtype works (a Q8_0 row is a whole number of blocks). */
static void permute_rows(const uint8_t *src, uint8_t *dst, size_t n_rows, size_t row_bytes, int n_head,
                         int to_gguf) {
    size_t hd = n_rows / (size_t)n_head, half = hd / 2;
    for (size_t h = 0; h < (size_t)n_head; h++)
        for (size_t s = 0; s < 2; s++)
            for (size_t j = 0; j < half; j++) {
                size_t hf_row = h * hd + s * half + j, gg_row = h * hd + 2 * j + s;
                size_t from = to_gguf ? hf_row : gg_row, to = to_gguf ? gg_row : hf_row;
                memcpy(dst + to * row_bytes, src + from * row_bytes, row_bytes);
            }
}

/* out[c][r] = in[r][c] for a rows×cols matrix of elem-byte elements. */
static void transpose(const uint8_t *src, uint8_t *dst, size_t rows, size_t cols, size_t elem) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) memcpy(dst + (c * rows + r) * elem, src + (r * cols + c) * elem, elem);
}

static size_t elem_size(pt_dtype t) {
    size_t n = 0;
    pt_dtype_bytes(t, 1, &n);
    return n;
}

/* Converts n values from one dtype to another through F32 (exact when widening). */
static int convert_values(pt_dtype from, const void *src, pt_dtype to, void *dst, size_t n, pt_err *err) {
    if (from == to) {
        size_t nb;
        pt_dtype_bytes(from, n, &nb);
        memcpy(dst, src, nb);
        return PT_OK;
    }
    float *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp) return pt_errf(err, PT_ENOMEM, "out of memory for %zu values", n);
    pt_to_f32(from, src, tmp, n);
    int bad = pt_from_f32(to, tmp, dst, n);
    free(tmp);
    return bad ? pt_errf(err, PT_EUNSUPPORTED, "cannot convert %s to %s", pt_dtype_name(from), pt_dtype_name(to))
               : PT_OK;
}

/* GGUF → config -------------------------------------------------------------------- */

static int key_int(const pt_gguf *g, const char *arch, const char *suffix, int required, int64_t def, int64_t lo,
                   int64_t hi, int *out, pt_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const pt_gguf_kv *kv = pt_gguf_get(g, key);
    if (!kv) {
        if (required) return pt_errf(err, PT_EFORMAT, "%s: missing key '%s'", g->what, key);
        *out = (int)def;
        return PT_OK;
    }
    int64_t v;
    int rc = pt_gguf_kv_int(g, kv, &v, err);
    if (rc) return rc;
    if (v < lo || v > hi)
        return pt_errf(err, PT_EFORMAT, "%s: byte %zu: key '%s' = %lld is out of range [%lld, %lld]", g->what,
                       kv->offset, key, (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return PT_OK;
}

static int key_float(const pt_gguf *g, const char *arch, const char *suffix, int required, double def, float *out,
                     pt_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const pt_gguf_kv *kv = pt_gguf_get(g, key);
    if (!kv) {
        if (required) return pt_errf(err, PT_EFORMAT, "%s: missing key '%s'", g->what, key);
        *out = (float)def;
        return PT_OK;
    }
    double v;
    int rc = pt_gguf_kv_float(g, kv, &v, err);
    if (rc) return rc;
    if (!isfinite(v)) return pt_errf(err, PT_EFORMAT, "%s: key '%s' is not finite", g->what, key);
    *out = (float)v;
    return PT_OK;
}

/* llama.cpp's query scale of Gemma 2 and 3 (llama-model.cpp): 1/√(d_model/n_heads) for the
 * 27B models (46 and 62 layers), else 1/√head_dim; query_pre_attn_scalar is what gives it. */
static int llamacpp_query_scalar(const pt_config *c) {
    int big = c->n_layers == (c->family == PT_FAM_GEMMA2 ? 46 : 62);
    return big ? c->d_model / c->n_heads : c->head_dim;
}

/* The gemma2 / gemma3 / phi3 keys, and what llama.cpp fixes for them (llama-model.cpp):
 * Gemma 2's layers alternate windowed / global from layer 0 and soft-cap (50 and 30 by
 * default); Gemma 3's five local layers a global one, the local ones with RoPE base 10000. */
static int gguf_gemma_phi3(const pt_gguf *g, const char *arch, pt_config *c, pt_err *err) {
    int rc;
    if (c->family == PT_FAM_PHI3) {
        if (pt_gguf_find_tensor(g, "rope_factors_long.weight"))
            return pt_errf(err, PT_EUNSUPPORTED, "%s: phi3 with rope_factors_long (longrope) is not supported", g->what);
        rc = key_int(g, arch, "attention.sliding_window", 0, 0, 0, PT_MAX_POS * 4LL, &c->sliding_window, err);
        if (!rc && c->sliding_window >= c->max_pos) c->sliding_window = 0;
        return rc;
    }
    int g2 = c->family == PT_FAM_GEMMA2;
    if ((rc = key_int(g, arch, "attention.sliding_window", !g2, 4096, 0, PT_MAX_POS * 4LL, &c->sliding_window, err)))
        return rc;
    c->swa_pattern = g2 ? 2 : 6;
    c->rope_local_theta = g2 ? 0.f : 10000.f;
    if (g2 && ((rc = key_float(g, arch, "attn_logit_softcapping", 0, 50.0, &c->attn_softcap, err)) ||
               (rc = key_float(g, arch, "final_logit_softcapping", 0, 30.0, &c->final_softcap, err))))
        return rc;
    c->query_pre_attn_scalar = llamacpp_query_scalar(c);
    c->attn_scale = 1.f / sqrtf((float)c->query_pre_attn_scalar);
    c->embed_scale = sqrtf((float)c->d_model);
    return PT_OK;
}

int pt_gguf_config(const pt_gguf *g, pt_config *c, pt_err *err) {
    memset(c, 0, sizeof *c);
    const pt_gguf_kv *ka = pt_gguf_get(g, "general.architecture");
    if (!ka) return pt_errf(err, PT_EFORMAT, "%s: missing key 'general.architecture'", g->what);
    const char *s;
    size_t n;
    int rc = pt_gguf_kv_str(g, ka, &s, &n, err);
    if (rc) return rc;
    char arch[32];
    if (n >= sizeof arch || memchr(s, 0, n))
        return pt_errf(err, PT_EUNSUPPORTED, "%s: general.architecture is not one parity knows", g->what);
    memcpy(arch, s, n);
    arch[n] = 0;
#define TRY(x)                     \
    do {                           \
        if ((rc = (x))) return rc; \
    } while (0)
    const pt_gguf_tensor *emb = pt_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return pt_errf(err, PT_EFORMAT, "%s: missing 2-D tensor 'token_embd.weight'", g->what);
    static const struct {
        const char *name;
        pt_family fam;
    } llama_like[] = {{"llama", PT_FAM_LLAMA}, {"qwen2", PT_FAM_QWEN2}, {"qwen3", PT_FAM_QWEN3},
                      {"gemma2", PT_FAM_GEMMA2}, {"gemma3", PT_FAM_GEMMA3}, {"phi3", PT_FAM_PHI3}};
    int ll = -1;
    for (int i = 0; i < (int)(sizeof llama_like / sizeof llama_like[0]); i++)
        if (!strcmp(arch, llama_like[i].name)) ll = i;
    if (ll >= 0) {
        c->arch = PT_ARCH_LLAMA;
        c->family = llama_like[ll].fam;
        c->qk_norm = c->family == PT_FAM_QWEN3 || c->family == PT_FAM_GEMMA3;
        TRY(key_int(g, arch, "embedding_length", 1, 0, 1, PT_MAX_DMODEL, &c->d_model, err));
        TRY(key_int(g, arch, "block_count", 1, 0, 1, PT_MAX_LAYERS, &c->n_layers, err));
        TRY(key_int(g, arch, "feed_forward_length", 1, 0, 1, PT_MAX_DFF, &c->d_ff, err));
        TRY(key_int(g, arch, "attention.head_count", 1, 0, 1, PT_MAX_HEADS, &c->n_heads, err));
        TRY(key_int(g, arch, "attention.head_count_kv", 0, c->n_heads, 1, PT_MAX_HEADS, &c->n_kv_heads, err));
        TRY(key_int(g, arch, "context_length", 0, 2048, 1, PT_MAX_POS, &c->max_pos, err));
        TRY(key_int(g, arch, "attention.key_length", 0, c->d_model / c->n_heads, 1, 4096, &c->head_dim, err));
        int vl, rd;
        TRY(key_int(g, arch, "attention.value_length", 0, c->head_dim, 1, 4096, &vl, err));
        TRY(key_int(g, arch, "rope.dimension_count", 0, c->head_dim, 1, 4096, &rd, err));
        if (vl != c->head_dim || rd != c->head_dim)
            return pt_errf(err, PT_EUNSUPPORTED,
                           "%s: key_length %d, value_length %d and rope.dimension_count %d differ (not supported)",
                           g->what, c->head_dim, vl, rd);
        TRY(key_float(g, arch, "rope.freq_base", 0, 10000.0, &c->rope_theta, err));
        TRY(key_float(g, arch, "attention.layer_norm_rms_epsilon", 1, 0, &c->norm_eps, err));
        char rs_key[64];
        snprintf(rs_key, sizeof rs_key, "%s.rope.scaling.type", arch);
        const pt_gguf_kv *rs = pt_gguf_get(g, rs_key);
        if (rs) {
            const char *t;
            size_t tl;
            int lin = 0;
            if (pt_gguf_kv_str(g, rs, &t, &tl, err) ||
                ((tl != 4 || memcmp(t, "none", 4)) &&
                 !(lin = c->family == PT_FAM_GEMMA3 && tl == 6 && !memcmp(t, "linear", 6))))
                return pt_errf(err, PT_EUNSUPPORTED, "%s: %s is not supported yet", g->what, rs_key);
            if (lin) { /* Gemma 3's global layers */
                c->rope.type = PT_ROPE_LINEAR;
                TRY(key_float(g, arch, "rope.scaling.factor", 1, 0, &c->rope.factor, err));
                if (!(c->rope.factor >= 1))
                    return pt_errf(err, PT_EFORMAT, "%s: %s.rope.scaling.factor must be >= 1", g->what, arch);
            }
        }
        if (pt_config_gemma(c) || c->family == PT_FAM_PHI3) TRY(gguf_gemma_phi3(g, arch, c, err));
        c->tie_embeddings = pt_gguf_find_tensor(g, "output.weight") == NULL;
        c->attn_bias = pt_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
        c->o_bias = pt_gguf_find_tensor(g, "blk.0.attn_output.bias") != NULL;
        c->mlp_bias = pt_gguf_find_tensor(g, "blk.0.ffn_up.bias") != NULL;
    } else if (!strcmp(arch, "gpt2")) {
        c->arch = PT_ARCH_GPT2;
        TRY(key_int(g, arch, "embedding_length", 1, 0, 1, PT_MAX_DMODEL, &c->d_model, err));
        TRY(key_int(g, arch, "block_count", 1, 0, 1, PT_MAX_LAYERS, &c->n_layers, err));
        TRY(key_int(g, arch, "feed_forward_length", 0, 4LL * c->d_model, 1, PT_MAX_DFF, &c->d_ff, err));
        TRY(key_int(g, arch, "attention.head_count", 1, 0, 1, PT_MAX_HEADS, &c->n_heads, err));
        TRY(key_int(g, arch, "context_length", 0, 1024, 1, PT_MAX_POS, &c->max_pos, err));
        TRY(key_float(g, arch, "attention.layer_norm_epsilon", 1, 0, &c->norm_eps, err));
        c->n_kv_heads = c->n_heads;
        c->head_dim = c->d_model / c->n_heads;
        c->tie_embeddings = 1;
        c->attn_bias = c->o_bias = c->mlp_bias = 1;
        c->family = PT_FAM_GPT2;
    } else {
        return pt_errf(err, PT_EUNSUPPORTED,
                       "%s: general.architecture '%s' is not supported (llama, qwen2, qwen3, gemma2, gemma3, phi3, gpt2)",
                       g->what,
                       arch);
    }
    /* vocab_size: the key when present, else the embedding's rows; they must agree. */
    if (emb->ne[1] > PT_MAX_VOCAB) return pt_errf(err, PT_EFORMAT, "%s: token_embd.weight has too many rows", g->what);
    TRY(key_int(g, arch, "vocab_size", 0, (int64_t)emb->ne[1], 1, PT_MAX_VOCAB, &c->vocab_size, err));
    int bos, eos;
    TRY(key_int(g, "tokenizer.ggml", "bos_token_id", 0, -1, 0, c->vocab_size - 1, &bos, err));
    TRY(key_int(g, "tokenizer.ggml", "eos_token_id", 0, -1, 0, c->vocab_size - 1, &eos, err));
    c->bos_token_id = bos;
    if (eos >= 0) c->eos_token_ids[c->n_eos++] = eos;
#undef TRY
    return pt_config_validate(c, g->what, err);
}

int pt_gguf_load_model(const pt_gguf *g, pt_config *c, pt_tensors *ts, pt_err *err) {
    int rc = pt_gguf_config(g, c, err);
    if (rc) return rc;
    char hf[256];
    for (size_t i = 0; i < g->n_tensors; i++) {
        const pt_gguf_tensor *t = &g->tensors[i];
        if (c->arch == PT_ARCH_GPT2 && !strcmp(t->name, "output.weight")) continue; /* a copy of token_embd */
        if (pt_name_gguf_to_hf(c, t->name, hf, sizeof hf))
            return pt_errf(err, PT_EFORMAT, "%s: byte %zu: tensor '%s' is not a %s tensor parity knows", g->what,
                           t->info_offset, t->name, pt_family_name(c->family));
        int64_t shape[PT_GGUF_MAX_DIMS];
        for (uint32_t d = 0; d < t->n_dims; d++) shape[d] = (int64_t)t->ne[t->n_dims - 1 - d];
        int xf = transform_of(c, hf);
        if (xf == XF_NONE) {
            if ((rc = pt_tensors_add(ts, hf, t->dtype, (int)t->n_dims, shape, t->data, t->nbytes, 0, err))) return rc;
            continue;
        }
        if (xf == XF_NORM_SHIFT) { /* Gemma: the file's 1 + w back to HF's w, in F32 */
            if (t->n_dims != 1 || pt_dtype_is_quant(t->dtype))
                return pt_errf(err, PT_EFORMAT, "%s: tensor '%s' must be a 1-D F32/F16/BF16 vector", g->what, t->name);
            float *p = malloc((size_t)(shape[0] ? shape[0] : 1) * sizeof *p);
            if (!p) return pt_errf(err, PT_ENOMEM, "out of memory");
            pt_to_f32(t->dtype, t->data, p, (size_t)shape[0]);
            for (int64_t k = 0; k < shape[0]; k++) p[k] -= 1.f;
            if ((rc = pt_tensors_add_owned(ts, hf, PT_F32, 1, shape, p, (size_t)shape[0] * sizeof *p, err))) return rc;
            continue;
        }
        if (xf == XF_PERMUTE_Q || xf == XF_PERMUTE_K) {
            int heads = xf == XF_PERMUTE_Q ? c->n_heads : c->n_kv_heads;
            size_t rows = (size_t)shape[0];
            if (rows != (size_t)heads * (size_t)c->head_dim || !rows)
                return pt_errf(err, PT_EFORMAT, "%s: tensor '%s': %zu rows, expected %d heads x %d", g->what, t->name,
                               rows, heads, c->head_dim);
            uint8_t *p = malloc(t->nbytes ? t->nbytes : 1);
            if (!p) return pt_errf(err, PT_ENOMEM, "out of memory");
            permute_rows(t->data, p, rows, t->nbytes / rows, heads, 0);
            if ((rc = pt_tensors_add_owned(ts, hf, t->dtype, (int)t->n_dims, shape, p, t->nbytes, err))) return rc;
            continue;
        }
        /* GPT-2 Conv1D: GGUF [out, in] → HF [in, out]. */
        if (t->n_dims != 2) return pt_errf(err, PT_EFORMAT, "%s: tensor '%s' must be 2-D", g->what, t->name);
        size_t rows = (size_t)shape[0], cols = (size_t)shape[1], numel = rows * cols;
        pt_dtype dt = pt_dtype_is_quant(t->dtype) ? PT_F32 : t->dtype;
        size_t es = elem_size(dt), nb = numel * es;
        const uint8_t *src = t->data;
        float *deq = NULL;
        if (pt_dtype_is_quant(t->dtype)) {
            if (!(deq = malloc((numel ? numel : 1) * sizeof *deq))) return pt_errf(err, PT_ENOMEM, "out of memory");
            pt_to_f32(t->dtype, t->data, deq, numel);
            src = (const uint8_t *)deq;
        }
        uint8_t *p = malloc(nb ? nb : 1);
        if (!p) {
            free(deq);
            return pt_errf(err, PT_ENOMEM, "out of memory");
        }
        transpose(src, p, rows, cols, es);
        free(deq);
        int64_t tshape[2] = {(int64_t)cols, (int64_t)rows};
        if ((rc = pt_tensors_add_owned(ts, hf, dt, 2, tshape, p, nb, err))) return rc;
    }
    return PT_OK;
}

/* tokenizer.json → tokenizer.ggml.* ---------------------------------------------------- */

#define PT_TOKENIZER_MAX_BYTES (256u << 20)

static int json_mentions(const json_t *j, const char *what) {
    if (!j) return 0;
    char *s = json_dumps(j, JSON_COMPACT);
    int r = s && strstr(s, what) != NULL;
    free(s);
    return r;
}

/* The one regex a byte-level pre-tokenizer splits by: ByteLevel's own (GPT-2's, with
 * use_regex), a Split's, or a Sequence of one Split and a ByteLevel without use_regex. NULL
 * when it is none of these. */
static const char *byte_level_regex(const json_t *pre) {
    const char *ty = json_string_value(json_object_get(pre, "type"));
    if (!ty) return NULL;
    if (!strcmp(ty, "ByteLevel")) return json_is_false(json_object_get(pre, "use_regex")) ? NULL : tk_gpt2_pattern;
    if (!strcmp(ty, "Split")) return json_string_value(json_object_get(json_object_get(pre, "pattern"), "Regex"));
    if (strcmp(ty, "Sequence")) return NULL;
    const char *rx = NULL;
    size_t i, n_split = 0;
    json_t *p;
    json_array_foreach(json_object_get(pre, "pretokenizers"), i, p) {
        const char *t = json_string_value(json_object_get(p, "type"));
        if (t && !strcmp(t, "Split") && !n_split++) rx = byte_level_regex(p);
        else if (!t || strcmp(t, "ByteLevel") || !json_is_false(json_object_get(p, "use_regex"))) return NULL;
    }
    return n_split == 1 ? rx : NULL;
}

/* tokenizer.ggml.pre of a byte-level tokenizer.json: llama.cpp's name (llama-vocab.cpp) for the
 * regex the file has — GPT-2's (the ByteLevel pre-tokenizer's own, or as a Split) "gpt-2",
 * Llama 3's "llama-bpe", Qwen2's "qwen2". llama.cpp falls back to another regex for a name it
 * does not know (it refuses "gpt2"), so a regex without a name is an error. */
static int llamacpp_pre(const json_t *pre, const char *path, const char **out, pt_err *err) {
    const char *rx = byte_level_regex(pre);
    if (rx && !strcmp(rx, tk_gpt2_pattern)) *out = "gpt-2";
    else if (rx && !strcmp(rx, tk_llama3_pattern)) *out = "llama-bpe";
    else if (rx && !strcmp(rx, tk_qwen2_pattern)) *out = "qwen2";
    else
        return pt_errf(err, PT_EUNSUPPORTED,
                       "%s: $.pre_tokenizer: a byte-level regex llama.cpp has no tokenizer.ggml.pre name for "
                       "(GPT-2's, Llama 3's and Qwen2's have one)",
                       path);
    return PT_OK;
}

/* The id of tokenizer_config.json's KEY ("bos_token": a string or {"content": ...}) among
 * tokens[0..n), or -1. */
static int32_t config_token_id(const json_t *tc, const char *key, char *const *tokens, size_t n) {
    const json_t *v = json_object_get(tc, key);
    const char *s = json_is_string(v) ? json_string_value(v) : json_string_value(json_object_get(v, "content"));
    for (size_t i = 0; s && i < n; i++)
        if (tokens[i] && !strcmp(tokens[i], s)) return (int32_t)i;
    return -1;
}

/* bos/eos ids for tokenizer.ggml.*: config.json's, else generation_config.json's (an id or a
 * list, the first), else (the caller) tokenizer_config.json's tokens. -1 where none. */
static int special_ids(const char *dir, const pt_config *c, int32_t *bos, int32_t *eos, pt_err *err) {
    *bos = c->bos_token_id;
    *eos = c->n_eos ? c->eos_token_ids[0] : -1;
    char *gp = pt_path_join(dir, "generation_config.json");
    if (!gp) return pt_errf(err, PT_ENOMEM, "out of memory");
    json_t *g = NULL;
    int rc = PT_OK;
    if (pt_exists(gp) && !(g = pt_json_load_file(gp, 1u << 20, err))) rc = err ? err->code : PT_EFORMAT;
    const char *keys[2] = {"bos_token_id", "eos_token_id"};
    int32_t *ids[2] = {bos, eos};
    for (int k = 0; k < 2 && g && !rc; k++) {
        json_t *v = json_object_get(g, keys[k]);
        if (json_is_array(v)) v = json_array_get(v, 0);
        if (!v || json_is_null(v) || *ids[k] >= 0) continue;
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= c->vocab_size)
            rc = pt_errf(err, PT_EFORMAT, "%s: \"%s\" must be a token id below %d", gp, keys[k], c->vocab_size);
        else *ids[k] = (int32_t)json_integer_value(v);
    }
    json_decref(g);
    free(gp);
    return rc;
}

static int set_special_ids(pt_gguf_writer *w, int32_t bos, int32_t eos, pt_err *err) {
    int rc = PT_OK;
    if (bos >= 0) rc = pt_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos, err);
    if (!rc && eos >= 0) rc = pt_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos, err);
    return rc;
}

static int is_byte_token(const char *s) {
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>' && strchr("0123456789ABCDEF", s[3]) &&
           strchr("0123456789ABCDEF", s[4]) && s[3] && s[4];
}

int pt_tokenizer_json_to_gguf(const char *dir, const pt_config *c, pt_gguf_writer *w, pt_err *err) {
    char *path = pt_path_join(dir, "tokenizer.json"), *cpath = pt_path_join(dir, "tokenizer_config.json");
    json_t *j = NULL, *tc = NULL;
    char **tokens = NULL, **merges = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    char *merged = NULL;
    size_t n_vocab = 0, n_merges = 0;
    int rc = PT_OK;
    if (!path || !cpath) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    if (!pt_exists(path)) {
        rc = pt_errf(err, PT_ENOTFOUND, "%s: no tokenizer.json", dir);
        goto out;
    }
    if (!(j = pt_json_load_file(path, PT_TOKENIZER_MAX_BYTES, err))) {
        rc = err ? err->code : PT_EFORMAT;
        goto out;
    }
    if (pt_exists(cpath) && !(tc = pt_json_load_file(cpath, 64u << 20, err))) {
        rc = err ? err->code : PT_EFORMAT;
        goto out;
    }
    json_t *model = json_object_get(j, "model"), *vocab = json_object_get(model, "vocab"),
           *jm = json_object_get(model, "merges"), *added = json_object_get(j, "added_tokens");
    if (!json_is_object(model) || !json_is_string(json_object_get(model, "type")) ||
        strcmp(json_string_value(json_object_get(model, "type")), "BPE") || !json_is_object(vocab)) {
        rc = pt_errf(err, PT_EUNSUPPORTED, "%s: $.model: only BPE tokenizers (with a vocab object) are supported", path);
        goto out;
    }
    int spm = json_is_true(json_object_get(model, "byte_fallback")) ||
              json_mentions(json_object_get(j, "pre_tokenizer"), "Metaspace") ||
              json_mentions(json_object_get(j, "decoder"), "Metaspace") ||
              json_mentions(json_object_get(j, "decoder"), "ByteFallback");
    int bytelevel = json_mentions(json_object_get(j, "pre_tokenizer"), "ByteLevel") ||
                    json_mentions(json_object_get(j, "decoder"), "ByteLevel");
    if (!spm && !bytelevel) {
        rc = pt_errf(err, PT_EUNSUPPORTED, "%s: neither byte-level BPE nor SentencePiece-style BPE", path);
        goto out;
    }
    /* The vocabulary: ids from model.vocab and added_tokens; holes below vocab_size are padding. */
    size_t max_id = 0;
    const char *tok;
    json_t *v;
    json_object_foreach(vocab, tok, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= PT_MAX_VOCAB) {
            rc = pt_errf(err, PT_EFORMAT, "%s: $.model.vocab[\"%s\"] is not a token id", path, tok);
            goto out;
        }
        if ((size_t)json_integer_value(v) + 1 > max_id) max_id = (size_t)json_integer_value(v) + 1;
    }
    size_t i;
    json_t *a;
    json_array_foreach(added, i, a) {
        json_t *id = json_object_get(a, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= PT_MAX_VOCAB ||
            !json_is_string(json_object_get(a, "content"))) {
            rc = pt_errf(err, PT_EFORMAT, "%s: $.added_tokens[%zu] needs an \"id\" and a \"content\"", path, i);
            goto out;
        }
        if ((size_t)json_integer_value(id) + 1 > max_id) max_id = (size_t)json_integer_value(id) + 1;
    }
    n_vocab = max_id > (size_t)c->vocab_size ? max_id : (size_t)c->vocab_size;
    tokens = calloc(n_vocab, sizeof *tokens);
    types = calloc(n_vocab, sizeof *types);
    scores = calloc(n_vocab, sizeof *scores);
    merged = calloc(n_vocab, 1);
    if (!tokens || !types || !scores || !merged) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    json_object_foreach(vocab, tok, v) {
        size_t id = (size_t)json_integer_value(v);
        free(tokens[id]);
        tokens[id] = strdup(tok);
        types[id] = spm && is_byte_token(tok) ? PT_TOKTYPE_BYTE : PT_TOKTYPE_NORMAL;
        scores[id] = spm ? -(float)id : 0; /* refined by merge rank below */
    }
    json_array_foreach(added, i, a) {
        size_t id = (size_t)json_integer_value(json_object_get(a, "id"));
        free(tokens[id]);
        tokens[id] = strdup(json_string_value(json_object_get(a, "content")));
        types[id] = json_is_true(json_object_get(a, "special")) ? PT_TOKTYPE_CONTROL : PT_TOKTYPE_USER;
        scores[id] = 0;
    }
    json_t *unk = json_object_get(model, "unk_token");
    int32_t unk_id = -1;
    for (size_t k = 0; k < n_vocab; k++) {
        if (!tokens[k]) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%zu]", k);
            tokens[k] = strdup(pad);
            types[k] = PT_TOKTYPE_UNUSED;
        } else if (spm && json_is_string(unk) && !strcmp(tokens[k], json_string_value(unk))) {
            types[k] = PT_TOKTYPE_UNKNOWN;
            unk_id = (int32_t)k;
        }
        if (!tokens[k]) {
            rc = pt_errf(err, PT_ENOMEM, "out of memory");
            goto out;
        }
        if (strlen(tokens[k]) == 0 && types[k] != PT_TOKTYPE_UNUSED) {
            rc = pt_errf(err, PT_EFORMAT, "%s: token %zu is empty", path, k);
            goto out;
        }
    }
    /* Merges: "a b" strings (older files) or ["a", "b"] pairs (newer). */
    n_merges = json_array_size(jm);
    merges = calloc(n_merges ? n_merges : 1, sizeof *merges);
    if (!merges) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    json_array_foreach(jm, i, a) {
        const char *l, *r;
        char *m = NULL;
        if (json_is_string(a)) {
            m = strdup(json_string_value(a));
        } else if (json_is_array(a) && json_array_size(a) == 2 && (l = json_string_value(json_array_get(a, 0))) &&
                   (r = json_string_value(json_array_get(a, 1)))) {
            size_t ml = strlen(l) + strlen(r) + 2;
            if ((m = malloc(ml))) snprintf(m, ml, "%s %s", l, r);
        } else {
            rc = pt_errf(err, PT_EFORMAT, "%s: $.model.merges[%zu] is not \"a b\" or [\"a\", \"b\"]", path, i);
            goto out;
        }
        if (!m) {
            rc = pt_errf(err, PT_ENOMEM, "out of memory");
            goto out;
        }
        merges[i] = m;
        if (spm) { /* SentencePiece BPE scores: a merge's result scores minus its rank */
            char *sp = strchr(m, ' ');
            if (sp) {
                *sp = 0;
                size_t ml = strlen(m) + strlen(sp + 1) + 1;
                char *joined = malloc(ml);
                if (joined) {
                    snprintf(joined, ml, "%s%s", m, sp + 1);
                    json_t *id = json_object_get(vocab, joined);
                    size_t k = json_is_integer(id) ? (size_t)json_integer_value(id) : n_vocab;
                    if (k < n_vocab && !merged[k] && types[k] == PT_TOKTYPE_NORMAL) { /* the lowest-ranked merge wins */
                        scores[k] = -(float)i;
                        merged[k] = 1;
                    }
                    free(joined);
                }
                *sp = ' ';
            }
        }
    }
    const char *pre = "default"; /* llama.cpp reads no pre-tokenizer for SentencePiece vocabularies */
    if (!spm && (rc = llamacpp_pre(json_object_get(j, "pre_tokenizer"), path, &pre, err))) goto out;
    if ((rc = pt_gguf_set_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2", err)) ||
        (rc = pt_gguf_set_str(w, "tokenizer.ggml.pre", pre, err)) ||
        (rc = pt_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tokens, n_vocab, err)))
        goto out;
    if (spm && (rc = pt_gguf_set_arr_f32(w, "tokenizer.ggml.scores", scores, n_vocab, err))) goto out;
    if ((rc = pt_gguf_set_arr_i32(w, "tokenizer.ggml.token_type", types, n_vocab, err))) goto out;
    if (n_merges && (rc = pt_gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, n_merges, err)))
        goto out;
    int32_t bos, eos;
    if ((rc = special_ids(dir, c, &bos, &eos, err))) goto out;
    if (bos < 0) bos = config_token_id(tc, "bos_token", tokens, n_vocab);
    if (eos < 0) eos = config_token_id(tc, "eos_token", tokens, n_vocab);
    if ((rc = set_special_ids(w, bos, eos, err))) goto out;
    if (unk_id >= 0 && (rc = pt_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk_id, err))) goto out;
    json_t *ab = json_object_get(tc, "add_bos_token");
    if (json_is_boolean(ab) && (rc = pt_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", json_is_true(ab), err)))
        goto out;
    json_t *ct = json_object_get(tc, "chat_template");
    if (json_is_array(ct)) { /* [{"name": "default", "template": "..."}, ...] */
        json_t *def = NULL;
        json_array_foreach(ct, i, a) {
            const char *nm = json_string_value(json_object_get(a, "name"));
            if (!def || (nm && !strcmp(nm, "default"))) def = a;
        }
        ct = json_object_get(def, "template");
    }
    if (json_is_string(ct) && (rc = pt_gguf_set_str(w, "tokenizer.chat_template", json_string_value(ct), err)))
        goto out;
out:
    if (tokens)
        for (size_t k = 0; k < n_vocab; k++) free(tokens[k]);
    if (merges)
        for (size_t k = 0; k < n_merges; k++) free(merges[k]);
    free(tokens);
    free(merges);
    free(types);
    free(scores);
    free(merged);
    json_decref(j);
    json_decref(tc);
    free(path);
    free(cpath);
    return rc;
}

/* Writing ---------------------------------------------------------------------------- */

/* A block type for rows of `cols` values: d itself when they are whole blocks, else Q8_0
 * (32-value blocks) or F16, as llama.cpp falls back. */
static pt_dtype fit_rows(pt_dtype d, int64_t cols) {
    if (!pt_dtype_is_quant(d) || cols % (int64_t)pt_dtype_block(d) == 0) return d;
    return cols % PT_Q8_0_BLOCK == 0 ? PT_Q8_0 : PT_F16;
}

/* The dtype a tensor is written in: 1-D tensors F32 when a dtype is asked for (as llama.cpp
 * does); block types need rows of whole blocks (see fit_rows); safetensors has none. */
static pt_dtype out_dtype(const pt_tensor *t, int want, int to_gguf) {
    pt_dtype d = t->dtype;
    if (want >= 0) d = t->ndim <= 1 ? PT_F32 : (pt_dtype)want;
    if (pt_dtype_is_quant(d) && (!to_gguf || t->ndim < 1)) return to_gguf ? PT_F16 : PT_F32;
    return t->ndim < 1 ? d : fit_rows(d, t->shape[t->ndim - 1]);
}

typedef struct {
    const pt_model_files *mf;
    const pt_tensor **src; /* tensor i of the output, in internal naming */
    pt_dtype *dt;          /* its output dtype */
    int to_gguf;
} fill_ctx;

/* Produces tensor i in the output's layout and dtype. */
static int fill_tensor(void *vctx, size_t i, void *dst, size_t nbytes, pt_err *err) {
    fill_ctx *x = vctx;
    const pt_tensor *t = x->src[i];
    const pt_config *c = &x->mf->config;
    pt_dtype to = x->dt[i];
    size_t numel = pt_tensor_numel(t);
    int xf = x->to_gguf ? transform_of(c, t->name) : XF_NONE;
    if (xf == XF_NONE) return convert_values(t->dtype, t->data, to, dst, numel, err);
    if (xf == XF_NORM_SHIFT) { /* Gemma: w → 1 + w, through F32 */
        float *a = malloc((numel ? numel : 1) * sizeof *a);
        if (!a) return pt_errf(err, PT_ENOMEM, "out of memory");
        pt_to_f32(t->dtype, t->data, a, numel);
        for (size_t k = 0; k < numel; k++) a[k] += 1.f;
        int bad = pt_from_f32(to, a, dst, numel);
        free(a);
        return bad ? pt_errf(err, PT_EUNSUPPORTED, "cannot write %s", pt_dtype_name(to)) : PT_OK;
    }
    size_t eb = 0;
    pt_dtype_bytes(to, numel, &eb);
    if (eb != nbytes) return pt_errf(err, PT_EINTERNAL, "tensor '%s': size mismatch", t->name);
    if (xf == XF_PERMUTE_Q || xf == XF_PERMUTE_K) {
        int heads = xf == XF_PERMUTE_Q ? c->n_heads : c->n_kv_heads;
        size_t rows = (size_t)t->shape[0];
        uint8_t *tmp = malloc(nbytes ? nbytes : 1);
        if (!tmp) return pt_errf(err, PT_ENOMEM, "out of memory");
        int rc = convert_values(t->dtype, t->data, to, tmp, numel, err);
        if (!rc) permute_rows(tmp, dst, rows, nbytes / rows, heads, 1);
        free(tmp);
        return rc;
    }
    /* GPT-2 Conv1D [in, out] → [out, in], through F32. */
    size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1];
    float *a = malloc((numel ? numel : 1) * sizeof *a), *b = malloc((numel ? numel : 1) * sizeof *b);
    int rc = PT_OK;
    if (!a || !b) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    if (!rc) {
        pt_to_f32(t->dtype, t->data, a, numel);
        transpose((const uint8_t *)a, (uint8_t *)b, rows, cols, sizeof(float));
        if (pt_from_f32(to, b, dst, numel)) rc = pt_errf(err, PT_EUNSUPPORTED, "cannot write %s", pt_dtype_name(to));
    }
    free(a);
    free(b);
    return rc;
}

/* The type of the 2-D tensor gname in a mix (see PT_MIX_Q4_K_M). */
static pt_dtype mix_dtype(int mix, const char *gname, int n_layers, int tied) {
    pt_dtype base = mix == PT_MIX_Q4_K_M ? PT_Q4_K : PT_Q5_K;
    if (!strcmp(gname, "output.weight") || (tied && !strcmp(gname, "token_embd.weight"))) return PT_Q6_K;
    int i;
    if (sscanf(gname, "blk.%d.", &i) != 1) return base;
    if (strstr(gname, ".attn_v.") || strstr(gname, ".ffn_down.")) {
        int more = i < n_layers / 8 || i >= 7 * n_layers / 8 || (i - n_layers / 8) % 3 == 2;
        return more ? PT_Q6_K : base;
    }
    if (strstr(gname, ".attn_qkv.")) return mix == PT_MIX_Q4_K_M ? PT_Q5_K : PT_Q6_K;
    return base;
}

/* The dtype 2-D tensor t is written in to GGUF when d is asked for it: rows that are not whole
 * blocks of d fall back (fit_rows); a transposed matrix's new rows are its old columns. */
static pt_dtype gguf_fit(const pt_config *c, const pt_tensor *t, pt_dtype d) {
    return fit_rows(d, transform_of(c, t->name) == XF_TRANSPOSE ? t->shape[0] : t->shape[1]);
}

/* The dtype a tensor is written in to GGUF without a mix. */
static pt_dtype gguf_dtype(const pt_config *c, const pt_tensor *t, int want) {
    pt_dtype d = out_dtype(t, want, 1);
    if (t->ndim != 2 || transform_of(c, t->name) != XF_TRANSPOSE) return d;
    return gguf_fit(c, t, want >= 0 ? (pt_dtype)want : t->dtype);
}

/* general.file_type: llama.cpp's LLAMA_FTYPE of the tensors written — ALL_F32 (0) only when
 * no matrix is in another type, else MOSTLY_<the type of most matrix elements that are not F32>,
 * as a quantised llama.cpp file keeps some tensors F32 (a mix has its own number). */
static int file_type_of(const pt_model_files *mf, const pt_convert_opts *o) {
    if (o->mix) return o->mix == PT_MIX_Q4_K_M ? 15 : 17;
    static const pt_dtype types[] = {PT_F16, PT_Q8_0, PT_Q4_0, PT_Q4_K, PT_Q5_K, PT_Q6_K, PT_BF16};
    static const int ftype[] = {1, 7, 2, 14 /* MOSTLY_Q4_K_S */, 16 /* Q5_K_S */, 18, 32};
    enum { NT = sizeof types / sizeof types[0] };
    uint64_t n[NT] = {0};
    for (size_t i = 0; i < mf->tensors.n; i++) {
        const pt_tensor *t = &mf->tensors.t[i];
        if (t->ndim < 2) continue;
        pt_dtype d = gguf_dtype(&mf->config, t, o->dtype);
        for (int k = 0; k < NT; k++)
            if (d == types[k]) n[k] += pt_tensor_numel(t);
    }
    int best = -1;
    for (int k = 0; k < NT; k++)
        if (n[k] && (best < 0 || n[k] > n[best])) best = k;
    return best < 0 ? 0 : ftype[best];
}

static char *base_name(const char *path) {
    char *c = strdup(path);
    if (!c) return NULL;
    size_t n = strlen(c);
    while (n > 1 && c[n - 1] == '/') c[--n] = 0;
    char *b = strdup(basename(c));
    free(c);
    if (b) {
        char *dot = strrchr(b, '.');
        if (dot && !strcmp(dot, ".gguf")) *dot = 0;
    }
    return b;
}

/* What llama.cpp fixes for gemma2 / gemma3 files (gguf_gemma_phi3) must be what the model
 * has: a model that differs cannot be written as llama.cpp would run it. (The embeddings'
 * √d_model is F32 in llama.cpp; an HF checkpoint in BF16 rounds it: not refused.) */
static int gguf_gemma_check(const pt_model_files *mf, pt_err *err) {
    const pt_config *c = &mf->config;
    if (!pt_config_gemma(c)) return PT_OK;
    int g2 = c->family == PT_FAM_GEMMA2;
    const char *bad = NULL;
    if (c->query_pre_attn_scalar != llamacpp_query_scalar(c))
        bad = "query_pre_attn_scalar other than llama.cpp's (head_dim; d_model/heads for the 27B shapes)";
    else if (c->sliding_window && c->swa_pattern != (g2 ? 2 : 6))
        bad = g2 ? "layers other than alternating windowed/global" : "a sliding-window pattern other than 6";
    else if (!c->sliding_window)
        bad = "no sliding window";
    else if (g2 && (c->attn_softcap <= 0 || c->final_softcap <= 0))
        bad = "no soft-capping";
    else if (!g2 && (c->attn_softcap > 0 || c->final_softcap > 0))
        bad = "soft-capping";
    else if (!g2 && c->rope_local_theta != 10000.f)
        bad = "rope_local_base_freq other than 10000";
    if (bad)
        return pt_errf(err, PT_EUNSUPPORTED, "%s: GGUF conversion of %s models with %s is not supported (llama.cpp "
                       "fixes it)", mf->path, pt_family_name(c->family), bad);
    return PT_OK;
}

int pt_gguf_write_model(const pt_model_files *mf, const char *path, const pt_convert_opts *o, pt_err *err) {
    const pt_config *c = &mf->config;
    /* Mistral without a window is a llama file to llama.cpp */
    const char *arch = c->arch == PT_ARCH_GPT2                                       ? "gpt2"
                       : c->family == PT_FAM_QWEN2 || c->family == PT_FAM_QWEN3 ? pt_family_name(c->family)
                       : c->family == PT_FAM_GEMMA2 || c->family == PT_FAM_PHI3  ? pt_family_name(c->family)
                       : c->family == PT_FAM_GEMMA3                               ? "gemma3"
                                                                                 : "llama";
    int own_window = pt_config_gemma(c) || c->family == PT_FAM_PHI3;
    int gemma3_linear = c->family == PT_FAM_GEMMA3 && c->rope.type == PT_ROPE_LINEAR;
    if ((c->rope.type != PT_ROPE_DEFAULT && !gemma3_linear) || (c->sliding_window && !own_window) ||
        (c->attn_bias != c->o_bias && c->family != PT_FAM_QWEN2))
        return pt_errf(err, PT_EUNSUPPORTED, "%s: GGUF conversion of %s models with %s is not supported yet", mf->path,
                       pt_family_name(c->family),
                       c->rope.type != PT_ROPE_DEFAULT ? "rope_scaling" : c->sliding_window ? "a sliding window"
                                                                                            : "an o_proj bias alone");
    int rc = gguf_gemma_check(mf, err);
    if (rc) return rc;
    pt_gguf_writer *w = pt_gguf_writer_new();
    fill_ctx x = {mf, calloc(mf->tensors.n + 1, sizeof(pt_tensor *)), calloc(mf->tensors.n + 1, sizeof(pt_dtype)), 1};
    char *name = o->name ? strdup(o->name) : base_name(mf->path);
    pt_progress prog;
    if (!w || !x.src || !x.dt || !name) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    char key[96];
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
#define TRY(e)                 \
    do {                       \
        if ((rc = (e))) goto out; \
    } while (0)
    TRY(pt_gguf_set_str(w, "general.architecture", arch, err));
    TRY(pt_gguf_set_str(w, "general.name", name, err));
    TRY(pt_gguf_set_u32(w, KEY("context_length"), (uint32_t)c->max_pos, err));
    TRY(pt_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)c->d_model, err));
    TRY(pt_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->d_ff, err));
    TRY(pt_gguf_set_u32(w, KEY("block_count"), (uint32_t)c->n_layers, err));
    TRY(pt_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads, err));
    if (c->arch == PT_ARCH_LLAMA) {
        TRY(pt_gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads, err));
        TRY(pt_gguf_set_f32(w, KEY("rope.freq_base"), c->rope_theta, err));
        TRY(pt_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps, err));
        if (c->head_dim != c->d_model / c->n_heads) {
            TRY(pt_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim, err));
            TRY(pt_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim, err));
        }
        TRY(pt_gguf_set_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size, err));
        TRY(pt_gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim, err));
        if (c->sliding_window) TRY(pt_gguf_set_u32(w, KEY("attention.sliding_window"), (uint32_t)c->sliding_window, err));
        if (c->family == PT_FAM_GEMMA2) {
            TRY(pt_gguf_set_f32(w, KEY("attn_logit_softcapping"), c->attn_softcap, err));
            TRY(pt_gguf_set_f32(w, KEY("final_logit_softcapping"), c->final_softcap, err));
        }
        if (gemma3_linear) {
            TRY(pt_gguf_set_str(w, KEY("rope.scaling.type"), "linear", err));
            TRY(pt_gguf_set_f32(w, KEY("rope.scaling.factor"), c->rope.factor, err));
        }
    } else {
        TRY(pt_gguf_set_f32(w, KEY("attention.layer_norm_epsilon"), c->norm_eps, err));
    }
    TRY(pt_gguf_set_u32(w, "general.file_type", (uint32_t)file_type_of(mf, o), err));
    TRY(pt_gguf_set_u32(w, "general.quantization_version", 2, err));
#undef KEY
    /* Tokenizer: tokenizer.* keys of a GGUF input are kept; an HF directory's tokenizer.json
     * is converted (none is fine: the GGUF then carries weights only). */
    if (mf->gguf) {
        for (size_t i = 0; i < mf->gguf->n_kv; i++)
            if (!strncmp(mf->gguf->kv[i].key, "tokenizer.", 10)) TRY(pt_gguf_copy_kv(w, &mf->gguf->kv[i], err));
    } else {
        rc = pt_tokenizer_json_to_gguf(mf->dir, c, w, err);
        if (rc == PT_ENOTFOUND) {
            int32_t bos, eos;
            TRY(special_ids(mf->dir, c, &bos, &eos, err));
            TRY(set_special_ids(w, bos, eos, err));
        }
        if (rc) goto out;
    }
    /* Tensors: token_embd first, then per layer, then the rest, in the input's order. */
    size_t n = 0;
    uint64_t total = 0;
    char gname[PT_GGUF_MAX_NAME + 64];
    for (size_t i = 0; i < mf->tensors.n; i++) {
        const pt_tensor *t = &mf->tensors.t[i];
        if (pt_name_hf_to_gguf(c, t->name, gname, sizeof gname)) {
            rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s' has no GGUF name", mf->path, t->name);
            goto out;
        }
        pt_dtype d = gguf_dtype(c, t, o->dtype);
        int tied = c->arch == PT_ARCH_LLAMA && !pt_tensors_find(&mf->tensors, "lm_head.weight");
        if (o->mix && t->ndim == 2) {
            d = gguf_fit(c, t, mix_dtype(o->mix, gname, c->n_layers, tied));
        }
        int64_t shape[PT_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        if (transform_of(c, t->name) == XF_TRANSPOSE) {
            shape[0] = t->shape[1];
            shape[1] = t->shape[0];
        }
        x.src[n] = t;
        x.dt[n] = d;
        TRY(pt_gguf_add_tensor(w, gname, d, t->ndim, shape, NULL, err));
        n++;
        size_t nb = 0;
        pt_dtype_bytes(d, pt_tensor_numel(t), &nb);
        total += nb;
        /* llama.cpp's GPT-2 converter also writes the tied output matrix. */
        if (c->arch == PT_ARCH_GPT2 && !strcmp(t->name, "wte.weight")) {
            if (o->mix) d = fit_rows(mix_dtype(o->mix, "output.weight", c->n_layers, 0), shape[1]);
            pt_dtype_bytes(d, pt_tensor_numel(t), &nb);
            x.src[n] = t;
            x.dt[n] = d;
            TRY(pt_gguf_add_tensor(w, "output.weight", d, t->ndim, shape, NULL, err));
            n++;
            total += nb;
        }
    }
    if (o->progress) pt_progress_start(&prog, "convert", total);
    rc = pt_gguf_write(w, path, fill_tensor, &x, o->progress ? &prog : NULL, err);
    if (o->progress) pt_progress_finish(&prog);
#undef TRY
out:
    free(name);
    free(x.src);
    free(x.dt);
    pt_gguf_writer_free(w);
    return rc;
}

static int copy_file(const char *from, const char *to, pt_err *err) {
    char *buf;
    size_t len;
    int rc = pt_read_file(from, 512u << 20, &buf, &len, err);
    if (rc) return rc;
    rc = pt_write_atomic(to, buf, len, 0644, err);
    free(buf);
    return rc;
}

int pt_hf_write_model(const pt_model_files *mf, const char *dir, const pt_convert_opts *o, pt_err *err) {
    if (o->dtype >= 0 && pt_dtype_is_quant((pt_dtype)o->dtype))
        return pt_errf(err, PT_EINVAL, "safetensors has no %s dtype (use --to gguf)", pt_dtype_name((pt_dtype)o->dtype));
    int rc = pt_mkdirs(dir, 0, err);
    if (rc) return rc;
    size_t n = mf->tensors.n;
    pt_tensor *out = calloc(n + 1, sizeof *out);
    void **bufs = calloc(n + 1, sizeof *bufs);
    char *cfgp = pt_path_join(dir, "config.json"), *stp = pt_path_join(dir, "model.safetensors");
    char *js = NULL;
    json_t *cj = pt_config_to_json(&mf->config);
    if (!out || !bufs || !cfgp || !stp || !cj) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    /* safetensors' writer takes whole tensors: convert each one that changes dtype. Tensors
     * already in the asked dtype are written straight from the input's mapping. */
    pt_progress prog;
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < n; i++) total += mf->tensors.t[i].nbytes;
    if (o->progress) pt_progress_start(&prog, "convert", total);
    for (size_t i = 0; i < n; i++) {
        const pt_tensor *t = &mf->tensors.t[i];
        pt_dtype d = out_dtype(t, o->dtype, 0);
        out[i] = *t;
        out[i].dtype = d;
        out[i].owned = NULL;
        if (d != t->dtype) {
            size_t nb;
            if (pt_dtype_bytes(d, pt_tensor_numel(t), &nb) || !(bufs[i] = malloc(nb ? nb : 1))) {
                rc = pt_errf(err, PT_ENOMEM, "tensor '%s': out of memory", t->name);
                goto out;
            }
            if ((rc = convert_values(t->dtype, t->data, d, bufs[i], pt_tensor_numel(t), err))) goto out;
            out[i].data = bufs[i];
            out[i].nbytes = nb;
        }
        done += t->nbytes;
        if (o->progress) pt_progress_update(&prog, done, NULL);
    }
    json_t *meta = json_pack("{s:s}", "format", "pt");
    rc = pt_safetensors_write(stp, out, n, meta, err);
    json_decref(meta);
    if (o->progress) pt_progress_finish(&prog);
    if (rc) goto out;
    json_object_set_new(cj, "torch_dtype", json_string(o->dtype == PT_F16    ? "float16"
                                                       : o->dtype == PT_BF16 ? "bfloat16"
                                                                             : "float32"));
    if (!(js = json_dumps(cj, JSON_INDENT(2)))) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = pt_write_atomic(cfgp, js, strlen(js), 0644, err))) goto out;
    if (mf->format == PT_FORMAT_HF_DIR) {
        static const char *const extra[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                            "special_tokens_map.json"};
        for (size_t k = 0; k < sizeof extra / sizeof extra[0] && !rc; k++) {
            char *from = pt_path_join(mf->dir, extra[k]), *to = pt_path_join(dir, extra[k]);
            if (from && to && pt_exists(from) && strcmp(from, to)) rc = copy_file(from, to, err);
            free(from);
            free(to);
        }
    }
out:
    if (bufs)
        for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(out);
    free(cfgp);
    free(stp);
    free(js);
    json_decref(cj);
    return rc;
}

int pt_convert(const char *in, const char *out, const pt_convert_opts *o, pt_err *err) {
    pt_model_files mf;
    int rc = pt_model_files_open(&mf, in, err);
    if (rc) return rc;
    if (o->to == PT_FORMAT_GGUF) rc = pt_gguf_write_model(&mf, out, o, err);
    else rc = pt_hf_write_model(&mf, out, o, err);
    pt_model_files_close(&mf);
    return rc;
}
