/* see train.h */
/* The build's -O2 (GCC's very-cheap vectoriser cost model) leaves the element-wise loops
 * here (norms, activations, dropout masks, AdamW) scalar; this file asks for -O3's
 * vectoriser (and no errno from sqrtf, which nothing here reads, so that it vectorises). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-math-errno")
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pool.h"
#include "engine/blas.h"
#include "engine/lora.h"
#include "engine/modelfile.h"
#include "engine/tensor.h"
#include "train/distill.h"
#include "train/train.h"


#define LOSS_MAX_THREADS 64
/* Threads the attention and loss loops use. */
/* Threads of the trainer's pool: n_threads, or OpenBLAS's default when that is <= 0. */
static int train_threads(const pt_train_opts *o) {
    int n = o->n_threads > 0 ? o->n_threads : openblas_get_num_threads();
    return n < 1 ? 1 : n > LOSS_MAX_THREADS ? LOSS_MAX_THREADS : n;
}
#define ATT_THREADS(o) train_threads(o)


/* ---- vectorisable element-wise helpers ------------------------------------------------ */

/* e^x in float (Cephes' polynomial after x = n·ln2 + r; within 2 ulp of expf), written
 * without calls or tables so that loops over it vectorise; 0 below -87.3, clamped at
 * 88.7 (the float range); NaN stays NaN. */
static inline float vexpf(float x) {
    const float lo = -87.3f, hi = 88.7f;
    float xc = x > lo ? x : lo; /* NaN -> lo: the conversion below stays defined */
    xc = xc < hi ? xc : hi;
    float n = (xc * 1.44269504088896341f + 12582912.f) - 12582912.f; /* round to nearest */
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float sc;
    memcpy(&sc, &bits, sizeof sc);
    return x < lo ? 0.f : x == x ? p * sc : x; /* NaN in, NaN out */
}

/* tanh through e^(2u): 1 - 2/(e^(2u) + 1) (absolute error ~1e-7). */
static inline float vtanhf(float u) { return 1.f - 2.f / (vexpf(2.f * u) + 1.f); }

#define LANES 16
/* Maximum of x[0..n) (n >= 1), in independent lanes so that it vectorises. */
static float vmax(const float *x, int n) {
    float m[LANES];
    for (int l = 0; l < LANES; l++) m[l] = x[0];
    int k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int l = 0; l < LANES; l++) m[l] = x[k + l] > m[l] ? x[k + l] : m[l];
    for (; k < n; k++) m[0] = x[k] > m[0] ? x[k] : m[0];
    float r = m[0];
    for (int l = 1; l < LANES; l++) r = m[l] > r ? m[l] : r;
    return r;
}

/* Σ e^(x[k] - mx) over [0, n), storing the terms in out (may be x) when out != NULL; the
 * sum in double lanes. */
static double vexp_sum(const float *x, float *out, int n, float mx) {
    double acc[LANES] = {0};
    int k = 0;
    for (; k + LANES <= n; k += LANES) {
        float e[LANES];
        for (int l = 0; l < LANES; l++) e[l] = vexpf(x[k + l] - mx);
        if (out)
            for (int l = 0; l < LANES; l++) out[k + l] = e[l];
        for (int l = 0; l < LANES; l++) acc[l] += e[l];
    }
    for (; k < n; k++) {
        float e = vexpf(x[k] - mx);
        if (out) out[k] = e;
        acc[0] += e;
    }
    double s = 0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

/* Σ a·b, Σ a (b == NULL) in double lanes. */
static double vdot(const float *a, const float *b, int n) {
    double acc[LANES] = {0};
    int k = 0;
    if (b) {
        for (; k + LANES <= n; k += LANES)
            for (int l = 0; l < LANES; l++) acc[l] += (double)a[k + l] * b[k + l];
        for (; k < n; k++) acc[0] += (double)a[k] * b[k];
    } else {
        for (; k + LANES <= n; k += LANES)
            for (int l = 0; l < LANES; l++) acc[l] += a[k + l];
        for (; k < n; k++) acc[0] += a[k];
    }
    double s = 0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

/* ---- the trainer's thread pool ---------------------------------------------------------- */

/* Every parallel part of a step (the matrix products split in blocks, attention tasks, the
 * loss, norms, activations) runs on one pool (common/pool.h, as the engine's) of n_threads - 1
 * workers plus the caller, with OpenBLAS single-threaded inside: one set of threads, so none
 * spins waiting while another works (OpenBLAS's own workers spin-yield between calls, which
 * on a busy machine took cores from the attention and loss threads). Parts are fixed ranges:
 * results do not depend on timing. */
typedef struct rows_job {
    void (*fn)(void *, int, int, int);
    void *arg;
    int n, parts, align;
} rows_job;

/* Range of part i of `parts` over [0, n), boundaries multiples of align. */
static void part_range(int n, int parts, int align, int i, int *r0, int *r1) {
    int64_t chunk = ((int64_t)n + parts - 1) / parts;
    chunk = (chunk + align - 1) / align * align;
    int64_t a = chunk * i, b = a + chunk;
    *r0 = (int)(a < n ? a : n), *r1 = (int)(b < n ? b : n);
}

/* Part `task` of a rows_job, on whichever thread of the pool takes it. */
static void rows_task(void *ctx, int task, int tid) {
    (void)tid;
    const rows_job *j = ctx;
    int r0, r1;
    part_range(j->n, j->parts, j->align, task, &r0, &r1);
    if (r1 > r0) j->fn(j->arg, task, r0, r1);
}

/* Runs fn(arg, part, r0, r1) over [0, n) in `parts` (<= the pool's threads) ranges whose
 * boundaries are multiples of align, each part one task of the pool (a part's scratch is
 * indexed by part, never by thread). */
static void run_parts(pt_pool *p, void (*fn)(void *, int, int, int), void *arg, int n, int parts, int align) {
    if (parts > p->n) parts = p->n;
    if (align < 1) align = 1;
    if (parts > 1 && (n + align - 1) / align < parts) parts = (n + align - 1) / align;
    if (parts <= 1) {
        if (n > 0) fn(arg, 0, 0, n);
        return;
    }
    rows_job j = {fn, arg, n, parts, align};
    pt_pool_run(p, rows_task, &j, parts);
}

/* ---- matrix products on the pool -------------------------------------------------------- */

typedef struct gemm_job {
    int ta, tb, M, N, K, lda, ldb, ldc, split_m;
    float alpha, beta;
    const float *A, *B, *bias;
    float *C;
} gemm_job;

static void gemm_part(void *arg, int part, int i0, int i1) {
    (void)part;
    const gemm_job *g = arg;
    int r0 = 0, r1 = g->M, c0 = 0, c1 = g->N;
    if (g->split_m) {
        r0 = i0, r1 = i1;
        const float *A = g->ta ? g->A + i0 : g->A + (size_t)i0 * g->lda;
        pt_sgemm(g->ta, g->tb, i1 - i0, g->N, g->K, g->alpha, A, g->lda, g->B, g->ldb, g->beta,
                 g->C + (size_t)i0 * g->ldc, g->ldc);
    } else {
        c0 = i0, c1 = i1;
        const float *B = g->tb ? g->B + (size_t)i0 * g->ldb : g->B + i0;
        pt_sgemm(g->ta, g->tb, g->M, i1 - i0, g->K, g->alpha, g->A, g->lda, B, g->ldb, g->beta, g->C + i0, g->ldc);
    }
    if (g->bias)
        for (int r = r0; r < r1; r++) {
            float *o = g->C + (size_t)r * g->ldc;
            for (int j = c0; j < c1; j++) o[j] += g->bias[j];
        }
}


/* ---- the trainer ----------------------------------------------------------------------- */

typedef struct acts {
    /* per layer l (arrays of n_layers pointers into the activation block); N = B*T rows */
    float **res;      /* [n_layers+1] (N, d) residual stream entering layer l (res[L] leaves the last) */
    float **ln1;      /* (N, d)   normalised input of attention */
    float **ln1_mean, **ln1_rstd; /* (N) each (mean only for LayerNorm) */
    float **qkv;      /* (N, qd + 2 kvd)   q | k | v, RoPE applied to q and k */
    float **att;      /* (B, H, T, T)      softmax probabilities, 0 above the diagonal */
    float **z;        /* (N, qd)           attention output before o_proj */
    float **mid;      /* (N, d)            residual after attention */
    float **ln2;      /* (N, d) */
    float **ln2_mean, **ln2_rstd; /* (N) */
    float **hpre;     /* (N, F)   gate (Llama) / c_fc output (GPT-2) */
    float **hup;      /* (N, F)   up projection (Llama only) */
    float **hact;     /* (N, F)   MLP activation fed to down projection */
    float *lnf;       /* (N, d)   final norm output */
    float *lnf_mean, *lnf_rstd; /* (N) */
    float *logits;    /* (N, V)   logits, then their gradient */
    /* backward scratch */
    float *dres;      /* (N, d) */
    float *dln;       /* (N, d) */
    float *dqkv;      /* (N, qd + 2 kvd) */
    float *dz;        /* (N, qd) */
    float *dh, *dh2;  /* (N, F) */
    float *dp;        /* (threads, T, T) attention-backward scratch, one per thread */
    float *rope;      /* (T, hd/2, 2) cos, sin */
} acts;

struct pt_trainer {
    pt_config c;
    pt_train_opts o;
    pt_train_tensor *tensors;
    size_t n_tensors;
    size_t n_params;
    float *params;        /* owned: the parameter block */
    float *grads;         /* owned: same layout */
    float *m, *v;         /* owned: Adam moments, same layout */
    float *act_block;     /* owned: every activation */
    size_t act_floats;
    float **act_ptrs;     /* owned: the per-layer pointer arrays */
    pt_train_params p, g; /* views into params / grads */
    acts a;
    int64_t adam_t;
    int last_B, last_T;
    /* LoRA (pt_trainer_attach_lora): the adapter is borrowed and trained in place. */
    pt_lora *lora;
    float lora_drop;        /* dropout probability on the adapter's input */
    pt_rng lora_rng;        /* draws the dropout masks */
    float *lg, *lm, *lv;    /* owned: (lora->n_params) gradients, Adam m, v, the adapter's layout */
    float *lu;              /* owned: [n_layers * PT_PROJ_COUNT] slots of (B*T, r): x·Aᵀ saved */
    uint64_t *lmask;        /* owned: per slot, the seed its dropout mask was drawn from */
    float *lx, *ldu, *ldx;  /* owned scratch: (B*T, max_in), (B*T, r), (B*T, max_in) */
    int lora_train;         /* the running forward is a training one (dropout on) */
    pt_pool *pool;          /* owned: n_threads - 1 workers and the caller */
    float *nscratch;        /* owned: (threads, 2, d) per-part norm weight/bias gradient sums */
};

/* C (M, N) [ldc] = alpha·op(A) op(B) + beta·C (+ bias broadcast over rows), row-major, as
 * cblas_sgemm; split over the pool by blocks of rows (or of columns when C is wide and
 * short), each block one single-threaded sgemm. Small products run on the caller. */
static void gemm(pt_trainer *t, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc, const float *bias) {
    gemm_job g = {ta, tb, M, N, K, lda, ldb, ldc, M >= N, alpha, beta, A, B, bias, C};
    int parts = t->pool->n;
    if ((double)M * N * K < 262144.0) parts = 1;
    run_parts(t->pool, gemm_part, &g, g.split_m ? M : N, parts, 16);
}

/* Runs fn over rows [0, n) in `parts` contiguous ranges on the trainer's pool. */
static void parallel_rows(pt_trainer *t, void (*fn)(void *, int, int, int), void *arg, int n, int parts) {
    run_parts(t->pool, fn, arg, n, parts, 1);
}

/* Builds the tensor table; with base != NULL also points p (and g with gbase) into it. */
typedef struct tb {
    pt_trainer *t;
    size_t off;
    float *pb, *gb;
    int count_only;
    pt_err *err;
} tb;

static float *add(tb *b, float **gout, const char *name, int ndim, int64_t a0, int64_t a1, int decay) {
    pt_trainer *t = b->t;
    size_t numel = (size_t)a0 * (size_t)(ndim == 2 ? a1 : 1);
    if (!b->count_only) {
        pt_train_tensor *e = &t->tensors[t->n_tensors];
        snprintf(e->name, sizeof e->name, "%s", name);
        e->ndim = ndim;
        e->shape[0] = a0, e->shape[1] = ndim == 2 ? a1 : 0;
        e->offset = b->off, e->numel = numel, e->decay = decay, e->frozen = 0;
    }
    t->n_tensors++;
    float *p = b->pb ? b->pb + b->off : NULL;
    if (gout) *gout = b->gb ? b->gb + b->off : NULL;
    b->off += numel;
    return p;
}

/* Lays out both blocks (params in pb, grads in gb) in HF tensor order. */
static void layout(tb *b, pt_train_params *p, pt_train_params *g) {
    pt_trainer *t = b->t;
    const pt_config *c = &t->c;
    int64_t d = c->d_model, F = c->d_ff, V = c->vocab_size, qd = (int64_t)c->n_heads * c->head_dim,
            kvd = (int64_t)c->n_kv_heads * c->head_dim;
    char n[96];
    t->n_tensors = 0;
    b->off = 0;
#define A2(field, name, a0, a1, dec) p->field = add(b, &g->field, name, 2, a0, a1, dec)
#define A1(field, name, a0) p->field = add(b, &g->field, name, 1, a0, 0, 0)
    if (c->arch == PT_ARCH_LLAMA) {
        A2(tok_emb, "model.embed_tokens.weight", V, d, 0);
        p->pos_emb = g->pos_emb = NULL;
        for (int i = 0; i < c->n_layers; i++) {
            pt_train_layer *l = &p->layers[i], *gl = &g->layers[i];
            memset(l, 0, sizeof *l), memset(gl, 0, sizeof *gl);
#define L2(f, nm, a0, a1) snprintf(n, sizeof n, "model.layers.%d." nm, i), l->f = add(b, &gl->f, n, 2, a0, a1, 1)
#define L1(f, nm, a0) snprintf(n, sizeof n, "model.layers.%d." nm, i), l->f = add(b, &gl->f, n, 1, a0, 0, 0)
            L1(ln1_w, "input_layernorm.weight", d);
            L2(wq, "self_attn.q_proj.weight", qd, d);
            L2(wk, "self_attn.k_proj.weight", kvd, d);
            L2(wv, "self_attn.v_proj.weight", kvd, d);
            L2(wo, "self_attn.o_proj.weight", d, qd);
            if (c->attn_bias) {
                L1(bq, "self_attn.q_proj.bias", qd);
                L1(bk, "self_attn.k_proj.bias", kvd);
                L1(bv, "self_attn.v_proj.bias", kvd);
                L1(bo, "self_attn.o_proj.bias", d);
            }
            L1(ln2_w, "post_attention_layernorm.weight", d);
            L2(wg, "mlp.gate_proj.weight", F, d);
            L2(wu, "mlp.up_proj.weight", F, d);
            L2(wd, "mlp.down_proj.weight", d, F);
            if (c->mlp_bias) {
                L1(bg, "mlp.gate_proj.bias", F);
                L1(bu, "mlp.up_proj.bias", F);
                L1(bd, "mlp.down_proj.bias", d);
            }
#undef L1
#undef L2
        }
        A1(lnf_w, "model.norm.weight", d);
        p->lnf_b = g->lnf_b = NULL;
        if (c->tie_embeddings) p->lm_head = p->tok_emb, g->lm_head = g->tok_emb;
        else A2(lm_head, "lm_head.weight", V, d, 1);
    } else {
        A2(tok_emb, "wte.weight", V, d, 0);
        A2(pos_emb, "wpe.weight", c->max_pos, d, 0);
        for (int i = 0; i < c->n_layers; i++) {
            pt_train_layer *l = &p->layers[i], *gl = &g->layers[i];
            memset(l, 0, sizeof *l), memset(gl, 0, sizeof *gl);
#define L2(f, nm, a0, a1) snprintf(n, sizeof n, "h.%d." nm, i), l->f = add(b, &gl->f, n, 2, a0, a1, 1)
#define L1(f, nm, a0) snprintf(n, sizeof n, "h.%d." nm, i), l->f = add(b, &gl->f, n, 1, a0, 0, 0)
            L1(ln1_w, "ln_1.weight", d);
            L1(ln1_b, "ln_1.bias", d);
            L2(wqkv, "attn.c_attn.weight", d, 3 * d);
            L1(bqkv, "attn.c_attn.bias", 3 * d);
            L2(wo, "attn.c_proj.weight", d, d);
            L1(bo, "attn.c_proj.bias", d);
            L1(ln2_w, "ln_2.weight", d);
            L1(ln2_b, "ln_2.bias", d);
            L2(wu, "mlp.c_fc.weight", d, F);
            L1(bu, "mlp.c_fc.bias", F);
            L2(wd, "mlp.c_proj.weight", F, d);
            L1(bd, "mlp.c_proj.bias", d);
#undef L1
#undef L2
        }
        A1(lnf_w, "ln_f.weight", d);
        A1(lnf_b, "ln_f.bias", d);
        p->lm_head = p->tok_emb, g->lm_head = g->tok_emb;
    }
#undef A1
#undef A2
}

static void init_params(pt_trainer *t) {
    pt_rng r;
    pt_rng_seed(&r, t->o.seed);
    float resid_scale = 1.f / sqrtf(2.f * (float)t->c.n_layers);
    for (size_t i = 0; i < t->n_tensors; i++) {
        const pt_train_tensor *e = &t->tensors[i];
        float *p = t->params + e->offset;
        const char *nm = e->name;
        size_t len = strlen(nm);
        int is_w = len > 7 && !strcmp(nm + len - 7, ".weight");
        if (e->ndim == 1) {
            float v = is_w ? 1.f : 0.f; /* norm weights 1, biases 0 */
            for (size_t j = 0; j < e->numel; j++) p[j] = v;
            continue;
        }
        float sd = 0.02f;
        if (strstr(nm, "o_proj") || strstr(nm, "down_proj") || strstr(nm, "attn.c_proj") || strstr(nm, "mlp.c_proj"))
            sd *= resid_scale;
        for (size_t j = 0; j < e->numel; j++) p[j] = (float)(pt_rng_normal(&r) * sd);
    }
}

int pt_trainer_new(const pt_config *c, const pt_train_opts *opt, pt_trainer **out, pt_err *err) {
    *out = NULL;
    int rc = pt_config_validate(c, "model", err);
    if (rc) return rc;
    if (opt->max_batch < 1 || opt->max_batch > 65536)
        return pt_errf(err, PT_EINVAL, "batch size %d is out of range (1..65536)", opt->max_batch);
    if (opt->max_seq < 1 || opt->max_seq > c->max_pos)
        return pt_errf(err, PT_EINVAL, "sequence length %d is beyond the model's context of %d positions",
                       opt->max_seq, c->max_pos);
    if (c->arch == PT_ARCH_LLAMA && c->head_dim % 2)
        return pt_errf(err, PT_EINVAL, "head_dim %d must be even for RoPE", c->head_dim);
    if (c->arch == PT_ARCH_LLAMA && (c->qk_norm || c->rope.type != PT_ROPE_DEFAULT || c->attn_bias != c->o_bias ||
                                   c->sliding_window || pt_config_gemma(c) || pt_config_fused(c)))
        return pt_errf(err, PT_EUNSUPPORTED, "training %s models%s is not supported yet", pt_family_name(c->family),
                       c->rope.type != PT_ROPE_DEFAULT ? " with rope_scaling" : "");
    pt_trainer *t = calloc(1, sizeof *t);
    if (!t) return pt_errf(err, PT_ENOMEM, "out of memory");
    t->c = *c;
    t->o = *opt;
    t->p.layers = calloc((size_t)c->n_layers, sizeof *t->p.layers);
    t->g.layers = calloc((size_t)c->n_layers, sizeof *t->g.layers);
    if (!t->p.layers || !t->g.layers) goto oom;
    tb b = {t, 0, NULL, NULL, 1, err};
    layout(&b, &t->p, &t->g);
    size_t nt = t->n_tensors;
    t->n_params = b.off;
    t->tensors = calloc(nt, sizeof *t->tensors);
    size_t pbytes;
    if (!t->tensors || pt_mul_size(t->n_params, sizeof(float), &pbytes)) goto oom;
    t->params = malloc(pbytes);
    t->grads = calloc(t->n_params, sizeof(float));
    t->m = calloc(t->n_params, sizeof(float));
    t->v = calloc(t->n_params, sizeof(float));
    if (!t->params || !t->grads || !t->m || !t->v) goto oom;
    b = (tb){t, 0, t->params, t->grads, 0, err};
    layout(&b, &t->p, &t->g);

    /* Activations: one block. */
    size_t L = (size_t)c->n_layers, B = (size_t)opt->max_batch, T = (size_t)opt->max_seq, N = B * T,
           d = (size_t)c->d_model, H = (size_t)c->n_heads, qd = H * c->head_dim,
           kvd = (size_t)c->n_kv_heads * c->head_dim, qkvd = qd + 2 * kvd, F = (size_t)c->d_ff,
           V = (size_t)c->vocab_size, hd2 = (size_t)c->head_dim / 2;
    int llama = c->arch == PT_ARCH_LLAMA;
    size_t per_layer = N * d * 4 /* ln1 mid ln2 + res */ + N * 4 /* stats */ + N * qkvd + B * H * T * T + N * qd +
                       N * F * (llama ? 3 : 2);
    size_t total = per_layer * L + N * d /* res[L] */ + N * d + 2 * N + N * V + N * d * 2 + N * qkvd + N * qd +
                   2 * N * F + (size_t)ATT_THREADS(opt) * T * T + T * hd2 * 2;
    t->act_floats = total;
    size_t abytes;
    if (pt_mul_size(total, sizeof(float), &abytes)) goto oom;
    t->act_block = malloc(abytes);
    t->act_ptrs = calloc(15 * (L + 1), sizeof(float *));
    if (!t->act_block || !t->act_ptrs) goto oom;
    acts *a = &t->a;
    float **pp = t->act_ptrs;
    a->res = pp, pp += L + 1;
    a->ln1 = pp, pp += L;
    a->ln1_mean = pp, pp += L;
    a->ln1_rstd = pp, pp += L;
    a->qkv = pp, pp += L;
    a->att = pp, pp += L;
    a->z = pp, pp += L;
    a->mid = pp, pp += L;
    a->ln2 = pp, pp += L;
    a->ln2_mean = pp, pp += L;
    a->ln2_rstd = pp, pp += L;
    a->hpre = pp, pp += L;
    a->hup = pp, pp += L;
    a->hact = pp, pp += L;
    float *q = t->act_block;
#define TAKE(n) (q += (n), q - (n))
    for (size_t l = 0; l < L; l++) {
        a->res[l] = TAKE(N * d);
        a->ln1[l] = TAKE(N * d);
        a->ln1_mean[l] = TAKE(N);
        a->ln1_rstd[l] = TAKE(N);
        a->qkv[l] = TAKE(N * qkvd);
        a->att[l] = TAKE(B * H * T * T);
        a->z[l] = TAKE(N * qd);
        a->mid[l] = TAKE(N * d);
        a->ln2[l] = TAKE(N * d);
        a->ln2_mean[l] = TAKE(N);
        a->ln2_rstd[l] = TAKE(N);
        a->hpre[l] = TAKE(N * F);
        a->hup[l] = llama ? TAKE(N * F) : NULL;
        a->hact[l] = TAKE(N * F);
    }
    a->res[L] = TAKE(N * d);
    a->lnf = TAKE(N * d);
    a->lnf_mean = TAKE(N);
    a->lnf_rstd = TAKE(N);
    a->logits = TAKE(N * V);
    a->dres = TAKE(N * d);
    a->dln = TAKE(N * d);
    a->dqkv = TAKE(N * qkvd);
    a->dz = TAKE(N * qd);
    a->dh = TAKE(N * F);
    a->dh2 = TAKE(N * F);
    a->dp = TAKE((size_t)ATT_THREADS(opt) * T * T);
    a->rope = TAKE(T * hd2 * 2);
#undef TAKE
    if ((size_t)(q - t->act_block) > total) {
        pt_trainer_free(t);
        return pt_errf(err, PT_EINTERNAL, "activation layout overran its block");
    }
    for (size_t i = 0; i < hd2 && llama; i++) {
        /* as HF and the engine: inv_freq = 1 / theta^(2i/hd) in float32 */
        float inv_freq = (float)(1.0 / pow((double)c->rope_theta, (double)(2 * i) / c->head_dim));
        for (size_t p = 0; p < T; p++) {
            float ang = (float)p * inv_freq;
            a->rope[(p * hd2 + i) * 2] = cosf(ang);
            a->rope[(p * hd2 + i) * 2 + 1] = sinf(ang);
        }
    }
    if (opt->n_threads > 0) openblas_set_num_threads(opt->n_threads);
    t->nscratch = malloc((size_t)ATT_THREADS(opt) * 2 * d * sizeof(float));
    if (!t->nscratch) goto oom;
    if (!(t->pool = pt_pool_new(ATT_THREADS(opt)))) goto oom;
    init_params(t);
    *out = t;
    return PT_OK;
oom:
    pt_trainer_free(t);
    return pt_errf(err, PT_ENOMEM, "out of memory for a model of this shape and a %d x %d batch", opt->max_batch,
                   opt->max_seq);
}

void pt_trainer_free(pt_trainer *t) {
    if (!t) return;
    pt_pool_free(t->pool);
    free(t->nscratch);
    free(t->tensors), free(t->params), free(t->grads), free(t->m), free(t->v);
    free(t->act_block), free(t->act_ptrs), free(t->p.layers), free(t->g.layers);
    free(t->lg), free(t->lm), free(t->lv), free(t->lu), free(t->lmask), free(t->lx), free(t->ldu), free(t->ldx);
    free(t);
}

const pt_config *pt_trainer_config(const pt_trainer *t) { return &t->c; }
const pt_train_params *pt_trainer_params(const pt_trainer *t) { return &t->p; }
const pt_train_params *pt_trainer_grads(const pt_trainer *t) { return &t->g; }
const pt_train_tensor *pt_trainer_tensors(const pt_trainer *t, size_t *n) {
    *n = t->n_tensors;
    return t->tensors;
}
size_t pt_trainer_n_params(const pt_trainer *t) { return t->n_params; }
float *pt_trainer_param_block(pt_trainer *t) { return t->params; }
float *pt_trainer_grad_block(pt_trainer *t) { return t->grads; }
float *pt_trainer_adam_m(pt_trainer *t) { return t->m; }
float *pt_trainer_adam_v(pt_trainer *t) { return t->v; }
int64_t pt_trainer_adam_step_count(const pt_trainer *t) { return t->adam_t; }
void pt_trainer_set_adam_step_count(pt_trainer *t, int64_t n) { t->adam_t = n; }
const float *pt_trainer_logits(const pt_trainer *t) { return t->a.logits; }

size_t pt_trainer_bytes(const pt_trainer *t, size_t *params, size_t *grads, size_t *adam, size_t *acts_) {
    size_t p = t->n_params * sizeof(float);
    if (params) *params = p;
    if (grads) *grads = p;
    if (adam) *adam = 2 * p;
    if (acts_) *acts_ = t->act_floats * sizeof(float);
    return 4 * p + t->act_floats * sizeof(float);
}

size_t pt_trainer_freeze(pt_trainer *t, const char *substr, int frozen) {
    size_t n = 0;
    for (size_t i = 0; i < t->n_tensors; i++)
        if (!substr || strstr(t->tensors[i].name, substr)) t->tensors[i].frozen = frozen, n++;
    return n;
}

void pt_trainer_zero_grad(pt_trainer *t) {
    /* With an adapter every base tensor is frozen and its gradient is never written. */
    if (!t->lora) memset(t->grads, 0, t->n_params * sizeof(float));
    else memset(t->lg, 0, t->lora->n_params * sizeof(float));
}

/* ---- LoRA ------------------------------------------------------------------------------ */

int pt_trainer_attach_lora(pt_trainer *t, pt_lora *lora, float dropout, uint64_t seed, pt_err *err) {
    const pt_config *c = &t->c;
    if (t->lora) return pt_errf(err, PT_EINVAL, "the trainer already has an adapter");
    if (c->arch != PT_ARCH_LLAMA) return pt_errf(err, PT_EUNSUPPORTED, "LoRA needs a Llama-architecture model");
    if (lora->n_layers != c->n_layers) return pt_errf(err, PT_EINVAL, "the adapter does not fit the model");
    if (!(dropout >= 0 && dropout < 1)) return pt_errf(err, PT_EINVAL, "LoRA dropout must be in [0, 1)");
    size_t N = (size_t)t->o.max_batch * t->o.max_seq, r = (size_t)lora->rank, slots = (size_t)c->n_layers * PT_PROJ_COUNT;
    size_t max_in = (size_t)c->d_model;
    if ((size_t)c->d_ff > max_in) max_in = (size_t)c->d_ff;
    if ((size_t)c->n_heads * c->head_dim > max_in) max_in = (size_t)c->n_heads * c->head_dim;
    size_t np = lora->n_params ? lora->n_params : 1;
    t->lg = calloc(np, sizeof(float)), t->lm = calloc(np, sizeof(float)), t->lv = calloc(np, sizeof(float));
    t->lu = malloc(slots * N * r * sizeof(float));
    t->lmask = calloc(slots, sizeof *t->lmask);
    t->lx = malloc(N * max_in * sizeof(float));
    t->ldu = malloc(N * r * sizeof(float));
    t->ldx = malloc(N * max_in * sizeof(float));
    if (!t->lg || !t->lm || !t->lv || !t->lu || !t->lmask || !t->lx || !t->ldu || !t->ldx) {
        free(t->lg), free(t->lm), free(t->lv), free(t->lu), free(t->lmask), free(t->lx), free(t->ldu), free(t->ldx);
        t->lg = t->lm = t->lv = t->lu = t->lx = t->ldu = t->ldx = NULL;
        t->lmask = NULL;
        return pt_errf(err, PT_ENOMEM, "out of memory for the LoRA state");
    }
    pt_rng_seed(&t->lora_rng, seed);
    t->lora = lora;
    t->lora_drop = dropout;
    pt_trainer_freeze(t, NULL, 1);
    t->adam_t = 0;
    return PT_OK;
}

pt_lora *pt_trainer_lora(const pt_trainer *t) { return t->lora; }
float *pt_trainer_lora_grads(pt_trainer *t) { return t->lg; }

/* The adapter's input for slot k: x itself, or x with the slot's dropout mask applied
 * (kept values scaled by 1/(1-p)) drawn from the seed saved in lmask[k] — the
 * backward redraws the same mask instead of storing it. */
static const float *lora_input(pt_trainer *t, int k, const float *x, int ldx, int N, int in, int *ld);

/* Slot k's dropout mask is counter-based: element (i, j) keeps its value when 16 bits of
 * splitmix64(seed_k + (i·words + j/4)·γ) (lane j % 4) are >= p·65536 (p quantised to
 * 1/65536), so any row range can be drawn on its own, in parallel, and the backward redraws
 * the forward's mask exactly. fwd: out = src·mask/(1-p); bwd: out += src·mask/(1-p). */
typedef struct drop_job {
    uint64_t seed;
    const float *src;
    float *out;
    int lds, ldo, in, bwd;
    uint32_t thr;
    float keep;
} drop_job;

static void drop_rows(void *arg, int part, int r0, int r1) {
    (void)part;
    const drop_job *j = arg;
    const int in = j->in, words = (in + 3) / 4;
    const uint32_t thr = j->thr;
    const float keep = j->keep;
    enum { CW = 64 }; /* words per chunk: 256 elements */
    uint16_t u[4 * CW];
    for (int i = r0; i < r1; i++) {
        const float *sr = j->src + (size_t)i * j->lds;
        float *o = j->out + (size_t)i * j->ldo;
        const uint64_t base = j->seed + (uint64_t)i * (uint64_t)words * PT_SPLITMIX64_GAMMA;
        for (int w0 = 0; w0 < words; w0 += CW) {
            const int nw = words - w0 < CW ? words - w0 : CW;
            for (int w = 0; w < nw; w++) {
                const uint64_t z = pt_splitmix64_mix(base + (uint64_t)(w0 + w + 1) * PT_SPLITMIX64_GAMMA);
                for (int q = 0; q < 4; q++) u[4 * w + q] = (uint16_t)(z >> (16 * q));
            }
            const int e0 = 4 * w0, ne = in - e0 < 4 * nw ? in - e0 : 4 * nw;
            const float *sp = sr + e0;
            float *op = o + e0;
            float mk[4 * CW];
            for (int e = 0; e < ne; e++) mk[e] = (float)(u[e] >= thr) * keep;
            if (j->bwd)
                for (int e = 0; e < ne; e++) op[e] += sp[e] * mk[e];
            else
                for (int e = 0; e < ne; e++) op[e] = sp[e] * mk[e];
        }
    }
}

static void drop_walk(pt_trainer *t, int k, const float *src, int lds, float *out, int ldo, int N, int in,
                      int bwd) {
    drop_job j = {t->lmask[k], src, out, lds, ldo, in, bwd, (uint32_t)(t->lora_drop * 65536.0 + 0.5),
                  1.f / (1.f - t->lora_drop)};
    parallel_rows(t, drop_rows, &j, N, t->pool->n);
}

/* The adapter's input for slot k: x itself, or x with the slot's dropout mask applied
 * (kept values scaled by 1/(1-p)) drawn from the seed saved in lmask[k] — the
 * backward redraws the same mask instead of storing it. */
static const float *lora_input(pt_trainer *t, int k, const float *x, int ldx, int N, int in, int *ld) {
    *ld = ldx;
    if (!t->lora_train || t->lora_drop <= 0) return x;
    drop_walk(t, k, x, ldx, t->lx, in, N, in, 0);
    *ld = in;
    return t->lx;
}

/* out (N, out) [ldo] += s · (x Aᵀ) Bᵀ for the adapter on (layer l, projection p), saving
 * u = x Aᵀ (N, r) for the backward. */
static void lora_fwd(pt_trainer *t, int l, int p, float *out, int ldo, const float *x, int ldx, int N) {
    if (!t->lora) return;
    const pt_lora_mat *m = &t->lora->m[l * PT_PROJ_COUNT + p];
    if (!m->A) return;
    const int r = t->lora->rank, k = l * PT_PROJ_COUNT + p;
    const size_t Nmax = (size_t)t->o.max_batch * t->o.max_seq;
    float *u = t->lu + (size_t)k * Nmax * r;
    if (t->lora_train && t->lora_drop > 0) {
        t->lmask[k] = pt_rng_next(&t->lora_rng); /* this mask's own seed */
    }
    int ld;
    const float *xin = lora_input(t, k, x, ldx, N, m->in, &ld);
    gemm(t, 0, 1, N, r, m->in, 1.f, xin, ld, m->A, m->in, 0.f, u, r, NULL);
    gemm(t, 0, 1, N, m->out, r, pt_lora_scaling(t->lora), u, r, m->B, r, 1.f,
                out, ldo, NULL);
}

/* The backward of lora_fwd: gB += s·doutᵀ u, du = s·dout B, gA += duᵀ x', dx += du A
 * (through the dropout mask; skipped when dx is NULL). */
static void lora_bwd(pt_trainer *t, int l, int p, const float *dout, int ldd, const float *x, int ldx, float *dx,
                     int lddx, int N) {
    if (!t->lora) return;
    const pt_lora_mat *m = &t->lora->m[l * PT_PROJ_COUNT + p];
    if (!m->A) return;
    const int r = t->lora->rank, k = l * PT_PROJ_COUNT + p;
    const float s = pt_lora_scaling(t->lora);
    const size_t Nmax = (size_t)t->o.max_batch * t->o.max_seq;
    const float *u = t->lu + (size_t)k * Nmax * r;
    float *gA = t->lg + (m->A - t->lora->block), *gB = t->lg + (m->B - t->lora->block);
    gemm(t, 1, 0, m->out, r, N, s, dout, ldd, u, r, 1.f, gB, r, NULL);
    gemm(t, 0, 0, N, r, m->out, s, dout, ldd, m->B, r, 0.f, t->ldu, r, NULL);
    int ld;
    const float *xin = lora_input(t, k, x, ldx, N, m->in, &ld);
    gemm(t, 1, 0, r, m->in, N, 1.f, t->ldu, r, xin, ld, 1.f, gA, m->in, NULL);
    if (!dx) return; /* nothing below needs the input's gradient */
    if (!t->lora_train || t->lora_drop <= 0) {
        gemm(t, 0, 0, N, m->in, r, 1.f, t->ldu, r, m->A, m->in, 1.f, dx, lddx, NULL);
        return;
    }
    /* dx += (du A) ⊙ mask/(1-p), the mask redrawn */
    gemm(t, 0, 0, N, m->in, r, 1.f, t->ldu, r, m->A, m->in, 0.f, t->ldx,
                m->in, NULL);
    drop_walk(t, k, t->ldx, m->in, dx, lddx, N, m->in, 1);
}

/* The gradient of parameter p, or NULL when its tensor is frozen (or p is NULL). */
static float *gradof(pt_trainer *t, const float *p) {
    if (!p) return NULL;
    size_t off = (size_t)(p - t->params);
    for (size_t i = 0; i < t->n_tensors; i++)
        if (t->tensors[i].offset == off) return t->tensors[i].frozen ? NULL : t->grads + off;
    return NULL;
}

/* ---- kernels ---------------------------------------------------------------------------- */

/* out (N, n) [row stride ldo] = x (N, k) [ldx] @ Wᵀ + b, W Linear (n, k) when kn == 0;
 * out = x @ W + b, W Conv1D (k, n) when kn == 1. */
static void mm_fwd(pt_trainer *t, float *out, int ldo, const float *x, int ldx, const float *W, const float *bias, int N, int n,
                   int k, int kn) {
    if (kn) gemm(t, 0, 0, N, n, k, 1.f, x, ldx, W, n, 0.f, out, ldo, bias);
    else gemm(t, 0, 1, N, n, k, 1.f, x, ldx, W, k, 0.f, out, ldo, bias);
}

/* db[c0..c1) += column sums of dout (N rows): the columns split over the pool. */
typedef struct colsum_job {
    float *db;
    const float *dout;
    int ldd, N;
} colsum_job;

static void colsum_cols(void *arg, int part, int c0, int c1) {
    (void)part;
    const colsum_job *j = arg;
    float *restrict db = j->db;
    for (int r = 0; r < j->N; r++) {
        const float *restrict o = j->dout + (size_t)r * j->ldd;
        for (int c = c0; c < c1; c++) db[c] += o[c];
    }
}

/* The backward of mm_fwd: dx (N, k) [ldx] (= when beta 0, += when beta 1) dout @ W (Linear)
 * or dout @ Wᵀ (Conv1D); dW += doutᵀ x (Linear (n, k)) or xᵀ dout (Conv1D (k, n));
 * db += column sums of dout. dx, dW, db may be NULL (not needed / frozen). */
static void mm_bwd(pt_trainer *t, float *dx, int ldx, float beta, float *dW, float *db, const float *dout, int ldd, const float *x,
                   int ldxin, const float *W, int N, int n, int k, int kn) {
    if (dx) {
        if (kn) gemm(t, 0, 1, N, k, n, 1.f, dout, ldd, W, n, beta, dx, ldx, NULL);
        else gemm(t, 0, 0, N, k, n, 1.f, dout, ldd, W, k, beta, dx, ldx, NULL);
    }
    if (dW) {
        if (kn) gemm(t, 1, 0, k, n, N, 1.f, x, ldxin, dout, ldd, 1.f, dW, n, NULL);
        else gemm(t, 1, 0, n, k, N, 1.f, dout, ldd, x, ldxin, 1.f, dW, k, NULL);
    }
    if (db) {
        colsum_job j = {db, dout, ldd, N};
        parallel_rows(t, colsum_cols, &j, n, (size_t)N * n < 65536 ? 1 : t->pool->n);
    }
}

/* Norms over row ranges on the pool. rms: y = x·r·w, r = (mean(x²)+eps)^-½ (sum of squares
 * in double, as the engine). ln: y = (x-m)·r·w + b. The backward adds into dx and sums
 * the weight/bias gradients per part (t->nscratch) before adding them in part order. */
typedef struct norm_job {
    float *y, *mean, *rstd, *dx, *dw, *db, *scratch;
    const float *x, *w, *b, *dy;
    int d;
    float eps;
} norm_job;

static void rms_fwd_rows(void *arg, int part, int r0, int r1) {
    (void)part;
    const norm_job *j = arg;
    const int d = j->d;
    for (int r = r0; r < r1; r++) {
        const float *restrict xr = j->x + (size_t)r * d, *restrict w = j->w;
        float *restrict yr = j->y + (size_t)r * d;
        float inv = 1.f / sqrtf((float)(vdot(xr, xr, d) / d) + j->eps);
        j->rstd[r] = inv;
        for (int i = 0; i < d; i++) yr[i] = xr[i] * inv * w[i];
    }
}

static void ln_fwd_rows(void *arg, int part, int r0, int r1) {
    (void)part;
    const norm_job *j = arg;
    const int d = j->d;
    for (int r = r0; r < r1; r++) {
        const float *restrict xr = j->x + (size_t)r * d, *restrict w = j->w, *restrict b = j->b;
        float *restrict yr = j->y + (size_t)r * d;
        const float m = (float)(vdot(xr, NULL, d) / d);
        double acc[LANES] = {0};
        int i = 0;
        for (; i + LANES <= d; i += LANES)
            for (int l = 0; l < LANES; l++) acc[l] += (double)(xr[i + l] - m) * (xr[i + l] - m);
        for (; i < d; i++) acc[0] += (double)(xr[i] - m) * (xr[i] - m);
        double v = 0;
        for (int l = 0; l < LANES; l++) v += acc[l];
        float inv = 1.f / sqrtf((float)(v / d) + j->eps);
        j->mean[r] = m, j->rstd[r] = inv;
        for (i = 0; i < d; i++) yr[i] = (xr[i] - m) * inv * w[i] + b[i];
    }
}

static void rms_bwd_rows(void *arg, int part, int r0, int r1) {
    const norm_job *j = arg;
    const int d = j->d;
    float *dw = j->dw ? j->scratch + (size_t)part * 2 * d : NULL;
    for (int r = r0; r < r1; r++) {
        const float *restrict xr = j->x + (size_t)r * d, *restrict g = j->dy + (size_t)r * d, *restrict w = j->w;
        float *restrict o = j->dx + (size_t)r * d, rs = j->rstd[r];
        double acc[LANES] = {0};
        int i = 0;
        for (; i + LANES <= d; i += LANES)
            for (int l = 0; l < LANES; l++) acc[l] += (double)g[i + l] * w[i + l] * xr[i + l];
        for (; i < d; i++) acc[0] += (double)g[i] * w[i] * xr[i];
        double dot = 0;
        for (int l = 0; l < LANES; l++) dot += acc[l];
        float k = (float)(dot * rs * rs * rs / d);
        for (i = 0; i < d; i++) o[i] += rs * w[i] * g[i] - xr[i] * k;
        if (dw)
            for (i = 0; i < d; i++) dw[i] += g[i] * xr[i] * rs;
    }
}

static void ln_bwd_rows(void *arg, int part, int r0, int r1) {
    const norm_job *j = arg;
    const int d = j->d;
    float *dw = j->dw ? j->scratch + (size_t)part * 2 * d : NULL, *db = j->db ? j->scratch + (size_t)part * 2 * d + d : NULL;
    for (int r = r0; r < r1; r++) {
        const float *restrict xr = j->x + (size_t)r * d, *restrict g = j->dy + (size_t)r * d, *restrict w = j->w;
        float *restrict o = j->dx + (size_t)r * d, m = j->mean[r], rs = j->rstd[r];
        double a1[LANES] = {0}, a2[LANES] = {0};
        int i = 0;
        for (; i + LANES <= d; i += LANES)
            for (int l = 0; l < LANES; l++) {
                float xh = (xr[i + l] - m) * rs, dxh = g[i + l] * w[i + l];
                a1[l] += dxh, a2[l] += (double)dxh * xh;
            }
        for (; i < d; i++) {
            float xh = (xr[i] - m) * rs, dxh = g[i] * w[i];
            a1[0] += dxh, a2[0] += (double)dxh * xh;
        }
        double s1 = 0, s2 = 0;
        for (int l = 0; l < LANES; l++) s1 += a1[l], s2 += a2[l];
        float m1 = (float)(s1 / d), m2 = (float)(s2 / d);
        for (i = 0; i < d; i++) {
            float xh = (xr[i] - m) * rs;
            o[i] += rs * (g[i] * w[i] - m1 - xh * m2);
        }
        if (dw)
            for (i = 0; i < d; i++) dw[i] += g[i] * (xr[i] - m) * rs;
        if (db)
            for (i = 0; i < d; i++) db[i] += g[i];
    }
}

/* Rows per norm part: few enough parts that the scratch sums stay cheap. */
static int norm_parts(const pt_trainer *t, int N, int d) { return (size_t)N * d < 32768 ? 1 : t->pool->n; }

static void norm_bwd_run(pt_trainer *t, void (*fn)(void *, int, int, int), norm_job *j, int N) {
    const int d = j->d, parts = norm_parts(t, N, d);
    if (j->dw || j->db) memset(t->nscratch, 0, (size_t)parts * 2 * d * sizeof(float));
    parallel_rows(t, fn, j, N, parts);
    for (int p = 0; p < parts; p++) {
        const float *sw = t->nscratch + (size_t)p * 2 * d;
        if (j->dw)
            for (int i = 0; i < d; i++) j->dw[i] += sw[i];
        if (j->db)
            for (int i = 0; i < d; i++) j->db[i] += sw[d + i];
    }
}

static void rms_fwd(pt_trainer *t, float *y, float *rstd, const float *x, const float *w, int N, int d, float eps) {
    norm_job j = {.y = y, .rstd = rstd, .x = x, .w = w, .d = d, .eps = eps};
    parallel_rows(t, rms_fwd_rows, &j, N, norm_parts(t, N, d));
}

/* dx += ∂/∂x, dw += ∂/∂w of y = x·r·w with r = (mean(x²)+eps)^-½. */
static void rms_bwd(pt_trainer *t, float *dx, float *dw, const float *dy, const float *x, const float *w,
                    const float *rstd, int N, int d) {
    norm_job j = {.dx = dx, .dw = dw, .scratch = t->nscratch, .dy = dy, .x = x, .w = w, .rstd = (float *)rstd, .d = d};
    norm_bwd_run(t, rms_bwd_rows, &j, N);
}

static void ln_fwd(pt_trainer *t, float *y, float *mean, float *rstd, const float *x, const float *w, const float *b,
                   int N, int d, float eps) {
    norm_job j = {.y = y, .mean = mean, .rstd = rstd, .x = x, .w = w, .b = b, .d = d, .eps = eps};
    parallel_rows(t, ln_fwd_rows, &j, N, norm_parts(t, N, d));
}

static void ln_bwd(pt_trainer *t, float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                   const float *mean, const float *rstd, int N, int d) {
    norm_job j = {.dx = dx, .dw = dw, .db = db, .scratch = t->nscratch, .dy = dy, .x = x, .w = w,
                  .mean = (float *)mean, .rstd = (float *)rstd, .d = d};
    norm_bwd_run(t, ln_bwd_rows, &j, N);
}

/* Rotate-half RoPE on `heads` heads of hd starting at column col of rows with stride ld;
 * row r is at position r % T. dir = +1 forward, -1 the transpose (backward). */
static void rope_apply(float *x, int ld, int col, int N, int T, int heads, int hd, const float *cs, int dir) {
    int half = hd / 2;
    for (int r = 0; r < N; r++) {
        const float *c = cs + (size_t)(r % T) * half * 2;
        for (int h = 0; h < heads; h++) {
            float *v = x + (size_t)r * ld + col + (size_t)h * hd;
            for (int i = 0; i < half; i++) {
                float co = c[2 * i], si = dir * c[2 * i + 1], a = v[i], b = v[i + half];
                v[i] = a * co - b * si;
                v[i + half] = b * co + a * si;
            }
        }
    }
}

static inline float gelu_tanh(float x) {
    const float k = 0.7978845608028654f;
    return 0.5f * x * (1.f + vtanhf(k * (x + 0.044715f * x * x * x)));
}

static inline float gelu_tanh_grad(float x) {
    const float k = 0.7978845608028654f;
    float u = k * (x + 0.044715f * x * x * x), th = vtanhf(u);
    return 0.5f * (1.f + th) + 0.5f * x * (1.f - th * th) * k * (1.f + 3.f * 0.044715f * x * x);
}

/* ---- the loss, over row ranges on threads ---------------------------------------------- */

typedef struct loss_job {
    float *logits;
    const int32_t *targets;
    const float *soft;
    const pt_distill_loss *dl;
    int V;
    float scale;
    int backward;
    double sum[LOSS_MAX_THREADS];
    size_t cnt[LOSS_MAX_THREADS];
} loss_job;

/* Cross-entropy of rows [r0, r1): one e^x per logit (the sum in double); with backward the
 * row becomes its gradient (softmax − target)·scale. */
static void loss_rows(void *arg, int part, int r0, int r1) {
    loss_job *j = arg;
    const int V = j->V;
    double total = 0;
    size_t counted = 0;
    for (int r = r0; r < r1; r++) {
        float *row = j->logits + (size_t)r * V;
        int tg = j->targets[r];
        if (tg == PT_IGNORE_INDEX) {
            if (j->backward) memset(row, 0, (size_t)V * sizeof(float));
            continue;
        }
        if (j->dl) {
            total += pt_distill_row(row, V, tg, j->dl->teacher + (size_t)r * V, j->dl, j->scale, j->backward);
            counted++;
            continue;
        }
        const float *q = j->soft ? j->soft + (size_t)r * V : NULL;
        const float mx = vmax(row, V);
        double s, qdot = 0, qsum = 0;
        if (q)
            for (int k = 0; k < V; k++)
                if (q[k] > 0) qdot += (double)q[k] * row[k], qsum += q[k];
        float target_logit = q ? 0.f : row[tg];
        s = vexp_sum(row, j->backward ? row : NULL, V, mx);
        double lse = mx + log(s);
        total += q ? lse * qsum - qdot : lse - target_logit;
        counted++;
        if (j->backward) {
            float inv = (float)(j->scale / s);
            for (int k = 0; k < V; k++) row[k] *= inv;
            if (q)
                for (int k = 0; k < V; k++) row[k] -= q[k] * j->scale;
            else row[tg] -= j->scale;
        }
    }
    j->sum[part] = total, j->cnt[part] = counted;
}

/* ---- attention on threads ------------------------------------------------------------- */

typedef struct att_job {
    pt_trainer *t;
    int l, B, T;
    float scale;
} att_job;

/* Forward: tasks i = b·H + h. S = QKᵀ·scale, causal softmax → P (saved), Z = PV. */
static void attn_fwd_rows(void *arg, int part, int i0, int i1) {
    att_job *j = arg;
    const pt_config *c = &j->t->c;
    acts *a = &j->t->a;
    const int T = j->T, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, qd = H * hd, kvd = KV * hd,
              qkvd = qd + 2 * kvd;
    const float *qkv = a->qkv[j->l];
    for (int idx = i0; idx < i1; idx++) {
        int b = idx / H, h = idx % H, kvh = h / (H / KV);
        const float *Q = qkv + (size_t)b * T * qkvd + (size_t)h * hd;
        const float *K = qkv + (size_t)b * T * qkvd + qd + (size_t)kvh * hd;
        const float *Vv = K + kvd;
        float *P = a->att[j->l] + ((size_t)b * H + h) * T * T;
        pt_sgemm(0, 1, T, T, hd, j->scale, Q, qkvd, K, qkvd, 0.f, P, T);
        for (int i = 0; i < T; i++) {
            float *row = P + (size_t)i * T, mx = vmax(row, i + 1);
            float inv = (float)(1.0 / vexp_sum(row, row, i + 1, mx));
            for (int k = 0; k <= i; k++) row[k] *= inv;
            for (int k = i + 1; k < T; k++) row[k] = 0.f;
        }
        pt_sgemm(0, 0, T, hd, T, 1.f, P, T, Vv, qkvd, 0.f,
                 a->z[j->l] + (size_t)b * T * qd + (size_t)h * hd, qd);
    }
}

/* Backward: tasks i = b·KV + g, each runs the query heads of kv head g (so dK, dV of one kv
 * head are written by one thread). Uses this part's dP scratch. */
static void attn_bwd_rows(void *arg, int part, int i0, int i1) {
    att_job *j = arg;
    const pt_config *c = &j->t->c;
    acts *a = &j->t->a;
    const int T = j->T, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, qd = H * hd, kvd = KV * hd,
              qkvd = qd + 2 * kvd, rep = H / KV;
    const float scale = j->scale, *qkv = a->qkv[j->l];
    float *dqkv = a->dqkv, *dP = a->dp + (size_t)part * T * T;
    for (int idx = i0; idx < i1; idx++) {
        int b = idx / KV, g = idx % KV;
        size_t base = (size_t)b * T * qkvd;
        const float *K = qkv + base + qd + (size_t)g * hd, *Vv = K + kvd;
        float *dK = dqkv + base + qd + (size_t)g * hd, *dV = dK + kvd;
        for (int h = g * rep; h < (g + 1) * rep; h++) {
            const float *Q = qkv + base + (size_t)h * hd;
            float *dQ = dqkv + base + (size_t)h * hd;
            const float *P = a->att[j->l] + ((size_t)b * H + h) * T * T;
            const float *dZ = a->dz + (size_t)b * T * qd + (size_t)h * hd;
            /* dP = dZ Vᵀ ; dV += Pᵀ dZ */
            pt_sgemm(0, 1, T, T, hd, 1.f, dZ, qd, Vv, qkvd, 0.f, dP, T);
            pt_sgemm(1, 0, T, hd, T, 1.f, P, T, dZ, qd, 1.f, dV, qkvd);
            /* dS = P ∘ (dP − rowsum(P ∘ dP)) */
            for (int i = 0; i < T; i++) {
                const float *pr = P + (size_t)i * T;
                float *gr = dP + (size_t)i * T, s = (float)vdot(pr, gr, i + 1);
                for (int k = 0; k <= i; k++) gr[k] = pr[k] * (gr[k] - s);
                for (int k = i + 1; k < T; k++) gr[k] = 0.f;
            }
            /* dQ += scale dS K ; dK += scale dSᵀ Q */
            pt_sgemm(0, 0, T, hd, T, scale, dP, T, K, qkvd, 1.f, dQ, qkvd);
            pt_sgemm(1, 0, T, hd, T, scale, dP, T, Q, qkvd, 1.f, dK, qkvd);
        }
    }
}

/* Runs an attention pass over n tasks on the trainer's threads, OpenBLAS single-threaded
 * inside (products this small lose more to BLAS threading than they gain). */
static void run_attention(pt_trainer *t, void (*fn)(void *, int, int, int), void *arg, int n) {
    int nth = ATT_THREADS(&t->o);
    if (nth > n) nth = n;
    if (nth <= 1) {
        fn(arg, 0, 0, n);
        return;
    }
    parallel_rows(t, fn, arg, n, nth);
}

/* ---- MLP activations on threads --------------------------------------------------------- */

typedef struct act_job {
    acts *a;
    int l, F, op; /* op 0: forward, 1: backward */
    int llama;
} act_job;

static void act_rows(void *arg, int part, int r0, int r1) {
    (void)part;
    act_job *j = arg;
    acts *a = j->a;
    const size_t i0 = (size_t)r0 * j->F, n = (size_t)(r1 - r0) * j->F;
    const float *restrict hp = a->hpre[j->l] + i0;
    float *restrict hact = a->hact[j->l] + i0, *restrict dh = a->dh + i0, *restrict dh2 = a->dh2 + i0;
    if (j->llama) {
        const float *restrict hu = a->hup[j->l] + i0;
        if (!j->op)
            for (size_t i = 0; i < n; i++) hact[i] = hp[i] / (1.f + vexpf(-hp[i])) * hu[i];
        else
            for (size_t i = 0; i < n; i++) {
                float gt = hp[i], u = hu[i], sg = 1.f / (1.f + vexpf(-gt)), da = dh[i];
                dh2[i] = da * gt * sg;                         /* d up */
                dh[i] = da * u * sg * (1.f + gt * (1.f - sg)); /* d gate */
            }
    } else {
        if (!j->op)
            for (size_t i = 0; i < n; i++) hact[i] = gelu_tanh(hp[i]);
        else
            for (size_t i = 0; i < n; i++) dh[i] *= gelu_tanh_grad(hp[i]);
    }
}

static void run_act(pt_trainer *t, int l, int N, int op) {
    act_job j = {&t->a, l, t->c.d_ff, op, t->c.arch == PT_ARCH_LLAMA};
    int nth = ATT_THREADS(&t->o);
    if ((size_t)N * (size_t)t->c.d_ff < 65536 || nth > N) nth = 1;
    parallel_rows(t, act_rows, &j, N, nth);
}

/* ---- forward and backward -------------------------------------------------------------- */

static int forward_backward(pt_trainer *t, const int32_t *tokens, const int32_t *targets, int B, int T,
                            const float *soft, const pt_distill_loss *dl, float loss_scale, int backward,
                            double *loss_sum, size_t *n_counted, pt_err *err);

int pt_trainer_forward_backward(pt_trainer *t, const int32_t *tokens, const int32_t *targets, int B, int T,
                                const float *soft, float loss_scale, int backward, double *loss_sum,
                                size_t *n_counted, pt_err *err) {
    return forward_backward(t, tokens, targets, B, T, soft, NULL, loss_scale, backward, loss_sum, n_counted, err);
}

int pt_trainer_forward_backward_distill(pt_trainer *t, const int32_t *tokens, const int32_t *targets, int B, int T,
                                        const pt_distill_loss *dl, float loss_scale, int backward, double *loss_sum,
                                        size_t *n_counted, pt_err *err) {
    return forward_backward(t, tokens, targets, B, T, NULL, dl, loss_scale, backward, loss_sum, n_counted, err);
}

static int forward_backward_run(pt_trainer *t, const int32_t *tokens, const int32_t *targets, int B, int T,
                                const float *soft, const pt_distill_loss *dl, float loss_scale, int backward,
                                double *loss_sum, size_t *n_counted, pt_err *err);

/* OpenBLAS runs single-threaded inside a step: the products are split over the trainer's
 * own pool (gemm). */
static int forward_backward(pt_trainer *t, const int32_t *tokens, const int32_t *targets, int B, int T,
                            const float *soft, const pt_distill_loss *dl, float loss_scale, int backward,
                            double *loss_sum, size_t *n_counted, pt_err *err) {
    int saved = pt_blas_single_begin();
    int rc = forward_backward_run(t, tokens, targets, B, T, soft, dl, loss_scale, backward, loss_sum, n_counted, err);
    pt_blas_single_end(saved);
    return rc;
}

static int forward_backward_run(pt_trainer *t, const int32_t *tokens, const int32_t *targets, int B, int T,
                                const float *soft, const pt_distill_loss *dl, float loss_scale, int backward,
                                double *loss_sum, size_t *n_counted, pt_err *err) {
    const pt_config *c = &t->c;
    if (B < 1 || T < 1 || B > t->o.max_batch || T > t->o.max_seq)
        return pt_errf(err, PT_EINVAL, "a batch of %d x %d does not fit the trainer's %d x %d", B, T, t->o.max_batch,
                       t->o.max_seq);
    const int N = B * T, d = c->d_model, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, qd = H * hd,
              kvd = KV * hd, qkvd = qd + 2 * kvd, F = c->d_ff, V = c->vocab_size, L = c->n_layers;
    const int llama = c->arch == PT_ARCH_LLAMA;
    for (int i = 0; i < N; i++) {
        if (tokens[i] < 0 || tokens[i] >= V)
            return pt_errf(err, PT_EINVAL, "token %d (id %d) is out of range (vocabulary of %d)", i, tokens[i], V);
        if (targets[i] != PT_IGNORE_INDEX && (targets[i] < 0 || targets[i] >= V))
            return pt_errf(err, PT_EINVAL, "target %d (id %d) is out of range (vocabulary of %d)", i, targets[i], V);
    }
    acts *a = &t->a;
    const pt_train_params *p = &t->p;
    const float scale = 1.f / sqrtf((float)hd);
    t->last_B = B, t->last_T = T;
    t->lora_train = backward != 0;

    /* Embeddings. */
    for (int r = 0; r < N; r++) {
        float *x = a->res[0] + (size_t)r * d;
        memcpy(x, p->tok_emb + (size_t)tokens[r] * d, (size_t)d * sizeof(float));
        if (!llama) {
            const float *pe = p->pos_emb + (size_t)(r % T) * d;
            for (int i = 0; i < d; i++) x[i] += pe[i];
        }
    }
    for (int l = 0; l < L; l++) {
        const pt_train_layer *w = &p->layers[l];
        const float *x = a->res[l];
        float *qkv = a->qkv[l];
        if (llama) {
            rms_fwd(t, a->ln1[l], a->ln1_rstd[l], x, w->ln1_w, N, d, c->norm_eps);
            mm_fwd(t, qkv, qkvd, a->ln1[l], d, w->wq, w->bq, N, qd, d, 0);
            mm_fwd(t, qkv + qd, qkvd, a->ln1[l], d, w->wk, w->bk, N, kvd, d, 0);
            mm_fwd(t, qkv + qd + kvd, qkvd, a->ln1[l], d, w->wv, w->bv, N, kvd, d, 0);
            lora_fwd(t, l, PT_PROJ_Q, qkv, qkvd, a->ln1[l], d, N);
            lora_fwd(t, l, PT_PROJ_K, qkv + qd, qkvd, a->ln1[l], d, N);
            lora_fwd(t, l, PT_PROJ_V, qkv + qd + kvd, qkvd, a->ln1[l], d, N);
            rope_apply(qkv, qkvd, 0, N, T, H, hd, a->rope, 1);
            rope_apply(qkv, qkvd, qd, N, T, KV, hd, a->rope, 1);
        } else {
            ln_fwd(t, a->ln1[l], a->ln1_mean[l], a->ln1_rstd[l], x, w->ln1_w, w->ln1_b, N, d, c->norm_eps);
            mm_fwd(t, qkv, qkvd, a->ln1[l], d, w->wqkv, w->bqkv, N, 3 * d, d, 1);
        }
        /* Causal attention per (sequence, head), the (b, h) pairs spread over the threads. */
        att_job aj = {t, l, B, T, scale};
        run_attention(t, attn_fwd_rows, &aj, B * H);
        /* o_proj, residual */
        mm_fwd(t, a->mid[l], d, a->z[l], qd, w->wo, w->bo, N, d, qd, !llama);
        lora_fwd(t, l, PT_PROJ_O, a->mid[l], d, a->z[l], qd, N);
        for (size_t i = 0; i < (size_t)N * d; i++) a->mid[l][i] += x[i];
        /* MLP */
        float *xo = a->res[l + 1];
        if (llama) {
            rms_fwd(t, a->ln2[l], a->ln2_rstd[l], a->mid[l], w->ln2_w, N, d, c->norm_eps);
            mm_fwd(t, a->hpre[l], F, a->ln2[l], d, w->wg, w->bg, N, F, d, 0);
            mm_fwd(t, a->hup[l], F, a->ln2[l], d, w->wu, w->bu, N, F, d, 0);
            lora_fwd(t, l, PT_PROJ_GATE, a->hpre[l], F, a->ln2[l], d, N);
            lora_fwd(t, l, PT_PROJ_UP, a->hup[l], F, a->ln2[l], d, N);
            run_act(t, l, N, 0);
        } else {
            ln_fwd(t, a->ln2[l], a->ln2_mean[l], a->ln2_rstd[l], a->mid[l], w->ln2_w, w->ln2_b, N, d, c->norm_eps);
            mm_fwd(t, a->hpre[l], F, a->ln2[l], d, w->wu, w->bu, N, F, d, 1);
            run_act(t, l, N, 0);
        }
        mm_fwd(t, xo, d, a->hact[l], F, w->wd, w->bd, N, d, F, !llama);
        lora_fwd(t, l, PT_PROJ_DOWN, xo, d, a->hact[l], F, N);
        for (size_t i = 0; i < (size_t)N * d; i++) xo[i] += a->mid[l][i];
    }
    if (llama) rms_fwd(t, a->lnf, a->lnf_rstd, a->res[L], p->lnf_w, N, d, c->norm_eps);
    else ln_fwd(t, a->lnf, a->lnf_mean, a->lnf_rstd, a->res[L], p->lnf_w, p->lnf_b, N, d, c->norm_eps);
    mm_fwd(t, a->logits, V, a->lnf, d, p->lm_head, NULL, N, V, d, 0);

    /* Loss (and its gradient, in place of the logits), rows split over the threads. */
    loss_job lj = {a->logits, targets, soft, dl, V, loss_scale, backward, {0}, {0}};
    int nth = t->o.n_threads > 1 ? t->o.n_threads : 1;
    if (nth > LOSS_MAX_THREADS) nth = LOSS_MAX_THREADS;
    if ((size_t)N * V < 65536) nth = 1;
    parallel_rows(t, loss_rows, &lj, N, nth);
    double total = 0;
    size_t counted = 0;
    for (int i = 0; i < nth; i++) total += lj.sum[i], counted += lj.cnt[i];
    if (loss_sum) *loss_sum = total;
    if (n_counted) *n_counted = counted;
    if (!backward) return PT_OK;

    /* Backward. */
    float *gte = gradof(t, p->tok_emb), *gpe = llama ? NULL : gradof(t, p->pos_emb);
    const int emb_grads = gte || gpe;
    float *dres = a->dres, *dln = a->dln;
    /* logits = lnf @ lm_headᵀ */
    mm_bwd(t, dln, d, 0.f, gradof(t, p->lm_head), NULL, a->logits, V, a->lnf, d, p->lm_head, N, V, d, 0);
    memset(dres, 0, (size_t)N * d * sizeof(float));
    if (llama) rms_bwd(t, dres, gradof(t, p->lnf_w), dln, a->res[L], p->lnf_w, a->lnf_rstd, N, d);
    else ln_bwd(t, dres, gradof(t, p->lnf_w), gradof(t, p->lnf_b), dln, a->res[L], p->lnf_w, a->lnf_mean, a->lnf_rstd, N, d);
    for (int l = L - 1; l >= 0; l--) {
        const pt_train_layer *w = &p->layers[l];
        /* MLP: res[l+1] = mid + down(act(...)) ; dres is d res[l+1] */
        mm_bwd(t, a->dh, F, 0.f, gradof(t, w->wd), gradof(t, w->bd), dres, d, a->hact[l], F, w->wd, N, d, F, !llama);
        lora_bwd(t, l, PT_PROJ_DOWN, dres, d, a->hact[l], F, a->dh, F, N);
        if (llama) {
            run_act(t, l, N, 1);
            mm_bwd(t, dln, d, 0.f, gradof(t, w->wg), gradof(t, w->bg), a->dh, F, a->ln2[l], d, w->wg, N, F, d, 0);
            mm_bwd(t, dln, d, 1.f, gradof(t, w->wu), gradof(t, w->bu), a->dh2, F, a->ln2[l], d, w->wu, N, F, d, 0);
            lora_bwd(t, l, PT_PROJ_GATE, a->dh, F, a->ln2[l], d, dln, d, N);
            lora_bwd(t, l, PT_PROJ_UP, a->dh2, F, a->ln2[l], d, dln, d, N);
            rms_bwd(t, dres, gradof(t, w->ln2_w), dln, a->mid[l], w->ln2_w, a->ln2_rstd[l], N, d);
        } else {
            run_act(t, l, N, 1);
            mm_bwd(t, dln, d, 0.f, gradof(t, w->wu), gradof(t, w->bu), a->dh, F, a->ln2[l], d, w->wu, N, F, d, 1);
            ln_bwd(t, dres, gradof(t, w->ln2_w), gradof(t, w->ln2_b), dln, a->mid[l], w->ln2_w, a->ln2_mean[l],
                   a->ln2_rstd[l], N, d);
        }
        /* Attention: mid = res[l] + o_proj(z) ; dres is now d mid */
        att_job aj_b = {t, l, B, T, scale};
        mm_bwd(t, a->dz, qd, 0.f, gradof(t, w->wo), gradof(t, w->bo), dres, d, a->z[l], qd, w->wo, N, d, qd, !llama);
        lora_bwd(t, l, PT_PROJ_O, dres, d, a->z[l], qd, a->dz, qd, N);
        float *dqkv = a->dqkv;
        memset(dqkv, 0, (size_t)N * qkvd * sizeof(float));
        /* one task per (b, kv head): the query heads sharing a kv head accumulate dK, dV */
        run_attention(t, attn_bwd_rows, &aj_b, B * KV);
        /* The gradient of the norm's output is needed for the layers below (or the
         * embeddings) and for the norm's own weights; below a LoRA model's first layer,
         * neither is trained. */
        const int need_in = l > 0 || emb_grads;
        float *gn1w = gradof(t, w->ln1_w), *gn1b = gradof(t, w->ln1_b);
        float *dlnq = need_in || gn1w || gn1b ? dln : NULL;
        if (llama) {
            rope_apply(dqkv, qkvd, 0, N, T, H, hd, a->rope, -1);
            rope_apply(dqkv, qkvd, qd, N, T, KV, hd, a->rope, -1);
            mm_bwd(t, dlnq, d, 0.f, gradof(t, w->wq), gradof(t, w->bq), dqkv, qkvd, a->ln1[l], d, w->wq, N, qd, d, 0);
            mm_bwd(t, dlnq, d, 1.f, gradof(t, w->wk), gradof(t, w->bk), dqkv + qd, qkvd, a->ln1[l], d, w->wk, N, kvd, d, 0);
            mm_bwd(t, dlnq, d, 1.f, gradof(t, w->wv), gradof(t, w->bv), dqkv + qd + kvd, qkvd, a->ln1[l], d, w->wv, N, kvd,
                   d, 0);
            lora_bwd(t, l, PT_PROJ_Q, dqkv, qkvd, a->ln1[l], d, dlnq, d, N);
            lora_bwd(t, l, PT_PROJ_K, dqkv + qd, qkvd, a->ln1[l], d, dlnq, d, N);
            lora_bwd(t, l, PT_PROJ_V, dqkv + qd + kvd, qkvd, a->ln1[l], d, dlnq, d, N);
            if (dlnq) rms_bwd(t, dres, gn1w, dln, a->res[l], w->ln1_w, a->ln1_rstd[l], N, d);
        } else {
            mm_bwd(t, dlnq, d, 0.f, gradof(t, w->wqkv), gradof(t, w->bqkv), dqkv, qkvd, a->ln1[l], d, w->wqkv, N, 3 * d, d,
                   1);
            if (dlnq)
                ln_bwd(t, dres, gn1w, gn1b, dln, a->res[l], w->ln1_w, a->ln1_mean[l], a->ln1_rstd[l], N, d);
        }
    }
    for (int r = 0; r < N && emb_grads; r++) {
        const float *gr = dres + (size_t)r * d;
        if (gte) {
            float *o = gte + (size_t)tokens[r] * d;
            for (int i = 0; i < d; i++) o[i] += gr[i];
        }
        if (gpe) {
            float *o = gpe + (size_t)(r % T) * d;
            for (int i = 0; i < d; i++) o[i] += gr[i];
        }
    }
    return PT_OK;
}

/* ---- optimiser ------------------------------------------------------------------------- */

double pt_trainer_grad_norm(pt_trainer *t) {
    double s = 0;
    for (size_t i = 0; i < t->n_tensors; i++) {
        const pt_train_tensor *e = &t->tensors[i];
        if (e->frozen) continue;
        const float *gr = t->grads + e->offset;
        for (size_t j = 0; j < e->numel; j++) s += (double)gr[j] * gr[j];
    }
    for (size_t j = 0; t->lora && j < t->lora->n_params; j++) s += (double)t->lg[j] * t->lg[j];
    return sqrt(s);
}

void pt_trainer_scale_grads(pt_trainer *t, float s) {
    if (!t->lora)
        for (size_t i = 0; i < t->n_params; i++) t->grads[i] *= s;
    for (size_t i = 0; t->lora && i < t->lora->n_params; i++) t->lg[i] *= s;
}

typedef struct adam_job {
    float *p, *g, *m, *v;
    float b1, b2, eps, decay, step_size, bc2_sqrt;
} adam_job;

static void adam_range(void *arg, int part, int i0, int i1) {
    (void)part;
    const adam_job *j = arg;
    float *restrict p = j->p, *restrict g = j->g, *restrict m = j->m, *restrict v = j->v;
    const float b1 = j->b1, b2 = j->b2, eps = j->eps, decay = j->decay, step_size = j->step_size,
                bc2_sqrt = j->bc2_sqrt;
    for (int i = i0; i < i1; i++) {
        p[i] *= decay;
        m[i] = b1 * m[i] + (1.f - b1) * g[i];
        v[i] = b2 * v[i] + (1.f - b2) * g[i] * g[i];
        p[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

/* One tensor's update, in chunks of at most 2^30 elements, split over the pool. */
static void adam_tensor(pt_trainer *t, adam_job *j, size_t n) {
    for (size_t off = 0; off < n; off += (size_t)1 << 30) {
        size_t len = n - off < ((size_t)1 << 30) ? n - off : ((size_t)1 << 30);
        adam_job k = *j;
        k.p += off, k.g += off, k.m += off, k.v += off;
        run_parts(t->pool, adam_range, &k, (int)len, len < 16384 ? 1 : t->pool->n, 16);
    }
}

void pt_trainer_adamw_step(pt_trainer *t, float lr) {
    t->adam_t++;
    const float b1 = t->o.beta1, b2 = t->o.beta2, eps = t->o.eps, wd = t->o.weight_decay;
    /* torch.optim.AdamW (single-tensor path): step_size = lr / bc1, denom = sqrt(v)/sqrt(bc2) + eps */
    const double bc1 = 1.0 - pow(b1, (double)t->adam_t), bc2 = 1.0 - pow(b2, (double)t->adam_t);
    const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    for (size_t i = 0; i < t->n_tensors; i++) {
        const pt_train_tensor *e = &t->tensors[i];
        if (e->frozen) continue;
        adam_job j = {t->params + e->offset, t->grads + e->offset, t->m + e->offset, t->v + e->offset, b1, b2, eps,
                      e->decay ? 1.f - lr * wd : 1.f, step_size, bc2_sqrt};
        adam_tensor(t, &j, e->numel);
    }
    if (t->lora) { /* A and B are matrices: decayed like the base matrices */
        adam_job j = {t->lora->block, t->lg, t->lm, t->lv, b1, b2, eps, 1.f - lr * wd, step_size, bc2_sqrt};
        adam_tensor(t, &j, t->lora->n_params);
    }
}

float pt_lr_schedule(int64_t step, int64_t warmup, int64_t total, float lr, float min_lr) {
    if (step < warmup) return lr * (float)(step + 1) / (float)warmup;
    int64_t span = total - warmup;
    if (span <= 0) return lr;
    double prog = (double)(step - warmup) / (double)span;
    if (prog > 1) prog = 1;
    return (float)(min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(M_PI * prog)));
}

/* ---- save / load ----------------------------------------------------------------------- */

int pt_trainer_save_weights(const pt_trainer *t, const char *path, pt_err *err) {
    pt_tensor *ts = calloc(t->n_tensors, sizeof *ts);
    if (!ts) return pt_errf(err, PT_ENOMEM, "out of memory");
    for (size_t i = 0; i < t->n_tensors; i++) {
        const pt_train_tensor *e = &t->tensors[i];
        ts[i].name = (char *)e->name;
        ts[i].dtype = PT_F32;
        ts[i].ndim = e->ndim;
        ts[i].shape[0] = e->shape[0], ts[i].shape[1] = e->shape[1];
        ts[i].data = t->params + e->offset;
        ts[i].nbytes = e->numel * sizeof(float);
    }
    json_t *meta = json_pack("{ss}", "format", "pt");
    int rc = pt_safetensors_write(path, ts, t->n_tensors, meta, err);
    json_decref(meta);
    free(ts);
    return rc;
}

int pt_trainer_load_weights(pt_trainer *t, const char *path, pt_err *err) {
    pt_tensors ts;
    pt_tensors_init(&ts);
    size_t len = strlen(path);
    int rc = len > 12 && !strcmp(path + len - 12, ".safetensors") ? pt_safetensors_read(path, &ts, err)
                                                                   : pt_hf_read_weights(path, &ts, err);
    for (size_t i = 0; !rc && i < t->n_tensors; i++) {
        const pt_train_tensor *e = &t->tensors[i];
        const pt_tensor *x = pt_tensors_find(&ts, e->name);
        if (!x && t->c.arch == PT_ARCH_GPT2) {
            char n[128];
            snprintf(n, sizeof n, "transformer.%s", e->name);
            x = pt_tensors_find(&ts, n);
        }
        if (!x) {
            rc = pt_errf(err, PT_EFORMAT, "%s: missing tensor '%s'", path, e->name);
            break;
        }
        int shape_ok = x->ndim == e->ndim && x->shape[0] == e->shape[0] && (e->ndim == 1 || x->shape[1] == e->shape[1]);
        if (!shape_ok) {
            rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s' has the wrong shape (expected [%lld%s%lld])", path, e->name,
                         (long long)e->shape[0], e->ndim == 2 ? ", " : "", e->ndim == 2 ? (long long)e->shape[1] : 0LL);
            if (e->ndim == 1) snprintf(err->msg, sizeof err->msg, "%s: tensor '%s' has the wrong shape (expected [%lld])",
                                       path, e->name, (long long)e->shape[0]);
            break;
        }
        if (x->dtype != PT_F32 && x->dtype != PT_F16 && x->dtype != PT_BF16) {
            rc = pt_errf(err, PT_EUNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16, BF16 can be trained)", path,
                         e->name, pt_dtype_name(x->dtype));
            break;
        }
        pt_to_f32(x->dtype, x->data, t->params + e->offset, e->numel);
    }
    pt_tensors_free(&ts);
    return rc;
}
