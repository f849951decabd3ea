/* metrics.h — Prometheus text-format metrics: requests by route and status, latency
 * histograms per route, tokens generated, and gauges read at scrape time. Lock-free counters
 * (atomics); routes are a small fixed set registered at start-up. */
#ifndef PARITY_SERVER_METRICS_H
#define PARITY_SERVER_METRICS_H

#include <stdint.h>

#include "common/buf.h"

#define PT_METRICS_MAX_ROUTES 48
#define PT_METRICS_BUCKETS 12

typedef struct pt_metrics pt_metrics;

pt_metrics *pt_metrics_new(void);
void pt_metrics_free(pt_metrics *m);
/* Registers a route label; returns its index (or the existing one). Not thread-safe: call at
 * start-up. */
int pt_metrics_route(pt_metrics *m, const char *label);
/* Records one finished request. */
void pt_metrics_observe(pt_metrics *m, int route, int status, double seconds);
/* Adds generated / prompt tokens. */
void pt_metrics_tokens(pt_metrics *m, uint64_t prompt, uint64_t completion);
/* A gauge: name, help and a value, appended by the caller during pt_metrics_render. */
typedef void (*pt_metrics_gauges_fn)(void *ctx, pt_buf *out);
/* Renders everything in Prometheus text exposition format 0.0.4. */
int pt_metrics_render(pt_metrics *m, pt_buf *out, pt_metrics_gauges_fn gauges, void *ctx);

#endif
