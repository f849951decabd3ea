/* parity trace — one forward pass with hook reads and interventions, written to a
 * .safetensors file (one F32 tensor per read hook, named by the hook). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_engine.h"
#include "engine/lora.h"

const char cmd_trace_summary[] = "run a prompt and save hook activations (with interventions)";

static void usage(void) {
    printf("usage: parity trace -m MODEL (--prompt TEXT | --tokens 1,2,3) --read NAME [--read NAME ...]\n"
           "                    [--add NAME=FILE.safetensors[:SCALE]] [--set NAME=FILE.safetensors]\n"
           "                    [--ablate NAME[:mean]] [--spec interventions.json] -o OUT.safetensors\n\n"
           CLI_LORA_HELP "\n"
           "Runs one forward pass over the prompt and writes each read hook as an F32 tensor named by\n"
           "its hook name: [positions, ...] (q/k/v/z: [positions, heads, head_dim]; attn.hook_pattern:\n"
           "[heads, positions, positions]; logits: [positions, vocab]). Interventions apply before\n"
           "the reads at the same hook. Hook names follow TransformerLens: hook_embed, hook_pos_embed,\n"
           "blocks.{i}.hook_resid_pre, blocks.{i}.attn.hook_q|k|v|z|pattern, blocks.{i}.hook_attn_out,\n"
           "blocks.{i}.hook_resid_mid, blocks.{i}.mlp.hook_pre|post, blocks.{i}.hook_mlp_out,\n"
           "blocks.{i}.hook_resid_post, ln_final.hook_normalized, logits ('parity info' lists them).\n\n"
           "options:\n"
           "  -m, --model MODEL     model directory (config.json + safetensors) or .gguf\n"
           "  --prompt TEXT         text prompt (needs the tokenizer)\n"
           "  --tokens IDS          comma-separated token ids\n"
           "  --read NAME           cache this hook (repeatable); --read all: every hook\n"
           "  --positions LIST      keep only these positions in the reads (e.g. 0,5)\n"
           CLI_HOOK_OPTIONS_HELP
           "  -o, --output FILE     the .safetensors file to write\n"
           "  --threads N           compute threads (default 2)\n\n"
           "example:\n"
           "  parity trace -m models/tiny --tokens 1,2,3 --read blocks.0.hook_resid_post --read logits -o out.safetensors\n");
}

int cmd_trace(int argc, char **argv) {
    const char *lora_spec = NULL;
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *model = NULL, *prompt = NULL, *tokens = NULL, *out = NULL, *positions = NULL;
    int threads = 2, n_reads = 0, read_all = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (i + 1 >= argc) return cli_usage_error("trace", "%s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "-m") || !strcmp(o, "--model")) model = v;
        else if (!strcmp(o, "--prompt")) prompt = v;
        else if (!strcmp(o, "--tokens")) tokens = v;
        else if (!strcmp(o, "-o") || !strcmp(o, "--output")) out = v;
        else if (!strcmp(o, "--positions")) positions = v;
        else if (!strcmp(o, "--threads")) threads = atoi(v);
        else if (!strcmp(o, "--lora")) lora_spec = v;
        else if (!strcmp(o, "--read")) {
            n_reads++;
            if (!strcmp(v, "all")) read_all = 1;
        } else if (!cli_is_hook_option(o)) return cli_usage_error("trace", "unknown option '%s'", o);
    }
    if (!model) return cli_usage_error("trace", "-m MODEL is required");
    if (!!prompt == !!tokens) return cli_usage_error("trace", "give exactly one of --prompt and --tokens");
    if (!out) return cli_usage_error("trace", "-o OUT.safetensors is required");
    if (threads < 1 || threads > 256) return cli_usage_error("trace", "--threads must be 1..256");
    pt_err err = {0};
    pt_engine *e = NULL;
    pt_hooks *h = NULL;
    pt_seq *s = NULL;
    int32_t *ids = NULL, *pos = NULL;
    size_t n_ids = 0, n_pos = 0;
    pt_tensor *ts = NULL;
    size_t n_ts = 0;
    pt_lora *lora = NULL;
    int rc = pt_engine_open(model, threads, &e, &err);
    if (!rc) rc = cli_lora_option(e, lora_spec, &lora, &err);
    if (!rc) rc = tokens ? cli_parse_tokens(tokens, &ids, &n_ids, &err) : cli_encode_prompt(e, prompt, &ids, &n_ids, &err);
    if (!rc && positions) rc = cli_parse_positions(positions, &pos, &n_pos, &err);
    if (!rc) rc = pt_hooks_new(pt_engine_config(e), &h, &err);
    /* Options in command-line order: reads first where they stand, interventions as given. */
    for (int i = 1; !rc && i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--read")) {
            if (!strcmp(v, "all")) continue;
            rc = pt_hooks_read(h, v, pos, n_pos, &err);
        } else if (cli_is_hook_option(o)) {
            rc = cli_hook_option(h, o, v, &err);
        }
    }
    if (!rc && read_all) {
        const pt_config *c = pt_engine_config(e);
        char name[128];
        for (int site = 0; !rc && site < pt_hook_n_sites(c); site++) {
            if (!pt_hook_site_exists(c, site)) continue;
            pt_hook_name(c, site, name, sizeof name);
            pt_err e2;
            int r2 = pt_hooks_read(h, name, pos, n_pos, &e2);
            if (r2 && r2 != PT_EEXIST) rc = r2, err = e2;
        }
    }
    if (!rc && !pt_hooks_n_reads(h)) rc = pt_errf(&err, PT_EINVAL, "nothing to read: give --read NAME");
    if (!rc && !(s = pt_seq_new(e, 0))) rc = pt_errf(&err, PT_ENOMEM, "out of memory");
    if (!rc) {
        pt_seq_set_hooks(s, h);
        pt_step st = {s, ids, (int)n_ids, 0, NULL};
        rc = pt_engine_forward(e, &st, 1, &err);
    }
    if (!rc) {
        n_ts = pt_hooks_n_reads(h);
        ts = calloc(n_ts, sizeof *ts);
        if (!ts) rc = pt_errf(&err, PT_ENOMEM, "out of memory");
        for (size_t i = 0; !rc && i < n_ts; i++) {
            pt_hook_tensor ht;
            const char *name = pt_hooks_read_name(h, i);
            if ((rc = pt_hooks_get(h, name, &ht, &err))) break;
            size_t numel = 1;
            for (int d = 0; d < ht.ndim; d++) numel *= (size_t)ht.shape[d];
            ts[i].name = (char *)name;
            ts[i].dtype = PT_F32;
            ts[i].ndim = ht.ndim;
            memcpy(ts[i].shape, ht.shape, sizeof ht.shape);
            ts[i].nbytes = numel * sizeof(float);
            /* pattern tensors are rebuilt by each get(): keep a copy */
            ts[i].owned = malloc(ts[i].nbytes ? ts[i].nbytes : 1);
            if (!ts[i].owned) rc = pt_errf(&err, PT_ENOMEM, "out of memory");
            else memcpy(ts[i].owned, ht.data, ts[i].nbytes), ts[i].data = ts[i].owned;
        }
    }
    if (!rc) {
        json_t *meta = json_object();
        char *tok = NULL;
        size_t cap = n_ids * 12 + 1, o = 0;
        if ((tok = malloc(cap))) {
            tok[0] = 0;
            for (size_t i = 0; i < n_ids; i++) o += (size_t)snprintf(tok + o, cap - o, "%s%d", i ? "," : "", ids[i]);
            json_object_set_new(meta, "tokens", json_string(tok));
        }
        json_object_set_new(meta, "model", json_string(model));
        rc = pt_safetensors_write(out, ts, n_ts, meta, &err);
        free(tok);
        json_decref(meta);
    }
    for (size_t i = 0; ts && i < n_ts; i++) free(ts[i].owned);
    free(ts);
    free(ids);
    free(pos);
    pt_seq_free(s);
    pt_hooks_free(h);
    pt_engine_free(e);
    pt_lora_free(lora);
    return rc ? cli_fail(&err) : 0;
}
