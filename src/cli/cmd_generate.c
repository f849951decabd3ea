/* parity generate — continue a prompt (greedy until the sampler lands), with interventions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_engine.h"
#include "common/util.h"

const char cmd_generate_summary[] = "generate tokens from a prompt (with optional interventions)";

static void usage(void) {
    printf("usage: parity generate -m MODEL (--prompt TEXT | --tokens 1,2,3) [--max-tokens N]\n"
           "                       [--add ...] [--set ...] [--ablate ...] [--spec FILE.json] [--json]\n\n"
           "Prefills the prompt, then decodes with the KV cache (greedy: the most likely token) until\n"
           "--max-tokens or an end-of-sequence token. Interventions apply to the prompt and to every\n"
           "generated position (positions are absolute).\n\n"
           "options:\n"
           "  -m, --model MODEL   model directory or .gguf\n"
           "  --prompt TEXT       text prompt (needs the tokenizer)\n"
           "  --tokens IDS        comma-separated token ids\n"
           "  --max-tokens N      tokens to generate (default 16)\n"
           "  --ignore-eos        do not stop at end-of-sequence tokens\n"
           CLI_HOOK_OPTIONS_HELP
           "  --json              print {\"tokens\": [...], \"logprobs\": [...]} instead of ids\n"
           "  --threads N         compute threads (default 2)\n\n"
           "example:\n"
           "  parity generate -m models/tiny --tokens 1,2,3 --max-tokens 8\n");
}

int cmd_generate(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *model = NULL, *prompt = NULL, *tokens = NULL;
    int threads = 2, max_tokens = 16, json = 0, ignore_eos = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(o, "--ignore-eos")) {
            ignore_eos = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("generate", "%s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "-m") || !strcmp(o, "--model")) model = v;
        else if (!strcmp(o, "--prompt")) prompt = v;
        else if (!strcmp(o, "--tokens")) tokens = v;
        else if (!strcmp(o, "--max-tokens")) max_tokens = atoi(v);
        else if (!strcmp(o, "--threads")) threads = atoi(v);
        else if (!cli_is_hook_option(o)) return cli_usage_error("generate", "unknown option '%s'", o);
    }
    if (!model) return cli_usage_error("generate", "-m MODEL is required");
    if (!!prompt == !!tokens) return cli_usage_error("generate", "give exactly one of --prompt and --tokens");
    if (max_tokens < 0 || max_tokens > 1 << 20) return cli_usage_error("generate", "bad --max-tokens");
    if (threads < 1 || threads > 256) return cli_usage_error("generate", "--threads must be 1..256");
    pt_err err = {0};
    pt_engine *e = NULL;
    pt_hooks *h = NULL;
    pt_seq *s = NULL;
    int32_t *ids = NULL, *gen = NULL;
    float *lg = NULL, *lps = NULL;
    size_t n_ids = 0;
    int n_gen = 0;
    int rc = pt_engine_open(model, threads, &e, &err);
    if (!rc) rc = tokens ? cli_parse_tokens(tokens, &ids, &n_ids, &err) : cli_encode_prompt(e, prompt, &ids, &n_ids, &err);
    if (!rc) rc = pt_hooks_new(pt_engine_config(e), &h, &err);
    for (int i = 1; !rc && i + 1 < argc; i++)
        if (cli_is_hook_option(argv[i])) rc = cli_hook_option(h, argv[i], argv[i + 1], &err), i++;
    const pt_config *c = e ? pt_engine_config(e) : NULL;
    if (!rc && !(s = pt_seq_new(e, 0))) rc = pt_errf(&err, PT_ENOMEM, "out of memory");
    if (!rc && (!(lg = malloc((size_t)c->vocab_size * sizeof(float))) ||
                !(gen = malloc(((size_t)max_tokens + 1) * sizeof *gen)) ||
                !(lps = malloc(((size_t)max_tokens + 1) * sizeof *lps))))
        rc = pt_errf(&err, PT_ENOMEM, "out of memory");
    if (!rc) {
        pt_seq_set_hooks(s, h);
        pt_step st = {s, ids, (int)n_ids, 0, lg};
        double t0 = pt_now();
        rc = pt_engine_forward(e, &st, 1, &err);
        while (!rc && n_gen < max_tokens) {
            int next = pt_argmax(lg, c->vocab_size);
            pt_log_softmax(lg, c->vocab_size);
            lps[n_gen] = lg[next];
            gen[n_gen++] = next;
            int eos = 0;
            for (int k = 0; k < c->n_eos; k++) eos |= next == c->eos_token_ids[k];
            if ((eos && !ignore_eos) || n_gen == max_tokens || s->pos >= s->max_ctx) break;
            st = (pt_step){s, &gen[n_gen - 1], 1, 0, lg};
            rc = pt_engine_forward(e, &st, 1, &err);
        }
        double dt = pt_now() - t0;
        if (!rc) {
            if (json) {
                printf("{\"tokens\":[");
                for (int i = 0; i < n_gen; i++) printf("%s%d", i ? "," : "", gen[i]);
                printf("],\"logprobs\":[");
                for (int i = 0; i < n_gen; i++) printf("%s%.6g", i ? "," : "", lps[i]);
                printf("]}\n");
            } else {
                for (int i = 0; i < n_gen; i++) printf("%s%d", i ? "," : "", gen[i]);
                printf("\n");
            }
            fprintf(stderr, "parity generate: %zu prompt + %d generated tokens in %.3f s\n", n_ids, n_gen, dt);
        }
    }
    free(ids), free(gen), free(lg), free(lps);
    pt_seq_free(s);
    pt_hooks_free(h);
    pt_engine_free(e);
    return rc ? cli_fail(&err) : 0;
}
