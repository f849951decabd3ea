/* backend_cpu.c — the CPU backend (see backend.h).
 *
 * Two regimes, chosen per call by the number of activation rows:
 *   - decode (rows <= PT_MATVEC_MAX_ROWS): weight-streaming kernels. Each weight row is read
 *     once and dotted with every activation row, threaded over weight rows (or columns for
 *     Conv1D layout) on our pool. Throughput is bounded by memory bandwidth, so the kernels
 *     only need to keep up with it: AVX2+FMA for F32, F16C for F16, shifts for BF16, and a
 *     real int8 kernel for Q8_0 (the activation row is quantised to Q8_0 blocks, products
 *     with _mm256_maddubs_epi16, as ggml does).
 *   - prefill: cblas_sgemm (OpenBLAS, same thread count), non-F32 weights converted to F32 a
 *     tile at a time (the tile conversion runs on our pool, then BLAS runs alone).
 * Our pool and OpenBLAS never run at the same time, so they do not oversubscribe.
 */
#include <cblas.h>
#include <math.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define PT_HAVE_AVX2 1
#else
#define PT_HAVE_AVX2 0
#endif

#include "engine/backend.h"

#define PT_MATVEC_MAX_ROWS 8
#define PT_KN_CHUNK 512      /* output columns per task in Conv1D-layout decode */
#define PT_TILE_FLOATS (1u << 21)  /* F32 tile for converting non-F32 weights (8 MiB) */
#define PT_ATT_QCHUNK 128
/* Query rows from which attention runs as (head, query chunk) tasks on our pool, each task
 * two single-threaded sgemms. (OpenBLAS's own threading on products this small spends more
 * time handing off than computing: measured 3x slower prefill at 512 tokens.) */
#define PT_ATT_SGEMM_MIN 16

extern void openblas_set_num_threads(int);

/* ---- thread pool --------------------------------------------------------------------- */

typedef void (*pool_fn)(void *ctx, int task, int tid);

typedef struct pool {
    int n;                    /* threads including the caller */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;
    atomic_int next, done;
    int n_tasks;
    pool_fn fn;
    void *ctx;
    int stop;
} pool;

typedef struct worker_arg {
    pool *p;
    int tid;
} worker_arg;

static void pool_work(pool *p, int tid) {
    for (;;) {
        /* acquire: pairs with pool_run's release store of next, so fn/ctx/n_tasks are this run's */
        int t = atomic_fetch_add_explicit(&p->next, 1, memory_order_acquire);
        if (t >= p->n_tasks) break;
        p->fn(p->ctx, t, tid);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static void *pool_main(void *arg) {
    worker_arg *wa = arg;
    pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    unsigned seen = atomic_load(&p->gen);
    for (;;) {
        /* Spin briefly (decode issues a matmul every few microseconds), then sleep so that
         * OpenBLAS's threads have the cores to themselves during prefill. */
        int spins = 0;
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen && spins < 20000) {
#if PT_HAVE_AVX2
            _mm_pause();
#endif
            spins++;
        }
        if (atomic_load_explicit(&p->gen, memory_order_acquire) == seen) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (p->stop) return NULL;
        seen = atomic_load(&p->gen);
        pool_work(p, tid);
    }
}

static void pool_run(pool *p, pool_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (p->n <= 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    /* A worker may still be inside pool_work() of the previous run (it takes the next task
     * after its last one counted). Close the task counter first so it claims nothing until
     * this run is set up, and reset done before reopening: a task claimed after the reopen is
     * then always counted in this run. (Resetting done after next let a task finish in
     * between and lose its count: this thread then waited forever; seen under a 64-connection
     * load on the server.) */
    atomic_store(&p->next, INT_MAX / 2);
    atomic_store(&p->done, 0);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_release);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pool_work(p, 0);
    /* Wait for tasks other threads hold; yield after a while, since on a loaded machine the
     * thread we wait for may need this core. */
    for (int spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks; spins++) {
        if (spins > 2000) sched_yield();
#if PT_HAVE_AVX2
        else _mm_pause();
#endif
    }
}

static pool *pool_new(int n) {
    pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->th = calloc((size_t)n, sizeof *p->th);
    if (!p->th) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) wa->p = p, wa->tid = i;
        if (!wa || pthread_create(&p->th[i], NULL, pool_main, wa)) {
            free(wa);
            p->n = i; /* run with the threads we got */
            break;
        }
    }
    return p;
}

static void pool_free(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->th);
    free(p);
}

/* ---- backend state --------------------------------------------------------------------- */

typedef struct cpu_impl {
    pool *pool;
    float *tile;              /* PT_TILE_FLOATS, for converting non-F32 weights (prefill) */
    pt_block_q8_0 *xq;        /* quantised activation rows (decode, Q8_0 weights) */
    size_t xq_cap;            /* blocks */
    float *att;               /* attention scratch */
    size_t att_cap;           /* floats */
    float *rope_cs;           /* [rope_pos, head_dim/2][2] cos, sin */
    int rope_pos, rope_hd;
    float rope_theta;
} cpu_impl;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t n = need + need / 2;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

size_t pt_weight_bytes(const pt_weight *w) {
    size_t n = (size_t)w->n * (size_t)w->k, b = 0;
    if (pt_dtype_bytes(w->dtype, n, &b)) return 0;
    return b;
}

/* Address of stored row r (r < n for NK, r < k for KN), element offset c in it. */
static const void *wrow(const pt_weight *w, size_t r, size_t c) {
    size_t e = r * w->ld + c;
    switch (w->dtype) {
    case PT_F32: return (const float *)w->data + e;
    case PT_F16:
    case PT_BF16: return (const uint16_t *)w->data + e;
    case PT_Q8_0: return (const pt_block_q8_0 *)w->data + e / PT_Q8_0_BLOCK;
    default: return NULL;
    }
}

/* ---- dot-product kernels (decode) ---------------------------------------------------- */

#if PT_HAVE_AVX2
static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
static inline __m256 load_w8(pt_dtype t, const void *p, size_t i) {
    if (t == PT_F32) return _mm256_loadu_ps((const float *)p + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    if (t == PT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
#endif

static inline float w_scalar(pt_dtype t, const void *p, size_t i) {
    if (t == PT_F32) return ((const float *)p)[i];
    if (t == PT_F16) return pt_f16_to_f32(((const uint16_t *)p)[i]);
    return pt_bf16_to_f32(((const uint16_t *)p)[i]);
}

/* out[r] = dot(wr[0..k), x[r*k ..]) for r < rows; wr is F32/F16/BF16. */
static void dot_rows_float(pt_dtype t, const void *wr, const float *x, int rows, int k, float *out) {
    int r = 0;
#if PT_HAVE_AVX2
    if (rows == 1) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 32 <= k; i += 32) {
            a0 = _mm256_fmadd_ps(load_w8(t, wr, i), _mm256_loadu_ps(x + i), a0);
            a1 = _mm256_fmadd_ps(load_w8(t, wr, i + 8), _mm256_loadu_ps(x + i + 8), a1);
            a2 = _mm256_fmadd_ps(load_w8(t, wr, i + 16), _mm256_loadu_ps(x + i + 16), a2);
            a3 = _mm256_fmadd_ps(load_w8(t, wr, i + 24), _mm256_loadu_ps(x + i + 24), a3);
        }
        for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(load_w8(t, wr, i), _mm256_loadu_ps(x + i), a0);
        float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; i < k; i++) s += w_scalar(t, wr, i) * x[i];
        out[0] = s;
        return;
    }
    {
        __m256 acc[PT_MATVEC_MAX_ROWS];
        for (r = 0; r < rows; r++) acc[r] = _mm256_setzero_ps();
        int i = 0;
        for (; i + 8 <= k; i += 8) {
            __m256 wv = load_w8(t, wr, i);
            for (r = 0; r < rows; r++) acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (size_t)r * k + i), acc[r]);
        }
        for (r = 0; r < rows; r++) {
            float s = hsum256(acc[r]);
            for (int j = i; j < k; j++) s += w_scalar(t, wr, j) * x[(size_t)r * k + j];
            out[r] = s;
        }
        return;
    }
#endif
    for (r = 0; r < rows; r++) {
        float s = 0;
        for (int i = 0; i < k; i++) s += w_scalar(t, wr, i) * x[(size_t)r * k + i];
        out[r] = s;
    }
}

void pt_q8_quantize_row(const float *x, pt_block_q8_0 *out, size_t n) {
    for (size_t b = 0; b < n / PT_Q8_0_BLOCK; b++) {
        const float *v = x + b * PT_Q8_0_BLOCK;
        float amax = 0;
        for (int i = 0; i < PT_Q8_0_BLOCK; i++) amax = fmaxf(amax, fabsf(v[i]));
        float d = amax / 127.f, id = d ? 1.f / d : 0.f;
        out[b].d = pt_f32_to_f16(d);
        for (int i = 0; i < PT_Q8_0_BLOCK; i++) out[b].q[i] = (int8_t)lrintf(v[i] * id);
    }
}

float pt_q8_dot(const pt_block_q8_0 *a, const pt_block_q8_0 *b, size_t n) {
    size_t nb = n / PT_Q8_0_BLOCK, i = 0;
    float s = 0;
#if PT_HAVE_AVX2
    __m256 acc = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (; i < nb; i++) {
        __m256i qa = _mm256_loadu_si256((const __m256i *)a[i].q);
        __m256i qb = _mm256_loadu_si256((const __m256i *)b[i].q);
        /* maddubs multiplies unsigned by signed bytes: move a's sign onto b. */
        __m256i ax = _mm256_sign_epi8(qa, qa);
        __m256i sb = _mm256_sign_epi8(qb, qa);
        __m256i p32 = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sb), ones);
        float d = _cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p32), acc);
    }
    s = hsum256(acc);
#endif
    for (; i < nb; i++) {
        int32_t t = 0;
        for (int j = 0; j < PT_Q8_0_BLOCK; j++) t += (int32_t)a[i].q[j] * b[i].q[j];
        s += (float)t * pt_f16_to_f32(a[i].d) * pt_f16_to_f32(b[i].d);
    }
    return s;
}

/* ---- matmul -------------------------------------------------------------------------- */

typedef struct mm_ctx {
    float *out;
    const float *x;
    const pt_block_q8_0 *xq;
    int rows;
    const pt_weight *w;
    const float *bias;
    int chunk, n_chunks;
    float *tile;              /* prefill conversion */
    size_t tile_r0, tile_nr;  /* stored rows converted */
    size_t tile_c0, tile_nc;  /* element offset / count in each row */
} mm_ctx;

static void mm_nk_task(void *arg, int task, int tid) {
    mm_ctx *c = arg;
    const pt_weight *w = c->w;
    int n0 = task * c->chunk, n1 = n0 + c->chunk;
    if (n1 > w->n) n1 = w->n;
    float tmp[PT_MATVEC_MAX_ROWS];
    size_t nb = (size_t)w->k / PT_Q8_0_BLOCK;
    for (int j = n0; j < n1; j++) {
        const void *wr = wrow(w, (size_t)j, 0);
        if (w->dtype == PT_Q8_0) {
            for (int r = 0; r < c->rows; r++) tmp[r] = pt_q8_dot(wr, c->xq + (size_t)r * nb, (size_t)w->k);
        } else {
            dot_rows_float(w->dtype, wr, c->x, c->rows, w->k, tmp);
        }
        float b = c->bias ? c->bias[j] : 0.f;
        for (int r = 0; r < c->rows; r++) c->out[(size_t)r * w->n + j] = tmp[r] + b;
    }
}

/* Conv1D layout, decode: out[r, n0:n1] = Σ_k x[r,k] · W[k, n0:n1]. */
static void mm_kn_task(void *arg, int task, int tid) {
    mm_ctx *c = arg;
    const pt_weight *w = c->w;
    int n0 = task * c->chunk, n1 = n0 + c->chunk;
    if (n1 > w->n) n1 = w->n;
    int nc = n1 - n0;
    float seg[PT_KN_CHUNK];
    for (int r = 0; r < c->rows; r++) {
        float *o = c->out + (size_t)r * w->n + n0;
        for (int j = 0; j < nc; j++) o[j] = c->bias ? c->bias[n0 + j] : 0.f;
    }
    for (int kk = 0; kk < w->k; kk++) {
        const float *src;
        if (w->dtype == PT_F32) {
            src = (const float *)w->data + (size_t)kk * w->ld + n0;
        } else {
            pt_to_f32(w->dtype, wrow(w, (size_t)kk, (size_t)n0), seg, (size_t)nc);
            src = seg;
        }
        for (int r = 0; r < c->rows; r++) {
            float xv = c->x[(size_t)r * w->k + kk];
            float *o = c->out + (size_t)r * w->n + n0;
            for (int j = 0; j < nc; j++) o[j] += xv * src[j];
        }
    }
}

/* Converts stored rows [tile_r0, +tile_nr), elements [tile_c0, +tile_nc) to F32. */
static void tile_task(void *arg, int task, int tid) {
    mm_ctx *c = arg;
    size_t per = (c->tile_nr + (size_t)c->n_chunks - 1) / (size_t)c->n_chunks;
    size_t r0 = (size_t)task * per, r1 = r0 + per;
    if (r1 > c->tile_nr) r1 = c->tile_nr;
    for (size_t r = r0; r < r1; r++)
        pt_to_f32(c->w->dtype, wrow(c->w, c->tile_r0 + r, c->tile_c0), c->tile + r * c->tile_nc, c->tile_nc);
}

static void quant_task(void *arg, int task, int tid) {
    mm_ctx *c = arg;
    size_t nb = (size_t)c->w->k / PT_Q8_0_BLOCK;
    pt_q8_quantize_row(c->x + (size_t)task * c->w->k, (pt_block_q8_0 *)c->xq + (size_t)task * nb, (size_t)c->w->k);
}

static int cpu_matmul(pt_backend *b, float *out, const float *x, int rows, const pt_weight *w, const float *bias) {
    cpu_impl *im = b->impl;
    mm_ctx c = {.out = out, .x = x, .rows = rows, .w = w, .bias = bias};
    int nt = im->pool->n;
    if (rows <= PT_MATVEC_MAX_ROWS) {
        if (w->layout == PT_W_NK) {
            if (w->dtype == PT_Q8_0) {
                size_t need = (size_t)rows * ((size_t)w->k / PT_Q8_0_BLOCK);
                if (grow((void **)&im->xq, &im->xq_cap, need, sizeof *im->xq)) return PT_ENOMEM;
                c.xq = im->xq;
                pool_run(im->pool, quant_task, &c, rows);
            }
            /* Chunks small enough to balance two threads when one is disturbed. */
            c.chunk = w->n / (nt * 8);
            if (c.chunk < 16) c.chunk = 16;
            c.n_chunks = (w->n + c.chunk - 1) / c.chunk;
            pool_run(im->pool, mm_nk_task, &c, c.n_chunks);
        } else {
            c.chunk = w->n / (nt * 4);
            c.chunk = (c.chunk + 31) / 32 * 32;
            if (c.chunk < 32) c.chunk = 32;
            if (c.chunk > PT_KN_CHUNK) c.chunk = PT_KN_CHUNK;
            c.n_chunks = (w->n + c.chunk - 1) / c.chunk;
            pool_run(im->pool, mm_kn_task, &c, c.n_chunks);
        }
        return PT_OK;
    }
    if (w->dtype == PT_F32) {
        if (w->layout == PT_W_NK) /* out (rows,n) = x (rows,k) @ W^T, W (n,k) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, w->n, w->k, 1.f, x, w->k, w->data,
                        (int)w->ld, 0.f, out, w->n);
        else /* out (rows,n) = x (rows,k) @ W, W (k,n) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, w->n, w->k, 1.f, x, w->k, w->data,
                        (int)w->ld, 0.f, out, w->n);
    } else if (w->layout == PT_W_NK) {
        /* Tiles of output rows: convert W[n0:n0+nr, :] to F32, then
         * out[:, n0:n0+nr] (rows,nr) = x (rows,k) @ tile^T (nr,k). */
        size_t per = PT_TILE_FLOATS / (size_t)w->k;
        if (per < 1) per = 1;
        if (per >= 32) per = per / 32 * 32;
        for (size_t n0 = 0; n0 < (size_t)w->n; n0 += per) {
            size_t nr = (size_t)w->n - n0 < per ? (size_t)w->n - n0 : per;
            c.tile = im->tile, c.tile_r0 = n0, c.tile_nr = nr, c.tile_c0 = 0, c.tile_nc = (size_t)w->k;
            c.n_chunks = nt * 2;
            pool_run(im->pool, tile_task, &c, c.n_chunks);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, (int)nr, w->k, 1.f, x, w->k, im->tile, w->k,
                        0.f, out + n0, w->n);
        }
    } else {
        /* Tiles of input rows: out (rows,n) += x[:, k0:k0+kr] (rows,kr) @ tile (kr,n). */
        size_t per = PT_TILE_FLOATS / (size_t)w->n;
        if (per < 1) per = 1;
        for (size_t k0 = 0; k0 < (size_t)w->k; k0 += per) {
            size_t kr = (size_t)w->k - k0 < per ? (size_t)w->k - k0 : per;
            c.tile = im->tile, c.tile_r0 = k0, c.tile_nr = kr, c.tile_c0 = 0, c.tile_nc = (size_t)w->n;
            c.n_chunks = nt * 2;
            pool_run(im->pool, tile_task, &c, c.n_chunks);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, w->n, (int)kr, 1.f, x + k0, w->k, im->tile,
                        w->n, k0 ? 1.f : 0.f, out, w->n);
        }
    }
    if (bias)
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < w->n; j++) out[(size_t)r * w->n + j] += bias[j];
    return PT_OK;
}

static void cpu_sgemm_nt(pt_backend *b, float *out, const float *a, const float *bm, int rows, int n, int k) {
    /* out (rows,n) = a (rows,k) @ bm^T (n,k) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, k, 1.f, a, k, bm, k, 0.f, out, n);
}

/* ---- attention ------------------------------------------------------------------------ */

static void softmax_row(float *s, int n_valid, int n_total) {
    float m = -INFINITY;
    for (int j = 0; j < n_valid; j++) m = fmaxf(m, s[j]);
    double sum = 0;
    for (int j = 0; j < n_valid; j++) {
        s[j] = expf(s[j] - m);
        sum += s[j];
    }
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < n_valid; j++) s[j] *= inv;
    for (int j = n_valid; j < n_total; j++) s[j] = 0.f;
}

typedef struct att_ctx {
    const pt_attn_args *a;
    float *scratch; /* per thread: p0+tq floats */
} att_ctx;

/* One (query row, head): the decode path. */
static void att_task(void *arg, int task, int tid) {
    att_ctx *c = arg;
    const pt_attn_args *a = c->a;
    int i = task / a->n_heads, h = task % a->n_heads;
    int hd = a->head_dim, tk = a->p0 + a->tq, nvalid = a->p0 + i + 1;
    int kvh = h / (a->n_heads / a->n_kv);
    size_t qs = (size_t)a->n_heads * hd, ks = (size_t)a->n_kv * hd;
    float *s = c->scratch + (size_t)tid * tk;
    const float *q = a->q + i * qs + (size_t)h * hd;
    float scale = 1.f / sqrtf((float)hd);
    for (int j = 0; j < nvalid; j++) {
        float d;
        dot_rows_float(PT_F32, a->k + j * ks + (size_t)kvh * hd, q, 1, hd, &d);
        s[j] = d * scale;
    }
    softmax_row(s, nvalid, tk);
    float *z = a->z + i * qs + (size_t)h * hd;
    for (int e = 0; e < hd; e++) z[e] = 0;
    for (int j = 0; j < nvalid; j++) {
        const float *v = a->v + j * ks + (size_t)kvh * hd;
        float p = s[j];
        for (int e = 0; e < hd; e++) z[e] += p * v[e];
    }
    if (a->pattern) memcpy(a->pattern + ((size_t)h * a->tq + i) * tk, s, (size_t)tk * sizeof *s);
}

/* One (head, chunk of query rows): scores and the weighted sum by sgemm. */
static void att_chunk_task(void *arg, int task, int tid) {
    att_ctx *c = arg;
    const pt_attn_args *a = c->a;
    int hd = a->head_dim, tk = a->p0 + a->tq;
    int n_chunks = (a->tq + PT_ATT_QCHUNK - 1) / PT_ATT_QCHUNK;
    int h = task / n_chunks, i0 = (task % n_chunks) * PT_ATT_QCHUNK;
    int kvh = h / (a->n_heads / a->n_kv);
    size_t qs = (size_t)a->n_heads * hd, ks = (size_t)a->n_kv * hd;
    int qn = a->tq - i0 < PT_ATT_QCHUNK ? a->tq - i0 : PT_ATT_QCHUNK;
    int kn = a->p0 + i0 + qn; /* keys any row of this chunk can see */
    float *S = c->scratch + (size_t)tid * PT_ATT_QCHUNK * tk;
    float scale = 1.f / sqrtf((float)hd);
    /* S (qn,kn) = scale * Q_h (qn,hd) @ K_h^T (kn,hd) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, qn, kn, hd, scale, a->q + (size_t)i0 * qs + (size_t)h * hd,
                (int)qs, a->k + (size_t)kvh * hd, (int)ks, 0.f, S, kn);
    for (int i = 0; i < qn; i++) {
        softmax_row(S + (size_t)i * kn, a->p0 + i0 + i + 1, kn);
        if (a->pattern) {
            float *pr = a->pattern + ((size_t)h * a->tq + i0 + i) * tk;
            memcpy(pr, S + (size_t)i * kn, (size_t)kn * sizeof(float));
            memset(pr + kn, 0, (size_t)(tk - kn) * sizeof(float));
        }
    }
    /* Z_h (qn,hd) = S (qn,kn) @ V_h (kn,hd) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, qn, hd, kn, 1.f, S, kn, a->v + (size_t)kvh * hd, (int)ks,
                0.f, a->z + (size_t)i0 * qs + (size_t)h * hd, (int)qs);
}

static int cpu_attention(pt_backend *b, const pt_attn_args *a) {
    cpu_impl *im = b->impl;
    int tk = a->p0 + a->tq, hd = a->head_dim;
    int group = a->n_heads / a->n_kv;
    size_t qs = (size_t)a->n_heads * hd, ks = (size_t)a->n_kv * hd;
    if (a->tq < PT_ATT_SGEMM_MIN) {
        if (grow((void **)&im->att, &im->att_cap, (size_t)tk * im->pool->n, sizeof(float))) return PT_ENOMEM;
        att_ctx c = {a, im->att};
        pool_run(im->pool, att_task, &c, a->tq * a->n_heads);
        return PT_OK;
    }
    /* Prefill: tasks of (head, chunk of query rows), OpenBLAS single-threaded inside. */
    int n_chunks = (a->tq + PT_ATT_QCHUNK - 1) / PT_ATT_QCHUNK;
    if (grow((void **)&im->att, &im->att_cap, (size_t)PT_ATT_QCHUNK * tk * im->pool->n, sizeof(float))) return PT_ENOMEM;
    att_ctx c = {a, im->att};
    openblas_set_num_threads(1);
    pool_run(im->pool, att_chunk_task, &c, a->n_heads * n_chunks);
    openblas_set_num_threads(b->n_threads);
    (void)group, (void)qs, (void)ks;
    return PT_OK;
}

/* ---- small ops ----------------------------------------------------------------------- */

static void cpu_get_row(pt_backend *b, float *out, const pt_weight *w, int i) {
    pt_to_f32(w->dtype, wrow(w, (size_t)i, 0), out, (size_t)w->k);
}

static void cpu_rmsnorm(pt_backend *b, float *y, const float *x, const float *w, int rows, int d, float eps) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * d;
        float *yr = y + (size_t)r * d;
        double ss = 0;
        for (int i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
        float inv = 1.f / sqrtf((float)(ss / d) + eps);
        for (int i = 0; i < d; i++) yr[i] = xr[i] * inv * w[i];
    }
}

static void cpu_layernorm(pt_backend *b, float *y, const float *x, const float *w, const float *bias, int rows, int d,
                          float eps) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * d;
        float *yr = y + (size_t)r * d;
        double m = 0, v = 0;
        for (int i = 0; i < d; i++) m += xr[i];
        m /= d;
        for (int i = 0; i < d; i++) v += (xr[i] - m) * (xr[i] - m);
        float inv = 1.f / sqrtf((float)(v / d) + eps);
        for (int i = 0; i < d; i++) yr[i] = (float)(xr[i] - m) * inv * w[i] + bias[i];
    }
}

static void cpu_rope(pt_backend *b, float *x, const int *pos, int rows, int n_heads, int hd, float theta) {
    cpu_impl *im = b->impl;
    int half = hd / 2, maxp = 0;
    for (int r = 0; r < rows; r++)
        if (pos[r] + 1 > maxp) maxp = pos[r] + 1;
    if (im->rope_hd != hd || im->rope_theta != theta || im->rope_pos < maxp) {
        int np = maxp < 256 ? 256 : maxp * 2;
        float *t = realloc(im->rope_cs, (size_t)np * half * 2 * sizeof(float));
        if (!t) { /* compute on the fly, without the table */
            for (int r = 0; r < rows; r++)
                for (int h = 0; h < n_heads; h++) {
                    float *v = x + ((size_t)r * n_heads + h) * hd;
                    for (int i = 0; i < half; i++) {
                        float ang = (float)pos[r] * (float)(1.0 / pow((double)theta, (double)(2 * i) / hd));
                        float c = cosf(ang), s = sinf(ang), a = v[i], bb = v[i + half];
                        v[i] = a * c - bb * s;
                        v[i + half] = bb * c + a * s;
                    }
                }
            return;
        }
        im->rope_cs = t;
        for (int i = 0; i < half; i++) {
            /* as HF: inv_freq = 1 / theta^(2i/hd) in float32 */
            float inv_freq = (float)(1.0 / pow((double)theta, (double)(2 * i) / hd));
            for (int p = 0; p < np; p++) {
                float ang = (float)p * inv_freq;
                t[((size_t)p * half + i) * 2] = cosf(ang);
                t[((size_t)p * half + i) * 2 + 1] = sinf(ang);
            }
        }
        im->rope_pos = np, im->rope_hd = hd, im->rope_theta = theta;
    }
    for (int r = 0; r < rows; r++) {
        const float *cs = im->rope_cs + (size_t)pos[r] * half * 2;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)r * n_heads + h) * hd;
            for (int i = 0; i < half; i++) {
                float c = cs[2 * i], s = cs[2 * i + 1], a = v[i], bb = v[i + half];
                v[i] = a * c - bb * s;
                v[i + half] = bb * c + a * s;
            }
        }
    }
}

static void cpu_free(pt_backend *b) {
    cpu_impl *im = b->impl;
    if (im) {
        pool_free(im->pool);
        free(im->tile);
        free(im->xq);
        free(im->att);
        free(im->rope_cs);
        free(im);
    }
    free(b);
}

pt_backend *pt_backend_cpu_new(int n_threads) {
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 256) n_threads = 256;
    pt_backend *b = calloc(1, sizeof *b);
    cpu_impl *im = calloc(1, sizeof *im);
    if (!b || !im) goto fail;
    b->impl = im;
    if (!(im->pool = pool_new(n_threads))) goto fail;
    if (!(im->tile = malloc(PT_TILE_FLOATS * sizeof(float)))) goto fail;
    openblas_set_num_threads(n_threads);
    b->name = "cpu";
    b->n_threads = im->pool->n;
    b->matmul = cpu_matmul;
    b->sgemm_nt = cpu_sgemm_nt;
    b->attention = cpu_attention;
    b->get_row = cpu_get_row;
    b->rmsnorm = cpu_rmsnorm;
    b->layernorm = cpu_layernorm;
    b->rope = cpu_rope;
    b->free = cpu_free;
    return b;
fail:
    if (b) {
        b->impl = im;
        if (im) cpu_free(b);
        else free(b);
    }
    return NULL;
}

void pt_backend_free(pt_backend *b) {
    if (b) b->free(b);
}
