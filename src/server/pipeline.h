/* pipeline.h — the per-request pipeline every route runs through (pipeline.c): route match,
 * authentication (with the policy reference the request holds), the policy decision through
 * policy.h's charge table, rate limits and their one 429, the JSON body, and the audit receipt.
 *
 * The HTTP layer calls srv_handle for every request (srv_begin_early before a body arrives);
 * a route's handler (route_fn) gets the call with its caller authenticated and calls
 * srv_decide_use / srv_limit_request / srv_limit_tokens for what it uses; the pipeline appends
 * the receipt when the handler is done. Nothing here knows an endpoint or a model. */
#ifndef PARITY_SERVER_PIPELINE_H
#define PARITY_SERVER_PIPELINE_H

#include "server/server_internal.h"

/* Per-request state (req->user). */
struct call {
    pt_server *s;
    http_req *req;
    const route *rt;
    char params[2][256];       /* the {} segments of the path, URL-decoded */
    int n_params;
    pt_key_record key;         /* the caller, when authenticated */
    int authed;
    policy_ref *pol;           /* held for the whole request */
    int phase;                 /* 0 new; 1 waiting for the engine; 2 waiting for the receipt */
    http_resp *held;           /* durable receipts: the response, held back until its receipt is
                                * durable (allocated then: 5 KiB a request would zero otherwise) */
    /* audit fields */
    char model[128], variant[64];
    pt_capset caps_used;
    int decision_allow;
    char reason[64];
    int64_t prompt_tokens, completion_tokens;
    uint64_t receipt_index;
    uint8_t salt[32];          /* the request's secret salt (audited routes) */
    int resp_hashed;           /* the handler knows the body's SHA-256 (a cached body): */
    uint8_t resp_sha256[32];
    int receipt_rc;
    pt_rl_status rl_req, rl_tok; /* rate-limit state for the x-ratelimit-* headers */
    int has_rl;
    int64_t rl_now, rl_tokens_per_day; /* srv_limit_request's time and the tokens-per-day limit it found */
    void *job;                 /* engine work in flight */
    void (*job_free)(void *);
    const int64_t *queue_ms;   /* the job's ms in its model's queue (-1 until admitted; atomic), or NULL */
};

/* Acquires / releases the current policy (never NULL after start). */
policy_ref *srv_policy_get(pt_server *s);
void srv_policy_put(pt_server *s, policy_ref *r);
/* Installs p (taken over) as the current policy. */
void srv_policy_set(pt_server *s, pt_policy *p, const char *digest, int64_t seq);
/* The policy in force now (pt_policy_in_force: the one rule the report, `policy explain --data`
 * and /v1/access share), installed as s->policy, and when that next changes in s->policy_next.
 * At start (s->engine NULL) it only loads; later (a revision's time has come, or one was
 * appended) it also loads the models the revision adds before installing it, and does nothing
 * when the moment has not come (another thread switched first). Serialised by reload_mu; a
 * failure keeps the policy installed before and is retried a second later. */
int srv_load_policy(pt_server *s, pt_err *err);

/* Decides (caller's org, model, variant, cap) under the call's policy and records it for the
 * audit entry. On deny fills resp with 403 (or 404 for an unknown model) in OpenAI's shape and
 * returns 0; returns 1 on allow. */
int srv_decide(pt_server *s, call *c, const char *model, const char *variant, pt_cap cap, const pt_usage *u,
               http_resp *resp);

/* Decides every row that `use` is charged (policy.h's pt_policy_charge: one table for every
 * route), in order, with srv_decide; k is the top-k asked or the vocabulary size. Returns 1 when
 * every row is allowed, else 0 with the first denial in resp. */
int srv_decide_use(pt_server *s, call *c, const char *model, const char *variant, pt_use use, int64_t k,
                   http_resp *resp);

/* A request's public audit entry as compact JSON text (a new NUL-terminated string; NULL when
 * out of memory or over TLOG_MAX_ENTRY), and its private part in *priv (for
 * pt_receipts_submit). resp_hash: SHA-256 of the response bytes. */
char *srv_audit_text(call *c, int status, const uint8_t resp_hash[32], pt_receipt_private *priv);

/* Parses the JSON request body (depth/size capped); on error fills resp with 400 and returns NULL. */
json_t *srv_body_json(call *c, http_resp *resp);

/* A JSON string of text made valid UTF-8 (invalid sequences become U+FFFD). */
json_t *srv_json_text(const char *s, size_t n);

/* Rate limits, for every route that runs a model: the request counter of (caller's
 * organisation, model) under the limits its grants give now. 1 when the request may go on;
 * else 0 with the 429 in resp (Retry-After, the audit reason "limit_exceeded"). Both limits'
 * state is kept in the call for the x-ratelimit-* headers (srv_rl_headers). */
int srv_limit_request(pt_server *s, call *c, const char *model, http_resp *resp);
/* The tokens-per-day budget, after srv_limit_request: 1 when `want` tokens fit what is left
 * today; else 0 with the 429 in resp. */
int srv_limit_tokens(pt_server *s, call *c, const char *model, int64_t want, http_resp *resp);
/* The x-ratelimit-* headers of the call's limits (nothing when no limit was looked at). */
void srv_rl_headers(http_resp *resp, const call *c);

/* The HTTP layer's callbacks (http_options: handler, early, body_cap, observer; ctx is the
 * pt_server). */
int srv_handle(void *ctx, http_req *req, http_resp *resp);
int srv_begin_early(void *ctx, http_req *req, http_resp *resp);
size_t srv_body_cap(void *ctx, const char *method, const char *path);
void srv_observe(void *ctx, const http_req *req, int status, double seconds);

#endif
