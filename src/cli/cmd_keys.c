/* parity keys — create, revoke and list API keys (the server must not be running: it holds
 * the policy log; while it runs, use the admin endpoints). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"
#include "policy/policy.h"
#include "server/keys.h"

const char cmd_keys_summary[] = "create, revoke and list API keys (bindings go into the policy log)";

static void usage(void) {
    printf("usage: parity keys create --org ORG [--admin] [--data DIR]\n"
           "       parity keys revoke KEY_ID [--data DIR]\n"
           "       parity keys list [--data DIR] [--json]\n\n"
           "create  makes a key for an organisation of the current policy and prints it once, on the\n"
           "        last line of the output; only its SHA-256 is stored. The binding (key id ->\n"
           "        organisation) is appended to the policy transparency log, and the key works only\n"
           "        once that is durable (it is stored as pending until then).\n"
           "revoke  logs the revocation, then stops the key in the store.\n"
           "list    shows key ids, organisations and states (live, revoked, pending: never the keys).\n"
           "The policy log is the record of keys; the store is reconciled from it first (a pending\n"
           "key bound in the log is activated, one that is not is deleted, a revocation in the log\n"
           "is applied); every difference repaired is printed on stderr.\n"
           "While 'parity serve' runs on DIR it holds the log: use POST /v1/admin/keys instead.\n");
}

int cmd_keys(int argc, char **argv) {
    if (cli_wants_help(argc, argv) || argc < 2) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1], *data = "data", *org = NULL;
    int admin = 0, json = 0;
    static const struct option opts[] = {{"data", required_argument, 0, 'd'}, {"org", required_argument, 0, 'o'},
                                         {"admin", no_argument, 0, 'a'},      {"json", no_argument, 0, 'j'},
                                         {0, 0, 0, 0}};
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': data = optarg; break;
        case 'o': org = optarg; break;
        case 'a': admin = 1; break;
        case 'j': json = 1; break;
        default: return cli_usage_error("keys", "unknown option");
        }
    }
    pt_err err;
    pt_store *st;
    if (pt_store_open(&st, data, &err)) return cli_fail(&err);
    int rc = 0;
    tlog *log = NULL;
    int list = !strcmp(sub, "list");
    if (tlog_open(data, "policy", NULL, &log, &err)) {
        if (err.code == PT_ECONFLICT && list) { /* the server holds the log; it reconciled at its start */
            fprintf(stderr, "parity keys: the policy log is held by a running 'parity serve' (it reconciled the "
                            "store at its start); listing the store as it is\n");
        } else if (list) { /* a list changes nothing: show the store, say why it is not reconciled */
            fprintf(stderr, "parity keys: not reconciled with the policy log: %s\nlisting the store as it is\n",
                    err.msg);
        } else {
            pt_store_close(st);
            if (err.code == PT_ECONFLICT)
                fprintf(stderr, "parity: the policy log is held by a running 'parity serve'; use its admin endpoints "
                                "(POST /v1/admin/keys) while it runs\n");
            return cli_fail(&err);
        }
    } else {
        rc = pt_keys_reconcile_stderr(st, log, data, "parity keys", &err);
        if (rc) {
            tlog_close(log);
            pt_store_close(st);
            return cli_fail(&err);
        }
    }
    if (list) {
        pt_key_record *keys;
        size_t n;
        if (pt_store_key_list(st, &keys, &n, &err)) {
            rc = cli_fail(&err);
        } else {
            for (size_t i = 0; i < n; i++) {
                char t[21];
                const char *state = keys[i].revoked ? "revoked" : keys[i].pending ? "pending" : "live";
                if (json)
                    printf("{\"key_id\":\"%s\",\"organization\":\"%s\",\"admin\":%s,\"created\":\"%s\",\"revoked\":%s,"
                           "\"pending\":%s}\n",
                           keys[i].id, keys[i].org, keys[i].admin ? "true" : "false",
                           pt_format_time(keys[i].created, t), keys[i].revoked ? "true" : "false",
                           keys[i].pending ? "true" : "false");
                else
                    printf("%s  %-24s %s%s\n", keys[i].id, keys[i].org, keys[i].admin ? "admin " : "", state);
            }
            free(keys);
        }
        tlog_close(log);
        pt_store_close(st);
        return rc;
    }
    uint64_t idx;
    if (strcmp(sub, "create") && strcmp(sub, "revoke")) {
        rc = cli_usage_error("keys", "unknown subcommand '%s' (create, revoke, list)", sub);
        tlog_close(log);
        pt_store_close(st);
        return rc;
    }
    /* a checkpoint older than what the witnesses cosigned stops the writer before it appends */
    if (cli_witness_sync(log, data, log, "keys")) {
        tlog_close(log);
        pt_store_close(st);
        return 1;
    }
    if (!strcmp(sub, "create")) {
        if (!org) {
            rc = cli_usage_error("keys", "create needs --org ORG");
        } else {
            char key[PT_KEY_MAX_LEN];
            pt_key_record rec;
            if (pt_keys_issue(st, log, org, admin, key, &rec, &idx, &err)) {
                rc = cli_fail(&err);
            } else {
                fprintf(stdout, "key id %s for organisation %s%s (policy log entry %llu)\n", rec.id, org,
                        admin ? ", admin" : "", (unsigned long long)idx);
                printf("%s\n", key);
            }
        }
    } else if (!strcmp(sub, "revoke")) {
        if (optind >= argc) rc = cli_usage_error("keys", "revoke needs a KEY_ID");
        else if (pt_keys_revoke(st, log, argv[optind], &idx, &err)) rc = cli_fail(&err);
        else printf("revoked %s (policy log entry %llu)\n", argv[optind], (unsigned long long)idx);
    }
    if (!rc && cli_witness_sync(log, data, log, "keys")) rc = 1;
    tlog_close(log);
    pt_store_close(st);
    return rc;
}
