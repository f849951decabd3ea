/* see finetune.h */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/fileio.h"
#include "common/json.h"
#include "common/util.h"
#include "common/ytree.h"
#include "engine/chat.h"
#include "engine/lora.h"
#include "engine/modelfile.h"
#include "engine/tokenizer.h"
#include "train/finetune.h"
#include "train/train.h"

/* ---- dataset ------------------------------------------------------------------------------ */

typedef struct ex_buf {
    int32_t *tok;
    uint8_t *loss;
    int n, cap, max_len;
} ex_buf;

static int ex_push(ex_buf *b, const int32_t *ids, size_t n, int loss) {
    for (size_t i = 0; i < n && b->n < b->max_len; i++) {
        if (b->n == b->cap) {
            int nc = b->cap ? b->cap * 2 : 64;
            int32_t *t = realloc(b->tok, (size_t)nc * sizeof *t);
            if (!t) return -1;
            b->tok = t;
            uint8_t *l = realloc(b->loss, (size_t)nc);
            if (!l) return -1;
            b->loss = l, b->cap = nc;
        }
        b->tok[b->n] = ids[i];
        b->loss[b->n++] = (uint8_t)loss;
    }
    return 0;
}

static int ex_text(ex_buf *b, const pt_tokenizer *tok, const char *s, size_t len, int loss, pt_err *err) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (!len) return PT_OK;
    int rc = pt_tokenizer_encode(tok, s, len, 0, 0, &ids, &n, err);
    if (!rc && ex_push(b, ids, n, loss)) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    free(ids);
    return rc;
}

int pt_sft_parse_line(const char *line, size_t len, const char *what, const pt_tokenizer *tok, int max_len,
                      pt_sft_example *ex, pt_err *err) {
    memset(ex, 0, sizeof *ex);
    json_t *o = pt_json_parse(line, len, 32, what, err);
    if (!o) return err && err->code ? err->code : PT_EFORMAT;
    ex_buf b = {.max_len = max_len > 0 ? max_len : 1 << 30};
    int rc = PT_OK;
    int32_t bos = pt_tokenizer_bos(tok), eos = pt_tokenizer_eos(tok);
    if (!json_is_object(o)) {
        rc = pt_errf(err, PT_EFORMAT, "%s: expected a JSON object", what);
        goto out;
    }
    json_t *pr = json_object_get(o, "prompt"), *co = json_object_get(o, "completion"), *ms = json_object_get(o, "messages");
    if (ms) { /* engine/chat.h's rendering, token for token what the server serves */
        if (!json_is_array(ms) || !json_array_size(ms)) {
            rc = pt_errf(err, PT_EFORMAT, "%s: $.messages must be a non-empty array", what);
            goto out;
        }
        pt_chat_tokens ct = {0};
        const char *bad = NULL;
        size_t at = 0;
        rc = pt_chat_render(tok, ms, 0, &ct, &bad, &at, err);
        if (rc == PT_EINVAL && bad) rc = pt_errf(err, PT_EFORMAT, "%s: $.messages[%zu]: %s", what, at, bad);
        for (size_t i = 0; !rc && i < ct.n; i++)
            if (ex_push(&b, &ct.ids[i], 1, ct.reply[i])) rc = pt_errf(err, PT_ENOMEM, "out of memory");
        pt_chat_tokens_free(&ct);
        if (rc) goto out;
    } else if (json_is_string(pr) && json_is_string(co)) {
        if (bos >= 0) { /* the BOS only when the tokenizer adds one (as the server's prompts get it) */
            int32_t *pre = NULL;
            size_t np = 0;
            if ((rc = pt_tokenizer_encode(tok, "", 0, 1, 0, &pre, &np, err))) goto out;
            int bad = ex_push(&b, pre, np, 0);
            free(pre);
            if (bad) goto oom;
        }
        if ((rc = ex_text(&b, tok, json_string_value(pr), json_string_length(pr), 0, err))) goto out;
        if ((rc = ex_text(&b, tok, json_string_value(co), json_string_length(co), 1, err))) goto out;
        if (eos >= 0 && ex_push(&b, &eos, 1, 1)) goto oom;
    } else {
        rc = pt_errf(err, PT_EFORMAT, "%s: expected string fields \"prompt\" and \"completion\", or \"messages\"", what);
        goto out;
    }
    ex->tokens = b.tok, ex->loss = b.loss, ex->n = b.n;
    b.tok = NULL, b.loss = NULL;
    goto out;
oom:
    rc = pt_errf(err, PT_ENOMEM, "out of memory");
out:
    free(b.tok);
    free(b.loss);
    json_decref(o);
    return rc;
}

int pt_sft_load(pt_sft_set *set, const char *path, const pt_tokenizer *tok, int max_len, int skip, pt_err *err) {
    char *s;
    size_t len;
    int rc = pt_read_file(path, (size_t)4 << 30, &s, &len, err);
    if (rc) return rc;
    size_t i = 0, line = 0;
    while (i < len && !rc) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - s) : len, b = i;
        i = nl ? e + 1 : len;
        line++;
        size_t k = b;
        while (k < e && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r')) k++;
        if (k == e) continue;
        char what[1100];
        snprintf(what, sizeof what, "%s:%zu", path, line);
        pt_err le = {0};
        pt_sft_example ex;
        int lrc = pt_sft_parse_line(s + b, e - b, what, tok, max_len, &ex, &le);
        if (lrc == PT_ENOMEM) {
            rc = pt_errf(err, lrc, "%s", le.msg);
            break;
        }
        if (lrc) {
            if (!skip) {
                rc = pt_errf(err, lrc, "%s", le.msg);
                break;
            }
            if (set->skipped_lines < 5) fprintf(stderr, "parity finetune: skipped %s\n", le.msg);
            set->skipped_lines++;
            continue;
        }
        size_t nl_loss = 0;
        for (int j = 1; j < ex.n; j++) nl_loss += ex.loss[j];
        if (!nl_loss) {
            set->empty++;
            free(ex.tokens), free(ex.loss);
            continue;
        }
        if (set->n == set->cap) {
            size_t nc = set->cap ? set->cap * 2 : 64;
            pt_sft_example *x = realloc(set->ex, nc * sizeof *x);
            if (!x) {
                free(ex.tokens), free(ex.loss);
                rc = pt_errf(err, PT_ENOMEM, "out of memory");
                break;
            }
            set->ex = x, set->cap = nc;
        }
        set->ex[set->n++] = ex;
        set->loss_tokens += nl_loss;
    }
    free(s);
    return rc;
}

void pt_sft_free(pt_sft_set *set) {
    for (size_t i = 0; i < set->n; i++) free(set->ex[i].tokens), free(set->ex[i].loss);
    free(set->ex);
    memset(set, 0, sizeof *set);
}

/* ---- config ------------------------------------------------------------------------------- */

void pt_finetune_conf_defaults(pt_finetune_conf *fc) {
    memset(fc, 0, sizeof *fc);
    fc->rank = 8, fc->alpha = 16.f, fc->dropout = 0.05f;
    fc->batch_size = 4, fc->accum = 1, fc->max_len = 256;
    fc->steps = 100, fc->warmup = 0;
    fc->lr = 1e-3f, fc->min_lr = 0.f, fc->weight_decay = 0.f, fc->clip = 1.f;
    fc->beta1 = 0.9f, fc->beta2 = 0.999f, fc->eps = 1e-8f;
    fc->seed = 1, fc->threads = 2;
}

void pt_finetune_conf_free(pt_finetune_conf *fc) {
    free(fc->model), free(fc->data), free(fc->out), free(fc->targets), free(fc->init);
    fc->model = fc->data = fc->out = fc->targets = fc->init = NULL;
}

static int yerr(pt_err *err, const char *what, const ynode *n, const char *key, const char *msg) {
    return pt_errf(err, PT_EINVAL, "%s:%d:%d: %s: %s", what, n->line, n->col, key, msg);
}

int pt_finetune_conf_parse(const char *text, size_t len, const char *what, pt_finetune_conf *fc, pt_err *err) {
    ynode *root = ytree_parse(text, len, what, err);
    if (!root) return err && err->code ? err->code : PT_EFORMAT;
    int rc = PT_OK;
    if (root->type != YN_MAP) rc = pt_errf(err, PT_EINVAL, "%s:%d:%d: expected a map of settings", what, root->line, root->col);
    for (size_t i = 0; !rc && i + 1 < root->n; i += 2) {
        const ynode *k = root->items[i], *v = root->items[i + 1];
        if (k->type != YN_SCALAR) {
            rc = yerr(err, what, k, "config", "keys must be strings");
            break;
        }
        const char *s = k->str;
        char **str = !strcmp(s, "model") ? &fc->model : !strcmp(s, "data") ? &fc->data : !strcmp(s, "out") ? &fc->out
                   : !strcmp(s, "targets") ? &fc->targets : !strcmp(s, "init") ? &fc->init : NULL;
        if (str) {
            if (v->type == YN_SEQ && str == &fc->targets) { /* targets: [q, v] */
                pt_buf b;
                pt_buf_init(&b, 4096);
                for (size_t j = 0; j < v->n && !rc; j++) {
                    if (v->items[j]->type != YN_SCALAR) rc = yerr(err, what, v->items[j], s, "expected a name");
                    else if ((j && pt_buf_append(&b, ",", 1)) || pt_buf_append(&b, v->items[j]->str, v->items[j]->len))
                        rc = pt_errf(err, PT_ENOMEM, "out of memory");
                }
                if (!rc) {
                    free(*str);
                    *str = strndup(b.data ? b.data : "", b.len);
                }
                pt_buf_free(&b);
                continue;
            }
            if (v->type != YN_SCALAR || ytree_is_null(v) || !v->len) {
                rc = yerr(err, what, v, s, "expected a string");
                break;
            }
            free(*str);
            if (!(*str = strdup(v->str))) rc = pt_errf(err, PT_ENOMEM, "out of memory");
            continue;
        }
        if (!strcmp(s, "on_error")) {
            if (v->type == YN_SCALAR && (!strcmp(v->str, "skip") || !strcmp(v->str, "stop"))) fc->skip_errors = v->str[1] == 'k';
            else rc = yerr(err, what, v, s, "expected skip or stop");
            continue;
        }
        static const struct {
            const char *name;
            int is_int;
            double lo, hi;
        } num[] = {{"rank", 1, 1, 65536},       {"alpha", 0, 1e-6, 1e6},     {"dropout", 0, 0, 0.999},
                   {"batch_size", 1, 1, 65536}, {"accum", 1, 1, 65536},      {"max_len", 1, 2, 1 << 20},
                   {"steps", 1, 1, 1e12},       {"warmup", 1, 0, 1e12},      {"lr", 0, 0, 10},
                   {"min_lr", 0, 0, 10},        {"weight_decay", 0, 0, 10},  {"clip", 0, 0, 1e6},
                   {"beta1", 0, 0, 0.999999},   {"beta2", 0, 0, 0.999999},   {"eps", 0, 0, 1},
                   {"seed", 1, 0, 9e18},        {"threads", 1, 1, 256}};
        int q = -1;
        for (size_t j = 0; j < sizeof num / sizeof num[0]; j++)
            if (!strcmp(s, num[j].name)) q = (int)j;
        if (q < 0) {
            rc = pt_errf(err, PT_EINVAL, "%s:%d:%d: unknown key '%s'", what, k->line, k->col, s);
            break;
        }
        double x;
        int64_t xi = 0;
        if (v->type != YN_SCALAR || !v->plain ||
            (num[q].is_int ? pt_parse_i64(v->str, &xi) : pt_parse_double(v->str, &x)) ||
            (!num[q].is_int && !isfinite(x))) {
            rc = yerr(err, what, v, s, num[q].is_int ? "expected an integer" : "expected a number");
            break;
        }
        if (num[q].is_int) x = (double)xi;
        if (x < num[q].lo || x > num[q].hi) {
            rc = pt_errf(err, PT_EINVAL, "%s:%d:%d: %s: %g is out of range (%g..%g)", what, v->line, v->col, s, x,
                         num[q].lo, num[q].hi);
            break;
        }
        switch (q) {
        case 0: fc->rank = (int)xi; break;
        case 1: fc->alpha = (float)x; break;
        case 2: fc->dropout = (float)x; break;
        case 3: fc->batch_size = (int)xi; break;
        case 4: fc->accum = (int)xi; break;
        case 5: fc->max_len = (int)xi; break;
        case 6: fc->steps = xi; break;
        case 7: fc->warmup = xi; break;
        case 8: fc->lr = (float)x; break;
        case 9: fc->min_lr = (float)x; break;
        case 10: fc->weight_decay = (float)x; break;
        case 11: fc->clip = (float)x; break;
        case 12: fc->beta1 = (float)x; break;
        case 13: fc->beta2 = (float)x; break;
        case 14: fc->eps = (float)x; break;
        case 15: fc->seed = (uint64_t)xi; break;
        default: fc->threads = (int)xi; break;
        }
    }
    ytree_free(root);
    return rc;
}

/* ---- training ----------------------------------------------------------------------------- */

int pt_finetune_run(const pt_finetune_conf *fc, int quiet, pt_finetune_result *res, pt_err *err) {
    memset(res, 0, sizeof *res);
    if (!fc->model || !fc->data || !fc->out) return pt_errf(err, PT_EINVAL, "model, data and out are required");
    pt_model_files mf;
    int rc = pt_model_files_open(&mf, fc->model, err);
    if (rc) return rc;
    pt_tokenizer *tok = NULL;
    pt_trainer *t = NULL;
    pt_lora *lora = NULL;
    pt_sft_set set = {0};
    int32_t *tokens = NULL, *targets = NULL;
    size_t *order = NULL;
    FILE *log = NULL;
    char *logp = NULL, *gp = NULL;
    pt_config c = mf.config;
    unsigned mask;
    if ((rc = pt_lora_parse_targets(fc->targets ? fc->targets : "q,v", &c, &mask, err))) goto out;
    if ((rc = pt_model_files_tokenizer(&mf, &tok, err))) goto out;
    int max_len = fc->max_len < c.max_pos ? fc->max_len : c.max_pos;
    if ((rc = pt_sft_load(&set, fc->data, tok, max_len, fc->skip_errors, err))) goto out;
    if (!set.n) {
        rc = pt_errf(err, PT_EINVAL, "%s: no usable examples (%zu skipped, %zu without completion tokens)", fc->data,
                     set.skipped_lines, set.empty);
        goto out;
    }
    pt_train_opts o = {.max_batch = fc->batch_size, .max_seq = max_len - 1 > 0 ? max_len - 1 : 1,
                       .n_threads = fc->threads, .seed = fc->seed, .beta1 = fc->beta1, .beta2 = fc->beta2,
                       .eps = fc->eps, .weight_decay = fc->weight_decay};
    if ((rc = pt_trainer_new(&c, &o, &t, err))) goto out;
    if ((rc = pt_trainer_load_weights(t, fc->model, err))) goto out;
    if (fc->init) rc = pt_lora_load(fc->init, &c, &lora, err);
    else rc = pt_lora_new(&c, fc->rank, fc->alpha, mask, fc->seed, &lora, err);
    if (rc) goto out;
    lora->dropout = fc->dropout;
    free(lora->base_model);
    lora->base_model = strdup(fc->model);
    if ((rc = pt_trainer_attach_lora(t, lora, fc->dropout, fc->seed ^ 0x5eedull, err))) goto out;
    if ((rc = pt_mkdirs(fc->out, 0, err))) goto out;
    logp = pt_path_join(fc->out, "log.jsonl");
    gp = pt_path_join(fc->out, "adapter.gguf");
    tokens = malloc((size_t)o.max_batch * o.max_seq * sizeof *tokens);
    targets = malloc((size_t)o.max_batch * o.max_seq * sizeof *targets);
    order = malloc(set.n * sizeof *order);
    if (!logp || !gp || !tokens || !targets || !order) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    if (!(log = fopen(logp, "w"))) {
        rc = pt_errf(err, PT_EIO, "%s: cannot create", logp);
        goto out;
    }
    pt_rng rng;
    pt_rng_seed(&rng, fc->seed);
    size_t cursor = set.n; /* forces a shuffle first */
    pt_progress prog;
    if (!quiet) pt_progress_start(&prog, "finetune", (uint64_t)fc->steps);
    double t0 = pt_now();
    size_t n_tok = 0;
    for (int64_t step = 0; step < fc->steps; step++) {
        if (fc->should_stop && fc->should_stop(fc->hook_ctx)) {
            rc = pt_errf(err, PT_ECANCELLED, "cancelled before step %lld", (long long)step);
            break;
        }
        /* pick the step's examples, then count its loss tokens for the scale */
        size_t pick[1024], np = (size_t)fc->batch_size * fc->accum;
        size_t *picks = np <= 1024 ? pick : malloc(np * sizeof *picks);
        if (!picks) {
            rc = pt_errf(err, PT_ENOMEM, "out of memory");
            break;
        }
        size_t counted = 0;
        for (size_t i = 0; i < np; i++) {
            if (cursor == set.n) {
                for (size_t k = 0; k < set.n; k++) order[k] = k;
                for (size_t k = set.n; k > 1; k--) {
                    size_t r = (size_t)pt_rng_below(&rng, k), tmp = order[k - 1];
                    order[k - 1] = order[r], order[r] = tmp;
                }
                cursor = 0;
            }
            picks[i] = order[cursor++];
            const pt_sft_example *ex = &set.ex[picks[i]];
            for (int j = 1; j < ex->n; j++) counted += ex->loss[j];
        }
        pt_trainer_zero_grad(t);
        double loss_sum = 0;
        for (int a = 0; a < fc->accum && !rc; a++) {
            const size_t *mb = picks + (size_t)a * fc->batch_size;
            int T = 1;
            for (int b = 0; b < fc->batch_size; b++)
                if (set.ex[mb[b]].n - 1 > T) T = set.ex[mb[b]].n - 1;
            for (int b = 0; b < fc->batch_size; b++) {
                const pt_sft_example *ex = &set.ex[mb[b]];
                for (int j = 0; j < T; j++) {
                    int in = j < ex->n - 1;
                    tokens[b * T + j] = in ? ex->tokens[j] : 0;
                    targets[b * T + j] = in && ex->loss[j + 1] ? ex->tokens[j + 1] : PT_IGNORE_INDEX;
                }
                n_tok += (size_t)(ex->n - 1);
            }
            double ls;
            rc = pt_trainer_forward_backward(t, tokens, targets, fc->batch_size, T, NULL, 1.f / (float)counted, 1, &ls,
                                             NULL, err);
            loss_sum += ls;
        }
        if (picks != pick) free(picks);
        if (rc) break;
        double loss = loss_sum / (double)counted, gn = pt_trainer_grad_norm(t);
        if (!isfinite(loss) || !isfinite(gn)) {
            rc = pt_errf(err, PT_EINVAL, "step %lld: the loss is not finite; stopped", (long long)step);
            break;
        }
        if (fc->clip > 0 && gn > fc->clip) pt_trainer_scale_grads(t, (float)(fc->clip / (gn + 1e-6)));
        float lr = pt_lr_schedule(step, fc->warmup, fc->steps, fc->lr, fc->min_lr);
        pt_trainer_adamw_step(t, lr);
        if (step == 0) res->first_loss = loss;
        res->last_loss = loss;
        res->steps = step + 1;
        if (fc->on_step) fc->on_step(fc->hook_ctx, step, fc->steps, loss);
        fprintf(log, "{\"step\":%lld,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g}\n", (long long)step, loss, lr, gn);
        if (!quiet) {
            char extra[64];
            snprintf(extra, sizeof extra, "loss %.4f", loss);
            pt_progress_update(&prog, (uint64_t)step + 1, extra);
        }
    }
    if (!quiet) pt_progress_finish(&prog);
    double dt = pt_now() - t0;
    res->tokens_per_s = dt > 0 ? (double)n_tok / dt : 0;
    res->trained_tokens = (int64_t)n_tok;
    if (fclose(log) && !rc) rc = pt_errf(err, PT_EIO, "%s: write failed", logp);
    log = NULL;
    if (rc) goto out;
    if ((rc = pt_lora_save_peft(lora, &c, fc->out, err))) goto out;
    if ((rc = pt_lora_save_gguf(lora, &c, gp, err))) goto out;
    res->examples = set.n, res->skipped_lines = set.skipped_lines, res->empty = set.empty;
    res->adapter_params = lora->n_params;
out:
    if (log) fclose(log);
    free(logp), free(gp), free(tokens), free(targets), free(order);
    pt_sft_free(&set);
    pt_trainer_free(t);
    pt_lora_free(lora);
    pt_tokenizer_free(tok);
    pt_model_files_close(&mf);
    return rc;
}
