/* see model.h */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/rng.h"
#include "engine/model.h"

typedef struct loader {
    pt_model *m;
    const char *prefix;  /* GPT-2: "transformer." or "" */
    float *next;         /* next free float in m->w.small */
    float *end;
    pt_err *err;
} loader;

static const pt_tensor *find(loader *L, pt_err *err, const char *fmt, int layer, char *name, size_t cap) {
    snprintf(name, cap, fmt, L->prefix, layer);
    return pt_tensors_find(&L->m->files.tensors, name);
}

static int shape_error(loader *L, const char *name, const pt_tensor *t, int ndim, const int64_t *want) {
    char got[128] = "", exp[128] = "";
    size_t o = 0;
    for (int i = 0; i < t->ndim && o < sizeof got - 24; i++)
        o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    o = 0;
    for (int i = 0; i < ndim && o < sizeof exp - 24; i++)
        o += (size_t)snprintf(exp + o, sizeof exp - o, "%s%lld", i ? ", " : "", (long long)want[i]);
    return pt_errf(L->err, PT_EFORMAT, "%s: tensor '%s' has shape [%s], expected [%s]", L->m->files.path, name, got,
                   exp);
}

static int dtype_ok(pt_dtype t) {
    return t == PT_F32 || t == PT_F16 || t == PT_BF16 || t == PT_Q8_0 || t == PT_Q4_0 || t == PT_Q4_K || t == PT_Q5_K ||
           t == PT_Q6_K;
}

/* A matrix tensor stored as [rows, cols] in the file. */
static int get_matrix(loader *L, const char *fmt, int layer, int64_t rows, int64_t cols, const pt_tensor **out) {
    char name[256];
    const pt_tensor *t = find(L, L->err, fmt, layer, name, sizeof name);
    if (!t) return pt_errf(L->err, PT_EFORMAT, "%s: missing tensor '%s'", L->m->files.path, name);
    int64_t want[2] = {rows, cols};
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) return shape_error(L, name, t, 2, want);
    if (!dtype_ok(t->dtype))
        return pt_errf(L->err, PT_EUNSUPPORTED,
                       "%s: tensor '%s' has dtype %s (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K supported)",
                       L->m->files.path, name, pt_dtype_name(t->dtype));
    if (cols % (int64_t)pt_dtype_block(t->dtype))
        return pt_errf(L->err, PT_EFORMAT, "%s: %s tensor '%s' has rows of %lld values (not whole blocks)",
                       L->m->files.path, pt_dtype_name(t->dtype), name, (long long)cols);
    size_t need = 0;
    if (pt_dtype_bytes(t->dtype, (size_t)rows * (size_t)cols, &need) || need != t->nbytes)
        return pt_errf(L->err, PT_EFORMAT, "%s: tensor '%s' holds %zu bytes, its shape needs %zu", L->m->files.path,
                       name, t->nbytes, need);
    L->m->n_params += (size_t)rows * (size_t)cols;
    *out = t;
    return PT_OK;
}

static void set_weight(pt_weight *w, const pt_tensor *t, int n, int k, size_t ld, pt_wlayout layout,
                       size_t elem_off) {
    w->dtype = t->dtype;
    w->n = n;
    w->k = k;
    w->ld = ld;
    w->layout = layout;
    w->name = t->name;
    w->data = pt_dtype_at(t->dtype, t->data, elem_off);
}

/* An HF Linear weight [n, k]. */
static int linear(loader *L, pt_weight *w, const char *fmt, int layer, int n, int k) {
    const pt_tensor *t;
    int rc = get_matrix(L, fmt, layer, n, k, &t);
    if (rc) return rc;
    set_weight(w, t, n, k, (size_t)k, PT_W_NK, 0);
    return PT_OK;
}

/* A vector [n] converted to F32 into the small-vector allocation. */
static int vec(loader *L, const float **out, const char *fmt, int layer, int64_t n) {
    char name[256];
    const pt_tensor *t = find(L, L->err, fmt, layer, name, sizeof name);
    if (!t) return pt_errf(L->err, PT_EFORMAT, "%s: missing tensor '%s'", L->m->files.path, name);
    if (t->ndim != 1 || t->shape[0] != n) return shape_error(L, name, t, 1, &n);
    if (!dtype_ok(t->dtype) || n % (int64_t)pt_dtype_block(t->dtype))
        return pt_errf(L->err, PT_EUNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16, BF16 supported)",
                       L->m->files.path, name, pt_dtype_name(t->dtype));
    size_t need = 0;
    if (pt_dtype_bytes(t->dtype, (size_t)n, &need) || need != t->nbytes)
        return pt_errf(L->err, PT_EFORMAT, "%s: tensor '%s' holds %zu bytes, its shape needs %zu", L->m->files.path,
                       name, t->nbytes, need);
    if (L->end - L->next < n) return pt_errf(L->err, PT_EINTERNAL, "small-vector space exhausted");
    pt_to_f32(t->dtype, t->data, L->next, (size_t)n);
    *out = L->next;
    L->next += n;
    L->m->n_params += (size_t)n;
    return PT_OK;
}

/* A vector that is a slice [off, off+n) of an F32 vector already loaded. */
#define TRY(x)                 \
    do {                       \
        int rc_ = (x);         \
        if (rc_) return rc_;   \
    } while (0)

/* Gemma's RMSNorm multiplies by (1 + w): the F32 copy of w just loaded becomes 1 + w, the
 * weight the engine multiplies by (in F32, as transformers computes 1.0 + w.float()). */
static int vec_gemma(loader *L, const float **out, const char *fmt, int layer, int64_t n) {
    int rc = vec(L, out, fmt, layer, n);
    if (rc) return rc;
    float *w = (float *)*out;
    for (int64_t i = 0; i < n; i++) w[i] += 1.f;
    return PT_OK;
}

/* Rows [row0, row0 + n) of an HF Linear weight t [rows, k]: one projection of a fused matrix. */
static void row_slice(pt_weight *w, const pt_tensor *t, int row0, int n, int k) {
    set_weight(w, t, n, k, (size_t)k, PT_W_NK, (size_t)row0 * (size_t)k);
}

/* Gemma 2/3: four norms a layer, all (1 + w); Gemma 3's q/k norms too. */
static int load_gemma_layer(loader *L, pt_layer_weights *l, int i) {
    const pt_config *c = &L->m->c;
    int d = c->d_model;
    TRY(vec_gemma(L, &l->ln1_w, "%smodel.layers.%d.input_layernorm.weight", i, d));
    TRY(vec_gemma(L, &l->ln1_post_w, "%smodel.layers.%d.post_attention_layernorm.weight", i, d));
    TRY(vec_gemma(L, &l->ln2_w, "%smodel.layers.%d.pre_feedforward_layernorm.weight", i, d));
    TRY(vec_gemma(L, &l->ln2_post_w, "%smodel.layers.%d.post_feedforward_layernorm.weight", i, d));
    if (c->qk_norm) {
        TRY(vec_gemma(L, &l->q_norm, "%smodel.layers.%d.self_attn.q_norm.weight", i, c->head_dim));
        TRY(vec_gemma(L, &l->k_norm, "%smodel.layers.%d.self_attn.k_norm.weight", i, c->head_dim));
    }
    return PT_OK;
}

/* Phi-3: qkv_proj rows are q (H*hd), k (KV*hd), v (KV*hd); gate_up_proj rows gate (F) then
 * up (F), as transformers' Phi3MLP chunks them. */
static int load_phi3_layer(loader *L, pt_layer_weights *l, int i) {
    const pt_config *c = &L->m->c;
    int d = c->d_model, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, F = c->d_ff;
    const pt_tensor *t;
    TRY(get_matrix(L, "%smodel.layers.%d.self_attn.qkv_proj.weight", i, (int64_t)qd + 2LL * kvd, d, &t));
    row_slice(&l->proj[PT_PROJ_Q], t, 0, qd, d);
    row_slice(&l->proj[PT_PROJ_K], t, qd, kvd, d);
    row_slice(&l->proj[PT_PROJ_V], t, qd + kvd, kvd, d);
    TRY(get_matrix(L, "%smodel.layers.%d.mlp.gate_up_proj.weight", i, 2LL * F, d, &t));
    row_slice(&l->proj[PT_PROJ_GATE], t, 0, F, d);
    row_slice(&l->proj[PT_PROJ_UP], t, F, F, d);
    return PT_OK;
}

static int load_llama(loader *L) {
    pt_model *m = L->m;
    const pt_config *c = &m->c;
    int d = c->d_model, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, F = c->d_ff;
    L->prefix = "";
    TRY(linear(L, &m->w.tok_emb, "%smodel.embed_tokens.weight", 0, c->vocab_size, d));
    for (int i = 0; i < c->n_layers; i++) {
        pt_layer_weights *l = &m->w.layers[i];
        if (pt_config_gemma(c)) {
            TRY(load_gemma_layer(L, l, i));
        } else {
            TRY(vec(L, &l->ln1_w, "%smodel.layers.%d.input_layernorm.weight", i, d));
            TRY(vec(L, &l->ln2_w, "%smodel.layers.%d.post_attention_layernorm.weight", i, d));
        }
        if (pt_config_fused(c)) {
            TRY(load_phi3_layer(L, l, i));
        } else {
            TRY(linear(L, &l->proj[PT_PROJ_Q], "%smodel.layers.%d.self_attn.q_proj.weight", i, qd, d));
            TRY(linear(L, &l->proj[PT_PROJ_K], "%smodel.layers.%d.self_attn.k_proj.weight", i, kvd, d));
            TRY(linear(L, &l->proj[PT_PROJ_V], "%smodel.layers.%d.self_attn.v_proj.weight", i, kvd, d));
            TRY(linear(L, &l->proj[PT_PROJ_GATE], "%smodel.layers.%d.mlp.gate_proj.weight", i, F, d));
            TRY(linear(L, &l->proj[PT_PROJ_UP], "%smodel.layers.%d.mlp.up_proj.weight", i, F, d));
        }
        TRY(linear(L, &l->proj[PT_PROJ_O], "%smodel.layers.%d.self_attn.o_proj.weight", i, d, qd));
        TRY(linear(L, &l->proj[PT_PROJ_DOWN], "%smodel.layers.%d.mlp.down_proj.weight", i, d, F));
        if (c->attn_bias) {
            TRY(vec(L, &l->bias[PT_PROJ_Q], "%smodel.layers.%d.self_attn.q_proj.bias", i, qd));
            TRY(vec(L, &l->bias[PT_PROJ_K], "%smodel.layers.%d.self_attn.k_proj.bias", i, kvd));
            TRY(vec(L, &l->bias[PT_PROJ_V], "%smodel.layers.%d.self_attn.v_proj.bias", i, kvd));
        }
        if (c->o_bias) TRY(vec(L, &l->bias[PT_PROJ_O], "%smodel.layers.%d.self_attn.o_proj.bias", i, d));
        if (c->qk_norm && !pt_config_gemma(c)) {
            TRY(vec(L, &l->q_norm, "%smodel.layers.%d.self_attn.q_norm.weight", i, c->head_dim));
            TRY(vec(L, &l->k_norm, "%smodel.layers.%d.self_attn.k_norm.weight", i, c->head_dim));
        }
        if (c->mlp_bias) {
            TRY(vec(L, &l->bias[PT_PROJ_GATE], "%smodel.layers.%d.mlp.gate_proj.bias", i, F));
            TRY(vec(L, &l->bias[PT_PROJ_UP], "%smodel.layers.%d.mlp.up_proj.bias", i, F));
            TRY(vec(L, &l->bias[PT_PROJ_DOWN], "%smodel.layers.%d.mlp.down_proj.bias", i, d));
        }
    }
    TRY((pt_config_gemma(c) ? vec_gemma : vec)(L, &m->w.lnf_w, "%smodel.norm.weight", 0, d));
    if (pt_tensors_find(&m->files.tensors, "lm_head.weight") || !c->tie_embeddings)
        TRY(linear(L, &m->w.lm_head, "%slm_head.weight", 0, c->vocab_size, d));
    else
        m->w.lm_head = m->w.tok_emb;
    return PT_OK;
}

/* A Conv1D weight stored [k, ld] whose output columns [off, off+n) form this projection. */
static void conv1d_slice(pt_weight *w, const pt_tensor *t, int n, int k, int ld, int off) {
    set_weight(w, t, n, k, (size_t)ld, PT_W_KN, (size_t)off);
}

/* Conv1D weights are read in column slices of multiples of 32 (decode and prefill tasks, the
 * Q/K/V thirds of c_attn): block types of 32 values only, with n outputs a multiple of 32. */
static int conv1d_dtype(loader *L, const pt_tensor *t, int n) {
    size_t b = pt_dtype_block(t->dtype);
    if (b > PT_Q8_0_BLOCK || n % (int)b)
        return pt_errf(L->err, PT_EUNSUPPORTED, "%s: Conv1D weight '%s' in %s: %s", L->m->files.path, t->name,
                       pt_dtype_name(t->dtype),
                       b > PT_Q8_0_BLOCK ? "256-value K-quant blocks are not supported in this layout"
                                         : "needs output columns a multiple of 32");
    return PT_OK;
}

static int load_gpt2(loader *L) {
    pt_model *m = L->m;
    const pt_config *c = &m->c;
    int d = c->d_model, F = c->d_ff;
    L->prefix = pt_tensors_find(&m->files.tensors, "transformer.wte.weight") ? "transformer." : "";
    TRY(linear(L, &m->w.tok_emb, "%swte.weight", 0, c->vocab_size, d));
    TRY(linear(L, &m->w.pos_emb, "%swpe.weight", 0, c->max_pos, d));
    for (int i = 0; i < c->n_layers; i++) {
        pt_layer_weights *l = &m->w.layers[i];
        const pt_tensor *t;
        TRY(vec(L, &l->ln1_w, "%sh.%d.ln_1.weight", i, d));
        TRY(vec(L, &l->ln1_b, "%sh.%d.ln_1.bias", i, d));
        TRY(vec(L, &l->ln2_w, "%sh.%d.ln_2.weight", i, d));
        TRY(vec(L, &l->ln2_b, "%sh.%d.ln_2.bias", i, d));
        TRY(get_matrix(L, "%sh.%d.attn.c_attn.weight", i, d, 3LL * d, &t));
        TRY(conv1d_dtype(L, t, d));
        conv1d_slice(&l->proj[PT_PROJ_Q], t, d, d, 3 * d, 0);
        conv1d_slice(&l->proj[PT_PROJ_K], t, d, d, 3 * d, d);
        conv1d_slice(&l->proj[PT_PROJ_V], t, d, d, 3 * d, 2 * d);
        const float *qkv_b;
        TRY(vec(L, &qkv_b, "%sh.%d.attn.c_attn.bias", i, 3LL * d));
        l->bias[PT_PROJ_Q] = qkv_b, l->bias[PT_PROJ_K] = qkv_b + d, l->bias[PT_PROJ_V] = qkv_b + 2 * d;
        TRY(get_matrix(L, "%sh.%d.attn.c_proj.weight", i, d, d, &t));
        TRY(conv1d_dtype(L, t, d));
        conv1d_slice(&l->proj[PT_PROJ_O], t, d, d, d, 0);
        TRY(vec(L, &l->bias[PT_PROJ_O], "%sh.%d.attn.c_proj.bias", i, d));
        TRY(get_matrix(L, "%sh.%d.mlp.c_fc.weight", i, d, F, &t));
        TRY(conv1d_dtype(L, t, F));
        conv1d_slice(&l->proj[PT_PROJ_UP], t, F, d, F, 0);
        TRY(vec(L, &l->bias[PT_PROJ_UP], "%sh.%d.mlp.c_fc.bias", i, F));
        TRY(get_matrix(L, "%sh.%d.mlp.c_proj.weight", i, F, d, &t));
        TRY(conv1d_dtype(L, t, d));
        conv1d_slice(&l->proj[PT_PROJ_DOWN], t, d, F, d, 0);
        TRY(vec(L, &l->bias[PT_PROJ_DOWN], "%sh.%d.mlp.c_proj.bias", i, d));
    }
    TRY(vec(L, &m->w.lnf_w, "%sln_f.weight", 0, d));
    TRY(vec(L, &m->w.lnf_b, "%sln_f.bias", 0, d));
    m->w.lm_head = m->w.tok_emb;
    return PT_OK;
}

int pt_model_from_files(pt_model_files *mf, pt_model **out, pt_err *err) {
    *out = NULL;
    pt_model *m = calloc(1, sizeof *m);
    if (!m) {
        pt_model_files_close(mf);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    m->files = *mf;
    memset(mf, 0, sizeof *mf);
    m->c = m->files.config;
    const pt_config *c = &m->c;
    int rc = pt_config_validate(c, m->files.path, err);
    if (rc) goto fail;
    size_t d = (size_t)c->d_model, per_layer = 8 * d + (size_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim +
                                                 2 * (size_t)c->d_ff + d + 2 * (size_t)c->head_dim;
    size_t n_small = per_layer * (size_t)c->n_layers + 2 * d + (size_t)c->head_dim;
    m->w.layers = calloc((size_t)c->n_layers, sizeof *m->w.layers);
    m->w.small = malloc(n_small * sizeof(float));
    if (!m->w.layers || !m->w.small) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto fail;
    }
    loader L = {m, "", m->w.small, m->w.small + n_small, err};
    rc = c->arch == PT_ARCH_LLAMA ? load_llama(&L) : load_gpt2(&L);
    if (rc) goto fail;
    if (c->arch == PT_ARCH_LLAMA) {
        m->w.rope_inv = L.next;
        m->w.rope_mscale = pt_rope_inv_freq(c, 0, m->w.rope_inv, c->head_dim);
    }
    /* Bytes one decode step streams: every layer matrix plus the LM head. */
    for (int i = 0; i < c->n_layers; i++)
        for (int p = 0; p < PT_PROJ_COUNT; p++)
            if (m->w.layers[i].proj[p].n) m->weight_bytes += pt_weight_bytes(&m->w.layers[i].proj[p]);
    m->weight_bytes += pt_weight_bytes(&m->w.lm_head);
    *out = m;
    return PT_OK;
fail:
    pt_model_free(m);
    return rc;
}

int pt_model_load(const char *path, pt_model **out, pt_err *err) {
    pt_model_files mf;
    *out = NULL;
    int rc = pt_model_files_open(&mf, path, err);
    if (rc) return rc;
    return pt_model_from_files(&mf, out, err);
}

void pt_model_free(pt_model *m) {
    if (!m) return;
    pt_model_files_close(&m->files);
    free(m->w.layers);
    free(m->w.small);
    free(m);
}

/* ---- conversion and random models ------------------------------------------------------ */

static int convert_weight(pt_model *m, pt_weight *w, pt_dtype to, pt_err *err) {
    if (!w->n || w->dtype == to) return PT_OK;
    /* Stored rows: NK has n rows of k, KN has k rows of n (of which this view is a slice). */
    size_t rows = w->layout == PT_W_NK ? (size_t)w->n : (size_t)w->k;
    size_t cols = w->layout == PT_W_NK ? (size_t)w->k : (size_t)w->n;
    /* rows that are not whole blocks, and Conv1D (KN) weights in blocks over 32 values (read
     * in slices of 32 columns), keep their dtype */
    if (cols % pt_dtype_block(to) || (w->layout == PT_W_KN && pt_dtype_block(to) > PT_Q8_0_BLOCK)) return PT_OK;
    size_t row_bytes, nbytes;
    if (pt_dtype_bytes(to, cols, &row_bytes) || pt_mul_size(row_bytes, rows, &nbytes))
        return pt_errf(err, PT_ENOMEM, "%s: too large", w->name);
    uint8_t *dst = malloc(nbytes ? nbytes : 1);
    float *tmp = malloc(cols * sizeof(float));
    if (!dst || !tmp) {
        free(dst), free(tmp);
        return pt_errf(err, PT_ENOMEM, "out of memory converting %s", w->name);
    }
    size_t src_row;
    pt_dtype_bytes(w->dtype, w->ld, &src_row);
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *src = (const uint8_t *)w->data + r * src_row;
        pt_to_f32(w->dtype, src, tmp, cols);
        pt_from_f32(to, tmp, dst + r * row_bytes, cols);
    }
    free(tmp);
    char name[300];
    snprintf(name, sizeof name, "%s#%s@%p", w->name, pt_dtype_name(to), (const void *)w);
    int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
    int rc = pt_tensors_add_owned(&m->files.tensors, name, to, 2, shape, dst, nbytes, err);
    if (rc) return rc;
    const pt_tensor *t = &m->files.tensors.t[m->files.tensors.n - 1];
    w->dtype = to;
    w->data = t->data;
    w->ld = cols;
    w->name = t->name;
    return PT_OK;
}

int pt_model_convert(pt_model *m, pt_dtype to, pt_err *err) {
    if (!dtype_ok(to))
        return pt_errf(err, PT_EUNSUPPORTED, "cannot convert weights to %s", pt_dtype_name(to));
    int rc, tied = m->w.lm_head.data == m->w.tok_emb.data;
    if ((rc = convert_weight(m, &m->w.tok_emb, to, err))) return rc;
    if (tied) m->w.lm_head = m->w.tok_emb;
    else if ((rc = convert_weight(m, &m->w.lm_head, to, err))) return rc;
    for (int i = 0; i < m->c.n_layers; i++) {
        pt_layer_weights *l = &m->w.layers[i];
        if (m->c.arch == PT_ARCH_GPT2 && l->proj[PT_PROJ_Q].dtype != to) {
            /* Q, K, V are slices of one fused matrix: convert it once, re-slice. */
            pt_weight full = l->proj[PT_PROJ_Q];
            full.n = 3 * m->c.d_model;
            if ((rc = convert_weight(m, &full, to, err))) return rc;
            if (full.dtype == to)
                for (int p = 0; p < 3; p++) {
                    size_t off = (size_t)p * (size_t)m->c.d_model;
                    l->proj[p] = full;
                    l->proj[p].n = m->c.d_model;
                    l->proj[p].data = pt_dtype_at(to, full.data, off);
                }
        }
        for (int p = 0; p < PT_PROJ_COUNT; p++)
            if ((rc = convert_weight(m, &l->proj[p], to, err))) return rc;
    }
    m->weight_bytes = pt_weight_bytes(&m->w.lm_head);
    for (int i = 0; i < m->c.n_layers; i++)
        for (int p = 0; p < PT_PROJ_COUNT; p++)
            if (m->w.layers[i].proj[p].n) m->weight_bytes += pt_weight_bytes(&m->w.layers[i].proj[p]);
    return PT_OK;
}

static uint64_t rng_next(uint64_t *s) { return pt_splitmix64_mix(*s += PT_SPLITMIX64_GAMMA); } /* splitmix64 */

/* Adds a tensor of `numel` values: uniform with std `sd` (or all `one` when sd == 0). */
static int add_random(pt_tensors *ts, const char *name, pt_dtype dt, int ndim, int64_t a, int64_t b, float sd,
                      float one, uint64_t *seed, pt_err *err) {
    int64_t shape[2] = {a, b};
    size_t n = (size_t)a * (size_t)(ndim == 2 ? b : 1), nbytes;
    if (pt_dtype_bytes(dt, n, &nbytes)) return pt_errf(err, PT_EINVAL, "%s: bad size", name);
    float *f = malloc((n ? n : 1) * sizeof(float));
    void *d = dt == PT_F32 ? (void *)f : malloc(nbytes ? nbytes : 1);
    if (!f || !d) {
        free(f);
        if (d != f) free(d);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    const float k = sd * 3.4641016f; /* uniform on [-√3 sd, √3 sd] has std sd */
    for (size_t i = 0; i < n; i++)
        f[i] = sd ? ((float)(rng_next(seed) >> 40) / (float)(1 << 24) - 0.5f) * k : one;
    if (dt != PT_F32) {
        pt_from_f32(dt, f, d, n);
        free(f);
    }
    return pt_tensors_add_owned(ts, name, dt, ndim, shape, d, nbytes, err);
}

int pt_model_write_random(const char *dir, const pt_config *c, pt_dtype dt, uint64_t seed, pt_err *err) {
    int rc = pt_config_validate(c, dir, err);
    if (rc) return rc;
    if (dt != PT_F32 && dt != PT_F16 && dt != PT_BF16)
        return pt_errf(err, PT_EUNSUPPORTED, "random models are written in F32, F16 or BF16");
    if (pt_config_gemma(c) || pt_config_fused(c))
        return pt_errf(err, PT_EUNSUPPORTED, "random %s models are not written (only llama-like and gpt2)",
                       pt_family_name(c->family));
    if ((rc = pt_mkdirs(dir, 0, err))) return rc;
    pt_tensors ts;
    pt_tensors_init(&ts);
    char n[256];
    int64_t d = c->d_model, F = c->d_ff, V = c->vocab_size, qd = (int64_t)c->n_heads * c->head_dim,
            kvd = (int64_t)c->n_kv_heads * c->head_dim;
    const float sd = 0.02f;
#define R2(name, a, b) \
    if (!rc) rc = add_random(&ts, name, dt, 2, a, b, sd, 0, &seed, err)
#define R1(name, a, one) \
    if (!rc) rc = add_random(&ts, name, dt, 1, a, 0, one ? 0.f : sd, 1.f, &seed, err)
    if (c->arch == PT_ARCH_LLAMA) {
        R2("model.embed_tokens.weight", V, d);
        for (int i = 0; i < c->n_layers && !rc; i++) {
            static const char *const nm[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                             "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
            int64_t out[] = {qd, kvd, kvd, d, F, F, d}, in[] = {d, d, d, qd, d, d, F};
            snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", i);
            R1(n, d, 1);
            snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", i);
            R1(n, d, 1);
            for (int p = 0; p < 7; p++) {
                snprintf(n, sizeof n, "model.layers.%d.%s.weight", i, nm[p]);
                R2(n, out[p], in[p]);
                if ((p < 3 && c->attn_bias) || (p == 3 && c->o_bias) || (p >= 4 && c->mlp_bias)) {
                    snprintf(n, sizeof n, "model.layers.%d.%s.bias", i, nm[p]);
                    R1(n, out[p], 0);
                }
            }
            for (int qk = 0; qk < 2 * c->qk_norm; qk++) {
                snprintf(n, sizeof n, "model.layers.%d.self_attn.%c_norm.weight", i, "qk"[qk]);
                R1(n, c->head_dim, 1);
            }
        }
        R1("model.norm.weight", d, 1);
        if (!c->tie_embeddings) R2("lm_head.weight", V, d);
    } else {
        R2("wte.weight", V, d);
        R2("wpe.weight", c->max_pos, d);
        for (int i = 0; i < c->n_layers && !rc; i++) {
#define L2(fmt, a, b) snprintf(n, sizeof n, "h.%d." fmt, i); R2(n, a, b)
#define L1(fmt, a, one) snprintf(n, sizeof n, "h.%d." fmt, i); R1(n, a, one)
            L1("ln_1.weight", d, 1);
            L1("ln_1.bias", d, 0);
            L2("attn.c_attn.weight", d, 3 * d);
            L1("attn.c_attn.bias", 3 * d, 0);
            L2("attn.c_proj.weight", d, d);
            L1("attn.c_proj.bias", d, 0);
            L1("ln_2.weight", d, 1);
            L1("ln_2.bias", d, 0);
            L2("mlp.c_fc.weight", d, F);
            L1("mlp.c_fc.bias", F, 0);
            L2("mlp.c_proj.weight", F, d);
            L1("mlp.c_proj.bias", d, 0);
#undef L1
#undef L2
        }
        R1("ln_f.weight", d, 1);
        R1("ln_f.bias", d, 0);
    }
#undef R1
#undef R2
    char *p = NULL;
    if (!rc) {
        p = pt_path_join(dir, "model.safetensors");
        rc = p ? pt_safetensors_write(p, ts.t, ts.n, NULL, err) : pt_errf(err, PT_ENOMEM, "out of memory");
        free(p);
    }
    if (!rc) {
        json_t *j = pt_config_to_json(c);
        char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
        p = pt_path_join(dir, "config.json");
        rc = s && p ? pt_write_atomic(p, s, strlen(s), 0644, err) : pt_errf(err, PT_ENOMEM, "out of memory");
        free(s), free(p);
        json_decref(j);
    }
    pt_tensors_free(&ts);
    return rc;
}
