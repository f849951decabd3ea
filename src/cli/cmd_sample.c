/* parity sample — runs the sampler on a row of logits from a file: the filtered distribution,
 * the log-softmax, and seeded draws. For checking the sampler against a reference and for
 * looking at what a setting does to a distribution. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "common/util.h"
#include "engine/sample.h"

const char cmd_sample_summary[] = "apply sampling settings to a row of logits (distribution, log-probs, draws)";

static void usage(FILE *f) {
    fprintf(f,
            "usage: parity sample --logits FILE [--temperature T] [--top-k K] [--top-p P] [--min-p P]\n"
            "                     [--repetition-penalty R --seen 1,2,3] [--seed S] [--draws N] [--top N]\n"
            "\n"
            "FILE holds one row of logits as little-endian float32. Prints JSON:\n"
            "  probs     the distribution sampling draws from after the penalty, temperature, top-k,\n"
            "            top-p and min-p (removed tokens are 0)\n"
            "  logprobs  the log-softmax of the raw logits\n"
            "  counts    with --draws N: how often each token was drawn in N seeded draws\n"
            "  first     the first (up to 32) tokens drawn, each with its top --top alternatives\n"
            "\n"
            "example:\n"
            "  parity sample --logits row.f32 --temperature 0.7 --top-p 0.9 --draws 10000 --seed 1\n");
}

static int parse_f(const char *s, float *out) {
    double d;
    if (pt_parse_double(s, &d)) return -1;
    *out = (float)d;
    return 0;
}

int cmd_sample(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    pt_sample_params p;
    pt_sample_params_default(&p);
    const char *file = NULL, *seen = NULL;
    uint64_t draws = 0, top = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = !v;
        int64_t k = 0;
        if (!strcmp(a, "--logits")) file = v;
        else if (!strcmp(a, "--seen")) seen = v;
        else if (!strcmp(a, "--temperature")) bad = bad || parse_f(v, &p.temperature);
        else if (!strcmp(a, "--top-p")) bad = bad || parse_f(v, &p.top_p);
        else if (!strcmp(a, "--min-p")) bad = bad || parse_f(v, &p.min_p);
        else if (!strcmp(a, "--repetition-penalty")) bad = bad || parse_f(v, &p.repetition_penalty);
        else if (!strcmp(a, "--top-k")) bad = bad || pt_parse_i64(v, &k) || k < 0 || k > INT32_MAX, p.top_k = (int32_t)k;
        else if (!strcmp(a, "--seed")) bad = bad || pt_parse_u64(v, &p.seed);
        else if (!strcmp(a, "--draws")) bad = bad || pt_parse_u64(v, &draws) || draws > 100000000;
        else if (!strcmp(a, "--top")) bad = bad || pt_parse_u64(v, &top) || top > PT_SAMPLE_MAX_TOP;
        else return cli_usage_error("sample", "unknown option '%s'", a);
        if (bad) return cli_usage_error("sample", "%s needs a valid value", a);
    }
    if (!file) return cli_usage_error("sample", "--logits FILE is required");
    pt_err err;
    pt_err_clear(&err);
    char *raw;
    size_t len;
    if (pt_read_file(file, (size_t)1 << 30, &raw, &len, &err)) return cli_fail(&err);
    if (!len || len % 4) {
        free(raw);
        fprintf(stderr, "parity: %s: %zu bytes is not a non-empty row of float32\n", file, len);
        return 1;
    }
    size_t n = len / 4;
    float *logits = malloc(len);
    memcpy(logits, raw, len);
    free(raw);
    pt_sampler *s;
    if (pt_sampler_new(&p, n, &s, &err)) {
        free(logits);
        return cli_fail(&err);
    }
    for (const char *q = seen; q && *q;) {
        char *end;
        long id = strtol(q, &end, 10);
        if (end == q) break;
        pt_sampler_accept(s, (int32_t)id);
        q = *end == ',' ? end + 1 : end;
    }
    float *probs = malloc(n * sizeof *probs), *lp = malloc(n * sizeof *lp);
    uint64_t *counts = calloc(n, sizeof *counts);
    int rc = 0;
    if (pt_sampler_probs(s, logits, probs, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    pt_log_softmax(logits, n, lp);
    json_t *o = json_object(), *jp = json_array(), *jl = json_array(), *jc = json_array(), *jf = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(jp, json_real(probs[i]));
        json_array_append_new(jl, json_real(lp[i]));
    }
    pt_sample_params p2 = p;
    pt_sampler *d = NULL;
    if (draws && pt_sampler_new(&p2, n, &d, &err)) {
        json_decref(o), json_decref(jp), json_decref(jl), json_decref(jc), json_decref(jf);
        rc = cli_fail(&err);
        goto out;
    }
    for (uint64_t k = 0; k < draws; k++) {
        /* every draw from the same distribution: the PRNG stream goes on, the seen set is the
         * given one each time (sampling records the drawn token) */
        pt_sampler_clear_seen(d);
        for (const char *q = seen; q && *q;) {
            char *end;
            long id = strtol(q, &end, 10);
            if (end == q) break;
            pt_sampler_accept(d, (int32_t)id);
            q = *end == ',' ? end + 1 : end;
        }
        pt_sample_result r;
        if (pt_sampler_sample(d, logits, top, &r, &err)) {
            rc = cli_fail(&err);
            break;
        }
        counts[r.token]++;
        if (k < 32) {
            json_t *e = json_object(), *alts = json_array();
            json_object_set_new(e, "token", json_integer(r.token));
            json_object_set_new(e, "logprob", json_real(r.logprob));
            for (size_t t = 0; t < r.n_top; t++) {
                json_t *a = json_object();
                json_object_set_new(a, "token", json_integer(r.top[t].token));
                json_object_set_new(a, "logprob", json_real(r.top[t].logprob));
                json_array_append_new(alts, a);
            }
            json_object_set_new(e, "top", alts);
            json_array_append_new(jf, e);
        }
    }
    pt_sampler_free(d);
    for (size_t i = 0; i < n && draws; i++) json_array_append_new(jc, json_integer((json_int_t)counts[i]));
    json_object_set_new(o, "probs", jp);
    json_object_set_new(o, "logprobs", jl);
    json_object_set_new(o, "counts", jc);
    json_object_set_new(o, "first", jf);
    char *js = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (js) printf("%s\n", js);
    free(js);
    json_decref(o);
out:
    pt_sampler_free(s);
    free(logits), free(probs), free(lp), free(counts);
    return rc;
}
