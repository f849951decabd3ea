/* Tests for src/server/metrics.c: observations from several threads (so several counter
 * shards) add up in the rendered text; histogram buckets are cumulative, +Inf equals _count,
 * status codes are counted individually or by class; tokens add up. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "server/metrics.h"
#include "test.h"

#define THREADS 6
#define PER_THREAD 1000

typedef struct worker {
    pt_metrics *m;
    int route;
} worker;

/* Each thread: PER_THREAD requests; status 200 except every 10th (404) and every 25th (418,
 * counted as 4xx); latency i % 4 → 0.0002, 0.002, 0.02, 7 seconds. */
static const double lat[4] = {0.0002, 0.002, 0.02, 7.0};

static void *work(void *arg) {
    worker *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        int status = i % 25 == 0 ? 418 : i % 10 == 0 ? 404 : 200;
        pt_metrics_observe(w->m, w->route, status, lat[i % 4]);
    }
    pt_metrics_tokens(w->m, 3, 5);
    return NULL;
}

/* The value of the line that starts with `series` (exactly, then a space); -1 when absent. */
static double value(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ') return strtod(p + n + 1, NULL);
    return -1;
}

static void test_render(void) {
    pt_metrics *m = pt_metrics_new();
    CHECK(m != NULL);
    int r = pt_metrics_route(m, "models");
    int other = pt_metrics_route(m, "chat");
    CHECK(pt_metrics_route(m, "models") == r && other != r);
    pthread_t t[THREADS];
    worker w = {m, r};
    for (int i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, work, &w) == 0);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    pt_metrics_observe(m, 999, 200, 0.1); /* out of range: ignored */
    pt_buf b;
    pt_buf_init(&b, 1 << 20);
    CHECK(pt_metrics_render(m, &b, NULL, NULL) == 0);
    CHECK(pt_buf_append(&b, "", 1) == 0);
    const char *s = b.data;
    double total = THREADS * PER_THREAD;
    /* per thread: i%25==0 → 40 of 418; i%10==0 and not %25 → 100 - 20 = 80 of 404 */
    CHECK(value(s, "parity_http_requests_total{route=\"models\",status=\"4xx\"}") == THREADS * 40);
    CHECK(value(s, "parity_http_requests_total{route=\"models\",status=\"404\"}") == THREADS * 80);
    CHECK(value(s, "parity_http_requests_total{route=\"models\",status=\"200\"}") == THREADS * 880);
    CHECK(value(s, "parity_http_requests_total{route=\"chat\",status=\"200\"}") == -1);
    /* buckets: 0.0005 holds a quarter, 0.0025 half, 0.025 three quarters, 5 still three
     * quarters (7 s is beyond every bound), +Inf all */
    CHECK(value(s, "parity_http_request_duration_seconds_bucket{route=\"models\",le=\"0.0005\"}") == total / 4);
    CHECK(value(s, "parity_http_request_duration_seconds_bucket{route=\"models\",le=\"0.001\"}") == total / 4);
    CHECK(value(s, "parity_http_request_duration_seconds_bucket{route=\"models\",le=\"0.0025\"}") == total / 2);
    CHECK(value(s, "parity_http_request_duration_seconds_bucket{route=\"models\",le=\"0.025\"}") == total * 3 / 4);
    CHECK(value(s, "parity_http_request_duration_seconds_bucket{route=\"models\",le=\"5\"}") == total * 3 / 4);
    CHECK(value(s, "parity_http_request_duration_seconds_bucket{route=\"models\",le=\"+Inf\"}") == total);
    CHECK(value(s, "parity_http_request_duration_seconds_count{route=\"models\"}") == total);
    double sum = value(s, "parity_http_request_duration_seconds_sum{route=\"models\"}");
    double want = total / 4 * (0.0002 + 0.002 + 0.02 + 7.0);
    CHECK(sum > want * 0.999 && sum < want * 1.001);
    CHECK(value(s, "parity_http_request_duration_seconds_count{route=\"chat\"}") == -1);
    CHECK(value(s, "parity_tokens_total{kind=\"prompt\"}") == THREADS * 3);
    CHECK(value(s, "parity_tokens_total{kind=\"completion\"}") == THREADS * 5);
    pt_buf_free(&b);
    pt_metrics_free(m);
}

int main(void) {
    test_render();
    return test_summary("metrics");
}
