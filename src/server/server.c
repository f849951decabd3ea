/* see server.h — start-up, routing, authentication, policy decisions, receipts, shutdown. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/json.h"
#include "common/sha256.h"
#include "common/util.h"
#include "engine/config.h"
#include "gap/gap.h"
#include "gap/measure.h"
#include "policy/history.h"
#include "common/ytree.h"
#include "server/data_lock.h"
#include "server/server_internal.h"

int pt_serve_parse_receipts(const char *mode, pt_serve_options *o) {
    if (strcmp(mode, "async") && strcmp(mode, "durable")) return PT_EINVAL;
    o->receipts_durable = !strcmp(mode, "durable");
    return PT_OK;
}

void pt_serve_defaults(pt_serve_options *o) {
    memset(o, 0, sizeof *o);
    o->data_dir = "data";
    o->host = "127.0.0.1";
    o->port = 8080;
    o->threads = 2;
    o->connection_limit = 256;
    o->timeout_s = 30;
    o->header_timeout_s = 10;
    o->min_body_rate = 1024;
    o->max_body = 4u << 20;
    o->max_file = 64u << 20;
    o->max_tokens = 1024;
    o->max_batch = 16;
    o->queue_limit = 64;
    o->shutdown_grace_s = 30;
    o->max_download = 64u << 20;
}

/* Policy ------------------------------------------------------------------------------------- */

static policy_ref *acquire(pt_server *s, const char *id, pt_key_record *out, int *found);

policy_ref *srv_policy_get(pt_server *s) {
    int found;
    return acquire(s, NULL, NULL, &found);
}

void srv_policy_put(pt_server *s, policy_ref *r) {
    (void)s;
    if (!r) return;
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        for (size_t i = 0; r->models && i < r->p->n_orgs; i++)
            for (models_body *mb = atomic_load(&r->models[i]), *next; mb; mb = next) {
                next = mb->older;
                free(mb);
            }
        free(r->models);
        pthread_mutex_destroy(&r->cache_mu);
        pt_policy_free(r->p);
        free(r);
    }
}

/* Installs p (taken over) as the current policy. */
static void srv_policy_set(pt_server *s, pt_policy *p, const char *digest, int64_t seq) {
    policy_ref *r = calloc(1, sizeof *r);
    if (r && !(r->models = calloc(p->n_orgs ? p->n_orgs : 1, sizeof *r->models))) {
        free(r);
        r = NULL;
    }
    if (!r) {
        pt_policy_free(p);
        return;
    }
    pthread_mutex_init(&r->cache_mu, NULL);
    r->p = p;
    snprintf(r->digest, sizeof r->digest, "%s", digest);
    r->seq = seq;
    atomic_init(&r->refs, 1);
    pthread_mutex_lock(&s->mu);
    policy_ref *old = s->policy;
    s->policy = r;
    pthread_mutex_unlock(&s->mu);
    srv_policy_put(s, old);
}

/* The policy in force now (pt_policy_in_force: the one rule the report, `policy explain --data`
 * and /v1/access share), installed as s->policy, and when that next changes in s->policy_next.
 * At start (s->engine NULL) it only loads; later (a revision's time has come, or one was
 * appended) it also loads the models the revision adds before installing it, and does nothing
 * when the moment has not come (another thread switched first). Serialised by reload_mu; a
 * failure keeps the policy installed before and is retried a second later. */
static int srv_load_policy(pt_server *s, pt_err *err) {
    pthread_mutex_lock(&s->reload_mu);
    int64_t now = pt_unix_time(), next = INT64_MAX;
    int rc = PT_OK;
    if (!s->policy || now >= atomic_load(&s->policy_next) || s->policy_log_seen != tlog_size(s->policy_log)) {
        pt_policy *p;
        char digest[72];
        int64_t seq;
        uint64_t size = tlog_size(s->policy_log);
        rc = pt_policy_in_force(s->policy_log, s->data_dir, now, &p, digest, &seq, &next, err);
        if (!rc) {
            if (s->engine) json_decref(srv_models_sync(s, p));
            srv_policy_set(s, p, digest, seq);
            s->policy_log_seen = size;
            srv_declare_served(s);
        } else if (s->policy) {
            fprintf(stderr, "parity serve: loading the policy revision in force: %s\n", err->msg);
            next = now + 1;
        }
        atomic_store(&s->policy_next, next);
    }
    pthread_mutex_unlock(&s->reload_mu);
    return rc;
}

/* Routing -------------------------------------------------------------------------------------- */

/* Copies one path segment (libmicrohttpd has already decoded %XX escapes). -1 if it does not
 * fit or is "." or "..". */
static int copy_segment(const char *s, size_t n, char *out, size_t cap) {
    if (n + 1 > cap || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return -1;
    memcpy(out, s, n);
    out[n] = 0;
    return 0;
}

/* Matches path against pattern; fills c->params. 1 on match. */
static int route_match(const char *pattern, const char *path, call *c) {
    c->n_params = 0;
    const char *p = pattern, *q = path;
    while (*p) {
        if (p[0] == '*' && p[1] == 0) {
            if (c->n_params < 2 && copy_segment(q, strlen(q), c->params[c->n_params], sizeof c->params[0]) == 0) {
                c->n_params++;
                return 1;
            }
            return 0;
        }
        if (p[0] == '{' && p[1] == '}') {
            const char *end = strchr(q, '/');
            size_t n = end ? (size_t)(end - q) : strlen(q);
            if (n == 0 || c->n_params >= 2) return 0;
            if (copy_segment(q, n, c->params[c->n_params], sizeof c->params[0])) return 0;
            c->n_params++;
            q += n;
            p += 2;
            continue;
        }
        if (*p != *q) return 0;
        p++;
        q++;
    }
    return *q == 0;
}
/* Authentication ------------------------------------------------------------------------------- */

static int key_cmp(const void *a, const void *b) {
    return strcmp(((const pt_key_record *)a)->id, ((const pt_key_record *)b)->id);
}

/* Finds the key record for id (NULL: none wanted), through a sorted cache refilled whenever
 * the store's keys changed (a key created or revoked by this process or another), so a
 * revocation takes effect at once; and takes a reference to the current policy. One critical
 * section for both: every authenticated request does this. */
static policy_ref *acquire(pt_server *s, const char *id, pt_key_record *out, int *found) {
    if (pt_unix_time() >= atomic_load_explicit(&s->policy_next, memory_order_relaxed)) { /* a revision's time came */
        pt_err e;
        srv_load_policy(s, &e);
    }
    pthread_mutex_lock(&s->mu);
    /* under s->mu, s->policy still holds its own reference: pol cannot be freed meanwhile */
    policy_ref *pol = s->policy;
    if (pol) atomic_fetch_add_explicit(&pol->refs, 1, memory_order_relaxed);
    *found = 0;
    if (id) {
        int64_t v = pt_store_keys_version(s->store);
        if (v != s->keys_version || !s->keys) {
            pt_key_record *keys;
            size_t n;
            if (pt_store_key_list(s->store, &keys, &n, NULL) == PT_OK) {
                qsort(keys, n, sizeof *keys, key_cmp);
                free(s->keys);
                s->keys = keys;
                s->n_keys = n;
                s->keys_version = v;
            }
        }
        pt_key_record probe;
        pt_strlcpy(probe.id, id, sizeof probe.id);
        const pt_key_record *k = s->keys ? bsearch(&probe, s->keys, s->n_keys, sizeof probe, key_cmp) : NULL;
        if (k) *out = *k;
        *found = k != NULL;
    }
    pthread_mutex_unlock(&s->mu);
    return pol;
}

/* The route's authentication, with c->pol acquired: fills c->key from "Authorization: Bearer
 * <key>". 0 and a 401 in resp when missing or wrong (c->pol is set either way). */
static int authenticate(pt_server *s, call *c, http_resp *resp) {
    const char *h = c->rt->auth != AUTH_NONE ? http_header(c->req, "Authorization") : NULL;
    const char *key = NULL;
    char id[PT_KEY_ID_LEN + 1];
    int found = 0;
    if (h && !strncasecmp(h, "Bearer ", 7)) {
        key = h + 7;
        while (*key == ' ') key++;
    }
    int parsed = key && !pt_key_parse_id(key, id);
    c->pol = acquire(s, parsed ? id : NULL, &c->key, &found);
    if (c->rt->auth == AUTH_NONE) return 1;
    if (!key) {
        http_error(resp, 401, "invalid_request_error", "missing_api_key", NULL,
                   "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.");
        return 0;
    }
    if (!found || !pt_key_matches(&c->key, key)) {
        /* One message for unknown, wrong and revoked keys: it tells an attacker nothing. */
        http_error(resp, 401, "invalid_request_error", "invalid_api_key", NULL,
                   "Incorrect or revoked API key.");
        return 0;
    }
    c->authed = 1;
    return 1;
}
/* Decisions ------------------------------------------------------------------------------------ */

/* srv_decide, with `use` (or NULL) named in a denial's message. */
static int decide(call *c, const char *model, const char *variant, pt_cap cap, const pt_usage *u, const char *use,
                  http_resp *resp) {
    pt_decision d;
    pt_strlcpy(c->model, model ? model : "", sizeof c->model);
    if (variant) pt_strlcpy(c->variant, variant, sizeof c->variant);
    c->caps_used |= 1u << cap;
    pt_policy_decide(c->pol->p, c->key.org, model, variant, cap, pt_unix_time(), u, &d);
    c->decision_allow = d.allow;
    pt_strlcpy(c->reason, d.allow && d.grant ? d.grant->id : pt_reason_name(d.reason), sizeof c->reason);
    if (d.allow) return 1;
    if (d.reason == PT_DENY_UNKNOWN_MODEL) {
        http_error(resp, 404, "invalid_request_error", "model_not_found", "model",
                   "The model '%s' does not exist or you do not have access to it.", model);
    } else {
        http_error(resp, 403, "permission_denied", pt_reason_name(d.reason), NULL, "%s%s%s (policy revision %lld)",
                   use ? use : "", use ? ": " : "", d.message, (long long)c->pol->seq);
    }
    return 0;
}

int srv_decide(pt_server *s, call *c, const char *model, const char *variant, pt_cap cap, const pt_usage *u,
               http_resp *resp) {
    (void)s;
    return decide(c, model, variant, cap, u, NULL, resp);
}

int srv_decide_use(pt_server *s, call *c, const char *model, const char *variant, pt_use use, int64_t k,
                   http_resp *resp) {
    (void)s;
    /* a read of logits is charged log-probs over the whole vocabulary: say so, or a refusal
     * of "top-k 4096" would puzzle a caller who asked for no top-k */
    const char *what = use == PT_USE_READ_LOGITS ? "reading 'logits' (the whole log-probability vector, charged as "
                                                   "prefill and top-k log-probs with k = the vocabulary)"
                                                 : NULL;
    pt_charge rows[PT_CHARGE_MAX];
    int n = pt_policy_charge(use, k, rows);
    for (int i = 0; i < n; i++) {
        pt_usage u = pt_usage_none();
        u.logprobs_top_k = rows[i].logprobs_top_k;
        if (!decide(c, model, variant, rows[i].cap, rows[i].logprobs_top_k >= 0 ? &u : NULL, what, resp)) return 0;
    }
    return 1;
}

/* 1 if a Content-Type header value is application/json (parameters such as charset allowed). */
static int is_json_media_type(const char *ct) {
    static const char want[] = "application/json";
    if (!ct) return 0;
    ct += strspn(ct, " \t");
    if (strncasecmp(ct, want, sizeof want - 1)) return 0;
    ct += sizeof want - 1;
    ct += strspn(ct, " \t");
    return *ct == 0 || *ct == ';';
}

json_t *srv_body_json(call *c, http_resp *resp) {
    pt_err err;
    if (c->req->body_len == 0) {
        http_error(resp, 400, "invalid_request_error", "invalid_body", NULL, "The request needs a JSON body.");
        return NULL;
    }
    const char *ct = http_header(c->req, "Content-Type");
    if (!is_json_media_type(ct)) {
        char shown[64];
        pt_strlcpy(shown, ct ? ct : "", sizeof shown);
        for (char *q = shown; *q; q++)
            if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f) *q = '?';
        http_error(resp, 415, "invalid_request_error", "unsupported_media_type", NULL,
                   "The request body must be JSON sent with 'Content-Type: application/json' (%s%s%s).",
                   ct ? "got '" : "no Content-Type was sent", shown, ct ? "'" : "");
        return NULL;
    }
    /* jansson's length-delimited reader takes a NUL byte for the end of the text and then reads
     * on past it ({"max_tokens":3<NUL>} parsed), and a raw NUL is never valid JSON, in a string or
     * out of one: refused here, before the parser sees the body. */
    const char *nul = memchr(c->req->body, 0, c->req->body_len);
    if (nul) {
        http_error(resp, 400, "invalid_request_error", "invalid_json", NULL,
                   "request body: byte %zu is NUL, which JSON does not allow.", (size_t)(nul - c->req->body));
        return NULL;
    }
    json_t *j = pt_json_parse(c->req->body, c->req->body_len, 32, "request body", &err);
    if (!j) {
        http_error(resp, 400, "invalid_request_error", "invalid_json", NULL, "%s", err.msg);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        http_error(resp, 400, "invalid_request_error", "invalid_body", NULL, "The request body must be a JSON object.");
        return NULL;
    }
    return j;
}

/* Receipts ------------------------------------------------------------------------------------- */

/* The audit entry, written straight as compact JSON (building a jansson tree and serialising
 * it was a sixth of the server's CPU per request). Fields in a fixed order. Strings that can
 * come from a request or a policy are escaped; the others are this server's own short text
 * (route method and label, capability names, times, hex digests) and are copied as they are.
 * Room for everything is reserved first, so the copies need no checks.
 *
 * The entry is public (tiles anyone may read): it names the organisation and key only when the
 * policy makes the organisation's usage public, else their keyed pseudonyms; its time is the
 * minute; the bodies appear only as commitments salted with the request's secret salt. What it
 * hides goes to *priv (docs/server.md, "Receipts"). */
#define AUDIT_OWN_MAX 2048 /* bound on everything but the escaped strings (about 900 bytes) */
static int64_t unix_time_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* x >= 0 rounded down to two significant digits (1234 -> 1200). */
static int64_t two_digits(int64_t x) {
    int64_t p = 1;
    while (x >= 100 * p) p *= 10;
    return x < 0 ? 0 : x / p * p;
}

char *srv_audit_text(call *c, int status, const uint8_t resp_hash[32], pt_receipt_private *priv) {
    char rq[65], rs[65], t[21], op[33], kp[33];
    uint8_t h[32], h2[32];
    int64_t now_ms = unix_time_ms();
    priv->time_ms = now_ms;
    pt_strlcpy(priv->org, c->key.org, sizeof priv->org);
    pt_strlcpy(priv->key_id, c->key.id, sizeof priv->key_id);
    pt_strlcpy(priv->grant, c->decision_allow ? c->reason : "", sizeof priv->grant);
    memcpy(priv->salt, c->salt, 32);
    if (c->req->body_len) pt_sha256(c->req->body, c->req->body_len, priv->request_sha256);
    else memcpy(priv->request_sha256, c->s->empty_sha256, 32); /* most requests (GETs) have no body */
    memcpy(priv->response_sha256, resp_hash, 32);
    pt_receipt_commitments(c->salt, priv->request_sha256, resp_hash, h, h2);
    pt_hex(h, 32, rq);
    pt_hex(h2, 32, rs);
    pt_format_time(now_ms / 1000 - (now_ms / 1000) % 60, t); /* the minute */
    const pt_org *org = c->pol ? pt_policy_org(c->pol->p, c->key.org) : NULL;
    int public_usage = org && org->public_usage;
    if (!public_usage) pt_receipts_pseudonyms(c->s->receipts, c->key.org, c->key.id, op, kp);
    /* The model and variant asked for are the caller's text: public only when the policy lists
     * them (a mistyped "ft:BASE:ORG:..." name, or anything else put there, stays private). */
    const pt_pmodel *pm = c->pol && c->model[0] ? pt_policy_model(c->pol->p, c->model) : NULL;
    int variant_listed = 0;
    for (size_t v = 0; pm && c->variant[0] && v < pm->n_variants && !variant_listed; v++)
        variant_listed = !strcmp(pm->variants[v].id, c->variant);
    const char *grant = c->reason[0] ? c->reason : NULL, *digest = c->pol && c->pol->digest[0] ? c->pol->digest : NULL;
    size_t org_n = public_usage ? strlen(c->key.org) : 0, model_n = strlen(c->model), variant_n = strlen(c->variant),
           grant_n = grant ? strlen(grant) : 0;
    pt_buf b;
    pt_buf_init(&b, TLOG_MAX_ENTRY);
    /* an escaped string takes at most 6 bytes per byte (\u00XX), plus its quotes */
    if (pt_buf_reserve(&b, AUDIT_OWN_MAX + 6 * (org_n + model_n + variant_n + grant_n) + 8)) {
        pt_buf_free(&b);
        return NULL;
    }
    char *o = b.data;
    int rc = 0; /* only escaping invalid UTF-8 allocates (and may fail) */
#define PUT(p, n) (memcpy(o, (p), (n)), o += (n))
#define LIT(k) PUT(k, sizeof(k) - 1)
#define OWN(k, v) (LIT(k "\""), PUT((v), strlen(v)), LIT("\""))
#define ESC(k, v, n) (LIT(k), b.len = (size_t)(o - b.data), rc |= pt_json_put_string(&b, (v), (n)), o = b.data + b.len)
#define INT(k, v) (LIT(k), o += pt_format_i64((v), o))
    OWN("{\"type\":\"request\",\"time\":", t);
    if (public_usage) {
        ESC(",\"org\":", c->key.org, org_n);
        OWN(",\"key_id\":", c->key.id); /* hex: it matched a parsed key id */
    } else {
        OWN(",\"org_pseudonym\":", op);
        OWN(",\"key_pseudonym\":", kp);
    }
    OWN(",\"org_class\":", !org ? "unknown" : org->kind == PT_ORG_INSIDER ? "insider" : "outsider");
    OWN(",\"method\":", c->rt->method); /* the matched route's, the same as the request's */
    OWN(",\"route\":", c->rt->label);
    OWN(",\"decision\":", c->decision_allow ? "allow" : "deny");
    if (pm) ESC(",\"model\":", c->model, model_n);
    else if (model_n) LIT(",\"unlisted_model\":true");
    if (variant_listed) ESC(",\"variant\":", c->variant, variant_n);
    else if (variant_n) LIT(",\"unlisted_variant\":true");
    LIT(",\"capabilities\":[");
    for (int i = 0, n = 0; i < PT_CAP_COUNT; i++)
        if (c->caps_used & (1u << i)) {
            if (n++) LIT(",");
            OWN("", pt_cap_name((pt_cap)i));
        }
    LIT("]");
    /* A grant id names its organisation in the public policy: public only with the usage. */
    if (grant && c->decision_allow && public_usage) ESC(",\"grant\":", grant, grant_n);
    else if (grant && !c->decision_allow) ESC(",\"reason\":", grant, grant_n);
    INT(",\"policy_revision\":", c->pol ? c->pol->seq : 0);
    if (digest) OWN(",\"policy_digest\":", digest);
    INT(",\"status\":", status);
    OWN(",\"request_commitment\":", rq);
    OWN(",\"response_commitment\":", rs);
    if (c->prompt_tokens || c->completion_tokens) {
        INT(",\"prompt_tokens\":", c->prompt_tokens);
        INT(",\"completion_tokens\":", c->completion_tokens);
    }
    /* durations (not moments), to two significant digits: what the measured report needs */
    INT(",\"latency_ms\":", two_digits((int64_t)((pt_now() - c->req->start) * 1000)));
    int64_t queue_ms = srv_job_queue_ms(c);
    if (queue_ms >= 0) INT(",\"queue_ms\":", two_digits(queue_ms));
    LIT("}");
    *o = 0; /* NUL-terminated (pt_buf_reserve keeps room for it) */
#undef PUT
#undef LIT
#undef OWN
#undef ESC
#undef INT
    b.len = (size_t)(o - b.data);
    if (rc) pt_buf_free(&b);
    return rc ? NULL : b.data;
}

static void receipt_done(void *ctx, int rc, uint64_t index) {
    call *c = ctx;
    c->receipt_rc = rc;
    c->receipt_index = index;
    http_resume(c->req);
}

/* Durable receipts: the held response back into resp (its buffer taken over). */
static void take_held(call *c, http_resp *resp) {
    *resp = *c->held;
    free(c->held);
    c->held = NULL;
}

/* Async receipts: called inside pt_receipts_submit on this thread; nothing to resume. */
static void receipt_now(void *ctx, int rc, uint64_t index) {
    call *c = ctx;
    c->receipt_rc = rc;
    c->receipt_index = index;
}

static void answer_unaudited(http_resp *resp, const char *msg) {
    pt_buf_reset(&resp->body);
    resp->n_headers = 0;
    http_error(resp, 503, "server_error", "audit_unavailable", NULL, "%s", msg);
}

/* A new secret salt: ChaCha20 keystream (libsodium) under a per-thread key drawn from the
 * system's CSPRNG once, with a per-thread counter as the nonce, made 64 salts at a time and
 * each handed out once (then wiped), so a request costs no getrandom system call (one was 2 us
 * of the server's CPU per request). */
#define SALTS 64
static void new_salt(uint8_t out[32]) {
    static _Thread_local uint8_t key[crypto_stream_chacha20_ietf_KEYBYTES], salts[SALTS][32];
    static _Thread_local uint64_t counter; /* batches made; 0: not seeded yet */
    static _Thread_local int left;
    if (!left) {
        if (!counter) randombytes_buf(key, sizeof key);
        uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {0};
        counter++;
        memcpy(nonce, &counter, sizeof counter);
        crypto_stream_chacha20_ietf(&salts[0][0], sizeof salts, nonce, key);
        left = SALTS;
    }
    left--;
    memcpy(out, salts[left], 32);
    sodium_memzero(salts[left], 32);
}

/* The request's secret salt, to its caller only: with it the caller can open the public
 * entry's commitments to the bytes it sent and received. Set on every (re)run of a handler of
 * an audited route, so a streamed or deferred response carries it too. */
static void salt_header(call *c, http_resp *resp) {
    http_set_header_hex(resp, "Parity-Receipt-Salt", c->salt, 32);
}

/* Appends the finished response's audit entry. Async receipts: the index is known at once and
 * the response goes out now. Durable receipts: the response is held and the handler defers
 * until the writer has made the receipt durable (phase 2 in handle()). Denied requests get
 * receipts too. */
static int submit_receipt(pt_server *s, call *c, http_resp *resp) {
    uint8_t h[32];
    if (c->resp_hashed && resp->status == 200) memcpy(h, c->resp_sha256, 32);
    else pt_sha256(resp->body.data ? resp->body.data : "", resp->body.len, h);
    pt_receipt_private priv;
    char *text = srv_audit_text(c, resp->status, h, &priv);
    if (pt_receipts_async(s->receipts)) {
        if (!text || pt_receipts_submit(s->receipts, text, strlen(text), &priv, receipt_now, c) || c->receipt_rc)
            answer_unaudited(resp, "The audit log is not accepting entries; the request was not served.");
        else
            http_set_header_i64(resp, "Parity-Receipt", (int64_t)c->receipt_index);
        free(text);
        return HTTP_DONE;
    }
    if (!text || !(c->held = malloc(sizeof *c->held))) {
        free(text);
        answer_unaudited(resp, "The audit log is not accepting entries; the request was not served.");
        return HTTP_DONE;
    }
    *c->held = *resp; /* takes over the body buffer */
    pt_buf_init(&resp->body, resp->body.max);
    c->phase = 2;
    if (pt_receipts_submit(s->receipts, text, strlen(text), &priv, receipt_done, c)) {
        free(text);
        c->receipt_rc = PT_EIO;
        take_held(c, resp);
        answer_unaudited(resp, "The audit log is not accepting entries; the request was not served.");
        return HTTP_DONE;
    }
    free(text);
    return HTTP_DEFER;
}
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
    /* Only the published layout: checkpoint, tile/..., revisions/<hex>.json. */
    int ok = *rest && rest[0] != '/' && !strstr(rest, "..") && !strstr(rest, "//") &&
             (!strcmp(rest, "checkpoint") || !strncmp(rest, "tile/", 5) ||
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
    if (!strcmp(rest, "checkpoint")) {
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

/* OpenAI's model object (id, object, created, owned_by) with what the published policy says of
 * the model (variants, analog_of); with the `model_info` capability also the served model's
 * metadata: its name and its config (architecture, sizes, context length, special tokens). */
static json_t *model_object(pt_server *s, const pt_policy *p, const pt_pmodel *m, pt_capset caps) {
    json_t *vars = json_array();
    for (size_t v = 0; v < m->n_variants; v++) json_array_append_new(vars, json_string(m->variants[v].id));
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", m->id, "object", "model", "created",
                          (json_int_t)(m->insider_since == PT_TIME_MIN ? 0 : m->insider_since), "owned_by", p->lab_id,
                          "variants", vars);
    if (m->analog_of) json_object_set_new(o, "analog_of", json_string(m->analog_of));
    if (!(caps & (1u << PT_CAP_MODEL_INFO))) return o;
    if (m->name) json_object_set_new(o, "name", json_string(m->name));
    const pt_config *cfg = srv_model_config(s, m->id);
    if (cfg) json_object_set_new(o, "config", pt_config_to_json(cfg));
    return o;
}

/* GET /v1/models: only the models the caller may use now, and its organisation's fine-tuned
 * models (on a base it may sample). */
static int r_models(pt_server *s, call *c, http_resp *resp) {
    policy_ref *pol = c->pol;
    const pt_policy *p = pol->p;
    int64_t now = pt_unix_time();
    long o = pt_policy_org_ix(p, c->key.org);
    c->decision_allow = 1;
    uint64_t ftv = srv_ft_models_version(s);
    if (o >= 0) { /* the organisation's body from the cache while it is valid */
        const models_body *mb = atomic_load_explicit(&pol->models[o], memory_order_acquire);
        if (mb && now < mb->until && mb->ft_version == ftv) {
            http_json_text(resp, 200, mb->json, mb->len);
            memcpy(c->resp_sha256, mb->sha256, 32);
            c->resp_hashed = 1;
            return HTTP_DONE;
        }
    }
    json_t *data = json_array();
    for (size_t i = 0; i < p->n_models; i++) {
        pt_capset caps;
        if (pt_policy_effective(p, c->key.org, p->models[i].id, now, &caps, NULL) && caps)
            json_array_append_new(data, model_object(s, p, &p->models[i], caps));
    }
    json_t *ft = srv_ft_models(s, p, c->key.org, now, &ftv);
    json_array_extend(data, ft);
    json_decref(ft);
    http_json(resp, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
    if (o >= 0 && resp->status == 200) {
        models_body *mb = malloc(sizeof *mb + resp->body.len);
        if (mb) {
            *mb = (models_body){NULL, pt_policy_next_change(p, now), ftv, {0}, resp->body.len};
            memcpy(mb->json, resp->body.data, resp->body.len);
            pt_sha256(mb->json, mb->len, mb->sha256);
            pthread_mutex_lock(&pol->cache_mu);
            models_body *cur = atomic_load_explicit(&pol->models[o], memory_order_relaxed);
            if (cur && now < cur->until && cur->ft_version == ftv) { /* another request refreshed it */
                free(mb);
            } else {
                mb->older = cur;
                atomic_store_explicit(&pol->models[o], mb, memory_order_release);
            }
            pthread_mutex_unlock(&pol->cache_mu);
        }
    }
    return HTTP_DONE;
}

/* GET /v1/models/{id}: 404 for a model the caller may not use (as OpenAI does: no oracle). */
static int r_model(pt_server *s, call *c, http_resp *resp) {
    const pt_policy *p = c->pol->p;
    const pt_pmodel *m = pt_policy_model(p, c->params[0]);
    pt_capset caps = 0;
    snprintf(c->model, sizeof c->model, "%s", c->params[0]);
    if (!m && !strncmp(c->params[0], "ft:", 3)) { /* one of the organisation's fine-tuned models? */
        json_t *ft = srv_ft_models(s, p, c->key.org, pt_unix_time(), NULL), *x;
        size_t i;
        json_array_foreach(ft, i, x) {
            if (strcmp(json_string_value(json_object_get(x, "id")), c->params[0])) continue;
            c->decision_allow = 1;
            http_json(resp, 200, json_incref(x));
            json_decref(ft);
            return HTTP_DONE;
        }
        json_decref(ft);
    }
    if (!m || !pt_policy_effective(p, c->key.org, m->id, pt_unix_time(), &caps, NULL) || !caps) {
        snprintf(c->reason, sizeof c->reason, "%s", m ? "no_grant" : "unknown_model");
        http_error(resp, 404, "invalid_request_error", "model_not_found", "model",
                   "The model '%s' does not exist or you do not have access to it.", c->params[0]);
        return HTTP_DONE;
    }
    c->decision_allow = 1;
    c->caps_used |= caps & (1u << PT_CAP_MODEL_INFO);
    http_json(resp, 200, model_object(s, p, m, caps));
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
    uint64_t size = tlog_size(s->policy_log);
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
    if (!s->report || s->report_size != size || now >= s->report_until || (audit_grew && pt_now() - s->report_at >= 1.0)) {
        char *dir = pt_path_join(s->data_dir, "log/policy");
        pt_policy_history *h = NULL;
        json_t *rep = NULL;
        int64_t until = (now / 86400 + 1) * 86400;
        if (!dir) pt_errf(err, PT_ENOMEM, "out of memory");
        else if (srv_measure_audit(s, audit_size, err) == PT_OK &&
                 pt_policy_history_load(dir, tlog_vkey(s->policy_log), NULL, &h, err) == PT_OK)
            rep = pt_gap_report_measured(h->revs, h->n, now, s->meter, err);
        s->report_at = pt_now();
        for (size_t i = 0; rep && i < h->n; i++)
            if (h->revs[i].time > now && h->revs[i].time < until) until = h->revs[i].time;
        pt_policy_history_free(h);
        free(dir);
        json_decref(s->report);
        s->report = rep;
        s->report_size = size;
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

/* Dispatch ------------------------------------------------------------------------------------- */

/* Routes of the other server files. */
extern const route pt_model_routes[];
extern const size_t pt_n_model_routes;
extern const route pt_ft_routes[];
extern const size_t pt_n_ft_routes;

static const route base_routes[] = {
    {"GET", "/healthz", AUTH_NONE, r_healthz, "healthz", 0, 0},
    {"GET", "/metrics", AUTH_NONE, r_metrics, "metrics", 0, 0},
    {"GET", "/log/{}/*", AUTH_NONE, r_log_file, "log", 0, 0},
    {"GET", "/v1/models", AUTH_KEY, r_models, "models", 1, 0},
    {"GET", "/v1/models/{}", AUTH_KEY, r_model, "model", 1, 0},
    {"GET", "/v1/access", AUTH_KEY, r_access, "access", 1, 0},
    {"GET", "/v1/receipts/{}", AUTH_KEY, r_receipt, "receipt", 1, 0},
    {"GET", "/v1/admin/keys", AUTH_ADMIN, r_admin_keys, "admin_keys", 1, 0},
    {"POST", "/v1/admin/keys", AUTH_ADMIN, r_admin_key_create, "admin_keys", 1, 0},
    {"POST", "/v1/admin/keys/{}/revoke", AUTH_ADMIN, r_admin_key_revoke, "admin_keys", 1, 0},
    {"POST", "/v1/admin/policy", AUTH_ADMIN, r_admin_policy, "admin_policy", 1, 0},
    {"GET", "/v1/parity", AUTH_NONE, r_parity_json, "parity", 0, 0},
    {"GET", "/parity", AUTH_NONE, r_parity_html, "parity_html", 0, 0},
};

/* Per-request state is about 1.2 KiB: above glibc's per-thread cache of small chunks, so
 * malloc and free of it take the arena's slower paths. Each thread keeps one spare instead
 * (freed when the thread exits). */
static pthread_key_t spare_call;
static pthread_once_t spare_call_once = PTHREAD_ONCE_INIT;

static void spare_call_init(void) {
    if (pthread_key_create(&spare_call, free)) abort();
}

static call *call_new(void) {
    pthread_once(&spare_call_once, spare_call_init);
    call *c = pthread_getspecific(spare_call);
    if (!c) return calloc(1, sizeof *c);
    pthread_setspecific(spare_call, NULL);
    memset(c, 0, sizeof *c);
    return c;
}

static void call_free(void *p) {
    call *c = p;
    if (!c) return;
    if (c->job_free) c->job_free(c->job);
    if (c->held) pt_buf_free(&c->held->body);
    free(c->held);
    srv_policy_put(c->s, c->pol);
    if (pthread_getspecific(spare_call) || pthread_setspecific(spare_call, c)) free(c);
}

/* A request's route and caller: 0 with the answer in resp (404, 405, 401), else 1 with
 * req->user set. Run before the body is read when there is one (begin_early), so that a
 * request without a valid key is refused at once instead of holding a connection while its
 * body arrives; else at the handler's first call. */
static int begin_call(pt_server *s, http_req *req, http_resp *resp) {
    call *c = call_new();
    if (!c) {
        http_error(resp, 503, "server_error", NULL, NULL, "out of memory");
        return 0;
    }
    c->s = s;
    c->req = req;
    req->user = c;
    req->user_free = call_free;
    int path_matched = 0;
    for (size_t i = 0; i < s->n_routes && !c->rt; i++) {
        if (!route_match(s->routes[i].pattern, req->path, c)) continue;
        path_matched = 1;
        if (!strcmp(s->routes[i].method, req->method)) c->rt = &s->routes[i];
    }
    if (!c->rt) {
        if (path_matched) http_error(resp, 405, "invalid_request_error", "method_not_allowed", NULL,
                                     "%s is not allowed on %s.", req->method, req->path);
        else http_error(resp, 404, "invalid_request_error", "not_found", NULL, "No endpoint %s %s.", req->method,
                        req->path);
        return 0;
    }
    /* Re-match: the loop above may have left params of a later, non-matching route. */
    route_match(c->rt->pattern, req->path, c);
    if (!authenticate(s, c, resp)) return 0; /* also acquires c->pol */
    if (c->rt->audited) new_salt(c->salt);
    return 1;
}

static int begin_early(void *ctx, http_req *req, http_resp *resp) {
    return begin_call(ctx, req, resp) ? HTTP_CONTINUE : HTTP_DONE;
}

static int handle(void *ctx, http_req *req, http_resp *resp) {
    pt_server *s = ctx;
    if (!req->user && !begin_call(s, req, resp)) return HTTP_DONE;
    call *c = req->user;
    if (c->phase == 0 && c->rt->auth == AUTH_ADMIN && !c->key.admin) {
        snprintf(c->reason, sizeof c->reason, "not_admin");
        http_error(resp, 403, "permission_denied", "admin_required", NULL, "This endpoint needs an admin key.");
        salt_header(c, resp);
        return submit_receipt(s, c, resp);
    }
    if (c->phase == 2) { /* the receipt is durable (or failed): answer */
        pt_buf_free(&resp->body);
        take_held(c, resp);
        if (c->receipt_rc) {
            answer_unaudited(resp, "The audit log did not accept this request's receipt; it was not served.");
        } else {
            http_set_header_i64(resp, "Parity-Receipt", (int64_t)c->receipt_index);
        }
        return HTTP_DONE;
    }
    if (c->rt->audited && c->authed) salt_header(c, resp);
    int how = c->rt->fn(s, c, resp);
    if (how == HTTP_DEFER) {
        c->phase = 1;
        return HTTP_DEFER;
    }
    if (how == HTTP_STREAM) return HTTP_STREAM;
    if (c->rt->audited && c->authed) return submit_receipt(s, c, resp);
    return HTTP_DONE;
}

static size_t body_cap(void *ctx, const char *method, const char *path) {
    pt_server *s = ctx;
    if (!strcmp(method, "GET") || !strcmp(method, "HEAD") || !strcmp(method, "DELETE")) return 0;
    if (!strcmp(path, "/v1/files")) return s->o.max_file;
    return s->o.max_body;
}

static void observe(void *ctx, const http_req *req, int status, double seconds) {
    pt_server *s = ctx;
    const call *c = req->user;
    int metric = c && c->rt ? c->rt->metric : s->unmatched_metric;
    pt_metrics_observe(s->metrics, metric, status, seconds);
}

/* Start-up and shutdown ------------------------------------------------------------------------ */

static void server_free(pt_server *s) {
    if (!s) return;
    pt_receipts_stop(s->receipts); /* drains: every queued receipt is written */
    if (s->rl) {
        pt_err err;
        if (pt_ratelimit_flush(s->rl, &err)) fprintf(stderr, "parity serve: saving usage counters: %s\n", err.msg);
    }
    pt_ratelimit_close(s->rl);
    tlog_close(s->audit_log);
    tlog_close(s->policy_log);
    pt_store_close(s->store);
    pt_metrics_free(s->metrics);
    json_decref(s->report);
    pt_gap_meter_free(s->meter);
    free(s->served_declared);
    pthread_mutex_destroy(&s->report_mu);
    if (s->policy) srv_policy_put(s, s->policy);
    free(s->keys);
    free(s->routes);
    free(s->data_dir);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->reload_mu);
    free(s);
}

static int start_receipts(pt_server *s, pt_err *err) {
    char *dir = pt_path_join(s->data_dir, "log/audit"), *priv = pt_path_join(s->data_dir, "private");
    int rc = !dir || !priv ? pt_errf(err, PT_ENOMEM, "out of memory")
                           : pt_receipts_start(&s->receipts, s->audit_log, dir, priv,
                                               s->o.receipts_durable ? PT_RECEIPTS_DURABLE : PT_RECEIPTS_ASYNC, err);
    free(dir);
    free(priv);
    return rc;
}

int pt_serve(const pt_serve_options *o, atomic_int *stop, pt_err *err) {
    if (sodium_init() < 0) return pt_errf(err, PT_EINTERNAL, "libsodium failed to initialise");
    pt_server *s = calloc(1, sizeof *s);
    if (!s) return pt_errf(err, PT_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->report_mu, NULL);
    pthread_mutex_init(&s->reload_mu, NULL);
    s->o = *o;
    int rc, lock_fd = -1;
    pt_sha256("", 0, s->empty_sha256);
    if ((rc = pt_data_lock(o->data_dir, &lock_fd, err))) goto out; /* before anything in it is opened */
    if (!(s->data_dir = strdup(o->data_dir)) || !(s->metrics = pt_metrics_new())) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = pt_store_open(&s->store, s->data_dir, err)) ||
        (rc = tlog_open(s->data_dir, "policy", NULL, &s->policy_log, err)) ||
        (rc = pt_keys_reconcile_stderr(s->store, s->policy_log, s->data_dir, "parity serve", err)) ||
        (rc = tlog_open(s->data_dir, "audit", NULL, &s->audit_log, err)) || (rc = srv_load_policy(s, err)) ||
        (rc = pt_ratelimit_open(&s->rl, s->store, err)) || (rc = start_receipts(s, err)))
        goto out;
    size_t nb = sizeof base_routes / sizeof base_routes[0];
    s->n_routes = nb + pt_n_model_routes + pt_n_ft_routes;
    if (!(s->routes = malloc(s->n_routes * sizeof *s->routes))) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(s->routes, base_routes, nb * sizeof *s->routes);
    memcpy(s->routes + nb, pt_model_routes, pt_n_model_routes * sizeof *s->routes);
    memcpy(s->routes + nb + pt_n_model_routes, pt_ft_routes, pt_n_ft_routes * sizeof *s->routes);
    for (size_t i = 0; i < s->n_routes; i++) s->routes[i].metric = pt_metrics_route(s->metrics, s->routes[i].label);
    s->unmatched_metric = pt_metrics_route(s->metrics, "unmatched");
    if ((rc = srv_models_start(s, err)) || (rc = srv_ft_start(s, err))) goto out;
    srv_declare_served(s);

    http_options ho = {.host = o->host, .port = o->port, .threads = o->threads,
                       .connection_limit = o->connection_limit, .timeout_s = o->timeout_s,
                       .header_timeout_s = o->header_timeout_s, .per_ip_connection_limit = o->per_ip_connection_limit,
                       .min_body_rate = o->min_body_rate,
                       .handler = handle, .early = begin_early, .body_cap = body_cap, .observer = observe, .ctx = s};
    if ((rc = http_start(&s->http, &ho, err))) goto out;
    fprintf(stderr, "parity: listening on http://%s:%d (data %s, policy revision %lld)\n", o->host,
            http_port(s->http), s->data_dir, (long long)s->policy->seq);
    if (o->port_file) {
        char num[16];
        int n = snprintf(num, sizeof num, "%d\n", http_port(s->http));
        pt_write_atomic(o->port_file, num, (size_t)n, 0644, NULL);
    }
    double last_flush = pt_now();
    while (!atomic_load(stop)) {
        usleep(50000);
        if (pt_unix_time() >= atomic_load(&s->policy_next)) { /* a revision's time came: switch off the request path */
            pt_err perr;
            srv_load_policy(s, &perr);
        }
        if (pt_now() - last_flush >= 1.0) {
            pt_err ferr;
            if (pt_ratelimit_flush(s->rl, &ferr)) fprintf(stderr, "parity serve: saving usage counters: %s\n", ferr.msg);
            last_flush = pt_now();
        }
    }
    fprintf(stderr, "parity: shutting down: finishing in-flight requests\n");
    srv_models_drain(s, s->o.shutdown_grace_s);
    http_stop(s->http, s->o.shutdown_grace_s);
    s->http = NULL;
out:
    srv_ft_stop(s);     /* the worker uses the served models' tokenizers */
    srv_models_stop(s);
    srv_ft_free(s);     /* the adapters outlive every sequence */
    server_free(s);
    if (lock_fd >= 0) close(lock_fd); /* the next server may start */
    return rc;
}

/* Config file ---------------------------------------------------------------------------------- */

int pt_serve_config_load(const char *path, pt_serve_options *o, pt_err *err) {
    char *text;
    size_t len;
    int rc = pt_read_file(path, 1u << 20, &text, &len, err);
    if (rc) return rc;
    ynode *root = ytree_parse(text, len, path, err);
    free(text);
    if (!root) return err ? err->code : PT_EFORMAT;
    if (root->type != YN_MAP) {
        ytree_free(root);
        return pt_errf(err, PT_EFORMAT, "%s:%d:%d: the config must be a mapping of option: value", path, root->line,
                       root->col);
    }
    /* Strings in o point into this copy, which lives as long as the process (options are
     * read once at start-up). */
    for (size_t i = 0; i + 1 < root->n && !rc; i += 2) {
        const ynode *k = root->items[i], *v = root->items[i + 1];
        if (k->type != YN_SCALAR || v->type != YN_SCALAR) {
            rc = pt_errf(err, PT_EFORMAT, "%s:%d:%d: expected 'option: value'", path, k->line, k->col);
            break;
        }
        uint64_t n = 0;
        int is_num = pt_parse_u64(v->str, &n) == 0;
        const char *key = k->str;
#define NUM(name, field, lo, hi)                                                                             \
    else if (!strcmp(key, name)) {                                                                           \
        if (!is_num || n + 1 < (uint64_t)(lo) + 1 || n > (uint64_t)(hi))                                                                 \
            rc = pt_errf(err, PT_EFORMAT, "%s:%d:%d: %s: expected a whole number in [%llu, %llu]", path, v->line, \
                         v->col, name, (unsigned long long)(lo), (unsigned long long)(hi));                  \
        else                                                                                                 \
            o->field = (__typeof__(o->field))n;                                                              \
    }
#define STR(name, field)                         \
    else if (!strcmp(key, name)) {               \
        o->field = strdup(v->str);               \
        if (!o->field) rc = pt_errf(err, PT_ENOMEM, "out of memory"); \
    }
        if (0) {
        }
        STR("data", data_dir)
        STR("host", host)
        STR("models_dir", models_dir)
        else if (!strcmp(key, "receipts")) {
            if (pt_serve_parse_receipts(v->str, o))
                rc = pt_errf(err, PT_EFORMAT, "%s:%d:%d: receipts: expected 'async' or 'durable'", path, v->line, v->col);
        }
        NUM("port", port, 0, 65535)
        NUM("threads", threads, 1, 256)
        NUM("connection_limit", connection_limit, 1, 100000)
        NUM("timeout", timeout_s, 1, 3600)
        NUM("header_timeout", header_timeout_s, 1, 3600)
        NUM("per_ip_connection_limit", per_ip_connection_limit, 0, 100000)
        NUM("min_body_rate", min_body_rate, 0, 1u << 30)
        NUM("max_body", max_body, 1024, 1u << 30)
        NUM("max_file", max_file, 1024, 1ull << 34)
        NUM("max_tokens", max_tokens, 1, 1 << 20)
        NUM("max_batch", max_batch, 1, 4096)
        NUM("queue_limit", queue_limit, 1, 1 << 20)
        NUM("max_download", max_download, 1024, 1ull << 34)
        NUM("shutdown_grace", shutdown_grace_s, 0, 3600)
        else rc = pt_errf(err, PT_EFORMAT,
                          "%s:%d:%d: unknown option '%s' (data, host, port, threads, connection_limit, timeout, "
                          "header_timeout, per_ip_connection_limit, min_body_rate, "
                          "max_body, max_file, max_tokens, max_batch, queue_limit, max_download, shutdown_grace, models_dir, "
                          "receipts)",
                          path, k->line, k->col, key);
#undef NUM
#undef STR
    }
    ytree_free(root);
    return rc;
}
