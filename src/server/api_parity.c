/* parity's own endpoints (no model runs): /healthz, /metrics, the logs' tiles and checkpoints
 * (/log/...), receipts, /v1/access, /v1/queue, the admin endpoints (keys, policy) and the
 * parity report (/v1/parity, /parity). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/json.h"
#include "common/util.h"
#include "gap/gap.h"
#include "gap/measure.h"
#include "policy/history.h"
#include "server/api.h"
#include "server/backend.h"

/* Endpoints that need no model -------------------------------------------------------------- */

static int r_healthz(pt_server *s, call *c, http_resp *resp) {
    (void)c;
    http_json(resp, 200, json_pack("{s:s, s:I, s:I, s:I, s:I}", "status", "ok", "policy_revision",
                                   (json_int_t)c->pol->seq, "policy_log_size", (json_int_t)tlog_size(s->policy_log),
                                   "audit_log_size", (json_int_t)tlog_size(s->audit_log), "audit_receipts",
                                   (json_int_t)tlog_journaled_size(s->audit_log)));
    return HTTP_DONE;
}

static void gauges(void *ctx, pt_buf *o) {
    pt_server *s = ctx;
    pt_buf_printf(o,
                  "# HELP parity_log_size Entries in a transparency log.\n# TYPE parity_log_size gauge\n"
                  "parity_log_size{log=\"policy\"} %llu\nparity_log_size{log=\"audit\"} %llu\n"
                  "# HELP parity_receipts_pending Audit entries queued and not yet durable.\n"
                  "# TYPE parity_receipts_pending gauge\nparity_receipts_pending %zu\n"
                  "# HELP parity_receipts_unpublished Audit entries durable in the journal, not yet under a "
                  "checkpoint.\n# TYPE parity_receipts_unpublished gauge\nparity_receipts_unpublished %zu\n",
                  (unsigned long long)tlog_size(s->policy_log), (unsigned long long)tlog_size(s->audit_log),
                  pt_receipts_pending(s->receipts), tlog_journal_pending(s->audit_log));
}

static int r_metrics(pt_server *s, call *c, http_resp *resp) {
    (void)c;
    pt_metrics_render(s->metrics, &resp->body, gauges, s);
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return HTTP_DONE;
}

/* GET /log/{policy|audit}/<path>: the static C2SP tlog-tiles files, as any static web server
 * would publish them. */
static int r_log_file(pt_server *s, call *c, http_resp *resp) {
    const char *name = c->params[0], *rest = c->params[1];
    if (strcmp(name, "policy") && strcmp(name, "audit")) {
        http_error(resp, 404, "invalid_request_error", "not_found", NULL, "No log named '%s' (policy, audit).", name);
        return HTTP_DONE;
    }
    /* Only the published layout: checkpoint, tile/..., cosigned/..., revisions/<hex>.json. */
    int ok = *rest && rest[0] != '/' && !strstr(rest, "..") && !strstr(rest, "//") &&
             (!strcmp(rest, "checkpoint") || !strncmp(rest, "tile/", 5) || !strncmp(rest, "cosigned/", 9) ||
              (!strcmp(name, "policy") && !strncmp(rest, "revisions/", 10)));
    for (const char *p = rest; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || *p == '/' || *p == '.' || *p == '_' || *p == '-';
    char rel[600];
    snprintf(rel, sizeof rel, "log/%s/%s", name, rest);
    char *path = ok ? pt_path_join(s->data_dir, rel) : NULL;
    char *data = NULL;
    size_t len = 0;
    pt_err err;
    if (!path || pt_read_file(path, 16u << 20, &data, &len, &err)) {
        http_error(resp, 404, "invalid_request_error", "not_found", NULL, "/log/%s/%s: not found", name, rest);
        free(path);
        return HTTP_DONE;
    }
    free(path);
    pt_buf_append(&resp->body, data, len);
    free(data);
    if (!strcmp(rest, "checkpoint") || !strncmp(rest, "cosigned/", 9)) { /* the index grows */
        resp->content_type = "text/plain; charset=utf-8";
        http_set_header(resp, "Cache-Control", "no-store");
    } else if (!strncmp(rest, "revisions/", 10)) {
        resp->content_type = "application/json";
        http_set_header(resp, "Cache-Control", "public, max-age=31536000, immutable");
    } else {
        resp->content_type = "application/octet-stream";
        /* Full tiles never change; partial ones are replaced as the log grows. */
        http_set_header(resp, "Cache-Control", strstr(rest, ".p/") ? "no-store" : "public, max-age=31536000, immutable");
    }
    return HTTP_DONE;
}

static json_t *b64(const uint8_t *p, size_t n) {
    char out[128];
    sodium_bin2base64(out, sizeof out, p, n, sodium_base64_VARIANT_ORIGINAL);
    return json_string(out);
}

/* A receipt's private part as JSON. */
static json_t *private_json(const pt_receipt_private *pv) {
    char t[21], tm[32], salt[65], rq[65], rs[65];
    pt_format_time(pv->time_ms / 1000, t);
    snprintf(tm, sizeof tm, "%.19s.%03dZ", t, (int)(pv->time_ms % 1000));
    pt_hex(pv->salt, 32, salt);
    pt_hex(pv->request_sha256, 32, rq);
    pt_hex(pv->response_sha256, 32, rs);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "org", pv->org, "key_id", pv->key_id, "time", tm, "salt",
                          salt, "request_sha256", rq, "response_sha256", rs);
    if (pv->grant[0]) json_object_set_new(o, "grant", json_string(pv->grant));
    return o;
}

/* GET /v1/receipts/{index}: the audit entry and its inclusion proof against the current audit
 * checkpoint (which is returned too, so the client can check its signature). To the entry's
 * own organisation and to admins also its private part ("view":"full"); to others only the
 * public entry ("view":"public"), which is what the public tiles hold anyway. */
static int r_receipt(pt_server *s, call *c, http_resp *resp) {
    c->decision_allow = 1; /* any key may ask; what it is shown depends on whose receipt it is */
    uint64_t index;
    if (pt_parse_u64(c->params[0], &index)) {
        http_error(resp, 400, "invalid_request_error", "invalid_index", "index", "'%s' is not a receipt index.",
                   c->params[0]);
        return HTTP_DONE;
    }
    pt_err err;
    char *cp;
    size_t cplen;
    /* A receipt handed out and not yet written (async mode): wait for the writer; journaled
     * and not yet published: publish now, so that its proof can be served. */
    if (index >= tlog_size(s->audit_log) && pt_receipts_flush(s->receipts, index + 1)) {
        http_error(resp, 503, "server_error", "audit_unavailable", NULL, "The audit log is not accepting entries.");
        return HTTP_DONE;
    }
    if (index >= tlog_size(s->audit_log) && index < tlog_journaled_size(s->audit_log) &&
        tlog_integrate(s->audit_log, &err)) {
        http_error(resp, 500, "server_error", NULL, NULL, "%s", err.msg);
        return HTTP_DONE;
    }
    if (tlog_checkpoint(s->audit_log, &cp, &cplen, &err)) {
        http_error(resp, 500, "server_error", NULL, NULL, "%s", err.msg);
        return HTTP_DONE;
    }
    /* The proof must be for the checkpoint we return: read its size from its second line. */
    uint64_t size = 0;
    const char *nl = strchr(cp, '\n');
    char num[32] = "";
    if (nl) sscanf(nl + 1, "%31[0-9]", num);
    if (pt_parse_u64(num, &size) || index >= size) {
        free(cp);
        http_error(resp, 404, "invalid_request_error", "receipt_not_found", "index",
                   "No receipt %llu in the audit log (size %llu).", (unsigned long long)index, (unsigned long long)size);
        return HTTP_DONE;
    }
    uint8_t *data, proof[TLOG_MAX_PROOF][TLOG_HASH_SIZE], leaf[TLOG_HASH_SIZE];
    size_t len, n;
    if (tlog_entry(s->audit_log, index, &data, &len, &err) ||
        tlog_prove_inclusion(s->audit_log, index, size, proof, &n, leaf, &err)) {
        free(cp);
        http_error(resp, 500, "server_error", NULL, NULL, "%s", err.msg);
        return HTTP_DONE;
    }
    json_t *entry = json_loadb((const char *)data, len, 0, NULL);
    json_t *pr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(pr, b64(proof[i], TLOG_HASH_SIZE));
    pt_receipt_private pv;
    const char *type = json_string_value(json_object_get(entry, "type"));
    int full = type && !strcmp(type, "request") && !pt_receipts_private_get(s->receipts, index, &pv) &&
               (c->key.admin || !strcmp(pv.org, c->key.org));
    json_t *o = json_pack("{s:I, s:s, s:o, s:o, s:I, s:o, s:s}", "index", (json_int_t)index, "view",
                          full ? "full" : "public", "entry", entry ? entry : json_stringn((const char *)data, len),
                          "leaf_hash", b64(leaf, TLOG_HASH_SIZE), "tree_size", (json_int_t)size, "inclusion_proof", pr,
                          "checkpoint", cp);
    if (full) json_object_set_new(o, "private", private_json(&pv));
    free(data);
    free(cp);
    http_json(resp, 200, o);
    return HTTP_DONE;
}

static json_t *limits_json(const pt_limits *l) {
    json_t *o = json_object();
#define LIM(k, v) json_object_set_new(o, k, (v) == PT_UNLIMITED ? json_null() : json_integer(v))
    LIM("requests_per_minute", l->requests_per_minute);
    LIM("tokens_per_day", l->tokens_per_day);
    LIM("concurrent_finetune_jobs", l->concurrent_finetune_jobs);
    LIM("logprobs_top_k", l->logprobs_top_k);
#undef LIM
    return o;
}

static json_t *caps_json(pt_capset caps) {
    json_t *a = json_array();
    for (int i = 0; i < PT_CAP_COUNT; i++)
        if (caps & (1u << i)) json_array_append_new(a, json_string(pt_cap_name((pt_cap)i)));
    return a;
}

/* GET /v1/access: what the caller may do, per model, now, and what is left of its quotas. */
static int r_access(pt_server *s, call *c, http_resp *resp) {
    c->decision_allow = 1; /* every key may read its own access */
    const pt_policy *p = c->pol->p;
    int64_t now = pt_unix_time();
    const pt_org *org = pt_policy_org(p, c->key.org);
    json_t *models = json_array();
    for (size_t i = 0; i < p->n_models; i++) {
        pt_capset caps;
        pt_limits lim;
        if (!pt_policy_effective(p, c->key.org, p->models[i].id, now, &caps, &lim)) continue;
        json_t *grants = json_array();
        for (size_t g = 0; g < p->n_grants; g++) {
            const pt_grant *gr = &p->grants[g];
            if (strcmp(gr->org, c->key.org) || !pt_policy_pattern_match(gr->model, p->models[i].id)) continue;
            char f[21], u[21];
            json_array_append_new(grants, json_pack("{s:s, s:s?, s:o, s:o, s:o}", "id", gr->id, "tier", gr->tier,
                                                    "capabilities", caps_json(gr->caps), "from",
                                                    gr->from == PT_TIME_MIN ? json_null() : json_string(pt_format_time(gr->from, f)),
                                                    "until",
                                                    gr->until == PT_TIME_MAX ? json_null() : json_string(pt_format_time(gr->until, u))));
        }
        pt_rl_status rq, tk;
        pt_ratelimit_peek_requests(s->rl, c->key.org, p->models[i].id, lim.requests_per_minute, now, &rq);
        pt_ratelimit_tokens_ok(s->rl, c->key.org, p->models[i].id, lim.tokens_per_day > 0 ? lim.tokens_per_day : 0, 0,
                               now, &tk);
        json_t *rem = json_object();
        json_object_set_new(rem, "tokens_today", lim.tokens_per_day == PT_UNLIMITED ? json_null() : json_integer(tk.remaining));
        json_object_set_new(rem, "requests_this_minute",
                            lim.requests_per_minute == PT_UNLIMITED ? json_null() : json_integer(rq.remaining));
        json_object_set_new(rem, "tokens_used_today",
                            json_integer(pt_ratelimit_tokens_used(s->rl, c->key.org, p->models[i].id, now)));
        json_array_append_new(models, json_pack("{s:s, s:o, s:o, s:o, s:o}", "model", p->models[i].id, "capabilities",
                                                caps_json(caps), "limits", limits_json(&lim), "remaining", rem,
                                                "grants", grants));
    }
    /* How the public audit log names the caller: its organisation finds its entries by these. */
    char op[33], kp[33];
    pt_receipts_pseudonyms(s->receipts, c->key.org, c->key.id, op, kp);
    json_t *audit = json_pack("{s:b, s:s, s:s}", "public_usage", org && org->public_usage, "org_pseudonym", op,
                              "key_pseudonym", kp);
    http_json(resp, 200,
              json_pack("{s:s, s:s, s:s, s:b, s:I, s:s, s:o, s:o}", "organization", c->key.org, "kind",
                        org ? pt_org_kind_name(org->kind) : "unknown", "key_id", c->key.id, "admin", c->key.admin,
                        "policy_revision", (json_int_t)c->pol->seq, "policy_digest", c->pol->digest, "audit", audit,
                        "models", models));
    return HTTP_DONE;
}

/* GET /v1/queue: depth per model and where the caller's requests are. */
typedef struct queue_list {
    const char *key_id;
    json_t *mine;
} queue_list;

static void queue_mine(void *ctx, const char *job_id, const char *owner, int pos) {
    queue_list *q = ctx;
    if (strcmp(owner, q->key_id)) return;
    json_array_append_new(q->mine, pos >= 0 ? json_pack("{s:s, s:i}", "id", job_id, "position", pos)
                                            : json_pack("{s:s, s:s}", "id", job_id, "position", "running"));
}

static int r_queue(pt_server *s, call *c, http_resp *resp) {
    json_t *a = json_array();
    srv_backend *b = srv_backend_local(s);
    srv_model_info info;
    for (size_t i = 0; b && b->ops->model_at(b, i, &info); i++) {
        queue_list q = {c->key.id, json_array()};
        int depth, active;
        b->ops->jobs(b, info.id, &depth, &active, queue_mine, &q);
        json_array_append_new(a, json_pack("{s:s, s:i, s:i, s:i, s:o}", "model", info.id, "queued", depth, "running",
                                           active, "limit", info.queue_limit, "yours", q.mine));
    }
    c->decision_allow = 1;
    http_json(resp, 200, json_pack("{s:s, s:o}", "object", "queue", "data", a));
    return HTTP_DONE;
}

/* Admin endpoints ------------------------------------------------------------------------------ */

/* POST /v1/admin/keys {"organization": ORG, "admin": false} → the new key, shown once. */
static int r_admin_key_create(pt_server *s, call *c, http_resp *resp) {
    json_t *b = srv_body_json(c, resp);
    if (!b) return HTTP_DONE;
    const char *org = json_string_value(json_object_get(b, "organization"));
    json_t *adm = json_object_get(b, "admin");
    if (!org || (adm && !json_is_boolean(adm))) {
        json_decref(b);
        http_error(resp, 400, "invalid_request_error", "invalid_body", "organization",
                   "Send {\"organization\": \"<org id>\", \"admin\": false}.");
        return HTTP_DONE;
    }
    if (!pt_policy_org(c->pol->p, org)) {
        http_error(resp, 400, "invalid_request_error", "unknown_organization", "organization",
                   "Organisation '%s' is not in the current policy (revision %lld).", org, (long long)c->pol->seq);
        json_decref(b);
        return HTTP_DONE;
    }
    char key[PT_KEY_MAX_LEN];
    pt_key_record rec;
    uint64_t idx;
    pt_err err;
    int rc = pt_keys_issue(s->store, s->policy_log, org, json_is_true(adm), key, &rec, &idx, &err);
    if (rc == PT_EINVAL) { /* e.g. an organisation id too long to bind a key to */
        http_error(resp, 400, "invalid_request_error", "invalid_organization", "organization", "%s", err.msg);
    } else if (rc) {
        http_error(resp, 500, "server_error", NULL, NULL, "%s", err.msg);
    } else {
        http_json(resp, 201, json_pack("{s:s, s:s, s:s, s:b, s:I}", "key", key, "key_id", rec.id, "organization", org,
                                       "admin", rec.admin, "log_index", (json_int_t)idx));
        sodium_memzero(key, sizeof key);
    }
    json_decref(b);
    c->decision_allow = 1;
    return HTTP_DONE;
}

/* POST /v1/admin/keys/{id}/revoke */
static int r_admin_key_revoke(pt_server *s, call *c, http_resp *resp) {
    uint64_t idx;
    pt_err err;
    int rc = pt_keys_revoke(s->store, s->policy_log, c->params[0], &idx, &err);
    if (rc == PT_ENOTFOUND || rc == PT_EEXIST)
        http_error(resp, rc == PT_ENOTFOUND ? 404 : 409, "invalid_request_error", NULL, "id", "%s", err.msg);
    else if (rc)
        http_error(resp, 500, "server_error", NULL, NULL, "%s", err.msg);
    else
        http_json(resp, 200, json_pack("{s:s, s:b, s:I}", "key_id", c->params[0], "revoked", 1, "log_index",
                                       (json_int_t)idx));
    c->decision_allow = 1;
    return HTTP_DONE;
}

/* GET /v1/admin/keys: every key's id, organisation and state (never the key). */
static int r_admin_keys(pt_server *s, call *c, http_resp *resp) {
    pt_key_record *keys;
    size_t n;
    pt_err err;
    if (pt_store_key_list(s->store, &keys, &n, &err)) {
        http_error(resp, 500, "server_error", NULL, NULL, "%s", err.msg);
        return HTTP_DONE;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        char t[21];
        json_array_append_new(a, json_pack("{s:s, s:s, s:b, s:s, s:b}", "key_id", keys[i].id, "organization",
                                           keys[i].org, "admin", keys[i].admin, "created",
                                           pt_format_time(keys[i].created, t), "revoked", keys[i].revoked != 0));
    }
    free(keys);
    c->decision_allow = 1;
    http_json(resp, 200, json_pack("{s:s, s:o}", "object", "list", "data", a));
    return HTTP_DONE;
}

/* POST /v1/admin/policy: body = a policy document (YAML or JSON). Validates, diffs against the
 * latest revision, appends it to the policy log and enforces it from its time (at once, unless
 * the latest revision was dated later: pt_policy_apply keeps times in order); models new to
 * the policy whose weights this server holds are loaded before the answer ("models":
 * {"loaded", "not_served"}). */
static int r_admin_policy(pt_server *s, call *c, http_resp *resp) {
    pt_apply_result r;
    pt_err err;
    memset(&r, 0, sizeof r);
    c->decision_allow = 1;
    int rc = pt_policy_apply(s->policy_log, s->data_dir, c->req->body, c->req->body_len, "policy", pt_unix_time(), &r,
                             &err);
    if (rc) {
        http_error(resp, rc == PT_EFORMAT ? 400 : 500, rc == PT_EFORMAT ? "invalid_request_error" : "server_error",
                   rc == PT_EFORMAT ? "invalid_policy" : NULL, NULL, "%s", err.msg);
        return HTTP_DONE;
    }
    json_t *models = NULL;
    if (r.changed) {
        pt_policy *p;
        char digest[72];
        int64_t seq;
        if (pt_policy_current(s->policy_log, s->data_dir, &p, digest, &seq, &err) == PT_OK) {
            /* Load new models first, so that the revision's grants find them served. */
            models = srv_models_sync(s, p);
            pt_policy_free(p);
        } else {
            fprintf(stderr, "parity serve: reloading the applied policy: %s\n", err.msg);
        }
        srv_load_policy(s, &err); /* the revision in force now: this one, unless dated later */
    }
    json_t *o = json_pack("{s:b, s:I, s:s, s:s, s:I, s:o, s:s}", "changed", r.changed, "seq", (json_int_t)r.seq,
                          "digest", r.digest, "prev", r.prev, "log_index", (json_int_t)r.index, "summary",
                          r.summary ? json_incref(r.summary) : json_array(), "message", r.message);
    if (models) json_object_set_new(o, "models", models);
    http_json(resp, r.changed ? 201 : 200, o);
    pt_apply_result_free(&r);
    return HTTP_DONE;
}

/* The parity report ----------------------------------------------------------------------------- */

static int meter_entry(void *ctx, uint64_t index, const uint8_t *data, size_t len) {
    (void)index;
    return pt_gap_meter_add(ctx, data, len) != PT_OK;
}

/* Feeds the audit log's entries from what the meter has seen up to size (under report_mu). */
static int srv_measure_audit(pt_server *s, uint64_t size, pt_err *err) {
    if (!s->meter && !(s->meter = pt_gap_meter_new())) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = tlog_entries(s->audit_log, pt_gap_meter_entries(s->meter), size, meter_entry, s->meter, err);
    if (rc) {
        pt_gap_meter_free(s->meter); /* its counts would skip an entry: start again next time */
        s->meter = NULL;
        return rc == PT_ECANCELLED ? pt_errf(err, PT_ENOMEM, "out of memory measuring the audit log") : rc;
    }
    return PT_OK;
}

/* The parity report, recomputed from the verified policy log whenever the log has grown, at
 * least once a day (lags and windows depend on the date), and when a revision dated later
 * comes into force. When the log or a revision fails to verify there is no report (NULL, the
 * reason in err): never the last one that did. */
static json_t *parity_report(pt_server *s, pt_err *err) {
    pthread_mutex_lock(&s->report_mu);
    uint64_t size = tlog_size(s->policy_log), cosigned = tlog_cosigned_size(s->policy_log);
    int64_t now = pt_unix_time();
    /* A log that fails to verify is verified again at most once a second (or when it grows):
     * /v1/parity needs no key, and each try reads and hashes the whole policy log. */
    if (!s->report && s->report_size == size && pt_now() - s->report_failed_at < 1.0) {
        *err = s->report_err;
        pthread_mutex_unlock(&s->report_mu);
        return NULL;
    }
    /* The audit log's published entries are measured as they come (the meter keeps its counts),
     * at most once a second while it grows: /v1/parity needs no key. */
    uint64_t audit_size = tlog_size(s->audit_log);
    int audit_grew = !s->meter || pt_gap_meter_entries(s->meter) < audit_size;
    if (!s->report || s->report_size != size || s->report_cosigned != cosigned || now >= s->report_until ||
        (audit_grew && pt_now() - s->report_at >= 1.0)) {
        /* The verified, dated history is read again only when the policy log or its cosigned
         * size changed: a day passing or the audit log growing needs only a new report. */
        if (!s->report_hist || s->report_size != size || s->report_cosigned != cosigned) {
            pt_policy_history_free(s->report_hist);
            s->report_hist = NULL;
            char *dir = pt_path_join(s->data_dir, "log/policy");
            pt_policy_history *h = NULL;
            size_t dropped;
            if (!dir) pt_errf(err, PT_ENOMEM, "out of memory");
            else if (pt_policy_history_load(dir, tlog_vkey(s->policy_log), NULL, &h, err) == PT_OK &&
                     /* dated by the policy's witnesses, if it names any */
                     pt_policy_history_date(h, dir, tlog_vkey(s->policy_log), NULL, 0, 0, 0, &dropped, err) == PT_OK)
                s->report_hist = h, h = NULL;
            pt_policy_history_free(h);
            free(dir);
        }
        const pt_policy_history *h = s->report_hist;
        json_t *rep = NULL;
        int64_t until = (now / 86400 + 1) * 86400;
        if (h && srv_measure_audit(s, audit_size, err) == PT_OK)
            rep = pt_gap_report_measured(h->revs, h->n, now, s->meter, err);
        s->report_at = pt_now();
        for (size_t i = 0; rep && i < h->n; i++)
            if (h->revs[i].time > now && h->revs[i].time < until) until = h->revs[i].time;
        json_decref(s->report);
        s->report = rep;
        s->report_size = size;
        s->report_cosigned = cosigned;
        s->report_until = until;
        if (!rep) {
            s->report_err = *err;
            s->report_failed_at = pt_now();
        }
    }
    json_t *r = json_incref(s->report);
    pthread_mutex_unlock(&s->report_mu);
    return r;
}

/* GET /v1/parity: the parity report as JSON; 503 with the reason when the log does not verify. */
static int r_parity_json(pt_server *s, call *c, http_resp *resp) {
    (void)c;
    pt_err err;
    json_t *r = parity_report(s, &err);
    if (!r) {
        http_error(resp, 503, "server_error", "report_unavailable", NULL, "%s", err.msg);
        return HTTP_DONE;
    }
    http_json(resp, 200, r);
    return HTTP_DONE;
}

static void html_text(pt_buf *o, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '<': pt_buf_puts(o, "&lt;"); break;
        case '>': pt_buf_puts(o, "&gt;"); break;
        case '&': pt_buf_puts(o, "&amp;"); break;
        case '"': pt_buf_puts(o, "&quot;"); break;
        default: pt_buf_append(o, s + i, 1);
        }
    }
}

/* Inline Markdown of the report: **bold** and `code`. */
static void html_inline(pt_buf *o, const char *s, size_t n) {
    int bold = 0, code = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '*' && i + 1 < n && s[i + 1] == '*') {
            pt_buf_puts(o, bold ? "</strong>" : "<strong>");
            bold = !bold;
            i++;
        } else if (s[i] == '`') {
            pt_buf_puts(o, code ? "</code>" : "<code>");
            code = !code;
        } else {
            html_text(o, s + i, 1);
        }
    }
    if (bold) pt_buf_puts(o, "</strong>");
    if (code) pt_buf_puts(o, "</code>");
}

/* GET /parity: the same report as a readable page (its Markdown rendering turned into HTML:
 * headings, tables, lists, paragraphs; no script, no build step). */
static int r_parity_html(pt_server *s, call *c, http_resp *resp) {
    (void)c;
    pt_err err;
    json_t *r = parity_report(s, &err);
    char *md = r ? pt_gap_markdown(r) : NULL;
    json_decref(r);
    pt_buf *o = &resp->body;
    pt_buf_puts(o, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<meta name=\"viewport\" content=\"width=device-width\"><title>parity report</title><style>"
                   "body{font:15px/1.5 system-ui,sans-serif;max-width:72em;margin:2em auto;padding:0 1em;color:#222}"
                   "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;"
                   "text-align:left}th{background:#f4f4f4}code{background:#f4f4f4;padding:0 .2em}"
                   "h1,h2,h3{margin-top:1.4em}</style></head><body>\n");
    if (!md) {
        pt_buf_puts(o, "<h1>parity report</h1><p>The report is not available: ");
        html_text(o, err.msg, strlen(err.msg));
        pt_buf_puts(o, "</p>");
    }
    int in_table = 0, in_list = 0, header_row = 0;
    for (char *line = md; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        int is_row = n && line[0] == '|', is_item = n > 1 && line[0] == '-' && line[1] == ' ';
        if (in_table && !is_row) {
            pt_buf_puts(o, "</table>\n");
            in_table = 0;
        }
        if (in_list && !is_item) {
            pt_buf_puts(o, "</ul>\n");
            in_list = 0;
        }
        if (is_row) {
            int sep = 1;
            for (size_t i = 0; i < n; i++) sep &= line[i] == '|' || line[i] == '-' || line[i] == ':' || line[i] == ' ';
            if (!sep) {
                if (!in_table) {
                    pt_buf_puts(o, "<table>\n");
                    in_table = 1;
                    header_row = 1;
                }
                pt_buf_puts(o, "<tr>");
                const char *cell = line + 1, *end = line + n;
                while (cell < end) {
                    const char *bar = memchr(cell, '|', (size_t)(end - cell));
                    if (!bar) break;
                    const char *a = cell, *b = bar;
                    while (a < b && *a == ' ') a++;
                    while (b > a && b[-1] == ' ') b--;
                    pt_buf_puts(o, header_row ? "<th>" : "<td>");
                    html_inline(o, a, (size_t)(b - a));
                    pt_buf_puts(o, header_row ? "</th>" : "</td>");
                    cell = bar + 1;
                }
                pt_buf_puts(o, "</tr>\n");
                header_row = 0;
            }
        } else if (is_item) {
            if (!in_list) {
                pt_buf_puts(o, "<ul>\n");
                in_list = 1;
            }
            pt_buf_puts(o, "<li>");
            html_inline(o, line + 2, n - 2);
            pt_buf_puts(o, "</li>\n");
        } else if (n && line[0] == '#') {
            int level = 0;
            while ((size_t)level < n && line[level] == '#') level++;
            pt_buf_printf(o, "<h%d>", level > 6 ? 6 : level);
            html_inline(o, line + level + (n > (size_t)level && line[level] == ' '), n - (size_t)level - (n > (size_t)level && line[level] == ' '));
            pt_buf_printf(o, "</h%d>\n", level > 6 ? 6 : level);
        } else if (n) {
            pt_buf_puts(o, "<p>");
            html_inline(o, line, n);
            pt_buf_puts(o, "</p>\n");
        }
        line = nl ? nl + 1 : line + n;
    }
    if (in_table) pt_buf_puts(o, "</table>\n");
    if (in_list) pt_buf_puts(o, "</ul>\n");
    pt_buf_puts(o, "<p>Computed from the verified policy transparency log (<a href=\"/log/policy/checkpoint\">"
                   "checkpoint</a>); the same data as JSON: <a href=\"/v1/parity\">/v1/parity</a>.</p></body></html>\n");
    free(md);
    resp->content_type = "text/html; charset=utf-8";
    return HTTP_DONE;
}

const route pt_parity_routes[] = {
    {"GET", "/healthz", AUTH_NONE, r_healthz, "healthz", 0, 0},
    {"GET", "/metrics", AUTH_NONE, r_metrics, "metrics", 0, 0},
    {"GET", "/log/{}/*", AUTH_NONE, r_log_file, "log", 0, 0},
    {"GET", "/v1/access", AUTH_KEY, r_access, "access", 1, 0},
    {"GET", "/v1/receipts/{}", AUTH_KEY, r_receipt, "receipt", 1, 0},
    {"GET", "/v1/queue", AUTH_KEY, r_queue, "queue", 1, 0},
    {"GET", "/v1/admin/keys", AUTH_ADMIN, r_admin_keys, "admin_keys", 1, 0},
    {"POST", "/v1/admin/keys", AUTH_ADMIN, r_admin_key_create, "admin_keys", 1, 0},
    {"POST", "/v1/admin/keys/{}/revoke", AUTH_ADMIN, r_admin_key_revoke, "admin_keys", 1, 0},
    {"POST", "/v1/admin/policy", AUTH_ADMIN, r_admin_policy, "admin_policy", 1, 0},
    {"GET", "/v1/parity", AUTH_NONE, r_parity_json, "parity", 0, 0},
    {"GET", "/parity", AUTH_NONE, r_parity_html, "parity_html", 0, 0},
};
const size_t pt_n_parity_routes = sizeof pt_parity_routes / sizeof pt_parity_routes[0];
