/* bench_distill — what distillation costs on top of plain training, measured in the same run:
 * a training step (forward + backward) with the distillation loss (forward and reverse KL,
 * T = 2, alpha = 0.1) against the same step with the hard-label cross-entropy, and the
 * expansion of a cached top-k row (pt_topk_row + temper) against a full-row log-softmax.
 *
 *   ./build/bench_distill [--d 128] [--layers 2] [--vocab 4096] [--batch 8] [--seq 128] [--steps 5] [--threads 2]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "engine/sample.h"
#include "train/distill.h"
#include "train/train.h"

static int arg(int argc, char **argv, const char *name, int def) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return atoi(argv[i + 1]);
    return def;
}

int main(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: bench_distill [--d 128] [--layers 2] [--vocab 4096] [--batch 8] [--seq 128] [--steps 5] "
               "[--threads 2]\n");
        return 0;
    }
    const int d = arg(argc, argv, "--d", 128), L = arg(argc, argv, "--layers", 2), V = arg(argc, argv, "--vocab", 4096),
              B = arg(argc, argv, "--batch", 8), T = arg(argc, argv, "--seq", 128), steps = arg(argc, argv, "--steps", 5),
              th = arg(argc, argv, "--threads", 2);
    pt_config c = {0};
    char js[512];
    snprintf(js, sizeof js,
             "{\"model_type\":\"llama\",\"vocab_size\":%d,\"hidden_size\":%d,\"intermediate_size\":%d,"
             "\"num_hidden_layers\":%d,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
             "\"max_position_embeddings\":%d,\"tie_word_embeddings\":true}",
             V, d, d * 8 / 3, L, T);
    pt_err err = {0};
    json_error_t je;
    json_t *j = json_loads(js, 0, &je);
    if (!j || pt_config_from_json(j, "bench", &c, &err)) {
        fprintf(stderr, "config: %s\n", err.msg);
        return 1;
    }
    json_decref(j);
    pt_train_opts o = {.max_batch = B, .max_seq = T, .n_threads = th, .seed = 1, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f};
    pt_trainer *t;
    if (pt_trainer_new(&c, &o, &t, &err)) {
        fprintf(stderr, "trainer: %s\n", err.msg);
        return 1;
    }
    const size_t N = (size_t)B * T;
    int32_t *tok = malloc(N * sizeof *tok), *tgt = malloc(N * sizeof *tgt);
    float *lq = malloc(N * (size_t)V * sizeof *lq);
    pt_rng r;
    pt_rng_seed(&r, 7);
    for (size_t i = 0; i < N; i++) tok[i] = (int32_t)pt_rng_below(&r, (uint64_t)V), tgt[i] = (int32_t)pt_rng_below(&r, (uint64_t)V);
    for (size_t i = 0; i < N * (size_t)V; i++) lq[i] = (float)pt_rng_normal(&r) * 3.f;
    for (size_t i = 0; i < N; i++) pt_log_softmax(lq + i * V, (size_t)V, lq + i * V), pt_distill_temper(lq + i * V, V, 2.f, lq + i * V);
    double best[3] = {1e30, 1e30, 1e30};
    for (int s = 0; s <= steps; s++)
        for (int m = 0; m < 3; m++) {
            pt_distill_loss dl = {lq, 2.f, 0.1f, m == 2};
            double t0 = pt_now(), ls;
            pt_trainer_zero_grad(t);
            int rc = m == 0 ? pt_trainer_forward_backward(t, tok, tgt, B, T, NULL, 1.f / (float)N, 1, &ls, NULL, &err)
                            : pt_trainer_forward_backward_distill(t, tok, tgt, B, T, &dl, 1.f / (float)N, 1, &ls, NULL, &err);
            if (rc) {
                fprintf(stderr, "step: %s\n", err.msg);
                return 1;
            }
            double el = pt_now() - t0;
            if (s > 0 && el < best[m]) best[m] = el; /* step 0 warms up */
        }
    printf("model llama d %d, %d layers, vocab %d, batch %d x %d, %d threads (best of %d steps)\n", d, L, V, B, T, th, steps);
    printf("step, hard-label CE     %8.1f ms   (reference)\n", best[0] * 1e3);
    printf("step, forward KL T=2    %8.1f ms   ratio %.3f\n", best[1] * 1e3, best[1] / best[0]);
    printf("step, reverse KL T=2    %8.1f ms   ratio %.3f\n", best[2] * 1e3, best[2] / best[0]);
    /* a top-64 cache row expanded + tempered vs a full-row log-softmax of engine logits */
    const uint32_t K = 64;
    size_t sz = PT_TOPK_HEADER + (size_t)K * 8;
    uint8_t *img = calloc(1, sz);
    memcpy(img, PT_TOPK_MAGIC, 8);
    uint32_t h32[] = {1, PT_TOPK_HEADER};
    memcpy(img + 8, h32, 8);
    uint64_t ntok = 2, nw = 1;
    memcpy(img + 16, &ntok, 8);
    uint32_t f[] = {1, K, (uint32_t)V, 0};
    memcpy(img + 32, f, 16);
    memcpy(img + 48, &nw, 8);
    for (uint32_t k = 0; k < K; k++) {
        float lp = -5.f - 0.05f * (float)k;
        memcpy(img + 64 + 4 * k, &k, 4), memcpy(img + 64 + 4 * (K + k), &lp, 4);
    }
    pt_topk cache;
    if (pt_topk_parse(img, sz, "bench", &cache, &err)) {
        fprintf(stderr, "topk: %s\n", err.msg);
        return 1;
    }
    const int R = 2000;
    double t0 = pt_now();
    for (int i = 0; i < R; i++) pt_log_softmax(lq + (size_t)(i % (int)N) * V, (size_t)V, lq + (size_t)(i % (int)N) * V);
    double tl = pt_now() - t0;
    t0 = pt_now();
    for (int i = 0; i < R; i++) {
        float *row = lq + (size_t)(i % (int)N) * V;
        pt_topk_row(&cache, 0, 0, 0, row);
        pt_distill_temper(row, V, 2.f, row);
    }
    double tk = pt_now() - t0;
    printf("row, log-softmax        %8.2f us   (reference)\n", tl / R * 1e6);
    printf("row, top-%u expand+temper %6.2f us   ratio %.3f\n", K, tk / R * 1e6, tk / tl);
    free(img), free(tok), free(tgt), free(lq);
    pt_trainer_free(t);
    return 0;
}
