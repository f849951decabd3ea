/* bench_http_baseline — the reference for bench/bench_server.sh: parity's HTTP layer
 * (src/server/http.c: libmicrohttpd, thread pool, epoll, keep-alive) with one route that
 * answers a fixed JSON body, and none of what `parity serve` does per request (no key lookup,
 * no policy decision, no audit receipt, no metrics). Measuring `GET /v1/models` on the real
 * server against this in the same run isolates what parity's own request path costs.
 *
 *   bench_http_baseline [--port N] [--threads N] [--port-file PATH] [--body-file PATH]
 *
 * Any GET answers 200 with the body (by default a one-model /v1/models list; the script passes
 * the real server's answer so both send the same bytes). Runs until SIGINT/SIGTERM.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/util.h"
#include "server/http.h"

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

typedef struct {
    const char *body;
    size_t len;
} fixed;

static int handler(void *ctx, http_req *req, http_resp *resp) {
    const fixed *f = ctx;
    if (strcmp(req->method, "GET")) {
        http_error(resp, 405, "invalid_request_error", "method_not_allowed", NULL, "GET only");
        return HTTP_DONE;
    }
    resp->status = 200;
    resp->content_type = "application/json";
    pt_buf_append(&resp->body, f->body, f->len);
    return HTTP_DONE;
}

static size_t no_body(void *ctx, const char *method, const char *path) {
    (void)ctx, (void)method, (void)path;
    return 0;
}

static void usage(FILE *o) {
    fprintf(o, "usage: bench_http_baseline [--port N] [--threads N] [--port-file PATH] [--body-file PATH]\n"
               "Serves a fixed JSON body on parity's HTTP layer (the reference of bench/bench_server.sh).\n");
}

int main(int argc, char **argv) {
    http_options o = {.host = "127.0.0.1", .port = 0, .threads = 2, .connection_limit = 256, .timeout_s = 30};
    const char *port_file = NULL, *body_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--port") && v) {
            o.port = atoi(v), i++;
        } else if (!strcmp(a, "--threads") && v) {
            o.threads = atoi(v), i++;
        } else if (!strcmp(a, "--port-file") && v) {
            port_file = v, i++;
        } else if (!strcmp(a, "--body-file") && v) {
            body_file = v, i++;
        } else {
            usage(stderr);
            return 2;
        }
    }
    fixed f = {"{\"object\":\"list\",\"data\":[{\"id\":\"tiny\",\"object\":\"model\",\"created\":1767225600,"
               "\"owned_by\":\"test-lab\",\"variants\":[]}]}\n",
               0};
    char *data = NULL;
    pt_err err;
    if (body_file) {
        if (pt_read_file(body_file, 1u << 20, &data, &f.len, &err)) {
            fprintf(stderr, "bench_http_baseline: %s\n", err.msg);
            return 1;
        }
        f.body = data;
    } else {
        f.len = strlen(f.body);
    }
    o.handler = handler;
    o.body_cap = no_body;
    o.ctx = &f;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    http_server *s;
    if (http_start(&s, &o, &err)) {
        fprintf(stderr, "bench_http_baseline: %s\n", err.msg);
        free(data);
        return 1;
    }
    if (port_file) {
        char num[16];
        int n = snprintf(num, sizeof num, "%d\n", http_port(s));
        pt_write_atomic(port_file, num, (size_t)n, 0644, NULL);
    }
    fprintf(stderr, "bench_http_baseline: listening on http://127.0.0.1:%d\n", http_port(s));
    while (!stop_flag) usleep(50000);
    http_stop(s, 5.0);
    free(data);
    return 0;
}
