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

typedef struct route_stats {
    char label[64];
    atomic_ullong by_code[N_CODES + 5]; /* + 1xx..5xx classes */
    atomic_ullong buckets[PT_METRICS_BUCKETS];
    atomic_ullong count;
    atomic_ullong sum_us;
} route_stats;

struct pt_metrics {
    route_stats routes[PT_METRICS_MAX_ROUTES];
    int n_routes;
    atomic_ullong prompt_tokens, completion_tokens;
    double start;
};

pt_metrics *pt_metrics_new(void) {
    pt_metrics *m = calloc(1, sizeof *m);
    if (m) m->start = pt_now();
    return m;
}

void pt_metrics_free(pt_metrics *m) { free(m); }

int pt_metrics_route(pt_metrics *m, const char *label) {
    for (int i = 0; i < m->n_routes; i++)
        if (!strcmp(m->routes[i].label, label)) return i;
    if (m->n_routes == PT_METRICS_MAX_ROUTES) return PT_METRICS_MAX_ROUTES - 1;
    snprintf(m->routes[m->n_routes].label, sizeof m->routes[0].label, "%s", label);
    return m->n_routes++;
}

void pt_metrics_observe(pt_metrics *m, int route, int status, double seconds) {
    if (route < 0 || route >= m->n_routes) return;
    route_stats *r = &m->routes[route];
    int slot = -1;
    for (int i = 0; i < N_CODES; i++)
        if (codes[i] == status) slot = i;
    if (slot < 0 && status >= 100 && status < 600) slot = N_CODES + status / 100 - 1;
    if (slot >= 0) atomic_fetch_add_explicit(&r->by_code[slot], 1, memory_order_relaxed);
    for (int i = 0; i < PT_METRICS_BUCKETS; i++)
        if (seconds <= bucket_le[i]) atomic_fetch_add_explicit(&r->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->sum_us, (unsigned long long)(seconds * 1e6), memory_order_relaxed);
}

void pt_metrics_tokens(pt_metrics *m, uint64_t prompt, uint64_t completion) {
    atomic_fetch_add_explicit(&m->prompt_tokens, prompt, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->completion_tokens, completion, memory_order_relaxed);
}

int pt_metrics_render(pt_metrics *m, pt_buf *o, pt_metrics_gauges_fn gauges, void *ctx) {
    int rc = 0;
    rc |= pt_buf_puts(o, "# HELP parity_http_requests_total HTTP requests by route and status.\n"
                         "# TYPE parity_http_requests_total counter\n");
    for (int i = 0; i < m->n_routes; i++) {
        route_stats *r = &m->routes[i];
        for (int k = 0; k < N_CODES + 5; k++) {
            unsigned long long v = atomic_load(&r->by_code[k]);
            if (!v) continue;
            char code[8];
            if (k < N_CODES) snprintf(code, sizeof code, "%d", codes[k]);
            else snprintf(code, sizeof code, "%dxx", k - N_CODES + 1);
            rc |= pt_buf_printf(o, "parity_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n", r->label, code, v);
        }
    }
    rc |= pt_buf_puts(o, "# HELP parity_http_request_duration_seconds Request latency by route.\n"
                         "# TYPE parity_http_request_duration_seconds histogram\n");
    for (int i = 0; i < m->n_routes; i++) {
        route_stats *r = &m->routes[i];
        unsigned long long n = atomic_load(&r->count);
        if (!n) continue;
        for (int b = 0; b < PT_METRICS_BUCKETS; b++)
            rc |= pt_buf_printf(o, "parity_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                                r->label, bucket_le[b], (unsigned long long)atomic_load(&r->buckets[b]));
        rc |= pt_buf_printf(o, "parity_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                            r->label, n);
        rc |= pt_buf_printf(o, "parity_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", r->label,
                            (double)atomic_load(&r->sum_us) / 1e6);
        rc |= pt_buf_printf(o, "parity_http_request_duration_seconds_count{route=\"%s\"} %llu\n", r->label, n);
    }
    unsigned long long pt = atomic_load(&m->prompt_tokens), ct = atomic_load(&m->completion_tokens);
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
