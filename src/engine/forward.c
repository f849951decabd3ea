/* forward.c — the forward pass over a batch of sequence steps (see engine.h).
 *
 * All tokens of all steps are stacked into one activation matrix [T, d] so that every weight
 * matrix is streamed once per step whatever the batch: decode steps of several sequences
 * share the weight reads, prefill runs as sgemm. Attention is the only per-sequence part
 * (each sequence reads its own KV cache).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "engine/engine.h"
#include "engine/lora.h"

/* Run state: scratch activations for T stacked tokens, grown on demand. */
typedef struct run_state {
    int cap_T;            /* tokens the buffers hold */
    float *x;             /* (T, d)      residual stream */
    float *xn;            /* (T, d)      normalised input of a sublayer */
    float *q;             /* (T, H*hd) */
    float *k, *v;         /* (T, KV*hd) */
    float *z;             /* (T, H*hd) */
    float *o;             /* (T, d)      attention / MLP output */
    float *h1, *h2;       /* (T, F) */
    float *logits;        /* (nl, V)     rows whose logits were asked (grown to the count) */
    size_t logits_cap;    /* floats */
    int *pos;             /* (T)         absolute position of each row */
    size_t pattern_cap;
    float *pattern;       /* (H, tq, tk) for a sequence whose pattern is read */
} run_state;

/* KV caches of freed sequences, kept for the next ones (see pt_seq_free). */
#define PT_KV_KEEP 16
#define PT_KV_KEEP_BYTES ((size_t)64 << 20)
typedef struct kv_set {
    float **k, **v;
    int cap;
} kv_set;

struct pt_engine {
    pt_model *m;
    pt_backend *b;
    run_state rs;
    const pt_lora *def_lora; /* borrowed: the adapter new sequences start with */
    float def_lora_scale;
    float *lora_u, *lora_d;  /* owned scratch: (rows, r) and (rows, out) */
    size_t lora_u_cap, lora_d_cap;
    pthread_mutex_t kv_mu;   /* sequences are created and freed on any thread */
    kv_set kv_kept[PT_KV_KEEP];
    int n_kv_kept;
    size_t kv_kept_bytes;
};

int pt_engine_new(pt_model *m, pt_backend *b, pt_engine **out, pt_err *err) {
    *out = NULL;
    pt_engine *e = calloc(1, sizeof *e);
    if (!e) {
        pt_model_free(m);
        pt_backend_free(b);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    e->m = m;
    e->b = b;
    pthread_mutex_init(&e->kv_mu, NULL);
    *out = e;
    return PT_OK;
}

int pt_engine_open(const char *path, int n_threads, pt_engine **out, pt_err *err) {
    pt_model *m;
    *out = NULL;
    int rc = pt_model_load(path, &m, err);
    if (rc) return rc;
    pt_backend *b = pt_backend_cpu_new(n_threads);
    if (!b) {
        pt_model_free(m);
        return pt_errf(err, PT_ENOMEM, "out of memory starting the CPU backend");
    }
    return pt_engine_new(m, b, out, err);
}

static void rs_free(run_state *rs) {
    free(rs->x), free(rs->xn), free(rs->q), free(rs->k), free(rs->v), free(rs->z), free(rs->o);
    free(rs->h1), free(rs->h2), free(rs->pos);
    rs->x = rs->xn = rs->q = rs->k = rs->v = rs->z = rs->o = rs->h1 = rs->h2 = NULL;
    rs->pos = NULL;
    rs->cap_T = 0;
}

static void rs_free_all(run_state *rs) {
    rs_free(rs);
    free(rs->logits), free(rs->pattern);
    memset(rs, 0, sizeof *rs);
}

static void kv_set_free(kv_set *k, int n_layers) {
    for (int l = 0; k->k && l < n_layers; l++) free(k->k[l]);
    for (int l = 0; k->v && l < n_layers; l++) free(k->v[l]);
    free(k->k);
    free(k->v);
}

void pt_engine_free(pt_engine *e) {
    if (!e) return;
    for (int i = 0; i < e->n_kv_kept; i++) kv_set_free(&e->kv_kept[i], e->m->c.n_layers);
    pthread_mutex_destroy(&e->kv_mu);
    rs_free_all(&e->rs);
    free(e->lora_u);
    free(e->lora_d);
    pt_model_free(e->m);
    pt_backend_free(e->b);
    free(e);
}

const pt_model *pt_engine_model(const pt_engine *e) { return e->m; }
const pt_config *pt_engine_config(const pt_engine *e) { return &e->m->c; }
pt_backend *pt_engine_backend(pt_engine *e) { return e->b; }

/* n floats at a 64-byte boundary (free() releases them): the decode kernels' vector loads
 * of activation rows then do not straddle cache lines, which cost ~10% of an 8-row decode
 * step's matmul time on Zen 5 (interleaved measurement). NULL when out of memory. */
static float *falloc(size_t n) {
    void *p = NULL;
    return posix_memalign(&p, 64, n * sizeof(float)) ? NULL : p;
}

static int rs_reserve(pt_engine *e, int T, pt_err *err) {
    run_state *rs = &e->rs;
    if (T <= rs->cap_T) return PT_OK;
    const pt_config *c = &e->m->c;
    size_t n = (size_t)T, d = (size_t)c->d_model, qd = (size_t)c->n_heads * c->head_dim,
           kvd = (size_t)c->n_kv_heads * c->head_dim, F = (size_t)c->d_ff;
    rs_free(rs);
    rs->x = falloc(n * d);
    rs->xn = falloc(n * d);
    rs->q = falloc(n * qd);
    rs->k = falloc(n * kvd);
    rs->v = falloc(n * kvd);
    rs->z = falloc(n * qd);
    rs->o = falloc(n * d);
    rs->h1 = falloc(n * F);
    rs->h2 = falloc(n * F);
    rs->pos = malloc(n * sizeof(int));
    if (!rs->x || !rs->xn || !rs->q || !rs->k || !rs->v || !rs->z || !rs->o || !rs->h1 || !rs->h2 || !rs->pos) {
        rs_free(rs);
        return pt_errf(err, PT_ENOMEM, "out of memory for the activations of %d tokens", T);
    }
    rs->cap_T = T;
    return PT_OK;
}

/* ---- sequences ----------------------------------------------------------------------- */

size_t pt_seq_bytes_per_pos(const pt_engine *e) {
    const pt_config *c = &e->m->c;
    return 2 * (size_t)c->n_layers * c->n_kv_heads * c->head_dim * sizeof(float);
}

pt_seq *pt_seq_new(pt_engine *e, int max_ctx) {
    const pt_config *c = &e->m->c;
    pt_seq *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->max_ctx = max_ctx <= 0 || max_ctx > c->max_pos ? c->max_pos : max_ctx;
    s->n_layers = c->n_layers;
    if (e->def_lora) pt_seq_set_lora(s, e->def_lora, e->def_lora_scale);
    s->kv_dim = c->n_kv_heads * c->head_dim;
    s->owner = e;
    pthread_mutex_lock(&e->kv_mu);
    if (e->n_kv_kept) {
        kv_set *k = &e->kv_kept[--e->n_kv_kept];
        e->kv_kept_bytes -= (size_t)k->cap * pt_seq_bytes_per_pos(e);
        s->k = k->k, s->v = k->v, s->cap = k->cap;
    }
    pthread_mutex_unlock(&e->kv_mu);
    if (!s->k) {
        s->k = calloc((size_t)c->n_layers, sizeof *s->k);
        s->v = calloc((size_t)c->n_layers, sizeof *s->v);
    }
    if (!s->k || !s->v) {
        pt_seq_free(s);
        return NULL;
    }
    return s;
}

/* The KV cache goes back to its engine for the next sequence, up to PT_KV_KEEP caches and
 * PT_KV_KEEP_BYTES: a new cache's memory is fresh pages from the kernel (a 64-position cache
 * of a 512-wide model is 128 KiB per layer and tensor, above malloc's mmap threshold), and
 * faulting them in cost a quarter of a 120-row prefill on this project's paravirtualised
 * machines (34 against 26 ms with the memory kept). What a kept cache held is never read: a
 * sequence reads only the positions it wrote. */
void pt_seq_free(pt_seq *s) {
    if (!s) return;
    pt_engine *e = s->owner;
    if (e && s->k && s->v && s->cap) {
        size_t bytes = (size_t)s->cap * pt_seq_bytes_per_pos(e);
        pthread_mutex_lock(&e->kv_mu);
        int keep = e->n_kv_kept < PT_KV_KEEP && e->kv_kept_bytes + bytes <= PT_KV_KEEP_BYTES;
        if (keep) {
            e->kv_kept[e->n_kv_kept++] = (kv_set){s->k, s->v, s->cap};
            e->kv_kept_bytes += bytes;
        }
        pthread_mutex_unlock(&e->kv_mu);
        if (keep) {
            free(s);
            return;
        }
    }
    kv_set k = {s->k, s->v, 0};
    kv_set_free(&k, s->n_layers);
    free(s);
}

void pt_seq_reset(pt_seq *s) { s->pos = 0; }
void pt_seq_truncate(pt_seq *s, int n) {
    if (n >= 0 && n < s->pos) s->pos = n;
}
void pt_seq_set_hooks(pt_seq *s, pt_hooks *h) { s->hooks = h; }
void pt_seq_set_lora(pt_seq *s, const pt_lora *lora, float scale) {
    s->lora = lora;
    s->lora_scale = lora ? pt_lora_scaling(lora) * scale : 0.f;
}
void pt_engine_set_default_lora(pt_engine *e, const pt_lora *lora, float scale) {
    e->def_lora = lora;
    e->def_lora_scale = scale;
}

static int seq_reserve(pt_seq *s, int need, pt_err *err) {
    if (need <= s->cap) return PT_OK;
    int nc = s->cap ? s->cap : 64;
    while (nc < need) nc *= 2;
    if (nc > s->max_ctx) nc = s->max_ctx;
    size_t bytes = (size_t)nc * (size_t)s->kv_dim * sizeof(float), old = (size_t)s->cap * (size_t)s->kv_dim * sizeof(float);
    for (int l = 0; l < s->n_layers; l++) {
        float *k = realloc(s->k[l], bytes);
        if (k) s->k[l] = k;
        float *v = k ? realloc(s->v[l], bytes) : NULL;
        if (v) s->v[l] = v;
        if (!k || !v) return pt_errf(err, PT_ENOMEM, "out of memory for a KV cache of %d positions", nc);
        pt_populate(k, old, bytes);
        pt_populate(v, old, bytes);
    }
    s->cap = nc;
    return PT_OK;
}

/* ---- the forward pass ---------------------------------------------------------------- */

typedef struct batch {
    pt_step *steps;
    int n;
    int *row0;   /* first stacked row of each step */
} batch;

/* Runs the hooks of every sequence at a site over its rows of buf (width columns). */
static int hook_site(batch *bt, int site, float *buf, size_t width, pt_err *err) {
    for (int i = 0; i < bt->n; i++) {
        pt_seq *s = bt->steps[i].seq;
        if (!s->hooks || !pt_hooks_active(s->hooks, site)) continue;
        int rc = pt_hooks_apply(s->hooks, site, buf + (size_t)bt->row0[i] * width, bt->steps[i].n_tokens, s->pos, err);
        if (rc) return rc;
    }
    return PT_OK;
}

/* Scratch of at least need floats, 64-byte aligned (what it held is not kept). */
static int grow(float **p, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    float *q = falloc(need);
    if (!q) return -1;
    free(*p);
    *p = q, *cap = need;
    return 0;
}

/* The adapters' share of projection p (see proj_multi). */
static int lora_add(pt_engine *e, const batch *bt, int layer, pt_proj p, float *out, const float *x) {
    const pt_layer_weights *l = &e->m->w.layers[layer];
    const size_t n_out = (size_t)l->proj[p].n, n_in = (size_t)l->proj[p].k;
    for (int i = 0; i < bt->n;) {
        const pt_seq *s = bt->steps[i].seq;
        const pt_lora_mat *m = s->lora ? &s->lora->m[layer * PT_PROJ_COUNT + p] : NULL;
        int j = i + 1;
        if (!m || !m->A) {
            i = j;
            continue;
        }
        while (j < bt->n && bt->steps[j].seq->lora == s->lora && bt->steps[j].seq->lora_scale == s->lora_scale) j++;
        int rows = bt->row0[j - 1] + bt->steps[j - 1].n_tokens - bt->row0[i], r = s->lora->rank;
        if (grow(&e->lora_u, &e->lora_u_cap, (size_t)rows * r) || grow(&e->lora_d, &e->lora_d_cap, (size_t)rows * n_out))
            return PT_ENOMEM;
        const float *xi = x + (size_t)bt->row0[i] * n_in;
        float *oi = out + (size_t)bt->row0[i] * n_out;
        e->b->sgemm_nt(e->b, e->lora_u, xi, m->A, rows, r, (int)n_in);
        e->b->sgemm_nt(e->b, e->lora_d, e->lora_u, m->B, rows, (int)n_out, r);
        const float sc = s->lora_scale;
        for (size_t k = 0; k < (size_t)rows * n_out; k++) oi[k] += sc * e->lora_d[k];
        i = j;
    }
    return PT_OK;
}

/* Projections that read the same input: out[i] (T, w.n) = x (T, w.k) @ Wᵀ + b for each
 * p[i], in one backend call (one dispatch to the threads in decode). Then for each step
 * whose sequence carries an adapter on this (layer, proj), its rows get scale · (x Aᵀ) Bᵀ
 * added, with A (r, w.k) and B (w.n, r): two small matmuls through the backend
 * (u = x Aᵀ (rows, r), d = u Bᵀ (rows, w.n)). Consecutive steps with the same adapter and
 * scale share one pair. */
static int proj_multi(pt_engine *e, const batch *bt, int layer, const pt_proj *p, float *const *out, int np,
                      const float *x, int T) {
    const pt_layer_weights *l = &e->m->w.layers[layer];
    pt_mm mm[PT_MM_MAX];
    for (int q = 0; q < np; q++) mm[q] = (pt_mm){.out = out[q], .w = &l->proj[p[q]], .bias = l->bias[p[q]]};
    int rc = e->b->matmul_multi(e->b, x, T, mm, np);
    if (rc) return rc;
    for (int q = 0; q < np; q++)
        if ((rc = lora_add(e, bt, layer, p[q], out[q], x))) return rc;
    return PT_OK;
}

static int proj(pt_engine *e, const batch *bt, int layer, pt_proj p, float *out, const float *x, int T) {
    return proj_multi(e, bt, layer, &p, &out, 1, x, T);
}

/* Whether the elementwise step after projection p of a layer (the residual add after o or
 * down, SwiGLU after gate/up) can run inside the projection's tasks (pt_mm's epilogues):
 * not when a sequence's hook reads or writes the product in between (at hook site `site`),
 * nor when an adapter adds its share to the product after the backend call. */
static int can_fuse(const batch *bt, int layer, pt_proj p, int site) {
    for (int i = 0; i < bt->n; i++) {
        const pt_seq *s = bt->steps[i].seq;
        if (s->hooks && pt_hooks_active(s->hooks, site)) return 0;
        if (s->lora && s->lora->m[layer * PT_PROJ_COUNT + p].A) return 0;
        if (p == PT_PROJ_GATE && s->lora && s->lora->m[layer * PT_PROJ_COUNT + PT_PROJ_UP].A) return 0;
    }
    return 1;
}

/* The residual add of projection p (o or down) of a layer: o = in · Wᵀ (+ bias), the hooks
 * at site `kind` of the layer on o, then x += o. Inside the projection's tasks when nothing
 * needs o in between (can_fuse). PT_OK, or an error with err set. */
static int proj_residual(pt_engine *e, batch *bt, int layer, pt_proj p, pt_hook_kind kind, const float *in, int T,
                         pt_err *err) {
    const pt_layer_weights *l = &e->m->w.layers[layer];
    run_state *rs = &e->rs;
    const size_t d = (size_t)e->m->c.d_model;
    int rc, site = pt_hook_site(kind, layer);
    if (can_fuse(bt, layer, p, site)) {
        pt_mm mm = {.out = rs->o, .w = &l->proj[p], .bias = l->bias[p], .add_to = rs->x};
        if (e->b->matmul_multi(e->b, in, T, &mm, 1)) goto oom;
        return PT_OK;
    }
    if (proj(e, bt, layer, p, rs->o, in, T)) goto oom;
    if ((rc = hook_site(bt, site, rs->o, d, err))) return rc;
    for (size_t i = 0; i < (size_t)T * d; i++) rs->x[i] += rs->o[i];
    return PT_OK;
oom:
    return pt_errf(err, PT_ENOMEM, "out of memory for the backend's scratch space");
}

/* Gemma's post-norms: rows of x divided by their RMS (no weight yet), in place. */
static void rms_unit(float *x, int rows, int d, float eps) {
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * d;
        double ss = 0;
        for (int i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
        float inv = 1.f / sqrtf((float)(ss / d) + eps);
        for (int i = 0; i < d; i++) xr[i] *= inv;
    }
}

/* Gemma's residual add of projection p (o or down) of a layer: o = in · Wᵀ, o / rms(o) (hooks
 * at `norm_kind`), times the post-norm's weight w (already 1 + w; hooks at `out_kind`), then
 * x += o. */
static int post_norm_residual(pt_engine *e, batch *bt, int layer, pt_proj p, const float *w, pt_hook_kind norm_kind,
                              pt_hook_kind out_kind, const float *in, int T, pt_err *err) {
    run_state *rs = &e->rs;
    const pt_config *c = &e->m->c;
    const size_t d = (size_t)c->d_model;
    int rc;
    if (proj(e, bt, layer, p, rs->o, in, T)) return pt_errf(err, PT_ENOMEM, "out of memory for the backend's scratch space");
    rms_unit(rs->o, T, (int)d, c->norm_eps);
    if ((rc = hook_site(bt, pt_hook_site(norm_kind, layer), rs->o, d, err))) return rc;
    for (size_t r = 0; r < (size_t)T; r++)
        for (size_t i = 0; i < d; i++) rs->o[r * d + i] *= w[i];
    if ((rc = hook_site(bt, pt_hook_site(out_kind, layer), rs->o, d, err))) return rc;
    for (size_t i = 0; i < (size_t)T * d; i++) rs->x[i] += rs->o[i];
    return PT_OK;
}

/* RoPE under rope_scaling on the stacked q and k: the model's inverse frequencies, or for
 * "dynamic" and "longrope" those of each step's sequence length (as transformers recomputes them when a
 * forward pass reaches past the original context). cos and sin carry the yarn factor. */
static void rope_scaled(pt_engine *e, const batch *bt, float *q, float *k) {
    const pt_config *c = &e->m->c;
    const int hd = c->head_dim, half = hd / 2, H = c->n_heads, KV = c->n_kv_heads;
    float dyn[2048], cs[2 * 2048];
    for (int i = 0; i < bt->n; i++) {
        const pt_seq *s = bt->steps[i].seq;
        int n = bt->steps[i].n_tokens, len = s->pos + n;
        const float *inv = e->m->w.rope_inv;
        float msc = e->m->w.rope_mscale;
        if ((c->rope.type == PT_ROPE_DYNAMIC || c->rope.type == PT_ROPE_LONGROPE) && len > c->rope.orig_max_pos) {
            pt_rope_inv_freq(c, len, dyn, hd);
            inv = dyn;
        }
        for (int j = 0; j < n; j++) {
            size_t r = (size_t)bt->row0[i] + (size_t)j;
            for (int f = 0; f < half; f++) {
                float ang = (float)(s->pos + j) * inv[f];
                cs[2 * f] = cosf(ang) * msc, cs[2 * f + 1] = sinf(ang) * msc;
            }
            for (int h = 0; h < H + KV; h++) {
                float *v = h < H ? q + (r * H + h) * hd : k + (r * KV + h - H) * hd;
                for (int f = 0; f < half; f++) {
                    float a = v[f], b2 = v[f + half];
                    v[f] = a * cs[2 * f] - b2 * cs[2 * f + 1];
                    v[f + half] = b2 * cs[2 * f] + a * cs[2 * f + 1];
                }
            }
        }
    }
}

static float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.f + tanhf(k * (x + 0.044715f * x * x * x)));
}

int pt_engine_forward(pt_engine *e, pt_step *steps, int n, pt_err *err) {
    const pt_config *c = &e->m->c;
    const pt_model_weights *w = &e->m->w;
    pt_backend *b = e->b;
    if (n <= 0) return PT_OK;
    /* Validate everything before touching any state. */
    int T = 0;
    for (int i = 0; i < n; i++) {
        pt_step *st = &steps[i];
        if (!st->seq || st->n_tokens <= 0 || !st->tokens)
            return pt_errf(err, PT_EINVAL, "step %d: no sequence or no tokens", i);
        for (int j = 0; j < i; j++)
            if (steps[j].seq == st->seq) return pt_errf(err, PT_EINVAL, "step %d: the sequence of step %d again", i, j);
        for (int j = 0; j < st->n_tokens; j++)
            if (st->tokens[j] < 0 || st->tokens[j] >= c->vocab_size)
                return pt_errf(err, PT_EINVAL, "step %d: token %d (id %d) is out of range (vocabulary of %d)", i, j,
                               st->tokens[j], c->vocab_size);
        if (st->n_tokens > st->seq->max_ctx - st->seq->pos)
            return pt_errf(err, PT_EINVAL,
                           "step %d: %d tokens after %d would exceed the context length of %d positions", i,
                           st->n_tokens, st->seq->pos, st->seq->max_ctx);
        if (T > (1 << 24)) return pt_errf(err, PT_EINVAL, "too many tokens in one step");
        T += st->n_tokens;
    }
    int rc = rs_reserve(e, T, err);
    if (rc) return rc;
    for (int i = 0; i < n; i++)
        if ((rc = seq_reserve(steps[i].seq, steps[i].seq->pos + steps[i].n_tokens, err))) return rc;
    int row0_small[64], *row0 = n <= 64 ? row0_small : malloc((size_t)n * sizeof(int));
    pt_attn_args att_small[64], *att = n <= 64 ? att_small : malloc((size_t)n * sizeof *att);
    if (!row0 || !att) {
        if (row0 != row0_small) free(row0);
        if (att != att_small) free(att);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    batch bt = {steps, n, row0};
    run_state *rs = &e->rs;
    const int gemma = pt_config_gemma(c);
    size_t d = (size_t)c->d_model, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim,
           F = (size_t)c->d_ff, V = (size_t)c->vocab_size;
    for (int i = 0, r = 0; i < n; i++) {
        row0[i] = r;
        for (int j = 0; j < steps[i].n_tokens; j++, r++) rs->pos[r] = steps[i].seq->pos + j;
    }
#define HOOK(kind, layer, buf, width)                                                    \
    do {                                                                                 \
        if ((rc = hook_site(&bt, pt_hook_site(kind, layer), buf, width, err))) goto out; \
    } while (0)

    /* Embeddings. */
    for (int i = 0, r = 0; i < n; i++)
        for (int j = 0; j < steps[i].n_tokens; j++, r++) b->get_row(b, rs->x + (size_t)r * d, &w->tok_emb, steps[i].tokens[j]);
    if (c->embed_scale > 0) /* Gemma: × √d_model */
        for (size_t i = 0; i < (size_t)T * d; i++) rs->x[i] *= c->embed_scale;
    HOOK(PT_HOOK_EMBED, 0, rs->x, d);
    if (c->arch == PT_ARCH_GPT2) {
        for (int r = 0; r < T; r++) b->get_row(b, rs->xn + (size_t)r * d, &w->pos_emb, rs->pos[r]);
        HOOK(PT_HOOK_POS_EMBED, 0, rs->xn, d);
        for (size_t i = 0; i < (size_t)T * d; i++) rs->x[i] += rs->xn[i];
    }

    for (int L = 0; L < c->n_layers; L++) {
        const pt_layer_weights *lw = &w->layers[L];
        HOOK(PT_HOOK_RESID_PRE, L, rs->x, d);
        /* Attention. */
        if (c->arch == PT_ARCH_LLAMA) b->rmsnorm(b, rs->xn, rs->x, lw->ln1_w, T, (int)d, c->norm_eps);
        else b->layernorm(b, rs->xn, rs->x, lw->ln1_w, lw->ln1_b, T, (int)d, c->norm_eps);
        {
            static const pt_proj qkv[3] = {PT_PROJ_Q, PT_PROJ_K, PT_PROJ_V};
            float *const outs[3] = {rs->q, rs->k, rs->v};
            if ((rc = proj_multi(e, &bt, L, qkv, outs, 3, rs->xn, T))) goto oom;
        }
        HOOK(PT_HOOK_Q, L, rs->q, qd);
        HOOK(PT_HOOK_K, L, rs->k, kvd);
        HOOK(PT_HOOK_V, L, rs->v, kvd);
        const int windowed = pt_config_layer_windowed(c, L);
        if (c->qk_norm) { /* Qwen3, Gemma 3: RMSNorm of each head's q and k, before RoPE */
            b->rmsnorm(b, rs->q, rs->q, lw->q_norm, T * c->n_heads, c->head_dim, c->norm_eps);
            b->rmsnorm(b, rs->k, rs->k, lw->k_norm, T * c->n_kv_heads, c->head_dim, c->norm_eps);
            HOOK(PT_HOOK_Q_NORM, L, rs->q, qd);
            HOOK(PT_HOOK_K_NORM, L, rs->k, kvd);
        }
        if (windowed && c->rope_local_theta > 0) { /* Gemma 3's local layers: their own base, unscaled */
            b->rope(b, rs->q, rs->pos, T, c->n_heads, c->head_dim, c->rope_local_theta);
            b->rope(b, rs->k, rs->pos, T, c->n_kv_heads, c->head_dim, c->rope_local_theta);
        } else if (c->arch == PT_ARCH_LLAMA && c->rope.type == PT_ROPE_DEFAULT) {
            b->rope(b, rs->q, rs->pos, T, c->n_heads, c->head_dim, c->rope_theta);
            b->rope(b, rs->k, rs->pos, T, c->n_kv_heads, c->head_dim, c->rope_theta);
        } else if (c->arch == PT_ARCH_LLAMA) {
            rope_scaled(e, &bt, rs->q, rs->k);
        }
        /* Attention: every sequence whose pattern nobody reads in one backend call (decode
         * steps of a batch share one dispatch to the threads); a read pattern goes through
         * the one pattern buffer, so such a sequence is a call of its own. */
        int site_pat = pt_hook_site(PT_HOOK_PATTERN, L), n_att = 0;
        for (int i = 0; i < n; i++) {
            pt_seq *s = steps[i].seq;
            int tq = steps[i].n_tokens, p0 = s->pos;
            memcpy(s->k[L] + (size_t)p0 * kvd, rs->k + (size_t)row0[i] * kvd, (size_t)tq * kvd * sizeof(float));
            memcpy(s->v[L] + (size_t)p0 * kvd, rs->v + (size_t)row0[i] * kvd, (size_t)tq * kvd * sizeof(float));
            int want_pat = s->hooks && pt_hooks_active(s->hooks, site_pat);
            if (want_pat) {
                size_t need = (size_t)c->n_heads * (size_t)tq * (size_t)(p0 + tq);
                if (need > rs->pattern_cap) {
                    float *p = realloc(rs->pattern, need * sizeof(float));
                    if (!p) {
                        rc = pt_errf(err, PT_ENOMEM, "out of memory for an attention pattern");
                        goto out;
                    }
                    rs->pattern = p, rs->pattern_cap = need;
                }
            }
            pt_attn_args a = {.q = rs->q + (size_t)row0[i] * qd, .k = s->k[L], .v = s->v[L],
                              .z = rs->z + (size_t)row0[i] * qd, .pattern = want_pat ? rs->pattern : NULL,
                              .tq = tq, .p0 = p0, .n_heads = c->n_heads, .n_kv = c->n_kv_heads,
                              .head_dim = c->head_dim, .window = windowed ? c->sliding_window : 0,
                              .scale = c->attn_scale, .softcap = c->attn_softcap};
            if (!want_pat) {
                att[n_att++] = a;
                continue;
            }
            if ((rc = b->attention(b, &a, 1))) goto oom;
            if ((rc = pt_hooks_record_pattern(s->hooks, site_pat, rs->pattern, tq, p0, err))) goto out;
        }
        if (n_att && (rc = b->attention(b, att, n_att))) goto oom;
        HOOK(PT_HOOK_Z, L, rs->z, qd);
        /* The residual adds and SwiGLU run inside the projections' tasks unless a hook or an
         * adapter needs the product first (can_fuse): the same values either way. */
        if (gemma) rc = post_norm_residual(e, &bt, L, PT_PROJ_O, lw->ln1_post_w, PT_HOOK_LN1_POST, PT_HOOK_ATTN_OUT,
                                           rs->z, T, err);
        else rc = proj_residual(e, &bt, L, PT_PROJ_O, PT_HOOK_ATTN_OUT, rs->z, T, err);
        if (rc) goto out;
        HOOK(PT_HOOK_RESID_MID, L, rs->x, d);
        /* MLP. */
        if (gemma) { /* GeGLU */
            static const pt_proj gate_up[2] = {PT_PROJ_GATE, PT_PROJ_UP};
            float *const outs[2] = {rs->h1, rs->h2};
            b->rmsnorm(b, rs->xn, rs->x, lw->ln2_w, T, (int)d, c->norm_eps);
            if ((rc = proj_multi(e, &bt, L, gate_up, outs, 2, rs->xn, T))) goto oom;
            HOOK(PT_HOOK_MLP_PRE, L, rs->h1, F);
            for (size_t i = 0; i < (size_t)T * F; i++) rs->h1[i] = gelu_tanh(rs->h1[i]) * rs->h2[i];
        } else if (c->arch == PT_ARCH_LLAMA) {
            b->rmsnorm(b, rs->xn, rs->x, lw->ln2_w, T, (int)d, c->norm_eps);
            /* (the fused form has no bias on up; Llama has no MLP biases) */
            if (!lw->bias[PT_PROJ_UP] && can_fuse(&bt, L, PT_PROJ_GATE, pt_hook_site(PT_HOOK_MLP_PRE, L))) {
                pt_mm mm = {.out = rs->h1, .w = &lw->proj[PT_PROJ_GATE], .bias = lw->bias[PT_PROJ_GATE],
                            .up = &lw->proj[PT_PROJ_UP], .up_out = rs->h2};
                if ((rc = b->matmul_multi(b, rs->xn, T, &mm, 1))) goto oom;
            } else {
                static const pt_proj gate_up[2] = {PT_PROJ_GATE, PT_PROJ_UP};
                float *const outs[2] = {rs->h1, rs->h2};
                if ((rc = proj_multi(e, &bt, L, gate_up, outs, 2, rs->xn, T))) goto oom;
                HOOK(PT_HOOK_MLP_PRE, L, rs->h1, F);
                b->swiglu(b, rs->h1, rs->h2, (size_t)T * F);
            }
        } else {
            b->layernorm(b, rs->xn, rs->x, lw->ln2_w, lw->ln2_b, T, (int)d, c->norm_eps);
            if ((rc = proj(e, &bt, L, PT_PROJ_UP, rs->h1, rs->xn, T))) goto oom;
            HOOK(PT_HOOK_MLP_PRE, L, rs->h1, F);
            for (size_t i = 0; i < (size_t)T * F; i++) rs->h1[i] = gelu_tanh(rs->h1[i]);
        }
        HOOK(PT_HOOK_MLP_POST, L, rs->h1, F);
        if (gemma) rc = post_norm_residual(e, &bt, L, PT_PROJ_DOWN, lw->ln2_post_w, PT_HOOK_LN2_POST, PT_HOOK_MLP_OUT,
                                           rs->h1, T, err);
        else rc = proj_residual(e, &bt, L, PT_PROJ_DOWN, PT_HOOK_MLP_OUT, rs->h1, T, err);
        if (rc) goto out;
        HOOK(PT_HOOK_RESID_POST, L, rs->x, d);
    }
    if (c->arch == PT_ARCH_LLAMA) b->rmsnorm(b, rs->xn, rs->x, w->lnf_w, T, (int)d, c->norm_eps);
    else b->layernorm(b, rs->xn, rs->x, w->lnf_w, w->lnf_b, T, (int)d, c->norm_eps);
    HOOK(PT_HOOK_LN_FINAL, 0, rs->xn, d);

    /* Logits: only the rows somebody asked for (all of a step's rows when its hooks touch the
     * logits). The selected rows are packed into x, one matmul, then scattered. */
    int nl = 0;
    for (int i = 0; i < n; i++) {
        pt_step *st = &steps[i];
        int all = st->all_logits || pt_hooks_wants_logits(st->seq->hooks);
        if (!st->logits && !pt_hooks_wants_logits(st->seq->hooks)) continue;
        int first = all ? 0 : st->n_tokens - 1;
        for (int j = first; j < st->n_tokens; j++, nl++)
            memcpy(rs->x + (size_t)nl * d, rs->xn + (size_t)(row0[i] + j) * d, d * sizeof(float));
    }
    if (nl && grow(&rs->logits, &rs->logits_cap, (size_t)nl * V)) goto oom;
    if (nl && (rc = b->matmul(b, rs->logits, rs->x, nl, &w->lm_head, NULL))) goto oom;
    if (c->final_softcap > 0) /* Gemma 2: logits = cap · tanh(logits / cap) */
        for (size_t i = 0; i < (size_t)nl * V; i++) rs->logits[i] = c->final_softcap * tanhf(rs->logits[i] / c->final_softcap);
    for (int i = 0, r = 0; i < n; i++) {
        pt_step *st = &steps[i];
        pt_seq *s = st->seq;
        int wants = pt_hooks_wants_logits(s->hooks);
        if (!st->logits && !wants) continue;
        int all = st->all_logits || wants, cnt = all ? st->n_tokens : 1;
        float *L0 = rs->logits + (size_t)r * V;
        if (wants && (rc = pt_hooks_apply(s->hooks, PT_HOOK_LOGITS, L0, cnt, s->pos + st->n_tokens - cnt, err)))
            goto out;
        if (st->logits) {
            if (st->all_logits) memcpy(st->logits, L0, (size_t)cnt * V * sizeof(float));
            else memcpy(st->logits, L0 + (size_t)(cnt - 1) * V, V * sizeof(float));
        }
        r += cnt;
    }
    for (int i = 0; i < n; i++) steps[i].seq->pos += steps[i].n_tokens;
#undef HOOK
    goto out;
oom:
    rc = pt_errf(err, PT_ENOMEM, "out of memory for the backend's scratch space");
out:
    if (row0 != row0_small) free(row0);
    if (att != att_small) free(att);
    return rc;
}

int pt_argmax(const float *row, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (row[i] > row[best]) best = i;
    return best;
}
