/* One rule for the revision in force (issue 14, point 3): pt_policy_revision_in_force (the last revision
 * dated at or before the moment, and when that next changes), and pt_policy_in_force over a
 * real policy log, where a revision applied with a future time is not in force before it,
 * while pt_policy_current (what a new apply diffs against) is the latest. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/util.h"
#include "policy/history.h"
#include "test.h"

static void test_rule(void) {
    pt_policy_revision r[3] = {{.time = 10}, {.time = 20}, {.time = 20}};
    int64_t next = 0;
    CHECK(pt_policy_revision_in_force(r, 3, 9, &next) == 3 && next == 10);   /* before the first: none */
    CHECK(pt_policy_revision_in_force(r, 3, 10, &next) == 0 && next == 20);  /* dated exactly now: in force */
    CHECK(pt_policy_revision_in_force(r, 3, 19, &next) == 0 && next == 20);
    CHECK(pt_policy_revision_in_force(r, 3, 20, &next) == 2 && next == INT64_MAX); /* the later of two at once */
    CHECK(pt_policy_revision_in_force(NULL, 0, 5, &next) == 0 && next == INT64_MAX);
}

static void test_log(void) {
    char dir[] = "/tmp/parity-in-force-XXXXXX", path[512];
    if (!mkdtemp(dir)) return;
    const char *src = getenv("PARITY_SRC") ? getenv("PARITY_SRC") : ".";
    snprintf(path, sizeof path, "%s/examples/policy.yaml", src);
    char *text = NULL;
    size_t len = 0;
    pt_err e;
    CHECK(pt_read_file(path, 1 << 20, &text, &len, &e) == PT_OK);
    if (!text) return;
    tlog *log;
    CHECK(tlog_open(dir, "policy", NULL, &log, &e) == PT_OK);
    int64_t t1 = 0, t2 = 0, next = 0;
    CHECK(pt_parse_time("2026-02-10", &t1, &e) == PT_OK && pt_parse_time("2099-01-01", &t2, &e) == PT_OK);
    pt_apply_result r;
    CHECK(pt_policy_apply(log, dir, text, len, "v1", t1, &r, &e) == PT_OK && r.seq == 1);
    pt_apply_result_free(&r);
    char *v2 = strdup(text), *at = strstr(v2, "[sample, logprobs, model_info]");
    CHECK(at != NULL);
    if (at) memcpy(at, "[sample, model_info]          ", 30);
    CHECK(pt_policy_apply(log, dir, v2, len, "v2", t2, &r, &e) == PT_OK && r.seq == 2);
    pt_apply_result_free(&r);

    pt_policy *p = NULL;
    char digest[72];
    int64_t seq = -1;
    CHECK(pt_policy_in_force(log, dir, pt_unix_time(), &p, digest, &seq, &next, &e) == PT_OK);
    CHECK(seq == 1 && next == t2 && !strncmp(digest, "sha256:", 7));
    pt_policy_free(p);
    CHECK(pt_policy_in_force(log, dir, t2, &p, digest, &seq, &next, &e) == PT_OK && seq == 2 && next == INT64_MAX);
    pt_policy_free(p);
    CHECK(pt_policy_in_force(log, dir, t1 - 1, &p, digest, &seq, &next, &e) == PT_OK);
    CHECK(seq == 0 && digest[0] == 0 && next == t1 && p && p->n_grants == 0); /* the empty policy: deny */
    pt_policy_free(p);
    CHECK(pt_policy_current(log, dir, &p, digest, &seq, &e) == PT_OK && seq == 2);
    pt_policy_free(p);
    tlog_close(log);
    free(v2);
    free(text);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    test_rule();
    test_log();
    return test_summary("in_force");
}
