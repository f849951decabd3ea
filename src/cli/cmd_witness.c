/* parity witness — a C2SP tlog-witness (see docs/tlog.md, "Witnesses"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "common/util.h"
#include "server/http.h"
#include "tlog/witness.h"

const char cmd_witness_summary[] = "a C2SP tlog-witness: cosigns checkpoints that extend what it cosigned before";

static void usage(FILE *f) {
    fprintf(f,
            "usage: parity witness SUBCOMMAND --data DIR [OPTIONS]\n"
            "\n"
            "A witness keeps, for each log it is told about, the latest checkpoint it cosigned, and\n"
            "cosigns a new one (C2SP cosignature/v1, with the time it did so) only if a consistency\n"
            "proof shows that it extends that one. Logs submit with POST /add-checkpoint\n"
            "(C2SP tlog-witness); a checkpoint that does not extend its state gets 409 and its size.\n"
            "\n"
            "subcommands:\n"
            "  init --name NAME                make DIR/witness.key (0600); prints the verifier key\n"
            "                                  that policies name in their witnesses section\n"
            "  vkey                            print the witness's verifier key\n"
            "  add-log --origin ORIGIN --vkey VKEY\n"
            "                                  accept checkpoints of the log ORIGIN signed by VKEY\n"
            "                                  (parity log vkey prints it; origin = the key's name)\n"
            "  serve [--listen HOST:PORT] [--port-file FILE] [--key FILE]\n"
            "                                  answer POST /add-checkpoint (default 127.0.0.1:0; the\n"
            "                                  bound address is printed, the port written to FILE);\n"
            "                                  --key: sign with the key in FILE, not DIR/witness.key\n"
            "\n"
            "options:\n"
            "  --data DIR      the witness's directory (its key and, per log, its state)\n"
            "\n"
            "exit status: 0 success, 1 failure, 2 usage error\n");
}

static size_t body_cap(void *ctx, const char *method, const char *path) {
    (void)ctx, (void)method, (void)path;
    return WITNESS_MAX_REQUEST;
}

static int handle(void *ctx, http_req *req, http_resp *resp) {
    witness *w = ctx;
    if (strcmp(req->path, "/add-checkpoint") != 0) {
        resp->status = 404;
        resp->content_type = "text/plain";
        pt_buf_puts(&resp->body, "not found: this witness answers POST /add-checkpoint\n");
        return HTTP_DONE;
    }
    if (strcmp(req->method, "POST") != 0) {
        resp->status = 405;
        resp->content_type = "text/plain";
        http_set_header(resp, "Allow", "POST");
        pt_buf_puts(&resp->body, "add-checkpoint takes POST\n");
        return HTTP_DONE;
    }
    witness_answer a;
    witness_add_checkpoint(w, req->body, req->body_len, (uint64_t)time(NULL), &a);
    resp->status = a.status;
    resp->content_type = a.content_type;
    if (a.body) pt_buf_append(&resp->body, a.body, a.len);
    witness_answer_free(&a);
    return HTTP_DONE;
}

static int serve(const char *data, const char *key, const char *listen, const char *port_file) {
    char host[256] = "127.0.0.1";
    int port = 0;
    if (listen) {
        const char *colon = strrchr(listen, ':');
        uint64_t p;
        if (!colon || (size_t)(colon - listen) >= sizeof host || pt_parse_u64(colon + 1, &p) || p > 65535)
            return cli_usage_error("witness", "--listen: expected HOST:PORT, got '%s'", listen);
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = 0;
        port = (int)p;
    }
    pt_err err;
    witness *w;
    if (witness_open(data, key, &w, &err)) return cli_fail(&err);
    atomic_int *stop = cli_stop_flag();
    http_options o = {0};
    o.host = host;
    o.port = port;
    o.threads = 2;
    o.handler = handle;
    o.body_cap = body_cap;
    o.ctx = w;
    http_server *s;
    if (http_start(&s, &o, &err)) {
        witness_close(w);
        return cli_fail(&err);
    }
    printf("parity witness: listening on http://%s:%d\n", host, http_port(s));
    fflush(stdout);
    if (port_file) {
        char num[16];
        int n = snprintf(num, sizeof num, "%d\n", http_port(s));
        pt_write_atomic(port_file, num, (size_t)n, 0644, NULL);
    }
    while (!atomic_load(stop)) usleep(50000);
    http_stop(s, 2.0);
    witness_close(w);
    return 0;
}

int cmd_witness(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *data = NULL, *name = NULL, *origin = NULL, *vkey = NULL, *listen = NULL, *port_file = NULL, *key = NULL;
    for (int i = 2; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **slot = !strcmp(a, "--data") ? &data : !strcmp(a, "--name") ? &name : !strcmp(a, "--origin") ? &origin
                            : !strcmp(a, "--vkey") ? &vkey : !strcmp(a, "--listen") ? &listen
                            : !strcmp(a, "--port-file") ? &port_file : !strcmp(a, "--key") ? &key : NULL;
        if (!slot) return cli_usage_error("witness", "unknown option '%s'", a);
        if (!v) return cli_usage_error("witness", "%s needs a value", a);
        *slot = v;
    }
    if (!data) return cli_usage_error("witness", "--data DIR is required");
    const char *sub = argv[1];
    pt_err err;
    if (!strcmp(sub, "init")) {
        if (!name) return cli_usage_error("witness", "init needs --name NAME");
        char *vk;
        if (witness_init(data, name, &vk, &err)) return cli_fail(&err);
        printf("%s\n", vk);
        free(vk);
        return 0;
    }
    if (!strcmp(sub, "vkey")) {
        char *vk;
        if (witness_read_vkey(data, &vk, &err)) return cli_fail(&err);
        printf("%s\n", vk);
        free(vk);
        return 0;
    }
    if (!strcmp(sub, "add-log")) {
        if (!vkey) return cli_usage_error("witness", "add-log needs --vkey VKEY");
        char *o = NULL;
        if (!origin) { /* parity's logs: the origin is the key's name */
            const char *plus = strchr(vkey, '+');
            if (!plus) return cli_usage_error("witness", "--vkey: expected NAME+HEX8+BASE64");
            o = strndup(vkey, (size_t)(plus - vkey));
        }
        int rc = witness_add_log(data, origin ? origin : o, vkey, &err);
        free(o);
        if (rc) return cli_fail(&err);
        return 0;
    }
    if (!strcmp(sub, "serve")) return serve(data, key, listen, port_file);
    return cli_usage_error("witness", "unknown subcommand '%s'", sub);
}
