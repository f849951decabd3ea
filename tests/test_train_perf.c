/* test_train_perf — the trainer's fast paths must not change what it computes:
 *   - gradients do not depend on the thread count (the products are split in blocks over
 *     the trainer's pool; the split must not change any result beyond rounding);
 *   - LoRA with dropout: the analytic gradient of the adapter matches central finite
 *     differences of the same masked network (the counter-based mask is redrawn exactly
 *     in the backward, in parallel row ranges);
 *   - skipping the gradient below the first layer when the embeddings are frozen leaves
 *     every trained tensor's gradient unchanged. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/lora.h"
#include "engine/sample.h"
#include "test.h"
#include "train/train.h"

#define B_ 4
#define T_ 32

static pt_config llama_cfg(void) {
    pt_config c = {.arch = PT_ARCH_LLAMA, .vocab_size = 61, .d_model = 64, .n_layers = 2, .n_heads = 4,
                   .n_kv_heads = 2, .head_dim = 16, .d_ff = 176, .max_pos = 32, .norm_eps = 1e-5f,
                   .rope_theta = 10000.f, .tie_embeddings = 1, .bos_token_id = -1};
    return c;
}

static pt_config gpt2_cfg(void) {
    pt_config c = {.arch = PT_ARCH_GPT2, .vocab_size = 67, .d_model = 64, .n_layers = 2, .n_heads = 4,
                   .n_kv_heads = 4, .head_dim = 16, .d_ff = 256, .max_pos = 32, .norm_eps = 1e-5f,
                   .tie_embeddings = 1, .attn_bias = 1, .mlp_bias = 1, .bos_token_id = -1};
    return c;
}

static pt_trainer *mk(const pt_config *c, int threads) {
    pt_train_opts o = {.max_batch = B_, .max_seq = T_, .n_threads = threads, .seed = 7, .beta1 = 0.9f,
                       .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.f};
    pt_err err = {0};
    pt_trainer *t = NULL;
    if (pt_trainer_new(c, &o, &t, &err)) fprintf(stderr, "trainer: %s\n", err.msg);
    return t;
}

static void data(int V, int32_t *tok, int32_t *tgt) {
    pt_rng r;
    pt_rng_seed(&r, 99);
    for (int i = 0; i < B_ * T_; i++) tok[i] = (int32_t)pt_rng_below(&r, (uint64_t)V);
    for (int i = 0; i < B_ * T_; i++) tgt[i] = i % 7 == 3 ? PT_IGNORE_INDEX : (int32_t)pt_rng_below(&r, (uint64_t)V);
}

static double fb(pt_trainer *t, const int32_t *tok, const int32_t *tgt, int backward) {
    pt_err err = {0};
    double loss = 0;
    size_t cnt = 0;
    pt_trainer_zero_grad(t);
    if (pt_trainer_forward_backward(t, tok, tgt, B_, T_, NULL, 1.f, backward, &loss, &cnt, &err)) {
        fprintf(stderr, "forward_backward: %s\n", err.msg);
        return NAN;
    }
    return loss;
}

/* max |a - b| / (max |b| + tiny) over n floats */
static double reldiff(const float *a, const float *b, size_t n) {
    double m = 0, s = 1e-30;
    for (size_t i = 0; i < n; i++) {
        m = fmax(m, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return m / s;
}

static void threads_invariant(const pt_config *c) {
    int32_t tok[B_ * T_], tgt[B_ * T_];
    data(c->vocab_size, tok, tgt);
    pt_trainer *t1 = mk(c, 1), *t3 = mk(c, 3);
    CHECK(t1 && t3);
    if (!t1 || !t3) return;
    double l1 = fb(t1, tok, tgt, 1), l3 = fb(t3, tok, tgt, 1);
    CHECK(fabs(l1 - l3) <= 1e-5 * fabs(l1));
    size_t n = pt_trainer_n_params(t1);
    double rd = reldiff(pt_trainer_grad_block(t3), pt_trainer_grad_block(t1), n);
    if (!(rd < 1e-5)) fprintf(stderr, "arch %d: gradients 1 vs 3 threads differ by %g (relative)\n", c->arch, rd);
    CHECK(rd < 1e-5);
    /* and the gradient is not trivially zero */
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fabs(pt_trainer_grad_block(t1)[i]);
    CHECK(s > 1e-3);
    pt_trainer_free(t1), pt_trainer_free(t3);
}

/* Freezing the embeddings (tied: lm_head too) skips the first layer's input gradient; every
 * tensor still trained must get the gradient it gets when nothing is frozen. */
static void frozen_embeddings(const pt_config *c) {
    int32_t tok[B_ * T_], tgt[B_ * T_];
    data(c->vocab_size, tok, tgt);
    pt_trainer *a = mk(c, 2), *b = mk(c, 2);
    CHECK(a && b);
    if (!a || !b) return;
    size_t nf = pt_trainer_freeze(b, c->arch == PT_ARCH_LLAMA ? "embed_tokens" : "wte", 1);
    if (c->arch == PT_ARCH_GPT2) nf += pt_trainer_freeze(b, "wpe", 1);
    CHECK(nf >= 1);
    fb(a, tok, tgt, 1), fb(b, tok, tgt, 1);
    size_t n;
    const pt_train_tensor *ts = pt_trainer_tensors(b, &n);
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        if (ts[i].frozen) continue;
        double rd = reldiff(pt_trainer_grad_block(b) + ts[i].offset, pt_trainer_grad_block(a) + ts[i].offset,
                            ts[i].numel);
        if (!(rd < 1e-6)) fprintf(stderr, "%s: gradient differs by %g with frozen embeddings\n", ts[i].name, rd);
        CHECK(rd < 1e-6);
        checked++;
    }
    CHECK(checked > 4);
    pt_trainer_free(a), pt_trainer_free(b);
}

/* Loss of the masked network with adapter block `x` (a fresh trainer: the same masks). */
static double lora_loss(const pt_config *c, pt_lora *l, const float *x, const int32_t *tok, const int32_t *tgt,
                        float *grad_out) {
    memcpy(l->block, x, l->n_params * sizeof(float));
    pt_trainer *t = mk(c, 2);
    pt_err err = {0};
    if (!t || pt_trainer_attach_lora(t, l, 0.3f, 1234, &err)) {
        fprintf(stderr, "attach: %s\n", err.msg);
        pt_trainer_free(t);
        return NAN;
    }
    double loss = fb(t, tok, tgt, 1);
    if (grad_out) memcpy(grad_out, pt_trainer_lora_grads(t), l->n_params * sizeof(float));
    pt_trainer_free(t);
    return loss;
}

static void lora_dropout_fd(void) {
    pt_config c = llama_cfg();
    int32_t tok[B_ * T_], tgt[B_ * T_];
    data(c.vocab_size, tok, tgt);
    pt_lora *l = NULL;
    unsigned mask;
    pt_err err = {0};
    if (pt_lora_parse_targets("all", &c, &mask, &err) || pt_lora_new(&c, 4, 8.f, mask, 5, &l, &err)) {
        fprintf(stderr, "lora: %s\n", err.msg);
        CHECK(0);
        return;
    }
    size_t n = l->n_params;
    float *x0 = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float)), *xp = malloc(n * sizeof(float));
    float *dir = malloc(n * sizeof(float));
    pt_rng r;
    pt_rng_seed(&r, 3);
    for (size_t i = 0; i < n; i++) x0[i] = (float)(((pt_rng_next(&r) >> 11) * 0x1.0p-53) - 0.5) * 0.2f;
    lora_loss(&c, l, x0, tok, tgt, g);
    /* Directional derivatives along a few random directions (and along the gradient). */
    for (int k = 0; k < 4; k++) {
        double nn = 0;
        for (size_t i = 0; i < n; i++) {
            dir[i] = k == 0 ? g[i] : (float)pt_rng_normal(&r);
            nn += (double)dir[i] * dir[i];
        }
        double an = 0;
        for (size_t i = 0; i < n; i++) dir[i] = (float)(dir[i] / sqrt(nn)), an += (double)g[i] * dir[i];
        const float h = 2e-2f;
        for (size_t i = 0; i < n; i++) xp[i] = x0[i] + h * dir[i];
        double lp = lora_loss(&c, l, xp, tok, tgt, NULL);
        for (size_t i = 0; i < n; i++) xp[i] = x0[i] - h * dir[i];
        double lm = lora_loss(&c, l, xp, tok, tgt, NULL);
        double fd = (lp - lm) / (2.0 * h);
        int ok = fabs(fd - an) <= 2e-2 * fabs(an) + 2e-3;
        if (!ok) fprintf(stderr, "LoRA dropout direction %d: analytic %.6g, finite differences %.6g\n", k, an, fd);
        CHECK(ok);
    }
    /* The masks drop something: with dropout the loss differs from the no-dropout loss. */
    memcpy(l->block, x0, n * sizeof(float));
    pt_trainer *t = mk(&c, 2);
    CHECK(t && !pt_trainer_attach_lora(t, l, 0.f, 1234, &err));
    double l_nodrop = t ? fb(t, tok, tgt, 1) : NAN, l_drop = lora_loss(&c, l, x0, tok, tgt, NULL);
    CHECK(fabs(l_nodrop - l_drop) > 1e-4);
    pt_trainer_free(t);
    free(x0), free(g), free(xp), free(dir);
    pt_lora_free(l);
}

int main(void) {
    pt_config ll = llama_cfg(), g2 = gpt2_cfg();
    threads_invariant(&ll);
    threads_invariant(&g2);
    frozen_embeddings(&ll);
    frozen_embeddings(&g2);
    lora_dropout_fd();
    return test_summary("test_train_perf");
}
