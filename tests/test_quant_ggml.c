/* Q4_0 / Q4_K / Q5_K / Q6_K against ggml itself: libggml-base.so as node-llama-cpp 3.21.1
 * ships it prebuilt (npm @node-llama-cpp/linux-x64, pinned in tests/js-ggml and installed by
 * tests/npm-install.sh js-ggml, which this test runs), loaded with dlopen.
 *   - dequantisation: random blocks (random bytes, finite F16 scales) decode to the same
 *     floats, bit for bit, in parity (pt_to_f32) and in ggml (dequantize_row_*);
 *   - quantisation: parity's quantiser (pt_from_f32) writes the same bytes as ggml's
 *     reference quantize_row_*_ref, on Gaussian rows, rows with outliers, all-zero,
 *     constant, tiny and all-positive blocks; ggml decodes those bytes as parity does.
 * Skipped (exit 0 with a message) only where npm or the package cannot be had (no npm, not
 * linux-x64/glibc, no network on a first run). */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "engine/quant_k.h"
#include "engine/tensor.h"
#include "test.h"

typedef void (*ggml_quant_fn)(const float *x, void *y, int64_t k);
typedef void (*ggml_dequant_fn)(const void *x, float *y, int64_t k);

static const struct {
    pt_dtype t;
    const char *quant, *dequant;
} types[] = {
    {PT_Q4_0, "quantize_row_q4_0_ref", "dequantize_row_q4_0"},
    {PT_Q4_K, "quantize_row_q4_K_ref", "dequantize_row_q4_K"},
    {PT_Q5_K, "quantize_row_q5_K_ref", "dequantize_row_q5_K"},
    {PT_Q6_K, "quantize_row_q6_K_ref", "dequantize_row_q6_K"},
    {PT_Q8_0, "quantize_row_q8_0_ref", "dequantize_row_q8_0"},
};

#define N_VALUES (PT_QK_K * 16)

static uint16_t random_finite_f16(pt_rng *r) {
    for (;;) {
        uint16_t h = (uint16_t)pt_rng_next(r);
        if (((h >> 10) & 0x1f) != 0x1f) return h;
    }
}

/* Random bytes for n values of type t, with every F16 scale finite. */
static void random_blocks(pt_rng *r, pt_dtype t, uint8_t *b, size_t nbytes) {
    for (size_t i = 0; i < nbytes; i++) b[i] = (uint8_t)pt_rng_next(r);
    size_t bs = 0;
    pt_dtype_bytes(t, pt_dtype_block(t), &bs);
    for (size_t o = 0; o < nbytes; o += bs) {
        uint16_t *h = (uint16_t *)(b + o);
        if (t == PT_Q6_K) h = (uint16_t *)(b + o + bs - 2); /* d is last */
        h[0] = random_finite_f16(r);
        if (t == PT_Q4_K || t == PT_Q5_K) h[1] = random_finite_f16(r);
    }
}

/* Rows of different kinds, so that every branch of the quantisers runs. */
static void fill_row(pt_rng *r, int kind, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = (float)pt_rng_normal(r);
        switch (kind) {
        case 0: x[i] = g; break;                                   /* Gaussian */
        case 1: x[i] = 0.02f * g + (i % 97 == 0 ? 3.f * g : 0.f); break; /* outliers */
        case 2: x[i] = (i / 32) % 3 == 0 ? 0.f : g; break;         /* zero sub-blocks */
        case 3: x[i] = (i / 16) % 2 ? 0.5f : -1e-3f * g; break;    /* constant + tiny */
        case 4: x[i] = fabsf(g) + 0.1f; break;                     /* all positive */
        default: x[i] = 1e-30f * g; break;                         /* below F16's range */
        }
    }
}

int main(void) {
#if !defined(__x86_64__)
    /* The reference is ggml's prebuilt linux-x64 library: nothing to load on another CPU (the
     * arm64 build runs under qemu in make test). */
    printf("test_quant_ggml: SKIPPED: ggml's prebuilt reference library is linux-x64 only\n");
    return 0;
#endif
    const char *src = getenv("PARITY_SRC");
    char cmd[4096], lib[4096];
    snprintf(cmd, sizeof cmd, "bash '%s/tests/npm-install.sh' js-ggml", src ? src : ".");
    if (system(cmd) != 0) {
        printf("test_quant_ggml: SKIPPED: npm could not install @node-llama-cpp/linux-x64 (ggml's prebuilt "
               "library); needs npm and linux-x64 glibc\n");
        return 0;
    }
    snprintf(lib, sizeof lib, "%s/tests/js-ggml/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so",
             src ? src : ".");
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", lib, dlerror());
        return 1;
    }
    pt_rng rng;
    pt_rng_seed(&rng, 19);
    float *x = malloc(N_VALUES * sizeof *x), *yp = malloc(N_VALUES * sizeof *yp), *yg = malloc(N_VALUES * sizeof *yg);
    uint8_t *bp = malloc(N_VALUES * 2), *bg = malloc(N_VALUES * 2);
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        pt_dtype t = types[ti].t;
        ggml_quant_fn gq;
        ggml_dequant_fn gd;
        *(void **)&gq = dlsym(h, types[ti].quant);
        *(void **)&gd = dlsym(h, types[ti].dequant);
        CHECK(gq && gd);
        if (!gq || !gd) continue;
        size_t nbytes = 0;
        CHECK(pt_dtype_bytes(t, N_VALUES, &nbytes) == 0 && nbytes <= N_VALUES * 2);
        int deq_diff = 0, q_diff = 0, q_deq_diff = 0;
        for (int round = 0; round < 50; round++) {
            random_blocks(&rng, t, bp, nbytes);
            pt_to_f32(t, bp, yp, N_VALUES);
            gd(bp, yg, N_VALUES);
            deq_diff += memcmp(yp, yg, N_VALUES * sizeof *yp) != 0;
        }
        for (int kind = 0; kind < 6; kind++)
            for (int round = 0; round < 8; round++) {
                fill_row(&rng, kind, x, N_VALUES);
                CHECK(pt_from_f32(t, x, bp, N_VALUES) == 0);
                gq(x, bg, N_VALUES);
                if (memcmp(bp, bg, nbytes)) {
                    q_diff++;
                    size_t o = 0;
                    while (bp[o] == bg[o]) o++;
                    fprintf(stderr, "%s kind %d: first differing byte %zu (block %zu): %02x vs ggml's %02x\n",
                            pt_dtype_name(t), kind, o, o / (nbytes / (N_VALUES / pt_dtype_block(t))), bp[o], bg[o]);
                }
                pt_to_f32(t, bp, yp, N_VALUES);
                gd(bp, yg, N_VALUES);
                q_deq_diff += memcmp(yp, yg, N_VALUES * sizeof *yp) != 0;
            }
        printf("%s: dequantisation differs in %d of 50 rounds, quantisation in %d of 48, decoding our blocks in %d\n",
               pt_dtype_name(t), deq_diff, q_diff, q_deq_diff);
        CHECK(deq_diff == 0);
        CHECK(q_diff == 0);
        CHECK(q_deq_diff == 0);
    }
    free(x), free(yp), free(yg), free(bp), free(bg);
    dlclose(h);
    return test_summary("test_quant_ggml");
}
