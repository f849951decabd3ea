/* The training config (see loop.h): a YAML map read through common/ytree.h, so
 * errors carry line:column. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/util.h"
#include "common/ytree.h"
#include "train/loop.h"

static int at(pt_err *err, const char *what, const ynode *n, const char *fmt, const char *key) {
    return pt_errf(err, PT_EINVAL, "%s:%d:%d: %s: %s", what, n->line, n->col, key, fmt);
}

static int get_str(const ynode *v, const char *what, const char *key, char **out, pt_err *err) {
    if (v->type != YN_SCALAR || ytree_is_null(v) || !v->len) return at(err, what, v, "expected a string", key);
    free(*out);
    if (!(*out = strdup(v->str))) return pt_errf(err, PT_ENOMEM, "out of memory");
    return PT_OK;
}

static int get_i64(const ynode *v, const char *what, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   pt_err *err) {
    int64_t x;
    if (v->type != YN_SCALAR || !v->plain || pt_parse_i64(v->str, &x)) return at(err, what, v, "expected an integer", key);
    if (x < lo || x > hi) {
        return pt_errf(err, PT_EINVAL, "%s:%d:%d: %s: %lld is out of range (%lld..%lld)", what, v->line, v->col, key,
                       (long long)x, (long long)lo, (long long)hi);
    }
    *out = x;
    return PT_OK;
}

static int get_f(const ynode *v, const char *what, const char *key, double lo, double hi, float *out, pt_err *err) {
    double x;
    if (v->type != YN_SCALAR || !v->plain || pt_parse_double(v->str, &x) || !isfinite(x))
        return at(err, what, v, "expected a number", key);
    if (x < lo || x > hi)
        return pt_errf(err, PT_EINVAL, "%s:%d:%d: %s: %g is out of range (%g..%g)", what, v->line, v->col, key, x, lo,
                       hi);
    *out = (float)x;
    return PT_OK;
}

static int get_bool(const ynode *v, const char *what, const char *key, int *out, pt_err *err) {
    if (v->type == YN_SCALAR && v->plain && (!strcmp(v->str, "true") || !strcmp(v->str, "false"))) {
        *out = v->str[0] == 't';
        return PT_OK;
    }
    return at(err, what, v, "expected true or false", key);
}

/* The `model:` map as a config.json object. */
static const char *const model_keys[] = {
    "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "attention_bias",
    "mlp_bias", "max_position_embeddings", "bos_token_id", "eos_token_id", "hidden_act", "n_embd", "n_layer",
    "n_head", "n_positions", "n_inner", "layer_norm_epsilon", "activation_function", NULL};

static int model_conf(const ynode *m, const char *what, pt_config *c, pt_err *err) {
    if (m->type != YN_MAP) return at(err, what, m, "expected a map of config.json fields", "model");
    json_t *j = json_object();
    if (!j) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = PT_OK;
    for (size_t i = 0; i + 1 < m->n && !rc; i += 2) {
        const ynode *k = m->items[i], *v = m->items[i + 1];
        if (k->type != YN_SCALAR) {
            rc = at(err, what, k, "keys must be strings", "model");
            break;
        }
        const char *key = !strcmp(k->str, "arch") ? "model_type" : k->str;
        int known = 0;
        for (int q = 0; model_keys[q]; q++) known |= !strcmp(model_keys[q], key);
        if (!known) {
            rc = pt_errf(err, PT_EINVAL, "%s:%d:%d: model: unknown key '%s'", what, k->line, k->col, k->str);
            break;
        }
        if (v->type != YN_SCALAR) {
            rc = at(err, what, v, "expected a scalar", k->str);
            break;
        }
        json_t *x;
        int64_t iv;
        double dv;
        if (v->plain && (!strcmp(v->str, "true") || !strcmp(v->str, "false"))) x = json_boolean(v->str[0] == 't');
        else if (v->plain && !pt_parse_i64(v->str, &iv)) x = json_integer(iv);
        else if (v->plain && !pt_parse_double(v->str, &dv)) x = json_real(dv);
        else x = json_string(v->str);
        if (!x || json_object_set_new(j, key, x)) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    }
    if (!rc) {
        char where[600];
        snprintf(where, sizeof where, "%s:%d:%d: model", what, m->line, m->col);
        rc = pt_config_from_json(j, where, c, err);
    }
    json_decref(j);
    return rc;
}

/* The `distill:` map. */
static int distill_conf(const ynode *m, const char *what, pt_distill_conf *d, pt_err *err) {
    if (m->type != YN_MAP) return at(err, what, m, "expected a map of distillation settings", "distill");
    int rc = PT_OK;
    for (size_t i = 0; i + 1 < m->n && !rc; i += 2) {
        const ynode *k = m->items[i], *v = m->items[i + 1];
        if (k->type != YN_SCALAR) return at(err, what, k, "keys must be strings", "distill");
        const char *s = k->str;
        int64_t x;
        if (!strcmp(s, "teacher")) rc = get_str(v, what, s, &d->teacher, err);
        else if (!strcmp(s, "temperature")) rc = get_f(v, what, s, 0.01, 100, &d->temperature, err);
        else if (!strcmp(s, "alpha")) rc = get_f(v, what, s, 0, 1, &d->alpha, err);
        else if (!strcmp(s, "cache")) rc = get_bool(v, what, s, &d->cache, err);
        else if (!strcmp(s, "teacher_threads")) {
            if (!(rc = get_i64(v, what, s, 1, 256, &x, err))) d->teacher_threads = (int)x;
        } else if (!strcmp(s, "loss") || !strcmp(s, "topk_fill")) {
            const char *a = !strcmp(s, "loss") ? "forward" : "uniform", *b = !strcmp(s, "loss") ? "reverse" : "renorm";
            int *f = !strcmp(s, "loss") ? &d->reverse : &d->topk_renorm;
            if (v->type == YN_SCALAR && v->plain && !strcmp(v->str, a)) *f = 0;
            else if (v->type == YN_SCALAR && v->plain && !strcmp(v->str, b)) *f = 1;
            else rc = pt_errf(err, PT_EINVAL, "%s:%d:%d: %s: expected %s or %s", what, v->line, v->col, s, a, b);
        } else rc = pt_errf(err, PT_EINVAL, "%s:%d:%d: distill: unknown key '%s'", what, k->line, k->col, s);
    }
    if (!rc && d->reverse && d->cache && d->topk_renorm)
        rc = pt_errf(err, PT_EINVAL,
                     "%s:%d:%d: distill: reverse KL against renormalised top-k is infinite (the teacher has no mass "
                     "outside the top k); use topk_fill: uniform",
                     what, m->line, m->col);
    return rc;
}

int pt_train_conf_parse(const char *text, size_t len, const char *what, pt_train_conf *tc, pt_err *err) {
    memset(tc, 0, sizeof *tc);
    tc->batch_size = 8, tc->seq_len = 64, tc->accum = 1, tc->steps = 100, tc->warmup = 0;
    tc->lr = 1e-3f, tc->min_lr = 0, tc->weight_decay = 0.1f, tc->clip = 1.0f;
    tc->beta1 = 0.9f, tc->beta2 = 0.95f, tc->eps = 1e-8f;
    tc->eval_interval = 0, tc->eval_batches = 8, tc->checkpoint_interval = 0, tc->keep_checkpoints = 2;
    tc->seed = 1, tc->threads = 2, tc->shuffle = 1;
    tc->distill.temperature = 1.f;
    ynode *root = ytree_parse(text, len, what, err);
    if (!root) return err && err->code ? err->code : PT_EFORMAT;
    int rc = PT_OK, have_model = 0;
    if (root->type != YN_MAP) rc = pt_errf(err, PT_EINVAL, "%s:%d:%d: expected a map of settings", what, root->line, root->col);
    for (size_t i = 0; !rc && i + 1 < root->n; i += 2) {
        const ynode *k = root->items[i], *v = root->items[i + 1];
        if (k->type != YN_SCALAR) {
            rc = at(err, what, k, "keys must be strings", "config");
            break;
        }
        const char *s = k->str;
        int64_t x = 0;
#define I64(name, lo, hi, field) else if (!strcmp(s, name)) { if (!(rc = get_i64(v, what, s, lo, hi, &x, err))) field = x; }
#define FLT(name, lo, hi, field) else if (!strcmp(s, name)) rc = get_f(v, what, s, lo, hi, &field, err);
        if (!strcmp(s, "model")) rc = model_conf(v, what, &tc->model, err), have_model = 1;
        else if (!strcmp(s, "distill")) rc = distill_conf(v, what, &tc->distill, err), tc->has_distill = 1;
        else if (!strcmp(s, "init")) rc = get_str(v, what, s, &tc->init, err);
        else if (!strcmp(s, "data")) rc = get_str(v, what, s, &tc->data, err);
        else if (!strcmp(s, "tokenizer")) rc = get_str(v, what, s, &tc->tokenizer, err);
        else if (!strcmp(s, "out")) rc = get_str(v, what, s, &tc->out, err);
        else if (!strcmp(s, "shuffle")) rc = get_bool(v, what, s, &tc->shuffle, err);
        I64("batch_size", 1, 65536, tc->batch_size)
        I64("seq_len", 1, 1 << 20, tc->seq_len)
        I64("accum", 1, 65536, tc->accum)
        I64("steps", 1, (int64_t)1 << 40, tc->steps)
        I64("warmup", 0, (int64_t)1 << 40, tc->warmup)
        I64("eval_interval", 0, (int64_t)1 << 40, tc->eval_interval)
        I64("eval_batches", 1, 1 << 20, tc->eval_batches)
        I64("checkpoint_interval", 0, (int64_t)1 << 40, tc->checkpoint_interval)
        I64("keep_checkpoints", 1, 1000, tc->keep_checkpoints)
        I64("threads", 1, 256, tc->threads)
        else if (!strcmp(s, "seed")) {
            if (!(rc = get_i64(v, what, s, 0, INT64_MAX, &x, err))) tc->seed = (uint64_t)x;
        }
        FLT("lr", 0, 10, tc->lr)
        FLT("min_lr", 0, 10, tc->min_lr)
        FLT("weight_decay", 0, 10, tc->weight_decay)
        FLT("clip", 0, 1e9, tc->clip)
        FLT("beta1", 0, 0.999999, tc->beta1)
        FLT("beta2", 0, 0.999999999, tc->beta2)
        FLT("eps", 0, 1, tc->eps)
        else rc = pt_errf(err, PT_EINVAL, "%s:%d:%d: unknown key '%s'", what, k->line, k->col, s);
#undef I64
#undef FLT
    }
    if (!rc && !have_model) rc = pt_errf(err, PT_EINVAL, "%s: missing 'model' (the model's shape)", what);
    if (!rc && !tc->data) rc = pt_errf(err, PT_EINVAL, "%s: missing 'data' (a directory written by parity data)", what);
    if (!rc && !tc->out) rc = pt_errf(err, PT_EINVAL, "%s: missing 'out' (the output directory)", what);
    if (!rc && tc->seq_len > tc->model.max_pos)
        rc = pt_errf(err, PT_EINVAL, "%s: seq_len %d is beyond the model's context of %d positions", what, tc->seq_len,
                     tc->model.max_pos);
    if (!rc && tc->min_lr > tc->lr) rc = pt_errf(err, PT_EINVAL, "%s: min_lr %g is above lr %g", what, tc->min_lr, tc->lr);
    ytree_free(root);
    if (rc) pt_train_conf_free(tc);
    return rc;
}

int pt_train_conf_load(const char *path, pt_train_conf *tc, pt_err *err) {
    char *text;
    size_t len;
    memset(tc, 0, sizeof *tc);
    int rc = pt_read_file(path, 1 << 20, &text, &len, err);
    if (rc) return rc;
    rc = pt_train_conf_parse(text, len, path, tc, err);
    free(text);
    return rc;
}

void pt_train_conf_free(pt_train_conf *tc) {
    if (!tc) return;
    free(tc->init), free(tc->data), free(tc->tokenizer), free(tc->out), free(tc->distill.teacher);
    tc->init = tc->data = tc->tokenizer = tc->out = tc->distill.teacher = NULL;
}
