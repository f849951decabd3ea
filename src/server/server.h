/* server.h — `parity serve`: the HTTP API outsiders use, enforced by the access policy, with
 * verifiable receipts. See docs/server.md for every endpoint.
 *
 * The server owns: the store (keys, usage, jobs), the policy log and the audit log (tlog), the
 * current policy (the latest revision in the policy log), the models it serves, the rate
 * limiter and the metrics. Requests run on libmicrohttpd's pool threads; model work runs on
 * the engine's scheduler thread; audit entries are group-committed by the receipt writer.
 */
#ifndef PARITY_SERVER_SERVER_H
#define PARITY_SERVER_SERVER_H

#include <stdatomic.h>
#include <stddef.h>

#include "common/err.h"

typedef struct pt_serve_options {
    const char *data_dir;        /* default "data" */
    const char *host;            /* default 127.0.0.1 */
    int port;                    /* default 8080; 0 = any free port */
    int threads;                 /* HTTP pool threads, default 2 */
    unsigned connection_limit;   /* connections being served, default 256; as many more may wait
                                    at the front door for their request head */
    unsigned timeout_s;          /* idle timeout of a served connection, default 30 */
    unsigned header_timeout_s;   /* a request head must arrive within this, default 10 (else 408) */
    unsigned per_ip_connection_limit; /* connections per client address, default 0: no cap */
    unsigned min_body_rate;      /* bytes/s a request body must average, default 1024; 0: no floor */
    size_t max_body;             /* JSON request bodies, default 4 MiB */
    size_t max_file;             /* uploaded files, default 64 MiB */
    int max_tokens;              /* cap on max_tokens per request, default 1024 */
    int max_batch;               /* cap on inputs per request (n, batch), default 16 */
    int queue_limit;             /* bounded engine queue, default 64 */
    size_t max_download;         /* byte quota for one internals response, default 64 MiB */
    const char *models_dir;      /* where relative model weight paths resolve; default DATA/models */
    const char *port_file;       /* if set, the bound port is written there once ready */
    unsigned shutdown_grace_s;   /* SIGTERM: how long in-flight work may take before what is left
                                    fails with 503; default 30 */
    int receipts_durable;        /* 1: answer only once the receipt is durable; default 0 (async:
                                    answered at once, written within milliseconds; see receipts.h) */
} pt_serve_options;

/* Sets o->receipts_durable from "async" or "durable"; PT_EINVAL for anything else. */
int pt_serve_parse_receipts(const char *mode, pt_serve_options *o);

/* Fills o with the defaults above. */
void pt_serve_defaults(pt_serve_options *o);

/* Reads a config file (YAML mapping of the option names above, e.g. "port: 9000") into o;
 * unknown keys are errors with file:line:column. */
int pt_serve_config_load(const char *path, pt_serve_options *o, pt_err *err);

/* Runs the server until *stop becomes non-zero (a signal handler or another thread sets it:
 * a lock-free atomic serves both), then shuts down gracefully: stops accepting, lets
 * in-flight requests finish, flushes counters and logs. Prints one "listening on
 * http://HOST:PORT" line to stderr once ready. */
int pt_serve(const pt_serve_options *o, atomic_int *stop, pt_err *err);

#endif
