/* parity bench — prefill and decode throughput of a model on this machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/hooks.h"
#include "cli/cli_engine.h"
#include "common/util.h"

const char cmd_bench_summary[] = "measure prefill and decode tokens/s of a model";

/* B sequences, each with a 4-token prompt, then n_dec - 1 steps in which every sequence decodes
 * one token (one pt_engine_forward over all B): tokens/s over the decode steps. */
static int batched_decode(pt_engine *e, int batch, int n_dec, float *lg, double *tps, pt_err *err) {
    const pt_config *c = pt_engine_config(e);
    pt_seq **seqs = calloc((size_t)batch, sizeof *seqs);
    pt_step *st = calloc((size_t)batch, sizeof *st);
    int32_t *tok = calloc((size_t)batch * 4, sizeof *tok);
    int rc = seqs && st && tok ? PT_OK : pt_errf(err, PT_ENOMEM, "out of memory");
    if (n_dec > c->max_pos - 4) n_dec = c->max_pos - 4;
    for (int b = 0; !rc && b < batch; b++) {
        if (!(seqs[b] = pt_seq_new(e, 0))) rc = pt_errf(err, PT_ENOMEM, "out of memory");
        for (int i = 0; i < 4; i++) tok[b * 4 + i] = (int32_t)((b * 31 + i * 7 + 1) % c->vocab_size);
        st[b] = (pt_step){seqs[b], tok + b * 4, 4, 0, lg + (size_t)b * c->vocab_size};
    }
    if (!rc) rc = pt_engine_forward(e, st, batch, err); /* the prompts, batched */
    double t0 = pt_now();
    for (int j = 0; !rc && j < n_dec - 1; j++) {
        for (int b = 0; b < batch; b++) {
            tok[b * 4] = pt_argmax(lg + (size_t)b * c->vocab_size, c->vocab_size);
            st[b] = (pt_step){seqs[b], tok + b * 4, 1, 0, lg + (size_t)b * c->vocab_size};
        }
        rc = pt_engine_forward(e, st, batch, err);
    }
    if (!rc) *tps = (double)batch * (n_dec - 1) / (pt_now() - t0);
    for (int b = 0; seqs && b < batch; b++) pt_seq_free(seqs[b]);
    free(seqs), free(st), free(tok);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The cost of hooks, interleaved at the finest grain so that other load on the machine falls
 * on every mode alike: one sequence decodes n steps, switching per step between no hooks,
 * reading every residual-stream hook (resid_pre, resid_mid, resid_post of every layer) and one
 * steering vector (add at blocks.1.hook_resid_pre); the median step time of each mode. */
static int hook_overhead(pt_engine *e, int n, double *read_cost, double *steer_cost, pt_err *err) {
    const pt_config *c = pt_engine_config(e);
    if (n > c->max_pos - 20) n = c->max_pos - 20;
    n = n / 8 * 8;
    if (n < 8) return pt_errf(err, PT_EINVAL, "the model's context (%d) is too short for --hooks", c->max_pos);
    pt_hooks *hr = NULL, *hs = NULL;
    pt_seq *s = pt_seq_new(e, 0);
    float *lg = malloc((size_t)c->vocab_size * sizeof(float)), *v = calloc((size_t)c->d_model, sizeof(float));
    double *t = malloc((size_t)n * sizeof(double));
    int rc = s && lg && v && t ? PT_OK : pt_errf(err, PT_ENOMEM, "out of memory");
    if (!rc) rc = pt_hooks_new(c, &hr, err);
    if (!rc) rc = pt_hooks_new(c, &hs, err);
    static const char *const resid[] = {"hook_resid_pre", "hook_resid_mid", "hook_resid_post"};
    char name[96];
    for (int L = 0; !rc && L < c->n_layers; L++)
        for (int k = 0; !rc && k < 3; k++) {
            snprintf(name, sizeof name, "blocks.%d.%s", L, resid[k]);
            rc = pt_hooks_read(hr, name, NULL, 0, err);
        }
    if (!rc) {
        v[0] = 1;
        snprintf(name, sizeof name, "blocks.%d.hook_resid_pre", c->n_layers > 1 ? 1 : 0);
        rc = pt_hooks_add(hs, name, v, (size_t)c->d_model, 4.f, NULL, 0, err);
    }
    int32_t tok[16];
    for (int i = 0; i < 16; i++) tok[i] = (int32_t)((i * 31 + 3) % c->vocab_size);
    pt_step st = {s, tok, 16, 0, lg};
    if (!rc) rc = pt_engine_forward(e, &st, 1, err);
    /* The cycle P R P S R P S P puts every mode on odd and even steps alike (step times
     * alternate on this machine: the pool's threads spin or sleep between steps). */
    static const int cycle[8] = {0, 1, 0, 2, 1, 0, 2, 0};
    pt_hooks *mode_hooks[3] = {NULL, hr, hs};
    int cnt[3] = {0, 0, 0};
    double *tm[3] = {t, t + n / 2, t + 3 * n / 4};
    for (int j = 0; !rc && j < n; j++) {
        int mode = cycle[j % 8];
        pt_seq_set_hooks(s, mode_hooks[mode]);
        tok[0] = pt_argmax(lg, c->vocab_size);
        st = (pt_step){s, tok, 1, 0, lg};
        double t0 = pt_now();
        rc = pt_engine_forward(e, &st, 1, err);
        tm[mode][cnt[mode]++] = pt_now() - t0;
    }
    if (!rc) { /* medians */
        for (int k = 0; k < 3; k++) qsort(tm[k], (size_t)cnt[k], sizeof(double), cmp_double);
        double plain = tm[0][cnt[0] / 2];
        *read_cost = tm[1][cnt[1] / 2] / plain - 1;
        *steer_cost = tm[2][cnt[2] / 2] / plain - 1;
    }
    pt_seq_free(s);
    pt_hooks_free(hr), pt_hooks_free(hs);
    free(lg), free(v), free(t);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: parity bench -m MODEL [--threads N] [--prefill N] [--decode N] [--batch B] [--hooks N] [--q8]\n\n"
               "Times one prefill of N tokens (default 512, best of 2) and N single-token decode\n"
               "steps with the KV cache (default 64), and prints tokens/s and the weight bytes read per\n"
               "decoded token. --batch B (default 1) also times B sequences decoding together, one\n"
               "token each per step (what the server's continuous batching runs), and its ratio to\n"
               "single-sequence decode. --hooks N decodes N more steps cycling per step through no\n"
               "hooks, reading every residual-stream hook, no hooks, one steering vector, and prints\n"
               "each one's median step time against the plain steps'. --q8 converts the weights to\n"
               "Q8_0 in memory first.\n"
               "(bench/bench_engine measures the same against memory bandwidth, sgemm and PyTorch.)\n\n"
               "example:\n  parity bench -m models/tiny --threads 2 --batch 8\n");
        return 0;
    }
    const char *model = NULL;
    int threads = 2, n_pre = 512, n_dec = 64, q8 = 0, batch = 1, n_hooks = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--q8")) {
            q8 = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("bench", "%s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "-m") || !strcmp(o, "--model")) model = v;
        else if (!strcmp(o, "--threads")) threads = atoi(v);
        else if (!strcmp(o, "--prefill")) n_pre = atoi(v);
        else if (!strcmp(o, "--decode")) n_dec = atoi(v);
        else if (!strcmp(o, "--batch")) batch = atoi(v);
        else if (!strcmp(o, "--hooks")) n_hooks = atoi(v);
        else return cli_usage_error("bench", "unknown option '%s'", o);
    }
    if (!model) return cli_usage_error("bench", "-m MODEL is required");
    if (threads < 1 || threads > 256 || n_pre < 1 || n_dec < 2 || n_pre > 1 << 20 || n_dec > 1 << 20 || batch < 1 ||
        batch > 256 || n_hooks < 0 || n_hooks > 1 << 20)
        return cli_usage_error("bench", "bad --threads, --prefill, --decode (at least 2), --batch (1..256) or --hooks");
    pt_err err = {0};
    pt_model *m;
    pt_engine *e = NULL;
    int rc = pt_model_load(model, &m, &err);
    if (!rc && q8) rc = pt_model_convert(m, PT_Q8_0, &err);
    if (rc) {
        pt_model_free(m);
        return cli_fail(&err);
    }
    if ((rc = pt_engine_new(m, pt_backend_cpu_new(threads), &e, &err))) return cli_fail(&err);
    const pt_config *c = pt_engine_config(e);
    if (n_pre > c->max_pos) n_pre = c->max_pos;
    if (n_dec > c->max_pos - 1) n_dec = c->max_pos - 1;
    int32_t *toks = malloc((size_t)n_pre * sizeof *toks);
    float *lg = malloc((size_t)c->vocab_size * sizeof(float) * (size_t)batch);
    if (!toks || !lg) {
        free(toks), free(lg);
        pt_engine_free(e);
        return cli_fail(&(pt_err){PT_ENOMEM, "out of memory"});
    }
    for (int i = 0; i < n_pre; i++) toks[i] = (int32_t)((i * 7 + 1) % c->vocab_size);
    double best = 1e30;
    for (int r = 0; !rc && r < 2; r++) {
        pt_seq *s = pt_seq_new(e, 0);
        pt_step st = {s, toks, n_pre, 0, lg};
        double t0 = pt_now();
        rc = s ? pt_engine_forward(e, &st, 1, &err) : pt_errf(&err, PT_ENOMEM, "out of memory");
        double dt = pt_now() - t0;
        if (dt < best) best = dt;
        pt_seq_free(s);
    }
    double dec = 0;
    if (!rc) {
        pt_seq *s = pt_seq_new(e, 0);
        pt_step st = {s, toks, 1, 0, lg};
        rc = s ? pt_engine_forward(e, &st, 1, &err) : pt_errf(&err, PT_ENOMEM, "out of memory");
        double t0 = pt_now();
        for (int j = 0; !rc && j < n_dec - 1; j++) {
            int32_t next = pt_argmax(lg, c->vocab_size);
            st = (pt_step){s, &next, 1, 0, lg};
            rc = pt_engine_forward(e, &st, 1, &err);
        }
        dec = (n_dec - 1) / (pt_now() - t0);
        pt_seq_free(s);
    }
    double bdec = 0;
    if (!rc && batch > 1) rc = batched_decode(e, batch, n_dec, lg, &bdec, &err);
    double read_cost = 0, steer_cost = 0;
    if (!rc && n_hooks) rc = hook_overhead(e, n_hooks, &read_cost, &steer_cost, &err);
    if (!rc) {
        printf("model %s (%.1fM parameters%s), %d threads\n", model, pt_engine_model(e)->n_params / 1e6,
               q8 ? ", Q8_0" : "", threads);
        printf("prefill: %d tokens in %.3f s = %.1f tokens/s\n", n_pre, best, n_pre / best);
        printf("decode:  %.1f tokens/s (%.1f MB of weights read per token = %.2f GB/s)\n", dec,
               pt_engine_model(e)->weight_bytes / 1e6, dec * pt_engine_model(e)->weight_bytes / 1e9);
        if (batch > 1)
            printf("decode, %d sequences together: %.1f tokens/s = %.2fx single-sequence decode\n", batch, bdec,
                   bdec / dec);
        if (n_hooks)
            printf("hooks (median decode step, interleaved per step): reading all %d residual-stream hooks "
                   "%+.1f%%, one steering vector %+.1f%%\n",
                   3 * c->n_layers, 100 * read_cost, 100 * steer_cost);
    }
    free(toks), free(lg);
    pt_engine_free(e);
    return rc ? cli_fail(&err) : 0;
}
