/* server_finetune.c — fine-tuning jobs behind OpenAI's Files and Fine-tuning API (its
 * endpoints: api_files.c): the state, one background worker that validates files and trains
 * LoRA adapters (train/finetune.h, parity finetune's defaults: rank 8, alpha 16, targets q,v),
 * and the adapter cache behind the fine-tuned model ids "ft:BASE:ORG:SUFFIX:JOBID" that
 * completions and chat accept (api_openai.c).
 *
 * State: uploaded bytes in DATA/files/<id>, adapters in DATA/fine_tuning/<job>/, every
 * object (files, jobs, events, checkpoints) a store document (store.h) scoped by the
 * organisation. A job document is the public OpenAI object plus a private "_parity" member
 * (stripped from answers). Job documents change under ft_state.mu only (read-modify-write).
 *
 * Lifecycle: created → validating_files (the worker tokenizes the files with the base model's
 * tokenizer) → queued → running → succeeded | failed | cancelled. The worker validates
 * waiting jobs first, and also between training steps, so a long run does not hold back
 * validation. A restart fails the job that was running (error code "server_restarted") and
 * queues the others again.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/json.h"
#include "common/util.h"
#include "engine/config.h"
#include "engine/lora.h"
#include "engine/tokenizer.h"
#include "server/finetune.h"
#include "server/registry.h"
#include "train/finetune.h"

/* Helpers ---------------------------------------------------------------------------------------- */

void ft_new_id(const char *prefix, char *out) {
    uint8_t r[12];
    char hx[25];
    randombytes_buf(r, sizeof r);
    snprintf(out, ID_CAP, "%s-%s", prefix, pt_hex(r, sizeof r, hx));
}

int ft_q_push(job_id **q, size_t *n, size_t *cap, const char *id) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        job_id *x = realloc(*q, nc * sizeof *x);
        if (!x) return PT_ENOMEM;
        *q = x, *cap = nc;
    }
    snprintf((*q)[(*n)++], ID_CAP, "%s", id);
    return PT_OK;
}

int ft_q_remove(job_id *q, size_t *n, const char *id) {
    for (size_t i = 0; i < *n; i++)
        if (!strcmp(q[i], id)) {
            memmove(&q[i], &q[i + 1], (*n - i - 1) * sizeof *q);
            (*n)--;
            return 1;
        }
    return 0;
}

static void q_pop(job_id *q, size_t *n, char *out) {
    snprintf(out, ID_CAP, "%s", q[0]);
    memmove(&q[0], &q[1], (*n - 1) * sizeof *q);
    (*n)--;
}

/* A stored document as JSON (NULL if absent or unreadable); org_out gets its organisation. */
static json_t *doc_get(pt_server *s, const char *coll, const char *id, char *org_out, size_t org_cap) {
    char *text = NULL, org[128];
    if (pt_store_doc_get(s->store, coll, id, &text, org, sizeof org, NULL)) return NULL;
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    if (org_out) snprintf(org_out, org_cap, "%s", org);
    return j;
}

/* A document of the caller's organisation, or NULL (absent, or another organisation's: the
 * same answer, so ids of other organisations cannot be probed). */
json_t *ft_doc_get_own(pt_server *s, call *c, const char *coll, const char *id) {
    char org[128];
    json_t *j = doc_get(s, coll, id, org, sizeof org);
    if (j && strcmp(org, c->key.org)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int ft_doc_put(pt_server *s, const char *coll, const char *id, const char *org, const char *parent, json_t *j) {
    char *text = json_dumps(j, JSON_COMPACT);
    if (!text) return PT_ENOMEM;
    pt_err err;
    int rc = pt_store_doc_put(s->store, coll, id, org, parent, text, &err);
    if (rc) fprintf(stderr, "parity: fine-tuning: saving %s %s: %s\n", coll, id, err.msg);
    free(text);
    return rc;
}

/* The public object: the document without its private member. New reference. */
json_t *ft_public_obj(json_t *doc) {
    json_t *o = json_copy(doc);
    json_object_del(o, "_parity");
    return o;
}

/* Remembers a succeeded job's model for GET /v1/models. */
static void ft_model_add(ft_state *st, json_t *job, const char *org) {
    const char *name = jstr(job, "fine_tuned_model"), *base = jstr(job, "model");
    json_t *fin = json_object_get(job, "finished_at");
    if (!name || !base) return;
    pthread_mutex_lock(&st->cache_mu);
    json_array_append_new(st->models, json_pack("{s:s, s:s, s:s, s:I}", "id", name, "base", base, "org", org, "created",
                                                (json_int_t)(json_is_integer(fin) ? json_integer_value(fin) : 0)));
    st->models_version++;
    pthread_mutex_unlock(&st->cache_mu);
}


void ft_add_event(pt_server *s, const char *job, const char *org, const char *level, const char *type,
                      json_t *data, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    job_id id;
    ft_new_id("ftevent", id);
    pt_buf clean;
    pt_buf_init(&clean, sizeof msg * 4);
    pt_utf8_clean(msg, strlen(msg), &clean);
    json_t *e = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "object", "fine_tuning.job.event", "id", id, "created_at",
                          (json_int_t)pt_unix_time(), "level", level, "message", clean.data ? clean.data : "", "type",
                          type);
    pt_buf_free(&clean);
    json_object_set_new(e, "data", data ? data : json_object());
    ft_doc_put(s, C_EVENTS, id, org, job, e);
    json_decref(e);
}

/* Marks a job failed (under st->mu). */
static void job_fail(pt_server *s, json_t *job, const char *org, const char *code, const char *param,
                     const char *msg) {
    pt_buf clean;
    pt_buf_init(&clean, 8192);
    pt_utf8_clean(msg, strlen(msg), &clean);
    json_object_set_new(job, "status", json_string("failed"));
    json_object_set_new(job, "finished_at", json_integer(pt_unix_time()));
    json_object_set_new(job, "estimated_finish", json_null());
    json_object_set_new(job, "error", json_pack("{s:s, s:s, s:o}", "code", code, "message",
                                               clean.data ? clean.data : "", "param",
                                               param ? json_string(param) : json_null()));
    ft_doc_put(s, C_JOBS, jstr(job, "id"), org, NULL, job);
    ft_add_event(s, jstr(job, "id"), org, "error", "message", NULL, "Fine-tuning job failed: %s",
              clean.data ? clean.data : "");
    pt_buf_free(&clean);
}

/* Validates JSONL training data line by line with the trainer's own parser: the first bad line
 * is an error "WHAT:LINE: message". Counts usable examples (with a loss token) and tokens. */
int ft_validate_jsonl(const char *s, size_t len, const char *what, const pt_tokenizer *tok, int max_len,
                          size_t *examples, size_t *tokens, pt_err *err) {
    *examples = 0, *tokens = 0;
    size_t i = 0, line = 0;
    while (i < len) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - s) : len, b = i;
        i = nl ? e + 1 : len;
        line++;
        size_t k = b;
        while (k < e && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r')) k++;
        if (k == e) continue;
        char w[400];
        snprintf(w, sizeof w, "%s:%zu", what, line);
        pt_sft_example ex;
        int rc = pt_sft_parse_line(s + b, e - b, w, tok, max_len, &ex, err);
        if (rc) return rc;
        int has_loss = 0;
        for (int t = 1; t < ex.n; t++) has_loss |= ex.loss[t];
        if (has_loss) (*examples)++, *tokens += (size_t)ex.n;
        free(ex.tokens), free(ex.loss);
    }
    if (!*examples) return pt_errf(err, PT_EINVAL, "%s: no example with completion (assistant) tokens", what);
    return PT_OK;
}



/* The worker ------------------------------------------------------------------------------------- */

static char *file_path(ft_state *st, const char *id) { return pt_path_join(st->files_dir, id); }

/* validating_files → queued: the files tokenized with the base model's tokenizer, the
 * hyperparameters resolved, the number of steps fixed. */
static void validate_job(pt_server *s, const char *id) {
    ft_state *st = s->ft;
    char org[128];
    pthread_mutex_lock(&st->mu);
    json_t *job = doc_get(s, C_JOBS, id, org, sizeof org);
    int go = job && !strcmp(jstr(job, "status") ? jstr(job, "status") : "", "validating_files");
    pthread_mutex_unlock(&st->mu);
    if (!go) {
        json_decref(job);
        return;
    }
    const char *model = jstr(job, "model");
    const pt_tokenizer *tok = srv_model_tokenizer(s, model);
    const pt_config *cfg = srv_model_config(s, model);
    char msg[1024] = "", param[32] = "";
    const char *code = "invalid_training_file";
    size_t examples = 0, tokens = 0;
    if (!tok || !cfg) {
        snprintf(msg, sizeof msg, "The base model '%s' is no longer served here.", model);
        code = "model_not_available";
    }
    static const char *const keys[2] = {"training_file", "validation_file"};
    for (int k = 0; k < 2 && !msg[0]; k++) {
        const char *fid = jstr(job, keys[k]);
        if (!fid) continue;
        char *path = file_path(st, fid), *data = NULL;
        size_t len, ex, tk;
        pt_err err;
        int rc = path ? pt_read_file(path, s->o.max_file, &data, &len, &err) : PT_ENOMEM;
        if (!rc) {
            int max_len = cfg->max_pos < MAX_LEN ? cfg->max_pos : MAX_LEN;
            rc = ft_validate_jsonl(data, len, fid, tok, max_len, &ex, &tk, &err);
        }
        if (rc) {
            snprintf(msg, sizeof msg, "%s", err.msg);
            snprintf(param, sizeof param, "%s", keys[k]);
            if (k) code = "invalid_validation_file";
        } else if (k == 0) {
            examples = ex, tokens = tk;
        }
        free(path), free(data);
    }
    pthread_mutex_lock(&st->mu);
    json_t *now_doc = doc_get(s, C_JOBS, id, NULL, 0);
    if (now_doc && !strcmp(jstr(now_doc, "status") ? jstr(now_doc, "status") : "", "validating_files")) {
        if (msg[0]) {
            job_fail(s, now_doc, org, code, param[0] ? param : NULL, msg);
        } else {
            json_t *hp = json_object_get(now_doc, "hyperparameters");
            json_t *ep = json_object_get(hp, "n_epochs"), *bs = json_object_get(hp, "batch_size"),
                   *lr = json_object_get(hp, "learning_rate_multiplier");
            int64_t epochs = json_is_integer(ep) ? json_integer_value(ep) : DEFAULT_EPOCHS;
            int64_t batch = json_is_integer(bs) ? json_integer_value(bs)
                                                : ((int64_t)examples < DEFAULT_BATCH ? (int64_t)examples : DEFAULT_BATCH);
            double mult = json_is_number(lr) ? json_number_value(lr) : 1.0;
            int64_t steps = ((int64_t)examples * epochs + batch - 1) / batch;
            if (steps > MAX_STEPS) steps = MAX_STEPS;
            if (steps < 1) steps = 1;
            json_t *res = json_pack("{s:I, s:I, s:f}", "n_epochs", (json_int_t)epochs, "batch_size", (json_int_t)batch,
                                    "learning_rate_multiplier", mult);
            json_object_set(now_doc, "hyperparameters", res);
            json_object_set_new(json_object_get(json_object_get(now_doc, "method"), "supervised"), "hyperparameters",
                                res);
            json_t *priv = json_object_get(now_doc, "_parity");
            json_object_set_new(priv, "steps", json_integer(steps));
            json_object_set_new(priv, "examples", json_integer((json_int_t)examples));
            json_object_set_new(priv, "file_tokens", json_integer((json_int_t)tokens));
            json_object_set_new(now_doc, "status", json_string("queued"));
            ft_doc_put(s, C_JOBS, id, org, NULL, now_doc);
            ft_add_event(s, id, org, "info", "message", NULL,
                      "Files validated (%zu examples); %lld steps of %lld examples; moving job to queued state",
                      examples, (long long)steps, (long long)batch);
            ft_q_push(&st->trainq, &st->ntrain, &st->captrain, id);
        }
    }
    pthread_mutex_unlock(&st->mu);
    json_decref(now_doc);
    json_decref(job);
}

/* What the training hooks share. */
typedef struct ft_run {
    pt_server *s;
    const char *id, *org;
    pt_buf csv;         /* the result file: step,train_loss */
    double t0;
    int64_t every;
} ft_run;

static int hook_stop(void *ctx) {
    ft_run *r = ctx;
    ft_state *st = r->s->ft;
    for (;;) { /* jobs waiting for validation are validated between steps */
        pthread_mutex_lock(&st->mu);
        if (st->stopping || st->cancel) {
            pthread_mutex_unlock(&st->mu);
            return 1;
        }
        if (!st->nval) {
            pthread_mutex_unlock(&st->mu);
            return 0;
        }
        job_id v;
        q_pop(st->valq, &st->nval, v);
        pthread_mutex_unlock(&st->mu);
        validate_job(r->s, v);
    }
}

static void hook_step(void *ctx, int64_t step, int64_t steps, double loss) {
    ft_run *r = ctx;
    pt_buf_printf(&r->csv, "%lld,%.6f\n", (long long)step + 1, loss);
    if ((step + 1) % r->every && step + 1 != steps) return;
    ft_add_event(r->s, r->id, r->org, "info", "metrics",
              json_pack("{s:I, s:I, s:f}", "step", (json_int_t)step + 1, "total_steps", (json_int_t)steps,
                        "train_loss", loss),
              "Step %lld/%lld: training loss=%.4f", (long long)step + 1, (long long)steps, loss);
    ft_state *st = r->s->ft;
    double per = (pt_now() - r->t0) / (double)(step + 1);
    pthread_mutex_lock(&st->mu);
    json_t *d = doc_get(r->s, C_JOBS, r->id, NULL, 0);
    if (d && !strcmp(jstr(d, "status") ? jstr(d, "status") : "", "running")) {
        json_object_set_new(d, "estimated_finish",
                            json_integer(pt_unix_time() + (int64_t)ceil(per * (double)(steps - step - 1))));
        ft_doc_put(r->s, C_JOBS, r->id, r->org, NULL, d);
    }
    json_decref(d);
    pthread_mutex_unlock(&st->mu);
}

/* queued → running → succeeded | failed (| cancelled by the API). */
static void train_job(pt_server *s, const char *id) {
    ft_state *st = s->ft;
    char org[128];
    pthread_mutex_lock(&st->mu);
    json_t *job = doc_get(s, C_JOBS, id, org, sizeof org);
    if (!job || strcmp(jstr(job, "status") ? jstr(job, "status") : "", "queued")) {
        pthread_mutex_unlock(&st->mu);
        json_decref(job);
        return;
    }
    const char *model = jstr(job, "model");
    /* The policy may have changed since the job was created: decide again. */
    policy_ref *pol = srv_policy_get(s);
    pt_decision dec;
    pt_policy_decide(pol->p, org, model, NULL, PT_CAP_FINETUNE, pt_unix_time(), NULL, &dec);
    srv_policy_put(s, pol);
    const char *path = srv_model_path(s, model);
    if (!dec.allow || !path) {
        job_fail(s, job, org, dec.allow ? "model_not_available" : "policy_denied", NULL,
                 dec.allow ? "The base model is no longer served here." : dec.message);
        pthread_mutex_unlock(&st->mu);
        json_decref(job);
        return;
    }
    json_object_set_new(job, "status", json_string("running"));
    ft_doc_put(s, C_JOBS, id, org, NULL, job);
    ft_add_event(s, id, org, "info", "message", NULL, "Fine-tuning job started");
    pthread_mutex_unlock(&st->mu);

    json_t *hp = json_object_get(job, "hyperparameters"), *priv = json_object_get(job, "_parity");
    pt_finetune_conf fc;
    pt_finetune_conf_defaults(&fc);
    fc.model = strdup(path);
    fc.data = file_path(st, jstr(job, "training_file"));
    fc.out = pt_path_join(st->jobs_dir, id);
    fc.targets = strdup("q,v");
    fc.steps = json_integer_value(json_object_get(priv, "steps"));
    fc.batch_size = (int)json_integer_value(json_object_get(hp, "batch_size"));
    fc.lr = (float)(BASE_LR * json_number_value(json_object_get(hp, "learning_rate_multiplier")));
    fc.seed = (uint64_t)json_integer_value(json_object_get(job, "seed"));
    ft_run r = {.s = s, .id = id, .org = org, .t0 = pt_now()};
    r.every = fc.steps > 100 ? fc.steps / 100 : 1;
    pt_buf_init(&r.csv, (size_t)1 << 26);
    pt_buf_puts(&r.csv, "step,train_loss\n");
    fc.should_stop = hook_stop, fc.on_step = hook_step, fc.hook_ctx = &r;
    pt_finetune_result res;
    pt_err err = {0};
    int rc = fc.model && fc.data && fc.out && fc.targets ? pt_finetune_run(&fc, 1, &res, &err)
                                                         : pt_errf(&err, PT_ENOMEM, "out of memory");

    pthread_mutex_lock(&st->mu);
    json_t *d = doc_get(s, C_JOBS, id, NULL, 0);
    int stopping = st->stopping;
    if (d && !strcmp(jstr(d, "status") ? jstr(d, "status") : "", "running")) {
        if (rc) {
            if (stopping) job_fail(s, d, org, "server_shutdown", NULL,
                                   "The server stopped while the job was running; create a new job.");
            else job_fail(s, d, org, "training_failed", NULL, err.msg);
        } else {
            /* the result file (step metrics, CSV) */
            job_id fid;
            ft_new_id("file", fid);
            char *fp = file_path(st, fid);
            json_t *rf = NULL;
            if (fp && !pt_write_atomic(fp, r.csv.data, r.csv.len, 0600, NULL)) {
                rf = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:n, s:n}", "id", fid, "object", "file", "bytes",
                               (json_int_t)r.csv.len, "created_at", (json_int_t)pt_unix_time(), "filename",
                               "step_metrics.csv", "purpose", "fine-tune-results", "status", "processed",
                               "status_details", "expires_at");
                ft_doc_put(s, C_FILES, fid, org, NULL, rf);
            }
            free(fp);
            const char *name = jstr(json_object_get(d, "_parity"), "model_name");
            char ckname[200];
            snprintf(ckname, sizeof ckname, "%s:ckpt-step-%lld", name, (long long)res.steps);
            job_id cid;
            ft_new_id("ftckpt", cid);
            json_t *ck = json_pack("{s:s, s:s, s:I, s:s, s:s, s:I, s:{s:I, s:f}}", "object",
                                   "fine_tuning.job.checkpoint", "id", cid, "created_at", (json_int_t)pt_unix_time(),
                                   "fine_tuned_model_checkpoint", ckname, "fine_tuning_job_id", id, "step_number",
                                   (json_int_t)res.steps, "metrics", "step", (json_int_t)res.steps, "train_loss",
                                   res.last_loss);
            ft_doc_put(s, C_CKPTS, cid, org, id, ck);
            json_decref(ck);
            json_object_set_new(json_object_get(d, "_parity"), "checkpoint_model", json_string(ckname));
            json_object_set_new(d, "status", json_string("succeeded"));
            json_object_set_new(d, "fine_tuned_model", json_string(name));
            json_object_set_new(d, "finished_at", json_integer(pt_unix_time()));
            json_object_set_new(d, "estimated_finish", json_null());
            json_object_set_new(d, "trained_tokens", json_integer(res.trained_tokens));
            json_object_set_new(d, "result_files", rf ? json_pack("[s]", fid) : json_array());
            json_decref(rf);
            ft_doc_put(s, C_JOBS, id, org, NULL, d);
            ft_model_add(st, d, org);
            ft_add_event(s, id, org, "info", "message", NULL, "New fine-tuned model created: %s", name);
            ft_add_event(s, id, org, "info", "message", NULL,
                      "The job has successfully completed (%lld steps, loss %.4f → %.4f, %lld tokens)",
                      (long long)res.steps, res.first_loss, res.last_loss, (long long)res.trained_tokens);
        }
    }
    json_decref(d);
    pthread_mutex_unlock(&st->mu);
    pt_buf_free(&r.csv);
    pt_finetune_conf_free(&fc);
    json_decref(job);
}

static void *worker(void *arg) {
    pt_server *s = arg;
    ft_state *st = s->ft;
    for (;;) {
        pthread_mutex_lock(&st->mu);
        while (!st->stopping && !st->nval && !st->ntrain) pthread_cond_wait(&st->cv, &st->mu);
        if (st->stopping) {
            pthread_mutex_unlock(&st->mu);
            break;
        }
        job_id id;
        int validate = st->nval > 0;
        if (validate) {
            q_pop(st->valq, &st->nval, id);
        } else {
            q_pop(st->trainq, &st->ntrain, id);
            snprintf(st->running, sizeof st->running, "%s", id);
            st->cancel = 0;
        }
        pthread_mutex_unlock(&st->mu);
        if (validate) validate_job(s, id);
        else train_job(s, id);
        pthread_mutex_lock(&st->mu);
        st->running[0] = 0;
        st->cancel = 0;
        pthread_mutex_unlock(&st->mu);
    }
    return NULL;
}

/* Start, stop, the adapter cache ------------------------------------------------------------------ */

json_t *srv_ft_models(pt_server *s, const pt_policy *p, const char *org, int64_t now, uint64_t *version) {
    ft_state *st = s->ft;
    json_t *out = json_array();
    if (version) *version = 0;
    if (!st) return out;
    pthread_mutex_lock(&st->cache_mu);
    if (version) *version = st->models_version;
    size_t i;
    json_t *m;
    json_array_foreach(st->models, i, m) {
        pt_capset caps = 0;
        if (strcmp(jstr(m, "org"), org) || !pt_policy_effective(p, org, jstr(m, "base"), now, &caps, NULL) ||
            !(caps & (1u << PT_CAP_SAMPLE)))
            continue;
        json_array_append_new(out, json_pack("{s:s, s:s, s:O, s:s, s:s}", "id", jstr(m, "id"), "object", "model",
                                             "created", json_object_get(m, "created"), "owned_by", org, "parent",
                                             jstr(m, "base")));
    }
    pthread_mutex_unlock(&st->cache_mu);
    return out;
}

uint64_t srv_ft_models_version(pt_server *s) {
    ft_state *st = s->ft;
    if (!st) return 0;
    return atomic_load_explicit(&st->models_version, memory_order_acquire);
}

int srv_ft_start(pt_server *s, pt_err *err) {
    ft_state *st = calloc(1, sizeof *st);
    if (!st) return pt_errf(err, PT_ENOMEM, "out of memory");
    s->ft = st;
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->cache_mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    st->models = json_array();
    st->files_dir = pt_path_join(s->data_dir, "files");
    st->jobs_dir = pt_path_join(s->data_dir, "fine_tuning");
    if (!st->files_dir || !st->jobs_dir) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = pt_mkdirs(st->files_dir, 1, err);
    if (!rc) rc = pt_mkdirs(st->jobs_dir, 1, err);
    if (rc) return rc;
    /* Jobs from the previous run, oldest first. */
    char **docs;
    size_t n;
    if ((rc = pt_store_doc_list(s->store, C_JOBS, NULL, NULL, NULL, MAX_JOBS_SCAN, &docs, &n, err))) return rc;
    for (size_t i = n; i-- > 0;) {
        json_t *d = json_loads(docs[i], 0, NULL);
        const char *status = d ? jstr(d, "status") : NULL, *id = d ? jstr(d, "id") : NULL;
        const char *org = d ? jstr(d, "organization_id") : NULL;
        if (status && id && org) {
            if (!strcmp(status, "running"))
                job_fail(s, d, org, "server_restarted", NULL,
                         "The server stopped while the job was running; create a new job.");
            else if (!strcmp(status, "validating_files")) rc = ft_q_push(&st->valq, &st->nval, &st->capval, id);
            else if (!strcmp(status, "queued")) rc = ft_q_push(&st->trainq, &st->ntrain, &st->captrain, id);
            else if (!strcmp(status, "succeeded")) ft_model_add(st, d, org);
        }
        json_decref(d);
        if (rc) break;
    }
    pt_store_free_list(docs, n);
    if (rc) return pt_errf(err, rc, "out of memory");
    /* Counted before the worker starts taking jobs from the queues (a data race otherwise:
     * ThreadSanitizer, `make test-tsan`). */
    size_t nval = st->nval, ntrain = st->ntrain;
    if (pthread_create(&st->thread, NULL, worker, s)) return pt_errf(err, PT_EINTERNAL, "cannot start the fine-tuning worker");
    st->started = 1;
    if (nval || ntrain)
        fprintf(stderr, "parity: fine-tuning: %zu job(s) to validate, %zu queued from the previous run\n", nval, ntrain);
    return PT_OK;
}

void srv_ft_stop(pt_server *s) {
    ft_state *st = s->ft;
    if (!st || !st->started) return;
    pthread_mutex_lock(&st->mu);
    st->stopping = 1;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);
    st->started = 0;
}

void srv_ft_free(pt_server *s) {
    ft_state *st = s->ft;
    if (!st) return;
    srv_ft_stop(s);
    for (size_t i = 0; i < st->ncache; i++) pt_lora_free(st->cache[i].l);
    free(st->cache);
    free(st->valq), free(st->trainq);
    free(st->files_dir), free(st->jobs_dir);
    json_decref(st->models);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->cache_mu);
    pthread_mutex_destroy(&st->mu);
    free(st);
    s->ft = NULL;
}

int srv_ft_resolve(pt_server *s, call *c, const char *name, char *base, size_t base_cap, const pt_lora **lora,
                   http_resp *resp) {
    ft_state *st = s->ft;
    /* ft:BASE:ORG:SUFFIX:JOBID[:ckpt-step-N] — the job id is the last segment that starts "ftjob-". */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", name);
    const char *jid = NULL;
    char *save = NULL;
    for (char *p = strtok_r(buf, ":", &save); p; p = strtok_r(NULL, ":", &save))
        if (!strncmp(p, "ftjob-", 6)) jid = p;
    json_t *d = NULL;
    char org[128];
    if (jid && strlen(jid) < ID_CAP) d = doc_get(s, C_JOBS, jid, org, sizeof org);
    json_t *priv = d ? json_object_get(d, "_parity") : NULL;
    const char *fm = d ? jstr(d, "fine_tuned_model") : NULL, *ck = jstr(priv, "checkpoint_model");
    if (!d || strcmp(org, c->key.org) || !fm || (strcmp(fm, name) && (!ck || strcmp(ck, name)))) {
        json_decref(d);
        snprintf(c->model, sizeof c->model, "%s", name);
        c->decision_allow = 0;
        snprintf(c->reason, sizeof c->reason, "unknown_model");
        http_error(resp, 404, "invalid_request_error", "model_not_found", "model",
                   "The model '%s' does not exist or you do not have access to it.", name);
        return 0;
    }
    snprintf(base, base_cap, "%s", jstr(d, "model"));
    const pt_config *cfg = srv_model_config(s, base);
    pthread_mutex_lock(&st->cache_mu);
    const pt_lora *found = NULL;
    for (size_t i = 0; i < st->ncache && !found; i++)
        if (!strcmp(st->cache[i].job, jid)) found = st->cache[i].l;
    pt_err err = {0};
    if (!found && cfg) {
        char *dir = pt_path_join(st->jobs_dir, jid);
        pt_lora *l = NULL;
        ft_lora *x = realloc(st->cache, (st->ncache + 1) * sizeof *x);
        if (x) st->cache = x;
        if (dir && x && !pt_lora_load(dir, cfg, &l, &err)) {
            snprintf(st->cache[st->ncache].job, ID_CAP, "%s", jid);
            st->cache[st->ncache++].l = l;
            found = l;
        }
        free(dir);
    }
    pthread_mutex_unlock(&st->cache_mu);
    json_decref(d);
    if (!found) {
        http_error(resp, 503, "server_error", "model_not_served", "model",
                   "The fine-tuned model '%s' cannot be served: %s", name,
                   cfg ? err.msg : "its base model is not served here");
        return 0;
    }
    *lora = found;
    return 1;
}

