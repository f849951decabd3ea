/* parity generate — continue a prompt with the sampler, with optional interventions. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_engine.h"
#include "engine/lora.h"
#include "engine/sample.h"
#include "common/buf.h"
#include "common/util.h"
#include "engine/tokenizer.h"

const char cmd_generate_summary[] = "generate tokens from a prompt (with optional interventions)";

static void usage(void) {
    printf("usage: parity generate -m MODEL (--prompt TEXT | --tokens 1,2,3) [--max-tokens N]\n"
           "                       [sampling options] [--add ...] [--set ...] [--ablate ...] [--json]\n\n"
           CLI_LORA_HELP "\n"
           "Prefills the prompt, then decodes with the KV cache until --max-tokens, an end-of-sequence\n"
           "token or a --stop string. Greedy by default (temperature 0); with a temperature the draws are\n"
           "deterministic for a --seed. Interventions apply to the prompt and to every generated\n"
           "position (positions are absolute).\n\n"
           "options:\n"
           "  -m, --model MODEL   model directory or .gguf\n"
           "  --prompt TEXT       text prompt (needs the tokenizer)\n"
           "  --tokens IDS        comma-separated token ids\n"
           "  --max-tokens N      tokens to generate (default 16)\n"
           "  --ignore-eos        do not stop at end-of-sequence tokens\n"
           "  --temperature T     0 = greedy (default 0)\n"
           "  --top-k K  --top-p P  --min-p P  --repetition-penalty R  --seed S\n"
           "  --stop TEXT         stop before this text (may repeat, up to 4)\n"
           CLI_HOOK_OPTIONS_HELP
           "  --json              print {\"tokens\": [...], \"logprobs\": [...], \"text\": ...}\n"
           "  --threads N         compute threads (default 2)\n\n"
           "examples:\n"
           "  parity generate -m models/parity-demo --prompt 'And God said' --max-tokens 32\n"
           "  parity generate -m models/parity-demo --tokens 1,2,3 --max-tokens 8 --temperature 0.8 --seed 1\n");
}

int cmd_generate(int argc, char **argv) {
    const char *lora_spec = NULL;
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *model = NULL, *prompt = NULL, *tokens = NULL;
    int threads = 2, max_tokens = 16, json = 0, ignore_eos = 0;
    pt_sample_params sp;
    pt_sample_params_default(&sp);
    sp.temperature = 0;
    const char *stops[4];
    int n_stops = 0;
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
        else if (!strcmp(o, "--lora")) lora_spec = v;
        else if (!strcmp(o, "--stop")) {
            if (n_stops == 4) return cli_usage_error("generate", "at most 4 --stop strings");
            stops[n_stops++] = v;
        } else if (!strcmp(o, "--seed")) {
            if (pt_parse_u64(v, &sp.seed)) return cli_usage_error("generate", "--seed %s: not a number", v);
        } else if (!strcmp(o, "--temperature") || !strcmp(o, "--top-p") || !strcmp(o, "--min-p") ||
                   !strcmp(o, "--repetition-penalty") || !strcmp(o, "--top-k")) {
            double x;
            if (pt_parse_double(v, &x)) return cli_usage_error("generate", "%s %s: not a number", o, v);
            if (!strcmp(o, "--temperature")) sp.temperature = (float)x;
            else if (!strcmp(o, "--top-p")) sp.top_p = (float)x;
            else if (!strcmp(o, "--min-p")) sp.min_p = (float)x;
            else if (!strcmp(o, "--repetition-penalty")) sp.repetition_penalty = (float)x;
            else if (x < 0 || x > 1e9) return cli_usage_error("generate", "--top-k %s out of range", v);
            else sp.top_k = (int32_t)x;
        }
        else if (!cli_is_hook_option(o)) return cli_usage_error("generate", "unknown option '%s'", o);
    }
    if (!model) return cli_usage_error("generate", "-m MODEL is required");
    if (!!prompt == !!tokens) return cli_usage_error("generate", "give exactly one of --prompt and --tokens");
    if (max_tokens < 0 || max_tokens > 1 << 20) return cli_usage_error("generate", "bad --max-tokens");
    if (threads < 1 || threads > 256) return cli_usage_error("generate", "--threads must be 1..256");
    pt_err err = {0};
    if (pt_sample_params_check(&sp, &err)) return cli_usage_error("generate", "%s", err.msg);
    pt_sampler *smp = NULL;
    pt_tokenizer *tok = NULL;
    char *text = NULL;
    size_t text_len = 0, cut = (size_t)-1;
    pt_engine *e = NULL;
    pt_hooks *h = NULL;
    pt_seq *s = NULL;
    int32_t *ids = NULL, *gen = NULL;
    float *lg = NULL, *lps = NULL;
    size_t n_ids = 0;
    int n_gen = 0;
    pt_lora *lora = NULL;
    int rc = pt_engine_open(model, threads, &e, &err);
    if (!rc) rc = cli_lora_option(e, lora_spec, &lora, &err);
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
    /* Text in and out needs the tokenizer; token ids in, without --stop, do not. */
    if (!rc && (prompt || n_stops)) rc = cli_tokenizer(e, &tok, &err);
    if (!rc) rc = pt_sampler_new(&sp, (size_t)c->vocab_size, &smp, &err);
    for (size_t i = 0; !rc && i < n_ids; i++) pt_sampler_accept(smp, ids[i]);
    if (!rc) {
        pt_seq_set_hooks(s, h);
        pt_step st = {s, ids, (int)n_ids, 0, lg};
        double t0 = pt_now();
        rc = pt_engine_forward(e, &st, 1, &err);
        while (!rc && n_gen < max_tokens) {
            pt_sample_result r;
            if ((rc = pt_sampler_sample(smp, lg, 0, &r, &err))) break;
            int eos = 0;
            for (int k = 0; k < c->n_eos; k++) eos |= r.token == c->eos_token_ids[k];
            if (eos && !ignore_eos) break;
            lps[n_gen] = r.logprob;
            gen[n_gen++] = r.token;
            if (n_stops) { /* stop strings are matched on the decoded text */
                free(text);
                text = NULL;
                if ((rc = pt_tokenizer_decode(tok, gen, (size_t)n_gen, 0, &text, &text_len, &err))) break;
                pt_stop_result sr;
                pt_stop_check(text, text_len, stops, (size_t)n_stops, &sr);
                if (sr.stopped) {
                    cut = sr.stop_pos;
                    break;
                }
            }
            if (n_gen == max_tokens || s->pos >= s->max_ctx) break;
            st = (pt_step){s, &gen[n_gen - 1], 1, 0, lg};
            rc = pt_engine_forward(e, &st, 1, &err);
        }
        double dt = pt_now() - t0;
        if (!rc && tok) {
            free(text);
            text = NULL;
            rc = pt_tokenizer_decode(tok, gen, (size_t)n_gen, 1, &text, &text_len, &err);
            if (!rc && cut < text_len) text[text_len = cut] = 0;
        }
        if (!rc) {
            if (json) {
                json_t *o = json_object(), *t = json_array(), *l = json_array();
                for (int i = 0; i < n_gen; i++) {
                    json_array_append_new(t, json_integer(gen[i]));
                    json_array_append_new(l, json_real(lps[i]));
                }
                json_object_set_new(o, "tokens", t);
                json_object_set_new(o, "logprobs", l);
                if (text) {
                    pt_buf clean;
                    pt_buf_init(&clean, text_len * 3 + 16);
                    pt_utf8_clean(text, text_len, &clean);
                    json_object_set_new(o, "text", json_stringn(clean.data ? clean.data : "", clean.len));
                    pt_buf_free(&clean);
                }
                char *d = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
                printf("%s\n", d);
                free(d);
                json_decref(o);
            } else if (text) {
                fwrite(text, 1, text_len, stdout);
                printf("\n");
            } else {
                for (int i = 0; i < n_gen; i++) printf("%s%d", i ? "," : "", gen[i]);
                printf("\n");
            }
            fprintf(stderr, "parity generate: %zu prompt + %d generated tokens in %.3f s\n", n_ids, n_gen, dt);
        }
    }
    free(text);
    pt_sampler_free(smp);
    free(ids), free(gen), free(lg), free(lps);
    pt_seq_free(s);
    pt_hooks_free(h);
    pt_engine_free(e);
    pt_lora_free(lora);
    return rc ? cli_fail(&err) : 0;
}
