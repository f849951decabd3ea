/* bench_policy — policy decision latency with 1,000 grants.
 *
 * Measures pt_policy_decide (grants indexed by organisation x model) and, in the same run, a
 * reference: the naive decision that scans every grant and matches its model glob with
 * fnmatch, as a policy engine without an index would. Prints the median time per decision
 * of each (median over batches of 1,000 decisions) and the ratio.
 * Usage: bench_policy [GRANTS] (default 1000) */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"
#include "policy/policy.h"

#define BATCH 1000
#define ROUNDS 301

static volatile int sink;

static int naive_decide(const pt_policy *p, const char *org, const char *model, pt_cap cap, int64_t at) {
    for (size_t i = 0; i < p->n_forbids; i++) {
        const pt_forbid *f = &p->forbids[i];
        if ((!f->org || !strcmp(f->org, org)) && (!f->model || !fnmatch(f->model, model, 0)) &&
            (f->caps & (1u << cap)) && at >= f->from && at < f->until)
            return 0;
    }
    for (size_t i = 0; i < p->n_grants; i++) {
        const pt_grant *g = &p->grants[i];
        if (!strcmp(g->org, org) && !fnmatch(g->model, model, 0) && at >= g->from && at < g->until &&
            (g->caps & (1u << cap)))
            return 1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: bench_policy [GRANTS]   (decision latency with GRANTS grants, default 1000, against a "
               "linear scan)\n");
        return 0;
    }
    if (argc > 1 && atoi(argv[1]) <= 0) {
        fprintf(stderr, "bench_policy: GRANTS must be a positive number, not '%s'\n", argv[1]);
        return 2;
    }
    int n_grants = argc > 1 ? atoi(argv[1]) : 1000;
    const int n_orgs = 200, n_models = 40;
    pt_buf b;
    pt_buf_init(&b, 1 << 26);
    pt_buf_puts(&b, "version: 1\nlab: {id: bench, name: Bench}\nmodels:\n");
    for (int m = 0; m < n_models; m++) pt_buf_printf(&b, "  - {id: family%d-model%d, insider_since: 2026-01-01}\n", m % 8, m);
    pt_buf_puts(&b, "organisations:\n");
    for (int o = 0; o < n_orgs; o++) pt_buf_printf(&b, "  - {id: org-%04d, name: Org %d, kind: researcher}\n", o, o);
    pt_buf_puts(&b, "grants:\n");
    static const char *tiers[] = {"AL1", "AL2", "AL3"};
    unsigned seed = 42;
    for (int g = 0; g < n_grants; g++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = seed >> 4;
        char model[48];
        if (r % 4 == 0) snprintf(model, sizeof model, "family%u-*", (r >> 3) % 8);
        else snprintf(model, sizeof model, "family%u-model%u", ((r >> 5) % n_models) % 8, (r >> 5) % n_models);
        pt_buf_printf(&b,
                      "  - {organisation: org-%04u, model: '%s', tier: %s, window: {from: 2026-%02u-01, until: 2027-%02u-01},"
                      " limits: {requests_per_minute: 60, tokens_per_day: 1000000}}\n",
                      (r >> 9) % n_orgs, model, tiers[(r >> 17) % 3], 1 + (r >> 19) % 12, 1 + (r >> 23) % 12);
    }
    pt_buf_puts(&b, "forbids:\n  - {organisation: org-0007, model: 'family3-*', capabilities: [logprobs]}\n");
    pt_err err;
    pt_policy *p = pt_policy_parse(b.data, b.len, "bench", &err);
    pt_buf_free(&b);
    if (!p) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    /* A fixed request mix: random (org, model, capability, time). */
    enum { NQ = 4096 };
    static const char *qorg[NQ], *qmodel[NQ];
    static pt_cap qcap[NQ];
    static int64_t qat[NQ];
    int64_t t0;
    pt_parse_time("2026-01-01", &t0, NULL);
    for (int i = 0; i < NQ; i++) {
        seed = seed * 1103515245u + 12345u;
        qorg[i] = p->orgs[(seed >> 8) % n_orgs].id;
        seed = seed * 1103515245u + 12345u;
        qmodel[i] = p->models[(seed >> 8) % n_models].id;
        qcap[i] = (pt_cap)((seed >> 20) % PT_CAP_COUNT);
        qat[i] = t0 + (int64_t)((seed >> 4) % (500u * 86400u));
    }
    double idx[ROUNDS], ref[ROUNDS];
    int allows = 0, disagree = 0;
    pt_usage u = {3, 1000, 0, 5};
    for (int r = 0; r < ROUNDS; r++) {
        int base = (r * 997) % NQ;
        double s = pt_now();
        for (int k = 0; k < BATCH; k++) {
            int i = (base + k) % NQ;
            pt_decision d;
            pt_policy_decide(p, qorg[i], qmodel[i], NULL, qcap[i], qat[i], &u, &d);
            allows += d.allow;
        }
        idx[r] = (pt_now() - s) / BATCH;
        s = pt_now();
        for (int k = 0; k < BATCH; k++) {
            int i = (base + k) % NQ;
            sink += naive_decide(p, qorg[i], qmodel[i], qcap[i], qat[i]);
        }
        ref[r] = (pt_now() - s) / BATCH;
    }
    for (int i = 0; i < NQ; i++) {
        pt_decision d;
        pt_policy_decide(p, qorg[i], qmodel[i], NULL, qcap[i], qat[i], NULL, &d);
        disagree += d.allow != naive_decide(p, qorg[i], qmodel[i], qcap[i], qat[i]);
    }
    qsort(idx, ROUNDS, sizeof *idx, cmp_double);
    qsort(ref, ROUNDS, sizeof *ref, cmp_double);
    printf("policy decision, %d grants, %d organisations, %d models (%d%% of requests allowed)\n", n_grants, n_orgs,
           n_models, (int)(100.0 * allows / (ROUNDS * BATCH)));
    printf("  indexed pt_policy_decide     median %8.3f us  p90 %8.3f us\n", idx[ROUNDS / 2] * 1e6, idx[ROUNDS * 9 / 10] * 1e6);
    printf("  reference: linear scan+glob  median %8.3f us  p90 %8.3f us\n", ref[ROUNDS / 2] * 1e6, ref[ROUNDS * 9 / 10] * 1e6);
    printf("  ratio reference/indexed      %.1fx\n", ref[ROUNDS / 2] / idx[ROUNDS / 2]);
    printf("  decisions that differ from the reference: %d of %d\n", disagree, NQ);
    pt_policy_free(p);
    return disagree != 0;
}
