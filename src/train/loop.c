/* see loop.h */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/json.h"
#include "common/util.h"
#include "engine/tensor.h"
#include "train/loop.h"
#include "train/tokfile.h"
#include "train/train.h"

typedef struct run {
    const pt_train_conf *tc;
    pt_trainer *t;
    pt_tokfile train, val;
    pt_rng rng;
    uint64_t cursor;     /* next window start in sequential order */
    int64_t step;        /* optimiser steps done */
    int32_t *tok, *tgt;  /* (B, T) micro-batch */
    uint64_t *starts;    /* (B) window starts of the micro-batch */
    const pt_train_hook *hook;
    FILE *log;
    char last_ckpt[1100];
} run;

/* The next B windows of T+1 tokens: inputs and their next-token targets. */
static void next_batch(run *r) {
    const int B = r->tc->batch_size, T = r->tc->seq_len;
    const uint64_t n = r->train.n_tokens;
    for (int b = 0; b < B; b++) {
        uint64_t s;
        if (r->tc->shuffle && r->hook) s = pt_rng_below(&r->rng, (n - 1) / (uint64_t)T) * (uint64_t)T;
        else if (r->tc->shuffle) s = pt_rng_below(&r->rng, n - (uint64_t)T);
        else {
            if (r->cursor + (uint64_t)T + 1 > n) r->cursor = 0;
            s = r->cursor;
            r->cursor += (uint64_t)T;
        }
        r->starts[b] = s;
        for (int i = 0; i < T; i++) {
            r->tok[b * T + i] = (int32_t)r->train.tokens[s + (uint64_t)i];
            r->tgt[b * T + i] = (int32_t)r->train.tokens[s + (uint64_t)i + 1];
        }
    }
}

/* Mean loss over up to eval_batches batches of consecutive validation windows (from the
 * start of val.bin, so every evaluation sees the same tokens). NAN when val is too short. */
static int evaluate(run *r, double *out, pt_err *err) {
    const uint64_t n = r->val.n_tokens;
    *out = NAN;
    if (n < 2) return PT_OK;
    int T = r->tc->seq_len;
    if ((uint64_t)T + 1 > n) T = (int)(n - 1);
    const int B = r->tc->batch_size;
    double sum = 0;
    size_t cnt = 0;
    uint64_t s = 0;
    for (int64_t k = 0; k < r->tc->eval_batches && s + (uint64_t)T + 1 <= n; k++) {
        int b = 0;
        for (; b < B && s + (uint64_t)T + 1 <= n; b++, s += (uint64_t)T)
            for (int i = 0; i < T; i++) {
                r->tok[b * T + i] = (int32_t)r->val.tokens[s + (uint64_t)i];
                r->tgt[b * T + i] = (int32_t)r->val.tokens[s + (uint64_t)i + 1];
            }
        double ls;
        size_t c;
        int rc = pt_trainer_forward_backward(r->t, r->tok, r->tgt, b, T, NULL, 1.f, 0, &ls, &c, err);
        if (rc) return rc;
        sum += ls, cnt += c;
    }
    *out = cnt ? sum / (double)cnt : NAN;
    return PT_OK;
}

static int copy_file(const char *from, const char *to, pt_err *err) {
    char *buf;
    size_t len;
    int rc = pt_read_file(from, (size_t)1 << 30, &buf, &len, err);
    if (rc) return rc;
    rc = pt_write_atomic(to, buf, len, 0644, err);
    free(buf);
    return rc;
}

static const char *tokenizer_src(const pt_train_conf *tc, char *buf, size_t cap) {
    if (tc->tokenizer) return tc->tokenizer;
    snprintf(buf, cap, "%s/tokenizer.json", tc->data);
    return pt_exists(buf) ? buf : NULL;
}

/* config.json + model.safetensors (+ tokenizer.json) into dir. */
static int write_model_dir(run *r, const char *dir, pt_err *err) {
    char p[1200], tk[1100];
    int rc = pt_mkdirs(dir, 0, err);
    if (rc) return rc;
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if ((rc = pt_trainer_save_weights(r->t, p, err))) return rc;
    json_t *j = pt_config_to_json(pt_trainer_config(r->t));
    char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (!s) return pt_errf(err, PT_ENOMEM, "out of memory");
    snprintf(p, sizeof p, "%s/config.json", dir);
    rc = pt_write_atomic(p, s, strlen(s), 0644, err);
    free(s);
    const char *src = tokenizer_src(r->tc, tk, sizeof tk);
    if (!rc && src) {
        snprintf(p, sizeof p, "%s/tokenizer.json", dir);
        rc = copy_file(src, p, err);
    }
    return rc;
}

static void rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1200];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int is_ckpt_name(const char *s) {
    if (strncmp(s, "checkpoint-", 11)) return 0;
    for (int i = 11; i < 19; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return s[19] == 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Removes all but the newest `keep` checkpoints (names sort by step). */
static void prune(run *r) {
    DIR *d = opendir(r->tc->out);
    if (!d) return;
    char *names[4096];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096)
        if (is_ckpt_name(e->d_name) && (names[n] = strdup(e->d_name))) n++;
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    char p[1200];
    for (size_t i = 0; i < n; i++) {
        if (i + (size_t)r->tc->keep_checkpoints < n) {
            snprintf(p, sizeof p, "%s/%s", r->tc->out, names[i]);
            rm_dir(p);
        }
        free(names[i]);
    }
}

/* A checkpoint: written into a .tmp directory, every file fsynced, the directory renamed,
 * then OUT/latest replaced atomically. */
static int checkpoint(run *r, pt_err *err) {
    char name[64], dir[1100], tmp[1200], p[1300];
    snprintf(name, sizeof name, "checkpoint-%08lld", (long long)r->step);
    snprintf(dir, sizeof dir, "%s/%s", r->tc->out, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    rm_dir(tmp);
    int rc = write_model_dir(r, tmp, err);
    if (rc) return rc;
    size_t np = pt_trainer_n_params(r->t);
    pt_tensor ts[2] = {
        {.name = "adam.m", .dtype = PT_F32, .ndim = 1, .shape = {(int64_t)np}, .data = pt_trainer_adam_m(r->t),
         .nbytes = np * sizeof(float)},
        {.name = "adam.v", .dtype = PT_F32, .ndim = 1, .shape = {(int64_t)np}, .data = pt_trainer_adam_v(r->t),
         .nbytes = np * sizeof(float)},
    };
    snprintf(p, sizeof p, "%s/optim.safetensors", tmp);
    if ((rc = pt_safetensors_write(p, ts, 2, NULL, err))) return rc;
    char rng[4][17];
    for (int i = 0; i < 4; i++) snprintf(rng[i], sizeof rng[i], "%016llx", (unsigned long long)r->rng.s[i]);
    char st[512];
    int n = snprintf(st, sizeof st,
                     "{\"step\": %lld, \"adam_step\": %lld, \"cursor\": %llu, \"rng\": [\"%s\", \"%s\", \"%s\", \"%s\"], "
                     "\"n_params\": %zu}\n",
                     (long long)r->step, (long long)pt_trainer_adam_step_count(r->t), (unsigned long long)r->cursor,
                     rng[0], rng[1], rng[2], rng[3], np);
    snprintf(p, sizeof p, "%s/state.json", tmp);
    if ((rc = pt_write_atomic(p, st, (size_t)n, 0644, err))) return rc;
    rm_dir(dir);
    if (rename(tmp, dir)) return pt_errf(err, PT_EIO, "%s: rename: %s", tmp, strerror(errno));
    if ((rc = pt_fsync_dir_of(dir, err))) return rc;
    snprintf(p, sizeof p, "%s/latest", r->tc->out);
    snprintf(st, sizeof st, "%s\n", name);
    if ((rc = pt_write_atomic(p, st, strlen(st), 0644, err))) return rc;
    snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", dir);
    prune(r);
    return PT_OK;
}

static int resume_from(run *r, pt_err *err) {
    char p[1300], *name = NULL, dir[1200];
    size_t len;
    snprintf(p, sizeof p, "%s/latest", r->tc->out);
    int rc = pt_read_file(p, 256, &name, &len, err);
    if (rc) return rc == PT_ENOTFOUND ? pt_errf(err, PT_ENOTFOUND, "%s: no checkpoint to resume from", p) : rc;
    while (len && (name[len - 1] == '\n' || name[len - 1] == ' ')) name[--len] = 0;
    if (!is_ckpt_name(name)) {
        free(name);
        return pt_errf(err, PT_EFORMAT, "%s: does not name a checkpoint", p);
    }
    snprintf(dir, sizeof dir, "%s/%s", r->tc->out, name);
    free(name);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if ((rc = pt_trainer_load_weights(r->t, p, err))) return rc;
    size_t np = pt_trainer_n_params(r->t);
    pt_tensors ts;
    pt_tensors_init(&ts);
    snprintf(p, sizeof p, "%s/optim.safetensors", dir);
    rc = pt_safetensors_read(p, &ts, err);
    const char *nm[2] = {"adam.m", "adam.v"};
    float *dst[2] = {pt_trainer_adam_m(r->t), pt_trainer_adam_v(r->t)};
    for (int i = 0; i < 2 && !rc; i++) {
        const pt_tensor *x = pt_tensors_find(&ts, nm[i]);
        if (!x || x->dtype != PT_F32 || x->ndim != 1 || (size_t)x->shape[0] != np)
            rc = pt_errf(err, PT_EFORMAT, "%s: '%s' must be F32 [%zu]", p, nm[i], np);
        else memcpy(dst[i], x->data, np * sizeof(float));
    }
    pt_tensors_free(&ts);
    if (rc) return rc;
    snprintf(p, sizeof p, "%s/state.json", dir);
    json_t *j = pt_json_load_file(p, 1 << 16, err);
    if (!j) return err->code ? err->code : PT_EFORMAT;
    json_t *rng = json_object_get(j, "rng");
    json_t *step = json_object_get(j, "step"), *as = json_object_get(j, "adam_step"), *cur = json_object_get(j, "cursor"),
           *npj = json_object_get(j, "n_params");
    rc = json_is_integer(step) && json_is_integer(as) && json_is_integer(cur) && json_is_integer(npj) &&
                 json_is_array(rng) && json_array_size(rng) == 4 && json_integer_value(step) >= 0 &&
                 json_integer_value(as) >= 0 && json_integer_value(cur) >= 0
             ? PT_OK
             : pt_errf(err, PT_EFORMAT, "%s: expected step, adam_step, cursor, n_params and a 4-word rng", p);
    if (!rc && (size_t)json_integer_value(npj) != np)
        rc = pt_errf(err, PT_EFORMAT, "%s: the checkpoint has %lld parameters, this model %zu", p,
                     (long long)json_integer_value(npj), np);
    for (int i = 0; i < 4 && !rc; i++) {
        const char *h = json_string_value(json_array_get(rng, (size_t)i));
        uint8_t b[8];
        if (!h || strlen(h) != 16 || pt_unhex(h, b, 8)) rc = pt_errf(err, PT_EFORMAT, "%s: rng[%d] is not 16 hex digits", p, i);
        else {
            uint64_t v = 0;
            for (int k = 0; k < 8; k++) v = v << 8 | b[k];
            r->rng.s[i] = v;
        }
    }
    if (!rc) {
        r->step = json_integer_value(step);
        r->cursor = (uint64_t)json_integer_value(cur);
        pt_trainer_set_adam_step_count(r->t, json_integer_value(as));
        snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", dir);
    }
    json_decref(j);
    return rc;
}

int pt_train_run(const pt_train_conf *tc, int resume, int quiet, pt_train_result *res, pt_err *err) {
    return pt_train_run_hook(tc, NULL, resume, quiet, res, err);
}

int pt_train_run_hook(const pt_train_conf *tc, const pt_train_hook *hook, int resume, int quiet,
                      pt_train_result *res, pt_err *err) {
    memset(res, 0, sizeof *res);
    res->last_train_loss = res->last_val_loss = NAN;
    run r = {.tc = tc, .hook = hook};
    char p[1200];
    int rc;
    snprintf(p, sizeof p, "%s/train.bin", tc->data);
    if ((rc = pt_tokfile_open(p, &r.train, err))) return rc;
    snprintf(p, sizeof p, "%s/val.bin", tc->data);
    if (pt_exists(p) && (rc = pt_tokfile_open(p, &r.val, err))) goto out;
    if (r.train.n_tokens < (uint64_t)tc->seq_len + 1) {
        rc = pt_errf(err, PT_EINVAL,
                     "%s/train.bin: %llu tokens is too short a dataset: one sequence of seq_len %d needs %d tokens",
                     tc->data, (unsigned long long)r.train.n_tokens, tc->seq_len, tc->seq_len + 1);
        goto out;
    }
    if (r.train.vocab_size > (uint32_t)tc->model.vocab_size || (r.val.n_tokens && r.val.vocab_size > (uint32_t)tc->model.vocab_size)) {
        rc = pt_errf(err, PT_EINVAL, "%s: the dataset's vocabulary of %u is larger than the model's vocab_size %d", tc->data,
                     r.train.vocab_size, tc->model.vocab_size);
        goto out;
    }
    pt_train_opts o = {.max_batch = tc->batch_size, .max_seq = tc->seq_len, .n_threads = tc->threads, .seed = tc->seed,
                       .beta1 = tc->beta1, .beta2 = tc->beta2, .eps = tc->eps, .weight_decay = tc->weight_decay};
    if ((rc = pt_trainer_new(&tc->model, &o, &r.t, err))) goto out;
    if (tc->init && (rc = pt_trainer_load_weights(r.t, tc->init, err))) goto out;
    pt_rng_seed(&r.rng, tc->seed ^ 0x5eed0da7a0000000ull);
    size_t nb = (size_t)tc->batch_size * (size_t)tc->seq_len;
    r.tok = malloc(nb * sizeof(int32_t));
    r.tgt = malloc(nb * sizeof(int32_t));
    r.starts = malloc((size_t)tc->batch_size * sizeof(uint64_t));
    if (!r.tok || !r.tgt || !r.starts) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = pt_mkdirs(tc->out, 0, err))) goto out;
    if (resume && (rc = resume_from(&r, err))) goto out;
    snprintf(p, sizeof p, "%s/log.jsonl", tc->out);
    if (!(r.log = fopen(p, resume ? "a" : "w"))) {
        rc = pt_errf(err, PT_EIO, "%s: %s", p, strerror(errno));
        goto out;
    }
    pt_progress pg;
    if (!quiet) pt_progress_start(&pg, "train", (uint64_t)tc->steps);
    const double t0 = pt_now();
    const int64_t step0 = r.step;
    const double tokens_per_step = (double)nb * tc->accum;
    while (r.step < tc->steps) {
        pt_trainer_zero_grad(r.t);
        double lsum = 0;
        size_t cnt = 0;
        const float scale = 1.f / (float)(nb * (size_t)tc->accum);
        for (int a = 0; a < tc->accum; a++) {
            next_batch(&r);
            double ls;
            size_t c;
            if (hook) {
                pt_distill_loss dl;
                if ((rc = hook->targets(hook->ctx, r.tok, r.starts, tc->batch_size, tc->seq_len, &dl, err)) ||
                    (rc = pt_trainer_forward_backward_distill(r.t, r.tok, r.tgt, tc->batch_size, tc->seq_len, &dl,
                                                              scale, 1, &ls, &c, err)))
                    goto out_pg;
            } else if ((rc = pt_trainer_forward_backward(r.t, r.tok, r.tgt, tc->batch_size, tc->seq_len, NULL, scale,
                                                         1, &ls, &c, err)))
                goto out_pg;
            lsum += ls, cnt += c;
        }
        double loss = lsum / (double)cnt, gn = pt_trainer_grad_norm(r.t);
        if (!isfinite(loss) || !isfinite(gn)) {
            rc = pt_errf(err, PT_EINVAL, "step %lld: the %s is %s; stopped. Last good checkpoint: %s",
                         (long long)r.step + 1, isfinite(loss) ? "gradient norm" : "loss",
                         isnan(isfinite(loss) ? gn : loss) ? "NaN" : "infinite",
                         r.last_ckpt[0] ? r.last_ckpt : "none (no checkpoint was written yet)");
            goto out_pg;
        }
        if (tc->clip > 0 && gn > tc->clip) pt_trainer_scale_grads(r.t, (float)(tc->clip / (gn + 1e-6)));
        float lr = pt_lr_schedule(r.step, tc->warmup, tc->steps, tc->lr, tc->min_lr);
        pt_trainer_adamw_step(r.t, lr);
        r.step++;
        res->last_train_loss = loss;
        fprintf(r.log, "{\"step\": %lld, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, \"tokens\": %.0f}\n",
                (long long)r.step, loss, (double)lr, gn, tokens_per_step * (double)r.step);
        double el = pt_now() - t0, tps = el > 0 ? tokens_per_step * (double)(r.step - step0) / el : 0;
        res->tokens_per_s = tps;
        if ((tc->eval_interval && r.step % tc->eval_interval == 0) || r.step == tc->steps) {
            double vl;
            if ((rc = evaluate(&r, &vl, err))) goto out_pg;
            res->last_val_loss = vl;
            if (!isnan(vl)) fprintf(r.log, "{\"step\": %lld, \"val_loss\": %.9g}\n", (long long)r.step, vl);
        }
        fflush(r.log);
        if (tc->checkpoint_interval && r.step % tc->checkpoint_interval == 0 && (rc = checkpoint(&r, err))) goto out_pg;
        if (!quiet) {
            char ex[128];
            snprintf(ex, sizeof ex, "loss %.4f  val %.4f  %.0f tok/s", loss, res->last_val_loss, tps);
            pt_progress_update(&pg, (uint64_t)r.step, ex);
        }
    }
    snprintf(res->model_dir, sizeof res->model_dir, "%s/model", tc->out);
    rc = write_model_dir(&r, res->model_dir, err);
    res->steps = r.step;
out_pg:
    if (!quiet) pt_progress_finish(&pg);
out:
    if (r.log) fclose(r.log);
    free(r.tok), free(r.tgt), free(r.starts);
    pt_trainer_free(r.t);
    pt_tokfile_close(&r.train);
    pt_tokfile_close(&r.val);
    return rc;
}
