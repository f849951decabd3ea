/* The writer never forks its own log (issue 14, point 4): a missing checkpoint while entries,
 * tiles or a journal exist, or a checkpoint older than the entries on disk, stops tlog_open
 * with a message naming the file and the sizes, and writes nothing; tlog_recover re-derives
 * the checkpoint from the entries, logs that it did, and the result is consistent with a
 * checkpoint kept from before. A batch that crashed before its checkpoint was published is
 * still recovered silently (its files are removed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fileio.h"
#include "tlog/tlog.h"
#include "test.h"

static char data_dir[256], log_dir[300], cp_path[320];

static void rm_rf(const char *p) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0) fprintf(stderr, "rm failed\n");
}

static char *read_all(const char *path, size_t *len) {
    char *text = NULL;
    size_t n = 0;
    if (pt_read_file(path, 1u << 24, &text, &n, NULL) != PT_OK) return NULL;
    if (len) *len = n;
    return text;
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static unsigned long long inode_of(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (unsigned long long)st.st_ino : 0;
}

static void write_all(const char *path, const char *text) {
    CHECK(pt_write_atomic(path, text, strlen(text), 0644, NULL) == PT_OK);
}

static void append_n(const char *name, int from, int n, char **cp_after) {
    tlog *t;
    pt_err err;
    CHECK(tlog_open(data_dir, name, NULL, &t, &err) == PT_OK);
    if (!t) return;
    for (int i = from; i < from + n; i++) {
        char e[64];
        int len = snprintf(e, sizeof e, "entry %d", i);
        uint64_t idx = 0;
        CHECK(tlog_append(t, e, (size_t)len, &idx, &err) == PT_OK && idx == (uint64_t)i);
    }
    if (cp_after) CHECK(tlog_checkpoint(t, cp_after, NULL, &err) == PT_OK);
    tlog_close(t);
}

static void test_refuse_and_recover(void) {
    char *cp5 = NULL, *cp7 = NULL, *b7 = NULL, *b7_after = NULL, *vkey = NULL;
    append_n("policy", 0, 5, &cp5);
    append_n("policy", 5, 2, &cp7);
    char bundle[400];
    snprintf(bundle, sizeof bundle, "%s/tile/entries/000.p/7", log_dir);
    size_t blen = 0, blen2 = 0;
    b7 = read_all(bundle, &blen);
    CHECK(b7 != NULL);

    /* The checkpoint deleted: the writer refuses, naming the file and the sizes. */
    unlink(cp_path);
    tlog *t = NULL;
    pt_err err;
    int rc = tlog_open(data_dir, "policy", NULL, &t, &err);
    CHECK(rc == PT_EVERIFY && t == NULL);
    CHECK(rc && strstr(err.msg, cp_path) && strstr(err.msg, "missing (size 0)") && strstr(err.msg, "7 entries"));
    CHECK(!pt_exists(cp_path)); /* nothing was published in its place */

    /* An older checkpoint swapped in: refused too, and no entry is overwritten. */
    write_all(cp_path, cp5);
    rc = tlog_open(data_dir, "policy", NULL, &t, &err);
    CHECK(rc == PT_EVERIFY && t == NULL);
    CHECK(rc && strstr(err.msg, cp_path) && strstr(err.msg, "size 5") && strstr(err.msg, "7 entries"));
    b7_after = read_all(bundle, &blen2);
    CHECK(b7_after && blen2 == blen && !memcmp(b7, b7_after, blen));

    /* Recovery re-derives size 7 from the entries, and says so in the log. */
    tlog_recovery r;
    CHECK(tlog_recover(data_dir, "policy", &r, &err) == PT_OK);
    CHECK(r.previous == TLOG_CP_VALID && r.previous_size == 5 && r.size == 7 && r.entry_index == 7);
    CHECK(tlog_open(data_dir, "policy", NULL, &t, &err) == PT_OK);
    if (t) {
        uint8_t *d = NULL;
        size_t n = 0;
        CHECK(tlog_size(t) == 8);
        CHECK(tlog_entry(t, 6, &d, &n, &err) == PT_OK && n == 7 && !memcmp(d, "entry 6", 7));
        free(d);
        CHECK(tlog_entry(t, 7, &d, &n, &err) == PT_OK && strstr((char *)d, "\"type\":\"log_recovery\"") &&
              strstr((char *)d, "\"previous_checkpoint\":\"valid\",\"previous_size\":5,\"recovered_size\":7"));
        free(d);
        tlog_close(t);
    }
    /* ... and it verifies against the checkpoint of size 7 kept from before (consistency). */
    CHECK(tlog_read_vkey(data_dir, "policy", &vkey, &err) == PT_OK);
    tlog_verified v;
    CHECK(tlog_verify(log_dir, vkey, cp7, NULL, NULL, &v, &err) == PT_OK && v.size == 8 && v.trusted_size == 7);

    /* Deleted again: recovery from no checkpoint at all. */
    unlink(cp_path);
    CHECK(tlog_recover(data_dir, "policy", &r, &err) == PT_OK);
    CHECK(r.previous == TLOG_CP_MISSING && r.size == 8 && r.entry_index == 8);
    CHECK(tlog_verify(log_dir, vkey, cp7, NULL, NULL, &v, &err) == PT_OK && v.size == 9);

    /* Entries lost from disk (the widest whole bundle now holds 7): recovery would shorten
     * the log below the checkpoint of size 9, so it refuses and leaves the checkpoint. */
    char *cp9 = read_all(cp_path, NULL);
    char entries0[400];
    snprintf(entries0, sizeof entries0, "%s/tile/entries/000.p/9", log_dir);
    char *keep = read_all(entries0, &blen);
    CHECK(pt_write_atomic(entries0, "\x00\x03xyz", 5, 0644, NULL) == PT_OK); /* torn: 1 entry, not 9 */
    snprintf(bundle, sizeof bundle, "%s/tile/entries/000.p/8", log_dir);
    unlink(bundle);
    rc = tlog_recover(data_dir, "policy", &r, &err);
    CHECK(rc == PT_EVERIFY);
    if (keep) CHECK(pt_write_atomic(entries0, keep, blen, 0644, NULL) == PT_OK);
    char *cp9_after = read_all(cp_path, NULL);
    CHECK(cp9 && cp9_after && !strcmp(cp9, cp9_after));
    free(cp9);
    free(cp9_after);
    free(keep);
    free(cp5);
    free(cp7);
    free(b7);
    free(b7_after);
    free(vkey);
}

/* Publishing a checkpoint and the pending mark allocate and free no inode after the first batch
 * (the checkpoint and checkpoint.tmp exchange names; the mark is emptied, not unlinked): on ext4
 * without a journal, every freed inode slowed each later create for seconds. */
static void test_no_inode_churn(void) {
    append_n("churn", 0, 1, NULL);
    char cp[340], tmp[340], pending[340];
    snprintf(cp, sizeof cp, "%s/log/churn/checkpoint", data_dir);
    snprintf(tmp, sizeof tmp, "%s/log/churn/checkpoint.tmp", data_dir);
    snprintf(pending, sizeof pending, "%s/log/churn/pending", data_dir);
    append_n("churn", 1, 1, NULL);
    unsigned long long a = inode_of(cp), b = inode_of(tmp), p = inode_of(pending);
    CHECK(a && b && a != b && p && file_size(pending) == 0);
    append_n("churn", 2, 1, NULL);
    CHECK(inode_of(cp) == b && inode_of(tmp) == a && inode_of(pending) == p);
    char *text = read_all(cp, NULL), *old = read_all(tmp, NULL);
    CHECK(text && strstr(text, "\n3\n") && old && strstr(old, "\n2\n")); /* sizes 3 and 2 */
    free(text);
    free(old);
}

/* A batch killed between its tiles and its checkpoint: the files beyond the checkpoint are
 * marked pending, so open removes them and goes on; without the mark it refuses. */
static void test_crashed_batch(void) {
    char *cp1 = NULL;
    append_n("crash", 0, 1, &cp1);
    append_n("crash", 1, 1, NULL);
    char dir[320], cpp[340], pending[340], beyond[400];
    snprintf(dir, sizeof dir, "%s/log/crash", data_dir);
    snprintf(cpp, sizeof cpp, "%s/checkpoint", dir);
    snprintf(pending, sizeof pending, "%s/pending", dir);
    snprintf(beyond, sizeof beyond, "%s/tile/entries/000.p/2", dir);
    CHECK(file_size(pending) == 0); /* emptied once the batch was published */
    write_all(cpp, cp1);
    write_all(pending, "1 2\n");
    tlog *t = NULL;
    pt_err err;
    CHECK(tlog_open(data_dir, "crash", NULL, &t, &err) == PT_OK);
    CHECK(!pt_exists(beyond) && file_size(pending) == 0);
    if (t) {
        CHECK(tlog_size(t) == 1);
        uint64_t idx = 0;
        CHECK(tlog_append(t, "again", 5, &idx, &err) == PT_OK && idx == 1);
        tlog_close(t);
    }
    /* The same state with a stale mark (an earlier batch's): refused. */
    write_all(cpp, cp1);
    write_all(pending, "0 1\n");
    CHECK(tlog_open(data_dir, "crash", NULL, &t, &err) == PT_EVERIFY);
    CHECK(pt_exists(beyond));
    free(cp1);
}

/* A journaled log: entries journaled, the process gone before integrating them, and then the
 * checkpoint lost: refused (the journal holds acknowledged indices); recovery integrates them. */
static void test_journal(void) {
    pid_t pid = fork();
    if (pid == 0) {
        tlog *t;
        const void *d[3] = {"a", "b", "c"};
        size_t lens[3] = {1, 1, 1};
        if (tlog_open(data_dir, "journal", NULL, &t, NULL) || tlog_journal_append(t, d, lens, 3, NULL, NULL)) _exit(1);
        _exit(0); /* no tlog_close: the entries stay in the journal only */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char cpp[340];
    snprintf(cpp, sizeof cpp, "%s/log/journal/checkpoint", data_dir);
    unlink(cpp);
    tlog *t = NULL;
    pt_err err;
    int rc = tlog_open(data_dir, "journal", NULL, &t, &err);
    CHECK(rc == PT_EVERIFY && strstr(err.msg, "journal") && strstr(err.msg, "missing"));
    tlog_recovery r;
    CHECK(tlog_recover(data_dir, "journal", &r, &err) == PT_OK && r.size == 0 && r.entry_index == 3);
    CHECK(tlog_open(data_dir, "journal", NULL, &t, &err) == PT_OK && t && tlog_size(t) == 4);
    tlog_close(t);
}

int main(void) {
    snprintf(data_dir, sizeof data_dir, "%s/parity-test-tlog-fork-%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    snprintf(log_dir, sizeof log_dir, "%s/log/policy", data_dir);
    snprintf(cp_path, sizeof cp_path, "%s/checkpoint", log_dir);
    rm_rf(data_dir);
    test_refuse_and_recover();
    test_crashed_batch();
    test_no_inode_churn();
    test_journal();
    tlog_recovery r;
    pt_err err;
    CHECK(tlog_recover(data_dir, "nosuch", &r, &err) == PT_ENOTFOUND);
    rm_rf(data_dir);
    return test_summary("tlog_fork");
}
