/* parity policy — check, explain, diff, canonicalise and apply access policies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "common/util.h"
#include "policy/history.h"
#include "policy/policy.h"
#include "tlog/tlog.h"

const char cmd_policy_summary[] = "validate, explain, diff and apply the access policy";

static const char usage_text[] =
    "usage: parity policy check FILE\n"
    "       parity policy explain FILE|--data DIR --org ORG --model MODEL --capability CAP [--at TIME]\n"
    "                             [--variant V] [--requests-last-minute N] [--tokens-today N]\n"
    "                             [--running-jobs N] [--top-k N] [--json]\n"
    "       parity policy limits FILE|--data DIR --org ORG --model MODEL [--at TIME] [--json]\n"
    "       parity policy diff OLD NEW\n"
    "       parity policy canonical FILE\n"
    "       parity policy apply FILE [--data DIR] [--time TIME] [--json]\n"

    "\n"
    "check      validates FILE (YAML or JSON) and prints its digest; errors name\n"
    "           FILE:LINE:COLUMN and the path (grants[3].model). Exit 1 if invalid.\n"
    "explain    decides one request, deny by default, and says why: the grant that allowed it,\n"
    "           or the first thing that failed. Exit 0 allow, 3 deny. TIME is ISO 8601\n"
    "           (default: now). CAP is one of sample, logprobs, prefill, activations,\n"
    "           interventions, finetune, unmitigated, model_info, weights.\n"
    "limits     the effective capabilities and limits of ORG on MODEL at TIME.\n"
    "           With --data DIR instead of FILE, explain and limits use the revision of DIR's\n"
    "           (verified) policy log in force at TIME: the last one dated at or before it, the\n"
    "           rule parity gap and /v1/parity use (named on stderr).\n"
    "diff       a semantic diff: models, tiers, organisations, grants added, removed,\n"
    "           widened or narrowed.\n"
    "canonical  prints the RFC 8785 canonical JSON of FILE; its SHA-256 is the policy digest.\n"
    "apply      makes FILE the current policy: validates it, prints the diff from the current\n"
    "           revision, stores DIR/log/policy/revisions/<hex>.json and appends a\n"
    "           policy_revision entry to the transparency log DIR/log/policy; prints the\n"
    "           revision's seq, digest and log index. The same policy again is a no-op\n"
    "           (\"no change\", exit 0). DIR defaults to $PARITY_DATA, else ./data. TIME (default\n"
    "           now) is when the revision takes effect; never before the current revision's.\n"
    "           While a server holds the log, apply through its POST /v1/admin/policy instead.\n"
    ;

static int load(const char *path, pt_policy **p) {
    pt_err err;
    *p = pt_policy_load(path, &err);
    return *p ? 0 : cli_fail(&err);
}

static int parse_at(const char *s, int64_t *at) {
    pt_err err;
    if (pt_parse_time(s, at, &err)) {
        fprintf(stderr, "parity policy: --at: %s\n", err.msg);
        return 2;
    }
    return 0;
}

static int cmd_check(int argc, char **argv) {
    if (argc != 2) return cli_usage_error("policy", "check takes one FILE");
    pt_policy *p;
    if (load(argv[1], &p)) return 1;
    char digest[72];
    pt_err err;
    if (pt_policy_canonical(p, NULL, NULL, digest, &err)) {
        pt_policy_free(p);
        return cli_fail(&err);
    }
    printf("%s: valid: lab %s, %zu models, %zu tiers, %zu organisations, %zu grants, %zu forbids\n%s\n", argv[1],
           p->lab_id, p->n_models, p->n_tiers, p->n_orgs, p->n_grants, p->n_forbids, digest);
    pt_policy_free(p);
    return 0;
}

static int opt_i64(const char *name, const char *v, int64_t *out) {
    if (pt_parse_i64(v, out) || *out < 0) {
        cli_usage_error("policy", "%s needs a non-negative integer", name);
        return 2;
    }
    return 0;
}

/* The revision in force at `at` in the verified policy log of DATA (read-only, so it works
 * while the server holds the log): *p borrowed from *h. 1 when none is in force yet. */
static int load_in_force(const char *data, int64_t at, pt_policy_history **h, const pt_policy **p) {
    pt_err err;
    char *vkey = NULL, *dir = pt_path_join(data, "log/policy");
    int rc = dir ? tlog_read_vkey(data, "policy", &vkey, &err) : pt_errf(&err, PT_ENOMEM, "out of memory");
    if (!rc) rc = pt_policy_history_load(dir, vkey, NULL, h, &err);
    free(vkey);
    free(dir);
    if (rc) {
        cli_fail(&err);
        return -1;
    }
    char t[21];
    size_t k = pt_policy_revision_in_force((*h)->revs, (*h)->n, at, NULL);
    if (k == (*h)->n) {
        fprintf(stderr, "parity policy: no revision of %s/log/policy is in force at %s\n", data, pt_format_time(at, t));
        return 1;
    }
    *p = (*h)->revs[k].policy;
    fprintf(stderr, "revision %llu (%s, dated %s) is in force at ", (unsigned long long)(*h)->revs[k].seq,
            (*h)->revs[k].digest, pt_format_time((*h)->revs[k].time, t));
    fprintf(stderr, "%s\n", pt_format_time(at, t));
    return 0;
}

static int cmd_explain(int argc, char **argv, int limits_only) {
    const char *data = NULL, *file = NULL, *org = NULL, *model = NULL, *capname = NULL, *variant = NULL;
    int64_t at = pt_unix_time();
    int json = 0;
    pt_usage u = pt_usage_none();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1, rc = 0;
        if (!strcmp(a, "--json")) { json = 1; takes = 0; }
        else if (a[0] != '-') { if (file) return cli_usage_error("policy", "one FILE only"); file = a; takes = 0; }
        else if (!v) return cli_usage_error("policy", "%s needs a value", a);
        else if (!strcmp(a, "--org")) org = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--capability") && !limits_only) capname = v;
        else if (!strcmp(a, "--variant") && !limits_only) variant = v;
        else if (!strcmp(a, "--at")) rc = parse_at(v, &at);
        else if (!strcmp(a, "--requests-last-minute") && !limits_only) rc = opt_i64(a, v, &u.requests_last_minute);
        else if (!strcmp(a, "--tokens-today") && !limits_only) rc = opt_i64(a, v, &u.tokens_today);
        else if (!strcmp(a, "--running-jobs") && !limits_only) rc = opt_i64(a, v, &u.running_finetune_jobs);
        else if (!strcmp(a, "--top-k") && !limits_only) rc = opt_i64(a, v, &u.logprobs_top_k);
        else return cli_usage_error("policy", "unknown option %s", a);
        if (rc) return rc;
        i += takes;
    }
    if (!file == !data || !org || !model || (!limits_only && !capname))
        return cli_usage_error("policy", "%s needs FILE or --data DIR, --org, --model%s",
                               limits_only ? "limits" : "explain", limits_only ? "" : " and --capability");
    int cap = 0;
    if (!limits_only && (cap = pt_cap_parse(capname)) < 0) return cli_usage_error("policy", "unknown capability '%s'", capname);
    pt_policy *owned = NULL;
    pt_policy_history *h = NULL;
    const pt_policy *p = NULL;
    if (file && load(file, &owned)) return 1;
    if (data) {
        int rc = load_in_force(data, at, &h, &p);
        if (rc) {
            pt_policy_history_free(h);
            return rc < 0 ? 1 : limits_only ? 0 : 3; /* nothing in force: everything is denied */
        }
    } else {
        p = owned;
    }
    char t[21];
    int status = 0;
    if (limits_only) {
        pt_capset caps;
        pt_limits l;
        int any = pt_policy_effective(p, org, model, at, &caps, &l);
        json_t *o = json_object(), *ca = json_array();
        for (int i = 0; i < PT_CAP_COUNT; i++)
            if (caps & (1u << i)) json_array_append_new(ca, json_string(pt_cap_name((pt_cap)i)));
        json_object_set_new(o, "organisation", json_string(org));
        json_object_set_new(o, "model", json_string(model));
        json_object_set_new(o, "at", json_string(pt_format_time(at, t)));
        json_object_set_new(o, "in_force", json_boolean(any));
        json_object_set_new(o, "capabilities", ca);
        const char *names[4] = {"requests_per_minute", "tokens_per_day", "concurrent_finetune_jobs", "logprobs_top_k"};
        int64_t vals[4] = {l.requests_per_minute, l.tokens_per_day, l.concurrent_finetune_jobs, l.logprobs_top_k};
        json_t *lj = json_object();
        for (int i = 0; i < 4; i++) json_object_set_new(lj, names[i], vals[i] == PT_UNLIMITED ? json_null() : json_integer(vals[i]));
        json_object_set_new(o, "limits", lj);
        if (json) {
            char *s = json_dumps(o, JSON_INDENT(2));
            printf("%s\n", s);
            free(s);
        } else if (!any) {
            printf("%s has no grant in force on %s at %s\n", org, model, t);
        } else {
            printf("%s on %s at %s:\n  capabilities:", org, model, t);
            for (size_t i = 0; i < json_array_size(ca); i++) printf(" %s", json_string_value(json_array_get(ca, i)));
            printf("\n");
            for (int i = 0; i < 4; i++) {
                if (vals[i] == PT_UNLIMITED) printf("  %-26s unlimited\n", names[i]);
                else printf("  %-26s %lld\n", names[i], (long long)vals[i]);
            }
        }
        json_decref(o);
    } else {
        pt_decision d;
        pt_policy_decide(p, org, model, variant, (pt_cap)cap, at, &u, &d);
        if (json) {
            json_t *o = json_object();
            json_object_set_new(o, "decision", json_string(d.allow ? "allow" : "deny"));
            json_object_set_new(o, "reason", json_string(pt_reason_name(d.reason)));
            json_object_set_new(o, "grant", d.grant ? json_string(d.grant->id) : json_null());
            json_object_set_new(o, "forbid", d.forbid ? json_string(d.forbid->id) : json_null());
            json_object_set_new(o, "message", json_string(d.message));
            json_object_set_new(o, "at", json_string(pt_format_time(at, t)));
            char *s = json_dumps(o, JSON_INDENT(2));
            printf("%s\n", s);
            free(s);
            json_decref(o);
        } else {
            printf("%s (%s): %s\n", d.allow ? "allow" : "deny", pt_reason_name(d.reason), d.message);
        }
        status = d.allow ? 0 : 3;
    }
    pt_policy_free(owned);
    pt_policy_history_free(h);
    return status;
}

static int cmd_diff(int argc, char **argv) {
    if (argc != 3) return cli_usage_error("policy", "diff takes OLD and NEW");
    pt_policy *a, *b;
    if (load(argv[1], &a)) return 1;
    if (load(argv[2], &b)) {
        pt_policy_free(a);
        return 1;
    }
    json_t *lines = pt_policy_diff(a, b);
    if (!json_array_size(lines)) printf("no semantic changes\n");
    for (size_t i = 0; i < json_array_size(lines); i++) printf("%s\n", json_string_value(json_array_get(lines, i)));
    json_decref(lines);
    pt_policy_free(a);
    pt_policy_free(b);
    return 0;
}

static int cmd_canonical(int argc, char **argv) {
    if (argc != 2) return cli_usage_error("policy", "canonical takes one FILE");
    pt_policy *p;
    if (load(argv[1], &p)) return 1;
    char *s, digest[72];
    size_t n;
    pt_err err;
    int rc = pt_policy_canonical(p, &s, &n, digest, &err);
    pt_policy_free(p);
    if (rc) return cli_fail(&err);
    fwrite(s, 1, n, stdout);
    printf("\n");
    fprintf(stderr, "%s\n", digest);
    free(s);
    return 0;
}

static int cmd_apply(int argc, char **argv) {
    const char *file = NULL, *data = getenv("PARITY_DATA");
    int64_t when = pt_unix_time();
    int json = 0, stated = 0;
    if (!data || !*data) data = "data";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) json = 1;
        else if (a[0] != '-') {
            if (file) return cli_usage_error("policy", "apply takes one FILE");
            file = a;
        } else if (i + 1 >= argc) return cli_usage_error("policy", "%s needs a value", a);
        else if (!strcmp(a, "--data")) data = argv[++i];
        else if (!strcmp(a, "--time")) {
            int rc = parse_at(argv[++i], &when);
            if (rc) return rc;
            stated = 1;
        } else return cli_usage_error("policy", "unknown option %s", a);
    }
    if (!file) return cli_usage_error("policy", "apply needs FILE");
    pt_err err;
    char *text;
    size_t len;
    if (pt_read_file(file, PT_REVISION_MAX, &text, &len, &err)) return cli_fail(&err);
    /* validate before touching the log, so a bad file never needs the lock */
    pt_policy *p = pt_policy_parse(text, len, file, &err);
    if (!p) {
        free(text);
        return cli_fail(&err);
    }
    int new_witnessed = p->n_witnesses > 0;
    pt_policy_free(p);
    tlog *t;
    int rc = tlog_open(data, "policy", NULL, &t, &err);
    if (rc == PT_ECONFLICT) {
        free(text);
        fprintf(stderr, "parity: %s/log/policy is held by another process (a running `parity serve`?): apply the "
                "policy through the server's admin endpoint instead:\n"
                "  curl -H \"Authorization: Bearer $ADMIN_KEY\" --data-binary @%s http://HOST:PORT/v1/admin/policy\n",
                data, file);
        return 1;
    }
    if (rc) {
        free(text);
        return cli_fail(&err);
    }
    /* Witnessed logs: the checkpoint must not be older than what the witnesses cosigned (the
     * writer stops), and no revision may take effect before it can have been witnessed. */
    pt_policy *cur = NULL;
    if (pt_policy_current(t, data, &cur, NULL, NULL, &err) || cli_witness_policy(cur, t, "policy apply")) {
        if (cur) pt_policy_free(cur);
        else cli_fail(&err);
        free(text);
        tlog_close(t);
        return 1;
    }
    int witnessed = new_witnessed || cur->n_witnesses > 0;
    pt_policy_free(cur);
    int64_t now = pt_unix_time();
    if (witnessed && stated && when < now) {
        char t1[21], t2[21];
        fprintf(stderr, "parity: --time %s is before now (%s): with witnesses configured a revision cannot take effect "
                "before it is witnessed; give a time from now on (or none)\n", pt_format_time(when, t1),
                pt_format_time(now, t2));
        free(text);
        tlog_close(t);
        return 1;
    }
    pt_apply_result r;
    rc = pt_policy_apply(t, data, text, len, file, when, &r, &err);
    free(text);
    if (rc) {
        tlog_close(t);
        return cli_fail(&err);
    }
    if (r.changed && cli_witness_sync(t, data, t, "policy apply")) rc = 1;
    char tb[21];
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "changed", json_boolean(r.changed));
        json_object_set_new(o, "seq", json_integer((json_int_t)r.seq));
        json_object_set_new(o, "digest", json_string(r.digest));
        json_object_set_new(o, "prev", r.prev[0] ? json_string(r.prev) : json_null());
        json_object_set_new(o, "time", json_string(pt_format_time(r.time, tb)));
        json_object_set_new(o, "log_index", json_integer((json_int_t)r.index));
        json_object_set_new(o, "log_size", json_integer((json_int_t)tlog_size(t)));
        json_object_set_new(o, "summary", json_incref(r.summary));
        char *s = json_dumps(o, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else if (!r.changed) {
        printf("%s\n", r.message);
    } else {
        printf("changes from %s:\n", r.prev[0] ? r.prev : "the empty policy (first revision)");
        for (size_t i = 0; i < json_array_size(r.summary); i++)
            printf("  %s\n", json_string_value(json_array_get(r.summary, i)));
        printf("revision  %llu\ndigest    %s\ntime      %s\nlog index %llu (log size %llu)\n",
               (unsigned long long)r.seq, r.digest, pt_format_time(r.time, tb), (unsigned long long)r.index,
               (unsigned long long)tlog_size(t));
    }
    pt_apply_result_free(&r);
    tlog_close(t);
    return rc;
}

int cmd_policy(int argc, char **argv) {
    if (argc < 2 || cli_wants_help(argc, argv)) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "check")) return cmd_check(argc - 1, argv + 1);
    if (!strcmp(sub, "explain")) return cmd_explain(argc - 1, argv + 1, 0);
    if (!strcmp(sub, "limits")) return cmd_explain(argc - 1, argv + 1, 1);
    if (!strcmp(sub, "diff")) return cmd_diff(argc - 1, argv + 1);
    if (!strcmp(sub, "canonical")) return cmd_canonical(argc - 1, argv + 1);
    if (!strcmp(sub, "apply")) return cmd_apply(argc - 1, argv + 1);
    return cli_usage_error("policy", "unknown subcommand '%s'", sub);
}
