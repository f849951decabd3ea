/* see pipeline.h — one request's way through the server, the same for every route:
 *
 *   srv_begin_early / srv_handle
 *     route match (404 / 405)  →  authenticate (401; acquires the policy the request holds)
 *     →  admin routes: the key must be an admin's (403)
 *     →  the route's handler: srv_body_json, srv_decide_use (the charge table), srv_limit_request
 *        and srv_limit_tokens (429), then its work (possibly deferred to a backend job)
 *     →  audited routes: the receipt (srv_audit_text, submit_receipt), held back until durable
 *        in durable mode
 *
 * Sections: policy references, routing, authentication, decisions, rate limits, the JSON body,
 * receipts, dispatch. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/json.h"
#include "common/sha256.h"
#include "common/util.h"
#include "policy/history.h"
#include "server/pipeline.h"
#include "server/registry.h"

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

/* see pipeline.h */
void srv_policy_set(pt_server *s, pt_policy *p, const char *digest, int64_t seq) {
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
/* see pipeline.h */
int srv_load_policy(pt_server *s, pt_err *err) {
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

/* Rate limits ---------------------------------------------------------------------------------- */

/* The one 429 of every route: Retry-After, the audit entry's reason, an OpenAI-shaped error. */
static void limit_refused(call *c, http_resp *resp, const char *type, int64_t reset_s, const char *msg) {
    http_set_header_i64(resp, "Retry-After", reset_s);
    c->decision_allow = 0;
    snprintf(c->reason, sizeof c->reason, "limit_exceeded");
    http_error(resp, 429, type, "rate_limit_exceeded", NULL, "%s", msg);
}

int srv_limit_request(pt_server *s, call *c, const char *model, http_resp *resp) {
    pt_limits lim;
    c->rl_now = pt_unix_time();
    pt_policy_effective(c->pol->p, c->key.org, model, c->rl_now, NULL, &lim);
    c->rl_tokens_per_day = lim.tokens_per_day > 0 ? lim.tokens_per_day : 0;
    c->has_rl = 1;
    if (pt_ratelimit_request(s->rl, c->key.org, model, lim.requests_per_minute > 0 ? lim.requests_per_minute : 0,
                             c->rl_now, &c->rl_req))
        return 1;
    /* the token budget's state too, for its x-ratelimit-* headers (nothing is charged) */
    pt_ratelimit_tokens_ok(s->rl, c->key.org, model, c->rl_tokens_per_day, 0, c->rl_now, &c->rl_tok);
    char msg[400];
    snprintf(msg, sizeof msg, "Rate limit reached for %s: %lld requests per minute. Retry in %llds.", model,
             (long long)c->rl_req.limit, (long long)c->rl_req.reset_s);
    limit_refused(c, resp, "requests", c->rl_req.reset_s, msg);
    return 0;
}

int srv_limit_tokens(pt_server *s, call *c, const char *model, int64_t want, http_resp *resp) {
    if (pt_ratelimit_tokens_ok(s->rl, c->key.org, model, c->rl_tokens_per_day, want, c->rl_now, &c->rl_tok)) return 1;
    char msg[400];
    snprintf(msg, sizeof msg, "Token limit reached for %s: %lld tokens per day, %lld left, this request may use %lld.",
             model, (long long)c->rl_tok.limit, (long long)c->rl_tok.remaining, (long long)want);
    limit_refused(c, resp, "tokens", c->rl_tok.reset_s, msg);
    return 0;
}

void srv_rl_headers(http_resp *resp, const call *c) {
    if (!c->has_rl) return;
    char d[32];
    if (c->rl_req.limit) {
        http_set_header_i64(resp, "x-ratelimit-limit-requests", c->rl_req.limit);
        http_set_header_i64(resp, "x-ratelimit-remaining-requests", c->rl_req.remaining);
        pt_format_duration(c->rl_req.reset_s, d, sizeof d);
        http_set_header(resp, "x-ratelimit-reset-requests", "%s", d);
    }
    if (c->rl_tok.limit) {
        http_set_header_i64(resp, "x-ratelimit-limit-tokens", c->rl_tok.limit);
        http_set_header_i64(resp, "x-ratelimit-remaining-tokens", c->rl_tok.remaining);
        pt_format_duration(c->rl_tok.reset_s, d, sizeof d);
        http_set_header(resp, "x-ratelimit-reset-tokens", "%s", d);
    }
}

/* The JSON body ------------------------------------------------------------------------------- */

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

/* Text ----------------------------------------------------------------------------------------- */

json_t *srv_json_text(const char *s, size_t n) {
    pt_buf b;
    pt_buf_init(&b, n * 3 + 16);
    pt_utf8_clean(s, n, &b);
    json_t *j = json_stringn(b.data ? b.data : "", b.len);
    pt_buf_free(&b);
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
    int64_t queue_ms = c->queue_ms ? __atomic_load_n(c->queue_ms, __ATOMIC_RELAXED) : -1;
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

/* Dispatch ------------------------------------------------------------------------------------- */

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

int srv_begin_early(void *ctx, http_req *req, http_resp *resp) {
    return begin_call(ctx, req, resp) ? HTTP_CONTINUE : HTTP_DONE;
}

int srv_handle(void *ctx, http_req *req, http_resp *resp) {
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

size_t srv_body_cap(void *ctx, const char *method, const char *path) {
    pt_server *s = ctx;
    if (!strcmp(method, "GET") || !strcmp(method, "HEAD") || !strcmp(method, "DELETE")) return 0;
    if (!strcmp(path, "/v1/files")) return s->o.max_file;
    return s->o.max_body;
}

void srv_observe(void *ctx, const http_req *req, int status, double seconds) {
    pt_server *s = ctx;
    const call *c = req->user;
    int metric = c && c->rt ? c->rt->metric : s->unmatched_metric;
    pt_metrics_observe(s->metrics, metric, status, seconds);
}
