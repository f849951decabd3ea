/* see ratelimit.h */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/ratelimit.h"

enum { KIND_REQ = 0, KIND_TOK = 1 };

typedef struct counter {
    char org[128], model[128];
    int kind;
    int64_t window;
    int64_t count;
    int dirty;
    struct counter *next;
} counter;

#define RL_BUCKETS 4096

struct pt_ratelimit {
    pthread_mutex_t mu;
    pt_store *store;
    counter *b[RL_BUCKETS];
    size_t n;
};

static uint32_t rl_hash(const char *org, const char *model, int kind) {
    uint32_t h = 2166136261u ^ (uint32_t)kind;
    for (const char *p = org; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    h = (h ^ 0xff) * 16777619u;
    for (const char *p = model; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    return h % RL_BUCKETS;
}

/* The counter for (org, model, kind) in `window`; an older window's counter is reset. Caller
 * holds the mutex. NULL only on allocation failure. */
static counter *get(pt_ratelimit *r, const char *org, const char *model, int kind, int64_t window) {
    uint32_t h = rl_hash(org, model, kind);
    for (counter *c = r->b[h]; c; c = c->next) {
        if (c->kind == kind && !strcmp(c->org, org) && !strcmp(c->model, model)) {
            if (c->window != window) {
                if (c->window > window) return c; /* clock went back: keep the newer window */
                c->window = window;
                c->count = 0;
                c->dirty = 1;
            }
            return c;
        }
    }
    counter *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    snprintf(c->org, sizeof c->org, "%s", org);
    snprintf(c->model, sizeof c->model, "%s", model);
    c->kind = kind;
    c->window = window;
    c->next = r->b[h];
    r->b[h] = c;
    r->n++;
    return c;
}

int pt_ratelimit_open(pt_ratelimit **out, pt_store *store, pt_err *err) {
    pt_ratelimit *r = calloc(1, sizeof *r);
    if (!r) return pt_errf(err, PT_ENOMEM, "out of memory");
    pthread_mutex_init(&r->mu, NULL);
    r->store = store;
    pt_usage_row *rows;
    size_t n;
    int64_t day_start = (time(NULL) / 86400) * 86400;
    int rc = pt_store_usage_load(store, day_start, &rows, &n, err);
    if (rc) {
        pt_ratelimit_close(r);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        int kind = !strcmp(rows[i].kind, "tokens") ? KIND_TOK : KIND_REQ;
        counter *c = get(r, rows[i].org, rows[i].model, kind, rows[i].window);
        if (c && c->window == rows[i].window) c->count = rows[i].count;
    }
    free(rows);
    *out = r;
    return PT_OK;
}

void pt_ratelimit_close(pt_ratelimit *r) {
    if (!r) return;
    pt_ratelimit_flush(r, NULL);
    for (size_t i = 0; i < RL_BUCKETS; i++) {
        for (counter *c = r->b[i], *nx; c; c = nx) {
            nx = c->next;
            free(c);
        }
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int pt_ratelimit_request(pt_ratelimit *r, const char *org, const char *model, int64_t rpm, int64_t now,
                         pt_rl_status *st) {
    int64_t window = now / 60 * 60;
    pthread_mutex_lock(&r->mu);
    counter *c = get(r, org, model, KIND_REQ, window);
    int ok = !c || rpm <= 0 || c->count < rpm;
    if (ok && c) {
        c->count++;
        c->dirty = 1;
    }
    if (st) {
        st->limit = rpm > 0 ? rpm : 0;
        st->remaining = rpm > 0 && c ? (rpm - c->count > 0 ? rpm - c->count : 0) : 0;
        st->reset_s = window + 60 - now;
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

void pt_ratelimit_peek_requests(pt_ratelimit *r, const char *org, const char *model, int64_t rpm, int64_t now,
                                pt_rl_status *st) {
    int64_t window = now / 60 * 60;
    pthread_mutex_lock(&r->mu);
    counter *c = get(r, org, model, KIND_REQ, window);
    int64_t used = c ? c->count : 0;
    st->limit = rpm > 0 ? rpm : 0;
    st->remaining = rpm > 0 ? (rpm - used > 0 ? rpm - used : 0) : 0;
    st->reset_s = window + 60 - now;
    pthread_mutex_unlock(&r->mu);
}

int pt_ratelimit_tokens_ok(pt_ratelimit *r, const char *org, const char *model, int64_t per_day, int64_t want,
                           int64_t now, pt_rl_status *st) {
    int64_t window = now / 86400 * 86400;
    pthread_mutex_lock(&r->mu);
    counter *c = get(r, org, model, KIND_TOK, window);
    int64_t used = c ? c->count : 0;
    int ok = per_day <= 0 || used + want <= per_day;
    if (st) {
        st->limit = per_day > 0 ? per_day : 0;
        st->remaining = per_day > 0 ? (per_day - used > 0 ? per_day - used : 0) : 0;
        st->reset_s = window + 86400 - now;
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

void pt_ratelimit_add_tokens(pt_ratelimit *r, const char *org, const char *model, int64_t n, int64_t now) {
    pthread_mutex_lock(&r->mu);
    counter *c = get(r, org, model, KIND_TOK, now / 86400 * 86400);
    if (c) {
        c->count += n;
        c->dirty = 1;
    }
    pthread_mutex_unlock(&r->mu);
}

int64_t pt_ratelimit_tokens_used(pt_ratelimit *r, const char *org, const char *model, int64_t now) {
    pthread_mutex_lock(&r->mu);
    counter *c = get(r, org, model, KIND_TOK, now / 86400 * 86400);
    int64_t v = c ? c->count : 0;
    pthread_mutex_unlock(&r->mu);
    return v;
}

int pt_ratelimit_flush(pt_ratelimit *r, pt_err *err) {
    pthread_mutex_lock(&r->mu);
    size_t n = 0;
    pt_usage_row *rows = calloc(r->n ? r->n : 1, sizeof *rows);
    if (!rows) {
        pthread_mutex_unlock(&r->mu);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < RL_BUCKETS; i++) {
        for (counter *c = r->b[i]; c; c = c->next) {
            if (!c->dirty) continue;
            pt_usage_row *u = &rows[n++];
            snprintf(u->org, sizeof u->org, "%s", c->org);
            snprintf(u->model, sizeof u->model, "%s", c->model);
            snprintf(u->kind, sizeof u->kind, "%s", c->kind == KIND_TOK ? "tokens" : "requests");
            u->window = c->window;
            u->count = c->count;
            c->dirty = 0;
        }
    }
    pthread_mutex_unlock(&r->mu);
    int rc = pt_store_usage_save(r->store, rows, n, err);
    free(rows);
    return rc;
}
