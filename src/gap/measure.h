/* measure.h — the measured part of the parity report: how requests were actually answered,
 * computed from the public audit log alone (docs/policy.md, "The measured section").
 *
 * A meter is fed the audit log's entries in index order (their bytes, as the tiles hold them:
 * whoever holds a copy of the public log recomputes the same numbers), and summarised per model
 * and organisation class (insiders, outsiders: the public entry's org_class) into:
 *   requests served / denied / rate-limited / unavailable / other, p50 and p99 latency and
 *   queue wait of served requests (the entry's latency_ms, queue_ms), tokens served per UTC day
 *   (prompt + completion), the first served minute, and the capabilities served requests used;
 * and which models the server declared it serves (the latest models_served entry).
 *
 * An entry is classified by its public fields: served (decision allow, status 2xx),
 * rate_limited (status 429 or reason limit_exceeded), denied (any other deny), unavailable
 * (status 503: the model is not served, the queue is full), other (the rest, e.g. a 400).
 * Entries that are not request or models_served JSON objects (lost, log_recovery, garbage) are
 * counted and skipped. No I/O: the caller reads the log (a tlog_verify callback, or the server's
 * own log).
 */
#ifndef PARITY_GAP_MEASURE_H
#define PARITY_GAP_MEASURE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "policy/policy.h"

typedef struct pt_gap_meter pt_gap_meter;

enum { PT_GAP_INSIDERS = 0, PT_GAP_OUTSIDERS = 1, PT_GAP_CLASSES = 2 };

pt_gap_meter *pt_gap_meter_new(void);  /* NULL when out of memory */
void pt_gap_meter_free(pt_gap_meter *m); /* NULL is a no-op */
/* Feeds the next entry (index = the number fed so far). PT_OK, or PT_ENOMEM (the meter is then
 * unusable). */
int pt_gap_meter_add(pt_gap_meter *m, const uint8_t *data, size_t len);
/* Entries fed so far. */
uint64_t pt_gap_meter_entries(const pt_gap_meter *m);

/* One model x class, summarised. Latencies are -1 when no served request had one. */
typedef struct pt_gap_class {
    int64_t requests, served, denied, rate_limited, unavailable, other;
    int64_t latency_n, latency_p50, latency_p99;  /* ms, over served requests */
    int64_t queue_n, queue_p50, queue_p99;        /* ms, over served requests that queued */
    int64_t tokens, days, max_day_tokens;         /* served tokens, UTC days with any, the most in one */
    int64_t first_served;                         /* its minute, PT_TIME_MAX if none */
    int64_t caps_used[PT_CAP_COUNT];              /* served requests that used each capability */
} pt_gap_class;

typedef struct pt_gap_summary pt_gap_summary;
/* Sorts and summarises what m was fed (m is not changed). NULL when out of memory. */
pt_gap_summary *pt_gap_summarise(const pt_gap_meter *m);
void pt_gap_summary_free(pt_gap_summary *s);
/* The summary of model x class (all zero, first_served PT_TIME_MAX, when nothing was measured). */
pt_gap_class pt_gap_summary_class(const pt_gap_summary *s, const char *model, int cls);
/* 1 served, 0 not (the latest models_served entry does not list it), -1 no declaration. */
int pt_gap_summary_served(const pt_gap_summary *s, const char *model);
/* Mean tokens per served request of model over both classes (0 when none was served). */
double pt_gap_summary_tokens_per_request(const pt_gap_summary *s, const char *model);

/* The access of a class (insiders, or outside organisations) to model at `at`: the union of
 * their capabilities and each limit the most generous any of them has (PT_UNLIMITED, none
 * stated, the most generous of all). Returns 1 when any of them has a grant in force. */
int pt_gap_class_access(const pt_policy *p, const char *model, int64_t at, int cls, pt_capset *caps, pt_limits *lim);

/* Effective serial speed, in served requests per minute, of one client that sends its next
 * request when the last is answered (docs/policy.md, "Uplift"):
 *   f * min(60000 / p50 latency ms, requests_per_minute, tokens_per_day / 1440 / T)
 * with f = served / (served + denied + rate_limited) of its class on the model (1 when it made
 * none), T the mean tokens per served request of the model, and any term that is unlimited or
 * unmeasured left out; INFINITY when every term is. 0 without access. */
double pt_gap_speed(int access, const pt_limits *l, const pt_gap_class *c, double tokens_per_request);

/* {"insiders_speed", "outsiders_speed", "ratio", "verdict"} for two speeds: ratio in/out
 * ("unbounded" when out is 0 or only in is unbounded; null and verdict "n/a" when in is 0),
 * verdict parity below PT_GAP_PARITY_UPLIFT (1.2), else gap. */
json_t *pt_gap_uplift_json(double in, double out);

/* The measured section for the models of policy p (the revision in force), as JSON: per model
 * the declared serving state and, per class, the counts, percentiles, tokens per day against
 * the class's most generous tokens_per_day at `at`, days from insider_since to the first served
 * request, capabilities used; and the model's uplift estimate. NULL when out of memory. */
json_t *pt_gap_measured_json(const pt_gap_summary *s, uint64_t entries, const pt_policy *p, int64_t at);

#endif
