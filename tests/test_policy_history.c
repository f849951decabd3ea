/* Policy revisions in the transparency log: apply writes the canonical revision file and a
 * chained policy_revision entry; an identical policy is a no-op; the current policy and the
 * verified history come back from the log; key entries in the same log are skipped; tampering
 * with a revision file, a forged entry, a broken chain or a wrong key are detected. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fileio.h"
#include "common/json.h"
#include "common/sha256.h"
#include "common/util.h"
#include "gap/gap.h"
#include "policy/history.h"
#include "policy/policy.h"
#include "test.h"
#include "tlog/note.h"
#include "tlog/tlog.h"

static char data_dir[256], log_dir[300];

static void rm_rf(const char *p) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0) fprintf(stderr, "rm failed\n");
}

static int64_t T(const char *s) {
    int64_t t = 0;
    pt_parse_time(s, &t, NULL);
    return t;
}

#define HEAD                                                                                    \
    "version: 1\nlab: {id: l, name: Lab}\n"                                                     \
    "models:\n  - {id: m, insider_since: 2026-01-05, variants: [{id: mitigated}, {id: unmitigated}]}\n" \
    "organisations:\n  - {id: ins, name: Insiders, kind: insider}\n"                            \
    "  - {id: ev, name: Evaluator, kind: evaluator}\n"                                          \
    "grants:\n  - {id: ins, organisation: ins, model: '*', tier: AL3, limits: {requests_per_minute: 600, tokens_per_day: 1000000}}\n"

static const char rev1[] = HEAD;
static const char rev2[] = HEAD
    "  - {id: ev1, organisation: ev, model: m, tier: AL2, window: {from: 2026-02-01, until: 2026-08-01}}\n";
static const char rev3[] = HEAD
    "  - {id: ev1, organisation: ev, model: m, tier: AL3, window: {from: 2026-02-01, until: 2026-08-01},"
    " limits: {requests_per_minute: 600, tokens_per_day: 1000000}}\n";

static int apply(tlog *t, const char *text, const char *when, pt_apply_result *r, pt_err *err) {
    return pt_policy_apply(t, data_dir, text, strlen(text), "test.yaml", T(when), r, err);
}

static json_t *entry_json(tlog *t, uint64_t i) {
    uint8_t *d;
    size_t n;
    if (tlog_entry(t, i, &d, &n, NULL)) return NULL;
    json_t *j = pt_json_parse((const char *)d, n, 64, "entry", NULL);
    free(d);
    return j;
}

static char *revision_path(const char *digest) {
    char rel[128];
    snprintf(rel, sizeof rel, "revisions/%s.json", digest + 7);
    return pt_path_join(log_dir, rel);
}

/* The revision file holds exactly the canonical JSON of the policy, which hashes to the digest. */
static int revision_file_ok(const char *text, const char *digest) {
    pt_policy *p = pt_policy_parse(text, strlen(text), "x", NULL);
    char *canon, d[72], *path = revision_path(digest), *file = NULL;
    size_t clen, flen;
    int ok = p && !pt_policy_canonical(p, &canon, &clen, d, NULL);
    ok = ok && !strcmp(d, digest) && !pt_read_file(path, 1 << 24, &file, &flen, NULL) && flen == clen &&
         !memcmp(file, canon, clen);
    if (ok) {
        uint8_t h[32];
        char hex[65];
        pt_sha256(file, flen, h);
        ok = !strcmp(pt_hex(h, 32, hex), digest + 7);
    }
    if (p) free(canon);
    pt_policy_free(p);
    free(file);
    free(path);
    return ok;
}

static void append_raw(tlog *t, const char *s) {
    uint64_t i;
    CHECK(tlog_append(t, s, strlen(s), &i, NULL) == 0);
}

static void test_current_before_any_revision_is_empty_and_denies(tlog *t) {
    pt_policy *p;
    char digest[72] = "x";
    int64_t seq = -1;
    pt_err err;
    CHECK(pt_policy_current(t, data_dir, &p, digest, &seq, &err) == 0);
    CHECK(p && p->n_models == 0 && p->n_orgs == 0 && p->n_grants == 0 && digest[0] == 0 && seq == 0);
    pt_decision d;
    pt_policy_decide(p, "ev", "m", NULL, PT_CAP_SAMPLE, T("2026-03-01"), NULL, &d);
    CHECK(!d.allow);
    pt_policy_free(p);
}

static void test_apply_three_revisions(tlog *t) {
    pt_apply_result r1, r2, r3;
    pt_err err;
    /* a key binding before the first revision: skipped by everything that reads revisions */
    append_raw(t, "{\"type\":\"key_binding\",\"key_id\":\"k1\",\"org\":\"ev\",\"admin\":false,\"time\":\"2026-01-01T00:00:00Z\"}");
    CHECK(apply(t, rev1, "2026-01-05", &r1, &err) == 0);
    CHECK(r1.changed == 1 && r1.seq == 1 && r1.prev[0] == 0 && r1.index == 1 && r1.time == T("2026-01-05"));
    CHECK(json_array_size(r1.summary) >= 1);
    append_raw(t, "{\"type\":\"key_revocation\",\"key_id\":\"k1\",\"org\":\"ev\",\"time\":\"2026-01-10T00:00:00Z\"}");
    CHECK(apply(t, rev2, "2026-02-01", &r2, &err) == 0);
    CHECK(r2.changed == 1 && r2.seq == 2 && !strcmp(r2.prev, r1.digest) && r2.index == 3);
    CHECK(json_array_size(r2.summary) == 1 &&
          strstr(json_string_value(json_array_get(r2.summary, 0)), "organisation ev: grant ev1 on m added") != NULL);
    CHECK(apply(t, rev3, "2026-05-01", &r3, &err) == 0);
    CHECK(r3.changed == 1 && r3.seq == 3 && !strcmp(r3.prev, r2.digest) && r3.index == 4 && tlog_size(t) == 5);
    CHECK(strstr(json_string_value(json_array_get(r3.summary, 0)), "grant ev1 on m changed: +activations") != NULL);

    /* the log entries, exactly */
    json_t *e = entry_json(t, 4);
    CHECK(e && !strcmp(json_string_value(json_object_get(e, "type")), "policy_revision"));
    CHECK(json_integer_value(json_object_get(e, "seq")) == 3);
    CHECK(!strcmp(json_string_value(json_object_get(e, "digest")), r3.digest));
    CHECK(!strcmp(json_string_value(json_object_get(e, "prev")), r2.digest));
    CHECK(!strcmp(json_string_value(json_object_get(e, "time")), "2026-05-01T00:00:00Z"));
    CHECK(json_equal(json_object_get(e, "summary"), r3.summary));
    json_decref(e);
    e = entry_json(t, 1);
    CHECK(e && json_is_null(json_object_get(e, "prev")) && json_object_size(e) == 6);
    json_decref(e);
    /* the revision files */
    CHECK(revision_file_ok(rev1, r1.digest));
    CHECK(revision_file_ok(rev2, r2.digest));
    CHECK(revision_file_ok(rev3, r3.digest));

    /* the current policy is revision 3 */
    pt_policy *cur;
    char digest[72];
    int64_t seq;
    CHECK(pt_policy_current(t, data_dir, &cur, digest, &seq, &err) == 0);
    CHECK(seq == 3 && !strcmp(digest, r3.digest) && cur && cur->n_grants == 2);
    pt_policy_free(cur);
    pt_apply_result_free(&r1);
    pt_apply_result_free(&r2);
    pt_apply_result_free(&r3);
}

static void test_identical_policy_is_a_noop(tlog *t) {
    uint64_t size = tlog_size(t);
    pt_apply_result r;
    pt_err err;
    CHECK(apply(t, rev3, "2026-06-01", &r, &err) == 0);
    CHECK(r.changed == 0 && r.seq == 3 && r.index == 4 && json_array_size(r.summary) == 0);
    CHECK(strstr(r.message, "no change") != NULL && tlog_size(t) == size);
    pt_apply_result_free(&r);
    /* the same policy as canonical JSON: same digest, so also no change */
    pt_policy *p = pt_policy_parse(rev3, strlen(rev3), "x", NULL);
    char *canon = NULL, d[72];
    size_t n = 0;
    CHECK(p && pt_policy_canonical(p, &canon, &n, d, NULL) == 0);
    CHECK(pt_policy_apply(t, data_dir, canon, n, "c.json", T("2026-06-01"), &r, &err) == 0 && r.changed == 0);
    CHECK(tlog_size(t) == size);
    pt_apply_result_free(&r);
    free(canon);
    pt_policy_free(p);
}

static void test_invalid_policy_appends_nothing(tlog *t) {
    uint64_t size = tlog_size(t);
    pt_apply_result r;
    pt_err err;
    static const char bad[] = "version: 1\nlab: {id: l, name: L}\nmodels: []\norganisations: []\ngrants:\n"
                              "  - {organisation: nobody, model: m, tier: AL1}\n";
    CHECK(pt_policy_apply(t, data_dir, bad, strlen(bad), "bad.yaml", T("2026-06-01"), &r, &err) == PT_EFORMAT);
    CHECK(strstr(err.msg, "bad.yaml:6:") != NULL && strstr(err.msg, "grants[0]") != NULL);
    CHECK(tlog_size(t) == size && r.summary == NULL);
}

static void test_history_from_verified_log(tlog *t) {
    pt_policy_history *h;
    pt_err err;
    CHECK(pt_policy_history_load(log_dir, tlog_vkey(t), NULL, &h, &err) == 0);
    if (!h) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK(h->n == 3 && h->verified.size == tlog_size(t));
    CHECK(h->revs[0].seq == 1 && h->revs[1].seq == 2 && h->revs[2].seq == 3);
    CHECK(h->revs[0].time == T("2026-01-05") && h->revs[1].time == T("2026-02-01") && h->revs[2].time == T("2026-05-01"));
    CHECK(h->log_index[0] == 1 && h->log_index[1] == 3 && h->log_index[2] == 4);
    CHECK(h->revs[1].policy->n_grants == 2 && h->revs[0].policy->n_grants == 1);
    /* the report over it: in March the evaluator is grey-box (elicitation gap), in June white-box */
    json_t *mar = pt_gap_report(h->revs, h->n, T("2026-03-01"), &err), *jun = pt_gap_report(h->revs, h->n, T("2026-06-01"), &err);
    CHECK(mar && jun);
    for (int k = 0; k < 2; k++) {
        json_t *rep = k ? jun : mar;
        json_t *o = json_array_get(json_object_get(json_array_get(json_object_get(rep, "models"), 0), "organisations"), 0);
        const char *el = json_string_value(json_object_get(json_object_get(json_object_get(o, "dimensions"), "elicitation"), "verdict"));
        CHECK(el && !strcmp(el, k ? "parity" : "gap"));
        CHECK(json_integer_value(json_object_get(rep, "revision_in_force")) == (k ? 3 : 2));
    }
    json_decref(mar);
    json_decref(jun);
    pt_policy_history_free(h);

    /* a trusted checkpoint from earlier: the log must extend it */
    char *cp;
    size_t cpn;
    CHECK(tlog_checkpoint(t, &cp, &cpn, NULL) == 0);
    pt_apply_result r;
    static const char rev4[] = HEAD "  - {id: ev1, organisation: ev, model: m, tier: AL1}\n";
    CHECK(apply(t, rev4, "2026-07-01", &r, &err) == 0 && r.seq == 4);
    pt_apply_result_free(&r);
    CHECK(pt_policy_history_load(log_dir, tlog_vkey(t), cp, &h, &err) == 0);
    CHECK(h && h->n == 4 && h->verified.trusted_size == 5);
    pt_policy_history_free(h);
    free(cp);

    /* a wrong key */
    char *sk, *vk;
    CHECK(tlog_read_vkey(data_dir, "policy", &vk, NULL) == 0 && !strcmp(vk, tlog_vkey(t)));
    free(vk);
    CHECK(note_generate(tlog_origin(t), &sk, &vk, NULL) == 0);
    CHECK(pt_policy_history_load(log_dir, vk, NULL, &h, &err) == PT_EVERIFY && h == NULL);
    free(sk);
    free(vk);
}

static void test_time_never_goes_back(tlog *t) {
    static const char rev5[] = HEAD "  - {id: ev1, organisation: ev, model: m, tier: AL2}\n";
    pt_apply_result r;
    pt_err err;
    CHECK(apply(t, rev5, "2026-01-01", &r, &err) == 0); /* a clock that stepped back */
    CHECK(r.changed == 1 && r.time == T("2026-07-01"));
    pt_apply_result_free(&r);
}

static void test_summary_is_capped(tlog *t) {
    /* 3,000 organisations added: the entry stays under 64 KiB, the result keeps every line */
    pt_buf b;
    pt_buf_init(&b, 1 << 24);
    pt_buf_puts(&b, HEAD);
    for (int i = 0; i < 3000; i++)
        pt_buf_printf(&b, "  - {id: g%d, organisation: ev, model: m, tier: AL1, note: 'grant number %d for the evaluator'}\n", i, i);
    pt_apply_result r;
    pt_err err;
    CHECK(pt_policy_apply(t, data_dir, b.data, b.len, "big.yaml", T("2026-08-01"), &r, &err) == 0);
    size_t full = json_array_size(r.summary);
    CHECK(full >= 3000);
    uint8_t *d;
    size_t n;
    CHECK(tlog_entry(t, r.index, &d, &n, NULL) == 0);
    CHECK(n < 40000);
    json_t *e = pt_json_parse((const char *)d, n, 64, "e", NULL);
    json_t *s = json_object_get(e, "summary");
    size_t k = json_array_size(s);
    char want[64];
    snprintf(want, sizeof want, "... and %zu more", full - (k - 1));
    CHECK(k > 10 && k < full && !strcmp(json_string_value(json_array_get(s, k - 1)), want));
    json_decref(e);
    free(d);
    pt_apply_result_free(&r);
    pt_buf_free(&b);
}

static int copy_file(const char *from, const char *to) {
    char *d;
    size_t n;
    if (pt_read_file(from, 1 << 24, &d, &n, NULL)) return -1;
    int rc = pt_write_atomic(to, d, n, 0644, NULL);
    free(d);
    return rc;
}

static void test_tampered_revision_is_detected(tlog *t) {
    pt_policy *cur;
    char digest[72];
    int64_t seq;
    pt_err err;
    CHECK(pt_policy_current(t, data_dir, &cur, digest, &seq, &err) == 0);
    pt_policy_free(cur);
    /* an older revision's file is edited (a grant quietly widened in the past) */
    pt_policy_history *h;
    CHECK(pt_policy_history_load(log_dir, tlog_vkey(t), NULL, &h, &err) == 0);
    char *path = revision_path(h->revs[1].digest), *text, *save = NULL;
    size_t n;
    pt_policy_history_free(h);
    CHECK(pt_read_file(path, 1 << 24, &text, &n, NULL) == 0);
    char *at = strstr(text, "\"AL2\"");
    CHECK(at != NULL);
    if (at) {
        save = pt_path_join(data_dir, "saved.json");
        CHECK(copy_file(path, save) == 0);
        at[3] = '3';
        CHECK(pt_write_atomic(path, text, n, 0644, NULL) == 0);
        CHECK(pt_policy_history_load(log_dir, tlog_vkey(t), NULL, &h, &err) == PT_EVERIFY);
        CHECK(strstr(err.msg, "SHA-256") != NULL && strstr(err.msg, "revision 2") != NULL);
        /* missing */
        unlink(path);
        CHECK(pt_policy_history_load(log_dir, tlog_vkey(t), NULL, &h, &err) == PT_ENOTFOUND);
        CHECK(copy_file(save, path) == 0);
        CHECK(pt_policy_history_load(log_dir, tlog_vkey(t), NULL, &h, &err) == 0);
        pt_policy_history_free(h);
    }
    free(text);
    free(path);
    /* the current revision's file edited: apply and current refuse to build on it */
    path = revision_path(digest);
    CHECK(copy_file(path, save) == 0);
    CHECK(pt_write_atomic(path, "{}", 2, 0644, NULL) == 0);
    pt_apply_result r;
    CHECK(apply(t, rev1, "2026-09-01", &r, &err) == PT_EVERIFY && strstr(err.msg, "current policy") != NULL);
    CHECK(pt_policy_current(t, data_dir, &cur, digest, &seq, &err) == PT_EVERIFY);
    CHECK(copy_file(save, path) == 0);
    free(path);
    free(save);
}

/* Entries appended by something other than apply, still signed by the log: a malformed
 * revision, and a well-formed one that breaks the chain. */
static void test_forged_entries_are_detected(tlog *t) {
    pt_policy_history *h;
    pt_err err;
    uint64_t size = tlog_size(t);
    append_raw(t, "{\"type\":\"policy_revision\",\"seq\":\"7\"}");
    CHECK(pt_policy_history_load(log_dir, tlog_vkey(t), NULL, &h, &err) == PT_EFORMAT);
    char want[64];
    snprintf(want, sizeof want, "entry %llu: policy_revision.seq", (unsigned long long)size);
    CHECK(strstr(err.msg, want) != NULL);
    rm_rf(data_dir);
    tlog *t2;
    CHECK(tlog_open(data_dir, "policy", NULL, &t2, NULL) == 0);
    pt_apply_result r;
    CHECK(apply(t2, rev1, "2026-01-05", &r, &err) == 0);
    char forged[512];
    snprintf(forged, sizeof forged, "{\"type\":\"policy_revision\",\"seq\":3,\"digest\":\"%s\",\"prev\":\"%s\","
             "\"time\":\"2026-02-01T00:00:00Z\",\"summary\":[]}", r.digest, r.digest);
    append_raw(t2, forged);
    CHECK(pt_policy_history_load(log_dir, tlog_vkey(t2), NULL, &h, &err) == PT_EVERIFY);
    CHECK(strstr(err.msg, "seq 3, expected 2") != NULL);
    pt_apply_result_free(&r);
    tlog_close(t2);
}

static void test_entry_parser_table(void) {
    static const struct { const char *in; int rc; const char *msg; } cases[] = {
        {"{\"type\":\"key_binding\"}", 0, NULL},
        {"not json at all", 0, NULL},
        {"[1,2]", 0, NULL},
        {"{\"type\":\"policy_revision\"", PT_EFORMAT, "malformed policy_revision"},
        {"{\"type\":\"policy_revision\",\"seq\":0}", PT_EFORMAT, "seq: must be an integer >= 1"},
        {"{\"type\":\"policy_revision\",\"seq\":1,\"digest\":\"sha256:AB\"}", PT_EFORMAT, "digest"},
        {"{\"type\":\"policy_revision\",\"seq\":1,\"digest\":\"sha256:0000000000000000000000000000000000000000000000000000000000000000\","
         "\"prev\":null,\"time\":\"yesterday\",\"summary\":[]}", PT_EFORMAT, "time: 'yesterday'"},
        {"{\"type\":\"policy_revision\",\"seq\":1,\"digest\":\"sha256:0000000000000000000000000000000000000000000000000000000000000000\","
         "\"prev\":null,\"time\":\"2026-01-01T00:00:00Z\",\"summary\":[1]}", PT_EFORMAT, "summary[0]: not a string"},
        {"{\"type\":\"policy_revision\",\"seq\":1,\"digest\":\"sha256:0000000000000000000000000000000000000000000000000000000000000000\","
         "\"prev\":null,\"time\":\"2026-01-01T00:00:00Z\",\"summary\":[],\"x\":1}", PT_EFORMAT, "unknown key 'x'"},
        {"{\"type\":\"policy_revision\",\"seq\":1,\"digest\":\"sha256:0000000000000000000000000000000000000000000000000000000000000000\","
         "\"prev\":null,\"time\":\"2026-01-01T00:00:00Z\",\"summary\":[\"a\"]}", 1, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pt_revision_entry e;
        pt_err err = {0};
        int rc = pt_revision_entry_parse((const uint8_t *)cases[i].in, strlen(cases[i].in), 9, "log", &e, &err);
        CHECK(rc == cases[i].rc);
        if (cases[i].msg) CHECK(strstr(err.msg, cases[i].msg) != NULL && strncmp(err.msg, "log: entry 9: ", 14) == 0);
        if (rc != cases[i].rc) fprintf(stderr, "case %zu: rc %d: %s\n", i, rc, err.msg);
        if (rc == 1) CHECK(e.seq == 1 && e.index == 9 && e.prev[0] == 0 && e.time == T("2026-01-01"));
    }
}

int main(void) {
    snprintf(data_dir, sizeof data_dir, "%s/parity-test-history-%d", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
             (int)getpid());
    snprintf(log_dir, sizeof log_dir, "%s/log/policy", data_dir);
    rm_rf(data_dir);
    test_entry_parser_table();
    tlog *t;
    pt_err err;
    CHECK(tlog_open(data_dir, "policy", NULL, &t, &err) == 0);
    if (t) {
        test_current_before_any_revision_is_empty_and_denies(t);
        test_apply_three_revisions(t);
        test_identical_policy_is_a_noop(t);
        test_invalid_policy_appends_nothing(t);
        test_history_from_verified_log(t);
        test_time_never_goes_back(t);
        test_summary_is_capped(t);
        test_tampered_revision_is_detected(t);
        test_forged_entries_are_detected(t);
        tlog_close(t);
    }
    rm_rf(data_dir);
    return test_summary("policy_history");
}
