/* The log first, the store derived (issue 14, point 5): pt_keys_issue leaves no live key
 * without its key_binding, pt_keys_revoke logs before the store, and pt_keys_reconcile
 * repairs every state a crash between the two steps can leave (and an older version's drift):
 * a pending key bound in the log is activated, one that is not is deleted, a revocation the
 * store missed is applied, a live key the log never bound is revoked, and a bound key
 * missing from the store is reported. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/keys.h"
#include "test.h"

static char dir[] = "/tmp/parity-keys-reconcile-XXXXXX";

static void append(tlog *log, const char *type, const char *id) {
    char e[256];
    int n = snprintf(e, sizeof e, "{\"type\":\"%s\",\"key_id\":\"%s\",\"org\":\"o\",\"time\":\"2026-12-07T00:00:00Z\"}",
                     type, id);
    CHECK(tlog_append(log, e, (size_t)n, NULL, NULL) == PT_OK);
}

static int state(pt_store *s, const char *id) { /* 0 absent, 1 pending, 2 live, 3 revoked */
    pt_key_record k;
    if (pt_store_key_get(s, id, &k, NULL)) return 0;
    return k.revoked ? 3 : k.pending ? 1 : 2;
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    pt_store *s = NULL;
    tlog *log = NULL;
    pt_err e;
    CHECK(pt_store_open(&s, dir, &e) == PT_OK && tlog_open(dir, "policy", NULL, &log, &e) == PT_OK);
    char key[PT_KEY_MAX_LEN], keyb[PT_KEY_MAX_LEN];
    pt_key_record a, b, p1, p2, legacy;
    uint64_t idx;
    /* a key issued whole: live, bound at its index */
    CHECK(pt_keys_issue(s, log, "o", 0, key, &a, &idx, &e) == PT_OK && idx == 0 && state(s, a.id) == 2);
    CHECK(pt_keys_issue(s, log, "o", 0, keyb, &b, &idx, &e) == PT_OK && idx == 1);
    /* killed after the store row, before the log: pending, never accepted */
    CHECK(pt_key_create(s, "o", 0, key, &p1, &e) == PT_OK && state(s, p1.id) == 1);
    pt_key_record got;
    CHECK(pt_store_key_get(s, p1.id, &got, &e) == PT_OK && !pt_key_matches(&got, key));
    CHECK(pt_keys_revoke(s, log, p1.id, &idx, &e) == PT_ENOTFOUND); /* nothing to revoke: never issued */
    /* killed after the binding was logged, before activation */
    CHECK(pt_key_create(s, "o", 0, key, &p2, &e) == PT_OK);
    append(log, "key_binding", p2.id);
    /* killed after the revocation was logged, before the store */
    append(log, "key_revocation", b.id);
    CHECK(state(s, b.id) == 2);
    /* an older version's drift: a live row the log never bound */
    memset(&legacy, 0, sizeof legacy);
    snprintf(legacy.id, sizeof legacy.id, "00000000000000aa");
    snprintf(legacy.org, sizeof legacy.org, "o");
    legacy.created = 1;
    CHECK(pt_store_key_insert(s, &legacy, &e) == PT_OK && state(s, legacy.id) == 2);
    /* a binding whose row is gone */
    append(log, "key_binding", "00000000000000bb");

    /* many keys in order: nothing to repair, none touched (the lookup of each row in the log's
     * keys must not depend on which rows were looked up before) */
    pt_key_record many[40];
    pt_store *clean = NULL;
    tlog *clean_log = NULL;
    char sub[64];
    snprintf(sub, sizeof sub, "%s/many", dir);
    CHECK(pt_store_open(&clean, sub, &e) == PT_OK && tlog_open(sub, "policy", NULL, &clean_log, &e) == PT_OK);
    for (int i = 0; i < 40; i++) CHECK(pt_keys_issue(clean, clean_log, "o", 0, key, &many[i], &idx, &e) == PT_OK);
    size_t n = 99;
    CHECK(pt_keys_reconcile(clean, clean_log, sub, NULL, &n, &e) == PT_OK && n == 0);
    for (int i = 0; i < 40; i++) CHECK(state(clean, many[i].id) == 2);
    tlog_close(clean_log);
    pt_store_close(clean);

    pt_buf report;
    pt_buf_init(&report, 1 << 20);
    CHECK(pt_keys_reconcile(s, log, dir, &report, &n, &e) == PT_OK);
    CHECK(n == 5);
    CHECK(state(s, a.id) == 2 && state(s, p1.id) == 0 && state(s, p2.id) == 2 && state(s, b.id) == 3 &&
          state(s, legacy.id) == 3 && state(s, "00000000000000bb") == 0);
    char line[128];
    snprintf(line, sizeof line, "key %s: bound in the log (entry 2) but pending in the store: activated", p2.id);
    CHECK(report.data && strstr(report.data, line));
    snprintf(line, sizeof line, "key %s: revoked in the log (entry 3) but live in the store: revoked", b.id);
    CHECK(report.data && strstr(report.data, line));
    snprintf(line, sizeof line, "key %s: pending in the store, not bound in the log: deleted", p1.id);
    CHECK(report.data && strstr(report.data, line));
    CHECK(report.data && strstr(report.data, "key 00000000000000aa: live in the store but never bound in the log: revoked"));
    CHECK(report.data && strstr(report.data, "key 00000000000000bb: bound in the log (entry 4) but not in the store"));
    /* once repaired, only what cannot be repaired is left */
    pt_buf_reset(&report);
    CHECK(pt_keys_reconcile(s, log, dir, &report, &n, &e) == PT_OK && n == 1);
    /* revoke: the log first; a revoked key is not revoked twice */
    CHECK(pt_keys_revoke(s, log, a.id, &idx, &e) == PT_OK && idx == 5 && state(s, a.id) == 3);
    CHECK(pt_keys_revoke(s, log, a.id, &idx, &e) == PT_EEXIST && tlog_size(log) == 6);
    pt_buf_free(&report);
    tlog_close(log);
    pt_store_close(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return test_summary("keys_reconcile");
}
