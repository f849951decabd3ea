/* parity train — from-scratch training from a YAML config, and `parity train grad` (the
 * gradient of the loss on one batch, for inspection and for checking against PyTorch). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "common/util.h"
#include "engine/config.h"
#include "engine/tensor.h"
#include "train/loop.h"
#include "train/train.h"

const char cmd_train_summary[] = "train a model from scratch (YAML config); gradients of a batch";

static void usage(void) {
    printf("usage: parity train --config TRAIN.yaml [--resume] [--quiet]\n"
           "       parity train grad -m MODEL --batch BATCH.safetensors --out GRADS.safetensors [--threads N]\n\n"
           "Trains a Llama- or GPT-2-shaped model on a token dataset written by `parity data`, with\n"
           "AdamW, warmup + cosine learning rate, gradient clipping and accumulation, periodic\n"
           "validation and checkpoints; writes an HF model directory (config.json,\n"
           "model.safetensors, tokenizer.json) that the engine serves. See docs/train.md for the\n"
           "config keys.\n\n"
           "  --resume   continue from OUT/latest (the last checkpoint), bit-identically\n"
           "  --quiet    no progress bar\n\n"
           "grad: loads MODEL (an HF directory) and a batch file holding `tokens` and `targets`\n"
           "(I32 [B, T]; target -100 is ignored) and optionally `soft` (F32 [B, T, V] target\n"
           "distributions), and writes the gradient of the mean loss for every parameter (HF names)\n"
           "plus `loss` (F32 [1]).\n\n"
           "example:\n"
           "  parity train --config models/tiny-train.yaml\n"
           "  parity train grad -m models/tiny --batch batch.safetensors --out grads.safetensors\n");
}

static int read_i32_2d(pt_tensors *ts, const char *name, const char *path, const int32_t **out, int64_t *B, int64_t *T,
                       pt_err *err) {
    const pt_tensor *t = pt_tensors_find(ts, name);
    if (!t) return pt_errf(err, PT_EFORMAT, "%s: no tensor '%s'", path, name);
    if (t->dtype != PT_I32 || t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1)
        return pt_errf(err, PT_EFORMAT, "%s: '%s' must be I32 [B, T]", path, name);
    *out = t->data, *B = t->shape[0], *T = t->shape[1];
    return PT_OK;
}

static int cmd_grad(int argc, char **argv) {
    const char *model = NULL, *batch = NULL, *outp = NULL;
    int threads = 2;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (i + 1 >= argc) return cli_usage_error("train grad", "%s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "-m") || !strcmp(o, "--model")) model = v;
        else if (!strcmp(o, "--batch")) batch = v;
        else if (!strcmp(o, "--out")) outp = v;
        else if (!strcmp(o, "--threads")) threads = atoi(v);
        else return cli_usage_error("train grad", "unknown option '%s'", o);
    }
    if (!model || !batch || !outp) return cli_usage_error("train grad", "-m, --batch and --out are required");
    if (threads < 1 || threads > 256) return cli_usage_error("train grad", "--threads must be 1..256");
    pt_err err = {0};
    pt_config c;
    pt_tensors bt;
    pt_tensors_init(&bt);
    pt_trainer *t = NULL;
    pt_tensor *outs = NULL;
    char *cfgp = pt_path_join(model, "config.json");
    const int32_t *tok = NULL, *tgt = NULL;
    const float *soft = NULL;
    int64_t B = 0, T = 0, B2, T2;
    int rc = cfgp ? pt_config_load(cfgp, &c, &err) : pt_errf(&err, PT_ENOMEM, "out of memory");
    if (!rc) rc = pt_safetensors_read(batch, &bt, &err);
    if (!rc) rc = read_i32_2d(&bt, "tokens", batch, &tok, &B, &T, &err);
    if (!rc) rc = read_i32_2d(&bt, "targets", batch, &tgt, &B2, &T2, &err);
    if (!rc && (B2 != B || T2 != T)) rc = pt_errf(&err, PT_EFORMAT, "%s: tokens and targets differ in shape", batch);
    if (!rc && (B > 65536 || T > c.max_pos))
        rc = pt_errf(&err, PT_EINVAL, "%s: a [%lld, %lld] batch is too large for this model", batch, (long long)B,
                     (long long)T);
    const pt_tensor *st = rc ? NULL : pt_tensors_find(&bt, "soft");
    if (st) {
        if (st->dtype != PT_F32 || st->ndim != 3 || st->shape[0] != B || st->shape[1] != T ||
            st->shape[2] != c.vocab_size)
            rc = pt_errf(&err, PT_EFORMAT, "%s: 'soft' must be F32 [B, T, vocab]", batch);
        else soft = st->data;
    }
    if (!rc) {
        pt_train_opts o = {.max_batch = (int)B, .max_seq = (int)T, .n_threads = threads, .seed = 0,
                           .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0};
        rc = pt_trainer_new(&c, &o, &t, &err);
    }
    if (!rc) rc = pt_trainer_load_weights(t, model, &err);
    size_t counted = 0;
    for (int64_t i = 0; !rc && i < B * T; i++) counted += tgt[i] != PT_IGNORE_INDEX;
    if (!rc && !counted) rc = pt_errf(&err, PT_EINVAL, "%s: every target is ignored", batch);
    double loss = 0;
    if (!rc) {
        pt_trainer_zero_grad(t);
        rc = pt_trainer_forward_backward(t, tok, tgt, (int)B, (int)T, soft, 1.f / (float)counted, 1, &loss, NULL, &err);
    }
    size_t nt = 0;
    const pt_train_tensor *tt = t ? pt_trainer_tensors(t, &nt) : NULL;
    float lossf = (float)(loss / (double)(counted ? counted : 1));
    if (!rc && !(outs = calloc(nt + 1, sizeof *outs))) rc = pt_errf(&err, PT_ENOMEM, "out of memory");
    if (!rc) {
        float *gb = pt_trainer_grad_block(t);
        for (size_t i = 0; i < nt; i++) {
            outs[i] = (pt_tensor){.name = (char *)tt[i].name, .dtype = PT_F32, .ndim = tt[i].ndim,
                                  .shape = {tt[i].shape[0], tt[i].shape[1]}, .data = gb + tt[i].offset,
                                  .nbytes = tt[i].numel * sizeof(float)};
        }
        outs[nt] = (pt_tensor){.name = "loss", .dtype = PT_F32, .ndim = 1, .shape = {1}, .data = &lossf,
                               .nbytes = sizeof(float)};
        rc = pt_safetensors_write(outp, outs, nt + 1, NULL, &err);
    }
    if (!rc) printf("loss %.7f over %zu targets\n", (double)lossf, counted);
    free(outs);
    free(cfgp);
    pt_trainer_free(t);
    pt_tensors_free(&bt);
    return rc ? cli_fail(&err) : 0;
}

int cmd_train(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "grad")) {
        if (cli_wants_help(argc, argv)) {
            usage();
            return 0;
        }
        return cmd_grad(argc, argv);
    }
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *config = NULL;
    int resume = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--resume")) resume = 1;
        else if (!strcmp(o, "--quiet")) quiet = 1;
        else if (!strcmp(o, "--config") && i + 1 < argc) config = argv[++i];
        else return cli_usage_error("train", "unknown option '%s'", o);
    }
    if (!config) return cli_usage_error("train", "--config TRAIN.yaml is required");
    pt_err err = {0};
    pt_train_conf tc;
    int rc = pt_train_conf_load(config, &tc, &err);
    if (rc) return cli_fail(&err);
    if (tc.has_distill) {
        pt_train_conf_free(&tc);
        return cli_usage_error("train", "%s has a 'distill:' map: run it with parity distill", config);
    }
    pt_train_result res;
    rc = pt_train_run(&tc, resume, quiet, &res, &err);
    if (!rc)
        printf("trained %lld steps: train loss %.6f, val loss %.6f; model in %s\n", (long long)res.steps,
               res.last_train_loss, res.last_val_loss, res.model_dir);
    pt_train_conf_free(&tc);
    return rc ? cli_fail(&err) : 0;
}
