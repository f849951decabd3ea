/* test_quant_kernels.c — the CPU backend's matmuls on Q4_0, Q4_K, Q5_K and Q6_K weights
 * against a double-precision reference of the values the blocks store (pt_to_f32, which
 * test_quant_ggml checks against ggml): decode (1-8 activation rows: quant_k.c's AVX2
 * kernels for Q4_K/Q6_K, F32 kernels over dequantised strips for the others) and prefill
 * (9 and 20 rows: tiles converted for sgemm), with and without bias, Q4_0 also in Conv1D (KN)
 * layout; for every instruction set this CPU supports. Tolerance 1e-5 of Σ|w·x| (float
 * summation order only: no activation quantisation). Also the AVX2 dot kernels alone on rows
 * whose blocks hold extreme scales and values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "engine/backend.h"
#include "engine/quant_k.h"
#include "test.h"

static pt_rng rng;
static float frand(void) { return (float)(pt_rng_uniform(&rng) * 2 - 1); }

/* A weight of dtype t holding w_f (n x k logical, W[out][in]) quantised; w_f becomes the
 * stored values. */
static void *make_weight(pt_weight *w, pt_dtype t, pt_wlayout layout, int n, int k, float *w_f) {
    size_t rows = layout == PT_W_NK ? (size_t)n : (size_t)k, cols = layout == PT_W_NK ? (size_t)k : (size_t)n;
    float *s = malloc(rows * cols * sizeof *s);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) s[r * cols + c] = layout == PT_W_NK ? w_f[r * k + c] : w_f[c * k + r];
    size_t bytes = 0;
    pt_dtype_bytes(t, rows * cols, &bytes);
    void *data = malloc(bytes);
    pt_from_f32(t, s, data, rows * cols);
    pt_to_f32(t, data, s, rows * cols);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) {
            if (layout == PT_W_NK) w_f[r * k + c] = s[r * cols + c];
            else w_f[c * k + r] = s[r * cols + c];
        }
    free(s);
    *w = (pt_weight){t, data, n, k, cols, layout, "test"};
    return data;
}

static int close_to_ref(const float *out, const float *x, const float *w_f, const float *bias, int rows, int n, int k) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < n; j++) {
            double ref = bias ? bias[j] : 0, mag = 0;
            for (int i = 0; i < k; i++) {
                double p = (double)w_f[(size_t)j * k + i] * x[(size_t)r * k + i];
                ref += p, mag += fabs(p);
            }
            if (fabs(out[(size_t)r * n + j] - ref) > 1e-5 * mag + 1e-6) {
                fprintf(stderr, "  row %d out %d: %.7g vs %.7g\n", r, j, out[(size_t)r * n + j], ref);
                return 0;
            }
        }
    return 1;
}

static void test_matmul(pt_cpu_isa isa) {
    pt_backend *b = pt_backend_cpu_new_isa(2, isa);
    CHECK(b != NULL);
    if (!b) return;
    static const pt_dtype dts[] = {PT_Q4_0, PT_Q4_K, PT_Q5_K, PT_Q6_K};
    static const int sizes[][2] = {{1, 256}, {37, 512}, {130, 768}, {5, 2304}};
    static const int row_counts[] = {1, 2, 3, 5, 8, 9, 20};
    for (size_t di = 0; di < 4; di++)
        for (size_t si = 0; si < 4; si++)
            for (int layout = 0; layout < 2; layout++) {
                pt_dtype t = dts[di];
                int n = sizes[si][0], k = sizes[si][1];
                if (layout == PT_W_KN && (t != PT_Q4_0 || n % 32)) continue; /* KN: 32-value blocks only */
                float *w_f = malloc((size_t)n * k * sizeof *w_f), *bias = malloc((size_t)n * sizeof *bias);
                for (size_t i = 0; i < (size_t)n * k; i++) w_f[i] = frand() * (i % 61 == 7 ? 5.f : 1.f);
                for (int j = 0; j < n; j++) bias[j] = frand();
                pt_weight w;
                void *data = make_weight(&w, t, (pt_wlayout)layout, n, k, w_f);
                for (size_t ri = 0; ri < sizeof row_counts / sizeof *row_counts; ri++) {
                    int rows = row_counts[ri];
                    float *x = malloc((size_t)rows * k * sizeof *x), *out = malloc((size_t)rows * n * sizeof *out);
                    for (size_t i = 0; i < (size_t)rows * k; i++) x[i] = frand();
                    for (int wb = 0; wb < 2; wb++) {
                        CHECK(b->matmul(b, out, x, rows, &w, wb ? bias : NULL) == PT_OK);
                        int ok = close_to_ref(out, x, w_f, wb ? bias : NULL, rows, n, k);
                        if (!ok)
                            fprintf(stderr, "  isa %s %s %s n %d k %d rows %d bias %d\n", pt_cpu_isa_name(isa),
                                    pt_dtype_name(t), layout ? "KN" : "NK", n, k, rows, wb);
                        CHECK(ok);
                    }
                    free(x), free(out);
                }
                free(data), free(w_f), free(bias);
            }
    pt_backend_free(b);
}

/* The AVX2 kernels on random bytes (every value and scale pattern, finite F16 scales) against
 * dequantise-then-dot in double. */
static void test_dot_random_blocks(void) {
    static const pt_dtype dts[] = {PT_Q4_K, PT_Q6_K};
    for (int di = 0; di < 2; di++) {
        pt_qk_dot_fn dot = pt_qk_dot_avx2(dts[di]);
        CHECK(dot != NULL);
        if (!dot) continue;
        enum { K = 1024 };
        size_t bytes = 0;
        pt_dtype_bytes(dts[di], K, &bytes);
        uint8_t *blk = malloc(bytes);
        float w[K], x[K];
        int bad = 0;
        for (int round = 0; round < 200; round++) {
            for (size_t i = 0; i < bytes; i++) blk[i] = (uint8_t)pt_rng_next(&rng);
            size_t bs = bytes / (K / PT_QK_K);
            for (size_t o = 0; o < bytes; o += bs) { /* F16 scales in [2^-10, 2) */
                uint16_t h = (uint16_t)(0x1400 + pt_rng_below(&rng, 0x2800));
                memcpy(blk + o + (dts[di] == PT_Q6_K ? bs - 2 : 0), &h, 2);
                if (dts[di] == PT_Q4_K) memcpy(blk + o + 2, &h, 2);
            }
            for (int i = 0; i < K; i++) x[i] = frand();
            pt_to_f32(dts[di], blk, w, K);
            double ref = 0, mag = 0;
            for (int i = 0; i < K; i++) ref += (double)w[i] * x[i], mag += fabs((double)w[i] * x[i]);
            double got = dot(blk, x, K);
            if (fabs(got - ref) > 1e-5 * mag + 1e-6) {
                if (!bad) fprintf(stderr, "  %s dot %.7g vs %.7g\n", pt_dtype_name(dts[di]), got, ref);
                bad++;
            }
        }
        CHECK(bad == 0);
        free(blk);
    }
}

int main(void) {
    pt_rng_seed(&rng, 7);
    for (int isa = PT_ISA_SCALAR; isa <= (int)pt_cpu_isa_best(); isa++) test_matmul((pt_cpu_isa)isa);
    if (pt_cpu_isa_best() >= PT_ISA_AVX2) test_dot_random_blocks();
    else printf("no AVX2 here: the AVX2 dot kernels are not run\n");
    return test_summary("test_quant_kernels");
}
