/* parity distill — trains a student on a teacher's output distribution (forward or reverse
 * KL, temperature, mix with the hard labels); `distill cache` writes the teacher's top-k per
 * position; `distill grad` is the gradient of the distillation loss on one batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "common/util.h"
#include "engine/config.h"
#include "engine/sample.h"
#include "engine/tensor.h"
#include "train/distill.h"
#include "train/loop.h"
#include "train/train.h"

const char cmd_distill_summary[] = "distill a teacher into a smaller student (KL, temperature, top-k cache)";

static void usage(void) {
    printf("usage: parity distill --teacher DIR --student-config STUDENT.yaml [--data DIR] [--out DIR]\n"
           "                      [--cache] [--resume] [--quiet]\n"
           "       parity distill cache --teacher DIR --data DIR --k K --seq-len T [--threads N] [--quiet]\n"
           "       parity distill grad -m MODEL --batch BATCH.safetensors --out GRADS.safetensors\n"
           "                      [--loss forward|reverse] [--temperature T] [--alpha A] [--threads N]\n\n"
           "Trains the student described by STUDENT.yaml (the keys of `parity train`, plus a\n"
           "`distill:` map) on the teacher's next-token distribution:\n"
           "  loss = alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T)\n"
           "(reverse: KL(student_T || teacher_T)), both distributions softened by temperature T.\n"
           "The teacher runs through the engine on the student's windows, or (--cache, or\n"
           "`cache: true`) its top-k log-probabilities come from DATA/train.topk.bin written by\n"
           "`parity distill cache`. Checkpoints and --resume work as in `parity train`.\n\n"
           "  distill:\n"
           "    teacher: DIR          # or --teacher\n"
           "    loss: forward         # forward (default) | reverse\n"
           "    temperature: 2.0      # default 1\n"
           "    alpha: 0.1            # weight of the hard-label cross-entropy (default 0)\n"
           "    cache: false          # true: DATA/train.topk.bin\n"
           "    topk_fill: uniform    # uniform (rest of the mass spread evenly) | renorm\n"
           "    teacher_threads: 2\n\n"
           "cache: runs the teacher over windows of T tokens of DATA/train.bin (starting at multiples\n"
           "of T) and writes the top K (ids, log-probs) of every position to DATA/train.topk.bin.\n"
           "grad: the gradient of the mean distillation loss of a batch file holding `tokens`,\n"
           "`targets` (I32 [B, T]; -100 ignored) and `teacher` (F32 [B, T, V] teacher logits).\n\n"
           "example:\n"
           "  parity distill cache --teacher models/parity-demo --data data/kjv --k 64 --seq-len 128\n"
           "  parity distill --teacher models/parity-demo --student-config student.yaml --cache\n");
}

static int cmd_cache(int argc, char **argv) {
    const char *teacher = NULL, *data = NULL;
    uint64_t k = 0, T = 0;
    int threads = 2, quiet = 0;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("distill cache", "%s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "--teacher")) teacher = v;
        else if (!strcmp(o, "--data")) data = v;
        else if (!strcmp(o, "--k")) {
            if (pt_parse_u64(v, &k) || !k || k > PT_TOPK_MAX_VOCAB) return cli_usage_error("distill cache", "--k must be a positive integer");
        } else if (!strcmp(o, "--seq-len")) {
            if (pt_parse_u64(v, &T) || !T || T > (1u << 20)) return cli_usage_error("distill cache", "--seq-len must be 1..1048576");
        } else if (!strcmp(o, "--threads")) threads = atoi(v);
        else return cli_usage_error("distill cache", "unknown option '%s'", o);
    }
    if (!teacher || !data || !k || !T) return cli_usage_error("distill cache", "--teacher, --data, --k and --seq-len are required");
    if (threads < 1 || threads > 256) return cli_usage_error("distill cache", "--threads must be 1..256");
    char in[4200], out[4200];
    snprintf(in, sizeof in, "%s/train.bin", data);
    snprintf(out, sizeof out, "%s/train.topk.bin", data);
    pt_err err = {0};
    int rc = pt_topk_write(teacher, in, out, (uint32_t)T, (uint32_t)k, threads, quiet, &err);
    if (rc) return cli_fail(&err);
    printf("wrote %s\n", out);
    return 0;
}

static int cmd_grad(int argc, char **argv) {
    const char *model = NULL, *batch = NULL, *outp = NULL;
    int threads = 2;
    pt_distill_loss dl = {NULL, 1.f, 0.f, 0};
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (i + 1 >= argc) return cli_usage_error("distill grad", "%s needs a value", o);
        const char *v = argv[++i];
        double x;
        if (!strcmp(o, "-m") || !strcmp(o, "--model")) model = v;
        else if (!strcmp(o, "--batch")) batch = v;
        else if (!strcmp(o, "--out")) outp = v;
        else if (!strcmp(o, "--threads")) threads = atoi(v);
        else if (!strcmp(o, "--loss")) {
            if (strcmp(v, "forward") && strcmp(v, "reverse")) return cli_usage_error("distill grad", "--loss: forward or reverse");
            dl.reverse = !strcmp(v, "reverse");
        } else if (!strcmp(o, "--temperature")) {
            if (pt_parse_double(v, &x) || !(x >= 0.01 && x <= 100)) return cli_usage_error("distill grad", "--temperature: 0.01..100");
            dl.temperature = (float)x;
        } else if (!strcmp(o, "--alpha")) {
            if (pt_parse_double(v, &x) || !(x >= 0 && x <= 1)) return cli_usage_error("distill grad", "--alpha: 0..1");
            dl.alpha = (float)x;
        } else return cli_usage_error("distill grad", "unknown option '%s'", o);
    }
    if (!model || !batch || !outp) return cli_usage_error("distill grad", "-m, --batch and --out are required");
    if (threads < 1 || threads > 256) return cli_usage_error("distill grad", "--threads must be 1..256");
    pt_err err = {0};
    pt_config c;
    pt_tensors bt;
    pt_tensors_init(&bt);
    pt_trainer *t = NULL;
    pt_tensor *outs = NULL;
    float *lq = NULL;
    char *cfgp = pt_path_join(model, "config.json");
    int rc = cfgp ? pt_config_load(cfgp, &c, &err) : pt_errf(&err, PT_ENOMEM, "out of memory");
    if (!rc) rc = pt_safetensors_read(batch, &bt, &err);
    const pt_tensor *tk = rc ? NULL : pt_tensors_find(&bt, "tokens"), *tg = rc ? NULL : pt_tensors_find(&bt, "targets"),
                    *te = rc ? NULL : pt_tensors_find(&bt, "teacher");
    int64_t B = 0, T = 0;
    if (!rc && (!tk || tk->dtype != PT_I32 || tk->ndim != 2 || tk->shape[0] < 1 || tk->shape[1] < 1))
        rc = pt_errf(&err, PT_EFORMAT, "%s: needs 'tokens' I32 [B, T]", batch);
    if (!rc) B = tk->shape[0], T = tk->shape[1];
    if (!rc && (!tg || tg->dtype != PT_I32 || tg->ndim != 2 || tg->shape[0] != B || tg->shape[1] != T))
        rc = pt_errf(&err, PT_EFORMAT, "%s: needs 'targets' I32 [B, T] like 'tokens'", batch);
    if (!rc && (!te || te->dtype != PT_F32 || te->ndim != 3 || te->shape[0] != B || te->shape[1] != T ||
                te->shape[2] != c.vocab_size))
        rc = pt_errf(&err, PT_EFORMAT, "%s: needs 'teacher' F32 [B, T, vocab %d]", batch, c.vocab_size);
    if (!rc && (B > 65536 || T > c.max_pos))
        rc = pt_errf(&err, PT_EINVAL, "%s: a [%lld, %lld] batch is too large for this model", batch, (long long)B, (long long)T);
    const size_t V = (size_t)c.vocab_size;
    if (!rc && !(lq = malloc((size_t)(B * T) * V * sizeof *lq))) rc = pt_errf(&err, PT_ENOMEM, "out of memory");
    for (size_t r = 0; !rc && r < (size_t)(B * T); r++) {
        const float *x = (const float *)te->data + r * V;
        pt_log_softmax(x, V, lq + r * V);
        pt_distill_temper(lq + r * V, (int)V, dl.temperature, lq + r * V);
    }
    dl.teacher = lq;
    if (!rc) {
        pt_train_opts o = {.max_batch = (int)B, .max_seq = (int)T, .n_threads = threads, .beta1 = 0.9f, .beta2 = 0.999f,
                           .eps = 1e-8f};
        rc = pt_trainer_new(&c, &o, &t, &err);
    }
    if (!rc) rc = pt_trainer_load_weights(t, model, &err);
    const int32_t *tgt = tg ? tg->data : NULL;
    size_t counted = 0;
    for (int64_t i = 0; !rc && i < B * T; i++) counted += tgt[i] != PT_IGNORE_INDEX;
    if (!rc && !counted) rc = pt_errf(&err, PT_EINVAL, "%s: every target is ignored", batch);
    double loss = 0;
    if (!rc) {
        pt_trainer_zero_grad(t);
        rc = pt_trainer_forward_backward_distill(t, tk->data, tgt, (int)B, (int)T, &dl, 1.f / (float)counted, 1, &loss,
                                                 NULL, &err);
    }
    size_t nt = 0;
    const pt_train_tensor *tt = t ? pt_trainer_tensors(t, &nt) : NULL;
    float lossf = (float)(loss / (double)(counted ? counted : 1));
    if (!rc && !(outs = calloc(nt + 1, sizeof *outs))) rc = pt_errf(&err, PT_ENOMEM, "out of memory");
    if (!rc) {
        float *gb = pt_trainer_grad_block(t);
        for (size_t i = 0; i < nt; i++)
            outs[i] = (pt_tensor){.name = (char *)tt[i].name, .dtype = PT_F32, .ndim = tt[i].ndim,
                                  .shape = {tt[i].shape[0], tt[i].shape[1]}, .data = gb + tt[i].offset,
                                  .nbytes = tt[i].numel * sizeof(float)};
        outs[nt] = (pt_tensor){.name = "loss", .dtype = PT_F32, .ndim = 1, .shape = {1}, .data = &lossf,
                               .nbytes = sizeof(float)};
        rc = pt_safetensors_write(outp, outs, nt + 1, NULL, &err);
    }
    if (!rc) printf("loss %.7f over %zu targets\n", (double)lossf, counted);
    free(outs), free(cfgp), free(lq);
    pt_trainer_free(t);
    pt_tensors_free(&bt);
    return rc ? cli_fail(&err) : 0;
}

int cmd_distill(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "cache")) return cmd_cache(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "grad")) return cmd_grad(argc, argv);
    const char *config = NULL, *teacher = NULL, *data = NULL, *out = NULL;
    int resume = 0, quiet = 0, cache = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--resume")) resume = 1;
        else if (!strcmp(o, "--quiet")) quiet = 1;
        else if (!strcmp(o, "--cache")) cache = 1;
        else if (i + 1 >= argc) return cli_usage_error("distill", "%s needs a value", o);
        else if (!strcmp(o, "--student-config") || !strcmp(o, "--config")) config = argv[++i];
        else if (!strcmp(o, "--teacher")) teacher = argv[++i];
        else if (!strcmp(o, "--data")) data = argv[++i];
        else if (!strcmp(o, "--out")) out = argv[++i];
        else return cli_usage_error("distill", "unknown option '%s'", o);
    }
    if (!config) return cli_usage_error("distill", "--student-config STUDENT.yaml is required");
    pt_err err = {0};
    pt_train_conf tc;
    int rc = pt_train_conf_load(config, &tc, &err);
    if (rc) return cli_fail(&err);
    char **slot[3] = {&tc.distill.teacher, &tc.data, &tc.out};
    const char *val[3] = {teacher, data, out};
    for (int i = 0; i < 3 && !rc; i++)
        if (val[i]) {
            free(*slot[i]);
            if (!(*slot[i] = strdup(val[i]))) rc = pt_errf(&err, PT_ENOMEM, "out of memory");
        }
    if (cache) tc.distill.cache = 1;
    if (!rc && tc.distill.reverse && tc.distill.cache && tc.distill.topk_renorm)
        rc = pt_errf(&err, PT_EINVAL, "reverse KL against renormalised top-k is infinite; use topk_fill: uniform");
    pt_train_result res;
    if (!rc) rc = pt_distill_run(&tc, resume, quiet, &res, &err);
    if (!rc)
        printf("distilled %lld steps: train loss %.6f, val loss %.6f; model in %s\n", (long long)res.steps,
               res.last_train_loss, res.last_val_loss, res.model_dir);
    pt_train_conf_free(&tc);
    return rc ? cli_fail(&err) : 0;
}
