/* see metrics.h */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "server/metrics.h"

static const double bucket_le[PT_METRICS_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                     0.05,   0.1,   0.25,   0.5,   1,    5};
/* Status codes tracked individually; others are counted under their class. */
static const int codes[] = {200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 503};
#define N_CODES (int)(sizeof codes / sizeof codes[0])

/* Counters are kept in SHARDS copies, each thread writing one (chosen on its first request),
 * so that the pool's threads do not pull the same cache lines from each other's cores with
 * every request; a scrape adds the shards. A histogram observation increments one bucket (the
 * first whose bound holds it; none past the last): the cumulative counts Prometheus wants are
 * summed at render time. */
#define SHARDS 4

typedef struct route_counts {
    atomic_ullong by_code[N_CODES + 5]; /* + 1xx..5xx classes */
    atomic_ullong buckets[PT_METRICS_BUCKETS];
    atomic_ullong count;
    atomic_ullong sum_us;
} route_counts;

typedef struct shard {
    route_counts routes[PT_METRICS_MAX_ROUTES];
    atomic_ullong prompt_tokens, completion_tokens;
} shard;

struct pt_metrics {
    char labels[PT_METRICS_MAX_ROUTES][64];
    int n_routes;
    double start;
    atomic_uint next_shard;
    shard shards[SHARDS];
};

pt_metrics *pt_metrics_new(void) {
    pt_metrics *m = calloc(1, sizeof *m);
    if (m) m->start = pt_now();
    return m;
}

void pt_metrics_free(pt_metrics *m) { free(m); }

int pt_metrics_route(pt_metrics *m, const char *label) {
    for (int i = 0; i < m->n_routes; i++)
        if (!strcmp(m->labels[i], label)) return i;
    if (m->n_routes == PT_METRICS_MAX_ROUTES) return PT_METRICS_MAX_ROUTES - 1;
    snprintf(m->labels[m->n_routes], sizeof m->labels[0], "%s", label);
    return m->n_routes++;
}

static shard *my_shard(pt_metrics *m) {
    static _Thread_local int ix = -1;
    if (ix < 0) ix = (int)(atomic_fetch_add_explicit(&m->next_shard, 1, memory_order_relaxed) % SHARDS);
    return &m->shards[ix];
}

static void add(atomic_ullong *c, unsigned long long v) { atomic_fetch_add_explicit(c, v, memory_order_relaxed); }

/* A route's counters summed over the shards (plain numbers). */
typedef struct route_sum {
    unsigned long long by_code[N_CODES + 5], buckets[PT_METRICS_BUCKETS], count, sum_us;
} route_sum;

static void sum_route(pt_metrics *m, int route, route_sum *o) {
    memset(o, 0, sizeof *o);
    for (int i = 0; i < SHARDS; i++) {
        route_counts *r = &m->shards[i].routes[route];
        for (int k = 0; k < N_CODES + 5; k++) o->by_code[k] += atomic_load(&r->by_code[k]);
        /* buckets before the count: a request observed meanwhile shows in the count, never in
         * a bucket without it (so the histogram stays consistent) */
        for (int b = 0; b < PT_METRICS_BUCKETS; b++) o->buckets[b] += atomic_load(&r->buckets[b]);
        o->count += atomic_load(&r->count);
        o->sum_us += atomic_load(&r->sum_us);
    }
}

void pt_metrics_observe(pt_metrics *m, int route, int status, double seconds) {
    if (route < 0 || route >= m->n_routes) return;
    route_counts *r = &my_shard(m)->routes[route];
    int slot = -1;
    for (int i = 0; i < N_CODES && slot < 0; i++)
        if (codes[i] == status) slot = i;
    if (slot < 0 && status >= 100 && status < 600) slot = N_CODES + status / 100 - 1;
    if (slot >= 0) add(&r->by_code[slot], 1);
    for (int i = 0; i < PT_METRICS_BUCKETS; i++)
        if (seconds <= bucket_le[i]) {
            add(&r->buckets[i], 1);
            break;
        }
    add(&r->count, 1);
    add(&r->sum_us, (unsigned long long)(seconds * 1e6));
}

void pt_metrics_tokens(pt_metrics *m, uint64_t prompt, uint64_t completion) {
    shard *sh = my_shard(m);
    add(&sh->prompt_tokens, prompt);
    add(&sh->completion_tokens, completion);
}

int pt_metrics_render(pt_metrics *m, pt_buf *o, pt_metrics_gauges_fn gauges, void *ctx) {
    int rc = 0;
    route_sum *sums = calloc((size_t)(m->n_routes ? m->n_routes : 1), sizeof *sums);
    if (!sums) return PT_ENOMEM;
    for (int i = 0; i < m->n_routes; i++) sum_route(m, i, &sums[i]);
    rc |= pt_buf_puts(o, "# HELP parity_http_requests_total HTTP requests by route and status.\n"
                         "# TYPE parity_http_requests_total counter\n");
    for (int i = 0; i < m->n_routes; i++) {
        for (int k = 0; k < N_CODES + 5; k++) {
            unsigned long long v = sums[i].by_code[k];
            if (!v) continue;
            char code[8];
            if (k < N_CODES) snprintf(code, sizeof code, "%d", codes[k]);
            else snprintf(code, sizeof code, "%dxx", k - N_CODES + 1);
            rc |= pt_buf_printf(o, "parity_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n", m->labels[i],
                                code, v);
        }
    }
    rc |= pt_buf_puts(o, "# HELP parity_http_request_duration_seconds Request latency by route.\n"
                         "# TYPE parity_http_request_duration_seconds histogram\n");
    for (int i = 0; i < m->n_routes; i++) {
        const route_sum *r = &sums[i];
        if (!r->count) continue;
        unsigned long long cum = 0;
        for (int b = 0; b < PT_METRICS_BUCKETS; b++) {
            cum += r->buckets[b];
            rc |= pt_buf_printf(o, "parity_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                                m->labels[i], bucket_le[b], cum);
        }
        unsigned long long n = r->count > cum ? r->count : cum;
        rc |= pt_buf_printf(o, "parity_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                            m->labels[i], n);
        rc |= pt_buf_printf(o, "parity_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", m->labels[i],
                            (double)r->sum_us / 1e6);
        rc |= pt_buf_printf(o, "parity_http_request_duration_seconds_count{route=\"%s\"} %llu\n", m->labels[i], n);
    }
    free(sums);
    unsigned long long pt = 0, ct = 0;
    for (int i = 0; i < SHARDS; i++) {
        pt += atomic_load(&m->shards[i].prompt_tokens);
        ct += atomic_load(&m->shards[i].completion_tokens);
    }
    double up = pt_now() - m->start;
    rc |= pt_buf_printf(o,
                        "# HELP parity_tokens_total Tokens processed.\n# TYPE parity_tokens_total counter\n"
                        "parity_tokens_total{kind=\"prompt\"} %llu\nparity_tokens_total{kind=\"completion\"} %llu\n"
                        "# HELP parity_completion_tokens_per_second Completion tokens per second since start.\n"
                        "# TYPE parity_completion_tokens_per_second gauge\nparity_completion_tokens_per_second %.3f\n"
                        "# HELP parity_uptime_seconds Seconds since the server started.\n"
                        "# TYPE parity_uptime_seconds gauge\nparity_uptime_seconds %.3f\n",
                        pt, ct, up > 0 ? (double)ct / up : 0.0, up);
    if (gauges) gauges(ctx, o);
    return rc ? PT_ENOMEM : PT_OK;
}
