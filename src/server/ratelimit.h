/* ratelimit.h — per (organisation, model) request and token budgets.
 *
 * Requests per minute use fixed one-minute windows aligned to the clock; tokens per day use UTC
 * days. Counters live in memory (a hash table under one mutex: an increment is a few hundred
 * nanoseconds) and are saved to the store by pt_ratelimit_flush(), which the server calls every
 * second and at shutdown, so counts survive a restart (a crash loses at most the last second).
 */
#ifndef PARITY_SERVER_RATELIMIT_H
#define PARITY_SERVER_RATELIMIT_H

#include <stdint.h>

#include "store/store.h"

typedef struct pt_ratelimit pt_ratelimit;

typedef struct pt_rl_status {
    int64_t limit;      /* 0 = unlimited */
    int64_t remaining;
    int64_t reset_s;    /* seconds until the window resets */
} pt_rl_status;

/* Loads the current windows' counts from the store. */
int pt_ratelimit_open(pt_ratelimit **out, pt_store *store, pt_err *err);
void pt_ratelimit_close(pt_ratelimit *r); /* flushes; NULL-safe */

/* Counts one request against rpm (0 = unlimited). Returns 1 if allowed (and counted), 0 if the
 * minute's budget is spent (not counted). st (may be NULL) gets the state after the call. */
int pt_ratelimit_request(pt_ratelimit *r, const char *org, const char *model, int64_t rpm, int64_t now,
                         pt_rl_status *st);
/* The request budget's state without counting anything. */
void pt_ratelimit_peek_requests(pt_ratelimit *r, const char *org, const char *model, int64_t rpm, int64_t now,
                                pt_rl_status *st);
/* Whether `want` more tokens fit today's budget (0 = unlimited); st gets the state. */
int pt_ratelimit_tokens_ok(pt_ratelimit *r, const char *org, const char *model, int64_t per_day, int64_t want,
                           int64_t now, pt_rl_status *st);
/* Adds tokens used (after the fact: a request may overrun the day's budget by its own size). */
void pt_ratelimit_add_tokens(pt_ratelimit *r, const char *org, const char *model, int64_t n, int64_t now);
/* Tokens used today. */
int64_t pt_ratelimit_tokens_used(pt_ratelimit *r, const char *org, const char *model, int64_t now);

/* Saves changed counters. */
int pt_ratelimit_flush(pt_ratelimit *r, pt_err *err);

#endif
