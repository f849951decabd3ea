/* see server.h — options, start-up (store, logs, policy, models, fine-tuning, HTTP) and shutdown,
 * the config file. A request's way is pipeline.c's; the endpoints are the api_*.c files; the
 * fine-tuning worker is server_finetune.c; the models run on backends (backend.h).
 * docs/server.md, "Source layout". */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/sha256.h"
#include "common/util.h"
#include "common/ytree.h"
#include "policy/history.h"
#include "server/api.h"
#include "server/backend.h"
#include "server/data_lock.h"
#include "server/finetune.h"
#include "server/registry.h"
#include "server/witnessing.h"
#include "gap/measure.h"

int pt_serve_parse_receipts(const char *mode, pt_serve_options *o) {
    if (strcmp(mode, "async") && strcmp(mode, "durable")) return PT_EINVAL;
    o->receipts_durable = !strcmp(mode, "durable");
    return PT_OK;
}

void pt_serve_defaults(pt_serve_options *o) {
    memset(o, 0, sizeof *o);
    o->data_dir = "data";
    o->host = "127.0.0.1";
    o->port = 8080;
    o->threads = 2;
    o->connection_limit = 256;
    o->timeout_s = 30;
    o->header_timeout_s = 10;
    o->min_body_rate = 1024;
    o->max_body = 4u << 20;
    o->max_file = 64u << 20;
    o->max_tokens = 1024;
    o->max_batch = 16;
    o->queue_limit = 64;
    o->shutdown_grace_s = 30;
    o->max_download = 64u << 20;
}

/* Start-up and shutdown ------------------------------------------------------------------------ */

static void server_free(pt_server *s) {
    if (!s) return;
    pt_receipts_stop(s->receipts); /* drains: every queued receipt is written */
    pt_witnessing_stop(s->witnessing);
    if (s->rl) {
        pt_err err;
        if (pt_ratelimit_flush(s->rl, &err)) fprintf(stderr, "parity serve: saving usage counters: %s\n", err.msg);
    }
    pt_ratelimit_close(s->rl);
    tlog_close(s->audit_log);
    tlog_close(s->policy_log);
    pt_store_close(s->store);
    pt_metrics_free(s->metrics);
    json_decref(s->report);
    pt_policy_history_free(s->report_hist);
    pt_gap_meter_free(s->meter);
    free(s->served_declared);
    pthread_mutex_destroy(&s->report_mu);
    if (s->policy) srv_policy_put(s, s->policy);
    free(s->keys);
    free(s->routes);
    free(s->data_dir);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->reload_mu);
    free(s);
}

static int start_receipts(pt_server *s, pt_err *err) {
    char *dir = pt_path_join(s->data_dir, "log/audit"), *priv = pt_path_join(s->data_dir, "private");
    int rc = !dir || !priv ? pt_errf(err, PT_ENOMEM, "out of memory")
                           : pt_receipts_start(&s->receipts, s->audit_log, dir, priv,
                                               s->o.receipts_durable ? PT_RECEIPTS_DURABLE : PT_RECEIPTS_ASYNC, err);
    free(dir);
    free(priv);
    return rc;
}

int pt_serve(const pt_serve_options *o, atomic_int *stop, pt_err *err) {
    if (sodium_init() < 0) return pt_errf(err, PT_EINTERNAL, "libsodium failed to initialise");
    pt_server *s = calloc(1, sizeof *s);
    if (!s) return pt_errf(err, PT_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->report_mu, NULL);
    pthread_mutex_init(&s->reload_mu, NULL);
    s->o = *o;
    int rc, lock_fd = -1;
    pt_sha256("", 0, s->empty_sha256);
    if ((rc = pt_data_lock(o->data_dir, &lock_fd, err))) goto out; /* before anything in it is opened */
    if (!(s->data_dir = strdup(o->data_dir)) || !(s->metrics = pt_metrics_new())) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = pt_store_open(&s->store, s->data_dir, err)) ||
        (rc = tlog_open(s->data_dir, "policy", NULL, &s->policy_log, err)) ||
        (rc = pt_keys_reconcile_stderr(s->store, s->policy_log, s->data_dir, "parity serve", err)) ||
        (rc = tlog_open(s->data_dir, "audit", NULL, &s->audit_log, err)) || (rc = srv_load_policy(s, err)) ||
        (rc = pt_ratelimit_open(&s->rl, s->store, err)) || (rc = start_receipts(s, err)) ||
        (rc = pt_witnessing_start(&s->witnessing, s->policy_log, s->audit_log, s->data_dir, err)))
        goto out;
    const struct {
        const route *r;
        size_t n;
    } tables[] = {{pt_parity_routes, pt_n_parity_routes},
                  {pt_openai_routes, pt_n_openai_routes},
                  {pt_ft_routes, pt_n_ft_routes},
                  {pt_internals_routes, pt_n_internals_routes}};
    size_t nt = sizeof tables / sizeof tables[0];
    for (size_t t = 0; t < nt; t++) s->n_routes += tables[t].n;
    if (!(s->routes = malloc(s->n_routes * sizeof *s->routes))) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t t = 0, at = 0; t < nt; at += tables[t].n, t++)
        memcpy(s->routes + at, tables[t].r, tables[t].n * sizeof *s->routes);
    for (size_t i = 0; i < s->n_routes; i++) s->routes[i].metric = pt_metrics_route(s->metrics, s->routes[i].label);
    s->unmatched_metric = pt_metrics_route(s->metrics, "unmatched");
    if ((rc = srv_models_start(s, err)) || (rc = srv_backends_start(s, err)) || (rc = srv_ft_start(s, err))) goto out;
    srv_declare_served(s);

    http_options ho = {.host = o->host, .port = o->port, .threads = o->threads,
                       .connection_limit = o->connection_limit, .timeout_s = o->timeout_s,
                       .header_timeout_s = o->header_timeout_s, .per_ip_connection_limit = o->per_ip_connection_limit,
                       .min_body_rate = o->min_body_rate,
                       .handler = srv_handle, .early = srv_begin_early, .body_cap = srv_body_cap, .observer = srv_observe, .ctx = s};
    if ((rc = http_start(&s->http, &ho, err))) goto out;
    fprintf(stderr, "parity: listening on http://%s:%d (data %s, policy revision %lld)\n", o->host,
            http_port(s->http), s->data_dir, (long long)s->policy->seq);
    if (o->port_file) {
        char num[16];
        int n = snprintf(num, sizeof num, "%d\n", http_port(s->http));
        pt_write_atomic(o->port_file, num, (size_t)n, 0644, NULL);
    }
    double last_flush = pt_now();
    while (!atomic_load(stop)) {
        usleep(50000);
        if (pt_unix_time() >= atomic_load(&s->policy_next)) { /* a revision's time came: switch off the request path */
            pt_err perr;
            srv_load_policy(s, &perr);
        }
        if (pt_now() - last_flush >= 1.0) {
            pt_err ferr;
            if (pt_ratelimit_flush(s->rl, &ferr)) fprintf(stderr, "parity serve: saving usage counters: %s\n", ferr.msg);
            last_flush = pt_now();
        }
    }
    fprintf(stderr, "parity: shutting down: finishing in-flight requests\n");
    srv_models_drain(s, s->o.shutdown_grace_s);
    http_stop(s->http, s->o.shutdown_grace_s);
    s->http = NULL;
out:
    srv_ft_stop(s);     /* the worker uses the served models' tokenizers */
    srv_models_stop(s);
    srv_backends_free(s);
    srv_ft_free(s);     /* the adapters outlive every sequence */
    server_free(s);
    if (lock_fd >= 0) close(lock_fd); /* the next server may start */
    return rc;
}

/* Config file ---------------------------------------------------------------------------------- */

int pt_serve_config_load(const char *path, pt_serve_options *o, pt_err *err) {
    char *text;
    size_t len;
    int rc = pt_read_file(path, 1u << 20, &text, &len, err);
    if (rc) return rc;
    ynode *root = ytree_parse(text, len, path, err);
    free(text);
    if (!root) return err ? err->code : PT_EFORMAT;
    if (root->type != YN_MAP) {
        ytree_free(root);
        return pt_errf(err, PT_EFORMAT, "%s:%d:%d: the config must be a mapping of option: value", path, root->line,
                       root->col);
    }
    /* Strings in o point into this copy, which lives as long as the process (options are
     * read once at start-up). */
    for (size_t i = 0; i + 1 < root->n && !rc; i += 2) {
        const ynode *k = root->items[i], *v = root->items[i + 1];
        if (k->type != YN_SCALAR || v->type != YN_SCALAR) {
            rc = pt_errf(err, PT_EFORMAT, "%s:%d:%d: expected 'option: value'", path, k->line, k->col);
            break;
        }
        uint64_t n = 0;
        int is_num = pt_parse_u64(v->str, &n) == 0;
        const char *key = k->str;
#define NUM(name, field, lo, hi)                                                                             \
    else if (!strcmp(key, name)) {                                                                           \
        if (!is_num || n + 1 < (uint64_t)(lo) + 1 || n > (uint64_t)(hi))                                                                 \
            rc = pt_errf(err, PT_EFORMAT, "%s:%d:%d: %s: expected a whole number in [%llu, %llu]", path, v->line, \
                         v->col, name, (unsigned long long)(lo), (unsigned long long)(hi));                  \
        else                                                                                                 \
            o->field = (__typeof__(o->field))n;                                                              \
    }
#define STR(name, field)                         \
    else if (!strcmp(key, name)) {               \
        o->field = strdup(v->str);               \
        if (!o->field) rc = pt_errf(err, PT_ENOMEM, "out of memory"); \
    }
        if (0) {
        }
        STR("data", data_dir)
        STR("host", host)
        STR("models_dir", models_dir)
        else if (!strcmp(key, "receipts")) {
            if (pt_serve_parse_receipts(v->str, o))
                rc = pt_errf(err, PT_EFORMAT, "%s:%d:%d: receipts: expected 'async' or 'durable'", path, v->line, v->col);
        }
        NUM("port", port, 0, 65535)
        NUM("threads", threads, 1, 256)
        NUM("connection_limit", connection_limit, 1, 100000)
        NUM("timeout", timeout_s, 1, 3600)
        NUM("header_timeout", header_timeout_s, 1, 3600)
        NUM("per_ip_connection_limit", per_ip_connection_limit, 0, 100000)
        NUM("min_body_rate", min_body_rate, 0, 1u << 30)
        NUM("max_body", max_body, 1024, 1u << 30)
        NUM("max_file", max_file, 1024, 1ull << 34)
        NUM("max_tokens", max_tokens, 1, 1 << 20)
        NUM("max_batch", max_batch, 1, 4096)
        NUM("queue_limit", queue_limit, 1, 1 << 20)
        NUM("max_download", max_download, 1024, 1ull << 34)
        NUM("shutdown_grace", shutdown_grace_s, 0, 3600)
        else rc = pt_errf(err, PT_EFORMAT,
                          "%s:%d:%d: unknown option '%s' (data, host, port, threads, connection_limit, timeout, "
                          "header_timeout, per_ip_connection_limit, min_body_rate, "
                          "max_body, max_file, max_tokens, max_batch, queue_limit, max_download, shutdown_grace, models_dir, "
                          "receipts)",
                          path, k->line, k->col, key);
#undef NUM
#undef STR
    }
    ytree_free(root);
    return rc;
}
