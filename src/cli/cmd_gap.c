/* parity gap — the model access parity report, computed only from a verified policy log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "common/util.h"
#include "gap/gap.h"
#include "gap/measure.h"
#include "policy/history.h"
#include "tlog/tlog.h"

const char cmd_gap_summary[] = "the model access parity report, from a verified policy log";

static const char usage_text[] =
    "usage: parity gap (--data DIR | --log SOURCE --vkey VKEY) [--trusted CHECKPOINT_FILE]\n"
    "                  [--witness WVKEY ... [--quorum N]] [--audit SOURCE --audit-vkey VKEY]\n"
    "                  [--at TIME] [--json | --markdown]\n"
    "\n"
    "Verifies the policy transparency log (checkpoint signature, every tile and entry, and\n"
    "consistency with a checkpoint you trusted before), fetches every policy revision the log\n"
    "names, checks its SHA-256 against the logged digest, and reports how far outside\n"
    "organisations' access is from insiders' at TIME (default: now), per organisation and model:\n"
    "non-release, deployment lag, safeguards, rate limits, log-probs, prefill, elicitation,\n"
    "information, window, uplift; per model scope and timeliness; how the verdicts changed\n"
    "across revisions; and, from a verified copy of the public audit log, the measured section:\n"
    "requests served, denied and rate-limited, latency and queue wait, tokens per day, first\n"
    "served request, capabilities used, per model and organisation class (docs/policy.md).\n"
    "\n"
    "--data DIR     the lab's own data directory: the log DIR/log/policy, verified with the\n"
    "               key in DIR/keys/policy.key (works while a server holds the log)\n"
    "--log SOURCE   any copy of the log: a directory, or an http(s):// URL prefix that\n"
    "               serves checkpoint, tile/ and revisions/\n"
    "--vkey VKEY    the log's verifier key \"name+hex8+base64\" (or a file that holds it);\n"
    "               required with --log\n"
    "--trusted F    a checkpoint seen before: the log must extend it (no rollback, no fork)\n"
    "--witness K    a witness's cosignature/v1 verifier key (repeat for each); the checkpoint\n"
    "               must carry cosignatures by --quorum N of them (default: all), and every\n"
    "               date in the report comes from their timestamps: a revision is dated when\n"
    "               a quorum had cosigned a checkpoint holding it (or later, if it says so).\n"
    "               Without --witness, the witnesses and quorum of the latest revision are\n"
    "               used when it names any; else the dates are the lab's own (labelled so)\n"
    "--audit SOURCE the audit log (a directory or URL prefix, as for --log), verified with\n"
    "               --audit-vkey; with --data, DIR/log/audit and its key are the default\n"
    "--json         the report as JSON (what /v1/parity serves) plus \"verified_log\"\n"
    "--markdown     the report as Markdown\n"
    "Exit status: 0 report printed, 1 verification or fetch failed (message says what and\n"
    "where), 2 usage error.\n";

static const char *const dims[] = {"non_release", "deployment_lag", "safeguards", "rate_limits", "logprobs",
                                   "prefill",     "elicitation",    "information", "window",     "uplift"};
static const char *const dim_heads[] = {"non-release", "lag",         "safeguards", "rate-limits", "logprobs",
                                        "prefill",     "elicitation", "info",       "window",      "uplift"};
#define N_DIMS (sizeof dims / sizeof dims[0])

static const char *jstr(const json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* Reads a small text file (a key or a checkpoint) into a new string with trailing newlines
 * kept (a checkpoint needs them); NULL and a message on failure. */
static char *read_small(const char *path, size_t max) {
    pt_err err;
    char *s;
    size_t n;
    if (pt_read_file(path, max, &s, &n, &err)) {
        cli_fail(&err);
        return NULL;
    }
    return s;
}

/* The measured section, one line per model and class. */
static void print_measured(const json_t *meas) {
    if (!json_is_object(meas)) return;
    printf("\nmeasured from the audit log (%lld entries, verified):\n", (long long)json_integer_value(json_object_get(meas, "entries")));
    json_t *models = json_object_get(meas, "models");
    for (size_t i = 0; i < json_array_size(models); i++) {
        json_t *mo = json_array_get(models, i), *served = json_object_get(mo, "served"), *u = json_object_get(mo, "uplift");
        json_t *r = json_object_get(u, "ratio");
        printf("  %s%s: uplift %s", jstr(mo, "id"), json_is_false(served) ? " (not served)" : "", jstr(u, "verdict"));
        if (json_is_real(r)) printf(" (insiders %.2fx as fast in series)", json_real_value(r));
        printf("\n");
        static const char *const cls[] = {"insiders", "outsiders"};
        for (int k = 0; k < 2; k++) {
            json_t *c = json_object_get(mo, cls[k]), *lat = json_object_get(c, "latency_ms"), *q = json_object_get(c, "queue_ms");
            printf("    %-9s %lld requests: %lld served, %lld denied, %lld rate-limited; latency p50 %lld p99 %lld ms, "
                   "queue p50 %lld p99 %lld ms\n",
                   cls[k], (long long)json_integer_value(json_object_get(c, "requests")),
                   (long long)json_integer_value(json_object_get(c, "served")), (long long)json_integer_value(json_object_get(c, "denied")),
                   (long long)json_integer_value(json_object_get(c, "rate_limited")), (long long)json_integer_value(json_object_get(lat, "p50")),
                   (long long)json_integer_value(json_object_get(lat, "p99")), (long long)json_integer_value(json_object_get(q, "p50")),
                   (long long)json_integer_value(json_object_get(q, "p99")));
        }
    }
}

static void print_terminal(const json_t *rep, const pt_policy_history *h, const char *source) {
    char root[65];
    const json_t *sum = json_object_get(rep, "summary");
    printf("Model access parity report: %s, at %s\n", jstr(json_object_get(rep, "lab"), "name"), jstr(rep, "at"));
    printf("verified log %s (%s): %llu entries, root %s", h->verified.origin, source,
           (unsigned long long)h->verified.size, pt_hex(h->verified.root, 32, root));
    if (h->verified.trusted_size) printf(", extends the trusted checkpoint of size %llu", (unsigned long long)h->verified.trusted_size);
    printf("\npolicy revision %lld in force (%zu in the log, each checked against its logged SHA-256)\n",
           (long long)json_integer_value(json_object_get(rep, "revision_in_force")), h->n);
    printf("dates: %s\n", jstr(rep, "time_source"));
    printf("outside organisation x model pairs: %lld parity, %lld partial, %lld gap\n",
           (long long)json_integer_value(json_object_get(sum, "parity")),
           (long long)json_integer_value(json_object_get(sum, "partial")),
           (long long)json_integer_value(json_object_get(sum, "gap")));
    json_t *models = json_object_get(rep, "models");
    for (size_t mi = 0; mi < json_array_size(models); mi++) {
        json_t *mo = json_array_get(models, mi), *orgs = json_object_get(mo, "organisations");
        json_t *sc = json_object_get(mo, "scope"), *tl = json_object_get(mo, "timeliness");
        printf("\n%s (insiders since %s)\n", jstr(mo, "id"), jstr(mo, "insider_since"));
        printf("  scope       %-8s %s\n  timeliness  %-8s %s\n", jstr(sc, "verdict"), jstr(sc, "detail"),
               jstr(tl, "verdict"), jstr(tl, "detail"));
        int w = 12;
        for (size_t oi = 0; oi < json_array_size(orgs); oi++) {
            int l = (int)strlen(jstr(json_array_get(orgs, oi), "organisation"));
            if (l > w) w = l;
        }
        printf("  %-*s %-10s %-6s", w, "organisation", "kind", "level");
        for (size_t k = 0; k < N_DIMS; k++) printf(" %-12s", dim_heads[k]);
        printf(" overall\n");
        for (size_t oi = 0; oi < json_array_size(orgs); oi++) {
            json_t *pr = json_array_get(orgs, oi), *d = json_object_get(pr, "dimensions");
            printf("  %-*s %-10s %-6s", w, jstr(pr, "organisation"), jstr(pr, "kind"), jstr(pr, "level"));
            for (size_t k = 0; k < N_DIMS; k++) {
                json_t *x = json_object_get(d, dims[k]);
                char cell[40];
                if (k == 1 && json_is_integer(json_object_get(x, "days")))
                    snprintf(cell, sizeof cell, "%s %lldd", jstr(x, "verdict"), (long long)json_integer_value(json_object_get(x, "days")));
                else snprintf(cell, sizeof cell, "%s", jstr(x, "verdict"));
                printf(" %-12s", cell);
            }
            printf(" %s\n", jstr(pr, "overall"));
        }
        for (size_t oi = 0; oi < json_array_size(orgs); oi++) { /* why: the detail of each gap */
            json_t *pr = json_array_get(orgs, oi), *d = json_object_get(pr, "dimensions");
            for (size_t k = 0; k < N_DIMS; k++) {
                json_t *x = json_object_get(d, dims[k]);
                const char *v = jstr(x, "verdict");
                if (!strcmp(v, "gap") || !strcmp(v, "partial"))
                    printf("    %s %s (%s): %s\n", jstr(pr, "organisation"), dims[k], v, jstr(x, "detail"));
            }
        }
    }
}

/* The published checkpoint, which must carry cosignatures by quorum of the witnesses: *note
 * (caller frees) and its size and quorum time in *w. 0, or 1 with a message. */
static int witnessed_checkpoint(const char *source, const char *const *wkeys, size_t nw, size_t quorum,
                                tlog_witnessed *w, char **note) {
    pt_err err;
    uint8_t *cp = NULL;
    size_t len;
    if (tlog_fetch(source, "checkpoint", TLOG_MAX_CHECKPOINT, &cp, &len, &err) ||
        tlog_check_quorum((const char *)cp, len, wkeys, nw, quorum, &w->size, &w->time, &err)) {
        fprintf(stderr, "parity: %s/checkpoint: %s\n", source, err.msg);
        free(cp);
        return 1;
    }
    *note = (char *)cp;
    return 0;
}

/* Dates the history by its witnesses: those given, else those of its latest revision. */
static int witness_dates(pt_policy_history *h, const char *source, const char *vkey, const char *const *wkeys,
                         size_t nw, size_t quorum) {
    pt_err err;
    size_t dropped;
    if (pt_policy_history_date(h, source, vkey, wkeys, nw, quorum, 1, &dropped, &err)) return cli_fail(&err);
    if (dropped)
        fprintf(stderr, "parity: %zu revision(s) at the end of the log are not yet in a checkpoint a quorum of "
                "witnesses cosigned: left out of the report\n", dropped);
    return 0;
}

static int meter_entry(void *ctx, uint64_t index, const uint8_t *data, size_t len) {
    (void)index;
    return pt_gap_meter_add(ctx, data, len) != PT_OK;
}

/* Verifies the audit log at source and feeds every entry to a new meter (*out); PT_OK with
 * *out NULL when there is nothing to measure (--data without an audit log). */
static int load_audit(const char *data, const char *source, const char *vkey_arg, pt_gap_meter **out,
                      tlog_verified *v, char **src_out, pt_err *err) {
    *out = NULL;
    char *vkey = NULL, *src = NULL;
    int rc = PT_OK;
    if (!source && !data) return PT_OK; /* --log without --audit: the declared report only */
    if (source) {
        src = strdup(source);
        vkey = strdup(vkey_arg);
    } else {
        src = pt_path_join(data, "log/audit");
        char *cp = src ? pt_path_join(src, "checkpoint") : NULL;
        int have = cp && pt_exists(cp);
        free(cp);
        if (!have) {
            free(src);
            return PT_OK;
        }
        if ((rc = tlog_read_vkey(data, "audit", &vkey, err))) {
            free(src);
            return rc;
        }
    }
    pt_gap_meter *m = pt_gap_meter_new();
    if (!src || !vkey || !m) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    else rc = tlog_verify(src, vkey, NULL, meter_entry, m, v, err);
    if (rc == PT_ECANCELLED) rc = pt_errf(err, PT_ENOMEM, "out of memory measuring %s", src);
    free(vkey);
    if (rc) {
        pt_err_prefix(err, "the audit log");
        pt_gap_meter_free(m);
        free(src);
        return rc;
    }
    *out = m;
    *src_out = src;
    return PT_OK;
}

int cmd_gap(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return 0;
    }
    const char *data = NULL, *log = NULL, *vkey_arg = NULL, *trusted_path = NULL, *audit = NULL, *audit_vkey = NULL;
    const char *wkeys[TLOG_MAX_WITNESSES];
    size_t nw = 0;
    uint64_t quorum = 0;
    int64_t at = pt_unix_time();
    int json = 0, markdown = 0;
    pt_err err;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--markdown")) markdown = 1;
        else if (i + 1 >= argc) return cli_usage_error("gap", "%s needs a value (or unknown argument)", a);
        else if (!strcmp(a, "--data")) data = argv[++i];
        else if (!strcmp(a, "--log")) log = argv[++i];
        else if (!strcmp(a, "--vkey")) vkey_arg = argv[++i];
        else if (!strcmp(a, "--trusted")) trusted_path = argv[++i];
        else if (!strcmp(a, "--witness")) {
            if (nw == TLOG_MAX_WITNESSES) return cli_usage_error("gap", "at most %d witnesses", TLOG_MAX_WITNESSES);
            wkeys[nw++] = argv[++i];
        } else if (!strcmp(a, "--quorum")) {
            if (pt_parse_u64(argv[++i], &quorum) || quorum == 0) return cli_usage_error("gap", "--quorum needs a positive integer");
        } else if (!strcmp(a, "--audit")) audit = argv[++i];
        else if (!strcmp(a, "--audit-vkey")) audit_vkey = argv[++i];
        else if (!strcmp(a, "--at")) {
            if (pt_parse_time(argv[++i], &at, &err)) return cli_usage_error("gap", "--at: %s", err.msg);
        } else return cli_usage_error("gap", "unknown option %s", a);
    }
    if (!!data == !!log) return cli_usage_error("gap", "give either --data DIR or --log SOURCE --vkey VKEY");
    if (log && !vkey_arg) return cli_usage_error("gap", "--log needs --vkey (the log's verifier key)");
    if (json && markdown) return cli_usage_error("gap", "--json and --markdown exclude each other");
    if (quorum > nw) return cli_usage_error("gap", "--quorum %llu is more than the %zu --witness keys given",
                                             (unsigned long long)quorum, nw);
    if (nw && !quorum) quorum = nw;
    if (!audit != !audit_vkey) return cli_usage_error("gap", "--audit and --audit-vkey go together");

    char *vkey = NULL, *trusted = NULL, *source = NULL;
    int status = 1;
    if (vkey_arg) {
        if (pt_exists(vkey_arg)) {
            if (!(vkey = read_small(vkey_arg, 4096))) goto out;
            size_t n = strlen(vkey);
            while (n && (vkey[n - 1] == '\n' || vkey[n - 1] == '\r' || vkey[n - 1] == ' ')) vkey[--n] = 0;
        } else if (!(vkey = strdup(vkey_arg))) goto out;
    } else if (tlog_read_vkey(data, "policy", &vkey, &err)) {
        cli_fail(&err);
        goto out;
    }
    if (trusted_path && !(trusted = read_small(trusted_path, TLOG_MAX_CHECKPOINT))) goto out;
    if (!(source = data ? pt_path_join(data, "log/policy") : strdup(log))) goto out;

    tlog_witnessed latest;
    char *cosigned = NULL;
    if (nw && witnessed_checkpoint(source, wkeys, nw, quorum, &latest, &cosigned)) goto out;
    if (cosigned && !trusted) trusted = cosigned, cosigned = NULL;
    free(cosigned);
    pt_policy_history *h;
    if (pt_policy_history_load(source, vkey, trusted, &h, &err)) {
        cli_fail(&err);
        goto out;
    }
    if (witness_dates(h, source, vkey, wkeys, nw, quorum)) {
        pt_policy_history_free(h);
        goto out;
    }
    if (h->n == 0) {
        fprintf(stderr, "parity: %s: the log (%llu entries, verified) holds no policy revision yet\n", source,
                (unsigned long long)h->verified.size);
        pt_policy_history_free(h);
        goto out;
    }
    pt_gap_meter *meter = NULL;
    tlog_verified av;
    char *audit_src = NULL;
    if (load_audit(data, audit, audit_vkey, &meter, &av, &audit_src, &err)) {
        cli_fail(&err);
        pt_policy_history_free(h);
        goto out;
    }
    json_t *rep = pt_gap_report_measured(h->revs, h->n, at, meter, &err);
    if (!rep) {
        char tb[21];
        fprintf(stderr, "parity: %s (the first revision takes effect at %s)\n", err.msg, pt_format_time(h->revs[0].time, tb));
        pt_policy_history_free(h);
        pt_gap_meter_free(meter);
        free(audit_src);
        goto out;
    }
    if (json) {
        char root[65];
        json_t *v = json_object();
        json_object_set_new(v, "source", json_string(source));
        json_object_set_new(v, "origin", json_string(h->verified.origin));
        json_object_set_new(v, "vkey", json_string(vkey));
        json_object_set_new(v, "size", json_integer((json_int_t)h->verified.size));
        json_object_set_new(v, "root", json_string(pt_hex(h->verified.root, 32, root)));
        json_object_set_new(v, "trusted_size", h->verified.trusted_size ? json_integer((json_int_t)h->verified.trusted_size) : json_null());
        json_object_set_new(rep, "verified_log", v);
        if (meter)
            json_object_set_new(rep, "verified_audit_log",
                                json_pack("{s:s, s:s, s:I, s:s}", "source", audit_src, "origin", av.origin, "size",
                                          (json_int_t)av.size, "root", pt_hex(av.root, 32, root)));
        char *s = json_dumps(rep, JSON_INDENT(2));
        if (s) printf("%s\n", s);
        free(s);
    } else if (markdown) {
        char *md = pt_gap_markdown(rep);
        if (md) fputs(md, stdout);
        free(md);
    } else {
        print_terminal(rep, h, source);
        print_measured(json_object_get(rep, "measured"));
    }
    json_decref(rep);
    pt_policy_history_free(h);
    pt_gap_meter_free(meter);
    free(audit_src);
    status = 0;
out:
    free(vkey);
    free(trusted);
    free(source);
    return status;
}
