/* server_finetune.c — files and fine-tuning jobs in OpenAI's shape: POST/GET /v1/files,
 * /v1/fine_tuning/jobs (create, list, retrieve, cancel, events, checkpoints), one background
 * worker that validates files and trains LoRA adapters (train/finetune.h, parity finetune's
 * defaults: rank 8, alpha 16, targets q,v), and the adapter cache behind the fine-tuned model
 * ids "ft:BASE:ORG:SUFFIX:JOBID" that completions and chat accept (server_models.c).
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
#include "server/multipart.h"
#include "server/pipeline.h"
#include "server/finetune.h"
#include "server/registry.h"
#include "train/finetune.h"

#define C_FILES "files"
#define C_JOBS "ft_jobs"
#define C_EVENTS "ft_events"
#define C_CKPTS "ft_checkpoints"
#define ID_CAP 48
#define MAX_LEN 256           /* parity finetune's default max_len */
#define DEFAULT_EPOCHS 3      /* "auto" */
#define DEFAULT_BATCH 4
#define BASE_LR 1e-3          /* parity finetune's --lr; learning_rate_multiplier scales it */
#define MAX_STEPS 100000
#define MAX_JOBS_SCAN 100000

typedef char job_id[ID_CAP];

typedef struct ft_lora {
    job_id job;
    pt_lora *l;
} ft_lora;

typedef struct ft_state {
    pthread_mutex_t mu;   /* job documents, the queues, running/cancel */
    pthread_cond_t cv;
    pthread_t thread;
    int started, stopping;
    job_id *valq, *trainq;
    size_t nval, ntrain, capval, captrain;
    job_id running;
    int cancel;
    pthread_mutex_t cache_mu;
    ft_lora *cache;
    size_t ncache;
    char *files_dir, *jobs_dir;
    json_t *models;       /* [{id, base, org, created}] of succeeded jobs, guarded by cache_mu: what
                           * GET /v1/models lists without a store query per request */
    _Atomic uint64_t models_version; /* bumped with every change to models (under cache_mu) */
} ft_state;

/* Helpers ---------------------------------------------------------------------------------------- */

static void new_id(const char *prefix, char *out) {
    uint8_t r[12];
    char hx[25];
    randombytes_buf(r, sizeof r);
    snprintf(out, ID_CAP, "%s-%s", prefix, pt_hex(r, sizeof r, hx));
}

static int q_push(job_id **q, size_t *n, size_t *cap, const char *id) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        job_id *x = realloc(*q, nc * sizeof *x);
        if (!x) return PT_ENOMEM;
        *q = x, *cap = nc;
    }
    snprintf((*q)[(*n)++], ID_CAP, "%s", id);
    return PT_OK;
}

static int q_remove(job_id *q, size_t *n, const char *id) {
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
static json_t *doc_get_own(pt_server *s, call *c, const char *coll, const char *id) {
    char org[128];
    json_t *j = doc_get(s, coll, id, org, sizeof org);
    if (j && strcmp(org, c->key.org)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int doc_put(pt_server *s, const char *coll, const char *id, const char *org, const char *parent, json_t *j) {
    char *text = json_dumps(j, JSON_COMPACT);
    if (!text) return PT_ENOMEM;
    pt_err err;
    int rc = pt_store_doc_put(s->store, coll, id, org, parent, text, &err);
    if (rc) fprintf(stderr, "parity: fine-tuning: saving %s %s: %s\n", coll, id, err.msg);
    free(text);
    return rc;
}

/* The public object: the document without its private member. New reference. */
static json_t *public_obj(json_t *doc) {
    json_t *o = json_copy(doc);
    json_object_del(o, "_parity");
    return o;
}

static const char *jstr(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static int terminal(const char *status) {
    return status && (!strcmp(status, "succeeded") || !strcmp(status, "failed") || !strcmp(status, "cancelled"));
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


static void add_event(pt_server *s, const char *job, const char *org, const char *level, const char *type,
                      json_t *data, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void add_event(pt_server *s, const char *job, const char *org, const char *level, const char *type,
                      json_t *data, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    job_id id;
    new_id("ftevent", id);
    pt_buf clean;
    pt_buf_init(&clean, sizeof msg * 4);
    pt_utf8_clean(msg, strlen(msg), &clean);
    json_t *e = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "object", "fine_tuning.job.event", "id", id, "created_at",
                          (json_int_t)pt_unix_time(), "level", level, "message", clean.data ? clean.data : "", "type",
                          type);
    pt_buf_free(&clean);
    json_object_set_new(e, "data", data ? data : json_object());
    doc_put(s, C_EVENTS, id, org, job, e);
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
    doc_put(s, C_JOBS, jstr(job, "id"), org, NULL, job);
    add_event(s, jstr(job, "id"), org, "error", "message", NULL, "Fine-tuning job failed: %s",
              clean.data ? clean.data : "");
    pt_buf_free(&clean);
}

/* Validates JSONL training data line by line with the trainer's own parser: the first bad line
 * is an error "WHAT:LINE: message". Counts usable examples (with a loss token) and tokens. */
static int validate_jsonl(const char *s, size_t len, const char *what, const pt_tokenizer *tok, int max_len,
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

/* Query parameters "limit" (1..100, default 20) and "after". 0 and a 400 on a bad limit. */
static int list_params(call *c, http_resp *resp, size_t *limit, const char **after) {
    const char *l = http_query(c->req, "limit");
    *after = http_query(c->req, "after");
    if (*after && !**after) *after = NULL;
    *limit = 20;
    uint64_t v;
    if (l && (pt_parse_u64(l, &v) || v < 1 || v > 100)) {
        http_error(resp, 400, "invalid_request_error", "invalid_value", "limit", "'limit' must be 1 to 100.");
        return 0;
    }
    if (l) *limit = (size_t)v;
    return 1;
}

/* A list answer {"object":"list","data":[...],"has_more"} of a collection. */
static int list_answer(pt_server *s, http_resp *resp, const char *coll, const char *org, const char *parent,
                       const char *after, size_t limit, int first_last) {
    char **docs;
    size_t n;
    pt_err err;
    if (pt_store_doc_list(s->store, coll, org, parent, after, limit + 1, &docs, &n, &err)) {
        http_error(resp, 500, "server_error", NULL, NULL, "%s", err.msg);
        return HTTP_DONE;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < n && i < limit; i++) {
        json_t *d = json_loads(docs[i], 0, NULL);
        if (d) json_array_append_new(a, public_obj(d));
        json_decref(d);
    }
    pt_store_free_list(docs, n);
    json_t *o = json_pack("{s:s, s:o, s:b}", "object", "list", "data", a, "has_more", n > limit);
    if (first_last) {
        size_t k = json_array_size(a);
        json_object_set_new(o, "first_id", k ? json_incref(json_object_get(json_array_get(a, 0), "id")) : json_null());
        json_object_set_new(o, "last_id", k ? json_incref(json_object_get(json_array_get(a, k - 1), "id")) : json_null());
    }
    http_json(resp, 200, o);
    return HTTP_DONE;
}

/* The caller may see this object: recorded in the receipt as an allow by ownership. */
static void allow_owner(call *c) {
    c->decision_allow = 1;
    snprintf(c->reason, sizeof c->reason, "owner");
}

static int not_found(http_resp *resp, const char *what, const char *id, const char *param) {
    http_error(resp, 404, "invalid_request_error", "not_found", param, "No %s with id '%s'.", what, id);
    return HTTP_DONE;
}

/* Files ------------------------------------------------------------------------------------------ */

/* Decides `finetune` for the caller's organisation on any model of the policy: uploading
 * training data is part of fine-tuning. Records the decision of the first model that allows
 * it, or the furthest denial. 0 with a 403 in resp when none allows it. */
static int decide_any_finetune(pt_server *s, call *c, http_resp *resp) {
    const pt_policy *p = c->pol->p;
    for (size_t i = 0; i < p->n_models; i++) {
        pt_decision d;
        pt_policy_decide(p, c->key.org, p->models[i].id, NULL, PT_CAP_FINETUNE, pt_unix_time(), NULL, &d);
        if (d.allow) return srv_decide(s, c, p->models[i].id, NULL, PT_CAP_FINETUNE, NULL, resp);
    }
    c->caps_used |= 1u << PT_CAP_FINETUNE;
    c->decision_allow = 0;
    snprintf(c->reason, sizeof c->reason, "capability_not_in_tier");
    http_error(resp, 403, "permission_denied", "capability_not_in_tier", NULL,
               "Organisation '%s' may not fine-tune any model under policy revision %lld.", c->key.org,
               (long long)c->pol->seq);
    return 0;
}

static int r_file_upload(pt_server *s, call *c, http_resp *resp) {
    ft_state *st = s->ft;
    pt_err err;
    char boundary[80];
    mp_part parts[8];
    size_t n;
    if (mp_boundary(http_header(c->req, "Content-Type"), boundary, sizeof boundary, &err) ||
        mp_parse(boundary, c->req->body, c->req->body_len, parts, 8, &n, &err)) {
        http_error(resp, 400, "invalid_request_error", "invalid_multipart", NULL, "%s", err.msg);
        return HTTP_DONE;
    }
    const mp_part *purpose = mp_find(parts, n, "purpose"), *file = mp_find(parts, n, "file");
    if (!purpose || purpose->len != 9 || memcmp(purpose->data, "fine-tune", 9)) {
        http_error(resp, 400, "invalid_request_error", "invalid_value", "purpose",
                   "'purpose' must be 'fine-tune' (the only purpose this server stores files for).");
        return HTTP_DONE;
    }
    if (!file || !file->has_filename || !file->len) {
        http_error(resp, 400, "invalid_request_error", "invalid_value", "file",
                   "'file' must be a non-empty file part (multipart/form-data with a filename).");
        return HTTP_DONE;
    }
    if (!decide_any_finetune(s, c, resp)) return HTTP_DONE;
    if (pt_utf8_check(file->filename, strlen(file->filename)) != strlen(file->filename)) {
        http_error(resp, 400, "invalid_request_error", "invalid_value", "file", "The filename is not UTF-8.");
        return HTTP_DONE;
    }
    const pt_tokenizer *tok = srv_model_tokenizer(s, NULL);
    if (!tok) {
        http_error(resp, 503, "server_error", "model_not_served", NULL,
                   "This server runs no model, so it cannot check training data.");
        return HTTP_DONE;
    }
    size_t examples, tokens;
    if (validate_jsonl(file->data, file->len, file->filename, tok, MAX_LEN, &examples, &tokens, &err)) {
        http_error(resp, 400, "invalid_request_error", "invalid_file", "file", "%s", err.msg);
        return HTTP_DONE;
    }
    job_id id;
    new_id("file", id);
    char *path = pt_path_join(st->files_dir, id);
    if (!path || pt_write_atomic(path, file->data, file->len, 0600, &err)) {
        free(path);
        http_error(resp, 500, "server_error", NULL, NULL, "storing the file failed");
        return HTTP_DONE;
    }
    free(path);
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:n, s:n}", "id", id, "object", "file", "bytes",
                          (json_int_t)file->len, "created_at", (json_int_t)pt_unix_time(), "filename", file->filename,
                          "purpose", "fine-tune", "status", "processed", "status_details", "expires_at");
    json_object_set_new(o, "_parity", json_pack("{s:I}", "examples", (json_int_t)examples));
    if (doc_put(s, C_FILES, id, c->key.org, NULL, o)) {
        json_decref(o);
        http_error(resp, 500, "server_error", NULL, NULL, "storing the file's record failed");
        return HTTP_DONE;
    }
    http_json(resp, 200, public_obj(o));
    json_decref(o);
    return HTTP_DONE;
}

static int r_file_get(pt_server *s, call *c, http_resp *resp) {
    json_t *d = doc_get_own(s, c, C_FILES, c->params[0]);
    if (!d) return not_found(resp, "file", c->params[0], "file_id");
    allow_owner(c);
    http_json(resp, 200, public_obj(d));
    json_decref(d);
    return HTTP_DONE;
}

static int r_file_content(pt_server *s, call *c, http_resp *resp) {
    ft_state *st = s->ft;
    json_t *d = doc_get_own(s, c, C_FILES, c->params[0]);
    if (!d) return not_found(resp, "file", c->params[0], "file_id");
    allow_owner(c);
    char *path = pt_path_join(st->files_dir, c->params[0]), *data = NULL;
    size_t len = 0;
    pt_err err;
    if (!path || pt_read_file(path, s->o.max_file, &data, &len, &err)) {
        http_error(resp, 500, "server_error", NULL, NULL, "reading the file failed");
    } else {
        pt_buf_append(&resp->body, data, len);
        const char *fn = jstr(d, "filename");
        resp->content_type = fn && strstr(fn, ".csv") ? "text/csv" : "application/octet-stream";
    }
    free(path), free(data);
    json_decref(d);
    return HTTP_DONE;
}

/* GET /v1/files?after=&limit=&purpose=: the organisation's files, newest first (OpenAI's list,
 * with first_id and last_id). Every file here has purpose fine-tune; another purpose lists none. */
static int r_files_list(pt_server *s, call *c, http_resp *resp) {
    size_t limit;
    const char *after, *purpose = http_query(c->req, "purpose");
    if (!list_params(c, resp, &limit, &after)) return HTTP_DONE;
    allow_owner(c);
    if (purpose && *purpose && strcmp(purpose, "fine-tune")) {
        http_json(resp, 200, json_pack("{s:s, s:[], s:b, s:n, s:n}", "object", "list", "data", "has_more", 0,
                                       "first_id", "last_id"));
        return HTTP_DONE;
    }
    return list_answer(s, resp, C_FILES, c->key.org, NULL, after, limit, 1);
}

/* DELETE /v1/files/{id}: the record and the bytes (a job still to validate it then fails). */
static int r_file_delete(pt_server *s, call *c, http_resp *resp) {
    ft_state *st = s->ft;
    json_t *d = doc_get_own(s, c, C_FILES, c->params[0]);
    if (!d) return not_found(resp, "file", c->params[0], "file_id");
    json_decref(d);
    allow_owner(c);
    pt_err err;
    char *path = pt_path_join(st->files_dir, c->params[0]);
    if (pt_store_doc_delete(s->store, C_FILES, c->params[0], &err) || !path || (unlink(path) && errno != ENOENT)) {
        free(path);
        http_error(resp, 500, "server_error", NULL, NULL, "deleting the file failed");
        return HTTP_DONE;
    }
    free(path);
    http_json(resp, 200, json_pack("{s:s, s:s, s:b}", "id", c->params[0], "object", "file", "deleted", 1));
    return HTTP_DONE;
}

/* Jobs ------------------------------------------------------------------------------------------- */

/* One hyperparameter: absent or "auto" → auto (stored "auto"), else a number in [lo, hi]
 * (integer when integral). 0 with a 400 in resp when bad. */
static int hyper(json_t *h, const char *key, double lo, double hi, int integral, json_t *out, http_resp *resp) {
    json_t *v = h ? json_object_get(h, key) : NULL;
    if (!v || json_is_null(v) || (json_is_string(v) && !strcmp(json_string_value(v), "auto"))) {
        json_object_set_new(out, key, json_string("auto"));
        return 1;
    }
    double x = json_number_value(v);
    if (!json_is_number(v) || !(x >= lo && x <= hi) || (integral && (!json_is_integer(v)))) {
        http_error(resp, 400, "invalid_request_error", "invalid_value", key,
                   "'%s' must be \"auto\" or %s in [%g, %g].", key, integral ? "an integer" : "a number", lo, hi);
        return 0;
    }
    json_object_set_new(out, key, integral ? json_integer(json_integer_value(v)) : json_real(x));
    return 1;
}

/* A file of the caller's for a job: 1, or 0 with a 400 in resp. */
static int job_file(pt_server *s, call *c, json_t *b, const char *key, int required, http_resp *resp) {
    json_t *v = json_object_get(b, key);
    if (!v || json_is_null(v)) {
        if (!required) return 1;
        http_error(resp, 400, "invalid_request_error", "invalid_value", key, "'%s' is required.", key);
        return 0;
    }
    if (!json_is_string(v)) {
        http_error(resp, 400, "invalid_request_error", "invalid_value", key, "'%s' must be a file id.", key);
        return 0;
    }
    json_t *d = doc_get_own(s, c, C_FILES, json_string_value(v));
    int ok = d && jstr(d, "purpose") && !strcmp(jstr(d, "purpose"), "fine-tune");
    json_decref(d);
    if (!ok)
        http_error(resp, 400, "invalid_request_error", "invalid_file", key,
                   "'%s': no fine-tune file with id '%s' is yours.", key, json_string_value(v));
    return ok;
}

/* The organisation's jobs that are not finished yet (validating, queued or running). */
static int64_t active_jobs(pt_server *s, const char *org) {
    char **docs;
    size_t n;
    if (pt_store_doc_list(s->store, C_JOBS, org, NULL, NULL, MAX_JOBS_SCAN, &docs, &n, NULL)) return 0;
    int64_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_loads(docs[i], 0, NULL);
        if (d && !terminal(jstr(d, "status"))) k++;
        json_decref(d);
    }
    pt_store_free_list(docs, n);
    return k;
}

/* 1 if every field of a job-create body is one of OpenAI's that this server takes (integrations
 * only empty: none are implemented); else 0 with a 400 naming the first that is not. */
static int job_fields_ok(json_t *b, http_resp *resp) {
    static const char *const known[] = {"model", "training_file", "validation_file", "hyperparameters", "suffix",
                                        "seed", "method", "metadata", "integrations"};
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) {
        size_t i = 0, n = sizeof known / sizeof known[0];
        while (i < n && strcmp(known[i], k)) i++;
        if (i == n) {
            http_error(resp, 400, "invalid_request_error", "unknown_parameter", k, "Unknown parameter: '%s'.", k);
            return 0;
        }
        if (!strcmp(k, "integrations") && !json_is_null(v) && !(json_is_array(v) && !json_array_size(v))) {
            http_error(resp, 400, "invalid_request_error", "unsupported_parameter", k,
                       "Unsupported parameter: this server runs no integrations; leave 'integrations' out or empty.");
            return 0;
        }
    }
    return 1;
}

static int r_job_create(pt_server *s, call *c, http_resp *resp) {
    ft_state *st = s->ft;
    json_t *b = srv_body_json(c, resp);
    if (!b) return HTTP_DONE;
    json_t *job = NULL, *hp = json_object();
    const char *model = jstr(b, "model");
    if (!job_fields_ok(b, resp)) goto out;
    if (!model || !*model) {
        http_error(resp, 400, "invalid_request_error", "invalid_value", "model", "'model' is required.");
        goto out;
    }
    if (!strncmp(model, "ft:", 3)) {
        http_error(resp, 400, "invalid_request_error", "model_not_supported", "model",
                   "Fine-tuning a fine-tuned model is not supported; name its base model.");
        goto out;
    }
    json_t *method = json_object_get(b, "method"), *h = json_object_get(b, "hyperparameters");
    if (method && !json_is_null(method)) {
        const char *type = jstr(method, "type");
        if (!json_is_object(method) || !type || strcmp(type, "supervised")) {
            http_error(resp, 400, "invalid_request_error", "invalid_value", "method.type",
                       "Only method type 'supervised' is supported.");
            goto out;
        }
        json_t *mh = json_object_get(json_object_get(method, "supervised"), "hyperparameters");
        if (mh) h = mh;
    }
    if (h && !json_is_null(h) && !json_is_object(h)) {
        http_error(resp, 400, "invalid_request_error", "invalid_value", "hyperparameters",
                   "'hyperparameters' must be an object.");
        goto out;
    }
    if (h && json_is_object(h)) {
        const char *k;
        json_t *v;
        json_object_foreach(h, k, v) {
            if (strcmp(k, "n_epochs") && strcmp(k, "batch_size") && strcmp(k, "learning_rate_multiplier")) {
                http_error(resp, 400, "invalid_request_error", "invalid_value", "hyperparameters",
                           "Unknown hyperparameter '%s' (n_epochs, batch_size, learning_rate_multiplier).", k);
                goto out;
            }
        }
    }
    if (!hyper(h, "n_epochs", 1, 50, 1, hp, resp) || !hyper(h, "batch_size", 1, 256, 1, hp, resp) ||
        !hyper(h, "learning_rate_multiplier", 1e-6, 100, 0, hp, resp))
        goto out;
    json_t *suffix = json_object_get(b, "suffix");
    const char *sfx = "";
    if (suffix && !json_is_null(suffix)) {
        sfx = json_string_value(suffix);
        int ok = sfx && strlen(sfx) <= 40;
        for (const char *p = sfx; ok && *p; p++) ok = isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.';
        if (!ok) {
            http_error(resp, 400, "invalid_request_error", "invalid_value", "suffix",
                       "'suffix' must be up to 40 characters of letters, digits, '-', '_' and '.'.");
            goto out;
        }
    }
    json_t *seedv = json_object_get(b, "seed");
    int64_t seed;
    if (seedv && !json_is_null(seedv)) {
        if (!json_is_integer(seedv) || json_integer_value(seedv) < 0 || json_integer_value(seedv) > 2147483647) {
            http_error(resp, 400, "invalid_request_error", "invalid_value", "seed",
                       "'seed' must be an integer from 0 to 2147483647.");
            goto out;
        }
        seed = json_integer_value(seedv);
    } else {
        seed = (int64_t)(randombytes_random() & 0x7fffffff);
    }
    json_t *meta = json_object_get(b, "metadata");
    if (meta && !json_is_null(meta)) {
        int ok = json_is_object(meta) && json_object_size(meta) <= 16;
        const char *k;
        json_t *v;
        if (ok)
            json_object_foreach(meta, k, v) ok &= strlen(k) <= 64 && json_is_string(v) && json_string_length(v) <= 512;
        if (!ok) {
            http_error(resp, 400, "invalid_request_error", "invalid_value", "metadata",
                       "'metadata' must be an object of up to 16 string values (keys up to 64, values up to 512 "
                       "characters).");
            goto out;
        }
    }
    job_id id;
    new_id("ftjob", id);
    char ftname[200];
    int fl = snprintf(ftname, sizeof ftname, "ft:%s:%s:%s:%s", model, c->key.org, sfx, id);
    if (fl < 0 || fl >= 128 - 16) { /* room for ":ckpt-step-N" in the completion path's buffers */
        http_error(resp, 400, "invalid_request_error", "invalid_value", "suffix",
                   "The fine-tuned model's name would be too long; use a shorter suffix.");
        goto out;
    }
    /* The decision: `finetune` on the base model, with the organisation's unfinished jobs
     * counted against concurrent_finetune_jobs. Under st->mu so two creations cannot both
     * take the last slot. */
    pthread_mutex_lock(&st->mu);
    pt_usage u = pt_usage_none();
    u.running_finetune_jobs = active_jobs(s, c->key.org);
    if (!srv_decide(s, c, model, NULL, PT_CAP_FINETUNE, &u, resp)) {
        pthread_mutex_unlock(&st->mu);
        goto out;
    }
    if (!job_file(s, c, b, "training_file", 1, resp) || !job_file(s, c, b, "validation_file", 0, resp)) {
        pthread_mutex_unlock(&st->mu);
        goto out;
    }
    const pt_config *cfg = srv_model_config(s, model);
    if (!cfg || cfg->arch != PT_ARCH_LLAMA) {
        pthread_mutex_unlock(&st->mu);
        http_error(resp, 400, "invalid_request_error", "model_not_available", "model",
                   cfg ? "The model '%s' is not a Llama-architecture model; LoRA fine-tuning needs one."
                       : "The model '%s' is not served by this server, so it cannot be fine-tuned here.",
                   model);
        goto out;
    }
    int64_t now = pt_unix_time();
    json_t *vf = json_object_get(b, "validation_file");
    job = json_pack("{s:s, s:s, s:I, s:n, s:s, s:n, s:s, s:s, s:n, s:O, s:s, s:O, s:[], s:n, s:I, s:n, s:O, s:[], "
                    "s:O, s:{s:s, s:{s:O}}}",
                    "id", id, "object", "fine_tuning.job", "created_at", (json_int_t)now, "finished_at", "model", model,
                    "fine_tuned_model", "organization_id", c->key.org, "status", "validating_files", "error",
                    "hyperparameters", hp, "training_file", jstr(b, "training_file"), "validation_file",
                    vf ? vf : json_null(), "result_files", "trained_tokens", "seed", (json_int_t)seed,
                    "estimated_finish", "metadata", meta ? meta : json_null(), "integrations", "user_provided_suffix",
                    suffix ? suffix : json_null(), "method", "type", "supervised", "supervised", "hyperparameters", hp);
    json_object_set_new(job, "_parity", json_pack("{s:s}", "model_name", ftname));
    int rc = doc_put(s, C_JOBS, id, c->key.org, NULL, job);
    if (!rc) rc = q_push(&st->valq, &st->nval, &st->capval, id);
    if (!rc) {
        add_event(s, id, c->key.org, "info", "message", NULL, "Created fine-tuning job: %s", id);
        add_event(s, id, c->key.org, "info", "message", NULL, "Validating training file: %s",
                  jstr(b, "training_file"));
        pthread_cond_signal(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    if (rc) http_error(resp, 500, "server_error", NULL, NULL, "storing the job failed");
    else http_json(resp, 200, public_obj(job));
out:
    json_decref(job);
    json_decref(hp);
    json_decref(b);
    return HTTP_DONE;
}

static int r_jobs_list(pt_server *s, call *c, http_resp *resp) {
    size_t limit;
    const char *after;
    if (!list_params(c, resp, &limit, &after)) return HTTP_DONE;
    allow_owner(c);
    return list_answer(s, resp, C_JOBS, c->key.org, NULL, after, limit, 0);
}

static int r_job_get(pt_server *s, call *c, http_resp *resp) {
    ft_state *st = s->ft;
    pthread_mutex_lock(&st->mu);
    json_t *d = doc_get_own(s, c, C_JOBS, c->params[0]);
    pthread_mutex_unlock(&st->mu);
    if (!d) return not_found(resp, "fine-tuning job", c->params[0], "fine_tuning_job_id");
    allow_owner(c);
    http_json(resp, 200, public_obj(d));
    json_decref(d);
    return HTTP_DONE;
}

static int r_job_cancel(pt_server *s, call *c, http_resp *resp) {
    ft_state *st = s->ft;
    pthread_mutex_lock(&st->mu);
    json_t *d = doc_get_own(s, c, C_JOBS, c->params[0]);
    if (!d) {
        pthread_mutex_unlock(&st->mu);
        return not_found(resp, "fine-tuning job", c->params[0], "fine_tuning_job_id");
    }
    allow_owner(c);
    const char *id = c->params[0];
    if (terminal(jstr(d, "status"))) {
        pthread_mutex_unlock(&st->mu);
        http_error(resp, 400, "invalid_request_error", "job_not_cancellable", NULL,
                   "The job %s has already finished (%s).", id, jstr(d, "status"));
        json_decref(d);
        return HTTP_DONE;
    }
    json_object_set_new(d, "status", json_string("cancelled"));
    json_object_set_new(d, "finished_at", json_integer(pt_unix_time()));
    json_object_set_new(d, "estimated_finish", json_null());
    q_remove(st->valq, &st->nval, id);
    q_remove(st->trainq, &st->ntrain, id);
    if (!strcmp(st->running, id)) st->cancel = 1; /* the trainer stops before its next step */
    doc_put(s, C_JOBS, id, c->key.org, NULL, d);
    add_event(s, id, c->key.org, "info", "message", NULL, "Fine-tuning job cancelled");
    pthread_mutex_unlock(&st->mu);
    http_json(resp, 200, public_obj(d));
    json_decref(d);
    return HTTP_DONE;
}

static int r_job_sub(pt_server *s, call *c, http_resp *resp, const char *coll) {
    size_t limit;
    const char *after;
    if (!list_params(c, resp, &limit, &after)) return HTTP_DONE;
    json_t *d = doc_get_own(s, c, C_JOBS, c->params[0]);
    if (!d) return not_found(resp, "fine-tuning job", c->params[0], "fine_tuning_job_id");
    json_decref(d);
    allow_owner(c);
    return list_answer(s, resp, coll, c->key.org, c->params[0], after, limit, !strcmp(coll, C_CKPTS));
}

static int r_job_events(pt_server *s, call *c, http_resp *resp) { return r_job_sub(s, c, resp, C_EVENTS); }
static int r_job_checkpoints(pt_server *s, call *c, http_resp *resp) { return r_job_sub(s, c, resp, C_CKPTS); }

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
            rc = validate_jsonl(data, len, fid, tok, max_len, &ex, &tk, &err);
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
            doc_put(s, C_JOBS, id, org, NULL, now_doc);
            add_event(s, id, org, "info", "message", NULL,
                      "Files validated (%zu examples); %lld steps of %lld examples; moving job to queued state",
                      examples, (long long)steps, (long long)batch);
            q_push(&st->trainq, &st->ntrain, &st->captrain, id);
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
    add_event(r->s, r->id, r->org, "info", "metrics",
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
        doc_put(r->s, C_JOBS, r->id, r->org, NULL, d);
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
    doc_put(s, C_JOBS, id, org, NULL, job);
    add_event(s, id, org, "info", "message", NULL, "Fine-tuning job started");
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
            new_id("file", fid);
            char *fp = file_path(st, fid);
            json_t *rf = NULL;
            if (fp && !pt_write_atomic(fp, r.csv.data, r.csv.len, 0600, NULL)) {
                rf = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:n, s:n}", "id", fid, "object", "file", "bytes",
                               (json_int_t)r.csv.len, "created_at", (json_int_t)pt_unix_time(), "filename",
                               "step_metrics.csv", "purpose", "fine-tune-results", "status", "processed",
                               "status_details", "expires_at");
                doc_put(s, C_FILES, fid, org, NULL, rf);
            }
            free(fp);
            const char *name = jstr(json_object_get(d, "_parity"), "model_name");
            char ckname[200];
            snprintf(ckname, sizeof ckname, "%s:ckpt-step-%lld", name, (long long)res.steps);
            job_id cid;
            new_id("ftckpt", cid);
            json_t *ck = json_pack("{s:s, s:s, s:I, s:s, s:s, s:I, s:{s:I, s:f}}", "object",
                                   "fine_tuning.job.checkpoint", "id", cid, "created_at", (json_int_t)pt_unix_time(),
                                   "fine_tuned_model_checkpoint", ckname, "fine_tuning_job_id", id, "step_number",
                                   (json_int_t)res.steps, "metrics", "step", (json_int_t)res.steps, "train_loss",
                                   res.last_loss);
            doc_put(s, C_CKPTS, cid, org, id, ck);
            json_decref(ck);
            json_object_set_new(json_object_get(d, "_parity"), "checkpoint_model", json_string(ckname));
            json_object_set_new(d, "status", json_string("succeeded"));
            json_object_set_new(d, "fine_tuned_model", json_string(name));
            json_object_set_new(d, "finished_at", json_integer(pt_unix_time()));
            json_object_set_new(d, "estimated_finish", json_null());
            json_object_set_new(d, "trained_tokens", json_integer(res.trained_tokens));
            json_object_set_new(d, "result_files", rf ? json_pack("[s]", fid) : json_array());
            json_decref(rf);
            doc_put(s, C_JOBS, id, org, NULL, d);
            ft_model_add(st, d, org);
            add_event(s, id, org, "info", "message", NULL, "New fine-tuned model created: %s", name);
            add_event(s, id, org, "info", "message", NULL,
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
            else if (!strcmp(status, "validating_files")) rc = q_push(&st->valq, &st->nval, &st->capval, id);
            else if (!strcmp(status, "queued")) rc = q_push(&st->trainq, &st->ntrain, &st->captrain, id);
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

const route pt_ft_routes[] = {
    {"POST", "/v1/files", AUTH_KEY, r_file_upload, "files", 1, 0},
    {"GET", "/v1/files", AUTH_KEY, r_files_list, "files", 1, 0},
    {"DELETE", "/v1/files/{}", AUTH_KEY, r_file_delete, "files", 1, 0},
    {"GET", "/v1/files/{}", AUTH_KEY, r_file_get, "files", 1, 0},
    {"GET", "/v1/files/{}/content", AUTH_KEY, r_file_content, "files", 1, 0},
    {"POST", "/v1/fine_tuning/jobs", AUTH_KEY, r_job_create, "fine_tuning_jobs", 1, 0},
    {"GET", "/v1/fine_tuning/jobs", AUTH_KEY, r_jobs_list, "fine_tuning_jobs", 1, 0},
    {"GET", "/v1/fine_tuning/jobs/{}", AUTH_KEY, r_job_get, "fine_tuning_jobs", 1, 0},
    {"POST", "/v1/fine_tuning/jobs/{}/cancel", AUTH_KEY, r_job_cancel, "fine_tuning_jobs", 1, 0},
    {"GET", "/v1/fine_tuning/jobs/{}/events", AUTH_KEY, r_job_events, "fine_tuning_jobs", 1, 0},
    {"GET", "/v1/fine_tuning/jobs/{}/checkpoints", AUTH_KEY, r_job_checkpoints, "fine_tuning_jobs", 1, 0},
};
const size_t pt_n_ft_routes = sizeof pt_ft_routes / sizeof pt_ft_routes[0];
