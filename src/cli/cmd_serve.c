/* parity serve — the HTTP API (see docs/server.md). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"
#include "server/server.h"

const char cmd_serve_summary[] = "serve models over HTTP under the access policy, with audit receipts";

static void usage(void) {
    printf("usage: parity serve [--data DIR] [--host H] [--port P] [--config FILE] [options]\n\n"
           "Serves the models of the current access policy over an OpenAI-compatible HTTP API, with\n"
           "white-box endpoints, fine-tuning jobs, the transparency logs and the parity report.\n"
           "Every request is authenticated, decided by the policy, rate-limited and receipted in the\n"
           "audit log. SIGTERM or SIGINT shuts down gracefully (in-flight requests finish).\n\n"
           "options (flags override the config file):\n"
           "  --data DIR            data directory (default ./data)\n"
           "  --host H              address to bind (default 127.0.0.1)\n"
           "  --port P              port (default 8080; 0 picks a free one)\n"
           "  --config FILE         YAML file of the options below, e.g. 'port: 9000'\n"
           "  --threads N           HTTP worker threads (default 2)\n"
           "  --connection-limit N  connections being served (default 256); as many more may wait\n"
           "                        for their request head, beyond which the oldest waiting one\n"
           "                        is closed\n"
           "  --timeout S           idle timeout of a served connection in seconds (default 30)\n"
           "  --header-timeout S    a request head must arrive within S seconds of connecting\n"
           "                        (else 408; default 10)\n"
           "  --per-ip-connection-limit N\n"
           "                        connections per client address, waiting and served (default 0:\n"
           "                        no cap; leave 0 behind a reverse proxy, whose clients share\n"
           "                        its address)\n"
           "  --min-body-rate B     bytes/s a request body must average after header-timeout\n"
           "                        (else the connection is closed; default 1024; 0: no floor)\n"
           "  --max-body BYTES      JSON request body cap (default 4194304)\n"
           "  --max-tokens N        cap on max_tokens per request (default 1024)\n"
           "  --queue-limit N       engine queue bound; beyond it requests get 503 (default 64)\n"
           "  --shutdown-grace S    on SIGTERM, seconds in-flight work may take before what is\n"
           "                        left fails with 503 (default 30)\n"
           "  --receipts MODE       async (default: answer at once, the receipt is written within\n"
           "                        milliseconds; a crash turns unwritten ones into 'lost' entries) or\n"
           "                        durable (answer only once the receipt is fsynced)\n"
           "  --port-file FILE      write the bound port there once listening\n");
}

int cmd_serve(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    pt_serve_options o;
    pt_serve_defaults(&o);
    pt_err err;
    /* The config file first, so that flags override it wherever they appear. */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--config") && pt_serve_config_load(argv[i + 1], &o, &err)) return cli_fail(&err);
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'},      {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'},      {"config", required_argument, 0, 'c'},
        {"threads", required_argument, 0, 't'},   {"connection-limit", required_argument, 0, 'l'},
        {"timeout", required_argument, 0, 'T'},   {"max-body", required_argument, 0, 'b'},
        {"max-tokens", required_argument, 0, 'm'}, {"queue-limit", required_argument, 0, 'q'},
        {"port-file", required_argument, 0, 'f'}, {"receipts", required_argument, 0, 'r'},
        {"shutdown-grace", required_argument, 0, 'g'}, {"header-timeout", required_argument, 0, 'h'},
        {"per-ip-connection-limit", required_argument, 0, 'i'}, {"min-body-rate", required_argument, 0, 'B'},
        {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        uint64_t n = 0;
        if (ch != 'd' && ch != 'H' && ch != 'c' && ch != 'f' && ch != 'r' && ch != '?' && pt_parse_u64(optarg, &n))
            return cli_usage_error("serve", "%s: expected a number", optarg);
        switch (ch) {
        case 'd': o.data_dir = optarg; break;
        case 'H': o.host = optarg; break;
        case 'p':
            if (n > 65535) return cli_usage_error("serve", "--port %s out of range", optarg);
            o.port = (int)n;
            break;
        case 'c': break;
        case 't': o.threads = n < 1 ? 1 : (int)n; break;
        case 'l': o.connection_limit = (unsigned)n; break;
        case 'T': o.timeout_s = (unsigned)n; break;
        case 'h':
            if (n < 1 || n > 3600) return cli_usage_error("serve", "--header-timeout %s: 1 to 3600 seconds", optarg);
            o.header_timeout_s = (unsigned)n;
            break;
        case 'i': o.per_ip_connection_limit = n > 100000 ? 100000 : (unsigned)n; break;
        case 'B': o.min_body_rate = n > (1u << 30) ? (1u << 30) : (unsigned)n; break;
        case 'b': o.max_body = (size_t)n; break;
        case 'm': o.max_tokens = (int)n; break;
        case 'q': o.queue_limit = (int)n; break;
        case 'g':
            if (n > 3600) return cli_usage_error("serve", "--shutdown-grace %s: at most 3600 seconds", optarg);
            o.shutdown_grace_s = (unsigned)n;
            break;
        case 'f': o.port_file = optarg; break;
        case 'r':
            if (pt_serve_parse_receipts(optarg, &o))
                return cli_usage_error("serve", "--receipts %s: expected async or durable", optarg);
            break;
        default: return cli_usage_error("serve", "unknown option");
        }
    }
    if (optind < argc) return cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    if (pt_serve(&o, cli_stop_flag(), &err)) return cli_fail(&err);
    return 0;
}
