/* bench_matmul — the CPU backend's matmul for few to many activation rows, against
 * cblas_sgemm on the same shapes and threads, interleaved in rounds (this machine is
 * shared: read the ratios, not the absolute rates).
 *
 * usage: bench_matmul [--threads 2] [--rounds 3] [--dtype F32|F16|BF16|Q8_0]
 *                     [--rows 2,4,8,16,24,64,169,512] [--shapes 512x512,1376x512,...]
 *                     [--weight-offset BYTES] [--cold MB]
 * A shape is NxK: a weight of N outputs and K inputs (NK layout, as HF Linear).
 * Per shape and row count, each round times (best of a few calls): the backend with the
 * best instruction set, its own kernels at every row count (nk_rows_max raised; with AVX-512
 * the register-blocked kernel), the backend with the AVX2 kernels (what the AVX-512 set used
 * before it had its own float kernels; sgemm beyond 8 rows), and cblas_sgemm directly on
 * F32 weights (Q8_0 weights: the decode kernels up to 8 rows, the prefill tiles beyond).
 * Prints the GFLOP/s ranges over the rounds and the ratios' ranges. Inputs
 * are 64-byte aligned as the engine's activations are (unaligned 64-byte loads straddle
 * cache lines: ~0.55x for 8 rows of 512 inputs). --weight-offset places the weights that many
 * bytes past a 64-byte boundary (safetensors files place tensors at any multiple of 8).
 * --cold MB makes copies of each weight, at least MB MiB in all, and has each call read the
 * next copy: with MB beyond the last-level cache every call reads its weight from DRAM, as
 * the engine's decode step does (one pass over each weight between the others'). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "engine/backend.h"

#define MAXV 32

static int parse_list(const char *s, int *v, int max) {
    int n = 0;
    while (*s && n < max) {
        v[n++] = atoi(s);
        s = strchr(s, ',');
        if (!s) break;
        s++;
    }
    return n;
}

/* Best seconds of a few calls, repeated until ~50 ms have passed (at least 3), each call on
 * the next of the nw copies of the weight. */
static double time_mm(pt_backend *b, float *out, const float *x, int rows, const pt_weight *w, int nw) {
    double best = 1e9, t_all = pt_now();
    for (int rep = 0; rep < 3 || pt_now() - t_all < 0.05; rep++) {
        double t0 = pt_now();
        b->matmul(b, out, x, rows, &w[rep % nw], NULL);
        double dt = pt_now() - t0;
        if (dt < best) best = dt;
        if (rep > 1000) break;
    }
    return best;
}

/* The same for cblas_sgemm, on the copies when the weights are F32 (else on wf alone). */
static double time_sgemm(float *out, const float *x, int rows, const float *wf, const pt_weight *w, int nw, int n,
                         int k) {
    double best = 1e9, t_all = pt_now();
    for (int rep = 0; rep < 3 || pt_now() - t_all < 0.05; rep++) {
        const float *wr = w[0].dtype == PT_F32 ? (const float *)w[rep % nw].data : wf;
        double t0 = pt_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, k, 1.f, x, k, wr, k, 0.f, out, n);
        double dt = pt_now() - t0;
        if (dt < best) best = dt;
        if (rep > 1000) break;
    }
    return best;
}

int main(int argc, char **argv) {
    int threads = 2, rounds = 3, woff = 0, cold_mb = 0;
    int rows_v[MAXV], n_rows = parse_list("2,4,8,16,24,64,169,512", rows_v, MAXV);
    int shp[MAXV][2], n_shp = 0;
    const char *shapes = "512x512,1376x512,512x1376,2048x768,768x2048";
    pt_dtype dt = PT_F32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) n_rows = parse_list(argv[++i], rows_v, MAXV);
        else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) shapes = argv[++i];
        else if (!strcmp(argv[i], "--weight-offset") && i + 1 < argc) woff = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cold") && i + 1 < argc) cold_mb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            i++;
            dt = !strcmp(argv[i], "F16")    ? PT_F16
                 : !strcmp(argv[i], "BF16") ? PT_BF16
                 : !strcmp(argv[i], "Q8_0") ? PT_Q8_0
                                            : PT_F32;
        } else {
            fprintf(stderr, "usage: bench_matmul [--threads N] [--rounds N] [--dtype F32|F16|BF16|Q8_0] [--rows a,b] "
                            "[--shapes NxK,...] [--weight-offset BYTES] [--cold MB]\n");
            return 2;
        }
    }
    for (const char *s = shapes; *s && n_shp < MAXV;) {
        shp[n_shp][0] = atoi(s);
        const char *xk = strchr(s, 'x');
        if (!xk) break;
        shp[n_shp++][1] = atoi(xk + 1);
        s = strchr(xk, ',');
        if (!s) break;
        s++;
    }
    pt_backend *best = pt_backend_cpu_new_isa(threads, PT_ISA_AUTO);
    if (best) best->nk_rows_max = 1 << 30; /* always our kernel: the comparison is the point */
    pt_backend *avx2 = pt_backend_cpu_new_isa(threads, PT_ISA_AVX2);
    if (!best) return 1;
    const char *oc = getenv("OPENBLAS_CORETYPE");
    printf("threads %d, kernels %s vs %s vs cblas_sgemm (OPENBLAS_CORETYPE=%s), weights %s, offset %d, cold %d MiB\n",
           threads, pt_cpu_isa_name(best->isa), avx2 ? "avx2" : "-", oc ? oc : "(unset)", pt_dtype_name(dt), woff,
           cold_mb);
    printf("%-10s %5s  %-26s %-26s %-26s  %s\n", "shape", "rows", "GFLOP/s best (range)", "avx2 (range)",
           "sgemm (range)", "best/sgemm  best/avx2");
    for (int si = 0; si < n_shp; si++) {
        int n = shp[si][0], k = shp[si][1];
        size_t nk = (size_t)n * k, bytes = 0;
        float *wf = malloc(nk * sizeof(float));
        for (size_t i = 0; i < nk; i++) wf[i] = (float)((i * 2654435761u) % 1000) / 1000.f - 0.5f;
        pt_dtype_bytes(dt, nk, &bytes);
        size_t stride = (bytes + 127) / 64 * 64;
        int nw = (int)(((size_t)cold_mb << 20) / stride) + 1;
        char *wbuf = aligned_alloc(64, stride * (size_t)nw);
        pt_weight *w = malloc((size_t)nw * sizeof *w);
        if (!wbuf || !w) return 1;
        for (int c = 0; c < nw; c++) {
            char *wd = wbuf + stride * (size_t)c + woff;
            pt_from_f32(dt, wf, wd, nk);
            w[c] = (pt_weight){dt, wd, n, k, (size_t)k, PT_W_NK, "bench"};
        }
        for (int ri = 0; ri < n_rows; ri++) {
            int rows = rows_v[ri];
            float *x = aligned_alloc(64, ((size_t)rows * k * sizeof(float) + 63) / 64 * 64),
                  *out = malloc((size_t)rows * n * sizeof(float));
            for (size_t i = 0; i < (size_t)rows * k; i++) x[i] = (float)(i % 17) / 17.f - 0.5f;
            double flop = 2.0 * rows * n * k;
            double g[3][2] = {{1e30, 0}, {1e30, 0}, {1e30, 0}}, rs[2][2] = {{1e30, 0}, {1e30, 0}};
            for (int r = 0; r < rounds; r++) {
                double v[3];
                v[0] = flop / time_mm(best, out, x, rows, w, nw) / 1e9;
                v[1] = avx2 ? flop / time_mm(avx2, out, x, rows, w, nw) / 1e9 : 0;
                v[2] = flop / time_sgemm(out, x, rows, wf, w, nw, n, k) / 1e9;
                for (int q = 0; q < 3; q++) {
                    if (v[q] < g[q][0]) g[q][0] = v[q];
                    if (v[q] > g[q][1]) g[q][1] = v[q];
                }
                double ra[2] = {v[0] / v[2], v[1] ? v[0] / v[1] : 0};
                for (int q = 0; q < 2; q++) {
                    if (ra[q] < rs[q][0]) rs[q][0] = ra[q];
                    if (ra[q] > rs[q][1]) rs[q][1] = ra[q];
                }
            }
            char c[3][40];
            for (int q = 0; q < 3; q++) snprintf(c[q], sizeof c[q], "%6.1f-%6.1f", g[q][0], g[q][1]);
            printf("%4dx%-5d %5d  %-26s %-26s %-26s  %.2f-%.2fx  %.2f-%.2fx\n", n, k, rows, c[0], c[1], c[2],
                   rs[0][0], rs[0][1], rs[1][0], rs[1][1]);
            fflush(stdout);
            free(x), free(out);
        }
        free(wf), free(wbuf), free(w);
    }
    pt_backend_free(best);
    pt_backend_free(avx2);
    return 0;
}
