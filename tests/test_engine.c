/* test_engine.c — the engine API: KV-cache decode equals full recompute, batched prefill
 * equals one sequence at a time, continuous batching (sequences joining and leaving), batched
 * decode of 1..12 sequences equals each alone, the fused residual adds and SwiGLU equal the
 * unfused path that hooks in between take, hooks
 * applied at absolute positions during decode, Q8_0 kernels, determinism, bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "test.h"

static char tmpdir[] = "/tmp/parity-test-engine-XXXXXX";

static float rel_err(const float *a, const float *b, size_t n) {
    float m = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        m = fmaxf(m, fabsf(b[i]));
        e = fmaxf(e, fabsf(a[i] - b[i]));
    }
    return m ? e / m : e;
}

static pt_engine *make_model(const char *name, const char *cfg_json) {
    pt_err err;
    pt_config c;
    json_t *j = json_loads(cfg_json, 0, NULL);
    if (pt_config_from_json(j, name, &c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    json_decref(j);
    char *dir = pt_path_join(tmpdir, name);
    if (pt_model_write_random(dir, &c, PT_F32, 42, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    pt_engine *e;
    if (pt_engine_open(dir, 2, &e, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    free(dir);
    return e;
}

#define NSEQ 3
static const int lens[NSEQ] = {23, 7, 30};
static int32_t toks[NSEQ][32];

/* Logits of every position of sequence i, computed in one prefill. */
static float *full_logits(pt_engine *e, int i, pt_hooks *h) {
    const pt_config *c = pt_engine_config(e);
    float *out = malloc((size_t)lens[i] * c->vocab_size * sizeof(float));
    pt_seq *s = pt_seq_new(e, 0);
    pt_seq_set_hooks(s, h);
    pt_step st = {s, toks[i], lens[i], 1, out};
    pt_err err;
    CHECK(pt_engine_forward(e, &st, 1, &err) == PT_OK);
    pt_seq_free(s);
    return out;
}

/* Decode steps of many sequences together (1 to 12 rows: every row count of the decode
 * kernels and the sgemm path past them; attention of all of them in one call) give each
 * sequence what it gets decoding alone. Sequence i starts decoding at step i, so the batch
 * grows by one sequence per step and the sequences sit at different positions. */
static void test_batched_decode(pt_engine *e, const char *what) {
    enum { NB = 12, STEPS = NB + 3, PRE = 3 };
    const pt_config *c = pt_engine_config(e);
    size_t V = (size_t)c->vocab_size;
    pt_err err;
    static int32_t tk[NB][PRE + STEPS];
    for (int i = 0; i < NB; i++)
        for (int j = 0; j < PRE + STEPS; j++) tk[i][j] = (int32_t)((i * 31 + j * 17 + 5) % c->vocab_size);
    /* alone: sequence i's prompt, then its STEPS - i decode steps one token at a time */
    float *alone = malloc((size_t)NB * STEPS * V * sizeof(float)), *lg = malloc(NB * V * sizeof(float));
    pt_seq *s[NB];
    for (int i = 0; i < NB; i++) {
        s[i] = pt_seq_new(e, 0);
        pt_step st = {s[i], tk[i], PRE, 0, lg};
        CHECK(pt_engine_forward(e, &st, 1, &err) == PT_OK);
        for (int j = 0; j < STEPS - i; j++) {
            st = (pt_step){s[i], &tk[i][PRE + j], 1, 0, alone + ((size_t)i * STEPS + j) * V};
            CHECK(pt_engine_forward(e, &st, 1, &err) == PT_OK);
        }
        pt_seq_truncate(s[i], PRE); /* back to the prompt, its cache kept */
    }
    /* together: at step t, sequences 0..min(t, NB-1) decode one token each */
    pt_step st[NB];
    float worst = 0;
    for (int t = 0; t < STEPS; t++) {
        int n = t + 1 < NB ? t + 1 : NB;
        for (int i = 0; i < n; i++) st[i] = (pt_step){s[i], &tk[i][PRE + t - i], 1, 0, lg + (size_t)i * V};
        CHECK(pt_engine_forward(e, st, n, &err) == PT_OK);
        for (int i = 0; i < n; i++)
            worst = fmaxf(worst, rel_err(lg + (size_t)i * V, alone + ((size_t)i * STEPS + t - i) * V, V));
    }
    printf("%s: decode of 1..%d sequences together vs alone: worst relative error %.2e\n", what, NB, worst);
    CHECK(worst <= 1e-5f);
    for (int i = 0; i < NB; i++) pt_seq_free(s[i]);
    free(alone), free(lg);
}

static void test_model(pt_engine *e, const char *what) {
    const pt_config *c = pt_engine_config(e);
    size_t V = (size_t)c->vocab_size;
    pt_err err;
    for (int i = 0; i < NSEQ; i++)
        for (int j = 0; j < lens[i]; j++) toks[i][j] = (int32_t)((i * 7919 + j * 104729 + 13) % c->vocab_size);
    float *ref[NSEQ];
    for (int i = 0; i < NSEQ; i++) ref[i] = full_logits(e, i, NULL);

    /* determinism: the same prefill twice gives the same bits */
    float *again = full_logits(e, 2, NULL);
    CHECK(!memcmp(again, ref[2], (size_t)lens[2] * V * sizeof(float)));
    free(again);

    /* batched prefill of sequences of different lengths equals one at a time */
    {
        pt_seq *s[NSEQ];
        float *lg[NSEQ];
        pt_step st[NSEQ];
        for (int i = 0; i < NSEQ; i++) {
            s[i] = pt_seq_new(e, 0);
            lg[i] = malloc((size_t)lens[i] * V * sizeof(float));
            st[i] = (pt_step){s[i], toks[i], lens[i], 1, lg[i]};
        }
        CHECK(pt_engine_forward(e, st, NSEQ, &err) == PT_OK);
        for (int i = 0; i < NSEQ; i++) {
            float r = rel_err(lg[i], ref[i], (size_t)lens[i] * V);
            if (r > 1e-5f) fprintf(stderr, "%s: batched prefill seq %d rel err %g\n", what, i, r);
            CHECK(r <= 1e-5f);
            CHECK(s[i]->pos == lens[i]);
            pt_seq_free(s[i]);
            free(lg[i]);
        }
    }

    /* KV-cache decode (prefill 4, then one token at a time) equals full recompute */
    {
        pt_seq *s = pt_seq_new(e, 0);
        float *lg = malloc(V * sizeof(float));
        pt_step st = {s, toks[0], 4, 0, lg};
        CHECK(pt_engine_forward(e, &st, 1, &err) == PT_OK);
        float worst = rel_err(lg, ref[0] + 3 * V, V);
        for (int j = 4; j < lens[0]; j++) {
            st = (pt_step){s, &toks[0][j], 1, 0, lg};
            CHECK(pt_engine_forward(e, &st, 1, &err) == PT_OK);
            worst = fmaxf(worst, rel_err(lg, ref[0] + (size_t)j * V, V));
        }
        printf("%s: decode vs recompute: worst relative error %.2e\n", what, worst);
        CHECK(worst <= 1e-5f);
        pt_seq_free(s);
        free(lg);
    }

    /* continuous batching: A prefills, then A decodes while B prefills, then C joins and B
     * leaves; every logits row equals the full recompute */
    {
        pt_seq *a = pt_seq_new(e, 0), *b = pt_seq_new(e, 0), *cc = pt_seq_new(e, 0);
        float *la = malloc(V * sizeof(float)), *lb = malloc(V * sizeof(float)), *lc = malloc(V * sizeof(float));
        float worst = 0;
        pt_step st[3] = {{a, toks[0], 10, 0, la}};
        CHECK(pt_engine_forward(e, st, 1, &err) == PT_OK);
        worst = fmaxf(worst, rel_err(la, ref[0] + 9 * V, V));
        st[0] = (pt_step){a, &toks[0][10], 1, 0, la};
        st[1] = (pt_step){b, toks[1], 5, 0, lb};
        CHECK(pt_engine_forward(e, st, 2, &err) == PT_OK);
        worst = fmaxf(worst, rel_err(la, ref[0] + 10 * V, V));
        worst = fmaxf(worst, rel_err(lb, ref[1] + 4 * V, V));
        for (int j = 0; j < 2; j++) {
            st[0] = (pt_step){a, &toks[0][11 + j], 1, 0, la};
            st[1] = (pt_step){b, &toks[1][5 + j], 1, 0, lb};
            st[2] = (pt_step){cc, j == 0 ? toks[2] : &toks[2][12], j == 0 ? 12 : 1, 0, lc};
            CHECK(pt_engine_forward(e, st, 3, &err) == PT_OK);
            worst = fmaxf(worst, rel_err(la, ref[0] + (size_t)(11 + j) * V, V));
            worst = fmaxf(worst, rel_err(lb, ref[1] + (size_t)(5 + j) * V, V));
            worst = fmaxf(worst, rel_err(lc, ref[2] + (size_t)(j == 0 ? 11 : 12) * V, V));
        }
        /* b has left; a and c go on */
        st[0] = (pt_step){a, &toks[0][13], 1, 0, la};
        st[1] = (pt_step){cc, &toks[2][13], 1, 0, lc};
        CHECK(pt_engine_forward(e, st, 2, &err) == PT_OK);
        worst = fmaxf(worst, rel_err(la, ref[0] + 13 * V, V));
        worst = fmaxf(worst, rel_err(lc, ref[2] + 13 * V, V));
        printf("%s: continuous batching: worst relative error %.2e\n", what, worst);
        CHECK(worst <= 1e-5f);
        pt_seq_free(a), pt_seq_free(b), pt_seq_free(cc);
        free(la), free(lb), free(lc);
    }

    /* hooks during decode: a steering vector at absolute positions 3 and 8 and a read of
     * the residual stream give the same as one prefill with the same hooks */
    {
        float *vec = malloc((size_t)c->d_model * sizeof(float));
        for (int i = 0; i < c->d_model; i++) vec[i] = (float)((i % 7) - 3) * 0.5f;
        int32_t where[2] = {3, 8};
        pt_hooks *h1 = NULL, *h2 = NULL;
        CHECK(pt_hooks_new(c, &h1, &err) == PT_OK && pt_hooks_new(c, &h2, &err) == PT_OK);
        pt_hooks *hs[2] = {h1, h2};
        for (int k = 0; k < 2; k++) {
            CHECK(pt_hooks_add(hs[k], "blocks.1.hook_resid_pre", vec, (size_t)c->d_model, 2.f, where, 2, &err) == 0);
            CHECK(pt_hooks_read(hs[k], "blocks.0.hook_resid_post", NULL, 0, &err) == PT_OK);
            CHECK(pt_hooks_read(hs[k], "blocks.1.attn.hook_pattern", NULL, 0, &err) == PT_OK);
        }
        float *steered = full_logits(e, 0, h1);
        CHECK(rel_err(steered, ref[0], (size_t)lens[0] * V) > 1e-3f); /* the edit changed something */
        CHECK(rel_err(steered, ref[0], 3 * V) == 0);                   /* ... but not before position 3 */
        pt_seq *s = pt_seq_new(e, 0);
        pt_seq_set_hooks(s, h2);
        float *lg = malloc(V * sizeof(float));
        float worst = 0;
        pt_step st = {s, toks[0], 2, 0, lg};
        CHECK(pt_engine_forward(e, &st, 1, &err) == PT_OK);
        for (int j = 2; j < lens[0]; j++) {
            st = (pt_step){s, &toks[0][j], 1, 0, lg};
            CHECK(pt_engine_forward(e, &st, 1, &err) == PT_OK);
            worst = fmaxf(worst, rel_err(lg, steered + (size_t)j * V, V));
        }
        printf("%s: steering in decode vs prefill: worst relative error %.2e\n", what, worst);
        CHECK(worst <= 1e-5f);
        pt_hook_tensor t1, t2;
        CHECK(pt_hooks_get(h1, "blocks.0.hook_resid_post", &t1, &err) == PT_OK);
        CHECK(pt_hooks_get(h2, "blocks.0.hook_resid_post", &t2, &err) == PT_OK);
        CHECK(t1.shape[0] == lens[0] && t2.shape[0] == lens[0] && t1.shape[1] == c->d_model);
        CHECK(rel_err(t2.data, t1.data, (size_t)lens[0] * c->d_model) <= 1e-5f);
        CHECK(pt_hooks_get(h1, "blocks.1.attn.hook_pattern", &t1, &err) == PT_OK);
        CHECK(pt_hooks_get(h2, "blocks.1.attn.hook_pattern", &t2, &err) == PT_OK);
        CHECK(t1.ndim == 3 && t2.shape[0] == c->n_heads && t2.shape[1] == lens[0] && t2.shape[2] == lens[0]);
        CHECK(rel_err(t2.data, t1.data, (size_t)c->n_heads * lens[0] * lens[0]) <= 1e-5f);
        CHECK(pt_hooks_get(h1, "blocks.0.hook_mlp_out", &t1, &err) == PT_ENOTFOUND);
        free(steered), free(lg), free(vec);
        pt_seq_free(s);
        pt_hooks_free(h1), pt_hooks_free(h2);
    }

    /* bad input: clear errors, nothing changed */
    {
        pt_seq *s = pt_seq_new(e, 16);
        int32_t bad = c->vocab_size;
        pt_step st = {s, &bad, 1, 0, NULL};
        CHECK(pt_engine_forward(e, &st, 1, &err) == PT_EINVAL && strstr(err.msg, "out of range"));
        st = (pt_step){s, toks[2], 17, 0, NULL};
        CHECK(pt_engine_forward(e, &st, 1, &err) == PT_EINVAL && strstr(err.msg, "context length"));
        pt_step two[2] = {{s, toks[0], 1, 0, NULL}, {s, toks[0], 1, 0, NULL}};
        CHECK(pt_engine_forward(e, two, 2, &err) == PT_EINVAL);
        CHECK(s->pos == 0);
        pt_hooks *h;
        CHECK(pt_hooks_new(c, &h, &err) == PT_OK);
        CHECK(pt_hooks_read(h, "blocks.99.hook_resid_pre", NULL, 0, &err) == PT_ENOTFOUND &&
              strstr(err.msg, "valid hooks"));
        float one = 1;
        CHECK(pt_hooks_add(h, "blocks.0.hook_resid_pre", &one, 1, 1, NULL, 0, &err) == PT_EINVAL);
        CHECK(pt_hooks_set(h, "blocks.0.attn.hook_pattern", &one, 1, NULL, 0, &err) == PT_EUNSUPPORTED);
        pt_hooks_free(h);
        pt_seq_free(s);
    }
    for (int i = 0; i < NSEQ; i++) free(ref[i]);
}

/* The residual adds and SwiGLU run inside the projections' tasks (the fused path) unless a
 * hook reads or writes the product in between: reading those hooks (attn_out, mlp.hook_pre,
 * mlp_out) takes the unfused path. Both give the same bits: logits of a prefill and of
 * decode steps (one and three sequences, so both the decode kernels and larger row counts),
 * and the values the hooks after the fused steps see (resid_mid, mlp.hook_post, resid_post). */
static void test_fused_equals_unfused(pt_engine *e, const char *what) {
    enum { NS = 3, PRE = 5, STEPS = 4 };
    const pt_config *c = pt_engine_config(e);
    size_t V = (size_t)c->vocab_size;
    pt_err err;
    static const char *after[] = {"blocks.0.hook_resid_mid", "blocks.1.mlp.hook_post", "blocks.1.hook_resid_post"};
    static const char *between[] = {"blocks.0.hook_attn_out", "blocks.1.mlp.hook_pre", "blocks.1.hook_mlp_out"};
    float *lg[2][NS];
    pt_hooks *hs[2][NS];
    for (int mode = 0; mode < 2; mode++) { /* 0: fused, 1: the hooks in between read too */
        pt_seq *s[NS];
        for (int i = 0; i < NS; i++) {
            CHECK(pt_hooks_new(c, &hs[mode][i], &err) == PT_OK);
            for (int h = 0; h < 3; h++) CHECK(pt_hooks_read(hs[mode][i], after[h], NULL, 0, &err) == PT_OK);
            for (int h = 0; mode && h < 3; h++) CHECK(pt_hooks_read(hs[mode][i], between[h], NULL, 0, &err) == PT_OK);
            s[i] = pt_seq_new(e, 0);
            pt_seq_set_hooks(s[i], hs[mode][i]);
            lg[mode][i] = malloc((PRE + STEPS) * V * sizeof(float));
            pt_step st = {s[i], toks[i], PRE, 1, lg[mode][i]};
            CHECK(pt_engine_forward(e, &st, 1, &err) == PT_OK);
        }
        for (int k = 0; k < STEPS; k++) {
            /* step k: sequence 0 alone on even steps, all three on odd ones */
            int n = k % 2 ? NS : 1;
            pt_step st[NS];
            for (int i = 0; i < n; i++) st[i] = (pt_step){s[i], &toks[i][PRE + k], 1, 0, lg[mode][i] + (PRE + k) * V};
            CHECK(pt_engine_forward(e, st, n, &err) == PT_OK);
        }
        for (int i = 0; i < NS; i++) pt_seq_free(s[i]);
    }
    for (int i = 0; i < NS; i++) {
        size_t rows = i == 0 ? PRE + STEPS : PRE + STEPS / 2;
        for (size_t r = 0; r < PRE + STEPS; r++)
            if (r < PRE || i == 0 || (r - PRE) % 2) CHECK(!memcmp(lg[0][i] + r * V, lg[1][i] + r * V, V * sizeof(float)));
        for (int h = 0; h < 3; h++) {
            pt_hook_tensor t0, t1;
            CHECK(pt_hooks_get(hs[0][i], after[h], &t0, &err) == PT_OK);
            CHECK(pt_hooks_get(hs[1][i], after[h], &t1, &err) == PT_OK);
            CHECK(t0.shape[0] == (int64_t)rows && t1.shape[0] == (int64_t)rows);
            CHECK(t0.ndim == 2 && t1.ndim == 2 && t0.shape[1] == t1.shape[1]);
            CHECK(!memcmp(t0.data, t1.data, rows * (size_t)t0.shape[1] * sizeof(float)));
        }
        for (int m = 0; m < 2; m++) free(lg[m][i]), pt_hooks_free(hs[m][i]);
    }
    printf("%s: the fused residual adds and SwiGLU give the bits of the unfused path\n", what);
}

/* Q8_0: the int8 kernel against a scalar dot of the dequantised values, and a Q8_0 model's
 * logits against F32 (documented tolerance). */
static void test_q8(pt_engine *e, const char *what) {
    float a[256], b[256];
    for (int i = 0; i < 256; i++) a[i] = sinf((float)i * 0.37f), b[i] = cosf((float)i * 0.11f) * (i % 5 - 2);
    pt_block_q8_0 qa[8], qb[8];
    pt_q8_quantize_row(a, qa, 256);
    pt_q8_quantize_row(b, qb, 256);
    float da[256], db[256];
    pt_to_f32(PT_Q8_0, qa, da, 256);
    pt_to_f32(PT_Q8_0, qb, db, 256);
    double want = 0;
    for (int i = 0; i < 256; i++) want += (double)da[i] * db[i];
    CHECK(fabs(pt_q8_dot(qa, qb, 256) - want) < 1e-3 * fabs(want) + 1e-4);

    const pt_config *c = pt_engine_config(e);
    size_t V = (size_t)c->vocab_size;
    float *ref = full_logits(e, 0, NULL);
    pt_err err;
    CHECK(pt_model_convert((pt_model *)pt_engine_model(e), PT_Q8_0, &err) == PT_OK);
    CHECK(pt_engine_model(e)->w.layers[0].proj[PT_PROJ_DOWN].dtype == PT_Q8_0);
    float *q = full_logits(e, 0, NULL);
    float r = rel_err(q, ref, (size_t)lens[0] * V);
    /* and the decode path (activations quantised too) */
    pt_seq *s = pt_seq_new(e, 0);
    float *lg = malloc(V * sizeof(float));
    pt_step st = {s, toks[0], 1, 0, lg};
    float rd = 0;
    for (int j = 0; j < lens[0]; j++) {
        st.tokens = &toks[0][j];
        CHECK(pt_engine_forward(e, &st, 1, &err) == PT_OK);
        rd = fmaxf(rd, rel_err(lg, ref + (size_t)j * V, V));
    }
    printf("%s Q8_0: prefill relative error %.2e, decode %.2e (vs F32)\n", what, r, rd);
    CHECK(r < 2e-2f);
    CHECK(rd < 2e-2f);
    free(ref), free(q), free(lg);
    pt_seq_free(s);
}

/* A freed sequence's KV cache goes to the next new sequence of the engine (last freed,
 * first reused), and a sequence on a kept cache — whose memory holds another prompt's keys
 * and values — gives bit for bit what a sequence on a fresh cache gives (one of a second
 * engine on the same model, which has kept none). */
static void test_kept_kv(pt_engine *e, const char *name, const char *what) {
    const pt_config *c = pt_engine_config(e);
    size_t V = (size_t)c->vocab_size;
    pt_err err;
    char *dir = pt_path_join(tmpdir, name);
    pt_engine *e2;
    CHECK(pt_engine_open(dir, 2, &e2, &err) == PT_OK);
    free(dir);
    int32_t a[40], b[7], nx = 11;
    for (int i = 0; i < 40; i++) a[i] = (int32_t)((i * 13 + 1) % c->vocab_size);
    for (int i = 0; i < 7; i++) b[i] = (int32_t)((i * 29 + 3) % c->vocab_size);
    float *l1 = malloc(2 * V * sizeof(float)), *l2 = malloc(2 * V * sizeof(float));
    pt_seq *f = pt_seq_new(e2, 0);
    CHECK(f->cap == 0); /* fresh */
    pt_step st = {f, b, 7, 0, l1};
    CHECK(pt_engine_forward(e2, &st, 1, &err) == PT_OK);
    st = (pt_step){f, &nx, 1, 0, l1 + V};
    CHECK(pt_engine_forward(e2, &st, 1, &err) == PT_OK);
    pt_seq_free(f);
    pt_seq *s = pt_seq_new(e, 0);
    st = (pt_step){s, a, 40, 0, l2};
    CHECK(pt_engine_forward(e, &st, 1, &err) == PT_OK);
    float *k0 = s->k[0];
    int cap = s->cap;
    pt_seq_free(s);
    pt_seq *r = pt_seq_new(e, 0);
    CHECK(r->k[0] == k0 && r->cap == cap && r->pos == 0);
    st = (pt_step){r, b, 7, 0, l2};
    CHECK(pt_engine_forward(e, &st, 1, &err) == PT_OK);
    st = (pt_step){r, &nx, 1, 0, l2 + V};
    CHECK(pt_engine_forward(e, &st, 1, &err) == PT_OK);
    CHECK(!memcmp(l1, l2, 2 * V * sizeof(float)));
    printf("%s: a kept KV cache is reused and gives a fresh one's results\n", what);
    pt_seq_free(r);
    pt_engine_free(e2);
    free(l1), free(l2);
}

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    pt_engine *l = make_model("llama", "{\"model_type\":\"llama\",\"vocab_size\":1000,\"hidden_size\":64,"
                                       "\"intermediate_size\":96,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                                       "\"num_key_value_heads\":2,\"head_dim\":32,\"max_position_embeddings\":64}");
    test_model(l, "llama");
    test_batched_decode(l, "llama");
    test_fused_equals_unfused(l, "llama");
    test_kept_kv(l, "llama", "llama"); /* (before test_q8, which converts the engine's weights) */
    test_q8(l, "llama");
    pt_engine_free(l);
    /* One query head per kv head, head_dim 64 as the server bench's model (attention's
     * scores kernel: blocks of 8 keys once the contexts pass 8), and a d_ff that is not a
     * multiple of 16 (the tile kernel's masked last step on the down projection) */
    pt_engine *mha = make_model("llama_mha", "{\"model_type\":\"llama\",\"vocab_size\":300,\"hidden_size\":256,"
                                             "\"intermediate_size\":200,\"num_hidden_layers\":2,"
                                             "\"num_attention_heads\":4,\"num_key_value_heads\":4,\"head_dim\":64,"
                                             "\"max_position_embeddings\":64}");
    test_batched_decode(mha, "llama (MHA, head_dim 64)");
    pt_engine_free(mha);
    pt_engine *g = make_model("gpt2", "{\"model_type\":\"gpt2\",\"vocab_size\":1000,\"n_embd\":64,\"n_layer\":2,"
                                      "\"n_head\":4,\"n_positions\":64}");
    test_model(g, "gpt2");
    test_batched_decode(g, "gpt2");
    test_fused_equals_unfused(g, "gpt2");
    test_kept_kv(g, "gpt2", "gpt2");
    test_q8(g, "gpt2");
    pt_engine_free(g);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary("test_engine");
}
