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
    struct pt_witnessing *witnessing; /* witnessing.h: cosigns both logs' checkpoints */
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
    void *engine;              /* the model registry and its schedulers (registry.c) */
    struct srv_backend *backend; /* where models run (backend.h; today the in-process one) */
    void *ft;                  /* files and fine-tuning jobs (server_finetune.c) */
    int unmatched_metric;
    uint8_t empty_sha256[32];  /* SHA-256 of no bytes */
    pthread_mutex_t report_mu; /* guards the cached parity report */
    json_t *report;
    struct pt_policy_history *report_hist; /* the verified, dated policy history the report was
                                            * computed from (at report_size, report_cosigned) */
    uint64_t report_size;      /* policy log size it was computed at */
    uint64_t report_cosigned;  /* and the size its witnesses had cosigned then (dates change) */
    int64_t report_until;      /* recomputed from then on (next day, or a revision's time) */
    pt_err report_err;         /* why the last computation failed (report NULL) */
    double report_failed_at;   /* pt_now() of that failure: retried at most once a second */
};

/* Appends {"type":"models_served","time":MINUTE,"models":[ids]} to the audit log when the served
 * set differs from the last one declared by this process (served.c): what the parity report's
 * non-release dimension reads. Call with reload_mu held, or before the server answers. */
void srv_declare_served(pt_server *s);

#endif
