/* test_backend_kernels.c — the CPU backend's kernels against a plain double-precision
 * reference: every weight dtype (F32, F16, BF16, Q8_0), both weight layouts, odd sizes,
 * 1..8 activation rows (the decode kernels, with the activation rows in one pass or in two
 * groups) and more (AVX-512's register-blocked kernel, and the sgemm path: every row count
 * to 64 and around the switch between them), with and without
 * bias; matmul_multi against separate matmuls, and its epilogues (residual add, SwiGLU)
 * against the plain products and the same loops; attention (decode on the calling thread and
 * on the pool, prefill by sgemm; grouped-query heads; the pattern; several sequences in one
 * call equal to each alone). Each test runs for every
 * instruction set this CPU supports (scalar, AVX2, AVX-512), so a machine without AVX-512
 * still checks the others, or (ctest's test_backend_kernels_<set>) for PARITY_CPU_ISA's. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "test.h"

static unsigned rng = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 8) & 0xffff) / 32768.f - 1.f;
}

/* A weight of the given dtype holding (after conversion) the values in w_f (n x k, as
 * logical matrix W[i_out][i_in]); w_f is replaced by the values the dtype actually stores. */
typedef struct test_weight {
    pt_weight w;
    void *data;
} test_weight;

static void make_weight(test_weight *tw, pt_dtype t, pt_wlayout layout, int n, int k, float *w_f) {
    size_t rows = layout == PT_W_NK ? (size_t)n : (size_t)k, cols = layout == PT_W_NK ? (size_t)k : (size_t)n;
    float *stored = malloc(rows * cols * sizeof(float));
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) stored[r * cols + c] = layout == PT_W_NK ? w_f[r * k + c] : w_f[c * k + r];
    size_t bytes = 0;
    pt_dtype_bytes(t, rows * cols, &bytes);
    tw->data = malloc(bytes);
    for (size_t r = 0; r < rows; r++) {
        size_t off = 0;
        pt_dtype_bytes(t, r * cols, &off);
        pt_from_f32(t, stored + r * cols, (char *)tw->data + off, cols);
    }
    /* read back what is stored */
    for (size_t r = 0; r < rows; r++) {
        size_t off = 0;
        pt_dtype_bytes(t, r * cols, &off);
        pt_to_f32(t, (char *)tw->data + off, stored + r * cols, cols);
    }
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) {
            if (layout == PT_W_NK) w_f[r * k + c] = stored[r * cols + c];
            else w_f[c * k + r] = stored[r * cols + c];
        }
    free(stored);
    tw->w = (pt_weight){t, tw->data, n, k, cols, layout, "test"};
}

/* Largest |x| of the Q8_0 block holding element i of row x. */
static float block_amax(const float *x, int i) {
    int b0 = i / PT_Q8_0_BLOCK * PT_Q8_0_BLOCK;
    float m = 0;
    for (int e = 0; e < PT_Q8_0_BLOCK; e++) m = fmaxf(m, fabsf(x[b0 + e]));
    return m;
}

/* out vs the double reference: within 1e-5 of Σ|w·x| for float weights; for Q8_0 weights
 * (the activation is quantised to Q8_0 blocks, error at most half a step, amax/254, per
 * element) within Σ|w|·amax/254 plus the same float slack. */
static int matmul_close(const float *out, const float *x, const float *w_f, const float *bias, int rows, int n, int k,
                        pt_dtype t) {
    int bad = 0;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < n; j++) {
            double ref = bias ? bias[j] : 0, mag = 0, qerr = 0, amax = 0;
            for (int i = 0; i < k; i++) {
                double p = (double)w_f[(size_t)j * k + i] * x[(size_t)r * k + i];
                ref += p, mag += fabs(p);
                if (t == PT_Q8_0 && i % PT_Q8_0_BLOCK == 0) amax = block_amax(x + (size_t)r * k, i);
                if (t == PT_Q8_0) qerr += fabs(w_f[(size_t)j * k + i]) * amax / 254.0;
            }
            double tol = 1e-5 * mag + 1e-6 + 1.001 * qerr;
            if (fabs(out[(size_t)r * n + j] - ref) > tol) {
                if (!bad)
                    fprintf(stderr, "  %s row %d out %d: %.7g vs reference %.7g (tolerance %.3g)\n", pt_dtype_name(t), r,
                            j, out[(size_t)r * n + j], ref, tol);
                bad++;
            }
        }
    return bad == 0;
}

/* b->matmul of the rows of x against w (bias may be NULL), checked against the double
 * reference of w_f (dtype t sets the tolerance); on failure the case, as fmt..., follows the
 * ISA on stderr. */
__attribute__((format(printf, 10, 11))) static void check_matmul(pt_backend *b, const pt_weight *w, const float *w_f,
                                                                const float *bias, const float *x, int rows, int n,
                                                                int k, pt_dtype t, const char *fmt, ...) {
    float *out = malloc((size_t)rows * n * sizeof(float));
    CHECK(out && b->matmul(b, out, x, rows, w, bias) == PT_OK);
    int ok = out && matmul_close(out, x, w_f, bias, rows, n, k, t);
    if (!ok) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "  isa %s ", pt_cpu_isa_name(b->isa));
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    CHECK(ok);
    free(out);
}

static void test_matmul(pt_cpu_isa isa) {
    pt_backend *b = pt_backend_cpu_new_isa(2, isa);
    CHECK(b != NULL && b->isa == isa);
    if (!b) return;
    /* k 800, 1500 and 2080 with 5-8 rows: the activation rows in two groups (over 24 KiB);
     * 1500 ends in a partial 16- and 8-input step; 300 x 4000: several 256 KiB blocks of
     * weight rows per task. Q8_0 blocks per row (k/32): 1, 3, 7 and 25 end in a single block
     * after the AVX-512 kernel's pairs (and, for one activation row, steps of four blocks), 2
     * and 6 do not, 65 is many steps and one more block; 150 x 2080 with 7-8 rows: the
     * AVX-512 Q8_0 kernel's two groups of activation rows over two blocks of weight rows.
     * 130 x 4160 past 8 rows (sgemm, non-F32 weights): a task's 64 weight rows (NK) or its
     * inputs (KN) take two of a thread's conversion tiles. */
    static const int sizes[][2] = {{1, 32},   {7, 96},   {37, 800}, {130, 64}, {5, 2080},   {64, 37},  {33, 100},
                                   {9, 1500}, {11, 224}, {3, 192},  {150, 2080}, {300, 4000}, {130, 4160}};
    static const int row_counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 20};
    const pt_dtype dts[] = {PT_F32, PT_F16, PT_BF16, PT_Q8_0};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (size_t di = 0; di < 4; di++)
            for (int layout = 0; layout < 2; layout++) {
                int n = sizes[si][0], k = sizes[si][1];
                pt_dtype t = dts[di];
                if (t == PT_Q8_0 && (k % 32 || layout == PT_W_KN)) continue; /* Q8_0: rows of whole blocks */
                if (n * k > 1000000 && (t != PT_F32 || layout == PT_W_KN)) continue; /* time: F32 NK only */
                float *w_f = malloc((size_t)n * k * sizeof(float)), *bias = malloc((size_t)n * sizeof(float));
                for (size_t i = 0; i < (size_t)n * k; i++) w_f[i] = frand();
                for (int j = 0; j < n; j++) bias[j] = frand();
                test_weight tw;
                make_weight(&tw, t, (pt_wlayout)layout, n, k, w_f);
                for (size_t ri = 0; ri < sizeof row_counts / sizeof row_counts[0]; ri++) {
                    int rows = row_counts[ri];
                    if (k == 4160 && (rows <= 8 || t == PT_F32)) continue; /* tiles only */
                    float *x = malloc((size_t)rows * k * sizeof(float));
                    for (size_t i = 0; i < (size_t)rows * k; i++) x[i] = frand() * (i % 7 == 3 ? 4.f : 1.f);
                    for (int with_bias = 0; with_bias < 2; with_bias++)
                        check_matmul(b, &tw.w, w_f, with_bias ? bias : NULL, x, rows, n, k, t,
                                     "dtype %s layout %s n %d k %d rows %d bias %d", pt_dtype_name(t),
                                     layout ? "KN" : "NK", n, k, rows, with_bias);
                    free(x);
                }
                free(tw.data), free(w_f), free(bias);
            }
    pt_backend_free(b);
}

/* Q8_0 weights with the extreme stored values (-128, which no quantiser here produces but a
 * GGUF file may hold, and 127) against activations at full scale (so quantised to ±127):
 * the AVX-512 kernel feeds weights to vpdpbusd as w ^ 0x80, exact for all of them. The
 * int32 block sums are exact, so only the scales' float rounding differs from the double
 * reference of the stored values. */
static void test_q8_extremes(pt_cpu_isa isa) {
    pt_backend *b = pt_backend_cpu_new_isa(2, isa);
    if (!b) return;
    const int n = 5, k = 224, nb = k / PT_Q8_0_BLOCK;
    pt_block_q8_0 *blk = malloc((size_t)n * nb * sizeof *blk);
    float *w_f = malloc((size_t)n * k * sizeof(float));
    for (int j = 0; j < n; j++)
        for (int bi = 0; bi < nb; bi++) {
            pt_block_q8_0 *bl = &blk[j * nb + bi];
            bl->d = pt_f32_to_f16(0.25f + 0.125f * (float)((j + bi) % 5));
            for (int e = 0; e < PT_Q8_0_BLOCK; e++) {
                int v = (e + j + bi) % 3 == 0 ? -128 : (e + bi) % 3 == 1 ? 127 : (e * 37 + j) % 255 - 127;
                bl->q[e] = (int8_t)v;
                w_f[(size_t)j * k + bi * PT_Q8_0_BLOCK + e] = pt_f16_to_f32(bl->d) * (float)v;
            }
        }
    pt_weight w = {PT_Q8_0, blk, n, k, (size_t)k, PT_W_NK, "extremes"};
    for (int rows = 1; rows <= 8; rows++) {
        float *x = malloc((size_t)rows * k * sizeof(float));
        /* ±1 with one full-scale 1 per block: the quantised activation is exactly ±127 */
        for (int i = 0; i < rows * k; i++) x[i] = (i * 7 + i / k) % 3 ? 1.f : -1.f;
        check_matmul(b, &w, w_f, NULL, x, rows, n, k, PT_F32, "Q8_0 extremes rows %d", rows);
        free(x);
    }
    free(blk), free(w_f);
    pt_backend_free(b);
}

/* Every row count from 1 to 64 and around the backend's nk_rows_max (its own kernels below,
 * sgemm above; with AVX-512 the register-blocked tiles: groups of up to 8 rows, 3 or 4
 * weight rows per tile, inputs in blocks of up to 768) for F32/F16/BF16 NK weights: n not a
 * multiple of 3 or 4, k odd and not a multiple of 16, k over one input block. */
static void test_matmul_rows(pt_cpu_isa isa) {
    pt_backend *b = pt_backend_cpu_new_isa(2, isa);
    if (!b) return;
    static const int sizes[][2] = {{37, 100}, {13, 777}, {50, 1553}};
    const pt_dtype dts[] = {PT_F32, PT_F16, PT_BF16};
    int lim = b->nk_rows_max, extra[] = {lim - 1, lim, lim + 1};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (size_t di = 0; di < 3; di++) {
            int n = sizes[si][0], k = sizes[si][1];
            float *w_f = malloc((size_t)n * k * sizeof(float)), *bias = malloc((size_t)n * sizeof(float));
            for (size_t i = 0; i < (size_t)n * k; i++) w_f[i] = frand();
            for (int j = 0; j < n; j++) bias[j] = frand();
            test_weight tw;
            make_weight(&tw, dts[di], PT_W_NK, n, k, w_f);
            for (int ri = 1; ri <= 64 + 3; ri++) {
                int rows = ri <= 64 ? ri : extra[ri - 65];
                if (rows <= 64 && ri > 64) continue; /* covered */
                float *x = malloc((size_t)rows * k * sizeof(float));
                for (size_t i = 0; i < (size_t)rows * k; i++) x[i] = frand();
                check_matmul(b, &tw.w, w_f, rows % 2 ? bias : NULL, x, rows, n, k, dts[di],
                             "dtype %s n %d k %d rows %d (nk_rows_max %d)", pt_dtype_name(dts[di]), n, k, rows, lim);
                free(x);
            }
            free(tw.data), free(w_f), free(bias);
        }
    pt_backend_free(b);
}

/* matmul_multi gives exactly what separate matmuls give (decode and prefill), with weights
 * of different dtypes and output widths sharing one input. */
static void test_matmul_multi(pt_cpu_isa isa) {
    pt_backend *b = pt_backend_cpu_new_isa(2, isa);
    if (!b) return;
    const int k = 192, ns[3] = {96, 40, 200};
    const pt_dtype dts[3] = {PT_Q8_0, PT_F32, PT_F16};
    test_weight tw[3];
    float *bias = malloc(200 * sizeof(float));
    for (int j = 0; j < 200; j++) bias[j] = frand();
    for (int i = 0; i < 3; i++) {
        float *w_f = malloc((size_t)ns[i] * k * sizeof(float));
        for (size_t e = 0; e < (size_t)ns[i] * k; e++) w_f[e] = frand();
        make_weight(&tw[i], dts[i], PT_W_NK, ns[i], k, w_f);
        free(w_f);
    }
    static const int row_counts[] = {1, 4, 8, 17};
    for (size_t ri = 0; ri < 4; ri++) {
        int rows = row_counts[ri];
        float *x = malloc((size_t)rows * k * sizeof(float));
        for (size_t e = 0; e < (size_t)rows * k; e++) x[e] = frand();
        float *sep[3], *mul[3];
        pt_mm mm[3];
        for (int i = 0; i < 3; i++) {
            sep[i] = malloc((size_t)rows * ns[i] * sizeof(float));
            mul[i] = malloc((size_t)rows * ns[i] * sizeof(float));
            CHECK(b->matmul(b, sep[i], x, rows, &tw[i].w, i == 1 ? bias : NULL) == PT_OK);
            mm[i] = (pt_mm){.out = mul[i], .w = &tw[i].w, .bias = i == 1 ? bias : NULL};
        }
        CHECK(b->matmul_multi(b, x, rows, mm, 3) == PT_OK);
        for (int i = 0; i < 3; i++) {
            CHECK(!memcmp(sep[i], mul[i], (size_t)rows * ns[i] * sizeof(float)));
            free(sep[i]), free(mul[i]);
        }
        free(x);
    }
    for (int i = 0; i < 3; i++) free(tw[i].data);
    free(bias);
    pt_backend_free(b);
}

/* matmul_multi's epilogues (pt_mm.add_to: a residual add; pt_mm.up: SwiGLU) give exactly
 * what the plain products followed by the same elementwise loop give, in one call together
 * with a plain product: decode row counts, the register-blocked kernel's, and sgemm's; both
 * layouts; F32 and Q8_0 weights. */
static void test_matmul_epilogues(pt_cpu_isa isa) {
    pt_backend *b = pt_backend_cpu_new_isa(2, isa);
    if (!b) return;
    const int k = 160, n = 232;
    static const int row_counts[] = {1, 3, 8, 13, 40};
    for (int layout = PT_W_NK; layout <= PT_W_KN; layout++)
        for (int di = 0; di < 2; di++) {
            pt_dtype t = di ? PT_Q8_0 : PT_F32;
            if (t == PT_Q8_0 && layout == PT_W_KN) continue; /* (Q8_0 is NK only) */
            test_weight tw[3]; /* gate, up, a third weight (with bias) */
            float *bias = malloc(n * sizeof(float));
            for (int j = 0; j < n; j++) bias[j] = frand();
            for (int i = 0; i < 3; i++) {
                float *w_f = malloc((size_t)n * k * sizeof(float));
                for (size_t e = 0; e < (size_t)n * k; e++) w_f[e] = frand();
                make_weight(&tw[i], t, (pt_wlayout)layout, n, k, w_f);
                free(w_f);
            }
            for (size_t ri = 0; ri < sizeof row_counts / sizeof row_counts[0]; ri++) {
                int rows = row_counts[ri];
                size_t m = (size_t)rows * n;
                float *x = malloc((size_t)rows * k * sizeof(float)), *g = malloc(m * sizeof(float)),
                      *u = malloc(m * sizeof(float)), *o = malloc(m * sizeof(float)), *res = malloc(m * sizeof(float)),
                      *g2 = malloc(m * sizeof(float)), *u2 = malloc(m * sizeof(float)),
                      *o2 = malloc(m * sizeof(float)), *res2 = malloc(m * sizeof(float));
                for (size_t e = 0; e < (size_t)rows * k; e++) x[e] = frand();
                for (size_t e = 0; e < m; e++) res[e] = res2[e] = frand();
                CHECK(b->matmul(b, g, x, rows, &tw[0].w, NULL) == PT_OK);
                CHECK(b->matmul(b, u, x, rows, &tw[1].w, NULL) == PT_OK);
                CHECK(b->matmul(b, o, x, rows, &tw[2].w, bias) == PT_OK);
                b->swiglu(b, g, u, m);
                for (size_t e = 0; e < m; e++) res[e] += o[e];
                pt_mm mm[2] = {{.out = g2, .w = &tw[0].w, .up = &tw[1].w, .up_out = u2},
                               {.out = o2, .w = &tw[2].w, .bias = bias, .add_to = res2}};
                CHECK(b->matmul_multi(b, x, rows, mm, 2) == PT_OK);
                CHECK(!memcmp(g, g2, m * sizeof(float)));
                CHECK(!memcmp(u, u2, m * sizeof(float)));
                CHECK(!memcmp(o, o2, m * sizeof(float)));
                CHECK(!memcmp(res, res2, m * sizeof(float)));
                free(x), free(g), free(u), free(o), free(res), free(g2), free(u2), free(o2), free(res2);
            }
            for (int i = 0; i < 3; i++) free(tw[i].data);
            free(bias);
        }
    pt_backend_free(b);
}

/* Attention against a double reference: softmax(q·kᵀ/√hd + causal mask)·v per head, query
 * head h reading kv head h / (n_heads / n_kv). */
static void test_attention(pt_cpu_isa isa) {
    pt_backend *b = pt_backend_cpu_new_isa(2, isa);
    if (!b) return;
    /* n_heads, n_kv, head_dim, p0, tq: decode on the calling thread (short), on the pool
     * (long context), grouped heads of 4 and of 12 (split in two groups of 6), prefill;
     * one query head per kv head (the scores kernel: blocks of 8 keys and the rest, head
     * dims a multiple of 16 or not) */
    static const int cases[][5] = {{4, 4, 16, 5, 1},  {8, 2, 20, 40, 1}, {12, 1, 8, 3, 2},   {6, 3, 64, 600, 1},
                                   {8, 2, 24, 0, 40}, {4, 1, 32, 7, 20}, {12, 12, 64, 1, 3}, {2, 2, 3, 0, 1},
                                   {8, 8, 64, 100, 1}, {4, 4, 40, 20, 1}, {2, 2, 80, 9, 2},  {3, 3, 7, 30, 1}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int H = cases[ci][0], KV = cases[ci][1], hd = cases[ci][2], p0 = cases[ci][3], tq = cases[ci][4], tk = p0 + tq;
        size_t qs = (size_t)H * hd, ks = (size_t)KV * hd;
        float *q = malloc(tq * qs * sizeof(float)), *k = malloc(tk * ks * sizeof(float)),
              *v = malloc(tk * ks * sizeof(float)), *z = malloc(tq * qs * sizeof(float)),
              *pat = malloc((size_t)H * tq * tk * sizeof(float)), *s = malloc((size_t)tk * sizeof(double) * 2);
        for (size_t i = 0; i < tq * qs; i++) q[i] = frand();
        for (size_t i = 0; i < tk * ks; i++) k[i] = frand(), v[i] = frand();
        pt_attn_args a = {q, k, v, z, pat, tq, p0, H, KV, hd, 0, 0, 0};
        CHECK(b->attention(b, &a, 1) == PT_OK);
        double worst = 0, worst_p = 0;
        double *sc = (double *)s;
        for (int i = 0; i < tq; i++)
            for (int h = 0; h < H; h++) {
                int kvh = h / (H / KV), nv = p0 + i + 1;
                double m = -1e300, sum = 0;
                for (int j = 0; j < nv; j++) {
                    double d = 0;
                    for (int e = 0; e < hd; e++) d += (double)q[i * qs + h * hd + e] * k[j * ks + kvh * hd + e];
                    sc[j] = d / sqrt((double)hd);
                    if (sc[j] > m) m = sc[j];
                }
                for (int j = 0; j < nv; j++) sum += sc[j] = exp(sc[j] - m);
                for (int j = 0; j < tk; j++) {
                    double p = j < nv ? sc[j] / sum : 0;
                    double got = pat[((size_t)h * tq + i) * tk + j];
                    if (fabs(got - p) > worst_p) worst_p = fabs(got - p);
                }
                for (int e = 0; e < hd; e++) {
                    double ref = 0;
                    for (int j = 0; j < nv; j++) ref += sc[j] / sum * v[j * ks + kvh * hd + e];
                    double d = fabs(z[i * qs + h * hd + e] - ref);
                    if (d > worst) worst = d;
                }
            }
        if (worst > 1e-5 || worst_p > 1e-6)
            fprintf(stderr, "  isa %s attention case %zu: max |z - ref| %.3g, |pattern - ref| %.3g\n",
                    pt_cpu_isa_name(isa), ci, worst, worst_p);
        CHECK(worst <= 1e-5);
        CHECK(worst_p <= 1e-6);
        free(q), free(k), free(v), free(z), free(pat), free(s);
    }
    pt_backend_free(b);
}

/* Several sequences in one attention call (one dispatch for the decode-sized ones, the
 * prefill one by sgemm, contexts on and off the calling thread) give what each gives alone. */
static void test_attention_batch(pt_cpu_isa isa) {
    pt_backend *b = pt_backend_cpu_new_isa(2, isa);
    if (!b) return;
    enum { NS = 6, H = 8, KV = 2, HD = 40 };
    static const int p0s[NS] = {3, 700, 0, 31, 9, 250}, tqs[NS] = {1, 1, 20, 2, 1, 3};
    pt_attn_args a[NS];
    float *bufs[NS][4], *z1[NS];
    for (int i = 0; i < NS; i++) {
        int tk = p0s[i] + tqs[i];
        size_t qs = (size_t)H * HD, ks = (size_t)KV * HD;
        bufs[i][0] = malloc(tqs[i] * qs * sizeof(float));
        bufs[i][1] = malloc(tk * ks * sizeof(float));
        bufs[i][2] = malloc(tk * ks * sizeof(float));
        bufs[i][3] = malloc(tqs[i] * qs * sizeof(float));
        z1[i] = malloc(tqs[i] * qs * sizeof(float));
        for (size_t e = 0; e < tqs[i] * qs; e++) bufs[i][0][e] = frand();
        for (size_t e = 0; e < tk * ks; e++) bufs[i][1][e] = frand(), bufs[i][2][e] = frand();
        a[i] = (pt_attn_args){bufs[i][0], bufs[i][1], bufs[i][2], z1[i], NULL, tqs[i], p0s[i], H, KV, HD, 0, 0, 0};
        CHECK(b->attention(b, &a[i], 1) == PT_OK);
        a[i].z = bufs[i][3];
    }
    CHECK(b->attention(b, a, NS) == PT_OK);
    for (int i = 0; i < NS; i++) {
        CHECK(memcmp(z1[i], bufs[i][3], (size_t)tqs[i] * H * HD * sizeof(float)) == 0);
        for (int j = 0; j < 4; j++) free(bufs[i][j]);
        free(z1[i]);
    }
    pt_backend_free(b);
}

/* Each set supported here; those the CPU lacks give NULL; PARITY_CPU_ISA picks one. */
static void test_isa_choice(void) {
    const char *env = getenv("PARITY_CPU_ISA");
    char *saved = env ? strdup(env) : NULL;
    unsetenv("PARITY_CPU_ISA");
    pt_cpu_isa best = pt_cpu_isa_best();
    CHECK(best >= PT_ISA_SCALAR && best <= PT_ISA_AVX512);
    for (int i = PT_ISA_SCALAR; i <= PT_ISA_AVX512; i++) {
        pt_backend *b = pt_backend_cpu_new_isa(1, (pt_cpu_isa)i);
        CHECK((b != NULL) == (i <= (int)best));
        pt_backend_free(b);
    }
    pt_backend *b = pt_backend_cpu_new(1);
    CHECK(b && b->isa == best);
    pt_backend_free(b);
    setenv("PARITY_CPU_ISA", "scalar", 1);
    b = pt_backend_cpu_new(1);
    CHECK(b && b->isa == PT_ISA_SCALAR);
    pt_backend_free(b);
    unsetenv("PARITY_CPU_ISA");
    if (saved) setenv("PARITY_CPU_ISA", saved, 1);
    free(saved);
    printf("best instruction set here: %s\n", pt_cpu_isa_name(best));
}

/* The sets to test: PARITY_CPU_ISA's alone when it is set (ctest runs this once per set the
 * CPU has; naming one it lacks or an unknown one fails), else every set this CPU supports. */
static int isa_range(int *lo, int *hi) {
    const char *env = getenv("PARITY_CPU_ISA");
    *lo = PT_ISA_SCALAR;
    *hi = (int)pt_cpu_isa_best();
    if (!env) return 1;
    for (int i = PT_ISA_SCALAR; i <= *hi; i++)
        if (!strcmp(env, pt_cpu_isa_name((pt_cpu_isa)i))) {
            pt_backend *b = pt_backend_cpu_new(1);
            CHECK(b && b->isa == (pt_cpu_isa)i);
            pt_backend_free(b);
            *lo = *hi = i;
            return 1;
        }
    fprintf(stderr, "PARITY_CPU_ISA=%s: not an instruction set this CPU supports (best: %s)\n", env,
            pt_cpu_isa_name(pt_cpu_isa_best()));
    return 0;
}

/* b->swiglu against the double formula (within 2e-6 relative, or 1e-30: silu underflows at
 * about -88 where the double value is still a subnormal) over [-110, 110] (exp clamps at the
 * ends), zeros, tiny values, and lengths that end in a partial vector; NaN stays NaN. */
static void test_swiglu(pt_cpu_isa isa) {
    pt_backend *b = pt_backend_cpu_new_isa(1, isa);
    if (!b) return;
    enum { N = 2203 };
    static float g[N], u[N], ref[N];
    for (int i = 0; i < N; i++) {
        g[i] = -110.f + 220.f * (float)i / (N - 1);
        u[i] = i % 3 ? frand() : 1.f;
    }
    g[5] = 0.f, g[6] = -0.f, g[7] = 1e-30f, g[8] = -1e-30f, g[9] = 88.7f, g[10] = -88.7f;
    for (int i = 0; i < N; i++) ref[i] = (float)((double)g[i] / (1.0 + exp(-(double)g[i])) * u[i]);
    for (int n = 1; n <= 40; n += 13) { /* short rows: only a masked tail */
        float gg[40];
        memcpy(gg, g + 600, sizeof gg);
        b->swiglu(b, gg, u + 600, (size_t)n);
        int ok = 1;
        for (int i = 0; i < n; i++) ok &= fabsf(gg[i] - ref[600 + i]) <= 2e-6f * fabsf(ref[600 + i]) + 1e-30f;
        CHECK(ok);
    }
    b->swiglu(b, g, u, N);
    int bad = 0;
    for (int i = 0; i < N; i++)
        if (!(fabsf(g[i] - ref[i]) <= 2e-6f * fabsf(ref[i]) + 1e-30f)) {
            if (!bad) fprintf(stderr, "  isa %s swiglu element %d: %.9g vs %.9g\n", pt_cpu_isa_name(isa), i, g[i], ref[i]);
            bad++;
        }
    CHECK(bad == 0);
    float nan_g = NAN, one = 1.f;
    b->swiglu(b, &nan_g, &one, 1);
    CHECK(isnan(nan_g));
    pt_backend_free(b);
}

int main(void) {
    test_isa_choice();
    int lo, hi, known = isa_range(&lo, &hi);
    CHECK(known);
    for (int i = lo; known && i <= hi; i++) {
        printf("instruction set: %s\n", pt_cpu_isa_name((pt_cpu_isa)i));
        test_matmul((pt_cpu_isa)i);
        test_matmul_rows((pt_cpu_isa)i);
        test_q8_extremes((pt_cpu_isa)i);
        test_matmul_multi((pt_cpu_isa)i);
        test_matmul_epilogues((pt_cpu_isa)i);
        test_attention((pt_cpu_isa)i);
        test_attention_batch((pt_cpu_isa)i);
        test_swiglu((pt_cpu_isa)i);
    }
    return test_summary("backend_kernels");
}
