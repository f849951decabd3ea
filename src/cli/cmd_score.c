/* parity score — per-token log-probabilities of a text under a model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_engine.h"
#include "engine/lora.h"
#include "engine/sample.h"

const char cmd_score_summary[] = "per-token log-probabilities of a text";

static void usage(void) {
    printf("usage: parity score -m MODEL (--text TEXT | --tokens 1,2,3) [--json] [--threads N]\n\n"
           CLI_LORA_HELP "\n"
           "Runs the tokens through the model in one prefill and prints, for every token after the\n"
           "first, its log-probability given the ones before (natural log, from the full\n"
           "log-softmax over the vocabulary), then the total and the perplexity.\n\n"
           "  --json   {\"tokens\": [...], \"logprobs\": [null, ...], \"total\": X, \"perplexity\": Y}\n\n"
           "example:\n"
           "  parity score -m models/tiny --tokens 1,2,3,4 --json\n");
}

int cmd_score(int argc, char **argv) {
    const char *lora_spec = NULL;
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *model = NULL, *text = NULL, *tokens = NULL;
    int threads = 2, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--json")) {
            json = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("score", "%s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "-m") || !strcmp(o, "--model")) model = v;
        else if (!strcmp(o, "--text")) text = v;
        else if (!strcmp(o, "--tokens")) tokens = v;
        else if (!strcmp(o, "--threads")) threads = atoi(v);
        else if (!strcmp(o, "--lora")) lora_spec = v;
        else return cli_usage_error("score", "unknown option '%s'", o);
    }
    if (!model) return cli_usage_error("score", "-m MODEL is required");
    if (!!text == !!tokens) return cli_usage_error("score", "give exactly one of --text and --tokens");
    if (threads < 1 || threads > 256) return cli_usage_error("score", "--threads must be 1..256");
    pt_err err = {0};
    pt_engine *e = NULL;
    pt_seq *s = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    float *lg = NULL;
    pt_lora *lora = NULL;
    int rc = pt_engine_open(model, threads, &e, &err);
    if (!rc) rc = cli_lora_option(e, lora_spec, &lora, &err);
    if (!rc) rc = tokens ? cli_parse_tokens(tokens, &ids, &n, &err) : cli_encode_prompt(e, text, &ids, &n, &err);
    size_t V = e ? (size_t)pt_engine_config(e)->vocab_size : 0;
    if (!rc && !(s = pt_seq_new(e, 0))) rc = pt_errf(&err, PT_ENOMEM, "out of memory");
    if (!rc && !(lg = malloc(n * V * sizeof(float)))) rc = pt_errf(&err, PT_ENOMEM, "out of memory");
    if (!rc) {
        pt_step st = {s, ids, (int)n, 1, lg};
        rc = pt_engine_forward(e, &st, 1, &err);
    }
    if (!rc) {
        double total = 0;
        if (json) printf("{\"tokens\":[");
        for (size_t i = 0; json && i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
        if (json) printf("],\"logprobs\":[null");
        for (size_t i = 1; i < n; i++) {
            float *row = lg + (i - 1) * V;
            pt_log_softmax(row, (size_t)V, row);
            double lp = row[ids[i]];
            total += lp;
            if (json) printf(",%.9g", lp);
            else printf("%zu\t%d\t%.6f\n", i, ids[i], lp);
        }
        double ppl = n > 1 ? exp(-total / (double)(n - 1)) : 1.0;
        if (json) printf("],\"total\":%.9g,\"perplexity\":%.9g}\n", total, ppl);
        else printf("total\t%.6f\nperplexity\t%.6f\n", total, ppl);
    }
    free(ids), free(lg);
    pt_seq_free(s);
    pt_engine_free(e);
    pt_lora_free(lora);
    return rc ? cli_fail(&err) : 0;
}
