/* The OpenAI files and fine-tuning endpoints: POST/GET/DELETE /v1/files, GET
 * /v1/files/{id}/content, /v1/fine_tuning/jobs (create, list, retrieve, cancel, events,
 * checkpoints). The jobs themselves run on server_finetune.c's worker (finetune.h: its state,
 * documents and queues). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/json.h"
#include "common/util.h"
#include "engine/config.h"
#include "server/api.h"
#include "server/finetune.h"
#include "server/multipart.h"
#include "server/registry.h"
#include "train/finetune.h"

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
        if (d) json_array_append_new(a, ft_public_obj(d));
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
    if (ft_validate_jsonl(file->data, file->len, file->filename, tok, MAX_LEN, &examples, &tokens, &err)) {
        http_error(resp, 400, "invalid_request_error", "invalid_file", "file", "%s", err.msg);
        return HTTP_DONE;
    }
    job_id id;
    ft_new_id("file", id);
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
    if (ft_doc_put(s, C_FILES, id, c->key.org, NULL, o)) {
        json_decref(o);
        http_error(resp, 500, "server_error", NULL, NULL, "storing the file's record failed");
        return HTTP_DONE;
    }
    http_json(resp, 200, ft_public_obj(o));
    json_decref(o);
    return HTTP_DONE;
}

static int r_file_get(pt_server *s, call *c, http_resp *resp) {
    json_t *d = ft_doc_get_own(s, c, C_FILES, c->params[0]);
    if (!d) return not_found(resp, "file", c->params[0], "file_id");
    allow_owner(c);
    http_json(resp, 200, ft_public_obj(d));
    json_decref(d);
    return HTTP_DONE;
}

static int r_file_content(pt_server *s, call *c, http_resp *resp) {
    ft_state *st = s->ft;
    json_t *d = ft_doc_get_own(s, c, C_FILES, c->params[0]);
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
    json_t *d = ft_doc_get_own(s, c, C_FILES, c->params[0]);
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
    json_t *d = ft_doc_get_own(s, c, C_FILES, json_string_value(v));
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
    ft_new_id("ftjob", id);
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
    int rc = ft_doc_put(s, C_JOBS, id, c->key.org, NULL, job);
    if (!rc) rc = ft_q_push(&st->valq, &st->nval, &st->capval, id);
    if (!rc) {
        ft_add_event(s, id, c->key.org, "info", "message", NULL, "Created fine-tuning job: %s", id);
        ft_add_event(s, id, c->key.org, "info", "message", NULL, "Validating training file: %s",
                  jstr(b, "training_file"));
        pthread_cond_signal(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    if (rc) http_error(resp, 500, "server_error", NULL, NULL, "storing the job failed");
    else http_json(resp, 200, ft_public_obj(job));
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
    json_t *d = ft_doc_get_own(s, c, C_JOBS, c->params[0]);
    pthread_mutex_unlock(&st->mu);
    if (!d) return not_found(resp, "fine-tuning job", c->params[0], "fine_tuning_job_id");
    allow_owner(c);
    http_json(resp, 200, ft_public_obj(d));
    json_decref(d);
    return HTTP_DONE;
}

static int r_job_cancel(pt_server *s, call *c, http_resp *resp) {
    ft_state *st = s->ft;
    pthread_mutex_lock(&st->mu);
    json_t *d = ft_doc_get_own(s, c, C_JOBS, c->params[0]);
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
    ft_q_remove(st->valq, &st->nval, id);
    ft_q_remove(st->trainq, &st->ntrain, id);
    if (!strcmp(st->running, id)) st->cancel = 1; /* the trainer stops before its next step */
    ft_doc_put(s, C_JOBS, id, c->key.org, NULL, d);
    ft_add_event(s, id, c->key.org, "info", "message", NULL, "Fine-tuning job cancelled");
    pthread_mutex_unlock(&st->mu);
    http_json(resp, 200, ft_public_obj(d));
    json_decref(d);
    return HTTP_DONE;
}

static int r_job_sub(pt_server *s, call *c, http_resp *resp, const char *coll) {
    size_t limit;
    const char *after;
    if (!list_params(c, resp, &limit, &after)) return HTTP_DONE;
    json_t *d = ft_doc_get_own(s, c, C_JOBS, c->params[0]);
    if (!d) return not_found(resp, "fine-tuning job", c->params[0], "fine_tuning_job_id");
    json_decref(d);
    allow_owner(c);
    return list_answer(s, resp, coll, c->key.org, c->params[0], after, limit, !strcmp(coll, C_CKPTS));
}

static int r_job_events(pt_server *s, call *c, http_resp *resp) { return r_job_sub(s, c, resp, C_EVENTS); }
static int r_job_checkpoints(pt_server *s, call *c, http_resp *resp) { return r_job_sub(s, c, resp, C_CKPTS); }

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
