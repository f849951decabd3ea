/* server_internal.h — what the server's source files share (not a public API). */
#ifndef PARITY_SERVER_INTERNAL_H
#define PARITY_SERVER_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "policy/policy.h"
#include "server/http.h"
#include "server/keys.h"
#include "server/metrics.h"
#include "server/ratelimit.h"
#include "server/receipts.h"
#include "server/server.h"
#include "store/store.h"
#include "tlog/tlog.h"

typedef struct pt_server pt_server;
typedef struct call call;

/* Authentication a route needs. */
enum { AUTH_NONE = 0, AUTH_KEY = 1, AUTH_ADMIN = 2 };

typedef int (*route_fn)(pt_server *s, call *c, http_resp *resp);

typedef struct route {
    const char *method;
    const char *pattern;   /* "/v1/models/{}" — {} matches one segment; a trailing "*" the rest */
    int auth;
    route_fn fn;
    const char *label;     /* metrics label */
    int audited;           /* appends an audit receipt */
    int metric;            /* index in the metrics table (filled at start) */
} route;

/* The current policy and everything derived from it; replaced whole on apply (readers hold a
 * reference while they use it). */
/* GET /v1/models's body for one organisation, kept while nothing it depends on changes: the
 * policy revision (the cache lives in its policy_ref), the time (valid before `until`, the
 * policy's next grant/forbid boundary) and the organisation's fine-tuned models (ft_version).
 * Immutable once published, so requests read it without a lock; a replaced body stays (on the
 * `older` chain) until the policy_ref is freed, because a request may still be copying it.
 * Replacements are rare (a time boundary, a fine-tuned model), one per change. */
typedef struct models_body {
    struct models_body *older;
    int64_t until;
    uint64_t ft_version;
    uint8_t sha256[32]; /* of json: the audit entry's response hash */
    size_t len;
    char json[];
} models_body;

/* The current policy and everything derived from it; replaced whole on apply (readers hold a
 * reference while they use it). */
typedef struct policy_ref {
    pt_policy *p;
    char digest[72];
    int64_t seq;
    atomic_int refs;                /* s->policy's reference and the requests' */
    pthread_mutex_t cache_mu;       /* serialises replacements in models */
    _Atomic(models_body *) *models; /* [p->n_orgs] */
} policy_ref;

struct pt_server {
    pt_serve_options o;
    char *data_dir;
    pt_store *store;
    tlog *policy_log, *audit_log;
    pt_receipts *receipts;
    pt_ratelimit *rl;
    pt_metrics *metrics;
    http_server *http;
    pthread_mutex_t mu;        /* guards policy, keys cache */
    policy_ref *policy;        /* the revision in force now (srv_load_policy) */
    pthread_mutex_t reload_mu; /* serialises srv_load_policy */
    _Atomic int64_t policy_next; /* when the revision in force next changes (a later-dated one) */
    uint64_t policy_log_seen;  /* the policy log's size when it was loaded */
    char *served_declared;     /* the models list of the last models_served entry (JSON) */
    struct pt_gap_meter *meter;  /* the audit log measured so far, for /v1/parity (under report_mu) */
    double report_at;          /* pt_now() of the last report computation */
    int64_t keys_version;      /* pt_store_keys_version when the key cache was filled */
    pt_key_record *keys;       /* the key cache, sorted by id */
    size_t n_keys;
    struct route *routes;
    size_t n_routes;
    void *engine;              /* the model registry and scheduler (server_models.c) */
    void *ft;                  /* files and fine-tuning jobs (server_finetune.c) */
    int unmatched_metric;
    uint8_t empty_sha256[32];  /* SHA-256 of no bytes */
    pthread_mutex_t report_mu; /* guards the cached parity report */
    json_t *report;
    uint64_t report_size;      /* policy log size it was computed at */
    int64_t report_until;      /* recomputed from then on (next day, or a revision's time) */
    pt_err report_err;         /* why the last computation failed (report NULL) */
    double report_failed_at;   /* pt_now() of that failure: retried at most once a second */
};

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
    void *job;                 /* engine work in flight */
    void (*job_free)(void *);
};

/* The model registry and engine scheduler (server_models.c): start loads the policy's models
 * that have weights; drain stops taking new work and finishes what is queued; stop frees. */
int srv_models_start(pt_server *s, pt_err *err);
void srv_models_drain(pt_server *s, unsigned grace_s);
/* Loads the models of policy p that have local weights and are not served yet (after a policy
 * revision is applied): returns {"loaded": [ids], "not_served": [{"id", "reason"}]}. */
json_t *srv_models_sync(pt_server *s, const pt_policy *p);
void srv_models_stop(pt_server *s);
/* The ids of the models this server runs now, in load order (a new array). */
json_t *srv_models_served(pt_server *s);
/* Appends {"type":"models_served","time":MINUTE,"models":[ids]} to the audit log when the served
 * set differs from the last one declared by this process (served.c): what the parity report's
 * non-release dimension reads. Call with reload_mu held, or before the server answers. */
void srv_declare_served(pt_server *s);

/* What server_finetune.c needs of a served model (NULL when id is not served here; the
 * tokenizer's id may be NULL: any served model's). Valid until srv_models_stop. */
struct pt_tokenizer;
struct pt_config;
struct pt_lora;
const struct pt_tokenizer *srv_model_tokenizer(pt_server *s, const char *id);
const struct pt_config *srv_model_config(pt_server *s, const char *id);
const char *srv_model_path(pt_server *s, const char *id);

/* Files and fine-tuning jobs (server_finetune.c): start reads the jobs from the store (a job
 * that was running is failed, queued ones are queued again) and starts the worker; stop
 * interrupts the running job and joins the worker (before srv_models_stop); free frees the
 * adapter cache (after srv_models_stop). All NULL-state safe. */
int srv_ft_start(pt_server *s, pt_err *err);
/* The caller organisation's fine-tuned models whose base it may sample now, as OpenAI model
 * objects (with "parent": the base). From memory: no store query. */
json_t *srv_ft_models(pt_server *s, const pt_policy *p, const char *org, int64_t now, uint64_t *version);
/* Changes with every change to what srv_ft_models can list (a job's model added). The version
 * srv_ft_models returned its list at goes in *version (NULL: not wanted). */
uint64_t srv_ft_models_version(pt_server *s);
void srv_ft_stop(pt_server *s);
void srv_ft_free(pt_server *s);
/* Resolves a fine-tuned model id "ft:BASE:ORG:SUFFIX:JOBID" for the caller's organisation:
 * 1 with base (the model the policy decides on) and *lora (cached, valid until srv_ft_stop)
 * filled; 0 with a 404 in resp when there is no such model for this organisation. */
int srv_ft_resolve(pt_server *s, call *c, const char *name, char *base, size_t base_cap, const struct pt_lora **lora,
                   http_resp *resp);

/* Acquires / releases the current policy (never NULL after start). */
policy_ref *srv_policy_get(pt_server *s);
void srv_policy_put(pt_server *s, policy_ref *r);

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

/* Milliseconds the call's engine job waited in its model's queue before the scheduler admitted
 * it; -1 when the call ran no engine job, or it was never admitted. */
int64_t srv_job_queue_ms(const call *c);

/* A request's public audit entry as compact JSON text (a new NUL-terminated string; NULL when
 * out of memory or over TLOG_MAX_ENTRY), and its private part in *priv (for
 * pt_receipts_submit). resp_hash: SHA-256 of the response bytes. */
char *srv_audit_text(call *c, int status, const uint8_t resp_hash[32], pt_receipt_private *priv);

/* Parses the JSON request body (depth/size capped); on error fills resp with 400 and returns NULL. */
json_t *srv_body_json(call *c, http_resp *resp);

#endif
