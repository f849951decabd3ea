/* parity finetune — train a LoRA adapter on JSONL (prompt/completion or chat messages), and
 * `parity finetune merge` / `parity finetune export` for the adapters it writes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "common/util.h"
#include "engine/lora.h"
#include "engine/modelfile.h"
#include "train/finetune.h"

const char cmd_finetune_summary[] = "train a LoRA adapter on JSONL; merge or export adapters";

static void usage(void) {
    printf("usage: parity finetune -m MODEL --data FILE.jsonl --out DIR [options]\n"
           "       parity finetune --config FINETUNE.yaml [options override it]\n"
           "       parity finetune merge -m MODEL --lora ADAPTER[:SCALE] --out DIR\n"
           "       parity finetune export --lora ADAPTER -m MODEL --out FILE.gguf|DIR\n\n"
           "Trains low-rank adapters on the frozen weights of a Llama model (an HF directory) from\n"
           "JSONL lines {\"prompt\",\"completion\"} or {\"messages\":[...]} (rendered as the server renders\n"
           "a chat: the model's template or the plain one; loss on completion / assistant reply\n"
           "tokens only). Writes DIR/adapter_config.json +\n"
           "DIR/adapter_model.safetensors (PEFT), DIR/adapter.gguf (llama.cpp) and DIR/log.jsonl.\n\n"
           "  --targets LIST     among q,k,v,o,gate,up,down or all (default q,v)\n"
           "  --rank R           (default 8)         --alpha A     (default 16)\n"
           "  --dropout P        on the adapter input (default 0.05)\n"
           "  --steps N (100)    --batch-size B (4)  --accum K (1) --max-len TOKENS (256)\n"
           "  --lr LR (1e-3)     --min-lr (0)        --warmup N (0) --weight-decay (0) --clip (1)\n"
           "  --seed S (1)       --threads N (2)     --on-error stop|skip (malformed JSONL lines)\n"
           "  --init ADAPTER     continue training an adapter (its rank, alpha and targets)\n"
           "  --beta1 (0.9) --beta2 (0.999) --eps (1e-8)   AdamW\n"
           "  --quiet            no progress bar\n\n"
           "merge: writes MODEL with the adapter merged (W + alpha/r*SCALE*B*A) as an HF directory.\n"
           "export: rewrites an adapter (PEFT dir or LoRA GGUF) as a LoRA GGUF (FILE.gguf) or a\n"
           "PEFT directory.\n\n"
           "examples:\n"
           "  parity finetune -m models/base --data chats.jsonl --out runs/lora --targets q,k,v,o --rank 8\n"
           "  parity generate -m models/base --lora runs/lora:1.0 --prompt 'User: hi'\n"
           "  parity finetune merge -m models/base --lora runs/lora --out models/merged\n");
}

static int do_merge(int argc, char **argv) {
    const char *model = NULL, *spec = NULL, *out = NULL;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) return cli_usage_error("finetune", "%s needs a value", argv[i]);
        const char *o = argv[i], *v = argv[++i];
        if (!strcmp(o, "-m") || !strcmp(o, "--model")) model = v;
        else if (!strcmp(o, "--lora")) spec = v;
        else if (!strcmp(o, "--out")) out = v;
        else return cli_usage_error("finetune", "unknown option '%s'", o);
    }
    if (!model || !spec || !out) return cli_usage_error("finetune", "%s needs -m MODEL, --lora ADAPTER and --out", argv[1]);
    pt_err err = {0};
    pt_model_files mf;
    pt_lora *l = NULL;
    char *path = NULL;
    float scale;
    int rc = pt_lora_parse_spec(spec, &path, &scale, &err);
    if (!rc && !(rc = pt_model_files_open(&mf, model, &err))) {
        rc = pt_lora_load(path, &mf.config, &l, &err);
        if (!rc && !strcmp(argv[1], "merge")) rc = pt_lora_merge(model, l, scale, out, &err);
        else if (!rc) {
            size_t n = strlen(out);
            rc = n > 5 && !strcmp(out + n - 5, ".gguf") ? pt_lora_save_gguf(l, &mf.config, out, &err)
                                                      : pt_lora_save_peft(l, &mf.config, out, &err);
        }
        pt_model_files_close(&mf);
    }
    free(path);
    pt_lora_free(l);
    if (rc) return cli_fail(&err);
    printf("wrote %s\n", out);
    return 0;
}

int cmd_finetune(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    if (argc > 1 && (!strcmp(argv[1], "merge") || !strcmp(argv[1], "export"))) return do_merge(argc, argv);
    pt_finetune_conf fc;
    pt_finetune_conf_defaults(&fc);
    pt_err err = {0};
    int quiet = 0;
    /* --config first, so that flags override it */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--config")) {
            char *s;
            size_t len;
            int rc = pt_read_file(argv[i + 1], 1u << 20, &s, &len, &err);
            if (!rc) rc = pt_finetune_conf_parse(s, len, argv[i + 1], &fc, &err), free(s);
            if (rc) {
                pt_finetune_conf_free(&fc);
                return cli_fail(&err);
            }
        }
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (i + 1 >= argc) {
            bad = cli_usage_error("finetune", "%s needs a value", o);
            break;
        }
        const char *v = argv[++i];
        double x = 0;
        int num = pt_parse_double(v, &x) == 0 && isfinite(x);
        char **str = !strcmp(o, "-m") || !strcmp(o, "--model") ? &fc.model : !strcmp(o, "--data") ? &fc.data
                   : !strcmp(o, "--out") ? &fc.out : !strcmp(o, "--targets") ? &fc.targets
                   : !strcmp(o, "--init") ? &fc.init : NULL;
        if (str) {
            free(*str);
            *str = strdup(v);
        } else if (!strcmp(o, "--config")) {
        } else if (!strcmp(o, "--on-error")) {
            if (strcmp(v, "skip") && strcmp(v, "stop")) bad = cli_usage_error("finetune", "--on-error is skip or stop");
            fc.skip_errors = !strcmp(v, "skip");
        } else if (!num) {
            bad = cli_usage_error("finetune", "%s: unknown option or not a number '%s'", o, v);
        } else if (!strcmp(o, "--rank") && x >= 1 && x <= 65536 && x == floor(x)) fc.rank = (int)x;
        else if (!strcmp(o, "--alpha") && x > 0) fc.alpha = (float)x;
        else if (!strcmp(o, "--dropout") && x >= 0 && x < 1) fc.dropout = (float)x;
        else if (!strcmp(o, "--steps") && x >= 1 && x == floor(x)) fc.steps = (int64_t)x;
        else if (!strcmp(o, "--batch-size") && x >= 1 && x <= 65536 && x == floor(x)) fc.batch_size = (int)x;
        else if (!strcmp(o, "--accum") && x >= 1 && x <= 65536 && x == floor(x)) fc.accum = (int)x;
        else if (!strcmp(o, "--max-len") && x >= 2 && x <= (1 << 20) && x == floor(x)) fc.max_len = (int)x;
        else if (!strcmp(o, "--lr") && x >= 0) fc.lr = (float)x;
        else if (!strcmp(o, "--min-lr") && x >= 0) fc.min_lr = (float)x;
        else if (!strcmp(o, "--warmup") && x >= 0 && x == floor(x)) fc.warmup = (int64_t)x;
        else if (!strcmp(o, "--weight-decay") && x >= 0) fc.weight_decay = (float)x;
        else if (!strcmp(o, "--clip") && x >= 0) fc.clip = (float)x;
        else if (!strcmp(o, "--beta1") && x >= 0 && x < 1) fc.beta1 = (float)x;
        else if (!strcmp(o, "--beta2") && x >= 0 && x < 1) fc.beta2 = (float)x;
        else if (!strcmp(o, "--eps") && x > 0 && x <= 1) fc.eps = (float)x;
        else if (!strcmp(o, "--seed") && x >= 0 && x == floor(x)) fc.seed = (uint64_t)x;
        else if (!strcmp(o, "--threads") && x >= 1 && x <= 256 && x == floor(x)) fc.threads = (int)x;
        else bad = cli_usage_error("finetune", "unknown option '%s' or value '%s' out of range", o, v);
    }
    if (!bad && (!fc.model || !fc.data || !fc.out))
        bad = cli_usage_error("finetune", "-m MODEL, --data FILE.jsonl and --out DIR are required");
    if (bad) {
        pt_finetune_conf_free(&fc);
        return bad;
    }
    pt_finetune_result res;
    int rc = pt_finetune_run(&fc, quiet, &res, &err);
    if (!rc)
        printf("{\"steps\":%lld,\"first_loss\":%.9g,\"last_loss\":%.9g,\"examples\":%zu,\"skipped_lines\":%zu,"
               "\"empty_examples\":%zu,\"adapter_params\":%zu,\"tokens_per_s\":%.1f,\"out\":\"%s\"}\n",
               (long long)res.steps, res.first_loss, res.last_loss, res.examples, res.skipped_lines, res.empty,
               res.adapter_params, res.tokens_per_s, fc.out);
    pt_finetune_conf_free(&fc);
    return rc ? cli_fail(&err) : 0;
}
