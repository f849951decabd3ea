/* parity demo — the embedded default: a data folder with the demo policy applied, a key for
 * each organisation of the demo world, and the server on the shipped demo models. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "common/json.h"
#include "common/util.h"
#include "policy/history.h"
#include "server/keys.h"
#include "server/server.h"

const char cmd_demo_summary[] = "start the demo world: demo policy, keys for each organisation, the server";

static void usage(void) {
    printf("usage: parity demo [--data DIR] [--models DIR] [--policy FILE] [--host H] [--port P]\n\n"
           "Starts parity on its embedded default: SQLite and the transparency logs in DIR (default\n"
           "./data), the demo access policy (default examples/demo-policy.yaml) applied as revision 1,\n"
           "the shipped demo models (default ./models: parity-demo and its analog), and an API key for\n"
           "the lab's safety team (admin) and for each outside organisation (AL1, AL2, AL3). The keys\n"
           "are printed with ready-to-paste curl commands and kept in DIR/demo-keys.json (0600). Two\n"
           "witnesses run beside it as separate processes (own keys and state in DIR/witnesses/w1, w2;\n"
           "ports P+1 and P+2) and cosign every checkpoint of both logs (quorum 2, in the policy). Run\n"
           "it again to restart the same world. Ctrl-C stops the server and the witnesses gracefully.\n");
}

static const struct {
    const char *org, *label;
    int admin;
} demo_orgs[] = {
    {"lab-safety", "insider (AL3, admin)", 1},
    {"aisi-eval", "evaluator (AL3: white-box)", 0},
    {"uni-interp", "researcher (AL2: grey-box)", 0},
    {"indie-redteam", "researcher (AL1: black-box)", 0},
};
#define N_DEMO_ORGS (sizeof demo_orgs / sizeof demo_orgs[0])

/* First run: apply the policy and issue the keys. Returns the keys JSON (new reference). */
static json_t *demo_init(const char *data, const char *policy_path, const char *witnesses, pt_err *err) {
    char *keys_path = pt_path_join(data, "demo-keys.json");
    json_t *keys = pt_exists(keys_path) ? pt_json_load_file(keys_path, 1u << 20, err) : NULL;
    if (keys || (err && err->code && pt_exists(keys_path))) {
        free(keys_path);
        return keys;
    }
    char *text = NULL;
    size_t len;
    tlog *log = NULL;
    pt_store *st = NULL;
    if (pt_read_file(policy_path, 16u << 20, &text, &len, err) || tlog_open(data, "policy", NULL, &log, err) ||
        pt_store_open(&st, data, err))
        goto fail;
    char *with = malloc(len + strlen(witnesses) + 1); /* the demo policy, cosigned by the demo's witnesses */
    if (!with) goto fail;
    memcpy(with, text, len);
    strcpy(with + len, witnesses);
    free(text);
    text = with;
    len = strlen(with);
    pt_apply_result r;
    memset(&r, 0, sizeof r);
    if (pt_policy_apply(log, data, text, len, policy_path, pt_unix_time(), &r, err)) goto fail;
    fprintf(stderr, "parity demo: %s\n", r.message);
    pt_apply_result_free(&r);
    keys = json_object();
    for (size_t i = 0; i < N_DEMO_ORGS; i++) {
        char key[PT_KEY_MAX_LEN];
        pt_key_record rec;
        if (pt_keys_issue(st, log, demo_orgs[i].org, demo_orgs[i].admin, key, &rec, NULL, err)) goto fail;
        json_object_set_new(keys, demo_orgs[i].org, json_pack("{s:s, s:s, s:s}", "key", key, "key_id", rec.id, "label",
                                                              demo_orgs[i].label));
    }
    char *dump = json_dumps(keys, JSON_INDENT(2));
    if (!dump || pt_write_atomic(keys_path, dump, strlen(dump), 0600, err)) {
        free(dump);
        goto fail;
    }
    free(dump);
    tlog_close(log);
    pt_store_close(st);
    free(text);
    free(keys_path);
    return keys;
fail:
    json_decref(keys);
    tlog_close(log);
    pt_store_close(st);
    free(text);
    free(keys_path);
    return NULL;
}

int cmd_demo(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *data = "data", *models = "models", *policy = "examples/demo-policy.yaml", *host = "127.0.0.1";
    int port = 8080;
    static const struct option opts[] = {{"data", required_argument, 0, 'd'},   {"models", required_argument, 0, 'm'},
                                         {"policy", required_argument, 0, 'p'}, {"host", required_argument, 0, 'H'},
                                         {"port", required_argument, 0, 'P'},   {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        uint64_t n;
        switch (ch) {
        case 'd': data = optarg; break;
        case 'm': models = optarg; break;
        case 'p': policy = optarg; break;
        case 'H': host = optarg; break;
        case 'P':
            if (pt_parse_u64(optarg, &n) || n > 65535) return cli_usage_error("demo", "--port %s out of range", optarg);
            port = (int)n;
            break;
        default: return cli_usage_error("demo", "unknown option");
        }
    }
    if (optind < argc) return cli_usage_error("demo", "unexpected argument '%s'", argv[optind]);
    char models_abs[PATH_MAX];
    if (!realpath(models, models_abs)) {
        fprintf(stderr, "parity demo: the models folder '%s' is missing (the demo models ship in the repository's "
                        "models/; rebuild them with 'make models')\n", models);
        return 1;
    }
    pt_err err;
    pt_err_clear(&err);
    pid_t wpids[2];
    char *wsection;
    if (cli_demo_witnesses(data, port ? port : 8080, wpids, &wsection, &err)) return cli_fail(&err);
    json_t *keys = demo_init(data, policy, wsection, &err);
    free(wsection);
    if (!keys) {
        cli_demo_witnesses_stop(wpids);
        return cli_fail(&err);
    }
    const char *admin = json_string_value(json_object_get(json_object_get(keys, "lab-safety"), "key"));
    const char *al1 = json_string_value(json_object_get(json_object_get(keys, "indie-redteam"), "key"));
    const char *al2 = json_string_value(json_object_get(json_object_get(keys, "uni-interp"), "key"));
    const char *al3 = json_string_value(json_object_get(json_object_get(keys, "aisi-eval"), "key"));
    if (!admin || !al1 || !al2 || !al3) {
        json_decref(keys);
        cli_demo_witnesses_stop(wpids);
        fprintf(stderr, "parity demo: %s/demo-keys.json is not a demo key file\n", data);
        return 1;
    }
    printf("\nparity demo world (data in %s, models in %s)\n\nAPI keys:\n", data, models_abs);
    for (size_t i = 0; i < N_DEMO_ORGS; i++) {
        json_t *k = json_object_get(keys, demo_orgs[i].org);
        printf("  %-14s %-30s %s\n", demo_orgs[i].org, demo_orgs[i].label, json_string_value(json_object_get(k, "key")));
    }
    const char *u = "http://127.0.0.1";
    printf("\nTry (in another terminal):\n\n"
           "  curl -s %s:%d/v1/models -H 'Authorization: Bearer %s'\n\n"
           "  curl -s %s:%d/v1/chat/completions -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \\\n"
           "    -d '{\"model\":\"parity-demo\",\"messages\":[{\"role\":\"user\",\"content\":\"In the beginning\"}],\"max_tokens\":40}'\n\n"
           "  # AL2: log-probs of a raw completion\n"
           "  curl -s %s:%d/v1/completions -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \\\n"
           "    -d '{\"model\":\"parity-demo\",\"prompt\":\"And God said\",\"max_tokens\":16,\"logprobs\":5}'\n\n"
           "  # AL3: read the residual stream of layer 0\n"
           "  curl -s %s:%d/v1/internals/trace -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \\\n"
           "    -d '{\"model\":\"parity-demo\",\"input\":\"And God said\",\"reads\":[\"blocks.0.hook_resid_post\"]}'\n\n"
           "  # what each key may do, the parity report, the transparency log\n"
           "  curl -s %s:%d/v1/access -H 'Authorization: Bearer %s'\n"
           "  curl -s %s:%d/v1/parity        # or open %s:%d/parity in a browser\n"
           "  curl -s %s:%d/log/policy/checkpoint   # signed by the lab, cosigned by 2 witnesses\n\n"
           "Witnesses (separate processes, keys and state in %s/witnesses/): 127.0.0.1:%d and :%d\n\n",
           u, port, al1, u, port, al1, u, port, al2, u, port, al3, u, port, al2, u, port, u, port, u, port, data,
           (port ? port : 8080) + 1, (port ? port : 8080) + 2);
    fflush(stdout);
    json_decref(keys);

    pt_serve_options o;
    pt_serve_defaults(&o);
    o.data_dir = data;
    o.host = host;
    o.port = port;
    o.models_dir = models_abs;
    int rc = pt_serve(&o, cli_stop_flag(), &err) ? cli_fail(&err) : 0;
    cli_demo_witnesses_stop(wpids);
    return rc;
}
