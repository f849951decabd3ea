/* backend_cpu.c — the CPU backend (see backend.h).
 *
 * Two regimes, chosen per call by the number of activation rows:
 *   - decode (rows <= PT_MATVEC_MAX_ROWS): weight-streaming kernels. Each weight row is read
 *     once and dotted with every activation row, threaded over weight rows (or columns for
 *     Conv1D layout) on our pool. Throughput is bounded by memory bandwidth, so the kernels
 *     only need to keep up with it: AVX-512 where the CPU has it, else AVX2+FMA (F16C for
 *     F16, shifts for BF16), else plain C; Q8_0 by an int8 kernel against the activation
 *     quantised to Q8_0 once per matmul (VNNI dot products with AVX-512, maddubs with AVX2,
 *     as ggml does). Weights read by the same input (q/k/v, gate/up) go through one pool
 *     dispatch (matmul_multi). With AVX-512, F32/F16/BF16 weights against 2 or more rows
 *     run a register-blocked kernel instead (tiles of 3-4 weight rows x up to 8 activation
 *     rows: the multi-row case is bound by FMAs, not memory), and it serves prefills too, up
 *     to pt_backend.nk_rows_max rows (small-M products are OpenBLAS's weak spot).
 *   - prefill: cblas_sgemm over blocks of output columns, one single-threaded sgemm per
 *     task of our pool (non-F32 weights converted to F32 a tile at a time by the task).
 *     OpenBLAS's own threads are never woken by the engine: after a threaded call they spin
 *     (sched_yield) for ~0.1 s and took a core from the decode steps after every prefill.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/cpu.h"
#include "engine/backend.h"

#if PT_CPU_X86
#include <immintrin.h>
#define PT_X86 1
/* Kernels for newer instruction sets are compiled per function and chosen at run time: each
 * kernel set's functions carry exactly the features of its list (every one is needed by some
 * intrinsic of the set: _mm512_extractf32x8_ps is AVX-512 DQ, the int8 dot products VNNI,
 * the F16 loads F16C), and pt_cpu_isa_best() checks the same list (pt_cpu_has). */
#define PT_AVX2_FEATURES "avx2,fma,f16c"
#define PT_AVX512_FEATURES PT_AVX2_FEATURES ",avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"
#define PT_AVX2_FN __attribute__((target(PT_AVX2_FEATURES)))
#define PT_AVX512_FN __attribute__((target(PT_AVX512_FEATURES)))
#else
#define PT_X86 0
#endif

#include "engine/backend.h"
#include "engine/quant_k.h"

#define PT_MATVEC_MAX_ROWS 8
/* Activation rows up to which F32/F16/BF16 NK weights go through the AVX-512 register-blocked
 * kernel (nk_float_avx512) rather than cblas_sgemm: one value for OpenBLAS with AVX2 sgemm
 * kernels (Haswell, Zen, or OPENBLAS_CORETYPE=Haswell as set on our bench machine) and one
 * for OpenBLAS with AVX-512 ones (SkylakeX, Cooperlake, SapphireRapids). See
 * docs/engine-perf.md for the measurements. */
#define PT_NK_ROWS_MAX_VS_AVX2_SGEMM 1024
#define PT_NK_ROWS_MAX_VS_AVX512_SGEMM 128
/* Bytes of activation rows a decode kernel keeps in L1 beside the weight stream (see
 * nk_float_avx2). */
#define PT_NK_L1_BYTES (24u << 10)
#define PT_NK_L2_BYTES (256u << 10)
#define PT_KN_CHUNK 512      /* output columns per task in Conv1D-layout decode */
/* F32 tile per pool thread for converting non-F32 weights in prefill (1 MiB: one 8 MiB tile
 * cost 6 MiB of peak RSS, 1.12x file + KV for the 100M F16 model against the 1.1x goal, for
 * no measurable speed) */
#define PT_TILE_FLOATS (1u << 18)
#define PT_ATT_QCHUNK 128
/* Query rows from which attention runs as (head, query chunk) tasks on our pool, each task
 * two single-threaded sgemms. (OpenBLAS's own threading on products this small spends more
 * time handing off than computing: measured 3x slower prefill at 512 tokens.) */
#define PT_ATT_SGEMM_MIN 16
/* Decode attention below this many multiply-adds per score pass (query rows x heads x keys
 * x head_dim) runs on the calling thread: a pool dispatch costs more than the work. */
#define PT_ATT_INLINE_WORK (1 << 16)
/* Decode-sized sequences per attention dispatch (the task table is on the stack). */
#define PT_ATT_BATCH_MAX 256

extern char *openblas_get_corename(void);

/* ---- thread pool: common/pool.h; sgemm: engine/blas.h ------------------------------- */

#include "common/pool.h"
#include "engine/blas.h"

/* ---- backend state --------------------------------------------------------------------- */

typedef struct cpu_kernels cpu_kernels;

typedef struct cpu_impl {
    pt_pool *pool;
    const cpu_kernels *kn;    /* the instruction set's kernels */
    float *tile;              /* PT_TILE_FLOATS per thread, for non-F32 weights (prefill) */
    int8_t *xq;               /* quantised activation rows (decode, Q8_0 weights) */
    size_t xq_cap;            /* bytes */
    float *xs;                /* their scales (see nk_args) */
    size_t xs_cap;            /* floats */
    float *att;               /* attention scratch */
    size_t att_cap;           /* floats */
    float *rope_cs;           /* [rope_pos, head_dim/2][2] cos, sin */
    int rope_pos, rope_hd;
    float rope_theta;
} cpu_impl;

/* Scratch of at least need elements, 64-byte aligned so that vector loads of its rows do
 * not straddle cache lines (what it held is not kept). */
static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t n = need + need / 2;
    void *q = NULL;
    if (posix_memalign(&q, 64, n * elem)) return -1;
    free(*p);
    *p = q;
    *cap = n;
    return 0;
}

size_t pt_weight_bytes(const pt_weight *w) {
    size_t n = (size_t)w->n * (size_t)w->k, b = 0;
    if (pt_dtype_bytes(w->dtype, n, &b)) return 0;
    return b;
}

/* Address of stored row r (r < n for NK, r < k for KN), element offset c in it. (F32, F16
 * and BF16 inline: the tile kernel asks for 2 x 3 rows per tile, and the call to
 * pt_dtype_at was ~2.5% of an 8-sequence decode step.) */
static inline const void *wrow(const pt_weight *w, size_t r, size_t c) {
    size_t e = r * w->ld + c;
    if (w->dtype == PT_F32) return (const float *)w->data + e;
    if (w->dtype == PT_F16 || w->dtype == PT_BF16) return (const uint16_t *)w->data + e;
    return pt_dtype_at(w->dtype, w->data, e);
}

/* ---- decode kernels -------------------------------------------------------------------
 *
 * One function per instruction set computes rows j0..j1 of an NK weight against the
 * activation rows (nk_args); the backend picks the set once, at creation, from what the CPU
 * supports (or PARITY_CPU_ISA, or pt_backend_cpu_new_isa for tests). The AVX2 and AVX-512
 * functions are compiled with target attributes, not with the whole file built for the
 * newer set, so one binary runs on a CPU without AVX-512 and takes the AVX2 path.
 *
 * Q8_0 weights are dotted with the activation quantised to Q8_0 once per matmul
 * (nk_args.xq/xs: int8 values and F32 scales; as ggml's vec_dot_q8_0_q8_0): int8 products
 * summed in int32 per 32-value block, then scaled. Quantisation is the same in every set
 * (amax/127, round to nearest even), so only the summation order differs between sets. */

typedef struct nk_args {
    const pt_weight *w;   /* NK layout */
    const float *x;       /* [rows, k] F32 activations */
    const int8_t *xq;     /* [rows, k] quantised activations (Q8_0 weights) */
    const float *xs;      /* their scales and corrections: [rows, k/32 * PT_XS_PER_BLOCK] */
    int rows;
    float *out;           /* out[r*ldo + j] */
    size_t ldo;
    const float *bias;    /* [n] or NULL */
} nk_args;

/* nk_args.xs per activation row of nb Q8_0 blocks: nb*PT_XS_LANES F32 scales, each block's
 * repeated over eight lanes (one 16-lane load then covers two blocks; the scalar and AVX2
 * kernels read the first), then nb*PT_XS_LANES int32 corrections, lane l of block b being
 * -128 * (q[4l] + .. + q[4l+3]) of the block's quantised values: the AVX-512 kernel feeds the
 * weights to vpdpbusd as unsigned (w ^ 0x80 = w + 128), so its sums carry 128 * Σq extra,
 * which the correction, its accumulator's start, takes off. */
#define PT_XS_LANES 8
#define PT_Q8_PREFETCH 8192 /* bytes ahead in the one-row AVX-512 Q8_0 kernel's weight stream */
#define PT_XS_PER_BLOCK (2 * PT_XS_LANES)

struct cpu_kernels {
    pt_cpu_isa isa;
    /* rows j0..j1 of an NK weight against a->rows activation rows: at most
     * PT_MATVEC_MAX_ROWS, or for F32/F16/BF16 weights any number when float_rows_any */
    void (*nk)(const nk_args *a, int j0, int j1);
    int float_rows_any;
    /* One activation row of k values (a multiple of 32) to Q8_0: q[k], s[k/32 * PT_XS_PER_BLOCK]
     * (scales and corrections, see PT_XS_LANES). */
    void (*quant)(const float *x, int8_t *q, float *s, size_t k);
    /* n elements of a stored row (any weight dtype) to F32 (prefill tiles). */
    void (*to_f32)(pt_dtype t, const void *src, float *dst, size_t n);
    /* y[0..n) += a * x[0..n) */
    void (*axpy)(float *y, float a, const float *x, int n);
    /* z[0..hd) = Σ_j<n p[j] · v[j*ldv + 0..hd): attention's weighted sum of values, with the
     * sum of a slice of z in registers over all keys (an axpy per key loads and stores z
     * n times). */
    void (*wsum)(float *z, const float *p, const float *v, size_t ldv, int n, int hd);
    /* s[j] = scale · q[0..hd) · k[j*ldk + 0..hd), j < n: attention's scores of one query row
     * (NULL: the set scores through nk). Decode's keys are short rows (hd values, 64 in the
     * server bench's model): nk's one-row kernel pays a horizontal sum per key. */
    void (*scores)(float *s, const float *q, const float *k, size_t ldk, int n, int hd, float scale);
    /* s[0..n_valid) = softmax(s[0..n_valid)), s[n_valid..n_total) = 0 */
    void (*softmax)(float *s, int n_valid, int n_total);
    /* g[i] = silu(g[i]) · u[i], each element alone (see pt_backend.swiglu) */
    void (*swiglu)(float *g, const float *u, size_t n);
};

static inline float w_scalar(pt_dtype t, const void *p, size_t i) {
    if (t == PT_F32) return ((const float *)p)[i];
    if (t == PT_F16) return pt_f16_to_f32(((const uint16_t *)p)[i]);
    return pt_bf16_to_f32(((const uint16_t *)p)[i]);
}

static inline void nk_store(const nk_args *a, int r, int j, float s) {
    a->out[(size_t)r * a->ldo + (size_t)j] = s + (a->bias ? a->bias[j] : 0.f);
}

/* Q8_0 block quantisation of one block of 32 values, shared by every set's tail and the
 * scalar path. */
static void quant_block_scalar(const float *v, int8_t *q, float *d_out) {
    float amax = 0;
    for (int i = 0; i < PT_Q8_0_BLOCK; i++) amax = fmaxf(amax, fabsf(v[i]));
    float d = amax / 127.f, id = d ? 1.f / d : 0.f;
    for (int i = 0; i < PT_Q8_0_BLOCK; i++) q[i] = (int8_t)lrintf(v[i] * id);
    *d_out = d;
}

static void quant_scalar(const float *x, int8_t *q, float *s, size_t k) {
    size_t nb = k / PT_Q8_0_BLOCK;
    int32_t *c = (int32_t *)(s + nb * PT_XS_LANES);
    for (size_t b = 0; b < nb; b++) {
        float d;
        int8_t *qb = q + b * PT_Q8_0_BLOCK;
        quant_block_scalar(x + b * PT_Q8_0_BLOCK, qb, &d);
        for (int l = 0; l < PT_XS_LANES; l++) {
            s[b * PT_XS_LANES + l] = d;
            c[b * PT_XS_LANES + l] = -128 * (qb[4 * l] + qb[4 * l + 1] + qb[4 * l + 2] + qb[4 * l + 3]);
        }
    }
}

static void nk_scalar(const nk_args *a, int j0, int j1) {
    const pt_weight *w = a->w;
    size_t k = (size_t)w->k, nb = k / PT_Q8_0_BLOCK;
    for (int j = j0; j < j1; j++) {
        const void *wr = wrow(w, (size_t)j, 0);
        for (int r = 0; r < a->rows; r++) {
            float s = 0;
            if (w->dtype == PT_Q8_0) {
                const pt_block_q8_0 *bl = wr;
                const int8_t *xq = a->xq + (size_t)r * k;
                const float *xs = a->xs + (size_t)r * nb * PT_XS_PER_BLOCK;
                for (size_t b = 0; b < nb; b++) {
                    int32_t t = 0;
                    for (int e = 0; e < PT_Q8_0_BLOCK; e++) t += (int32_t)bl[b].q[e] * xq[b * PT_Q8_0_BLOCK + e];
                    s += (float)t * (pt_f16_to_f32(bl[b].d) * xs[b * PT_XS_LANES]);
                }
            } else {
                const float *x = a->x + (size_t)r * k;
                for (size_t i = 0; i < k; i++) s += w_scalar(w->dtype, wr, i) * x[i];
            }
            nk_store(a, r, j, s);
        }
    }
}

static void axpy_scalar(float *restrict y, float a, const float *restrict x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void wsum_scalar(float *z, const float *p, const float *v, size_t ldv, int n, int hd) {
    memset(z, 0, (size_t)hd * sizeof *z);
    for (int j = 0; j < n; j++) axpy_scalar(z, p[j], v + (size_t)j * ldv, hd);
}

#if PT_X86
/* ---- AVX2 + FMA + F16C ---- */
PT_AVX2_FN static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
PT_AVX2_FN static inline __m256 load_w8(pt_dtype t, const void *p, size_t i) {
    if (t == PT_F32) return _mm256_loadu_ps((const float *)p + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    if (t == PT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* Weight row j (at wr) against activation rows r0..r0+R-1 (R <= 4), 16 inputs per step with
 * two accumulators per row so that 2R FMA chains hide the FMA latency. */
PT_AVX2_FN static inline __attribute__((always_inline)) void nk_group_avx2(const nk_args *a, int j, const void *wr,
                                                                         int r0, pt_dtype t, const int R) {
    const int k = a->w->k;
    const float *x = a->x + (size_t)r0 * k;
    __m256 acc0[4], acc1[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc0[r] = acc1[r] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= k; i += 16) {
        __m256 w0 = load_w8(t, wr, (size_t)i), w1 = load_w8(t, wr, (size_t)i + 8);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            acc0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + (size_t)r * k + i), acc0[r]);
            acc1[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + (size_t)r * k + i + 8), acc1[r]);
        }
    }
    for (; i + 8 <= k; i += 8) {
        __m256 w0 = load_w8(t, wr, (size_t)i);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + (size_t)r * k + i), acc0[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float s = hsum256(_mm256_add_ps(acc0[r], acc1[r]));
        for (int e = i; e < k; e++) s += w_scalar(t, wr, (size_t)e) * x[(size_t)r * k + e];
        nk_store(a, r0 + r, j, s);
    }
}

/* rows activation rows (a constant at each call site, so the accumulators stay in
 * registers) against weight rows j0..j1, F32/F16/BF16. When the activation rows do not
 * fit in L1 beside the weight stream (over PT_NK_L1_BYTES), they go in two groups of at
 * most 4, each a pass over a block of weight rows (the second pass reads the block from
 * L2): with all of them in one pass, 8 rows of the 1376-input down projection ran at half
 * the multiply-adds per second of 8 rows of a 512-input projection (one thread; the drop
 * is between 768 and 1024 inputs, 24 and 32 KiB of activations, on this 48 KiB L1); in
 * two groups at 0.58-0.68 of it. Splitting the inputs into blocks instead (the weight rows
 * then read in pieces, strided) was slower still. */
PT_AVX2_FN static inline __attribute__((always_inline)) void nk_float_avx2(const nk_args *a, int j0, int j1,
                                                                         pt_dtype t, const int rows) {
    const pt_weight *w = a->w;
    const int k = w->k;
    for (int j = j0; j < j1; j++) {
        const void *wr = wrow(w, (size_t)j, 0);
        if (rows == 1) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            int i = 0;
            for (; i + 32 <= k; i += 32) {
                a0 = _mm256_fmadd_ps(load_w8(t, wr, i), _mm256_loadu_ps(a->x + i), a0);
                a1 = _mm256_fmadd_ps(load_w8(t, wr, i + 8), _mm256_loadu_ps(a->x + i + 8), a1);
                a2 = _mm256_fmadd_ps(load_w8(t, wr, i + 16), _mm256_loadu_ps(a->x + i + 16), a2);
                a3 = _mm256_fmadd_ps(load_w8(t, wr, i + 24), _mm256_loadu_ps(a->x + i + 24), a3);
            }
            for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(load_w8(t, wr, i), _mm256_loadu_ps(a->x + i), a0);
            float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
            for (; i < k; i++) s += w_scalar(t, wr, (size_t)i) * a->x[i];
            nk_store(a, 0, j, s);
            continue;
        }
        if (rows > 4 && (size_t)rows * k * sizeof(float) > PT_NK_L1_BYTES) {
            /* Two groups of activation rows, each over a block of weight rows that the
             * second group then reads from L2 (weight rows of up to PT_NK_L2_BYTES). */
            size_t rb = pt_weight_bytes(w) / (size_t)w->n;
            int jb = rb ? (int)(PT_NK_L2_BYTES / rb) : 1, j1b;
            if (jb < 1) jb = 1;
            for (; j < j1; j = j1b) {
                j1b = j + jb < j1 ? j + jb : j1;
                for (int jj = j; jj < j1b; jj++) nk_group_avx2(a, jj, wrow(w, (size_t)jj, 0), 0, t, 4);
                for (int jj = j; jj < j1b; jj++)
                    nk_group_avx2(a, jj, wrow(w, (size_t)jj, 0), 4, t, rows > 4 ? rows - 4 : 1);
            }
            return;
        }
        __m256 acc[PT_MATVEC_MAX_ROWS];
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++) acc[r] = _mm256_setzero_ps();
        int i = 0;
        for (; i + 8 <= k; i += 8) {
            __m256 wv = load_w8(t, wr, (size_t)i);
#pragma GCC unroll 8
            for (int r = 0; r < rows; r++)
                acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(a->x + (size_t)r * k + i), acc[r]);
        }
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            float s = hsum256(acc[r]);
            for (int e = i; e < k; e++) s += w_scalar(t, wr, (size_t)e) * a->x[(size_t)r * k + e];
            nk_store(a, r, j, s);
        }
    }
}

PT_AVX2_FN static inline __attribute__((always_inline)) void nk_q8_avx2(const nk_args *a, int j0, int j1,
                                                                      const int rows) {
    const pt_weight *w = a->w;
    const size_t k = (size_t)w->k, nb = k / PT_Q8_0_BLOCK;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int j = j0; j < j1; j++) {
        const pt_block_q8_0 *bl = wrow(w, (size_t)j, 0);
        __m256 acc[PT_MATVEC_MAX_ROWS];
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++) acc[r] = _mm256_setzero_ps();
        for (size_t b = 0; b < nb; b++) {
            __m256i qw = _mm256_loadu_si256((const __m256i *)bl[b].q);
            __m256i aw = _mm256_sign_epi8(qw, qw); /* maddubs is unsigned x signed: move w's sign onto x */
            float dw = _cvtsh_ss(bl[b].d);
#pragma GCC unroll 8
            for (int r = 0; r < rows; r++) {
                __m256i qx = _mm256_loadu_si256((const __m256i *)(a->xq + (size_t)r * k + b * PT_Q8_0_BLOCK));
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(qx, qw)), ones);
                float d = dw * a->xs[(size_t)r * nb * PT_XS_PER_BLOCK + b * PT_XS_LANES];
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc[r]);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++) nk_store(a, r, j, hsum256(acc[r]));
    }
}

PT_AVX2_FN static void nk_avx2(const nk_args *a, int j0, int j1) {
    pt_dtype t = a->w->dtype;
#define PT_ROWS_CASES(CALL)                                                                    \
    switch (a->rows) {                                                                         \
    case 1: CALL(1); break;                                                                    \
    case 2: CALL(2); break;                                                                    \
    case 3: CALL(3); break;                                                                    \
    case 4: CALL(4); break;                                                                    \
    case 5: CALL(5); break;                                                                    \
    case 6: CALL(6); break;                                                                    \
    case 7: CALL(7); break;                                                                    \
    default: CALL(8); break;                                                                   \
    }
    if (t == PT_Q8_0) {
#define Q8_CALL(R) nk_q8_avx2(a, j0, j1, R)
        PT_ROWS_CASES(Q8_CALL)
#undef Q8_CALL
    } else if (t == PT_F32) {
#define F32_CALL(R) nk_float_avx2(a, j0, j1, PT_F32, R)
        PT_ROWS_CASES(F32_CALL)
#undef F32_CALL
    } else if (t == PT_F16) {
#define F16_CALL(R) nk_float_avx2(a, j0, j1, PT_F16, R)
        PT_ROWS_CASES(F16_CALL)
#undef F16_CALL
    } else {
#define BF16_CALL(R) nk_float_avx2(a, j0, j1, PT_BF16, R)
        PT_ROWS_CASES(BF16_CALL)
#undef BF16_CALL
    }
}

PT_AVX2_FN static void quant_avx2(const float *x, int8_t *q, float *s, size_t k) {
    const __m256 sign = _mm256_set1_ps(-0.f);
    for (size_t b = 0; b < k / PT_Q8_0_BLOCK; b++) {
        const float *v = x + b * PT_Q8_0_BLOCK;
        __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), v2 = _mm256_loadu_ps(v + 16),
               v3 = _mm256_loadu_ps(v + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float d = _mm_cvtss_f32(h) / 127.f, id = d ? 1.f / d : 0.f;
        __m256 vid = _mm256_set1_ps(id);
        /* cvtps rounds to nearest even, as lrintf in the default mode */
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid)),
                i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        /* the packs work within 128-bit lanes: restore the order of the 4-byte groups */
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + b * PT_Q8_0_BLOCK), p);
        _mm256_storeu_ps(s + b * PT_XS_LANES, _mm256_set1_ps(d));
        __m256i c = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), p), _mm256_set1_epi16(-128));
        _mm256_storeu_si256((__m256i *)(s + (k / PT_Q8_0_BLOCK + b) * PT_XS_LANES), c);
    }
}

PT_AVX2_FN static void to_f32_avx2(pt_dtype t, const void *src, float *dst, size_t n) {
    if (t == PT_F16 || t == PT_BF16) {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_w8(t, src, i));
        for (; i < n; i++) dst[i] = w_scalar(t, src, i);
        return;
    }
    if (t == PT_Q8_0) {
        const pt_block_q8_0 *b = src;
        for (size_t i = 0; i < n / PT_Q8_0_BLOCK; i++) {
            __m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d));
            for (int e = 0; e < PT_Q8_0_BLOCK; e += 8) {
                __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b[i].q + e)));
                _mm256_storeu_ps(dst + i * PT_Q8_0_BLOCK + e, _mm256_mul_ps(d, _mm256_cvtepi32_ps(v)));
            }
        }
        return;
    }
    pt_to_f32(t, src, dst, n);
}

PT_AVX2_FN static void axpy_avx2(float *y, float a, const float *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* 32 values of z (four accumulators) per pass over the keys. */
PT_AVX2_FN static void wsum_avx2(float *z, const float *p, const float *v, size_t ldv, int n, int hd) {
    int c = 0;
    for (; c + 32 <= hd; c += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < n; j++) {
            const float *vj = v + (size_t)j * ldv + c;
            __m256 pj = _mm256_set1_ps(p[j]);
            a0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj), a0);
            a1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8), a1);
            a2 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 16), a2);
            a3 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 24), a3);
        }
        _mm256_storeu_ps(z + c, a0), _mm256_storeu_ps(z + c + 8, a1);
        _mm256_storeu_ps(z + c + 16, a2), _mm256_storeu_ps(z + c + 24, a3);
    }
    for (; c + 8 <= hd; c += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (int j = 0; j < n; j++) a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + (size_t)j * ldv + c), a0);
        _mm256_storeu_ps(z + c, a0);
    }
    for (; c < hd; c++) {
        float a0 = 0;
        for (int j = 0; j < n; j++) a0 += p[j] * v[(size_t)j * ldv + c];
        z[c] = a0;
    }
}

/* ---- AVX-512 (F, BW, VL, VNNI) ---- */
/* F32/F16/BF16 against ONE activation row go through the 256-bit kernel above: its 512-bit
 * forms (one weight row with four 16-lane accumulators, or four weight rows per pass over x
 * with eight) measured 7-20% slower on this Zen 5 (one thread, interleaved runs), on a loop
 * that is bound by memory either way. Two or more rows run nk_float_avx512 below. */

/* Q8_0: two blocks (64 values) per 512-bit step. The weights go to vpdpbusd as its unsigned
 * operand, w ^ 0x80 = w + 128 (one xor per weight block, shared by the activation rows), the
 * activation as its signed one, and the sum starts from the activation's correction
 * (-128 * Σq per lane, see PT_XS_LANES), so that the int32 sums are exact with no sign
 * fix-up (AVX-512 has no 512-bit vpsignb: the earlier two-blocks-per-register kernel emulated
 * it with masks and was 1.8x slower than the 256-bit vpsignb + vpdpbusd one). The pair of F16
 * weight scales, 34 bytes apart, is two 16-bit broadcasts (the second masked to the upper
 * eight lanes) and one conversion; an odd last block takes a 256-bit step. Rows of one
 * activation row keep two accumulators (two pairs per step). */
PT_AVX512_FN static inline __m512 q8_dw_pair(const pt_block_q8_0 *bl) {
    __m256i h = _mm256_set1_epi16((short)bl[0].d);
    h = _mm256_mask_set1_epi16(h, 0xFF00, (short)bl[1].d);
    return _mm512_cvtph_ps(h);
}
PT_AVX512_FN static inline __m512i q8_w_pair(const pt_block_q8_0 *bl, __m512i flip) {
    __m512i q = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)bl[0].q));
    q = _mm512_inserti64x4(q, _mm256_loadu_si256((const __m256i *)bl[1].q), 1);
    return _mm512_xor_si512(q, flip);
}
PT_AVX512_FN static inline __attribute__((always_inline)) void nk_q8_avx512(const nk_args *a, int j0, int j1,
                                                                          const int rows) {
    const pt_weight *w = a->w;
    const size_t k = (size_t)w->k, nb = k / PT_Q8_0_BLOCK;
    const size_t xss = nb * PT_XS_PER_BLOCK; /* scale and correction slots per activation row */
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int j = j0; j < j1; j++) {
        const pt_block_q8_0 *bl = wrow(w, (size_t)j, 0);
        __m512 acc[PT_MATVEC_MAX_ROWS], acc1 = _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++) acc[r] = _mm512_setzero_ps();
        size_t b = 0;
        if (rows == 1) {
            const int32_t *xc = (const int32_t *)(a->xs + nb * PT_XS_LANES);
            for (; b + 4 <= nb; b += 4) {
                /* 8 KiB ahead (~10 rows at k 768): from memory the hardware prefetcher alone
                 * left each thread at ~24 GB/s; 2, 4, 8, 16 and 32 KiB ahead measured
                 * (100M model, 2 threads: the step 10% shorter at 8-16 KiB; 500M: 3%). */
                _mm_prefetch((const char *)(bl + b) + PT_Q8_PREFETCH, _MM_HINT_T0);
                _mm_prefetch((const char *)(bl + b) + PT_Q8_PREFETCH + 64, _MM_HINT_T0);
                __m512i w0 = q8_w_pair(bl + b, flip), w1 = q8_w_pair(bl + b + 2, flip);
                __m512i p0 = _mm512_dpbusd_epi32(_mm512_loadu_si512(xc + b * PT_XS_LANES), w0,
                                                 _mm512_loadu_si512(a->xq + b * PT_Q8_0_BLOCK));
                __m512i p1 = _mm512_dpbusd_epi32(_mm512_loadu_si512(xc + (b + 2) * PT_XS_LANES), w1,
                                                 _mm512_loadu_si512(a->xq + (b + 2) * PT_Q8_0_BLOCK));
                __m512 d0 = _mm512_mul_ps(q8_dw_pair(bl + b), _mm512_loadu_ps(a->xs + b * PT_XS_LANES));
                __m512 d1 = _mm512_mul_ps(q8_dw_pair(bl + b + 2), _mm512_loadu_ps(a->xs + (b + 2) * PT_XS_LANES));
                acc[0] = _mm512_fmadd_ps(d0, _mm512_cvtepi32_ps(p0), acc[0]);
                acc1 = _mm512_fmadd_ps(d1, _mm512_cvtepi32_ps(p1), acc1);
            }
        }
        for (; b + 2 <= nb; b += 2) {
            __m512i wq = q8_w_pair(bl + b, flip);
            __m512 dw = q8_dw_pair(bl + b);
#pragma GCC unroll 8
            for (int r = 0; r < rows; r++) {
                const float *xs = a->xs + (size_t)r * xss;
                __m512i p = _mm512_dpbusd_epi32(_mm512_loadu_si512(xs + (nb + b) * PT_XS_LANES), wq,
                                                _mm512_loadu_si512(a->xq + (size_t)r * k + b * PT_Q8_0_BLOCK));
                __m512 d = _mm512_mul_ps(dw, _mm512_loadu_ps(xs + b * PT_XS_LANES));
                acc[r] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc[r]);
            }
        }
        float tail[PT_MATVEC_MAX_ROWS] = {0};
        if (b < nb) {
            __m256i wq = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)bl[b].q), _mm512_castsi512_si256(flip));
            __m256 dw = _mm256_set1_ps(_cvtsh_ss(bl[b].d));
#pragma GCC unroll 8
            for (int r = 0; r < rows; r++) {
                const float *xs = a->xs + (size_t)r * xss;
                const int8_t *xq = a->xq + (size_t)r * k + b * PT_Q8_0_BLOCK;
                __m256i p = _mm256_dpbusd_epi32(_mm256_loadu_si256((const __m256i *)(xs + (nb + b) * PT_XS_LANES)), wq,
                                                _mm256_loadu_si256((const __m256i *)xq));
                __m256 d = _mm256_mul_ps(dw, _mm256_loadu_ps(xs + b * PT_XS_LANES));
                tail[r] = hsum256(_mm256_mul_ps(d, _mm256_cvtepi32_ps(p)));
            }
        }
        acc[0] = _mm512_add_ps(acc[0], acc1);
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++) nk_store(a, r, j, _mm512_reduce_add_ps(acc[r]) + tail[r]);
    }
}

/* More than 4 activation rows whose quantised values, scales and corrections (3 bytes per
 * input) do not fit in L1 beside the weight stream (over PT_Q8_L1_BYTES): two groups, the
 * first 4 rows and the rest, each a pass over a block of weight rows that the second then
 * reads from L2 (as nk_float_avx2). One thread, 2048 inputs, weights in cache: 8 rows (48
 * KiB) 12.3 GB/s of weights in two groups against 11.0 in one pass; 7 rows even; 5-6 rows
 * (30-36 KiB) 0.85-0.9x in two groups. */
#define PT_Q8_L1_BYTES (40u << 10)
PT_AVX512_FN static void nk_q8_rows_avx512(const nk_args *a, int j0, int j1) {
#define Q8_CALL(R) nk_q8_avx512(a, j0, j1, R)
    PT_ROWS_CASES(Q8_CALL)
#undef Q8_CALL
}
PT_AVX512_FN static void nk_q8_groups_avx512(const nk_args *a, int j0, int j1) {
    const size_t k = (size_t)a->w->k;
    if (a->rows <= 4 || (size_t)a->rows * k * 3 <= PT_Q8_L1_BYTES) {
        nk_q8_rows_avx512(a, j0, j1);
        return;
    }
    nk_args lo = *a, hi = *a;
    lo.rows = 4;
    hi.rows = a->rows - 4;
    hi.xq += 4 * k;
    hi.xs += 4 * (k / PT_Q8_0_BLOCK) * PT_XS_PER_BLOCK;
    hi.out += 4 * a->ldo;
    int jb = (int)(PT_NK_L2_BYTES / (pt_weight_bytes(a->w) / (size_t)a->w->n));
    if (jb < 1) jb = 1;
    for (int j = j0; j < j1; j += jb) {
        int j1b = j1 - j < jb ? j1 : j + jb;
        nk_q8_rows_avx512(&lo, j, j1b);
        nk_q8_rows_avx512(&hi, j, j1b);
    }
}

/* F32/F16/BF16 against 2 or more activation rows: register-blocked. A tile of JB weight rows
 * x R activation rows keeps JB*R 16-lane accumulators, so each activation load feeds JB
 * FMAs and each weight load (and F16/BF16 conversion) R of them; the one-weight-row ymm
 * kernel above issues a load per FMA and reached ~73 GFLOP/s on two threads for 8 rows,
 * against a 530 GFLOP/s 512-bit FMA peak. Inputs not a multiple of 16 end in a masked
 * step. */
PT_AVX512_FN static inline __m512 load_w16(pt_dtype t, const void *p, size_t i) {
    if (t == PT_F32) return _mm512_loadu_ps((const float *)p + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i));
    if (t == PT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
PT_AVX512_FN static inline __m512 load_w16_mask(pt_dtype t, const void *p, size_t i, __mmask16 m) {
    if (t == PT_F32) return _mm512_maskz_loadu_ps(m, (const float *)p + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i);
    if (t == PT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The sums of four vectors' lanes, in one vector: a transposing tree (13 shuffles and adds
 * where four separate reductions take ~32). */
PT_AVX512_FN static inline __m128 hsum4_512(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b)); /* a01 b01 a23 b23 per lane */
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    __m512 abcd = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))),
                                _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(abcd), _mm512_extractf32x8_ps(abcd, 1));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

#define PT_TILE_JB 4 /* most weight rows per tile */
/* Keeps a loaded vector in a register: GCC otherwise folds the load of an activation vector
 * into each of its JB FMAs, JB loads where one does (measured 10-25% slower). */
#define PT_IN_REG(v) __asm__("" : "+v"(v))
/* Each tile prefetches the weight rows PT_TILE_PF_TILES tiles ahead, a step at a time, into L2
 * (hint T1). On the Zen 4 host of 2026-12-07 (one thread, 8 rows, weights from DRAM:
 * bench_matmul --cold 256) T0 one tile ahead ran at 37-50 GFLOP/s and T1 two tiles ahead at
 * 65-90 on 512x512, 512x1376 and 1376x512 (T1 three tiles ahead, or T1 plus T0 one tile
 * ahead, the same within the noise); in cache both ~100. (On the Zen 5 host of 2026-12-05 T1
 * two tiles ahead measured 0.9x of T0 one tile ahead: docs/engine-perf.md.) */
#define PT_TILE_PF_TILES 2
#ifndef PT_NO_PF
#define PT_PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#else
#define PT_PREFETCH(p) (void)(p)
#endif

/* Weight rows j..j+JB-1 against activation rows r0..r0+R-1 over inputs [k0, k1): the sums
 * are stored (with the bias) when k0 is 0, else added to what the earlier input blocks
 * stored. */
PT_AVX512_FN static inline __attribute__((always_inline)) void tile_avx512(const nk_args *a, int j, int r0, int k0,
                                                                         int k1, pt_dtype t, const int JB,
                                                                         const int R) {
    const int k = a->w->k;
    const float *x = a->x + (size_t)r0 * k;
    const void *wr[PT_TILE_JB];
    const char *pf[PT_TILE_JB]; /* weight rows PT_TILE_PF_TILES tiles on, prefetched a step at a time */
    const size_t es = t == PT_F32 ? 4 : 2;
    __m512 acc[PT_TILE_JB * PT_MATVEC_MAX_ROWS]; /* [r * JB + b] */
#pragma GCC unroll 4
    for (int b = 0; b < JB; b++) {
        int jn = j + PT_TILE_PF_TILES * JB + b < a->w->n ? j + PT_TILE_PF_TILES * JB + b : a->w->n - 1;
        wr[b] = wrow(a->w, (size_t)(j + b), 0);
        pf[b] = wrow(a->w, (size_t)jn, 0);
    }
#pragma GCC unroll 32
    for (int q = 0; q < JB * R; q++) acc[q] = _mm512_setzero_ps();
    int i = k0;
    for (; i + 16 <= k1; i += 16) {
        __m512 wv[PT_TILE_JB];
#pragma GCC unroll 4
        for (int b = 0; b < JB; b++) {
            wv[b] = load_w16(t, wr[b], (size_t)i);
            PT_PREFETCH(pf[b] + (size_t)i * es);
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)r * k + i);
            PT_IN_REG(xv);
#pragma GCC unroll 4
            for (int b = 0; b < JB; b++) acc[r * JB + b] = _mm512_fmadd_ps(wv[b], xv, acc[r * JB + b]);
        }
    }
    if (i < k1) {
        __mmask16 m = (__mmask16)((1u << (k1 - i)) - 1);
        __m512 wv[PT_TILE_JB];
#pragma GCC unroll 4
        for (int b = 0; b < JB; b++) wv[b] = load_w16_mask(t, wr[b], (size_t)i, m);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)r * k + i);
#pragma GCC unroll 4
            for (int b = 0; b < JB; b++) acc[r * JB + b] = _mm512_fmadd_ps(wv[b], xv, acc[r * JB + b]);
        }
    }
    float sums[PT_TILE_JB * PT_MATVEC_MAX_ROWS + 3];
    int q = 0;
#pragma GCC unroll 8
    for (; q + 4 <= JB * R; q += 4) _mm_storeu_ps(sums + q, hsum4_512(acc[q], acc[q + 1], acc[q + 2], acc[q + 3]));
#pragma GCC unroll 4
    for (; q < JB * R; q++) sums[q] = _mm512_reduce_add_ps(acc[q]);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int b = 0; b < JB; b++) {
            float *o = &a->out[(size_t)(r0 + r) * a->ldo + (size_t)(j + b)];
            if (k0) *o += sums[r * JB + b];
            else *o = sums[r * JB + b] + (a->bias ? a->bias[j + b] : 0.f);
        }
}

/* Weight rows j0..j1 against activation rows r0..r0+R-1 over inputs [k0, k1): tiles of JB
 * weight rows, then the last (j1-j0) mod JB one at a time. */
PT_AVX512_FN static inline __attribute__((always_inline)) void tiles_avx512(const nk_args *a, int j0, int j1, int r0,
                                                                          int k0, int k1, pt_dtype t, const int JB,
                                                                          const int R) {
    int j = j0;
    for (; j + JB <= j1; j += JB) tile_avx512(a, j, r0, k0, k1, t, JB, R);
    for (; j < j1; j++) tile_avx512(a, j, r0, k0, k1, t, 1, R);
}

/* Weight rows per tile for R activation rows: JB*R accumulators plus JB weight vectors and
 * one activation vector within the 32 registers. */
/* (8 weight rows for 2 activation rows, or 6 for 3-4, measured 2.5-3x slower, one thread.) */
#define PT_TILE_ROWS_JB(R) ((R) <= 4 ? 4 : 3)

/* Any number of activation rows: groups of at most 8 (balanced: 12 rows go as 6 + 6), each
 * a pass of tiles over a block of weight rows that stays in L2 (PT_NK_L2_BYTES) for the next
 * group. The inputs go in blocks (of at most PT_NK_KBLOCK, balanced, multiples of 16) so that
 * a group's rows of one block stay in L1 beside the weight stream: with 8 rows of all 2048
 * inputs (64 KiB) the tiles ran at ~0.55x the rate of 512 inputs. */
#define PT_NK_KBLOCK 768
PT_AVX512_FN static inline __attribute__((always_inline)) void nk_float_avx512(const nk_args *a, int j0, int j1,
                                                                             pt_dtype t) {
    const pt_weight *w = a->w;
    const int rows = a->rows, k = w->k;
    int ng = (rows + PT_MATVEC_MAX_ROWS - 1) / PT_MATVEC_MAX_ROWS, g = (rows + ng - 1) / ng;
    int nkb = (k + PT_NK_KBLOCK - 1) / PT_NK_KBLOCK, kb = ((k + nkb - 1) / nkb + 15) / 16 * 16;
    int jb = j1 - j0;
    if (ng > 1 || nkb > 1) {
        size_t rb = pt_weight_bytes(w) / (size_t)w->n;
        jb = rb ? (int)(PT_NK_L2_BYTES / rb) / 12 * 12 : 12; /* a multiple of every JB */
        if (jb < 12) jb = 12;
    }
    for (int jb0 = j0; jb0 < j1; jb0 += jb) {
        int jb1 = j1 - jb0 < jb ? j1 : jb0 + jb;
        for (int k0 = 0; k0 < k; k0 += kb) {
            int k1 = k - k0 < kb ? k : k0 + kb;
            for (int r0 = 0; r0 < rows; r0 += g) {
                int R = rows - r0 < g ? rows - r0 : g;
                switch (R) {
#define PT_TILES_CASE(N)                                                                       \
    case N: tiles_avx512(a, jb0, jb1, r0, k0, k1, t, PT_TILE_ROWS_JB(N), N); break;
                    PT_TILES_CASE(1)
                    PT_TILES_CASE(2)
                    PT_TILES_CASE(3)
                    PT_TILES_CASE(4)
                    PT_TILES_CASE(5)
                    PT_TILES_CASE(6)
                    PT_TILES_CASE(7)
                    default: tiles_avx512(a, jb0, jb1, r0, k0, k1, t, PT_TILE_ROWS_JB(8), 8); break;
#undef PT_TILES_CASE
                }
            }
        }
    }
}

PT_AVX512_FN static void nk_avx512(const nk_args *a, int j0, int j1) {
    pt_dtype t = a->w->dtype;
    if (t != PT_Q8_0 && a->rows == 1) {
        nk_avx2(a, j0, j1);
        return;
    }
    if (t == PT_F32) {
        nk_float_avx512(a, j0, j1, PT_F32);
        return;
    }
    if (t == PT_F16) {
        nk_float_avx512(a, j0, j1, PT_F16);
        return;
    }
    if (t == PT_BF16) {
        nk_float_avx512(a, j0, j1, PT_BF16);
        return;
    }
    nk_q8_groups_avx512(a, j0, j1);
}
#undef PT_ROWS_CASES

PT_AVX512_FN static void quant_avx512(const float *x, int8_t *q, float *s, size_t k) {
    for (size_t b = 0; b < k / PT_Q8_0_BLOCK; b++) {
        const float *v = x + b * PT_Q8_0_BLOCK;
        __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16);
        float d = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1))) / 127.f;
        float id = d ? 1.f / d : 0.f;
        __m512 vid = _mm512_set1_ps(id);
        /* cvtps rounds to nearest even, as lrintf in the default mode; |values| <= 127 */
        _mm_storeu_si128((__m128i *)(q + b * PT_Q8_0_BLOCK), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, vid))));
        _mm_storeu_si128((__m128i *)(q + b * PT_Q8_0_BLOCK + 16),
                         _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, vid))));
        _mm256_storeu_ps(s + b * PT_XS_LANES, _mm256_set1_ps(d));
        __m256i c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80),
                                        _mm256_loadu_si256((const __m256i *)(q + b * PT_Q8_0_BLOCK)));
        _mm256_storeu_si256((__m256i *)(s + (k / PT_Q8_0_BLOCK + b) * PT_XS_LANES),
                            _mm256_sub_epi32(_mm256_setzero_si256(), c));
    }
}
PT_AVX512_FN static void axpy_avx512(float *y, float a, const float *x, int n) {
    __m512 va = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}
/* e^x for 16 lanes: 2^n · e^r with n = round(x·log2 e) and r = x − n·ln 2 (ln 2 in two
 * parts, so r is exact enough), |r| <= ln2/2, e^r by its degree-7 Taylor polynomial
 * (truncation below 2e-8 relative there); 2^n applied by scalef, which also gives 0 below
 * the smallest subnormal. NaN stays NaN (max/min return their second operand for it). */
PT_AVX512_FN static inline __m512 exp_avx512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(88.8f), _mm512_max_ps(_mm512_set1_ps(-104.f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    return _mm512_scalef_ps(p, n);
}

/* Eight keys per pass over q: eight accumulators, their sums by two transposing trees (a
 * reduction per key cost as much as the key's FMAs at hd 64); head dims not a multiple of 16
 * end in a masked step. */
PT_AVX512_FN static void scores_avx512(float *s, const float *q, const float *k, size_t ldk, int n, int hd,
                                       float scale) {
    const __mmask16 m = (__mmask16)((1u << (hd & 15)) - 1);
    const int hd16 = hd & ~15;
    const __m256 vs = _mm256_set1_ps(scale);
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        const float *kj = k + (size_t)j * ldk;
        __m512 acc[8];
#pragma GCC unroll 8
        for (int b = 0; b < 8; b++) acc[b] = _mm512_setzero_ps();
        int i = 0;
        for (; i < hd16; i += 16) {
            __m512 qv = _mm512_loadu_ps(q + i);
#pragma GCC unroll 8
            for (int b = 0; b < 8; b++) acc[b] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(kj + (size_t)b * ldk + i), acc[b]);
        }
        if (m) {
            __m512 qv = _mm512_maskz_loadu_ps(m, q + i);
#pragma GCC unroll 8
            for (int b = 0; b < 8; b++)
                acc[b] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, kj + (size_t)b * ldk + i), acc[b]);
        }
        __m256 lo = _mm256_castps128_ps256(hsum4_512(acc[0], acc[1], acc[2], acc[3]));
        lo = _mm256_insertf128_ps(lo, hsum4_512(acc[4], acc[5], acc[6], acc[7]), 1);
        _mm256_storeu_ps(s + j, _mm256_mul_ps(lo, vs));
    }
    for (; j < n; j++) {
        const float *kj = k + (size_t)j * ldk;
        __m512 acc = _mm512_setzero_ps();
        int i = 0;
        for (; i < hd16; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(kj + i), acc);
        if (m) acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), _mm512_maskz_loadu_ps(m, kj + i), acc);
        s[j] = _mm512_reduce_add_ps(acc) * scale;
    }
}

/* 64 values of z (four accumulators) per pass over the keys, then 16 at a time (masked). */
PT_AVX512_FN static void wsum_avx512(float *z, const float *p, const float *v, size_t ldv, int n, int hd) {
    int c = 0;
    for (; c + 64 <= hd; c += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < n; j++) {
            const float *vj = v + (size_t)j * ldv + c;
            __m512 pj = _mm512_set1_ps(p[j]);
            a0 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj), a0);
            a1 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 16), a1);
            a2 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 32), a2);
            a3 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 48), a3);
        }
        _mm512_storeu_ps(z + c, a0), _mm512_storeu_ps(z + c + 16, a1);
        _mm512_storeu_ps(z + c + 32, a2), _mm512_storeu_ps(z + c + 48, a3);
    }
    for (; c < hd; c += 16) {
        __mmask16 m = hd - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (hd - c)) - 1);
        __m512 a0 = _mm512_setzero_ps();
        for (int j = 0; j < n; j++)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), _mm512_maskz_loadu_ps(m, v + (size_t)j * ldv + c), a0);
        _mm512_mask_storeu_ps(z + c, m, a0);
    }
}

/* Attention's softmax was ~9% of a 512-token prefill with libm's expf per score. */
PT_AVX512_FN static void softmax_avx512(float *s, int n_valid, int n_total) {
    __m512 vm = _mm512_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 16 <= n_valid; j += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(s + j));
    __mmask16 t = (__mmask16)((1u << (n_valid - j)) - 1);
    vm = _mm512_mask_max_ps(vm, t, vm, _mm512_maskz_loadu_ps(t, s + j));
    __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(vm)), sum = _mm512_setzero_ps();
    for (j = 0; j + 16 <= n_valid; j += 16) {
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(s + j), m));
        _mm512_storeu_ps(s + j, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (j < n_valid) {
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, s + j), m));
        _mm512_mask_storeu_ps(s + j, t, e);
        sum = _mm512_mask_add_ps(sum, t, sum, e);
    }
    __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(sum));
    for (j = 0; j + 16 <= n_valid; j += 16) _mm512_storeu_ps(s + j, _mm512_mul_ps(_mm512_loadu_ps(s + j), inv));
    if (j < n_valid) _mm512_mask_storeu_ps(s + j, t, _mm512_mul_ps(_mm512_maskz_loadu_ps(t, s + j), inv));
    for (j = n_valid; j < n_total; j++) s[j] = 0.f;
}

PT_AVX512_FN static void swiglu_avx512(float *g, const float *u, size_t n) {
    const __m512 one = _mm512_set1_ps(1.f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m, g + i);
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), x));
        __m512 y = _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(m, u + i));
        _mm512_mask_storeu_ps(g + i, m, y);
    }
}
#endif /* PT_X86 */

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

static void swiglu_scalar(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.f + expf(-g[i])) * u[i];
}

static const cpu_kernels kernels_scalar = {.isa = PT_ISA_SCALAR, .nk = nk_scalar, .float_rows_any = 0,
                                           .quant = quant_scalar, .to_f32 = pt_to_f32, .axpy = axpy_scalar,
                                           .wsum = wsum_scalar, .softmax = softmax_row, .swiglu = swiglu_scalar};
#if PT_X86
static const cpu_kernels kernels_avx2 = {.isa = PT_ISA_AVX2, .nk = nk_avx2, .float_rows_any = 0,
                                         .quant = quant_avx2, .to_f32 = to_f32_avx2, .axpy = axpy_avx2,
                                         .wsum = wsum_avx2, .softmax = softmax_row, .swiglu = swiglu_scalar};
static const cpu_kernels kernels_avx512 = {.isa = PT_ISA_AVX512, .nk = nk_avx512, .float_rows_any = 1,
                                           .quant = quant_avx512, .to_f32 = to_f32_avx2, .axpy = axpy_avx512,
                                           .wsum = wsum_avx512, .scores = scores_avx512, .softmax = softmax_avx512,
                                           .swiglu = swiglu_avx512};
#endif

pt_cpu_isa pt_cpu_isa_best(void) {
#if PT_X86
    if (pt_cpu_has(PT_AVX512_FEATURES)) return PT_ISA_AVX512;
    if (pt_cpu_has(PT_AVX2_FEATURES)) return PT_ISA_AVX2;
#endif
    return PT_ISA_SCALAR;
}

const char *pt_cpu_isa_name(pt_cpu_isa isa) {
    switch (isa) {
    case PT_ISA_AUTO: return "auto";
    case PT_ISA_SCALAR: return "scalar";
    case PT_ISA_AVX2: return "avx2";
    case PT_ISA_AVX512: return "avx512";
    }
    return "?";
}

static const cpu_kernels *kernels_for(pt_cpu_isa isa) {
    switch (isa) {
#if PT_X86
    case PT_ISA_AVX512: return &kernels_avx512;
    case PT_ISA_AVX2: return &kernels_avx2;
#endif
    case PT_ISA_SCALAR: return &kernels_scalar;
    default: return NULL;
    }
}

/* ---- Q8_0 helpers (see backend.h) ---- */

void pt_q8_quantize_row(const float *x, pt_block_q8_0 *out, size_t n) {
    for (size_t b = 0; b < n / PT_Q8_0_BLOCK; b++) {
        float d;
        quant_block_scalar(x + b * PT_Q8_0_BLOCK, out[b].q, &d);
        out[b].d = pt_f32_to_f16(d);
    }
}

float pt_q8_dot(const pt_block_q8_0 *a, const pt_block_q8_0 *b, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n / PT_Q8_0_BLOCK; i++) {
        int32_t t = 0;
        for (int j = 0; j < PT_Q8_0_BLOCK; j++) t += (int32_t)a[i].q[j] * b[i].q[j];
        s += (float)t * pt_f16_to_f32(a[i].d) * pt_f16_to_f32(b[i].d);
    }
    return s;
}

/* ---- matmul -------------------------------------------------------------------------- */

/* One weight of a (multi-)matmul and, in decode, its range of the pool's tasks. */
typedef struct mm_item {
    float *out;
    const pt_weight *w;
    const float *bias;
    float *add_to;            /* epilogues, see pt_mm */
    const pt_weight *up;
    float *up_out;
    int chunk, n_chunks, task0;
} mm_item;

typedef struct mm_ctx mm_ctx;
/* Output columns [n0, n1) of weight w into out (with bias), on thread tid: decode's kernels or
 * prefill's sgemm. */
typedef void (*mm_range_fn)(const mm_ctx *c, const mm_item *it, const pt_weight *w, float *out, const float *bias,
                            int n0, int n1, int tid);

struct mm_ctx {
    mm_range_fn range;
    const cpu_kernels *kn;
    const float *x;
    int rows;
    const int8_t *xq;         /* decode, Q8_0 weights: x quantised */
    const float *xs;
    const mm_item *items;
    int n_items;
    float *tiles;             /* prefill: PT_TILE_FLOATS per thread, for non-F32 weights */
};

/* Conv1D layout, decode: out[r, n0:n1] = Σ_k x[r,k] · W[k, n0:n1]. */
static void mm_kn_range(const mm_ctx *c, const mm_item *it, int n0, int n1) {
    const pt_weight *w = it->w;
    int nc = n1 - n0;
    float seg[PT_KN_CHUNK];
    for (int r = 0; r < c->rows; r++) {
        float *o = it->out + (size_t)r * w->n + n0;
        for (int j = 0; j < nc; j++) o[j] = it->bias ? it->bias[n0 + j] : 0.f;
    }
    for (int kk = 0; kk < w->k; kk++) {
        const float *src;
        if (w->dtype == PT_F32) {
            src = (const float *)w->data + (size_t)kk * w->ld + n0;
        } else {
            c->kn->to_f32(w->dtype, wrow(w, (size_t)kk, (size_t)n0), seg, (size_t)nc);
            src = seg;
        }
        for (int r = 0; r < c->rows; r++) c->kn->axpy(it->out + (size_t)r * w->n + n0, c->x[(size_t)r * w->k + kk], src, nc);
    }
}

/* The epilogue of an item (see pt_mm) over its output columns [n0, n1) of every row. */
static void mm_epilogue(const cpu_kernels *kn, const mm_item *it, int rows, int n0, int n1) {
    const size_t n = (size_t)it->w->n;
    for (int r = 0; r < rows; r++) {
        float *o = it->out + (size_t)r * n;
        if (it->up_out) kn->swiglu(o + n0, it->up_out + (size_t)r * n + n0, (size_t)(n1 - n0));
        if (it->add_to) {
            float *y = it->add_to + (size_t)r * n;
            for (int j = n0; j < n1; j++) y[j] += o[j];
        }
    }
}

/* Q4_0 and K-quant NK weights: with AVX2, Q4_K and Q6_K rows go through quant_k.c's kernels
 * (values decoded in registers); else strips of rows are converted to F32 into this thread's
 * tile and the F32 kernel runs over the strip (16 rows of 4096 values are 256 KiB, in L2). */
#define PT_DEQ_ROWS 16
static void nk_dequant(const mm_ctx *c, const pt_weight *w, float *out, const float *bias, int n0, int n1, int tid) {
    const size_t k = (size_t)w->k;
    pt_qk_dot_fn dot = c->kn->isa >= PT_ISA_AVX2 ? pt_qk_dot_avx2(w->dtype) : NULL;
    if (dot) {
        for (int j = n0; j < n1; j++)
            for (int r = 0; r < c->rows; r++)
                out[(size_t)r * (size_t)w->n + (size_t)j] =
                    dot(wrow(w, (size_t)j, 0), c->x + (size_t)r * k, k) + (bias ? bias[j] : 0.f);
        return;
    }
    float *tile = c->tiles + (size_t)tid * PT_TILE_FLOATS;
    int per = PT_DEQ_ROWS;
    if ((size_t)per * k > PT_TILE_FLOATS) per = (int)(PT_TILE_FLOATS / k);
    if (per < 1) per = 1;
    for (int j = n0; j < n1; j += per) {
        int nr = n1 - j < per ? n1 - j : per;
        for (int r = 0; r < nr; r++) c->kn->to_f32(w->dtype, wrow(w, (size_t)(j + r), 0), tile + (size_t)r * k, k);
        pt_weight f = {PT_F32, tile, nr, w->k, k, PT_W_NK, w->name};
        nk_args a = {&f, c->x, NULL, NULL, c->rows, out + j, (size_t)w->n, bias ? bias + j : NULL};
        c->kn->nk(&a, 0, nr);
    }
}

/* Output columns [n0, n1) of weight w (NK or KN) into out. */
static void mm_decode_range(const mm_ctx *c, const mm_item *it, const pt_weight *w, float *out, const float *bias,
                            int n0, int n1, int tid) {
    if (w->layout == PT_W_NK) {
        nk_args a = {w, c->x, c->xq, c->xs, c->rows, out, (size_t)w->n, bias};
        if (w->dtype == PT_Q8_0 || !pt_dtype_is_quant(w->dtype)) c->kn->nk(&a, n0, n1);
        else nk_dequant(c, w, out, bias, n0, n1, tid);
    } else {
        mm_item one = *it;
        one.w = w, one.out = out, one.bias = bias;
        mm_kn_range(c, &one, n0, n1);
    }
}

/* Prefill: out[:, n0:n1] (rows, n) = x (rows, k) @ W[n0:n1]ᵀ by one single-threaded
 * cblas_sgemm on this thread; non-F32 weights are converted to F32 a tile at a time into
 * this thread's tile. */
static void mm_prefill_range(const mm_ctx *c, const mm_item *it, const pt_weight *w, float *out, const float *bias,
                             int n0, int n1, int tid) {
    (void)it;
    const int rows = c->rows, k = w->k, n = w->n, nc = n1 - n0;
    const float *x = c->x;
    float *tile = c->tiles + (size_t)tid * PT_TILE_FLOATS;
    if (w->dtype == PT_F32) {
        if (w->layout == PT_W_NK) /* W (n,k) */
            pt_sgemm(0, 1, rows, nc, k, 1.f, x, k,
                     (const float *)w->data + (size_t)n0 * w->ld, (int)w->ld, 0.f, out + n0, n);
        else /* W (k,n) */
            pt_sgemm(0, 0, rows, nc, k, 1.f, x, k,
                     (const float *)w->data + n0, (int)w->ld, 0.f, out + n0, n);
    } else if (w->layout == PT_W_NK) {
        /* Tiles of weight rows: out[:, j:j+nr] (rows,nr) = x (rows,k) @ tile^T (nr,k). */
        int per = (int)(PT_TILE_FLOATS / (size_t)k);
        if (per < 1) per = 1;
        for (int j = n0; j < n1; j += per) {
            int nr = n1 - j < per ? n1 - j : per;
            for (int r = 0; r < nr; r++) c->kn->to_f32(w->dtype, wrow(w, (size_t)(j + r), 0), tile + (size_t)r * k, (size_t)k);
            pt_sgemm(0, 1, rows, nr, k, 1.f, x, k, tile, k, 0.f, out + j, n);
        }
    } else {
        /* Tiles of input rows: out[:, n0:n1] += x[:, k0:k0+kr] (rows,kr) @ tile (kr,nc). */
        int per = (int)(PT_TILE_FLOATS / (size_t)nc);
        if (per < 1) per = 1;
        for (int k0 = 0; k0 < k; k0 += per) {
            int kr = k - k0 < per ? k - k0 : per;
            for (int r = 0; r < kr; r++)
                c->kn->to_f32(w->dtype, wrow(w, (size_t)(k0 + r), (size_t)n0), tile + (size_t)r * nc, (size_t)nc);
            pt_sgemm(0, 0, rows, nc, kr, 1.f, x + k0, k, tile, nc,
                     k0 ? 1.f : 0.f, out + n0, n);
        }
    }
    if (bias)
        for (int r = 0; r < rows; r++)
            for (int j = n0; j < n1; j++) out[(size_t)r * n + j] += bias[j];
}

/* One task of a matmul_multi dispatch: a block of output columns of one item (both weights
 * of a SwiGLU item), then the item's epilogue on that block. */
static void mm_task(void *arg, int task, int tid) {
    const mm_ctx *c = arg;
    int i = 0;
    while (i + 1 < c->n_items && task >= c->items[i + 1].task0) i++;
    const mm_item *it = &c->items[i];
    int n0 = (task - it->task0) * it->chunk, n1 = n0 + it->chunk;
    if (n1 > it->w->n) n1 = it->w->n;
    c->range(c, it, it->w, it->out, it->bias, n0, n1, tid);
    if (it->up) c->range(c, it, it->up, it->up_out, NULL, n0, n1, tid);
    if (it->add_to || it->up_out) mm_epilogue(c->kn, it, c->rows, n0, n1);
}

/* Runs items as tasks of blocks of output columns on the pool, each task one
 * single-threaded sgemm (OpenBLAS's own threads, once woken, spin for a long while after a
 * call and took a core from the decode steps that followed a prefill). */
static void mm_prefill_run(cpu_impl *im, mm_ctx *c, mm_item *items, int n_items) {
    int nt = im->pool->n, tasks = 0;
    for (int i = 0; i < n_items; i++) {
        /* ~4 tasks per thread, a multiple of 64 columns (and so of a Q8_0 block). */
        int chunk = (items[i].w->n / (nt * 4) + 63) / 64 * 64;
        if (chunk < 64) chunk = 64;
        items[i].chunk = chunk, items[i].n_chunks = (items[i].w->n + chunk - 1) / chunk;
        items[i].task0 = tasks;
        tasks += items[i].n_chunks;
    }
    c->range = mm_prefill_range, c->items = items, c->n_items = n_items, c->tiles = im->tile;
    int saved = pt_blas_single_begin();
    pt_pool_run(im->pool, mm_task, c, tasks);
    pt_blas_single_end(saved);
}

static int cpu_matmul_multi(pt_backend *b, const float *x, int rows, const pt_mm *mm, int n) {
    cpu_impl *im = b->impl;
    mm_ctx c = {.range = mm_decode_range, .kn = im->kn, .x = x, .rows = rows};
    assert(n >= 1 && n <= PT_MM_MAX);
    /* Decode (and, with the AVX-512 kernels, float NK weights up to b->nk_rows_max rows):
     * every such weight's row chunks are tasks of one pool dispatch. Chunks small enough to
     * balance two threads when one is disturbed, a multiple of the kernels' 4-row step. The
     * others go through sgemm. */
    mm_item items[PT_MM_MAX], pitems[PT_MM_MAX];
    int nt = im->pool->n, tasks = 0, need_q8 = 0, n_items = 0, n_pitems = 0;
    for (int i = 0; i < n; i++) {
        const pt_weight *w = mm[i].w, *up = mm[i].up;
        assert(w->k == mm[0].w->k);
        assert(!up || (up->n == w->n && up->k == w->k && up->layout == w->layout && mm[i].up_out && !mm[i].add_to));
        mm_item it = {mm[i].out, w, mm[i].bias, mm[i].add_to, up, up ? mm[i].up_out : NULL, 0, 0, tasks};
        if (rows > PT_MATVEC_MAX_ROWS && (rows > b->nk_rows_max || !im->kn->float_rows_any ||
                                          w->layout != PT_W_NK || pt_dtype_is_quant(w->dtype) ||
                                          (up && pt_dtype_is_quant(up->dtype)))) {
            pitems[n_pitems++] = it;
            continue;
        }
        /* (A SwiGLU item's task computes its rows of both weights. Its chunks are those of
         * the gate alone: the kernels' sums depend on where a chunk starts, and the fused
         * form must give exactly what gate and up as separate items give.) */
        int chunk;
        if (w->layout == PT_W_NK) {
            chunk = (w->n / (nt * 8) + 3) / 4 * 4;
            if (chunk < 16) chunk = 16;
            need_q8 |= w->dtype == PT_Q8_0 || (up && up->dtype == PT_Q8_0);
        } else {
            chunk = (w->n / (nt * 4) + 31) / 32 * 32;
            if (chunk < 32) chunk = 32;
            if (chunk > PT_KN_CHUNK) chunk = PT_KN_CHUNK;
        }
        it.chunk = chunk, it.n_chunks = (w->n + chunk - 1) / chunk;
        items[n_items++] = it;
        tasks += it.n_chunks;
    }
    if (n_pitems) {
        mm_ctx pc = c;
        mm_prefill_run(im, &pc, pitems, n_pitems);
    }
    if (!n_items) return PT_OK;
    if (need_q8) {
        /* The activation quantised once for all the weights (rows x k: a few KiB, on this
         * thread: a dispatch would cost more). */
        size_t k = (size_t)mm[0].w->k, nb = k / PT_Q8_0_BLOCK;
        if (grow((void **)&im->xq, &im->xq_cap, (size_t)rows * k, 1) ||
            grow((void **)&im->xs, &im->xs_cap, (size_t)rows * nb * PT_XS_PER_BLOCK, sizeof(float)))
            return PT_ENOMEM;
        for (int r = 0; r < rows; r++)
            im->kn->quant(x + (size_t)r * k, im->xq + (size_t)r * k, im->xs + (size_t)r * nb * PT_XS_PER_BLOCK, k);
        c.xq = im->xq, c.xs = im->xs;
    }
    c.items = items, c.n_items = n_items, c.tiles = im->tile;
    pt_pool_run(im->pool, mm_task, &c, tasks);
    return PT_OK;
}

static int cpu_matmul(pt_backend *b, float *out, const float *x, int rows, const pt_weight *w, const float *bias) {
    pt_mm one = {.out = out, .w = w, .bias = bias};
    return cpu_matmul_multi(b, x, rows, &one, 1);
}

static void cpu_sgemm_nt(pt_backend *b, float *out, const float *a, const float *bm, int rows, int n, int k) {
    /* out (rows,n) = a (rows,k) @ bm^T (n,k) */
    pt_sgemm(0, 1, rows, n, k, 1.f, a, k, bm, k, 0.f, out, n);
}

/* ---- attention ------------------------------------------------------------------------ */

typedef struct att_ctx {
    const pt_attn_args *a;    /* the sequences (decode: all of a call's short ones) */
    const int *task0;         /* decode: first task of each sequence, and the total at [n] */
    int n;
    const cpu_kernels *kn;
    float *scratch;           /* per thread: scratch_per floats */
    size_t scratch_per;
} att_ctx;

/* Query heads of a kv group scored together by the decode kernel (it takes up to
 * PT_MATVEC_MAX_ROWS activation rows): the largest divisor of the group that fits. */
static int att_heads_per_task(const pt_attn_args *a) {
    int group = a->n_heads / a->n_kv, per = group;
    while (per > PT_MATVEC_MAX_ROWS || group % per) per--;
    return per;
}

/* The factor of q·k: the caller's, or 1/√hd. */
static float att_scale(const pt_attn_args *a) { return a->scale > 0 ? a->scale : 1.f / sqrtf((float)a->head_dim); }

/* Gemma 2's attention-logit soft-capping of n scores: s = cap · tanh(s / cap). */
static void att_softcap(float *s, int n, float cap) {
    for (int j = 0; j < n; j++) s[j] = cap * tanhf(s[j] / cap);
}

/* Decode: one (sequence, query row, group of query heads sharing a kv head). The scores of
 * the group are one pass of the decode kernel over the cached keys (the group's queries as
 * its activation rows; a group of one query head: the set's scores kernel when it has one),
 * the weighted sum of values one wsum per head. */
static void att_task(void *arg, int task, int tid) {
    att_ctx *c = arg;
    int si = 0;
    while (si + 1 < c->n && task >= c->task0[si + 1]) si++;
    const pt_attn_args *a = &c->a[si];
    task -= c->task0[si];
    int per = att_heads_per_task(a), tasks_per_row = a->n_heads / per;
    int i = task / tasks_per_row, h0 = (task % tasks_per_row) * per;
    int hd = a->head_dim, tk = a->p0 + a->tq, nvalid = a->p0 + i + 1;
    int lo = a->window && nvalid > a->window ? nvalid - a->window : 0; /* first visible key */
    int kvh = h0 / (a->n_heads / a->n_kv);
    size_t qs = (size_t)a->n_heads * hd, ks = (size_t)a->n_kv * hd;
    float *s = c->scratch + (size_t)tid * c->scratch_per;
    nvalid -= lo, tk -= lo; /* scores of keys lo .. */
    const float *keys = a->k + (size_t)lo * ks + (size_t)kvh * hd, *q = a->q + i * qs + (size_t)h0 * hd;
    float scale = att_scale(a);
    if (per == 1 && c->kn->scores) {
        c->kn->scores(s, q, keys, ks, nvalid, hd, scale);
    } else {
        pt_weight kw = {PT_F32, keys, nvalid, hd, ks, PT_W_NK, "keys"};
        nk_args na = {&kw, q, NULL, NULL, per, s, (size_t)tk, NULL};
        c->kn->nk(&na, 0, nvalid);
        for (int r = 0; r < per; r++)
            for (int j = 0; j < nvalid; j++) s[(size_t)r * tk + j] *= scale;
    }
    for (int r = 0; r < per; r++) {
        float *sr = s + (size_t)r * tk;
        if (a->softcap > 0) att_softcap(sr, nvalid, a->softcap);
        c->kn->softmax(sr, nvalid, tk);
        c->kn->wsum(a->z + i * qs + (size_t)(h0 + r) * hd, sr, a->v + (size_t)lo * ks + (size_t)kvh * hd, ks, nvalid,
                    hd);
        if (a->pattern) {
            float *pr = a->pattern + ((size_t)(h0 + r) * a->tq + i) * (size_t)(tk + lo);
            memset(pr, 0, (size_t)lo * sizeof *pr);
            memcpy(pr + lo, sr, (size_t)tk * sizeof *sr);
        }
    }
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
    float *S = c->scratch + (size_t)tid * c->scratch_per;
    float scale = att_scale(a);
    /* S (qn,kn) = scale * Q_h (qn,hd) @ K_h^T (kn,hd) */
    pt_sgemm(0, 1, qn, kn, hd, scale, a->q + (size_t)i0 * qs + (size_t)h * hd,
             (int)qs, a->k + (size_t)kvh * hd, (int)ks, 0.f, S, kn);
    for (int i = 0; i < qn; i++) {
        int nvalid = a->p0 + i0 + i + 1, lo = a->window && nvalid > a->window ? nvalid - a->window : 0;
        if (a->softcap > 0) att_softcap(S + (size_t)i * kn + lo, nvalid - lo, a->softcap);
        c->kn->softmax(S + (size_t)i * kn + lo, nvalid - lo, kn - lo); /* keys before lo: weight 0 */
        memset(S + (size_t)i * kn, 0, (size_t)lo * sizeof(float));
        if (a->pattern) {
            float *pr = a->pattern + ((size_t)h * a->tq + i0 + i) * tk;
            memcpy(pr, S + (size_t)i * kn, (size_t)kn * sizeof(float));
            memset(pr + kn, 0, (size_t)(tk - kn) * sizeof(float));
        }
    }
    /* Z_h (qn,hd) = S (qn,kn) @ V_h (kn,hd) */
    pt_sgemm(0, 0, qn, hd, kn, 1.f, S, kn, a->v + (size_t)kvh * hd, (int)ks,
             0.f, a->z + (size_t)i0 * qs + (size_t)h * hd, (int)qs);
}

/* The decode-sized sequences a[0..n) (each tq < PT_ATT_SGEMM_MIN) as the tasks of one pool
 * dispatch, or on this thread when their work is small. */
static int att_decode(cpu_impl *im, const pt_attn_args *a, int n, int *task0) {
    size_t per_thread = 0;
    double work = 0;
    task0[0] = 0;
    for (int i = 0; i < n; i++) {
        int per = att_heads_per_task(&a[i]), tk = a[i].p0 + a[i].tq;
        if ((size_t)per * tk > per_thread) per_thread = (size_t)per * tk;
        work += (double)a[i].tq * a[i].n_heads * tk * a[i].head_dim;
        task0[i + 1] = task0[i] + a[i].tq * (a[i].n_heads / per);
    }
    if (grow((void **)&im->att, &im->att_cap, per_thread * im->pool->n, sizeof(float))) return PT_ENOMEM;
    att_ctx c = {a, task0, n, im->kn, im->att, per_thread};
    /* Short contexts on this thread: a pool dispatch costs more than the work. */
    if (work < PT_ATT_INLINE_WORK)
        for (int t = 0; t < task0[n]; t++) att_task(&c, t, 0);
    else
        pt_pool_run(im->pool, att_task, &c, task0[n]);
    return PT_OK;
}

static int cpu_attention(pt_backend *b, const pt_attn_args *a, int n) {
    cpu_impl *im = b->impl;
    /* Decode-sized sequences first, all in one dispatch: (sequence, row, head group) tasks.
     * Runs of them are gathered in place (a is the caller's; order is kept). */
    int task0_small[PT_ATT_BATCH_MAX + 1];
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && j - i < PT_ATT_BATCH_MAX && a[j].tq < PT_ATT_SGEMM_MIN) j++;
        if (j > i) {
            int rc = att_decode(im, a + i, j - i, task0_small);
            if (rc) return rc;
            i = j;
            continue;
        }
        /* Prefill: tasks of (head, chunk of query rows), OpenBLAS single-threaded inside. */
        int tk = a[i].p0 + a[i].tq, n_chunks = (a[i].tq + PT_ATT_QCHUNK - 1) / PT_ATT_QCHUNK;
        if (grow((void **)&im->att, &im->att_cap, (size_t)PT_ATT_QCHUNK * tk * im->pool->n, sizeof(float)))
            return PT_ENOMEM;
        att_ctx c = {&a[i], NULL, 1, im->kn, im->att, (size_t)PT_ATT_QCHUNK * tk};
        int saved = pt_blas_single_begin();
        pt_pool_run(im->pool, att_chunk_task, &c, a[i].n_heads * n_chunks);
        pt_blas_single_end(saved);
        i++;
    }
    return PT_OK;
}

/* ---- small ops ----------------------------------------------------------------------- */

static void cpu_swiglu(pt_backend *b, float *g, const float *u, size_t n) {
    ((cpu_impl *)b->impl)->kn->swiglu(g, u, n);
}

static void cpu_get_row(pt_backend *b, float *out, const pt_weight *w, int i) {
    cpu_impl *im = b->impl;
    im->kn->to_f32(w->dtype, wrow(w, (size_t)i, 0), out, (size_t)w->k);
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
        pt_pool_free(im->pool);
        free(im->tile);
        free(im->xq);
        free(im->xs);
        free(im->att);
        free(im->rope_cs);
        free(im);
    }
    free(b);
}

pt_backend *pt_backend_cpu_new(int n_threads) {
    pt_cpu_isa isa = PT_ISA_AUTO;
    const char *env = getenv("PARITY_CPU_ISA");
    if (env)
        for (int i = PT_ISA_SCALAR; i <= PT_ISA_AVX512; i++)
            if (!strcmp(env, pt_cpu_isa_name((pt_cpu_isa)i)) && i <= (int)pt_cpu_isa_best()) isa = (pt_cpu_isa)i;
    return pt_backend_cpu_new_isa(n_threads, isa);
}

pt_backend *pt_backend_cpu_new_isa(int n_threads, pt_cpu_isa isa) {
    if (isa == PT_ISA_AUTO) isa = pt_cpu_isa_best();
    if (isa > pt_cpu_isa_best() || !kernels_for(isa)) return NULL;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 256) n_threads = 256;
    pt_backend *b = calloc(1, sizeof *b);
    cpu_impl *im = calloc(1, sizeof *im);
    if (!b || !im) goto fail;
    b->impl = im;
    im->kn = kernels_for(isa);
    if (!(im->pool = pt_pool_new(n_threads))) goto fail;
    if (!(im->tile = malloc((size_t)im->pool->n * PT_TILE_FLOATS * sizeof(float)))) goto fail;
    b->name = "cpu";
    b->isa = isa;
    b->nk_rows_max = PT_MATVEC_MAX_ROWS;
    if (im->kn->float_rows_any) {
        const char *core = openblas_get_corename();
        int avx512_sgemm = core && (!strcasecmp(core, "SkylakeX") || !strcasecmp(core, "Cooperlake") ||
                                    !strcasecmp(core, "SapphireRapids"));
        b->nk_rows_max = avx512_sgemm ? PT_NK_ROWS_MAX_VS_AVX512_SGEMM : PT_NK_ROWS_MAX_VS_AVX2_SGEMM;
    }
    b->n_threads = im->pool->n;
    b->matmul = cpu_matmul;
    b->matmul_multi = cpu_matmul_multi;
    b->sgemm_nt = cpu_sgemm_nt;
    b->swiglu = cpu_swiglu;
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
