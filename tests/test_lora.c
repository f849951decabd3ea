/* LoRA in the engine: per-sequence adapters in one batch give what each sequence gives
 * alone; PEFT and GGUF files round-trip exactly; target parsing errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/rng.h"
#include "engine/engine.h"
#include "engine/lora.h"
#include "test.h"

static char tmpdir[] = "/tmp/parity-lora-XXXXXX";

static void randomize(pt_lora *l, uint64_t seed) {
    pt_rng r;
    pt_rng_seed(&r, seed);
    for (size_t i = 0; i < l->n_params; i++) l->block[i] = (float)(pt_rng_uniform(&r) - 0.5) * 0.2f;
}

#define NS 3
static const int lens[NS] = {9, 4, 13};

/* Logits (all positions) of sequence i run alone with adapter l (may be NULL). */
static float *alone(pt_engine *e, const int32_t *t, int n, const pt_lora *l, float scale) {
    const pt_config *c = pt_engine_config(e);
    float *out = malloc((size_t)n * c->vocab_size * sizeof(float));
    pt_seq *s = pt_seq_new(e, 0);
    pt_seq_set_lora(s, l, scale);
    pt_step st = {s, t, n, 1, out};
    pt_err err;
    CHECK(pt_engine_forward(e, &st, 1, &err) == PT_OK);
    pt_seq_free(s);
    return out;
}

static double maxdiff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    pt_err err = {0};
    pt_config c;
    json_t *j = json_loads("{\"model_type\":\"llama\",\"vocab_size\":300,\"hidden_size\":64,\"intermediate_size\":96,"
                           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
                           "\"head_dim\":16,\"max_position_embeddings\":64}", 0, NULL);
    CHECK(pt_config_from_json(j, "cfg", &c, &err) == PT_OK);
    json_decref(j);
    char *dir = pt_path_join(tmpdir, "m");
    CHECK(pt_model_write_random(dir, &c, PT_F32, 7, &err) == PT_OK);
    pt_engine *e;
    CHECK(pt_engine_open(dir, 2, &e, &err) == PT_OK);

    /* targets */
    unsigned mask;
    CHECK(pt_lora_parse_targets("q,v", &c, &mask, &err) == PT_OK && mask == ((1u << PT_PROJ_Q) | (1u << PT_PROJ_V)));
    CHECK(pt_lora_parse_targets("all", &c, &mask, &err) == PT_OK && mask == 127);
    CHECK(pt_lora_parse_targets("q_proj, down_proj", &c, &mask, &err) == PT_OK && mask == 65);
    CHECK(pt_lora_parse_targets("q,qq", &c, &mask, &err) == PT_EINVAL && strstr(err.msg, "'qq'"));
    CHECK(pt_lora_parse_targets("", &c, &mask, &err) == PT_EINVAL);
    pt_config g = c;
    g.arch = PT_ARCH_GPT2;
    CHECK(pt_lora_parse_targets("q", &g, &mask, &err) == PT_EUNSUPPORTED);

    pt_lora *a, *b;
    CHECK(pt_lora_new(&c, 4, 8.f, 127, 1, &a, &err) == PT_OK);
    CHECK(pt_lora_new(&c, 2, 3.f, (1u << PT_PROJ_Q) | (1u << PT_PROJ_DOWN), 2, &b, &err) == PT_OK);
    randomize(a, 11);
    randomize(b, 12);

    int32_t toks[NS][16];
    for (int i = 0; i < NS; i++)
        for (int k = 0; k < lens[i]; k++) toks[i][k] = (int32_t)((i * 97 + k * 31 + 5) % c.vocab_size);
    const pt_lora *ls[NS] = {a, NULL, b};
    const float sc[NS] = {1.f, 1.f, 0.5f};
    float *ref[NS];
    for (int i = 0; i < NS; i++) ref[i] = alone(e, toks[i], lens[i], ls[i], sc[i]);
    /* an adapter changes the output; the base one is unchanged */
    float *base0 = alone(e, toks[0], lens[0], NULL, 1.f);
    CHECK(maxdiff(base0, ref[0], (size_t)lens[0] * c.vocab_size) > 1e-3);
    free(base0);

    /* one batch: a, none, b — prefill, then a decode step of the three together */
    pt_seq *s[NS];
    float *out[NS];
    pt_step st[NS];
    for (int i = 0; i < NS; i++) {
        s[i] = pt_seq_new(e, 0);
        pt_seq_set_lora(s[i], ls[i], sc[i]);
        out[i] = malloc((size_t)lens[i] * c.vocab_size * sizeof(float));
        st[i] = (pt_step){s[i], toks[i], lens[i] - 1, 1, out[i]};
    }
    CHECK(pt_engine_forward(e, st, NS, &err) == PT_OK);
    for (int i = 0; i < NS; i++) st[i] = (pt_step){s[i], toks[i] + lens[i] - 1, 1, 1, out[i] + (size_t)(lens[i] - 1) * c.vocab_size};
    CHECK(pt_engine_forward(e, st, NS, &err) == PT_OK);
    for (int i = 0; i < NS; i++) {
        double d = maxdiff(out[i], ref[i], (size_t)lens[i] * c.vocab_size);
        printf("batched vs alone, sequence %d: max |diff| %.3g\n", i, d);
        CHECK(d < 1e-5);
        pt_seq_free(s[i]);
        free(out[i]);
    }

    /* PEFT and GGUF round trips are exact */
    char *pd = pt_path_join(tmpdir, "peft"), *gp = pt_path_join(tmpdir, "a.gguf");
    CHECK(pt_lora_save_peft(a, &c, pd, &err) == PT_OK);
    CHECK(pt_lora_save_gguf(a, &c, gp, &err) == PT_OK);
    pt_lora *pa = NULL, *ga = NULL;
    CHECK(pt_lora_load(pd, &c, &pa, &err) == PT_OK);
    CHECK(pt_lora_load(gp, &c, &ga, &err) == PT_OK);
    CHECK(pa && pa->rank == 4 && pa->alpha == 8.f && pa->targets == 127 && pa->n_params == a->n_params &&
          !memcmp(pa->block, a->block, a->n_params * sizeof(float)));
    CHECK(ga && ga->rank == 4 && ga->alpha == 8.f && ga->targets == 127 &&
          !memcmp(ga->block, a->block, a->n_params * sizeof(float)));
    /* an adapter of another model shape is refused, naming the tensor */
    pt_config c2 = c;
    c2.d_ff = 128;
    pt_lora *bad = NULL;
    CHECK(pt_lora_load(pd, &c2, &bad, &err) == PT_EFORMAT && strstr(err.msg, "wrong shape") && !bad);
    pt_lora_free(pa), pt_lora_free(ga);

    for (int i = 0; i < NS; i++) free(ref[i]);
    pt_lora_free(a), pt_lora_free(b);
    pt_engine_free(e);
    free(dir), free(pd), free(gp);
    return test_summary("lora");
}
